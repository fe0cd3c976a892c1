import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { insertTenant } from "../support/fixtures.js";
import { clientFor, startTestServer, type TestServer, type TransportName } from "../support/server.js";

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

    // The port no longer takes calls, on either protocol.
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
