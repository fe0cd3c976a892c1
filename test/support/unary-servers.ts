import http from "node:http";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createConnectRouter, createContextValues, createServiceImplSpec, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, connectNodeAdapter } from "@connectrpc/connect-node";
import { TenantSchema } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { createLogger } from "../../src/logger.js";
import { createClientFaultGate, strictUtf8Decoder } from "../../src/transport/client-faults.js";
import { DEFAULT_LIMITS, listen, type Listening, type RequestHandler } from "../../src/transport/server.js";
import { serveUnary, takesUnaryAdapter } from "../../src/transport/unary-adapter.js";
import type { WholeUnaryHandler, WholeUnaryRequest } from "../../src/transport/unary-call.js";
import { createWholeUnaryHandlers, type WholeUnaryHandlers } from "../../src/transport/whole-unary.js";

// One RPC served three ways, so that tests can hold the lean paths to connect-node's own
// answers: the lean adapter with the whole-body handlers (as the service runs), the lean
// adapter through the router's generic handler, and connect-node's adapter.

export const logger = createLogger("silent");
export const READ_MAX = 64 * 1024;
export const PATH = `/${TenantRegistryService.typeName}/GetTenantBySlug`;

/** What the handler saw of the call's signal, by slug (a "hold-" call waits for its abort). */
export const aborted = new Map<string, unknown>();

export const getTenantBySlug: ServiceImpl<typeof TenantRegistryService>["getTenantBySlug"] = async (req, ctx) => {
  if (req.slug === "throw") throw new Error("not a ConnectError");
  if (req.slug === "missing") {
    ctx.responseHeader.set("x-seen", "yes");
    throw new ConnectError("tenant missing not found", Code.NotFound, { "x-detail": "on the error" });
  }
  if (req.slug.startsWith("hold-")) {
    await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
    aborted.set(req.slug, ctx.signal.reason);
    throw ConnectError.from(ctx.signal.reason);
  }
  ctx.responseHeader.set("x-seen", "yes");
  ctx.responseTrailer.set("x-after", "done");
  if (req.slug === "scheme") return { tenant: create(TenantSchema, { slug: req.slug, name: new URL(ctx.url).protocol }) };
  if (req.slug === "timeout") return { tenant: create(TenantSchema, { slug: req.slug, name: String(ctx.timeoutMs() !== undefined) }) };
  const big = req.slug === "big";
  return { tenant: create(TenantSchema, { slug: req.slug, name: big ? "n".repeat(4_000) : "Acme" }) };
};

export function routes(router: ConnectRouter): void {
  router.rpc(TenantRegistryService.method.getTenantBySlug, getTenantBySlug);
}

export const options = {
  jsonOptions: { alwaysEmitImplicit: true, textDecoder: strictUtf8Decoder() },
  requestGate: createClientFaultGate(logger),
  readMaxBytes: READ_MAX,
  acceptCompression: [compressionGzip, compressionBrotli],
};

export const implementationSpec = () => createServiceImplSpec<typeof TenantRegistryService>(TenantRegistryService, { getTenantBySlug });

/** Calls answered by the whole-body handlers, by protocol, so that a test can tell they ran. */
export const wholeCalls = { connect: 0, grpc: 0 };

/** The router behind the lean adapter, as the service's HTTP handler uses it: with the whole-body handlers, or without. */
export function leanHandler(withWhole = true): RequestHandler {
  const router = createConnectRouter(options);
  routes(router);
  const rpcs = new Map(router.handlers.map((h) => [h.requestPath, h]));
  const counted = (protocol: keyof typeof wholeCalls, h: WholeUnaryHandler | undefined): WholeUnaryHandler | undefined =>
    h &&
    ((call) => {
      wholeCalls[protocol]++;
      return h(call);
    });
  const whole = new Map<string, WholeUnaryHandlers>();
  for (const [path, h] of createWholeUnaryHandlers([implementationSpec()], options)) whole.set(path, { connect: counted("connect", h.connect), grpc: counted("grpc", h.grpc) });
  const standard = connectNodeAdapter({ ...options, routes });
  return (req, res) => {
    const path = (req.url ?? "").split("?", 1)[0]!;
    const rpc = rpcs.get(path);
    if (rpc && takesUnaryAdapter(rpc, req, READ_MAX)) serveUnary(rpc, req, res, createContextValues(), READ_MAX, (e) => logger.error(e), withWhole ? whole.get(path) : undefined);
    else standard(req as http.IncomingMessage, res as http.ServerResponse);
  };
}

export type UnaryServers = { lean: Listening; generic: Listening; reference: Listening; close(): Promise<void> };

export async function startUnaryServers(): Promise<UnaryServers> {
  const lean = await listen(leanHandler(), { host: "127.0.0.1", port: 0 }, logger, DEFAULT_LIMITS);
  const generic = await listen(leanHandler(false), { host: "127.0.0.1", port: 0 }, logger, DEFAULT_LIMITS);
  const standard = connectNodeAdapter({ ...options, routes });
  const reference = await listen((req, res) => standard(req as http.IncomingMessage, res as http.ServerResponse), { host: "127.0.0.1", port: 0 }, logger, DEFAULT_LIMITS);
  return {
    lean,
    generic,
    reference,
    close: async () => {
      await Promise.all([lean.close(100), generic.close(100), reference.close(100)]);
    },
  };
}

/** A call handed straight to a whole-body handler, as the lean adapter hands it on. */
export function wholeCall(contentType: string, body: Uint8Array): WholeUnaryRequest {
  return { url: `http://localhost${PATH}`, header: new Headers({ "content-type": contentType }), body, signal: new AbortController().signal, contextValues: createContextValues() };
}
