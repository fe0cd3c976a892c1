import type http from "node:http";
import type http2 from "node:http2";
import { fromBinary, getOption, hasOption, type DescField, type DescMessage, type DescMethod, type DescService, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import type { ContextValues } from "@connectrpc/connect";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import { http as httpRule } from "../../gen/google/api/annotations_pb.js";
import type { HttpRule } from "../../gen/google/api/http_pb.js";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import { restRouteKey } from "./context.js";
import { enumsFromShort, enumsToShort } from "./rest-json.js";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

type Route = {
  readonly httpMethod: string;
  readonly template: string;
  readonly pattern: RegExp;
  readonly variables: readonly string[];
  readonly body: string;
  readonly responseBody: string;
  readonly method: DescMethod;
  readonly handler: UniversalHandler;
};

const MAX_BODY_BYTES = 4 * 1024 * 1024;
const FORWARDED_HEADERS = ["authorization", "x-request-id", "x-forwarded-for", "user-agent", "traceparent", "tracestate", "idempotency-key"];

/**
 * REST paths from the `google.api.http` annotations in the compiled descriptors.
 * A REST call becomes a Connect JSON call on the same universal handler, so it
 * runs through the same interceptors and implementation as gRPC and Connect;
 * adding an annotation to the proto is all a new RPC needs to get a REST path.
 */
export function createRestHandler(services: readonly DescService[], handlers: readonly UniversalHandler[]) {
  const routes: Route[] = [];
  for (const service of services) {
    for (const method of service.methods) {
      if (!hasOption(method, httpRule)) continue;
      const handler = handlers.find((h) => h.method === method);
      if (!handler) throw new Error(`no handler registered for ${service.typeName}.${method.name}`);
      const rule = getOption(method, httpRule);
      for (const r of [rule, ...rule.additionalBindings]) routes.push(compileRoute(r, method, handler));
    }
  }

  /** Answers the request when it matches a REST route; false leaves it to the caller. */
  return async function handleRest(req: NodeRequest, res: NodeResponse, contextValues: ContextValues): Promise<boolean> {
    const url = new URL(req.url ?? "/", "http://rest.invalid");
    const candidates = routes.map((route) => ({ route, match: route.pattern.exec(url.pathname) })).filter((c) => c.match);
    if (candidates.length === 0) return false;
    const found = candidates.find((c) => c.route.httpMethod === req.method);
    if (!found) {
      res.setHeader("allow", [...new Set(candidates.map((c) => c.route.httpMethod))].join(", "));
      sendJson(res, 405, { code: "method_not_allowed", message: `${req.method} is not allowed on ${url.pathname}` });
      return true;
    }
    const { route, match } = found;
    let request: JsonObject;
    try {
      request = await buildRequest(route, match!, url, req);
    } catch (error) {
      sendJson(res, 400, { code: "invalid_argument", message: (error as Error).message });
      return true;
    }
    await invoke(route, request, req, res, contextValues);
    return true;
  };
}

function compileRoute(rule: HttpRule, method: DescMethod, handler: UniversalHandler): Route {
  const p = rule.pattern;
  const [httpMethod, template] =
    p.case === "custom" ? [p.value.kind.toUpperCase(), p.value.path] : [p.case?.toUpperCase() ?? "", p.value ?? ""];
  if (!template.startsWith("/")) throw new Error(`${method.parent.typeName}.${method.name}: bad http rule path "${template}"`);
  const variables: string[] = [];
  let source = "";
  let last = 0;
  for (const m of template.matchAll(/\{([^}=]+)(?:=([^}]+))?\}/g)) {
    source += escapeRegExp(template.slice(last, m.index));
    variables.push(m[1]!);
    const segment = m[2] ?? "*";
    source += segment === "*" ? "([^/:]+)" : `(${segment.split("/").map((s) => (s === "**" ? ".+" : s === "*" ? "[^/]+" : escapeRegExp(s))).join("/")})`;
    last = m.index + m[0].length;
  }
  source += escapeRegExp(template.slice(last));
  return {
    httpMethod,
    template,
    pattern: new RegExp(`^${source}$`),
    variables,
    body: rule.body,
    responseBody: rule.responseBody,
    method,
    handler,
  };
}

async function buildRequest(route: Route, match: RegExpExecArray, url: URL, req: NodeRequest): Promise<JsonObject> {
  const input = route.method.input;
  let request: JsonObject = {};
  if (route.body !== "") {
    const body = await readJsonBody(req);
    if (route.body === "*") {
      if (body === null || typeof body !== "object" || Array.isArray(body)) throw new Error("request body must be a JSON object");
      request = { ...body };
    } else {
      request[route.body] = body;
    }
  }
  inferUpdateMask(route, request);
  route.variables.forEach((path, i) => setPath(request, path.split("."), decodeURIComponent(match[i + 1]!)));
  if (route.body !== "*") {
    for (const key of new Set(url.searchParams.keys())) {
      const fieldPath = resolveFieldPath(input, key);
      if (!fieldPath) throw new Error(`unknown query parameter "${key}"`);
      if (fieldPath[0]?.name === "update_mask") delete request["updateMask"]; // an explicit mask wins over the inferred one
      const field = fieldPath.at(-1)!;
      const values = url.searchParams.getAll(key).map((v) => queryValue(field, v, key));
      setPath(request, fieldPath.map((f) => f.jsonName), field.fieldKind === "list" ? values : values.at(-1)!);
    }
  }
  return enumsFromShort(input, request) as JsonObject;
}

/**
 * PATCH without an update_mask updates exactly the fields the body carries, as
 * grpc-gateway does: `PATCH /v1/tenants/{tenant.id} {"name":"x"}` means mask "name".
 * Path variables are identifiers, never part of the mask.
 */
function inferUpdateMask(route: Route, request: JsonObject): void {
  if (route.body === "" || route.body === "*") return;
  const input = route.method.input;
  const maskField = input.fields.find(
    (f) => f.name === "update_mask" && f.fieldKind === "message" && f.message.typeName === "google.protobuf.FieldMask",
  );
  const bodyField = input.fields.find((f) => f.name === route.body);
  const body = request[route.body];
  if (!maskField || bodyField?.fieldKind !== "message" || body === null || typeof body !== "object" || Array.isArray(body)) return;
  const identifiers = route.variables.filter((v) => v.startsWith(`${route.body}.`)).map((v) => v.slice(route.body.length + 1));
  const paths = Object.keys(body)
    .map((key) => bodyField.message.fields.find((f) => f.name === key || f.jsonName === key))
    .filter((f): f is DescField => f !== undefined && !identifiers.includes(f.name))
    .map((f) => f.jsonName);
  request[maskField.jsonName] = paths.join(",");
}

function queryValue(field: DescField, raw: string, key: string): JsonValue {
  const scalarBool = (field.fieldKind === "scalar" || field.fieldKind === "list") && field.scalar === 8; // ScalarType.BOOL
  if (!scalarBool) return raw;
  if (raw === "true" || raw === "1" || raw === "") return true;
  if (raw === "false" || raw === "0") return false;
  throw new Error(`query parameter "${key}" must be true or false`);
}

function resolveFieldPath(desc: DescMessage, dotted: string): DescField[] | undefined {
  const path: DescField[] = [];
  let current: DescMessage | undefined = desc;
  for (const part of dotted.split(".")) {
    const field: DescField | undefined = current?.fields.find((f) => f.name === part || f.jsonName === part);
    if (!field) return undefined;
    path.push(field);
    current = field.fieldKind === "message" ? field.message : undefined;
  }
  return path;
}

function setPath(target: JsonObject, path: readonly string[], value: JsonValue): void {
  let node = target;
  path.slice(0, -1).forEach((key) => {
    const next = node[key];
    if (next === null || typeof next !== "object" || Array.isArray(next)) node[key] = {};
    node = node[key] as JsonObject;
  });
  node[path.at(-1)!] = value;
}

async function readJsonBody(req: NodeRequest): Promise<JsonValue> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new Error(`request body exceeds ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8").trim();
  if (text === "") return {};
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    throw new Error("request body is not valid JSON");
  }
}

async function invoke(route: Route, request: JsonObject, req: NodeRequest, res: NodeResponse, contextValues: ContextValues) {
  const header = new Headers({ "content-type": "application/json", "connect-protocol-version": "1" });
  for (const name of FORWARDED_HEADERS) {
    const value = req.headers[name];
    if (typeof value === "string") header.set(name, value);
  }
  const abort = new AbortController();
  res.once("close", () => abort.abort());
  const uRes = await route.handler({
    httpVersion: req.httpVersion,
    method: "POST",
    url: `http://rest.invalid${route.handler.requestPath}`,
    header,
    body: request,
    signal: abort.signal,
    contextValues: contextValues.set(restRouteKey, route.template),
  });
  const chunks: Uint8Array[] = [];
  for await (const chunk of uRes.body ?? []) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString("utf8");
  const requestId = uRes.header?.get("x-request-id");
  if (requestId) res.setHeader("x-request-id", requestId);
  const json = text === "" ? {} : (JSON.parse(text) as JsonObject);
  if (uRes.status !== 200) {
    sendJson(res, uRes.status, restError(json));
    return;
  }
  let body = enumsToShort(route.method.output, json);
  if (route.responseBody !== "") {
    const field = route.method.output.fields.find((f) => f.name === route.responseBody);
    body = (body as JsonObject)[field?.jsonName ?? route.responseBody] ?? {};
  }
  sendJson(res, 200, body);
}

/** A Connect error body, with field violations decoded so curl users can read them. */
function restError(json: JsonObject): JsonObject {
  const out: JsonObject = { code: json["code"] ?? "unknown", message: json["message"] ?? "" };
  const details = Array.isArray(json["details"]) ? json["details"] : [];
  for (const d of details) {
    if (d === null || typeof d !== "object" || Array.isArray(d)) continue;
    if (d["type"] === BadRequestSchema.typeName && typeof d["value"] === "string") {
      const badRequest = fromBinary(BadRequestSchema, Buffer.from(d["value"], "base64"));
      out["fieldViolations"] = badRequest.fieldViolations.map((v) => ({ field: v.field, description: v.description }));
    }
  }
  return out;
}

export function sendJson(res: NodeResponse, status: number, body: JsonValue): void {
  const payload = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader("content-type", "application/json; charset=utf-8");
  res.setHeader("content-length", Buffer.byteLength(payload));
  res.end(payload);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
