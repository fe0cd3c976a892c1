import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { useTestServer } from "../support/harness.js";
import { restFetch } from "../support/rest.js";
import { clientFor, type TestServer } from "../support/server.js";

// The schema goes away under a running server (e.g. `migrate down-all` in dev):
// the database answers, but every table is gone.
let server: TestServer;
let sql: pg.Client;
useTestServer((h) => {
  server = h.server;
  sql = h.sql;
});

beforeAll(async () => {
  expect((await fetch(`${server.baseUrl}/readyz`)).status).toBe(200);
  await sql.query("DROP SCHEMA public CASCADE");
  await sql.query("CREATE SCHEMA public");
});

describe("with the schema gone under a running server", () => {
  it("REST answers 503 unavailable, as readiness does, never 500", async () => {
    const res = await restFetch(`${server.baseUrl}/v1/tenants`);
    const body = (await res.json()) as { code: string; message: string };
    expect([res.status, body.code]).toEqual([503, "unavailable"]);
    expect(body.message).not.toMatch(/relation|tenants|SELECT|does not exist/);
    await expect.poll(async () => (await fetch(`${server.baseUrl}/readyz`)).status, { timeout: 5_000 }).toBe(503);
  });

  it("RPCs answer Unavailable on every protocol", async () => {
    for (const transport of ["grpc", "connect-json-h1"] as const) {
      const client = clientFor(TenantRegistryService, server.baseUrl, transport);
      const error = await client.listTenants({}).then(() => undefined, (e: unknown) => ConnectError.from(e));
      expect(error?.code, transport).toBe(Code.Unavailable);
      const write = await client.createTenant({ slug: "after-the-drop", name: "X" }).then(() => undefined, (e: unknown) => ConnectError.from(e));
      expect(write?.code, transport).toBe(Code.Unavailable);
    }
  });
});
