import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { JsonObject } from "@bufbuild/protobuf";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import { jsonbTextBytes, MAX_AUDIT_FIELDS_BYTES } from "../../src/domain/audit-query.js";
import { insertTenant } from "../support/fixtures.js";
import { useTestServer } from "../support/harness.js";
import { clientFor, type TestServer, type TransportName } from "../support/server.js";

/**
 * An event's `fields` are bounded as PostgreSQL stores them (jsonb text, 64 KiB), by the
 * service, which names the event, and by the schema, for every writer. Before, a 4 MiB request
 * could hold one event of 4 MiB, and a page of 500 of them was 2 GB for the server to hold.
 */
let server: TestServer;
let sql: pg.Client;
useTestServer((h) => ({ server, sql } = h));

const event = (tenantId: string, externalId: string, fields: JsonObject) => ({
  tenantId,
  action: "certifai.report.create",
  crud: "c",
  actor: { id: "user-1" },
  // Unique per component across tenants: a test run's ids must not meet another's.
  externalId: `${externalId}-${randomUUID()}`,
  component: "certifai-api",
  fields,
});

async function storedCount(tenantId: string): Promise<number> {
  const { rows } = await sql.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_log WHERE tenant_id = $1", [tenantId]);
  return rows[0]!.n;
}

function violationsOf(error: unknown): string[] {
  return ConnectError.from(error)
    .findDetails(BadRequestSchema)
    .flatMap((d) => d.fieldViolations.map((v) => `${v.field}: ${v.description}`));
}

// {"b": "xx…x"} as jsonb text: 9 bytes around a value of `n` characters.
const blobOf = (stored: number): JsonObject => ({ b: "x".repeat(stored - 9) });

describe.each<TransportName>(["grpc", "connect-json-h1"])("an audit event's fields over %s", (transport) => {
  const client = () => clientFor(TenantRegistryService, server.baseUrl, transport);

  it("are recorded up to 65,536 bytes as stored, and the database agrees at the limit", async () => {
    const tenant = await insertTenant(sql);
    expect(jsonbTextBytes(blobOf(MAX_AUDIT_FIELDS_BYTES))).toBe(MAX_AUDIT_FIELDS_BYTES);
    expect((await client().recordAuditEvents({ events: [event(tenant.id, "at-limit", blobOf(MAX_AUDIT_FIELDS_BYTES))] })).recorded).toBe(1);
    const { rows } = await sql.query<{ n: number }>("SELECT octet_length(fields::text) AS n FROM audit_log WHERE tenant_id = $1", [tenant.id]);
    expect(rows).toEqual([{ n: MAX_AUDIT_FIELDS_BYTES }]);
  });

  it.each([
    ["one byte over the limit", blobOf(MAX_AUDIT_FIELDS_BYTES + 1)],
    // 300 numbers of 6 characters as sent, each 301 digits as numeric prints it: ~2 KB sent, ~90 KB stored.
    ["small as sent, large as stored (numbers printed in full)", { n: Array.from({ length: 300 }, () => 1e300) }],
  ])("are refused when %s, naming the event, and nothing of the batch is stored", async (_case, fields) => {
    const tenant = await insertTenant(sql);
    const error = await client()
      .recordAuditEvents({ events: [event(tenant.id, "fine", { ok: true }), event(tenant.id, "too-big", fields)] })
      .then(() => expect.fail("expected InvalidArgument"), (e: unknown) => e);
    expect(ConnectError.from(error).code).toBe(Code.InvalidArgument);
    expect(violationsOf(error)).toEqual(["events[1].fields: must be at most 65,536 bytes as stored (jsonb text, numbers in full)"]);
    expect(await storedCount(tenant.id)).toBe(0);
  });
});

describe("the registry's own events", () => {
  it("carry what their change carried: the largest valid metadata update is audited with its old and new maps", async () => {
    const tenant = await insertTenant(sql);
    const client = clientFor(TenantRegistryService, server.baseUrl, "grpc");
    // 64 keys of 1,024 characters, the most checkMetadata allows; the event holds both maps (~140 KB).
    const metadata = (fill: string) => Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`key-${i}`, fill.repeat(1024)]));
    for (const fill of ["a", "b"]) {
      await client.updateTenant({ tenant: { id: tenant.id, metadata: metadata(fill) }, updateMask: { paths: ["metadata"] } });
    }
    const { rows } = await sql.query<{ n: number }>(
      "SELECT octet_length(fields::text) AS n FROM audit_log WHERE tenant_id = $1 AND action = 'tenant.update' ORDER BY seq",
      [tenant.id],
    );
    expect(rows).toHaveLength(2);
    expect(rows[1]!.n).toBeGreaterThan(2 * MAX_AUDIT_FIELDS_BYTES);
  });
});

describe("the schema", () => {
  it("refuses reported fields over 65,536 bytes as stored from any writer, and takes them at the limit", async () => {
    const tenant = await insertTenant(sql);
    const insert = (fields: JsonObject) =>
      sql.query("INSERT INTO audit_log (tenant_id, action, crud, actor_id, component, fields) VALUES ($1, 'x.y', 'c', 'u', 'direct', $2)", [
        tenant.id,
        JSON.stringify(fields),
      ]);
    await insert(blobOf(MAX_AUDIT_FIELDS_BYTES));
    await expect(insert(blobOf(MAX_AUDIT_FIELDS_BYTES + 1))).rejects.toMatchObject({ constraint: "audit_log_fields_size" });
    expect(await storedCount(tenant.id)).toBe(1);
  });
});
