import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { insertTenant } from "../support/fixtures.js";
import { clientFor, startTestServer } from "../support/server.js";

let db: TestDatabase;
let sql: pg.Client;
let tenantId: string;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.client();
  tenantId = (await insertTenant(sql)).id;
  await sql.query(
    `INSERT INTO audit_log (tenant_id, action, crud, actor_id, created_at)
     SELECT $1, 'report.view', 'r', 'u-' || n, now() - (n || ' seconds')::interval FROM generate_series(1, 20000) AS n`,
    [tenantId],
  );
});
afterAll(async () => db?.drop());

describe("an export cut short", () => {
  it("ends with an error, never as a complete-looking stream, when the server shuts down mid-export", async () => {
    const server = await startTestServer(await db.pool());
    const client = clientFor(TenantRegistryService, server.baseUrl, "grpc");
    let received = 0;
    let closing: Promise<void> | undefined;
    const outcome = await (async () => {
      for await (const _ of client.exportAuditEvents({ tenantId })) {
        received++;
        if (received === 100) closing = server.close(); // the server begins its graceful shutdown
      }
      return "completed";
    })().catch((e: unknown) => ConnectError.from(e));
    await closing;
    expect(received).toBeLessThan(20_000);
    expect(outcome).toBeInstanceOf(ConnectError);
    expect((outcome as ConnectError).code).toBe(Code.Unavailable); // retryable, and not a success
  });

  it("ends with DeadlineExceeded when the caller's deadline passes", async () => {
    const server = await startTestServer(await db.pool());
    try {
      const client = clientFor(TenantRegistryService, server.baseUrl, "connect-json-h1");
      let received = 0;
      const error = await (async () => {
        for await (const _ of client.exportAuditEvents({ tenantId }, { timeoutMs: 300 })) {
          received++;
          await new Promise((r) => setTimeout(r, 1)); // a slow consumer
        }
      })().then(() => undefined, (e: unknown) => ConnectError.from(e));
      expect(received).toBeLessThan(20_000);
      expect(error?.code).toBe(Code.DeadlineExceeded);
    } finally {
      await server.close();
    }
  });
});
