import type http from "node:http";
import { promisify } from "node:util";
import zlib from "node:zlib";
import type http2 from "node:http2";
import { fromJson, toJson, type DescMessage, type JsonObject, type JsonReadOptions, type JsonValue, type JsonWriteOptions, type Message } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, type HandlerContext, type Interceptor, type MethodImplSpec, type ServiceImplSpec } from "@connectrpc/connect";
import { createAsyncIterable, invokeUnaryImplementation, transformInvokeImplementation } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, codeToString } from "@connectrpc/connect/protocol-connect";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import { TenantRegistryService, type ExportAuditEventsRequest, type ExportAuditEventsResponse } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import type { AuditSigner } from "../domain/audit-chain.js";
import type { ChainBaseReader } from "../service/audit-chain.js";
import { EXPORT_FORMATS, writeAuditExport, type ExportFormat } from "./rest-export.js";
import { InvalidArgumentError } from "../domain/errors.js";
import { isClientGone } from "./client-faults.js";
import { invalidArgument } from "./errors.js";
import { inexactInteger, inexactIntegerMessage } from "./json-numbers.js";
import { restRouteKey } from "./context.js";
import type { Logger } from "../logger.js";
import { createEnumsFromShort, createEnumsToShort } from "./rest-json.js";
import { compileRestRoutes, createFieldLookups, isBoolField, queryFieldPath, variableValue, type RestRoute } from "./rest-routes.js";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

const MAX_BODY_BYTES = 4 * 1024 * 1024;

// Hop-by-hop headers (RFC 9110 §7.6.1) describe this connection, not the call;
// content-length and content-encoding describe the REST body, which is decoded
// here. Every other header reaches the interceptors and handlers, as on gRPC.
const NOT_FORWARDED = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
  "content-length",
  "content-encoding",
]);
const NOT_RETURNED = new Set(["content-type", "content-length", "content-encoding", "transfer-encoding", "connection"]);

// Prebuilt, so a real abort costs no stack trace; a finished call is never aborted.
const CLIENT_GONE = new ConnectError("the client closed the connection", Code.Canceled);

export type RestOptions = {
  /** The implementations the Connect router serves; REST calls run the same ones. */
  readonly services: readonly ServiceImplSpec[];
  /** The router's interceptors, in the same order: auth, logging and error mapping apply to REST as well. */
  readonly interceptors: readonly Interceptor[];
  readonly jsonOptions?: Partial<JsonWriteOptions>;
  /** Aborts running REST calls with its reason, like the router's shutdownSignal. */
  readonly shutdownSignal?: AbortSignal;
  readonly logger: Logger;
  /** Signs the tail of a full audit export; without it exports carry no checkpoint. */
  readonly auditSigner?: AuditSigner;
  /** Where audit chains start, for the base line of a full export of a chain cut by retention. */
  readonly auditChainBase?: ChainBaseReader;
  readonly clock?: () => Date;
};

// The one server-streaming RPC with a REST path (see rest-export.ts).
const EXPORT_ROUTE = { get: "/v1/tenants/{tenant_id}/audit/events:export", method: TenantRegistryService.method.exportAuditEvents };

export type RestHandler = (req: NodeRequest, res: NodeResponse, contextValues: ContextValues) => Promise<boolean>;
// Invalid bytes are refused, not stored as U+FFFD.
const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * REST paths from the `google.api.http` annotations, compiled at start-up
 * (rest-routes.ts). A REST call is decoded straight into the request message,
 * runs the same implementation through the same interceptors as gRPC and
 * Connect, and its response message is written straight as REST JSON, so
 * adding an annotation to the proto is all a new RPC needs to get a REST path.
 */
export function createRestHandler(options: RestOptions): RestHandler {
  const servesExport = options.services.some((s) => s.service === EXPORT_ROUTE.method.parent);
  const router = compileRestRoutes(
    options.services.map((s) => s.service),
    servesExport ? [EXPORT_ROUTE] : [],
  );
  const specs = new Map<RestRoute["method"], Extract<MethodImplSpec, { kind: "unary" | "server_streaming" }>>();
  for (const service of options.services) {
    for (const spec of Object.values(service.methods)) {
      if (spec.kind === "unary" || spec.kind === "server_streaming") specs.set(spec.method, spec);
    }
  }
  for (const route of router.routes) {
    if (!specs.has(route.method)) throw new Error(`no implementation for ${route.method.parent.typeName}.${route.method.name}`);
  }
  const clock = options.clock ?? (() => new Date());
  const interceptors = [...options.interceptors];
  // Strict, as REST always was: an unknown field or enum label is a 400 naming it.
  const readOptions: Partial<JsonReadOptions> = { ignoreUnknownFields: false };
  const writeOptions: Partial<JsonWriteOptions> = { ...options.jsonOptions };
  const fromShort = createEnumsFromShort();
  const toShort = createEnumsToShort();
  const lookups = createFieldLookups();
  // Warm every plan now, so the first call pays nothing and a recursive schema shows at start-up.
  for (const route of router.routes) {
    fromShort.convert(route.method.input, {});
    toShort.convert(route.method.output, {});
  }

  const running = new Set<AbortController>();
  options.shutdownSignal?.addEventListener("abort", () => {
    for (const abort of running) abort.abort(options.shutdownSignal!.reason);
  });

  async function decode(route: RestRoute, segments: readonly string[], query: string, req: NodeRequest): Promise<Message> {
    const input = route.method.input;
    let json: JsonObject = {};
    if (route.body !== "") {
      const body = await readJsonBody(req);
      if (route.body === "*") {
        if (body === null || typeof body !== "object" || Array.isArray(body)) throw new RestInputError("request body must be a JSON object");
        json = body;
      } else {
        json[route.body.jsonName] = body;
        inferUpdateMask(route, json);
      }
    }
    for (const variable of route.variables) {
      let value: string;
      try {
        value = variableValue(variable, segments);
      } catch {
        throw new RestInputError(`path variable "${variable.fieldPath.map((f) => f.name).join(".")}" is not valid percent-encoding`);
      }
      setPath(json, variable.fieldPath.map((f) => f.jsonName), value);
    }
    if (route.body !== "*" && query !== "") {
      const params = new URLSearchParams(query);
      for (const key of new Set(params.keys())) {
        const fieldPath = queryFieldPath(input, key, lookups);
        if (!fieldPath) throw new RestInputError(`unknown query parameter "${key}"`);
        if (fieldPath[0]!.name === "update_mask") delete json["updateMask"]; // an explicit mask wins over the inferred one
        const field = fieldPath.at(-1)!;
        const values = params.getAll(key).map((v) => queryValue(isBoolField(field), v, key));
        setPath(json, fieldPath.map((f) => f.jsonName), field.fieldKind === "list" ? values : values.at(-1)!);
      }
    }
    const converted = fromShort.convert(input, json);
    try {
      return fromJson(input, converted, readOptions);
    } catch (error) {
      // protobuf-es names the type that failed, not the field ("cannot decode message
      // google.protobuf.Timestamp from JSON"): find the field by decoding part by part.
      const message = error instanceof Error ? error.message : String(error);
      const field = failingField(input, converted, readOptions);
      throw field === undefined ? new ConnectError(message, Code.InvalidArgument) : invalidArgument(InvalidArgumentError.field(field, message));
    }
  }

  function encode(route: RestRoute, output: Message): JsonValue {
    const field = route.responseBody;
    if (field?.fieldKind === "message") {
      const sub = (output as unknown as Record<string, Message | undefined>)[field.localName];
      return sub === undefined ? {} : toShort.convert(field.message, toJson(field.message, sub, writeOptions));
    }
    const json = toShort.convert(route.method.output, toJson(route.method.output as DescMessage, output, writeOptions)) as JsonObject;
    return field ? (json[field.jsonName] ?? {}) : json;
  }

  return async function handleRest(req, res, contextValues) {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const pathname = q < 0 ? url : url.slice(0, q);
    const match = router.match(req.method ?? "", pathname);
    if (match.kind === "not_found") return false;
    if (match.kind === "method_not_allowed") {
      res.setHeader("allow", match.allowed.join(", "));
      sendJson(res, 405, { code: "method_not_allowed", message: `${req.method} is not allowed on ${pathname}` });
      return true;
    }
    const { route, segments } = match;
    const spec = specs.get(route.method)!;
    contextValues.set(restRouteKey, route.template);

    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableEnded) abort.abort(CLIENT_GONE);
    };
    res.once("close", onClose);
    running.add(abort);
    const context: HandlerContext = {
      service: route.method.parent,
      method: route.method,
      protocolName: "rest",
      requestMethod: req.method ?? "",
      url: `http://rest.invalid${url}`,
      signal: abort.signal,
      timeoutMs: () => undefined,
      requestHeader: forwardedHeaders(req),
      responseHeader: new Headers(),
      responseTrailer: new Headers(),
      values: contextValues,
    };
    try {
      if (spec.kind === "server_streaming") {
        // Only the export: `format` is the route's own parameter, not a request field.
        const params = new URLSearchParams(q < 0 ? "" : url.slice(q + 1));
        const format = params.get("format") ?? "ndjson";
        if (params.getAll("format").length > 1 || !(EXPORT_FORMATS as readonly string[]).includes(format)) {
          const description = `must be one of ${EXPORT_FORMATS.join(", ")}`;
          sendJson(res, 400, { code: "invalid_argument", message: `format: ${description}`, fieldViolations: [{ field: "format", description }] });
          return true;
        }
        params.delete("format");
        const input = (await decode(route, segments, params.toString(), req)) as ExportAuditEventsRequest;
        const stream = transformInvokeImplementation(spec, context, interceptors)(createAsyncIterable([input]))[Symbol.asyncIterator]() as AsyncIterator<ExportAuditEventsResponse>;
        // Auth, validation and a missing tenant fail the first pull, before any header is sent.
        const first = await stream.next();
        copyResponseHeaders(context.responseHeader, res);
        try {
          await writeAuditExport({ res, format: format as ExportFormat, request: input, first, rest: stream, signer: options.auditSigner, chainBase: options.auditChainBase, writeOptions, clock, signal: abort.signal });
        } catch (error) {
          if (!(error instanceof ConnectError) && !abort.signal.aborted) options.logger.error({ err: error, route: route.template }, "rest export failed");
          if ("stream" in res) res.stream.destroy();
          else res.destroy();
        }
        return true;
      }
      const input = await decode(route, segments, q < 0 ? "" : url.slice(q + 1), req);
      const output = await invokeUnaryImplementation(spec, context, input, interceptors);
      copyResponseHeaders(context.responseHeader, res);
      sendJson(res, 200, encode(route, output));
    } catch (error) {
      if (error instanceof RestInputError) {
        sendJson(res, 400, { code: "invalid_argument", message: error.message });
        return true;
      }
      if (!(error instanceof ConnectError)) {
        if (isClientGone(error, res)) {
          // The client left mid-body: nobody to answer, nothing wrong here (as on the RPC paths).
          options.logger.debug({ code: (error as NodeJS.ErrnoException).code, route: route.template }, "rest: the client went away");
          return true;
        }
        options.logger.error({ err: error, route: route.template }, "rest call failed outside the interceptors");
      }
      const connectError = error instanceof ConnectError ? error : new ConnectError("internal error", Code.Internal);
      copyResponseHeaders(connectError.metadata, res);
      sendJson(res, codeToHttpStatus(connectError.code), restError(connectError));
    } finally {
      running.delete(abort);
    }
    return true;
  };
}

/**
 * The proto path of the field whose JSON `fromJson` cannot read (e.g. "start_time",
 * "events[1].created"), found by decoding one field at a time; undefined when no
 * single field fails. Only on the error path: a request that decodes never gets here.
 */
function failingField(desc: DescMessage, json: JsonValue, options: Partial<JsonReadOptions>, depth = 0): string | undefined {
  if (json === null || typeof json !== "object" || Array.isArray(json) || depth > 16) return undefined;
  for (const [key, value] of Object.entries(json)) {
    try {
      fromJson(desc, { [key]: value }, options);
      continue;
    } catch {
      // this one
    }
    const field = desc.fields.find((f) => f.jsonName === key || f.name === key);
    if (!field) return key;
    if (field.fieldKind === "message" && !field.message.typeName.startsWith("google.protobuf.")) {
      const inner = failingField(field.message, value, options, depth + 1);
      return inner === undefined ? field.name : `${field.name}.${inner}`;
    }
    if (field.fieldKind === "list" && field.listKind === "message" && Array.isArray(value) && !field.message.typeName.startsWith("google.protobuf.")) {
      for (let i = 0; i < value.length; i++) {
        try {
          fromJson(field.message, value[i] ?? null, options);
        } catch {
          const inner = failingField(field.message, value[i] ?? null, options, depth + 1);
          return `${field.name}[${i}]${inner === undefined ? "" : `.${inner}`}`;
        }
      }
    }
    return field.name;
  }
  return undefined;
}

/** Bad REST input found before the call (body, path, query): answered 400 with the reason. */
class RestInputError extends Error {}

/**
 * PATCH without an update_mask updates exactly the fields the body carries, as
 * grpc-gateway does: `PATCH /v1/tenants/{tenant.id} {"name":"x"}` means mask "name".
 * Path variables are identifiers, never part of the mask.
 */
function inferUpdateMask(route: RestRoute, json: JsonObject): void {
  const bodyField = route.body;
  if (bodyField === "" || bodyField === "*" || bodyField.fieldKind !== "message") return;
  const maskField = route.method.input.fields.find(
    (f) => f.name === "update_mask" && f.fieldKind === "message" && f.message.typeName === "google.protobuf.FieldMask",
  );
  const body = json[bodyField.jsonName];
  if (!maskField || body === null || typeof body !== "object" || Array.isArray(body)) return;
  const identifiers = new Set(route.variables.filter((v) => v.fieldPath[0] === bodyField).map((v) => v.fieldPath[1]?.name));
  const paths: string[] = [];
  for (const key of Object.keys(body)) {
    const field = bodyField.message.fields.find((f) => f.name === key || f.jsonName === key);
    if (field && !identifiers.has(field.name)) paths.push(field.jsonName);
  }
  json[maskField.jsonName] = paths.join(",");
}

function queryValue(isBool: boolean, raw: string, key: string): JsonValue {
  if (!isBool) return raw;
  if (raw === "true" || raw === "1" || raw === "") return true;
  if (raw === "false" || raw === "0") return false;
  throw new RestInputError(`query parameter "${key}" must be true or false`);
}

function setPath(target: JsonObject, path: readonly string[], value: JsonValue): void {
  let node = target;
  for (let i = 0; i < path.length - 1; i++) {
    const next = node[path[i]!];
    if (next === null || typeof next !== "object" || Array.isArray(next)) node[path[i]!] = {};
    node = node[path[i]!] as JsonObject;
  }
  node[path.at(-1)!] = value;
}

function forwardedHeaders(req: NodeRequest): Headers {
  const header = new Headers();
  const raw = req.rawHeaders;
  // Names the Connection header lists are hop-by-hop too.
  const connection = req.headers["connection"];
  const listed = typeof connection === "string" ? new Set(connection.toLowerCase().split(",").map((s) => s.trim())) : undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name.startsWith(":") || NOT_FORWARDED.has(name) || listed?.has(name)) continue;
    header.append(name, raw[i + 1]!);
  }
  return header;
}

function copyResponseHeaders(from: Headers, res: NodeResponse): void {
  from.forEach((value, name) => {
    if (!NOT_RETURNED.has(name)) res.setHeader(name, value);
  });
}

async function readJsonBody(req: NodeRequest): Promise<JsonValue> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new RestInputError(`request body exceeds ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const raw = await decompressed(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), req.headers["content-encoding"]);
  let text: string;
  try {
    text = STRICT_UTF8.decode(raw).trim();
  } catch {
    throw new RestInputError("request body is not valid UTF-8");
  }
  if (text === "") return {};
  const inexact = inexactInteger(text);
  if (inexact !== undefined) throw new RestInputError(inexactIntegerMessage(inexact));
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    throw new RestInputError("request body is not valid JSON");
  }
}

const gunzip = promisify(zlib.gunzip);
const brotliDecompress = promisify(zlib.brotliDecompress);

/** The body as sent, before its Content-Encoding (gzip or br, as the RPC protocols accept), within the body limit. */
async function decompressed(body: Buffer, encoding: string | undefined): Promise<Buffer> {
  const name = encoding?.trim().toLowerCase() ?? "";
  if (name === "" || name === "identity") return body;
  const inflate = name === "gzip" ? gunzip : name === "br" ? brotliDecompress : undefined;
  if (!inflate) throw new RestInputError(`content-encoding "${name.slice(0, 40)}" is not supported: send gzip, br or identity`);
  try {
    return await inflate(body, { maxOutputLength: MAX_BODY_BYTES });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") throw new RestInputError(`request body exceeds ${MAX_BODY_BYTES} bytes once decompressed`);
    throw new RestInputError(`request body is not valid ${name}`);
  }
}

/** A Connect error as REST JSON, with field violations decoded so curl users can read them. */
function restError(error: ConnectError): JsonObject {
  const out: JsonObject = { code: codeToString(error.code), message: error.rawMessage };
  const violations = error.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations);
  if (violations.length > 0) out["fieldViolations"] = violations.map((v) => ({ field: v.field, description: v.description }));
  return out;
}

export function sendJson(res: NodeResponse, status: number, body: JsonValue): void {
  const payload = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader("content-type", "application/json; charset=utf-8");
  res.setHeader("content-length", Buffer.byteLength(payload));
  res.end(payload);
}
