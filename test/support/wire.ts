import http2 from "node:http2";
import net from "node:net";

/** A plain TCP connect to 127.0.0.1: "connected", or the error code (ECONNREFUSED once nothing listens). */
export function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve("connected");
    });
    socket.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

/** A gRPC length-prefixed message: flag byte, 4-byte big-endian length, payload. */
export function envelope(payload: Uint8Array, flags = 0): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

export type RawAnswer = {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly trailers: Record<string, string>;
  readonly body: Buffer;
};

function flatten(headers: http2.IncomingHttpHeaders | http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(", ") : String(v);
  return out;
}

/** One POST over h2c on an existing session: raw bytes in, status, headers, trailers and body out. */
export function h2Post(session: http2.ClientHttp2Session, path: string, headers: Record<string, string>, body: Uint8Array, timeoutMs = 10_000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": path, ...headers });
    const timer = setTimeout(() => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      reject(new Error(`no answer for ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    let status = 0;
    let head: Record<string, string> = {};
    let trailers: Record<string, string> = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      head = flatten(h);
    });
    stream.on("trailers", (t) => (trailers = flatten(t)));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      clearTimeout(timer);
      resolve({ status, headers: head, trailers, body: Buffer.concat(chunks) });
    });
    stream.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    stream.end(body);
  });
}

/** The gRPC status of an answer: from the trailers, or from headers for a trailers-only answer. */
export function grpcStatus(answer: RawAnswer): string | undefined {
  return answer.trailers["grpc-status"] ?? answer.headers["grpc-status"];
}

/** The grpc-status inside a gRPC-Web body's trailer frame (flag 0x80). */
export function grpcWebStatus(body: Buffer): string | undefined {
  let at = 0;
  while (at + 5 <= body.length) {
    const flags = body.readUInt8(at);
    const length = body.readUInt32BE(at + 1);
    const payload = body.subarray(at + 5, at + 5 + length);
    if (flags & 0x80) return /grpc-status:\s*(\d+)/i.exec(payload.toString("latin1"))?.[1];
    at += 5 + length;
  }
  return undefined;
}
