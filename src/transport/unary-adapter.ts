import type http from "node:http";
import type http2 from "node:http2";
import { Code, ConnectError, type ContextValues } from "@connectrpc/connect";
import { createAsyncIterable, type UniversalHandler, type UniversalServerRequest, type UniversalServerResponse } from "@connectrpc/connect/protocol";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

// Connect's unary content types (application/json, application/proto, with parameters such
// as charset); its streaming ones are application/connect+…, gRPC's application/grpc….
const CONNECT_UNARY = /^application\/(json|proto)(;|$)/i;

const DECIMAL = /^\d{1,12}$/;

// Prebuilt: a stack trace is what makes an abort reason expensive, and a finished call is never aborted.
const CLIENT_GONE = new ConnectError("the client closed the connection", Code.Canceled);

/**
 * Whether a call can take the lean adapter below: a Connect unary POST whose body is
 * declared (content-length) and within the router's limit. Everything else (GET, gRPC,
 * gRPC-Web, streams, a chunked or oversized body) goes through connect-node's adapter.
 */
export function takesUnaryAdapter(handler: UniversalHandler, req: NodeRequest, readMaxBytes: number): boolean {
  if (req.method !== "POST" || handler.method.methodKind !== "unary") return false;
  const contentType = req.headers["content-type"];
  if (contentType === undefined || !CONNECT_UNARY.test(contentType)) return false;
  const length = req.headers["content-length"];
  return length !== undefined && DECIMAL.test(length) && Number(length) <= readMaxBytes;
}

/**
 * A lean Node adapter for Connect unary calls, in front of connect's own handler.
 *
 * The protocol stays connect-es's: content types, compression, timeouts, the request
 * gate, interceptors, error bodies and trailers are all the router's handler. What this
 * replaces is the generic glue around it (connect-node's universalRequestFromNodeRequest
 * and universalResponseToNodeResponse), which streams the body through async iterators,
 * builds a URL, and aborts every finished call with a fresh DOMException. A CPU profile of
 * a bare connect-node server answering a constant put that glue at ~40 % of its CPU per
 * unary call; a body that is declared, bounded and read whole before the call needs none
 * of it, and the response is one buffer.
 */
export function serveUnary(
  handler: UniversalHandler,
  req: NodeRequest,
  res: NodeResponse,
  contextValues: ContextValues,
  onFailure: (error: unknown) => void,
): void {
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  // A client that goes away before the whole body arrived never starts a call.
  req.once("end", () => {
    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableEnded) abort.abort(CLIENT_GONE);
    };
    res.once("close", onClose);
    const authority = "authority" in req ? req.authority : req.headers.host;
    const uReq: UniversalServerRequest = {
      httpVersion: req.httpVersion,
      method: "POST",
      url: `http://${authority ?? "localhost"}${req.url}`,
      header: webHeaders(req.headers),
      // Read whole already; connect still checks it against readMaxBytes and content-length.
      body: createAsyncIterable([chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)]),
      signal: abort.signal,
      contextValues,
    };
    handler(uReq)
      .then((uRes) => writeResponse(uRes, res))
      .catch((error: unknown) => {
        onFailure(error);
        if (!res.headersSent) {
          res.statusCode = 500;
          res.end();
        } else res.destroy();
      })
      .finally(() => res.off("close", onClose));
  });
}

async function writeResponse(uRes: UniversalServerResponse, res: NodeResponse): Promise<void> {
  const parts: Uint8Array[] = [];
  if (uRes.body !== undefined) for await (const chunk of uRes.body as AsyncIterable<Uint8Array>) parts.push(chunk);
  const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  res.statusCode = uRes.status;
  // A unary Connect answer carries its trailers as headers (trailer-…): there are no HTTP trailers.
  uRes.header?.forEach((value, name) => {
    res.setHeader(name, value);
  });
  res.end(body);
}

// As connect-node converts them: pseudo-headers (h2) are not headers of the call.
function webHeaders(nodeHeaders: http.IncomingHttpHeaders): Headers {
  const header = new Headers();
  for (const name in nodeHeaders) {
    if (name.startsWith(":")) continue;
    const value = nodeHeaders[name];
    if (typeof value === "string") header.append(name, value);
    else if (Array.isArray(value)) for (const v of value) header.append(name, v);
  }
  return header;
}
