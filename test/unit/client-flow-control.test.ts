import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TenantSchema } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { createTenantRegistryClient } from "../../src/client/index.js";
import { CONNECTION_WINDOW_BYTES, createWideWindowSessionManager, STREAM_WINDOW_BYTES } from "../../src/client/http2-windows.js";
import { startTcpProxy } from "../support/tcp-proxy.js";

/**
 * The client's HTTP/2 flow-control windows, as a real h2c server sees them: how
 * much it may send on a response stream, and on the connection, before it must
 * wait for a WINDOW_UPDATE. Node's default is 64 KiB for both, and a long export
 * then stalls whenever the client is busy decoding (make bench, export).
 */
const sessions: http2.ServerHttp2Session[] = [];
let server: http2.Http2Server;
let baseUrl: string;

const routes = (router: ConnectRouter) =>
  router.service(TenantRegistryService, {
    async getTenantBySlug(req) {
      return { tenant: create(TenantSchema, { slug: req.slug }) };
    },
    // One message, then nothing until the caller goes away, as a quiet export or watch.
    async *exportAuditEvents(_req, ctx) {
      yield { events: [] };
      await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
    },
  });

beforeAll(async () => {
  server = http2.createServer(connectNodeAdapter({ routes }));
  server.on("session", (session) => sessions.push(session));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  for (const s of sessions) s.destroy();
  await new Promise((resolve) => server.close(resolve));
});

/** What the server may send on a session before the client reads, once the client's WINDOW_UPDATE is in (bounded: 2 s). */
async function connectionWindow(session: http2.ServerHttp2Session): Promise<number> {
  for (let i = 0; i < 40 && session.state.remoteWindowSize! < CONNECTION_WINDOW_BYTES / 2; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return session.state.remoteWindowSize!;
}

describe.each([
  { protocol: "grpc" as const, httpVersion: undefined },
  { protocol: "connect" as const, httpVersion: "2" as const },
])("createTenantRegistryClient over HTTP/2 ($protocol)", ({ protocol, httpVersion }) => {
  it("announces a 4 MiB stream window and widens the connection's to 16 MiB, on every session it opens", async () => {
    const client = createTenantRegistryClient({ baseUrl, protocol, ...(httpVersion ? { httpVersion } : {}) });
    const first = sessions.length;
    expect((await client.getTenantBySlug({ slug: "acme" })).tenant?.slug).toBe("acme");
    const session = sessions[first]!;
    expect(session.remoteSettings.initialWindowSize).toBe(STREAM_WINDOW_BYTES);
    // A few hundred bytes of the answer have been sent against it.
    expect(await connectionWindow(session)).toBeGreaterThan(CONNECTION_WINDOW_BYTES - 64 * 1024);

    // The server goes away (a GOAWAY, as at a rolling restart): the next call opens a new session, widened too.
    await new Promise<void>((resolve) => session.close(resolve));
    expect((await client.getTenantBySlug({ slug: "globex" })).tenant?.slug).toBe("globex");
    expect(sessions.length).toBe(first + 2);
    const next = sessions[first + 1]!;
    expect(next.remoteSettings.initialWindowSize).toBe(STREAM_WINDOW_BYTES);
    expect(await connectionWindow(next)).toBeGreaterThan(CONNECTION_WINDOW_BYTES - 64 * 1024);
  });
});

describe("the client's HTTP/2 connection keepalive", () => {
  it("ends a stream without a deadline once its connection goes silent, instead of waiting for good", async () => {
    const hop = await startTcpProxy("127.0.0.1", Number(new URL(baseUrl).port));
    const hopUrl = `http://127.0.0.1:${hop.port}`;
    try {
      // The client's manager, on a short clock (it pings every 30 s and waits 15 s for the answer).
      const sessionManager = createWideWindowSessionManager(hopUrl, { pingIntervalMs: 100, pingTimeoutMs: 200 });
      const client = createClient(TenantRegistryService, createGrpcTransport({ baseUrl: hopUrl, sessionManager }));
      const stream = client.exportAuditEvents({})[Symbol.asyncIterator]();
      expect((await stream.next()).done).toBe(false);
      hop.silence();
      const outcome = await Promise.race([
        stream.next().then(
          () => "a message",
          (error: unknown) => error,
        ),
        new Promise((resolve) => setTimeout(() => resolve("still waiting after 5 s"), 5_000)),
      ]);
      expect(outcome).toBeInstanceOf(ConnectError);
      expect((outcome as ConnectError).code).toBe(Code.Unavailable);
    } finally {
      await hop.cut();
    }
  });
});
