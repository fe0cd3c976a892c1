import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DatabasePool } from "../../src/db/pool.js";
import { applyRetention, signChainHead, verifyStoredChain } from "../../src/service/audit-chain.js";
import { ephemeralAuditSigner } from "../../src/service/audit-signing-key.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { insertTenant } from "../support/fixtures.js";

// Retention is the one path that may delete audit events: what it cuts becomes
// the chain's signed base, and what remains still verifies, also against a
// checkpoint signed before the cut.

const DAY = 24 * 60 * 60 * 1000;
const now = new Date();
const signer = ephemeralAuditSigner();

let db: TestDatabase;
let pool: DatabasePool;
let sql: pg.Client;
beforeAll(async () => {
  db = await createTestDatabase();
  pool = await db.pool();
  sql = await db.client();
});
afterAll(async () => db?.drop());

/** `count` events of the tenant, each `ageMs` old, through the one writer (audit_append). */
async function append(tenantId: string, count: number, ageMs: number) {
  const at = new Date(now.getTime() - ageMs).toISOString();
  const events = Array.from({ length: count }, (_, i) => ({ tenant_id: tenantId, action: "document.update", crud: "u", actor_id: `user-${i}`, created_at: at }));
  await sql.query("SELECT audit_append($1::jsonb)", [JSON.stringify(events)]);
}

async function sequences(tenantId: string): Promise<number[]> {
  const { rows } = await sql.query<{ seq: string }>("SELECT seq FROM audit_log WHERE chain_id = $1 ORDER BY seq", [tenantId]);
  return rows.map((r) => Number(r.seq));
}

describe("retention with AUDIT_RETENTION", () => {
  it("removes the events older than the period in batches, and the rest verifies from the signed base", async () => {
    const tenant = await insertTenant(sql);
    await append(tenant.id, 25, 10 * DAY);
    await append(tenant.id, 5, 2 * DAY);
    const before = await signChainHead(pool, signer, tenant.id, now);
    expect(before.sequence).toBe(30n);

    // A batch of 10: the 25 old events go in three cuts, each signed.
    expect(await applyRetention(pool, signer, now, 7 * DAY, 10)).toBe(25);
    expect(await sequences(tenant.id)).toEqual([26, 27, 28, 29, 30]);
    const { rows: cuts } = await sql.query<{ base_seq: string }>("SELECT base_seq FROM audit_retention_cuts WHERE chain_id = $1 ORDER BY base_seq", [tenant.id]);
    expect(cuts.map((c) => Number(c.base_seq))).toEqual([10, 20, 25]);

    const verdict = await verifyStoredChain(pool, tenant.id, undefined, signer.publicKey);
    expect(verdict).toMatchObject({ intact: true, baseSequence: 25n, lastSequence: 30n, eventsChecked: 5n });
    // The checkpoint taken before the cut still covers what remains.
    expect(await verifyStoredChain(pool, tenant.id, before, signer.publicKey)).toMatchObject({ intact: true, lastSequence: 30n });

    // Nothing is left to cut; new events chain on from the head.
    expect(await applyRetention(pool, signer, now, 7 * DAY, 10)).toBe(0);
    await append(tenant.id, 2, 0);
    expect(await verifyStoredChain(pool, tenant.id, before, signer.publicKey)).toMatchObject({ intact: true, lastSequence: 32n });
  });

  it("is off by default: without a period nothing goes", async () => {
    const tenant = await insertTenant(sql);
    await append(tenant.id, 3, 400 * DAY);
    expect(await applyRetention(pool, signer, now, undefined)).toBe(0);
    expect(await sequences(tenant.id)).toEqual([1, 2, 3]);
  });

  it("a tenant's own period wins over the global one", async () => {
    const strict = await insertTenant(sql);
    const lenient = await insertTenant(sql);
    await sql.query("UPDATE tenants SET audit_retention = interval '1 day' WHERE id = $1", [strict.id]);
    await sql.query("UPDATE tenants SET audit_retention = interval '30 days' WHERE id = $1", [lenient.id]);
    for (const t of [strict, lenient]) await append(t.id, 4, 3 * DAY);
    await applyRetention(pool, signer, now, 7 * DAY);
    expect(await sequences(strict.id)).toEqual([]);
    expect(await sequences(lenient.id)).toEqual([1, 2, 3, 4]);
    expect(await verifyStoredChain(pool, strict.id, undefined, signer.publicKey)).toMatchObject({ intact: true, baseSequence: 4n, eventsChecked: 0n });
  });

  it("a delete outside the retention path is refused by the database", async () => {
    const tenant = await insertTenant(sql);
    await append(tenant.id, 2, 10 * DAY);
    await expect(sql.query("DELETE FROM audit_log WHERE chain_id = $1", [tenant.id])).rejects.toThrow();
    expect(await sequences(tenant.id)).toEqual([1, 2]);
  });
});
