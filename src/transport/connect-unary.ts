import { Code, ConnectError } from "@connectrpc/connect";
import {
  compressionNegotiate,
  invokeUnaryImplementation,
  mergeNonProtocolHeaders,
} from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  contentTypeUnaryJson,
  contentTypeUnaryProto,
  errorToJsonBytes,
  headerContentType,
  headerTimeout,
  headerUnaryAcceptEncoding,
  headerUnaryContentLength,
  headerUnaryEncoding,
  parseContentType,
  parseTimeout,
  trailerMux,
} from "@connectrpc/connect/protocol-connect";
import { unaryCallContext, type HandlerOptions, type UnarySerialization, type UnarySpec, type WholeUnaryHandler } from "./unary-call.js";

/**
 * A Connect-protocol unary handler for calls whose body is already in hand
 * (made per RPC by whole-unary.ts): connect-es's own unary handler (protocol-connect's
 * handler-factory), step for step and with its own parts — content type,
 * timeout, request gate, compression both ways, serialization and its limits,
 * interceptors, error bodies, `trailer-` headers — minus what a body read whole
 * does not need: the router's protocol negotiation, a parsed URL (only GET has
 * a query), and the async iterables that carry the body in and the answer out.
 *
 * REST, which calls the same interceptors and implementations without it, ran at
 * three times Connect's req/s on the same server; skipping it took a third off the
 * server CPU of a cached Connect JSON read at a fixed rate (475–528 → 275–358 µs). It must be
 * made from the router's own options: test/unit/unary-adapter.test.ts holds its
 * answers to connect's, byte for byte.
 */
export function connectUnaryHandler(
  opt: HandlerOptions,
  spec: UnarySpec,
  serialization: UnarySerialization,
): WholeUnaryHandler {
  return async function handle(req) {
    // The caller took only Connect unary content types.
    const type = parseContentType(req.header.get(headerContentType))!;
    const timeout = parseTimeout(req.header.get(headerTimeout), opt.maxTimeoutMs);
    const context = unaryCallContext(opt, spec, req, {
      protocolName: "connect",
      timeoutMs: timeout.timeoutMs,
      responseHeader: { [headerContentType]: type.binary ? contentTypeUnaryProto : contentTypeUnaryJson },
    });
    const compression = compressionNegotiate(opt.acceptCompression, req.header.get(headerUnaryEncoding), req.header.get(headerUnaryAcceptEncoding), headerUnaryAcceptEncoding);
    let status = 200;
    let body: Uint8Array;
    try {
      if (opt.requestGate !== undefined) await opt.requestGate(context);
      if (compression.error) throw compression.error;
      if (timeout.error) throw timeout.error;
      const bytes = compression.request ? await compression.request.decompress(req.body, opt.readMaxBytes) : req.body;
      const input = serialization.getI(type.binary).parse(bytes);
      const output = await invokeUnaryImplementation(spec, context, input, opt.interceptors);
      body = serialization.getO(type.binary).serialize(output);
    } catch (e) {
      context.abort(e);
      const error = e instanceof ConnectError ? e : new ConnectError("internal error", Code.Internal, undefined, undefined, e);
      status = codeToHttpStatus(error.code);
      context.responseHeader.set(headerContentType, contentTypeUnaryJson);
      // Metadata of an error parsed from the wire is not relayed, only its payload.
      if (!error.isWireError) mergeNonProtocolHeaders(context.responseHeader, error.metadata);
      body = errorToJsonBytes(error, opt.jsonOptions);
    } finally {
      context.abort();
    }
    if (compression.response && body.byteLength >= opt.compressMinBytes) {
      body = await compression.response.compress(body);
      context.responseHeader.set(headerUnaryEncoding, compression.response.name);
    }
    const header = trailerMux(context.responseHeader, context.responseTrailer);
    header.set(headerUnaryContentLength, body.byteLength.toString(10));
    return { status, header, body };
  };
}
