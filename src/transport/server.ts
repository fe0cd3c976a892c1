import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { Logger } from "../logger.js";
import { createConnectionGate, type ConnectionLimits } from "./connection-limits.js";
import { guardSession, type SessionLimits } from "./h2-guard.js";
import type { TlsTermination } from "./tls.js";

export type RequestHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

export type CloseOptions = {
  /**
   * Runs when the grace period is over with calls still open, before their
   * connections are cut: the place to end streams with a proper status.
   */
  readonly onGraceOver?: () => void;
};

export type Listening = {
  readonly host: string;
  readonly port: number;
  /**
   * The drain: stops accepting at once, sends GOAWAY on every HTTP/2 session and
   * `Connection: close` on every HTTP/1.1 response from now on, lets in-flight
   * calls finish within `graceMs`, then ends the rest.
   */
  close(graceMs: number, options?: CloseOptions): Promise<void>;
};

export type ServerLimits = ConnectionLimits &
  SessionLimits & {
    /** A connection that sends nothing for this long before its first request is dropped. */
    readonly firstByteTimeoutMs: number;
    /** HTTP/1.1: the whole request must arrive within this (slowloris). */
    readonly requestTimeoutMs: number;
    readonly headersTimeoutMs: number;
    readonly keepAliveTimeoutMs: number;
    /** HTTP/2: streams one connection may have open at once. */
    readonly maxConcurrentStreams: number;
    /** HTTP/2: memory one session may hold (queued response data, header tables), in MB. */
    readonly maxSessionMemoryMb: number;
    /** Request header bytes, both protocols (beyond: 431, or the stream is refused). */
    readonly maxHeaderBytes: number;
  };

export const DEFAULT_LIMITS: ServerLimits = {
  maxConnections: 1_000,
  maxConnectionsPerAddress: 100,
  abuseCooldownMs: 10_000,
  firstByteTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  headersTimeoutMs: 15_000,
  keepAliveTimeoutMs: 5_000,
  firstStreamTimeoutMs: 10_000,
  idleSessionTimeoutMs: 120_000,
  resetBurst: 200,
  resetRatePerSec: 50,
  maxConcurrentStreams: 250,
  maxSessionMemoryMb: 128,
  maxHeaderBytes: 16 * 1024,
};

// Every HTTP/2 connection without TLS (h2c with prior knowledge) opens with this preface;
// no HTTP/1.x request line starts with "PRI ".
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

// After the grace period and onGraceOver, streams get this long to write their final status.
const FINAL_STATUS_MS = 1_000;

/**
 * One plaintext port for every protocol: sniffs the first bytes of each
 * connection and hands it to an HTTP/2 (h2c: gRPC, Connect, gRPC-Web) or an
 * HTTP/1.1 server (Connect, gRPC-Web, REST, health), both sharing one handler.
 * With `tls` the same port speaks TLS instead and ALPN picks the server.
 */
export async function listen(
  handler: RequestHandler,
  address: { host: string | undefined; port: number },
  logger: Logger,
  limits: ServerLimits = DEFAULT_LIMITS,
  tls?: TlsTermination,
): Promise<Listening> {
  let draining = false;
  const h1Responses = new Set<http.ServerResponse>();
  const h1 = http.createServer(
    {
      requestTimeout: limits.requestTimeoutMs,
      headersTimeout: limits.headersTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      maxHeaderSize: limits.maxHeaderBytes,
      // Node checks the two timeouts above only this often (default 30 s).
      connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs),
    },
    (req, res) => {
      // Draining: this response is the connection's last, and says so.
      if (draining) res.shouldKeepAlive = false;
      h1Responses.add(res);
      res.once("close", () => h1Responses.delete(res));
      handler(req, res);
    },
  );
  const h2 = http2.createServer(
    {
      // Bounded concurrency per connection, so one client cannot open thousands of streams.
      settings: { maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderBytes },
      maxSessionMemory: limits.maxSessionMemoryMb,
      // nghttp2 defaults are 1000 of each: a session of garbage costs us that much before it ends.
      maxSessionInvalidFrames: 100,
      maxSessionRejectedStreams: 100,
    },
    (req, res) => {
      // Rapid reset sends HEADERS and RST_STREAM back to back, mostly in one packet, and Node
      // hands us the stream before it has read the reset. One turn of the event loop later it
      // has: a stream the client cancelled by then asked for nothing, and skipping it spares
      // the whole call path (interceptors, error, access log line) that made such an attack
      // slow every other client down. The guard still counts it (h2-guard.ts).
      setImmediate(() => {
        if (req.stream.closed) return;
        handler(req, res);
      });
    },
  );

  const gate = createConnectionGate(limits, logger);
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    const peer = session.socket?.remoteAddress;
    guardSession(session, limits, logger, (why) => gate.penalise(peer, why));
    if (draining) session.close();
  });
  // Node's client-error objects carry the request's raw bytes (err.rawPacket),
  // credentials included: log the code and nothing else, at every level.
  h2.on("sessionError", (error: NodeJS.ErrnoException) => logger.debug({ code: error.code }, "http2 session error"));
  h1.on("clientError", (error: NodeJS.ErrnoException, socket) => {
    logger.debug({ code: error.code }, "http/1.1 client error");
    const status =
      error.code === "ERR_HTTP_REQUEST_TIMEOUT" ? "408 Request Timeout"
      : error.code === "HPE_HEADER_OVERFLOW" ? "431 Request Header Fields Too Large"
      : "400 Bad Request";
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
  });

  const tcp = net.createServer((socket) => {
    socket.on("error", () => {}); // peers reset connections; nothing to do but let it close
    if (draining || !gate.admit(socket)) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    if (tls) {
      // ALPN decides the protocol; the handshake has its own timeout.
      tls.server.emit("connection", socket);
      return;
    }
    socket.setTimeout(limits.firstByteTimeoutMs, () => socket.destroy());
    let seen = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, H2_PREFACE.length);
      const looksH2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (looksH2 && seen.length < H2_PREFACE.length) return; // need more bytes to decide
      socket.removeListener("data", onData);
      socket.setTimeout(0);
      // Put the sniffed bytes back. The HTTP/1.1 parser needs the socket flowing
      // again; the HTTP/2 session drains the paused socket itself and breaks
      // (GOAWAY) if it is resumed underneath it.
      socket.pause();
      socket.unshift(seen);
      if (looksH2) {
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
  });

  tls?.server.on("secureConnection", (secure) => (secure.alpnProtocol === "h2" ? h2 : h1).emit("connection", secure));
  tls?.server.on("tlsClientError", (error: NodeJS.ErrnoException) => logger.debug({ code: error.code }, "tls handshake failed"));

  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen({ host: address.host, port: address.port }, () => {
      tcp.removeListener("error", reject);
      resolve();
    });
  });
  tcp.on("error", (error) => logger.error({ err: error }, "listener error"));
  // The HTTP/1.1 server never listens itself (we hand it connections), but its
  // slow-client checks (headers and request timeouts) start on "listening".
  h1.emit("listening");
  const bound = tcp.address() as net.AddressInfo;

  const settled = async (deadline: number) => {
    while (sockets.size > 0 && Date.now() < deadline) {
      h1.closeIdleConnections();
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  };

  return {
    host: bound.address,
    port: bound.port,
    async close(graceMs, options = {}) {
      draining = true;
      const closed = new Promise<void>((resolve) => tcp.close(() => resolve()));
      // GOAWAY: no new streams; the running ones finish.
      for (const session of sessions) session.close();
      for (const res of h1Responses) if (!res.headersSent) res.shouldKeepAlive = false;
      await settled(Date.now() + graceMs);
      if (sockets.size > 0 && options.onGraceOver) {
        options.onGraceOver();
        await settled(Date.now() + FINAL_STATUS_MS);
      }
      if (sockets.size > 0) {
        logger.warn({ connections: sockets.size }, "grace period over; closing remaining connections");
        for (const socket of sockets) socket.destroy();
      }
      await closed;
      h1.close(() => {}); // stops the slow-client checks; nothing is listening to close
    },
  };
}
