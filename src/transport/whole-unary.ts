import type { ServiceImplSpec } from "@connectrpc/connect";
import { createMethodSerializationLookup, createMethodUrl, validateUniversalHandlerOptions, type UniversalHandlerOptions } from "@connectrpc/connect/protocol";
import { contentTypeUnaryRegExp } from "@connectrpc/connect/protocol-connect";
import { contentTypeRegExp as grpcContentTypeRegExp } from "@connectrpc/connect/protocol-grpc";
import { connectUnaryHandler } from "./connect-unary.js";
import { grpcUnaryHandler } from "./grpc-unary.js";
import type { WholeUnaryHandler } from "./unary-call.js";

/** One RPC's handlers for whole bodies, by protocol. */
export type WholeUnaryHandlers = { readonly connect?: WholeUnaryHandler | undefined; readonly grpc?: WholeUnaryHandler | undefined };

/**
 * By request path: connect-es's own unary steps for Connect and gRPC calls whose body is
 * already in hand (connect-unary.ts, grpc-unary.ts), made once from the router's options.
 * gRPC-Web and everything else keep going through the router's handler.
 */
export function createWholeUnaryHandlers(
  services: readonly ServiceImplSpec[],
  routerOptions: Partial<UniversalHandlerOptions>,
): ReadonlyMap<string, WholeUnaryHandlers> {
  const opt = validateUniversalHandlerOptions(routerOptions);
  const byPath = new Map<string, WholeUnaryHandlers>();
  for (const service of services) {
    for (const spec of Object.values(service.methods)) {
      if (spec.kind !== "unary") continue;
      const serialization = createMethodSerializationLookup(spec.method, opt.binaryOptions, opt.jsonOptions, opt);
      byPath.set(createMethodUrl("/", spec.method), {
        // connect's check of the protocol header is its own; with it required, Connect calls go there.
        connect: opt.requireConnectProtocolHeader ? undefined : connectUnaryHandler(opt, spec, serialization),
        grpc: grpcUnaryHandler(opt, spec, serialization),
      });
    }
  }
  return byPath;
}

/** The handler for a call of this content type, by connect's own tests of it, as its router applies them. */
export function wholeUnaryFor(handlers: WholeUnaryHandlers | undefined, contentType: string | undefined): WholeUnaryHandler | undefined {
  if (handlers === undefined || contentType === undefined) return undefined;
  if (contentTypeUnaryRegExp.test(contentType)) return handlers.connect;
  if (grpcContentTypeRegExp.test(contentType)) return handlers.grpc;
  return undefined;
}

