import type pg from "pg";
import { describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { insertTenant } from "../support/fixtures.js";
import { useTestServer } from "../support/harness.js";
import { clientFor, type TestServer } from "../support/server.js";

/**
 * GetAuditCheckpoint signs the chain's head on demand. audit_checkpoints is append-only, so a
 * head that has not moved is answered with the checkpoint already stored: a caller asking in a
 * loop (tenant admins hold audit:verify) must not grow the table by a row per call.
 */
let server: TestServer;
let sql: pg.Client;
useTestServer((h) => ({ server, sql } = h));

const storedFor = async (chainId: string) =>
  (await sql.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_checkpoints WHERE chain_id = $1", [chainId])).rows[0]!.n;

describe("GetAuditCheckpoint", () => {
  it("answers a head it has signed with the same checkpoint, and signs anew once the head moves", async () => {
    const tenant = await insertTenant(sql);
    const client = clientFor(TenantRegistryService, server.baseUrl, "grpc");
    const first = (await client.getAuditCheckpoint({ tenantId: tenant.id })).checkpoint!;
    for (let i = 0; i < 5; i++) expect((await client.getAuditCheckpoint({ tenantId: tenant.id })).checkpoint).toEqual(first);
    expect(await storedFor(tenant.id)).toBe(1);

    await client.updateTenant({ tenant: { id: tenant.id, name: "Moved on" }, updateMask: { paths: ["name"] } });
    const next = (await client.getAuditCheckpoint({ tenantId: tenant.id })).checkpoint!;
    expect(next.sequence).toBe(first.sequence + 1n);
    expect(await storedFor(tenant.id)).toBe(2);
    // The one handed out again still verifies: nothing up to it was removed or changed.
    expect((await client.verifyAuditChain({ tenantId: tenant.id, checkpoint: first })).intact).toBe(true);
  });
});
