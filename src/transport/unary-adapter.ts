import type http from "node:http";
import type http2 from "node:http2";
import { Code, ConnectError, type ContextValues } from "@connectrpc/connect";
import { universalResponseToNodeResponse } from "@connectrpc/connect-node";
import { createAsyncIterable, type UniversalHandler, type UniversalServerRequest, type UniversalServerResponse } from "@connectrpc/connect/protocol";
import type { WholeUnaryAnswer } from "./unary-call.js";
import { wholeUnaryFor, type WholeUnaryHandlers } from "./whole-unary.js";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

// Unary calls of every protocol the router speaks: Connect (application/json, application/proto,
// with parameters such as charset), gRPC (application/grpc, +proto, +json) and gRPC-Web.
// Connect's streaming types are application/connect+…, which this does not match.
const UNARY_CONTENT_TYPE = /^application\/(json|proto|grpc|grpc-web)([+;]|$)/i;

const DECIMAL = /^\d{1,12}$/;

// Prebuilt: a stack trace is what makes an abort reason expensive, and a finished call is never aborted.
const CLIENT_GONE = new ConnectError("the client closed the connection", Code.Canceled);

/**
 * Whether a call can take the lean adapter below: a unary POST, Connect, gRPC or gRPC-Web,
 * whose body is not declared larger than the router's limit. GET, streams and bodies
 * declared too large go through connect-node's adapter.
 */
export function takesUnaryAdapter(handler: UniversalHandler, req: NodeRequest, readMaxBytes: number): boolean {
  if (req.method !== "POST" || handler.method.methodKind !== "unary") return false;
  const contentType = req.headers["content-type"];
  if (contentType === undefined || !UNARY_CONTENT_TYPE.test(contentType)) return false;
  const length = req.headers["content-length"];
  // connect-es and gRPC clients send no content-length (chunked, or h2 without one).
  return length === undefined || (DECIMAL.test(length) && Number(length) <= readMaxBytes);
}

/**
 * A lean Node adapter for unary calls, in front of connect's own handler.
 *
 * The protocol stays connect-es's: content types, compression, timeouts, the request
 * gate, interceptors, error bodies, trailers are all the router's handler. What this
 * replaces is the generic glue around it (connect-node's universalRequestFromNodeRequest
 * and universalResponseToNodeResponse), which streams the body through async iterators,
 * builds a URL, and aborts every finished call with a fresh DOMException. A CPU profile of
 * a bare connect-node server answering a constant put that glue at ~40 % of its CPU per
 * unary call; a body read whole before the call needs none of it, and the answer is one
 * buffer (and, on gRPC, its trailers).
 *
 * A body that grows past `readMaxBytes` is handed on as it is, what was read followed by
 * the rest of the stream, to connect's handler and connect-node's writer, which refuse
 * it as they always do (and deal with the part of the body left unread).
 *
 * With `whole` (whole-unary.ts), a Connect or gRPC call whose body was read whole skips
 * the universal handler too: the body goes in as bytes and the answer comes out as bytes.
 */
export function serveUnary(
  handler: UniversalHandler,
  req: NodeRequest,
  res: NodeResponse,
  contextValues: ContextValues,
  readMaxBytes: number,
  onFailure: (error: unknown) => void,
  whole?: WholeUnaryHandlers,
): void {
  const chunks: Buffer[] = [];
  let size = 0;
  const abort = new AbortController();
  const onClose = () => {
    if (!res.writableEnded) abort.abort(CLIENT_GONE);
  };
  const run = (answer: () => Promise<void>) => {
    res.once("close", onClose);
    answer()
      .catch((error: unknown) => {
        onFailure(error);
        if (!res.headersSent) {
          res.statusCode = 500;
          res.end();
        } else res.destroy();
      })
      .finally(() => res.off("close", onClose));
  };
  const url = () => {
    const authority = "authority" in req ? req.authority : req.headers.host;
    const scheme = "encrypted" in req.socket && req.socket.encrypted ? "https" : "http";
    return `${scheme}://${authority ?? "localhost"}${req.url}`;
  };
  const call = (body: AsyncIterable<Uint8Array>, write: (uRes: UniversalServerResponse, res: NodeResponse) => Promise<void>) =>
    run(async () => {
      const uReq: UniversalServerRequest = {
        httpVersion: req.httpVersion,
        method: "POST",
        url: url(),
        header: webHeaders(req.headers),
        body,
        signal: abort.signal,
        contextValues,
      };
      await write(await handler(uReq), res);
    });
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    size += chunk.length;
    if (size <= readMaxBytes) return;
    req.off("data", onData);
    req.off("end", onEnd);
    req.pause();
    call(rest(chunks, req), universalResponseToNodeResponse);
  };
  // A client that goes away before the whole body arrived never starts a call.
  const onEnd = () => {
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    const handle = wholeUnaryFor(whole, req.headers["content-type"]);
    if (handle && lengthAgrees(req, body)) {
      run(async () => writeAnswer(await handle({ url: url(), header: webHeaders(req.headers), body, signal: abort.signal, contextValues }), res));
    } else call(createAsyncIterable([body]), writeResponse);
  };
  req.on("data", onData);
  req.once("end", onEnd);
}

async function* rest(read: readonly Buffer[], req: NodeRequest): AsyncIterable<Uint8Array> {
  yield* read;
  for await (const chunk of req.iterator({ destroyOnReturn: false })) yield chunk as Buffer;
}

// connect's body reader refuses a body that is not the length its header promised (HTTP/2
// does not enforce it); such a call goes there to be refused as connect refuses it.
function lengthAgrees(req: NodeRequest, body: Buffer): boolean {
  const length = req.headers["content-length"];
  return length === undefined || Number(length) === body.length;
}

/** An answer whose body is one buffer, as the whole-body handlers give it; connect's universal answers may have no header. */
type Answer = Omit<WholeUnaryAnswer, "header"> & { readonly header?: Headers | undefined };

function writeAnswer(answer: Answer, res: NodeResponse): void {
  res.statusCode = answer.status;
  answer.header?.forEach((value, name) => {
    res.setHeader(name, value);
  });
  if (!answer.trailer) return void res.end(answer.body);
  const trailers: Record<string, string> = {};
  answer.trailer.forEach((value, name) => (trailers[name] = value));
  res.addTrailers(trailers);
  if ("stream" in res) return void res.end(answer.body);
  // HTTP/1.1 carries trailers only after a chunked body: end(body) would declare a
  // content-length and drop them, and with them a gRPC call's status.
  res.write(answer.body);
  res.end();
}

async function writeResponse(uRes: UniversalServerResponse, res: NodeResponse): Promise<void> {
  const parts: Uint8Array[] = [];
  if (uRes.body !== undefined) for await (const chunk of uRes.body as AsyncIterable<Uint8Array>) parts.push(chunk);
  // The trailers are read after the body, which sets them.
  writeAnswer({ status: uRes.status, header: uRes.header, body: parts.length === 1 ? parts[0]! : Buffer.concat(parts), trailer: uRes.trailer }, res);
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
