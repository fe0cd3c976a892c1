import http2 from "node:http2";
import type { Logger } from "../logger.js";

export type SessionLimits = {
  /** A session that has opened no stream this long after its preface is closed. */
  readonly firstStreamTimeoutMs: number;
  /** A session with no stream open for this long is closed (GOAWAY). */
  readonly idleSessionTimeoutMs: number;
  /** Streams the client may reset before they are answered, in a burst… */
  readonly resetBurst: number;
  /** …and refilled at this many per second; past that the session gets GOAWAY. */
  readonly resetRatePerSec: number;
};

/**
 * Per-session defences against clients that cost us more than themselves:
 * sessions that never send a request (they only hold a descriptor), and rapid
 * reset (CVE-2023-44487: HEADERS then RST_STREAM, each starting a handler the
 * client never waits for). Cancelled streams are counted in a token bucket; a
 * session that empties it gets GOAWAY(ENHANCE_YOUR_CALM) and is cut.
 */
export function guardSession(
  session: http2.ServerHttp2Session,
  limits: SessionLimits,
  logger: Logger,
  onAbuse: (why: string) => void,
  now: () => number = Date.now,
): void {
  let streams = 0;
  let tokens = limits.resetBurst;
  let refilledAt = now();
  let idle: NodeJS.Timeout | undefined;
  // Cancelled streams this session, for the log line: how far a client got before its GOAWAY.
  let resets = 0;

  const arm = (ms: number, why: string) => {
    clearTimeout(idle);
    idle = setTimeout(() => {
      logger.debug({ peer: session.socket?.remoteAddress, why }, "closing an idle http2 session");
      session.close();
      // A client that ignores GOAWAY and keeps the connection open is cut once
      // its streams (there are none) have had a moment to finish.
      setTimeout(() => session.destroy(), 1_000).unref();
    }, ms);
    idle.unref();
  };
  arm(limits.firstStreamTimeoutMs, "no stream opened");
  session.once("close", () => clearTimeout(idle));

  let ended = false;
  const abuse = (why: string) => {
    // Resets keep arriving until the socket goes: one GOAWAY, one log line, one penalty.
    if (ended || session.destroyed) return;
    ended = true;
    logger.warn({ peer: session.socket?.remoteAddress, why, resets }, "closing an abusive http2 session");
    onAbuse(why);
    session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    // Destroying at once would replace that GOAWAY with INTERNAL_ERROR; new
    // streams are refused from now on, so the socket may go a moment later.
    setTimeout(() => session.destroy(), 100).unref();
  };

  session.on("stream", (stream) => {
    streams += 1;
    clearTimeout(idle);
    // Counted on close, by its RST_STREAM code: Node's 'aborted' fires only while our
    // writable side is still open, and in the real server it never was by the time the
    // reset arrived (0 of 1,069 reset streams), so a guard on 'aborted' counted nothing
    // and only nghttp2's own far later limit (1000, INTERNAL_ERROR) ever ended an attack.
    stream.once("close", () => {
      if (stream.rstCode === http2.constants.NGHTTP2_NO_ERROR || stream.rstCode === undefined) return;
      resets += 1;
      const t = now();
      tokens = Math.min(limits.resetBurst, tokens + ((t - refilledAt) / 1000) * limits.resetRatePerSec);
      refilledAt = t;
      tokens -= 1;
      if (tokens < 0) abuse("rapid reset: streams cancelled faster than the reset rate");
    });
    stream.once("close", () => {
      streams -= 1;
      if (streams === 0 && !session.closed) arm(limits.idleSessionTimeoutMs, "idle");
    });
  });
  // Node destroys the session past maxSessionInvalidFrames with this error.
  session.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "ERR_HTTP2_TOO_MANY_INVALID_FRAMES") onAbuse("too many invalid frames");
  });
}
