/**
 * protoc-gen-openapi: an OpenAPI 3.1 document for the REST surface, derived from the
 * services' `google.api.http` rules exactly the way src/transport/rest.ts serves them:
 *
 * - path variables (`{id}`, `{tenant.id}`) are fields set from the path; a path segment
 *   never holds "/" or ":";
 * - `body: "*"` takes every field not bound to the path from a JSON object, and then
 *   the query string is ignored; `body: "x"` takes field x from the body; every other
 *   field (leaves only, dotted names for nested messages, repeated keys for lists) may
 *   come from the query string;
 * - `response_body: "x"` answers with field x of the response instead of the whole message;
 * - enums are the short lowercase labels (TENANT_STATUS_ACTIVE is "active") both ways;
 * - failures answer `{code, message, fieldViolations?}` with the Connect HTTP status.
 *
 * It is run by `buf generate` as a local plugin (plain `node`, which strips the types),
 * so it needs nothing but @bufbuild/protoplugin and works offline from a fresh clone.
 * The http rule is read through the `google.api.http` extension found in the request's
 * own descriptors, so no generated code is needed to run it.
 * Options: `title=…`, `version=…`, `file=…` (default openapi.json).
 */
import { getOption, hasOption, ScalarType } from "@bufbuild/protobuf";
import type { DescEnum, DescExtension, DescField, DescMessage, DescMethod, DescService } from "@bufbuild/protobuf";
import { FeatureSet_FieldPresence } from "@bufbuild/protobuf/wkt";
import { createEcmaScriptPlugin, getComments, runNodeJs } from "@bufbuild/protoplugin";
import type { Schema } from "@bufbuild/protoplugin";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonSchema = { [key: string]: Json };
type Options = { title: string; version: string; file: string };

/** The reflective shape of google.api.HttpRule, as getOption returns it for a descriptor-only extension. */
type HttpRule = {
  pattern: { case: "get" | "put" | "post" | "delete" | "patch"; value: string } | { case: "custom"; value: { kind: string; path: string } } | { case: undefined; value?: undefined };
  body: string;
  responseBody: string;
  additionalBindings: HttpRule[];
};

const SCHEMAS = "#/components/schemas/";
const MAX_QUERY_DEPTH = 4;
const VARIABLE = /\{([^}=]+)(?:=[^}]+)?\}/g;

// Connect's codes, plus the REST layer's own for a path served with another method.
const ERROR_CODES = [
  "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists",
  "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "out_of_range",
  "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated", "method_not_allowed",
];

const plugin = createEcmaScriptPlugin<Options>({
  name: "protoc-gen-openapi",
  version: "v1",
  parseOptions(raw) {
    const options: Options = { title: "API", version: "v1", file: "openapi.json" };
    for (const { key, value } of raw) {
      if (key === "title" || key === "version" || key === "file") options[key] = value;
      else throw new Error(`protoc-gen-openapi: unknown option "${key}"`);
    }
    return options;
  },
  generateTs(schema) {
    const document = buildDocument(schema);
    schema.generateFile(schema.options.file).print(JSON.stringify(document, null, 2));
  },
});

function buildDocument(schema: Schema<Options>): JsonSchema {
  const httpExtension = findExtension(schema, "google.api.http");
  const components = new Map<string, JsonSchema>();
  // Answers first: a message keeps its proto name for what the server sends, and one that is
  // also sent by clients gets a "-input" twin (a hyphen no proto name has) without `required`.
  const outputNames = new Set<string>();
  const output = createRefs(components, "output", (desc) => (outputNames.add(desc.typeName), desc.typeName));
  const input = createRefs(components, "input", (desc) => (outputNames.has(desc.typeName) ? `${desc.typeName}-input` : desc.typeName));
  const bindings: { method: DescMethod; binding: HttpRule; template: string; names: string[]; id: string; path: string; httpMethod: string }[] = [];
  const paths: Record<string, Record<string, Json>> = {};
  const pathOfShape: Record<string, string> = {};
  const tags: JsonSchema[] = [];
  const services: DescService[] = [];
  for (const service of schema.files.flatMap((file) => file.services)) {
    const methods = httpExtension ? service.methods.filter((m) => hasOption(m, httpExtension)) : [];
    if (methods.length === 0) continue;
    services.push(service);
    tags.push(withDescription({ name: service.name }, service));
    for (const method of methods) {
      // A REST call is one JSON request and one JSON answer: streams have no REST form.
      if (method.methodKind !== "unary") throw new Error(`${method.parent.typeName}.${method.name}: google.api.http on a streaming method`);
      const rule = getOption(method, httpExtension!) as unknown as HttpRule;
      [rule, ...rule.additionalBindings].forEach((binding, i) => {
        const { httpMethod, template } = patternOf(binding, method);
        // OpenAPI forbids two paths that differ only in their variables' names
        // (/v1/tenants/{id} and /v1/tenants/{tenant.id}): the first names the path item,
        // later ones bind their fields by position under those names.
        const shape = template.replace(VARIABLE, "{}");
        const openApiPath = (pathOfShape[shape] ??= template.replace(VARIABLE, "{$1}"));
        const names = [...openApiPath.matchAll(VARIABLE)].map((m) => m[1]!);
        const item = (paths[openApiPath] ??= {});
        if (item[httpMethod]) throw new Error(`${method.name}: ${httpMethod.toUpperCase()} ${template} is bound twice`);
        item[httpMethod] = null; // placeholder: keeps the order of the rules
        bindings.push({ method, binding, template, names, id: i === 0 ? method.name : `${method.name}_${i}`, path: openApiPath, httpMethod });
      });
    }
  }
  const answers = bindings.map(({ method, binding }) => answerOf(method, binding, output));
  bindings.forEach((b, i) => {
    paths[b.path]![b.httpMethod] = operation(b.method, b.binding, b.template, b.names, b.id, answers[i]!, input);
  });
  components.set("Error", errorSchema());
  const sorted = Object.fromEntries([...components.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return {
    openapi: "3.1.0",
    jsonSchemaDialect: "https://spec.openapis.org/oas/3.1/dialect/base",
    info: {
      title: schema.options.title,
      version: schema.options.version,
      description: services.map((s) => comment(s)).filter(Boolean).join("\n\n"),
    },
    tags,
    security: [{ bearer: [] }],
    paths,
    components: {
      schemas: sorted,
      securitySchemes: {
        bearer: { type: "http", scheme: "bearer", description: "Authorization: Bearer <access token or API key>" },
      },
    },
  };
}

function findExtension(schema: Schema<Options>, typeName: string): DescExtension | undefined {
  for (const file of schema.allFiles) {
    const found = file.extensions.find((e) => e.typeName === typeName);
    if (found) return found;
  }
  return undefined;
}

function patternOf(rule: HttpRule, method: DescMethod): { httpMethod: string; template: string } {
  const p = rule.pattern;
  const [httpMethod, template] = p.case === "custom" ? [p.value.kind.toLowerCase(), p.value.path] : [p.case ?? "", p.value ?? ""];
  if (!template.startsWith("/") || httpMethod === "") throw new Error(`${method.parent.typeName}.${method.name}: bad http rule path "${template}"`);
  return { httpMethod, template };
}

type Side = "input" | "output";
type Refs = { readonly side: Side; message(desc: DescMessage): JsonSchema; enumeration(desc: DescEnum): JsonSchema };

/** Named schemas for messages and enums, created on first reference (so only what the REST surface uses). */
function createRefs(components: Map<string, JsonSchema>, side: Side, nameOf: (desc: DescMessage) => string): Refs {
  const refs: Refs = {
    side,
    message(desc) {
      const wkt = wellKnown(desc);
      if (wkt) return wkt;
      const name = nameOf(desc);
      if (!components.has(name)) {
        components.set(name, {}); // placeholder first: messages may refer to themselves
        components.set(name, messageSchema(desc, new Set(), refs));
      }
      return { $ref: SCHEMAS + name };
    },
    enumeration(desc): JsonSchema {
      if (desc.typeName === "google.protobuf.NullValue") return { type: "null" };
      if (!components.has(desc.typeName)) {
        const labels = desc.values.map((v) => v.localName.toLowerCase());
        const documented = desc.values.map((v) => [v.localName.toLowerCase(), comment(v)] as const).filter(([, c]) => c !== "");
        const text = [comment(desc), ...documented.map(([label, c]) => `- \`${label}\`: ${c}`)].filter(Boolean).join("\n");
        components.set(desc.typeName, { type: "string", enum: labels, ...(text ? { description: text } : {}) });
      }
      return { $ref: SCHEMAS + desc.typeName };
    },
  };
  return refs;
}

/**
 * A message as protobuf JSON: lowerCamel names, nothing else allowed. A client may leave
 * out any field; the server's answers carry every field without explicit presence (it
 * emits zero values: "products": [], "externalId": ""), so those are required in answers.
 */
function messageSchema(desc: DescMessage, omit: ReadonlySet<string>, refs: Refs): JsonSchema {
  const properties: Record<string, Json> = {};
  const required: string[] = [];
  for (const field of desc.fields) {
    if (omit.has(field.name)) continue;
    properties[field.jsonName] = withDescription(fieldSchema(field, refs), field);
    if (refs.side === "output" && alwaysEmitted(field)) required.push(field.jsonName);
  }
  const oneofs = desc.oneofs.map((o) => `At most one of ${o.fields.map((f) => `\`${f.jsonName}\``).join(", ")}.`);
  const text = [comment(desc), ...oneofs].filter(Boolean).join("\n\n");
  return { type: "object", ...(text ? { description: text } : {}), properties, ...(required.length ? { required } : {}), additionalProperties: false };
}

function alwaysEmitted(field: DescField): boolean {
  if (field.fieldKind === "list" || field.fieldKind === "map") return true;
  if (field.fieldKind === "message" || field.oneof !== undefined) return false;
  return field.presence === FeatureSet_FieldPresence.IMPLICIT;
}

function fieldSchema(field: DescField, refs: Refs): JsonSchema {
  switch (field.fieldKind) {
    case "scalar":
      return scalarSchema(field.scalar);
    case "enum":
      return refs.enumeration(field.enum);
    case "message":
      return refs.message(field.message);
    case "list": {
      const items =
        field.listKind === "scalar" ? scalarSchema(field.scalar) : field.listKind === "enum" ? refs.enumeration(field.enum) : refs.message(field.message);
      return { type: "array", items };
    }
    case "map": {
      const values =
        field.mapKind === "scalar" ? scalarSchema(field.scalar) : field.mapKind === "enum" ? refs.enumeration(field.enum) : refs.message(field.message);
      const keys = mapKeySchema(field.mapKey);
      return { type: "object", ...(keys ? { propertyNames: keys } : {}), additionalProperties: values };
    }
  }
}

function scalarSchema(scalar: ScalarType): JsonSchema {
  switch (scalar) {
    case ScalarType.DOUBLE:
      return { type: "number", format: "double" };
    case ScalarType.FLOAT:
      return { type: "number", format: "float" };
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return { type: "integer", format: "int32" };
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return { type: "integer", minimum: 0, maximum: 4294967295 };
    // 64-bit integers are strings in protobuf JSON: a JavaScript number cannot hold them.
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return { type: "string", pattern: "^-?[0-9]+$", description: "64-bit integer, as a decimal string" };
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return { type: "string", pattern: "^[0-9]+$", description: "unsigned 64-bit integer, as a decimal string" };
    case ScalarType.BOOL:
      return { type: "boolean" };
    case ScalarType.STRING:
      return { type: "string" };
    case ScalarType.BYTES:
      return { type: "string", contentEncoding: "base64" };
  }
}

function mapKeySchema(key: ScalarType): JsonSchema | undefined {
  if (key === ScalarType.STRING) return undefined;
  if (key === ScalarType.BOOL) return { enum: ["true", "false"] };
  return { pattern: "^-?[0-9]+$" };
}

/** The well-known types have their own JSON forms. */
function wellKnown(desc: DescMessage): JsonSchema | undefined {
  switch (desc.typeName) {
    case "google.protobuf.Timestamp":
      return { type: "string", format: "date-time" };
    case "google.protobuf.Duration":
      return { type: "string", pattern: "^-?[0-9]+(\\.[0-9]{1,9})?s$", description: "seconds with an s suffix, e.g. 3600s" };
    case "google.protobuf.FieldMask":
      return { type: "string", description: "comma-separated lowerCamel field names" };
    case "google.protobuf.Struct":
      return { type: "object" };
    case "google.protobuf.Value":
      return {};
    case "google.protobuf.ListValue":
      return { type: "array" };
    case "google.protobuf.Empty":
      return { type: "object", additionalProperties: false };
    case "google.protobuf.Any":
      return { type: "object", required: ["@type"], properties: { "@type": { type: "string" } } };
    case "google.protobuf.DoubleValue":
    case "google.protobuf.FloatValue":
      return { type: "number" };
    case "google.protobuf.Int32Value":
    case "google.protobuf.UInt32Value":
      return { type: "integer" };
    case "google.protobuf.Int64Value":
    case "google.protobuf.UInt64Value":
      return { type: "string", pattern: "^-?[0-9]+$" };
    case "google.protobuf.BoolValue":
      return { type: "boolean" };
    case "google.protobuf.StringValue":
      return { type: "string" };
    case "google.protobuf.BytesValue":
      return { type: "string", contentEncoding: "base64" };
    default:
      return undefined;
  }
}

/** What a 200 carries: the output message, or its response_body field. */
function answerOf(method: DescMethod, rule: HttpRule, refs: Refs): JsonSchema {
  if (rule.responseBody === "") return refs.message(method.output);
  const field = method.output.fields.find((f) => f.name === rule.responseBody);
  if (!field) throw new Error(`${method.name}: response_body "${rule.responseBody}" is not a field of ${method.output.typeName}`);
  return withDescription(fieldSchema(field, refs), field);
}

function operation(method: DescMethod, rule: HttpRule, template: string, names: readonly string[], operationId: string, answer: JsonSchema, refs: Refs): JsonSchema {
  const input = method.input;
  const variables = [...template.matchAll(VARIABLE)].map((m) => m[1]!);
  const parameters: Json[] = variables.map((variable, i) => {
    const field = resolveFieldPath(input, variable, method).at(-1)!;
    const name = names[i]!;
    const param = withDescription({ name, in: "path", required: true, schema: fieldSchema(field, refs) }, field);
    return name === variable ? param : { ...param, description: [`Sets \`${variable}\`.`, param["description"]].filter(Boolean).join(" ") };
  });
  let requestBody: JsonSchema | undefined;
  if (rule.body === "*") {
    const bound = new Set(variables.filter((v) => !v.includes(".")));
    requestBody = bodyOf(bound.size === 0 ? refs.message(input) : messageSchema(input, bound, refs));
  } else {
    if (rule.body !== "") {
      const field = input.fields.find((f) => f.name === rule.body);
      if (!field) throw new Error(`${method.name}: body "${rule.body}" is not a field of ${input.typeName}`);
      requestBody = bodyOf(fieldSchema(field, refs), field);
    }
    const skip = new Set([...variables, ...(rule.body ? [rule.body] : [])]);
    parameters.push(...queryParameters(input, "", "", skip, refs, 0));
  }
  const text = comment(method);
  const summary = text.split("\n")[0] || method.name;
  return {
    operationId,
    tags: [method.parent.name],
    summary,
    ...(text !== "" && text !== summary ? { description: text } : {}),
    "x-rpc": `${method.parent.typeName}/${method.name}`,
    parameters,
    ...(requestBody ? { requestBody } : {}),
    responses: {
      "200": { description: "OK", content: { "application/json": { schema: answer } } },
      default: {
        description: "The call failed; the HTTP status follows the Connect code.",
        content: { "application/json": { schema: { $ref: `${SCHEMAS}Error` } } },
      },
    },
  };
}

function bodyOf(schema: JsonSchema, field?: DescField): JsonSchema {
  // Not required: the REST layer reads an empty body as {}.
  return { content: { "application/json": { schema: field ? withDescription(schema, field) : schema } } };
}

/**
 * The fields a query string may set: leaves by dotted lowerCamel name. Maps, repeated
 * messages and free-form values have no query form.
 */
function queryParameters(desc: DescMessage, prefix: string, protoPrefix: string, skip: ReadonlySet<string>, refs: Refs, depth: number): Json[] {
  const out: Json[] = [];
  for (const field of desc.fields) {
    const protoPath = protoPrefix + field.name;
    if (skip.has(protoPath)) continue;
    const name = prefix + field.jsonName;
    if (field.fieldKind === "map") continue;
    if (field.fieldKind === "list" && field.listKind === "message") continue;
    if (field.fieldKind === "message") {
      const leaf = wellKnown(field.message);
      if (leaf) {
        if (leaf["type"] === "string" || leaf["type"] === "number" || leaf["type"] === "integer" || leaf["type"] === "boolean") {
          out.push(withDescription({ name, in: "query", schema: leaf }, field));
        }
        continue;
      }
      if (depth + 1 < MAX_QUERY_DEPTH) out.push(...queryParameters(field.message, `${name}.`, `${protoPath}.`, skip, refs, depth + 1));
      continue;
    }
    const schema = fieldSchema(field, refs);
    out.push(withDescription({ name, in: "query", schema, ...(field.fieldKind === "list" ? { style: "form", explode: true } : {}) }, field));
  }
  return out;
}

function resolveFieldPath(desc: DescMessage, dotted: string, method: DescMethod): DescField[] {
  const path: DescField[] = [];
  let current: DescMessage | undefined = desc;
  for (const part of dotted.split(".")) {
    const field: DescField | undefined = current?.fields.find((f) => f.name === part);
    if (!field) throw new Error(`${method.name}: path variable "${dotted}" is not a field of ${desc.typeName}`);
    path.push(field);
    current = field.fieldKind === "message" ? field.message : undefined;
  }
  return path;
}

function errorSchema(): JsonSchema {
  return {
    type: "object",
    description: "A failed call. `fieldViolations` names each invalid field of the request.",
    required: ["code", "message"],
    properties: {
      code: { type: "string", enum: ERROR_CODES },
      message: { type: "string" },
      fieldViolations: {
        type: "array",
        items: {
          type: "object",
          required: ["field", "description"],
          properties: { field: { type: "string" }, description: { type: "string" } },
          additionalProperties: false,
        },
      },
    },
    additionalProperties: false,
  };
}

function comment(desc: Parameters<typeof getComments>[0]): string {
  return (getComments(desc).leading ?? "")
    .split("\n")
    .map((line) => line.replace(/^ /, "").trimEnd())
    .join("\n")
    .trim();
}

function withDescription(schema: JsonSchema, desc: DescField | DescService): JsonSchema {
  const text = comment(desc);
  if (text === "") return schema;
  // A $ref sits beside a description in 3.1 (JSON Schema 2020-12), so the field's own words are kept.
  return { ...schema, description: text };
}

runNodeJs(plugin);
