import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import type { Interceptor } from "slonik";
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
    // audit_append: the chain's bulk writer (a plain INSERT chains row by row, far slower for 20,000).
    `SELECT audit_append(jsonb_agg(jsonb_build_object('tenant_id', $1::text, 'action', 'report.view', 'crud', 'r',
       'actor_id', 'u-' || n, 'created_at', now() - (n || ' seconds')::interval) ORDER BY n))
     FROM generate_series(1, 20000) AS n`,
    [tenantId],
  );
});
afterAll(async () => db?.drop());

describe("an export cut short", () => {
  it("an export running when the drain begins gets the grace period and completes", async () => {
    const server = await startTestServer(await db.pool(), { graceMs: 20_000 });
    const client = clientFor(TenantRegistryService, server.baseUrl, "grpc");
    let received = 0;
    let closing: Promise<void> | undefined;
    for await (const message of client.exportAuditEvents({ tenantId })) {
      received += message.events.length;
      closing ??= server.close(); // after the first batch the server begins its graceful shutdown
    }
    expect(received).toBe(20_000);
    await closing;
  });

  it("past the grace period it ends with Unavailable, never as a complete-looking stream", async () => {
    const graceMs = 300;
    const server = await startTestServer(await db.pool(), { graceMs });
    const client = clientFor(TenantRegistryService, server.baseUrl, "grpc");
    let received = 0;
    let closing: Promise<void> | undefined;
    let closeBegan = 0;
    const outcome = await (async () => {
      for await (const message of client.exportAuditEvents({ tenantId })) {
        received += message.events.length;
        if (closing === undefined) {
          closeBegan = Date.now();
          closing = server.close();
          await new Promise((r) => setTimeout(r, 3 * graceMs)); // a slow reader keeps the export running past the grace period
        }
      }
      return "completed";
    })().catch((e: unknown) => ConnectError.from(e));
    const endedAfterMs = Date.now() - closeBegan;
    await closing;
    expect(received).toBeLessThan(20_000);
    expect(outcome).toBeInstanceOf(ConnectError);
    expect((outcome as ConnectError).code).toBe(Code.Unavailable); // retryable, and not a success
    expect(endedAfterMs).toBeGreaterThanOrEqual(graceMs);
  });

  it("stops at the caller's deadline on the server side, ending with deadline_exceeded", async () => {
    // A raw Connect streaming call with connect-timeout-ms and no client-side timer: whatever
    // ends the stream is the server's doing. A slow reader keeps the export running past it.
    const server = await startTestServer(await db.pool());
    try {
      const body = Buffer.from(JSON.stringify({ tenantId }));
      const envelope = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), body]);
      envelope.writeUInt32BE(body.length, 1);
      const res = await fetch(`${server.baseUrl}/breakpilot.tenantregistry.v1.TenantRegistryService/ExportAuditEvents`, {
        method: "POST",
        headers: { "content-type": "application/connect+json", "connect-protocol-version": "1", "connect-timeout-ms": "500" },
        body: envelope,
      });
      expect(res.status).toBe(200);
      const chunks: Buffer[] = [];
      for await (const chunk of res.body!) {
        chunks.push(Buffer.from(chunk));
        await new Promise((r) => setTimeout(r, 20));
      }
      const bytes = Buffer.concat(chunks);
      let events = 0;
      let end: { error?: { code?: string } } | undefined;
      for (let at = 0; at < bytes.length; ) {
        const flags = bytes[at]!;
        const length = bytes.readUInt32BE(at + 1);
        const payload = bytes.subarray(at + 5, at + 5 + length);
        if (flags & 0b10) end = JSON.parse(payload.toString("utf8"));
        else events += (JSON.parse(payload.toString("utf8")) as { events: unknown[] }).events.length;
        at += 5 + length;
      }
      expect(events).toBeGreaterThan(0);
      expect(events).toBeLessThan(20_000);
      expect(end?.error?.code).toBe("deadline_exceeded");
    } finally {
      await server.close();
    }
  });
});

describe("a client that stops reading", () => {
  it("has at most one page read ahead of the one being sent, and gets every event in order once it reads again", async () => {
    // Events of ~1.2 kB: a message of 250 is several times HTTP/2's 64 KiB flow-control
    // window, so the transport cannot hide pages in its buffers.
    const events = 2_000;
    const bigTenant = (await insertTenant(sql)).id;
    await sql.query(
      `SELECT audit_append(jsonb_agg(jsonb_build_object('tenant_id', $1::text, 'action', 'report.view', 'crud', 'r',
         'actor_id', 'u-' || n, 'description', repeat('d', 1000)) ORDER BY n))
       FROM generate_series(1, $2::int) AS n`,
      [bigTenant, events],
    );
    // Counted at the pool: the export's page queries (keyset, oldest first).
    let pagesRead = 0;
    const countPages: Interceptor = {
      name: "count-export-pages",
      beforeQueryExecution(_context, query) {
        if (query.sql.includes("FROM audit_log") && query.sql.includes("ORDER BY seq ASC")) pagesRead += 1;
        return null;
      },
    };
    const server = await startTestServer(await db.pool({ interceptors: [countPages] }));
    try {
      const client = clientFor(TenantRegistryService, server.baseUrl, "grpc");
      let received = 0;
      let previous = 0n;
      let readWhileHolding: number | undefined;
      for await (const message of client.exportAuditEvents({ tenantId: bigTenant })) {
        if (readWhileHolding === undefined) {
          await new Promise((r) => setTimeout(r, 1_000));
          readWhileHolding = pagesRead;
        }
        for (const event of message.events) {
          expect(event.sequence).toBe(previous + 1n);
          previous = event.sequence;
        }
        received += message.events.length;
      }
      // The page the client holds, the one waiting in the stream, one read ahead: not all 8.
      expect(readWhileHolding).toBeLessThanOrEqual(3);
      expect(received).toBe(events);
      expect(pagesRead).toBe(9); // 8 full pages of 250 and the empty one that ends the export
    } finally {
      await server.close();
    }
  });
});
