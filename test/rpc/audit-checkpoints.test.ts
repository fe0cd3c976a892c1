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

  it("hands out no stored checkpoint whose signature is not its own: a row forged in the database is signed over", async () => {
    const tenant = await insertTenant(sql);
    const client = clientFor(TenantRegistryService, server.baseUrl, "grpc");
    const first = (await client.getAuditCheckpoint({ tenantId: tenant.id })).checkpoint!;
    // Someone with write access to the database: the same head and key, a later time, a signature of zeros.
    await sql.query(
      `INSERT INTO audit_checkpoints (chain_id, seq, hash, signed_at, key_id, signature)
       SELECT chain_id, seq, hash, signed_at + interval '1 second', key_id, decode(repeat('00', 64), 'hex')
       FROM audit_checkpoints WHERE chain_id = $1`,
      [tenant.id],
    );
    const answered = (await client.getAuditCheckpoint({ tenantId: tenant.id })).checkpoint!;
    expect(Buffer.from(answered.signature).equals(Buffer.alloc(64))).toBe(false);
    expect(answered.sequence).toBe(first.sequence);
    expect((await client.verifyAuditChain({ tenantId: tenant.id, checkpoint: answered })).intact).toBe(true);
  });
});
