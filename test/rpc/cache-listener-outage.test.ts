import { type Client } from "@connectrpc/connect";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { EntitlementReason } from "../../gen/breakpilot/tenantregistry/v1/entitlement_pb.js";
import { ProductCode } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { insertTenant } from "../support/fixtures.js";
import { clientFor, startTestServer, type TestServer } from "../support/server.js";

/*
 * The notification path goes away: while B's listener is down, B answers
 * from PostgreSQL (slower, never stale); once it is back, B flushes its cache
 * before serving from it again.
 */

let db: TestDatabase;
let sql: pg.Client;
let serverA: TestServer;
let serverB: TestServer;
let a: Client<typeof TenantRegistryService>;
let b: Client<typeof TenantRegistryService>;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.client();
  // A first reconnect 0.75-1.5 s after a drop: time enough to look at the outage.
  const changeListener = { backoffMinMs: 1_500 };
  serverA = await startTestServer(await db.pool(), { changeListener });
  serverB = await startTestServer(await db.pool(), { changeListener });
  a = clientFor(TenantRegistryService, serverA.baseUrl, "grpc");
  b = clientFor(TenantRegistryService, serverB.baseUrl, "grpc");
});

afterAll(async () => {
  await serverA?.close();
  await serverB?.close();
  await db?.drop();
});

const reason = async (slug: string) => EntitlementReason[(await b.checkEntitlement({ tenant: slug, product: ProductCode.CERTIFAI })).reason];

describe("when the change listener's connection is killed", () => {
  it("B serves no stale answer while it is down, and uses its cache again only after reconnecting and flushing", async () => {
    const tenant = await insertTenant(sql, { products: ["certifai"] });
    expect(await reason(tenant.slug)).toBe("ENTITLED");
    const { hits } = serverB.app.cacheStats;
    expect(await reason(tenant.slug)).toBe("ENTITLED");
    expect(serverB.app.cacheStats.hits).toBe(hits + 1);

    // Both replicas' listeners (A's too: A only writes here, and evicts its own commits at once).
    await serverB.app.changes.whenConnected(10_000);
    await sql.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
       WHERE datname = current_database() AND application_name = 'tenant-registry change listener'`,
    );
    await vi.waitFor(() => expect(serverB.app.cacheStats.listenerConnected).toBe(false), { timeout: 1_000, interval: 2 });

    // The suspension's notice cannot reach B: B must not answer from what it cached.
    await a.suspendTenant({ id: tenant.id, reason: "outage" });
    expect(serverB.app.changes.connected).toBe(false);
    const before = serverB.app.cacheStats;
    const [bypassed, cachedHits] = [before.bypassed, before.hits];
    expect(await reason(tenant.slug)).toBe("TENANT_NOT_ACTIVE");
    expect(await reason(tenant.slug)).toBe("TENANT_NOT_ACTIVE");
    expect(serverB.app.cacheStats.bypassed).toBe(bypassed + 2);
    expect(serverB.app.cacheStats.hits).toBe(cachedHits);
    expect(serverB.app.cacheStats.entries).toBe(0);

    // Back: nothing from before the outage is served (the first read is a miss), and notices flow again.
    await serverB.app.changes.whenConnected(10_000);
    const seen: string[] = [];
    const stop = serverB.app.changes.subscribe((n) => n && seen.push(n.action));
    await a.reactivateTenant({ id: tenant.id });
    await vi.waitFor(() => expect(seen).toContain("tenant.reactivate"), { timeout: 2_000, interval: 2 });
    stop();
    const { misses } = serverB.app.cacheStats;
    expect(await reason(tenant.slug)).toBe("ENTITLED");
    expect(serverB.app.cacheStats.misses).toBe(misses + 1);
    const { hits: hitsAfter } = serverB.app.cacheStats;
    expect(await reason(tenant.slug)).toBe("ENTITLED");
    expect(serverB.app.cacheStats.hits).toBe(hitsAfter + 1);
  });
});
