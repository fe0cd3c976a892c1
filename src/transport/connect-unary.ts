import type { ContextValues, MethodImplSpec, ServiceImplSpec } from "@connectrpc/connect";
import { Code, ConnectError, createHandlerContext } from "@connectrpc/connect";
import {
  compressionNegotiate,
  createMethodSerializationLookup,
  createMethodUrl,
  invokeUnaryImplementation,
  mergeNonProtocolHeaders,
  validateUniversalHandlerOptions,
  type MethodSerializationLookup,
  type UniversalHandlerOptions,
} from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  contentTypeUnaryJson,
  contentTypeUnaryProto,
  contentTypeUnaryRegExp,
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

/** A Connect unary POST whose body has been read whole (unary-adapter.ts). */
export type ConnectUnaryRequest = {
  readonly url: string;
  readonly header: Headers;
  readonly body: Uint8Array;
  readonly signal: AbortSignal;
  readonly contextValues: ContextValues;
};

export type ConnectUnaryResponse = { readonly status: number; readonly header: Headers; readonly body: Uint8Array };

export type ConnectUnaryHandler = (req: ConnectUnaryRequest) => Promise<ConnectUnaryResponse>;

/** Whether a request's content type is a Connect unary one (connect's own test, as its router applies it). */
export function isConnectUnaryContentType(contentType: string | undefined): boolean {
  return contentType !== undefined && contentTypeUnaryRegExp.test(contentType);
}

/**
 * Connect-protocol unary handlers, by request path, for calls whose body is
 * already in hand: connect-es's own unary handler (protocol-connect's
 * handler-factory), step for step and with its own parts — content type,
 * timeout, request gate, compression both ways, serialization and its limits,
 * interceptors, error bodies, `trailer-` headers — minus what a body read whole
 * does not need: the router's protocol negotiation, a parsed URL (only GET has
 * a query), and the async iterables that carry the body in and the answer out.
 *
 * REST, which calls the same interceptors and implementations without it, ran at
 * three times Connect's req/s on the same server; skipping it took a third off the
 * server CPU of a cached Connect JSON read at a fixed rate (475–528 → 275–358 µs). It must be
 * given the router's own options: test/unit/unary-adapter.test.ts holds its
 * answers to connect's, byte for byte.
 */
export function createConnectUnaryHandlers(
  services: readonly ServiceImplSpec[],
  routerOptions: Partial<UniversalHandlerOptions>,
): ReadonlyMap<string, ConnectUnaryHandler> {
  const opt = validateUniversalHandlerOptions(routerOptions);
  const handlers = new Map<string, ConnectUnaryHandler>();
  // connect's check of the protocol header is its own; with it required, every call goes there.
  if (opt.requireConnectProtocolHeader) return handlers;
  for (const service of services) {
    for (const spec of Object.values(service.methods)) {
      if (spec.kind !== "unary") continue;
      const serialization = createMethodSerializationLookup(spec.method, opt.binaryOptions, opt.jsonOptions, opt);
      handlers.set(createMethodUrl("/", spec.method), unaryHandler(opt, spec, serialization));
    }
  }
  return handlers;
}

type Options = ReturnType<typeof validateUniversalHandlerOptions>;

type UnarySpec = Extract<MethodImplSpec, { kind: "unary" }>;

function unaryHandler(
  opt: Options,
  spec: UnarySpec,
  serialization: MethodSerializationLookup<UnarySpec["method"]["input"], UnarySpec["method"]["output"]>,
): ConnectUnaryHandler {
  return async function handle(req) {
    // The caller took only Connect unary content types.
    const type = parseContentType(req.header.get(headerContentType))!;
    const timeout = parseTimeout(req.header.get(headerTimeout), opt.maxTimeoutMs);
    const context = createHandlerContext({
      ...spec,
      service: spec.method.parent,
      requestMethod: "POST",
      protocolName: "connect",
      ...(timeout.timeoutMs === undefined ? {} : { timeoutMs: timeout.timeoutMs }),
      ...(opt.shutdownSignal === undefined ? {} : { shutdownSignal: opt.shutdownSignal }),
      requestSignal: req.signal,
      requestHeader: req.header,
      url: req.url,
      responseHeader: { [headerContentType]: type.binary ? contentTypeUnaryProto : contentTypeUnaryJson },
      contextValues: req.contextValues,
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
