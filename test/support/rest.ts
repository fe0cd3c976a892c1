import { readFileSync } from "node:fs";
import { join } from "node:path";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { PACKAGE_ROOT } from "../../src/paths.js";

/**
 * The tests' REST client: fetch, with every request and every answer checked against
 * the committed OpenAPI document (gen/openapi.json). A call the document does not
 * describe, an answer it does not allow, or a request it forbids that the server
 * accepts anyway fails the test: the document cannot drift from what the REST layer does.
 */
export async function restFetch(url: string, init: RequestInit = {}): Promise<Response> {
  const method = (init.method ?? "GET").toUpperCase();
  // A compressed body is checked as the JSON it inflates to (bytes that inflate to nothing: as no body).
  const encoding = new Headers(init.headers).get("content-encoding");
  let body: string | undefined;
  if (init.body instanceof Uint8Array && encoding !== null) {
    body = inflated(init.body, encoding);
  } else if (init.body !== undefined && init.body !== null && typeof init.body !== "string") {
    throw new Error("restFetch: pass the body as a JSON string (or bytes with a content-encoding)");
  } else {
    body = init.body ?? undefined;
  }
  const response = await fetch(url, init);
  const text = await response.text();
  const problems = contract().check({ method, url: new URL(url), body }, { status: response.status, text, allow: response.headers.get("allow") });
  if (problems.length > 0) {
    throw new Error(`REST call breaks gen/openapi.json: ${method} ${new URL(url).pathname}${new URL(url).search} → ${response.status}\n  ${problems.join("\n  ")}\n  answer: ${text.slice(0, 500)}`);
  }
  return new Response(text, { status: response.status, statusText: response.statusText, headers: response.headers });
}

function inflated(bytes: Uint8Array, encoding: string): string | undefined {
  try {
    if (encoding === "gzip") return gunzipSync(bytes).toString("utf8");
    if (encoding === "br") return brotliDecompressSync(bytes).toString("utf8");
  } catch {
    // not what it claims to be: the server must refuse it
  }
  return undefined;
}

export type Exchange = { readonly method: string; readonly url: URL; readonly body?: string | undefined };
export type Answer = { readonly status: number; readonly text: string; readonly allow?: string | null };

export type Contract = {
  /** Every way the exchange disagrees with the document; empty when it conforms. */
  check(request: Exchange, answer: Answer): string[];
};

type OpenApiDocument = {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown> };
};

type Parameter = { name: string; in: "path" | "query"; required?: boolean; schema: Record<string, unknown> };
type Operation = {
  operationId: string;
  parameters: Parameter[];
  requestBody?: { content: { "application/json": { schema: unknown } } };
  responses: Record<string, { content: { "application/json": { schema: unknown } } }>;
};

type CompiledOperation = {
  readonly id: string;
  readonly pathParameters: ValidateFunction;
  readonly query: ValidateFunction;
  readonly listParameters: ReadonlySet<string>;
  readonly body: ValidateFunction | undefined;
  readonly ok: ValidateFunction;
  readonly error: ValidateFunction;
};

type CompiledPath = {
  readonly template: string;
  readonly pattern: RegExp;
  readonly names: readonly string[];
  readonly operations: ReadonlyMap<string, CompiledOperation>;
};

let loaded: Contract | undefined;

/** The committed document, compiled once per test file. */
export function contract(): Contract {
  loaded ??= compileContract(JSON.parse(readFileSync(join(PACKAGE_ROOT, "gen", "openapi.json"), "utf8")) as OpenApiDocument);
  return loaded;
}

const SCHEMAS_ID = "urn:tenant-registry:openapi:schemas";

export function compileContract(document: OpenApiDocument): Contract {
  // Strict mode: a keyword JSON Schema 2020-12 does not know is a fault in the document.
  const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
  // Path and query values arrive as text; the REST layer reads them as the field's type.
  const params = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true, coerceTypes: "array" });
  const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;
  const rewrite = (schema: unknown) =>
    JSON.parse(JSON.stringify(schema).replaceAll('"#/components/schemas/', `"${SCHEMAS_ID}#/$defs/`)) as Record<string, unknown>;
  for (const instance of [ajv, params]) {
    addFormats(instance);
    instance.addSchema({ $id: SCHEMAS_ID, $defs: rewrite(document.components.schemas) });
  }
  const object = (parameters: Parameter[]) => ({
    type: "object",
    properties: Object.fromEntries(parameters.map((p) => [p.name, rewrite(p.schema)])),
    required: parameters.filter((p) => p.required).map((p) => p.name),
    additionalProperties: false,
  });

  const paths: CompiledPath[] = Object.entries(document.paths).map(([template, item]) => {
    const names = [...template.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]!);
    const source = template
      .split(/\{[^}]+\}/)
      .map((literal) => literal.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
      .join("([^/:]+)");
    const operations = new Map(
      Object.entries(item).map(([method, op]) => {
        const query = op.parameters.filter((p) => p.in === "query");
        const compiled: CompiledOperation = {
          id: op.operationId,
          pathParameters: params.compile(object(op.parameters.filter((p) => p.in === "path"))),
          query: params.compile(object(query)),
          listParameters: new Set(query.filter((p) => p.schema["type"] === "array").map((p) => p.name)),
          body: op.requestBody ? ajv.compile(rewrite(op.requestBody.content["application/json"].schema)) : undefined,
          ok: ajv.compile(rewrite(op.responses["200"]!.content["application/json"].schema)),
          error: ajv.compile(rewrite(op.responses["default"]!.content["application/json"].schema)),
        };
        return [method.toUpperCase(), compiled] as const;
      }),
    );
    return { template, pattern: new RegExp(`^${source}$`), names, operations };
  });
  const anyError = ajv.compile({ $ref: `${SCHEMAS_ID}#/$defs/Error` });

  return {
    check(request, answer) {
      let json: unknown;
      try {
        json = answer.text === "" ? undefined : JSON.parse(answer.text);
      } catch {
        return ["the answer is not JSON"];
      }
      const matching = paths.map((p) => ({ path: p, match: p.pattern.exec(request.url.pathname) })).filter((m) => m.match);
      if (matching.length === 0) {
        // Not in the document: the server must say there is no such route.
        return answer.status === 404 ? errors("404 answer", anyError, json) : [`no documented path matches, yet the server answered ${answer.status}`];
      }
      const found = matching.find((m) => m.path.operations.has(request.method));
      if (!found) {
        const documented = [...new Set(matching.flatMap((m) => [...m.path.operations.keys()]))].sort();
        const allowed = (answer.allow ?? "").split(",").map((s) => s.trim()).filter(Boolean).sort();
        if (answer.status !== 405) return [`${request.method} is not documented for this path, yet the server answered ${answer.status}`];
        if (allowed.join() !== documented.join()) return [`405 allows [${allowed}], the document [${documented}]`];
        return errors("405 answer", anyError, json);
      }
      const op = found.path.operations.get(request.method)!;
      const requestProblems = checkRequest(op, found.path, found.match!, request);
      if (requestProblems.length > 0) {
        // The document forbids this request: the server must refuse it too.
        if (answer.status < 400 || answer.status >= 500) {
          return [`${op.id}: the server answered ${answer.status} to a request the document forbids:`, ...requestProblems];
        }
        return errors(`${op.id} error answer`, op.error, json);
      }
      if (answer.status === 200) return errors(`${op.id} answer`, op.ok, json);
      if (answer.status < 400) return [`${op.id}: status ${answer.status} is not documented`];
      return errors(`${op.id} error answer`, op.error, json);
    },
  };
}

function checkRequest(op: CompiledOperation, path: CompiledPath, match: RegExpExecArray, request: Exchange): string[] {
  const problems: string[] = [];
  let pathValues: Record<string, unknown>;
  try {
    pathValues = Object.fromEntries(path.names.map((name, i) => [name, decodeURIComponent(match[i + 1]!)]));
  } catch {
    return ["a path segment is not valid percent-encoding"];
  }
  problems.push(...errors("path", op.pathParameters, pathValues));
  const query: Record<string, unknown> = {};
  for (const key of new Set(request.url.searchParams.keys())) {
    const values = request.url.searchParams.getAll(key);
    query[key] = op.listParameters.has(key) ? values : values.at(-1);
  }
  problems.push(...errors("query", op.query, query));
  const hasBody = request.body !== undefined && request.body.trim() !== "";
  if (hasBody && !op.body) problems.push(`${op.id} takes no request body`);
  if (hasBody && op.body) {
    let body: unknown;
    try {
      body = JSON.parse(request.body!);
    } catch {
      return [...problems, "the request body is not JSON"];
    }
    problems.push(...errors("request body", op.body, body));
  }
  return problems;
}

function errors(what: string, validate: ValidateFunction, value: unknown): string[] {
  if (validate(value)) return [];
  return (validate.errors ?? []).map((e) => `${what}${e.instancePath || ""}: ${e.message ?? "invalid"}${e.params && Object.keys(e.params).length ? ` ${JSON.stringify(e.params)}` : ""}`);
}
