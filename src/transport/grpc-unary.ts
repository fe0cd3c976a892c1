import { Code, ConnectError } from "@connectrpc/connect";
import {
  compressionNegotiate,
  encodeEnvelope,
  envelopeCompress,
  envelopeDecompress,
  invokeUnaryImplementation,
  type Compression,
  type EnvelopedMessage,
  type Serialization,
} from "@connectrpc/connect/protocol";
import {
  contentTypeJson,
  contentTypeProto,
  grpcStatusOk,
  headerAcceptEncoding,
  headerContentType,
  headerEncoding,
  headerGrpcStatus,
  headerTimeout,
  parseContentType,
  parseTimeout,
  setTrailerStatus,
} from "@connectrpc/connect/protocol-grpc";
import { unaryCallContext, type HandlerOptions, type UnarySerialization, type UnarySpec, type WholeUnaryHandler } from "./unary-call.js";

// An answer that ends in an error has no message, only trailers.
const NO_BODY = new Uint8Array(0);

/**
 * A gRPC unary handler for calls whose body is already in hand (made per RPC by whole-unary.ts):
 * connect-es's own gRPC handler (protocol-grpc's handler-factory), step for step
 * and with its own parts — content type, `grpc-timeout`, request gate, message
 * compression both ways, envelopes and their limits, interceptors, `grpc-status`
 * and `grpc-message` trailers — minus the async-iterable pipeline that carries
 * one message in and one out.
 *
 * That pipeline is a chain of async generators per call (split, decompress,
 * parse, invoke, serialize, compress, join, catch); without it a cached gRPC
 * read at saturation took 312–797 instead of 811–1,238 µs of server CPU. It must
 * be made from the router's own options: test/unit/grpc-unary.test.ts holds its
 * answers to connect's, byte for byte.
 */
export function grpcUnaryHandler(
  opt: HandlerOptions,
  spec: UnarySpec,
  serialization: UnarySerialization,
): WholeUnaryHandler {
  return async function handle(req) {
    // The caller took only gRPC content types.
    const type = parseContentType(req.header.get(headerContentType))!;
    const timeout = parseTimeout(req.header.get(headerTimeout), opt.maxTimeoutMs);
    const context = unaryCallContext(opt, spec, req, {
      protocolName: "grpc",
      timeoutMs: timeout.timeoutMs,
      responseHeader: { [headerContentType]: type.binary ? contentTypeProto : contentTypeJson },
      responseTrailer: { [headerGrpcStatus]: grpcStatusOk },
    });
    const compression = compressionNegotiate(opt.acceptCompression, req.header.get(headerEncoding), req.header.get(headerAcceptEncoding), headerAcceptEncoding);
    if (compression.response) context.responseHeader.set(headerEncoding, compression.response.name);
    let body = NO_BODY;
    try {
      // As connect's: the gate runs before the body is looked at, then the negotiation errors.
      if (opt.requestGate !== undefined) await opt.requestGate(context);
      if (compression.error) throw compression.error;
      if (timeout.error) throw timeout.error;
      const input = await singleMessage(req.body, opt.readMaxBytes, compression.request, serialization.getI(type.binary));
      const output = await invokeUnaryImplementation(spec, context, input, opt.interceptors);
      const envelope = await envelopeCompress({ flags: 0, data: serialization.getO(type.binary).serialize(output) }, compression.response, opt.compressMinBytes);
      body = encodeEnvelope(envelope.flags, envelope.data);
    } catch (e) {
      context.abort(e);
      // connect leaves the status at OK when `undefined` is thrown; that is no success.
      setTrailerStatus(context.responseTrailer, e instanceof ConnectError ? e : new ConnectError("internal error", Code.Internal, undefined, undefined, e));
    } finally {
      context.abort();
    }
    return { status: 200, header: context.responseHeader, body, trailer: context.responseTrailer };
  };
}

/**
 * The one message of a unary call, with connect's errors in connect's order: every
 * envelope header in the body is held to `readMaxBytes` first (its decoder reads a
 * chunk at once), then the first message is decompressed and parsed, then a second
 * one, if any, is too before it is refused; bytes left over are an incomplete envelope.
 */
async function singleMessage<T>(body: Uint8Array, readMaxBytes: number, compression: Compression | null, parser: Serialization<T>): Promise<T> {
  const envelopes: EnvelopedMessage[] = [];
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let offset = 0;
  let incomplete = false;
  while (offset < body.byteLength) {
    if (body.byteLength - offset < 5) {
      incomplete = true;
      break;
    }
    const flags = view.getUint8(offset);
    const length = view.getUint32(offset + 1);
    if (length > readMaxBytes) throw new ConnectError(`message size ${length} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted);
    if (body.byteLength - offset - 5 < length) {
      // connect's decoder takes the header off its buffer first: a header alone is not "incomplete" to it.
      incomplete = body.byteLength - offset - 5 > 0;
      break;
    }
    envelopes.push({ flags, data: body.subarray(offset + 5, offset + 5 + length) });
    offset += 5 + length;
  }
  const parse = async (at: number) => parser.parse((await envelopeDecompress(envelopes[at]!, compression, readMaxBytes)).data);
  if (envelopes.length === 0) {
    if (incomplete) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
    throw new ConnectError("protocol error: missing input message for unary method", Code.Unimplemented);
  }
  const first = await parse(0);
  if (envelopes.length > 1) {
    await parse(1);
    throw new ConnectError("protocol error: received extra input message for unary method", Code.Unimplemented);
  }
  if (incomplete) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  return first;
}
