import type http from "node:http";
import type http2 from "node:http2";
import type { JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type ConnectRouter } from "@connectrpc/connect";
import { universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { Registry } from "prom-client";
import openApiDocument from "../../gen/openapi.json" with { type: "json" };
import type { Logger } from "../logger.js";
import { isClientGone } from "./client-faults.js";
import { peerAddressKey } from "./context.js";
import type { Readiness } from "./health.js";
import { sendJson, type RestHandler } from "./rest.js";
import type { RequestHandler } from "./server.js";
import { serveUnary, takesUnaryAdapter } from "./unary-adapter.js";
import type { WholeUnaryHandlers } from "./whole-unary.js";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;

/**
 * The single request handler behind the port: Connect/gRPC/gRPC-Web by path,
 * then liveness, readiness and the REST surface's OpenAPI document, then the REST mapping.
 */
export function createHttpHandler(options: {
  router: ConnectRouter;
  /** The REST mapping (rest.ts), tried for every path the router does not serve. */
  rest: RestHandler;
  readiness: Readiness;
  logger: Logger;
  /** Served at GET /metrics, open like the health endpoints. */
  metrics: Registry;
  /** More open GET documents by path (the dev issuer's discovery and JWKS). */
  openDocuments?: ReadonlyMap<string, unknown>;
  /** The router's readMaxBytes: unary calls within it take the lean adapter (unary-adapter.ts). */
  readMaxBytes: number;
  /** By path: the router's Connect and gRPC unary calls without its generic handler (whole-unary.ts), made with its options. */
  wholeUnary?: ReadonlyMap<string, WholeUnaryHandlers>;
}): RequestHandler {
  const { router, readiness, logger, rest } = options;
  const rpcs = new Map(router.handlers.map((h) => [h.requestPath, h]));
  // Generated from the protos (tools/protoc-gen-openapi.ts) and open like /healthz: it is the public contract.
  const openApi = Buffer.from(JSON.stringify(openApiDocument));
  const openDocuments = options.openDocuments ?? new Map<string, unknown>();
  const contextValuesFor = (req: NodeRequest) => createContextValues().set(peerAddressKey, req.socket?.remoteAddress);

  return (req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0]!;
    const rpc = rpcs.get(path);
    if (rpc) {
      if (takesUnaryAdapter(rpc, req, options.readMaxBytes)) {
        const onFailure = (error: unknown) => logger.error({ err: error, path }, "rpc transport failure");
        serveUnary(rpc, req, res, contextValuesFor(req), options.readMaxBytes, onFailure, options.wholeUnary?.get(path));
        return;
      }
      const uReq = universalRequestFromNodeRequest(req, res, undefined, contextValuesFor(req));
      rpc(uReq)
        .then((uRes) => universalResponseToNodeResponse(uRes, res))
        .catch((error: unknown) => {
          if (ConnectError.from(error).code === Code.Aborted || isClientGone(error, res)) logger.debug({ code: (error as NodeJS.ErrnoException)?.code, path }, "rpc transport: the client went away");
          else logger.error({ err: error, path }, "rpc transport failure");
        });
      return;
    }
    if (path === "/healthz") {
      sendJson(res, 200, { status: "ok" });
      return;
    }
    if (path === "/openapi.json" && (req.method === "GET" || req.method === "HEAD")) {
      res.statusCode = 200;
      res.setHeader("content-type", "application/json; charset=utf-8");
      res.setHeader("content-length", openApi.length);
      if (req.method === "HEAD") res.end();
      else res.end(openApi);
      return;
    }
    if (openDocuments.has(path) && req.method === "GET") {
      sendJson(res, 200, openDocuments.get(path) as JsonValue);
      return;
    }
    if (path === "/readyz") {
      readiness
        .check()
        .then(({ ready, reason }) => sendJson(res, ready ? 200 : 503, ready ? { status: "ok" } : { status: "unavailable", reason: reason ?? "" }))
        .catch((error: unknown) => {
          logger.error({ err: error }, "readiness check failed");
          sendJson(res, 503, { status: "unavailable", reason: "readiness check failed" });
        });
      return;
    }
    if (path === "/metrics" && req.method === "GET") {
      sendMetrics(options.metrics, res, logger);
      return;
    }
    rest(req, res, contextValuesFor(req))
      .then((handled) => {
        if (!handled) sendJson(res, 404, { code: "not_found", message: `no route for ${req.method} ${path}` });
      })
      .catch((error: unknown) => {
        logger.error({ err: error, path }, "rest transport failure");
        if (!res.headersSent) sendJson(res, 500, { code: "internal", message: "internal error" });
      });
  };
}

/** Prometheus text format; shared with the METRICS_ADDR listener. */
export function sendMetrics(registry: Registry, res: http.ServerResponse | http2.Http2ServerResponse, logger: Logger): void {
  registry
    .metrics()
    .then((text) => {
      res.statusCode = 200;
      res.setHeader("content-type", registry.contentType);
      res.end(text);
    })
    .catch((error: unknown) => {
      logger.error({ err: error }, "metrics collection failed");
      sendJson(res, 500, { code: "internal", message: "metrics collection failed" });
    });
}
