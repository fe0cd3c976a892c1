import { createHandlerContext, type ContextValues, type MethodImplSpec } from "@connectrpc/connect";
import type { MethodSerializationLookup, validateUniversalHandlerOptions } from "@connectrpc/connect/protocol";

// What connect-unary.ts and grpc-unary.ts share: the call they are given, the answer they
// give, and the call's context as connect's own handlers build it.

/** A unary POST whose body has been read whole (unary-adapter.ts). */
export type WholeUnaryRequest = {
  readonly url: string;
  readonly header: Headers;
  readonly body: Uint8Array;
  readonly signal: AbortSignal;
  readonly contextValues: ContextValues;
};

/** The answer as one buffer; gRPC's status travels in `trailer`, Connect carries its own in the status and body. */
export type WholeUnaryAnswer = {
  readonly status: number;
  readonly header: Headers;
  readonly body: Uint8Array;
  readonly trailer?: Headers | undefined;
};

export type WholeUnaryHandler = (req: WholeUnaryRequest) => Promise<WholeUnaryAnswer>;

/** The router's options, validated as its handlers validate them. */
export type HandlerOptions = ReturnType<typeof validateUniversalHandlerOptions>;

export type UnarySpec = Extract<MethodImplSpec, { kind: "unary" }>;

export type UnarySerialization = MethodSerializationLookup<UnarySpec["method"]["input"], UnarySpec["method"]["output"]>;

/** A call's context as connect's handlers build it for a POST (the parts that differ by protocol given). */
export function unaryCallContext(
  opt: HandlerOptions,
  spec: UnarySpec,
  req: WholeUnaryRequest,
  call: { protocolName: string; timeoutMs: number | undefined; responseHeader: Record<string, string>; responseTrailer?: Record<string, string> },
): ReturnType<typeof createHandlerContext> {
  return createHandlerContext({
    ...spec,
    service: spec.method.parent,
    requestMethod: "POST",
    protocolName: call.protocolName,
    ...(call.timeoutMs === undefined ? {} : { timeoutMs: call.timeoutMs }),
    ...(opt.shutdownSignal === undefined ? {} : { shutdownSignal: opt.shutdownSignal }),
    requestSignal: req.signal,
    requestHeader: req.header,
    url: req.url,
    responseHeader: call.responseHeader,
    ...(call.responseTrailer === undefined ? {} : { responseTrailer: call.responseTrailer }),
    contextValues: req.contextValues,
  });
}
