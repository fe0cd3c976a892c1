import http2 from "node:http2";
import net from "node:net";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import { ListAuditEventsRequestSchema, ListAuditEventsResponseSchema, TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
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

  it("many large multiplexed answers on one connection are all answered, even to a client slow to read them", async () => {
    // 500 events of ~700 bytes: one ListAuditEvents page is ~460 KB (Connect binary).
    await sql.query(
      `INSERT INTO audit_log (tenant_id, action, crud, actor_id, description, created_at)
       SELECT $1, 'report.view', 'r', 'u-' || n, repeat('d', 600), now() - (n || ' seconds')::interval FROM generate_series(1, 500) AS n`,
      [tenantId],
    );
    // A raw h2 client that does not read its answers until it has asked for all of
    // them: their bodies wait in the server's session memory, which is what Node
    // checks each new stream against. 30 answers waiting (~14 MB) is past Node's
    // default maxSessionMemory of 10 MB, so with it the next 70 streams were reset
    // (ENHANCE_YOUR_CALM; measured: 74 of 100 lost). A client that asks for all at
    // once and reads at once never got there, so it guarded nothing.
    const body = Buffer.from(toBinary(ListAuditEventsRequestSchema, create(ListAuditEventsRequestSchema, { tenantId, pageSize: 500 })));
    const session = http2.connect(server.baseUrl);
    session.on("error", () => {});
    const ask = () => {
      const stream = session.request({ ":method": "POST", ":path": "/breakpilot.tenantregistry.v1.TenantRegistryService/ListAuditEvents", "content-type": "application/proto" });
      stream.end(body);
      stream.pause();
      const answered = new Promise<string>((resolve) => {
        stream.once("response", (h) => resolve(String(h[":status"])));
        stream.once("error", (e: NodeJS.ErrnoException) => resolve(`${e.code} rst=${stream.rstCode}`));
      });
      return { stream, answered };
    };
    const first = Array.from({ length: 30 }, ask);
    await Promise.all(first.map((c) => c.answered)); // their bodies now wait, unread
    const rest = Array.from({ length: 70 }, ask);
    const all = [...first, ...rest];
    expect(await Promise.all(all.map((c) => c.answered))).toEqual(all.map(() => "200"));
    const bodies = await Promise.all(
      all.map(
        ({ stream }) =>
          new Promise<Buffer>((resolve, reject) => {
            const chunks: Buffer[] = [];
            stream.on("data", (c: Buffer) => chunks.push(c));
            stream.once("end", () => resolve(Buffer.concat(chunks)));
            stream.once("error", reject);
            stream.resume();
          }),
      ),
    );
    expect(bodies.map((b) => fromBinary(ListAuditEventsResponseSchema, b).events.length)).toEqual(all.map(() => 500));
    session.close();
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
