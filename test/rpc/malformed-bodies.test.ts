import http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uniqueSlug } from "../support/fixtures.js";
import type { TestServer } from "../support/server.js";
import { useTestServer } from "../support/harness.js";
import { envelope, grpcStatus, grpcWebStatus, h2Post } from "../support/wire.js";

let server: TestServer;
useTestServer((h) => (server = h.server));

const LIST_TENANTS = "/breakpilot.tenantregistry.v1.TenantRegistryService/ListTenants";
// Field 153415 with wire type 6 (no such wire type): protobuf-es fails with "illegal tag".
const ILLEGAL_TAG = Buffer.from([0xbe, 0xbc, 0x4a, 0x01]);
// A length-delimited field claiming 100 bytes with 2 present.
const TRUNCATED = Buffer.from([0x0a, 0x64, 0x61, 0x62]);
// A gzip stream cut short: zlib says Z_BUF_ERROR, which connect-es calls Internal.
const NOT_GZIP = gzipSync("a gzip stream that ends too soon").subarray(0, 12);
// A CreateTenant that would succeed but for its name: "\xff" is never valid UTF-8.
const invalidUtf8Json = () =>
  Buffer.concat([Buffer.from(`{"slug":"${uniqueSlug("utf8")}","name":"`), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);

async function connectUnary(path: string, contentType: string, body: Uint8Array, extra: Record<string, string> = {}) {
  const res = await fetch(`${server.baseUrl}${path}`, {
    method: "POST",
    headers: { "content-type": contentType, "connect-protocol-version": "1", ...extra },
    body,
  });
  return { status: res.status, json: (await res.json()) as { code: string; message: string } };
}

let session: http2.ClientHttp2Session;
beforeAll(() => {
  session = http2.connect(server.baseUrl);
});
afterAll(() => {
  session.close();
});

describe("a body the server cannot decode is the caller's fault (InvalidArgument), on every protocol", () => {
  it.each([
    ["an illegal tag", ILLEGAL_TAG],
    ["a truncated message", TRUNCATED],
  ])("Connect binary with %s: 400 invalid_argument", async (_what, bytes) => {
    const { status, json } = await connectUnary(LIST_TENANTS, "application/proto", bytes);
    expect(json.code).toBe("invalid_argument");
    expect(status).toBe(400);
  });

  it("Connect binary with a gzip encoding that does not inflate: 400 invalid_argument", async () => {
    const { status, json } = await connectUnary(LIST_TENANTS, "application/proto", NOT_GZIP, { "content-encoding": "gzip" });
    expect([status, json.code]).toEqual([400, "invalid_argument"]);
  });

  it.each([
    ["an illegal tag", envelope(ILLEGAL_TAG), {}],
    ["a truncated message", envelope(TRUNCATED), {}],
    ["a compressed flag and no encoding", envelope(ILLEGAL_TAG, 1), {}],
    ["a gzip envelope that does not inflate", envelope(NOT_GZIP, 1), { "grpc-encoding": "gzip" }],
  ])("gRPC with %s: grpc-status 3", async (_what, body, headers) => {
    const answer = await h2Post(session, LIST_TENANTS, { "content-type": "application/grpc", te: "trailers", ...headers }, body);
    expect(grpcStatus(answer)).toBe("3");
  });

  it("gRPC-Web with an illegal tag: grpc-status 3", async () => {
    const res = await fetch(`${server.baseUrl}${LIST_TENANTS}`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto" },
      body: envelope(ILLEGAL_TAG),
    });
    const status = res.headers.get("grpc-status") ?? grpcWebStatus(Buffer.from(await res.arrayBuffer()));
    expect(status).toBe("3");
  });

  it("every such call has an access-log line with its code", async () => {
    const marker = `malformed-${Date.now()}`;
    await connectUnary(LIST_TENANTS, "application/proto", ILLEGAL_TAG, { "x-request-id": marker });
    const line = server.logs.find((l) => l["msg"] === "rpc" && l["requestId"] === marker);
    expect(line).toMatchObject({ procedure: "breakpilot.tenantregistry.v1.TenantRegistryService/ListTenants", code: "InvalidArgument" });
    expect(server.logs.filter((l) => l["level"] === 50)).toEqual([]);
  });
});

describe("a Connect GET whose message is not valid base64 is the caller's fault", () => {
  it.each(["proto", "json"])("encoding=%s&base64=1 with a message of !!!: 400 invalid_argument naming the message, and an access-log line", async (encoding) => {
    const marker = `base64-${encoding}-${Date.now()}`;
    const res = await fetch(`${server.baseUrl}/breakpilot.tenantregistry.v1.TenantRegistryService/GetTenantBySlug?connect=v1&encoding=${encoding}&base64=1&message=!!!`, {
      headers: { "x-request-id": marker },
    });
    const json = (await res.json()) as { code: string; message: string };
    expect([res.status, json.code]).toEqual([400, "invalid_argument"]);
    expect(json.message).toMatch(/^message: not valid base64/);
    expect(server.logs.find((l) => l["msg"] === "rpc" && l["requestId"] === marker)).toMatchObject({ code: "InvalidArgument" });
  });

  it("a valid base64 message still reaches the call", async () => {
    const message = Buffer.from(JSON.stringify({ slug: "no-such-tenant-here" })).toString("base64url");
    const res = await fetch(`${server.baseUrl}/breakpilot.tenantregistry.v1.TenantRegistryService/GetTenantBySlug?connect=v1&encoding=json&base64=1&message=${message}`);
    expect([res.status, ((await res.json()) as { code: string }).code]).toEqual([404, "not_found"]);
  });
});

describe("a body that cannot be decoded is still InvalidArgument when the caller's deadline passed while it arrived", () => {
  // The deadline fires first, so the call's signal is already aborted when the body
  // fails to inflate or parse; connect-es would then answer Internal.
  async function slowConnectUnary(body: Uint8Array, extra: Record<string, string>) {
    const stream = session.request({
      ":method": "POST",
      ":path": LIST_TENANTS,
      "content-type": "application/proto",
      "connect-protocol-version": "1",
      "connect-timeout-ms": "30",
      ...extra,
    });
    const chunks: Buffer[] = [];
    let status = 0;
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.on("data", (c: Buffer) => chunks.push(c));
    const ended = new Promise<void>((resolve, reject) => (stream.on("end", resolve), stream.on("error", reject)));
    await new Promise((r) => setTimeout(r, 150));
    stream.end(body);
    await ended;
    return { status, json: JSON.parse(Buffer.concat(chunks).toString()) as { code: string } };
  }

  it.each([
    ["a brotli encoding that does not inflate", NOT_GZIP, { "content-encoding": "br" }],
    ["a gzip encoding that does not inflate", NOT_GZIP, { "content-encoding": "gzip" }],
    ["an illegal tag", ILLEGAL_TAG, {}],
  ])("Connect binary with %s: never internal", async (_what, body, extra) => {
    const { status, json } = await slowConnectUnary(body, extra);
    expect([status, json.code]).toEqual([400, "invalid_argument"]);
  });
});

describe("invalid UTF-8 in a JSON body is refused, not stored as U+FFFD", () => {
  it("Connect JSON: 400 invalid_argument naming the encoding", async () => {
    const { status, json } = await connectUnary("/breakpilot.tenantregistry.v1.TenantRegistryService/CreateTenant", "application/json", invalidUtf8Json());
    expect([status, json.code]).toEqual([400, "invalid_argument"]);
    expect(json.message).toMatch(/UTF-8/);
  });

  it("REST: 400 invalid_argument naming the encoding", async () => {
    // Raw bytes, not a string: restFetch (which checks the contract) takes string bodies only.
    const rest = new URL("/v1/tenants", server.baseUrl);
    const res = await fetch(rest, { method: "POST", headers: { "content-type": "application/json" }, body: invalidUtf8Json() });
    const json = (await res.json()) as { code: string; message: string };
    expect([res.status, json.code]).toEqual([400, "invalid_argument"]);
    expect(json.message).toMatch(/UTF-8/);
  });

  it("gRPC with a JSON codec: grpc-status 3", async () => {
    const answer = await h2Post(session, "/breakpilot.tenantregistry.v1.TenantRegistryService/CreateTenant", { "content-type": "application/grpc+json", te: "trailers" }, envelope(invalidUtf8Json()));
    expect([grpcStatus(answer), decodeURIComponent(answer.trailers["grpc-message"] ?? "")]).toEqual(["3", "request body is not valid UTF-8"]);
  });
});
