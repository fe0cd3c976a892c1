/**
 * Export readers that take the stream as COPY's reader takes COPY's output: every byte
 * received, each message framed and its events counted, nothing decoded into objects.
 * Beside the readers that decode as a client would, they show what the server can
 * send when the reader is not the bottleneck (the bench's reader shares its core with
 * PostgreSQL). A stream that ends in an error status throws.
 */
import http from "node:http";
import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { ExportAuditEventsRequestSchema, TenantRegistryService } from "../../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";

const PATH = `/${TenantRegistryService.typeName}/ExportAuditEvents`;
// ExportAuditEventsResponse.events is field 2, length-delimited: tag (2 << 3) | 2.
const EVENTS_TAG = 0x12;
const WINDOW = 4 * 1024 * 1024;

function requestEnvelope(tenantId: string, binary = true): Buffer {
  const payload = binary
    ? toBinary(ExportAuditEventsRequestSchema, create(ExportAuditEventsRequestSchema, { tenantId }))
    : Buffer.from(JSON.stringify({ tenantId }));
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** Splits length-prefixed messages (flag byte, 4-byte length) out of arriving chunks. */
class Envelopes {
  private pending: Buffer = Buffer.alloc(0);
  constructor(private readonly onMessage: (flags: number, message: Buffer) => void) {}
  push(chunk: Buffer): void {
    let buffer = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (buffer.length >= 5) {
      const length = buffer.readUInt32BE(1);
      if (buffer.length < 5 + length) break;
      this.onMessage(buffer[0]!, buffer.subarray(5, 5 + length));
      buffer = buffer.subarray(5 + length);
    }
    this.pending = buffer;
  }
  get leftover(): number {
    return this.pending.length;
  }
}

/** The events in one binary ExportAuditEventsResponse: its top-level field-2 entries, skipped over. */
export function countEvents(message: Buffer): number {
  let count = 0;
  let at = 0;
  const varint = () => {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = message[at++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
  };
  while (at < message.length) {
    const tag = varint();
    if ((tag & 7) !== 2) throw new Error(`unexpected wire type in ExportAuditEventsResponse: tag ${tag}`);
    if (tag === EVENTS_TAG) count++;
    const length = varint(); // read before adding: `at += varint()` would add to the old `at`
    at += length;
  }
  return count;
}

/** gRPC over h2c with 4 MiB stream and connection windows, as gRPC's own clients grow theirs. */
export function grpcFramesRead(baseUrl: string, tenantId: string, signal: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(baseUrl, { settings: { initialWindowSize: WINDOW } });
    session.on("connect", () => session.setLocalWindowSize(WINDOW));
    session.on("error", reject);
    const onAbort = () => session.destroy(new Error("export reader: timed out"));
    signal.addEventListener("abort", onAbort, { once: true });
    let events = 0;
    let status: string | undefined;
    const frames = new Envelopes((_flags, message) => (events += countEvents(message)));
    const stream = session.request({ ":method": "POST", ":path": PATH, "content-type": "application/grpc", te: "trailers" });
    stream.on("data", (chunk: Buffer) => frames.push(chunk));
    stream.on("trailers", (trailers) => (status = String(trailers["grpc-status"])));
    stream.on("error", reject);
    stream.on("end", () => {
      signal.removeEventListener("abort", onAbort);
      session.close();
      if (status !== "0" || frames.leftover !== 0) reject(new Error(`export reader: grpc-status ${status}, ${frames.leftover} bytes unframed`));
      else resolve(events);
    });
    stream.end(requestEnvelope(tenantId));
  });
}

/** Connect streaming over HTTP/1.1 (node:http); binary messages are counted as above, JSON ones parsed with JSON.parse. */
export function connectFramesRead(baseUrl: string, tenantId: string, binary: boolean, signal: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    let events = 0;
    let end: string | undefined;
    const frames = new Envelopes((flags, message) => {
      if (flags & 0x02) end = message.toString();
      else events += binary ? countEvents(message) : (JSON.parse(message.toString()) as { events: unknown[] }).events.length;
    });
    const req = http.request(
      `${baseUrl}${PATH}`,
      {
        method: "POST",
        headers: { "content-type": binary ? "application/connect+proto" : "application/connect+json", "connect-protocol-version": "1" },
        signal,
      },
      (res) => {
        res.on("data", (chunk: Buffer) => frames.push(chunk));
        res.on("error", reject);
        res.on("end", () => {
          if (res.statusCode !== 200 || end === undefined || "error" in (JSON.parse(end) as object)) reject(new Error(`export reader: status ${res.statusCode}, end of stream ${end}`));
          else resolve(events);
        });
      },
    );
    req.on("error", reject);
    req.end(requestEnvelope(tenantId, binary));
  });
}

/** The REST export as `curl > file` reads it: bytes, its lines counted (the checkpoint line is not an event). */
export function restLinesRead(url: string, signal: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { signal }, (res) => {
        let lines = 0;
        res.on("data", (chunk: Buffer) => {
          for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
        });
        res.on("error", reject);
        res.on("end", () => (res.statusCode === 200 ? resolve(lines - 1) : reject(new Error(`export reader: status ${res.statusCode}`))));
      })
      .on("error", reject);
  });
}
