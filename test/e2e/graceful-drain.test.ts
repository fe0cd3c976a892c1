import http2 from "node:http2";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { PACKAGE_ROOT } from "../../src/paths.js";
import { startCliServer } from "../support/cli-server.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { insertTenant } from "../support/fixtures.js";
import { clientFor, startTestServer, type TestServer, type TransportName } from "../support/server.js";
import { connectOutcome } from "../support/wire.js";

// The server is closed in the middle of the test, so no useTestServer.
let db: TestDatabase;
let server: TestServer;
let sql: pg.Client;
let closed: Promise<void> | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(await db.pool());
  sql = await db.client();
});
afterAll(async () => {
  await (closed ?? server?.close());
  await db?.drop();
});

/** Settles to the call's outcome: its value, or the ConnectError it failed with. */
const outcome = <T>(call: Promise<T>) =>
  call.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error: ConnectError.from(error) }),
  );

/** How many backends of this file's database wait for a lock (other files share the cluster). */
async function lockWaiters(): Promise<number> {
  const { rows } = await sql.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
  );
  return rows[0]!.n;
}

describe("graceful shutdown finishes in-flight calls", () => {
  it("calls running when close() begins complete OK over gRPC and Connect, new calls are refused, close() resolves", async () => {
    const tenant = await insertTenant(sql, { name: "Before drain" });
    const locker = await db.client();
    await locker.query("BEGIN");
    await locker.query("SELECT id FROM tenants WHERE id = $1 FOR UPDATE", [tenant.id]);

    const rename = (transport: TransportName, name: string) =>
      outcome(
        clientFor(TenantRegistryService, server.baseUrl, transport).updateTenant({
          tenant: { id: tenant.id, name },
          updateMask: { paths: ["name"] },
        }),
      );
    const viaGrpc = rename("grpc", "Renamed over gRPC");
    const viaConnect = rename("connect-json-h1", "Renamed over Connect");

    // Both are inside the server, each holding a transaction that waits for the row.
    await expect.poll(lockWaiters, { timeout: 10_000, interval: 20 }).toBe(2);

    closed = server.close(); // not awaited: the in-flight calls are still blocked
    let closeSettled = false;
    void closed.then(() => (closeSettled = true));

    // The port no longer takes connections: refused by the kernel, not accepted and dropped…
    expect(await connectOutcome(server.port)).toBe("ECONNREFUSED");
    // …so no new call gets in, on either protocol.
    for (const transport of ["grpc", "connect-json-h1"] as const) {
      const fresh = await outcome(clientFor(TenantRegistryService, server.baseUrl, transport).getTenant({ id: tenant.id }));
      expect(fresh.ok, `${transport}: a new call after close() began`).toBe(false);
      if (!fresh.ok) {
        expect(fresh.error.code === Code.Unavailable || /ECONNREFUSED/.test(fresh.error.message), fresh.error.message).toBe(true);
      }
    }
    // close() waits for the in-flight calls rather than finishing without them.
    expect(closeSettled).toBe(false);
    expect(await lockWaiters()).toBe(2);

    // The grace period of the test server is 2 s: release the row well within it.
    await locker.query("COMMIT");

    const [grpc, connect] = await Promise.all([viaGrpc, viaConnect]);
    expect(grpc.ok ? grpc.value.tenant?.name : grpc.error.message).toBe("Renamed over gRPC");
    expect(connect.ok ? connect.value.tenant?.name : connect.error.message).toBe("Renamed over Connect");
    await expect(closed).resolves.toBeUndefined();

    // Both committed, one after the other, each with its audit event.
    const { rows } = await sql.query<{ name: string }>("SELECT name FROM tenants WHERE id = $1", [tenant.id]);
    expect(["Renamed over gRPC", "Renamed over Connect"]).toContain(rows[0]!.name);
    const events = await sql.query<{ to: string }>(
      "SELECT fields->'name'->>'to' AS to FROM audit_log WHERE action = 'tenant.update' AND target_id = $1",
      [tenant.id],
    );
    expect(events.rows.map((r) => r.to).sort()).toEqual(["Renamed over Connect", "Renamed over gRPC"]);
  });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("SIGTERM on the real process (tenant-registry serve)", () => {
  it("stops accepting at once and sends GOAWAY to an idle h2 session, while a call in flight keeps the drain going", async () => {
    const tenant = await insertTenant(sql, { name: "Before SIGTERM" });
    const cli = await startCliServer([process.execPath, join(PACKAGE_ROOT, "dist", "bin", "main.js"), "serve"], {
      APP_ENV: "dev",
      AUTH_MODE: "none",
      DATABASE_URL: db.url,
      ADDR: "127.0.0.1:0",
      // Long, so that only the drain's first steps can explain what the test sees.
      SHUTDOWN_GRACE_PERIOD: "20",
    });
    const locker = await db.client();
    let exited: Promise<number | null> | undefined;
    try {
      // An h2 session that has opened no stream: established on both sides before the signal.
      const idle = http2.connect(cli.baseUrl);
      idle.on("error", () => {});
      await new Promise((resolve) => idle.once("remoteSettings", resolve));
      const goaway = new Promise<number>((resolve) => idle.once("goaway", (code: number) => resolve(code)));

      // A call held inside the server by a row lock: the drain cannot end while it waits.
      await locker.query("BEGIN");
      await locker.query("SELECT id FROM tenants WHERE id = $1 FOR UPDATE", [tenant.id]);
      const inFlight = outcome(
        clientFor(TenantRegistryService, cli.baseUrl, "grpc").updateTenant({ tenant: { id: tenant.id, name: "During SIGTERM" }, updateMask: { paths: ["name"] } }),
      );
      let inFlightSettled = false;
      void inFlight.then(() => (inFlightSettled = true));
      await expect.poll(lockWaiters, { timeout: 10_000, interval: 20 }).toBe(1);
      expect(await connectOutcome(cli.port)).toBe("connected");

      const signalled = performance.now();
      exited = cli.stop(); // SIGTERM; resolves when the process is gone
      // New connections: refused (nothing listens) within moments of the signal, not at the end of the drain.
      let refusedAfter: number | undefined;
      while (performance.now() - signalled < 2_000) {
        if ((await connectOutcome(cli.port)) === "ECONNREFUSED") {
          refusedAfter = performance.now() - signalled;
          break;
        }
        await sleep(5);
      }
      expect(refusedAfter, "ms from SIGTERM until a new TCP connection was refused").toBeLessThan(500);
      // The idle session was told at drain start, not when the grace period ends.
      const code = await Promise.race([goaway, sleep(1_000).then(() => "no GOAWAY within 1 s of SIGTERM")]);
      expect(code).toBe(http2.constants.NGHTTP2_NO_ERROR);
      idle.destroy();
      // All that while the call was in flight: the server was draining, not gone.
      expect(inFlightSettled).toBe(false);
      expect(await lockWaiters()).toBe(1);

      await locker.query("COMMIT");
      const renamed = await inFlight;
      expect(renamed.ok ? renamed.value.tenant?.name : renamed.error.message).toBe("During SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      await locker.end();
      await (exited ?? cli.stop());
    }
  });
});
