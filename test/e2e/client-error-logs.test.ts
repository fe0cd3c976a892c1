import net from "node:net";
import http2 from "node:http2";
import { describe, expect, it } from "vitest";
import { useTestServer } from "../support/harness.js";
import { restFetch } from "../support/rest.js";
import type { TestServer } from "../support/server.js";
import { envelope, h2Post } from "../support/wire.js";

// The test server logs at debug, where the clientError lines are.
let server: TestServer;
useTestServer((h) => (server = h.server));

const SECRET = "trk_live_SECRETSECRETSECRETSECRET0123456789";
const AUTH = `Authorization: Bearer ${SECRET}\r\n`;

/** Sends raw bytes on a fresh connection and waits for the server to answer or close it. */
function raw(bytes: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(server.port, "127.0.0.1", () => socket.write(bytes));
    let received = "";
    socket.on("data", (chunk) => (received += String(chunk)));
    socket.on("error", () => {});
    socket.on("close", () => resolve(received));
    setTimeout(() => socket.destroy(), 3_000).unref();
  });
}

/** What the secret would look like as a JSON byte array (Buffer#toJSON), the form err.rawPacket took. */
const asByteArray = (text: string) => [...Buffer.from(text.slice(0, 12))].join(",");

describe("no log line, at any level, carries request bytes", () => {
  it("HTTP/1.1 client errors are logged by code only", async () => {
    const from = server.logText().length;
    const cases: [string, string | Buffer, RegExp][] = [
      ["a bad header line", `GET /v1/tenants HTTP/1.1\r\nHost: x\r\n${AUTH}Bad Header Line\r\n\r\n`, /^HTTP\/1\.1 400/],
      ["Content-Length with Transfer-Encoding", `POST /v1/tenants HTTP/1.1\r\nHost: x\r\n${AUTH}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, /^HTTP\/1\.1 400/],
      ["headers over the limit", `GET /v1/tenants HTTP/1.1\r\nHost: x\r\n${AUTH}X-Big: ${"a".repeat(64 * 1024)}\r\n\r\n`, /^HTTP\/1\.1 431/],
      ["a broken chunk", `POST /v1/tenants HTTP/1.1\r\nHost: x\r\n${AUTH}Transfer-Encoding: chunked\r\n\r\nZZZ\r\n${SECRET}\r\n`, /^HTTP\/1\.1 400/],
      ["a garbage request line", `${SECRET} \x01\x02 HTTP/1.1\r\n${AUTH}\r\n`, /^HTTP\/1\.1 400/],
    ];
    for (const [what, bytes, answer] of cases) expect(await raw(bytes), what).toMatch(answer);
    const lines = server.logText().slice(from).split("\n").filter((l) => l.includes('"http/1.1 client error"'));
    expect(lines.length).toBeGreaterThanOrEqual(cases.length);
    assertNoRequestBytes(from);
  });

  it("HTTP/2 protocol errors and bad bodies on every protocol are logged without them", async () => {
    const from = server.logText().length;
    // The preface, then a frame of garbage that is no valid HTTP/2 frame.
    await raw(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Buffer.from(`\x00\x00\x40\x01\x05\x00\x00\x00\x01${SECRET}${SECRET}`, "latin1")]));
    const session = http2.connect(server.baseUrl);
    try {
      const path = "/breakpilot.tenantregistry.v1.TenantRegistryService/CreateTenant";
      await h2Post(session, path, { "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${SECRET}` }, envelope(Buffer.from([0xff, 0xff, ...Buffer.from(SECRET)])));
      await h2Post(session, path, { "content-type": "application/json", authorization: `Bearer ${SECRET}` }, Buffer.from(`{"slug": ${SECRET}`));
      await h2Post(session, "/v1/tenants", { "content-type": "application/json", authorization: `Bearer ${SECRET}` }, Buffer.from(`{"name": "${SECRET}", `));
    } finally {
      session.close();
    }
    const res = await restFetch(`${server.baseUrl}/v1/tenants`, { method: "POST", headers: { authorization: `Bearer ${SECRET}` }, body: `not json ${SECRET}` });
    expect(res.status).toBe(400);
    expect(server.logText().slice(from)).toMatch(/"http2 session error"/);
    assertNoRequestBytes(from);
  });
});

describe("a client that leaves is the client's doing", () => {
  it("a REST call whose client leaves mid-body is a debug line, not an error with a stack", async () => {
    const from = server.logText().length;
    await new Promise<void>((resolve) => {
      const socket = net.connect(server.port, "127.0.0.1", () => {
        socket.write(`POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"slug"`);
        setTimeout(() => socket.destroy(), 200);
      });
      socket.on("error", () => {});
      socket.on("close", () => resolve());
    });
    await expect.poll(() => server.logText().slice(from), { timeout: 2_000, interval: 20 }).toMatch(/"rest: the client went away"/);
    const lines = server.logText().slice(from).split("\n").filter(Boolean).map((l) => JSON.parse(l) as { level: number });
    expect(lines.filter((l) => l.level >= 40)).toEqual([]);
    expect(server.logText().slice(from)).not.toContain("stack");
  });
});

/** Checks the lines logged since `from` (a logText() length). */
function assertNoRequestBytes(from: number) {
  const text = server.logText().slice(from);
  expect(text).not.toContain(SECRET);
  expect(text).not.toContain("SECRETSECRET");
  expect(text).not.toContain("rawPacket");
  expect(text).not.toContain(asByteArray(SECRET));
  expect(text).not.toContain(asByteArray(AUTH));
  expect(text).not.toContain(asByteArray("GET /v1/tenants"));
}
