import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/health/v1/health_pb.js";
import { createDatabasePool, type DatabasePool } from "../../src/db/pool.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { clientFor, startTestServer, type TestServer } from "../support/server.js";
import { startTcpProxy } from "../support/tcp-proxy.js";
import { restFetch } from "../support/rest.js";

// The server reaches a real, migrated database through a proxy, then the proxy
// is cut: the database has gone away under a running server.
let db: TestDatabase;
let pool: DatabasePool;
let server: TestServer;

beforeAll(async () => {
  db = await createTestDatabase();
  const target = new URL(db.url);
  const proxy = await startTcpProxy(target.hostname, Number(target.port));
  const viaProxy = new URL(db.url);
  viaProxy.port = String(proxy.port);
  pool = await createDatabasePool(viaProxy.toString(), { connectionTimeoutMs: 500 });
  server = await startTestServer(pool);
  expect((await fetch(`${server.baseUrl}/readyz`)).status).toBe(200);
  await proxy.cut();
});
afterAll(async () => {
  await server?.close();
  await pool?.end().catch(() => {});
  await db?.drop();
});

describe("when the database is down", () => {
  it("RPCs answer Unavailable without leaking connection details", async () => {
    const client = clientFor(TenantRegistryService, server.baseUrl, "grpc");
    const error = await client.getTenantBySlug({ slug: "acme" }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: Code.Unavailable });
    expect(String((error as Error).message)).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|postgres/);
  });

  it("REST answers 503 with a JSON error", async () => {
    const res = await restFetch(`${server.baseUrl}/v1/tenants/by-slug/acme`);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ code: "unavailable" });
  });

  it("/healthz stays 200 (liveness needs no database) while /readyz and grpc health say not ready", async () => {
    expect((await fetch(`${server.baseUrl}/healthz`)).status).toBe(200);
    // Readiness is re-checked at most once a second (shared by every probe and watcher).
    await expect.poll(async () => (await fetch(`${server.baseUrl}/readyz`)).status, { timeout: 5_000 }).toBe(503);
    const ready = await fetch(`${server.baseUrl}/readyz`);
    expect(await ready.json()).toEqual({ status: "unavailable", reason: "database unavailable" });
    const health = clientFor(Health, server.baseUrl, "connect-json-h1");
    expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.NOT_SERVING);
  });

  it("logs the cause for operators", () => {
    expect(server.logs.some((l) => l["msg"] === "database unavailable")).toBe(true);
  });
});
