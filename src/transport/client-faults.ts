import { base64Decode } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { Logger } from "../logger.js";
import { inexactInteger, inexactIntegerMessage } from "./json-numbers.js";

// connect-es labels these failures to read the caller's bytes Internal, on every
// protocol: undecodable protobuf ("parse binary: illegal tag …", truncation,
// recursion depth), a compressed envelope without an encoding, a gzip/brotli
// stream that does not inflate. They are the client's fault.
const CLIENT_FAULT = /^(parse binary:|received compressed envelope|decompression failed)/;

/**
 * A request gate (it runs before the body is read) that reclassifies those
 * failures as InvalidArgument before connect-es serialises them, and writes
 * their access-log line: they fail before any interceptor sees the call.
 *
 * connect-es hands the error to the call context's abort() just before it
 * turns it into a status, on every protocol; wrapping abort() is the one seam
 * the library leaves for this. Listening on the context's signal would not do:
 * when the caller's deadline fires while the body is still arriving, the
 * signal is already aborted and the later parse failure never reaches it (the
 * fuzz test found that one under load). The fuzz and deadline tests pin it down.
 */
// Built once: a stack trace is what makes an abort reason expensive.
const CALL_ENDED = new ConnectError("the call has ended", Code.Canceled);

export function createClientFaultGate(logger: Logger): (context: HandlerContext) => void {
  return (context) => {
    // A deadline already past (connect-timeout-ms: 0) would abort the context
    // before the body is parsed, and hide a parse failure from the wrapper below.
    const left = context.timeoutMs();
    if (left !== undefined && left <= 0) throw new ConnectError("the call's deadline has already passed", Code.DeadlineExceeded);
    const started = performance.now();
    const logFault = (reason: string) =>
      logger.info(
        {
          procedure: `${context.service.typeName}/${context.method.name}`,
          code: Code[Code.InvalidArgument],
          ms: Math.round((performance.now() - started) * 100) / 100,
          requestId: context.requestHeader.get("x-request-id")?.slice(0, 128),
          reason,
        },
        "rpc",
      );
    // A Connect GET carries its message in the query; connect-es decodes `base64=1`
    // with a function that throws a plain Error, which it answers Internal.
    if (context.requestMethod === "GET") {
      const query = new URL(context.url).searchParams;
      if (query.get("base64") === "1") {
        try {
          base64Decode(query.get("message") ?? "");
        } catch {
          logFault("undecodable request message");
          throw new ConnectError("message: not valid base64 (base64=1)", Code.InvalidArgument);
        }
      }
    }
    // abort() is on the context object connect-es builds, though not on its public type.
    const internal = context as HandlerContext & { abort(reason?: unknown): void };
    const abort = internal.abort.bind(internal);
    let logged = false;
    internal.abort = (reason?: unknown) => {
      if (!logged && reason instanceof ConnectError && reason.code === Code.Internal && CLIENT_FAULT.test(reason.rawMessage)) {
        logged = true;
        (reason as { code: Code }).code = Code.InvalidArgument;
        logFault("undecodable request body");
      }
      // connect-es ends every call with abort() and no reason, which builds a
      // DOMException and its stack trace: 4 % of server CPU on a cached hot read
      // (node --cpu-prof). A finished call needs no fresh reason.
      abort(reason ?? CALL_ENDED);
    };
  };
}

/**
 * A strict UTF-8 decoder for JSON request bodies: connect-es would otherwise
 * decode invalid bytes to U+FFFD and store them silently.
 */
export function strictUtf8Decoder(): { decode(data: Uint8Array): string } {
  const fatal = new TextDecoder("utf-8", { fatal: true });
  return {
    decode(data) {
      let text: string;
      try {
        text = fatal.decode(data);
      } catch {
        throw new ConnectError("request body is not valid UTF-8", Code.InvalidArgument);
      }
      const inexact = inexactInteger(text);
      if (inexact !== undefined) throw new ConnectError(inexactIntegerMessage(inexact), Code.InvalidArgument);
      return text;
    },
  };
}

// Write failures that mean the client went away or reset the stream (h2
// RST_STREAM, a closed socket): the client's doing, not an error of ours.
const CLIENT_GONE_CODES = new Set([
  "ECANCELED",
  "ECONNRESET",
  "EPIPE",
  "ERR_STREAM_PREMATURE_CLOSE",
  "ERR_STREAM_DESTROYED",
  "ERR_STREAM_WRITE_AFTER_END",
  "ERR_HTTP2_INVALID_STREAM",
  "ERR_HTTP2_STREAM_ERROR",
  "ERR_HTTP2_STREAM_CANCEL",
]);

/** Whether a failure to write a response is the client's (it left, or reset the stream). */
export function isClientGone(error: unknown, res: { destroyed: boolean }): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && CLIENT_GONE_CODES.has(code)) return true;
  }
  return res.destroyed;
}
