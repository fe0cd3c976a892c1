import http2 from "node:http2";
import net from "node:net";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { DEFAULT_LIMITS } from "../../src/transport/server.js";
import { insertTenant } from "../support/fixtures.js";
import { useTestServer } from "../support/harness.js";
import { clientFor, type TestServer } from "../support/server.js";

// HTTP/2 abuse against the real listener and app, each case with a well-behaved
// client alongside whose calls must keep succeeding. The limits are the
// production ones scaled down so that the test stays small and quick; the
// attackers connect from other loopback addresses (127.0.0.x) than the good client.
// Rapid reset has its own file: h2-rapid-reset.test.ts.
const LIMITS = {
  ...DEFAULT_LIMITS,
  maxConnections: 60,
  maxConnectionsPerAddress: 20,
  firstStreamTimeoutMs: 500,
  resetBurst: 50,
  resetRatePerSec: 10,
  abuseCooldownMs: 2_000,
};

let server: TestServer;
let sql: pg.Client;
let tenantId: string;
useTestServer(
  async (h) => {
    server = h.server;
    sql = h.sql;
    tenantId = (await insertTenant(sql)).id;
  },
  { limits: LIMITS },
);

/** An h2 session from `localAddress`; resolves once its fate is known (connected, or refused). */
function sessionFrom(localAddress: string): Promise<{ session: http2.ClientHttp2Session; connected: boolean; closed: Promise<number> }> {
  return new Promise((resolve) => {
    const session = http2.connect(server.baseUrl, {
      createConnection: () => net.connect({ host: "127.0.0.1", port: server.port, localAddress }),
    });
    session.on("error", () => {});
    const started = Date.now();
    const closed = new Promise<number>((r) => session.once("close", () => r(Date.now() - started)));
    session.once("remoteSettings", () => resolve({ session, connected: true, closed }));
    session.once("close", () => resolve({ session, connected: false, closed }));
  });
}

/** The well-behaved client: a few calls that must all succeed. */
async function wellBehaved(calls = 5): Promise<void> {
  const client = clientFor(TenantRegistryService, server.baseUrl, "grpc");
  for (let i = 0; i < calls; i++) expect((await client.getTenant({ id: tenantId })).tenant?.id).toBe(tenantId);
}

describe("HTTP/2 abuse, with a well-behaved client alongside", () => {
  it("idle sessions: past the per-address cap they are refused, and those admitted close after the first-stream timeout", async () => {
    const attempts = await Promise.all(Array.from({ length: 40 }, () => sessionFrom("127.0.0.2")));
    const admitted = attempts.filter((a) => a.connected);
    expect(admitted.length).toBeLessThanOrEqual(LIMITS.maxConnectionsPerAddress);
    expect(admitted.length).toBeGreaterThan(0);
    await wellBehaved(); // the cap is someone else's: 127.0.0.1 is served
    // Sessions that open no stream are closed by the server, long before the old 300 s.
    const lifetimes = await Promise.all(admitted.map((a) => a.closed));
    expect(Math.max(...lifetimes)).toBeLessThan(LIMITS.firstStreamTimeoutMs + 5_000);
    // Refusals are logged, rate-limited: one line for the whole burst.
    expect(server.logs.filter((l) => l["msg"] === "refusing connections: limit reached")).toHaveLength(1);
  });

  it("many large multiplexed answers on one connection are all answered", async () => {
    // 500 events of ~700 bytes: one ListAuditEvents page is ~370 KB.
    await sql.query(
      `INSERT INTO audit_log (tenant_id, action, crud, actor_id, description, created_at)
       SELECT $1, 'report.view', 'r', 'u-' || n, repeat('d', 600), now() - (n || ' seconds')::interval FROM generate_series(1, 500) AS n`,
      [tenantId],
    );
    const oneConnection = createClient(TenantRegistryService, createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "2", useBinaryFormat: true }));
    const pages = await Promise.all(Array.from({ length: 100 }, () => oneConnection.listAuditEvents({ tenantId, pageSize: 500 })));
    expect(pages.map((p) => p.events.length)).toEqual(Array.from({ length: 100 }, () => 500));
    await wellBehaved();
    expect(server.logs.filter((l) => (l["level"] as number) >= 50)).toEqual([]);
  }, 60_000);

  it("oversized headers: that stream is refused, the server stays up for everyone", async () => {
    const { session, connected } = await sessionFrom("127.0.0.4");
    expect(connected).toBe(true);
    const answer = await new Promise<string>((resolve) => {
      const stream = session.request({ ":path": "/healthz", "x-huge": "h".repeat(64 * 1024) });
      stream.on("response", (h) => resolve(String(h[":status"])));
      stream.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
      stream.on("close", () => resolve(`closed ${stream.rstCode}`));
    });
    expect(answer).not.toBe("200");
    session.destroy();
    await wellBehaved();
  });
});
