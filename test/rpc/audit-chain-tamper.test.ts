import { Code, type Client } from "@connectrpc/connect";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import {
  AuditChainProblem,
  TenantRegistryService,
  type VerifyAuditChainResponse,
} from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import type { DatabasePool } from "../../src/db/pool.js";
import { sql as slonikSql } from "slonik";
import { listChainEvents } from "../../src/db/queries/audit-chain.js";
import { chainHash, PLATFORM_CHAIN } from "../../src/domain/audit-chain.js";
import { ephemeralAuditSigner } from "../../src/service/audit-signing-key.js";
import { awkwardAuditEvents, insertTenant } from "../support/fixtures.js";
import { useTestServer } from "../support/harness.js";
import { clientFor } from "../support/server.js";

/**
 * The chain catches what SQL can do behind the service's back. Each tamper runs
 * as a superuser would: the append-only trigger switched off, the row changed,
 * the trigger back on; then VerifyAuditChain must name the sequence and why.
 */

let sql: pg.Client;
let pool: DatabasePool;
let client: Client<typeof TenantRegistryService>;

useTestServer((h) => {
  ({ sql, pool } = h);
  client = clientFor(TenantRegistryService, h.server.baseUrl, "grpc");
});

/** A tenant with `n` events recorded through the service, with text, numbers, nested fields and nulls. */
async function tenantWithEvents(n: number): Promise<string> {
  const tenant = await insertTenant(sql);
  await client.recordAuditEvents({ events: awkwardAuditEvents(tenant.id, n) });
  return tenant.id;
}

async function superuserTamper(statement: string, params: unknown[]): Promise<void> {
  await sql.query("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only");
  try {
    await (params.length > 0 ? sql.query(statement, params) : sql.query(statement));
  } finally {
    await sql.query("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only");
  }
}

const verify = (tenantId: string, extra: Parameters<typeof client.verifyAuditChain>[0] = {}) =>
  client.verifyAuditChain({ tenantId, ...extra });

function expectBroken(v: VerifyAuditChainResponse, sequence: number, problem: AuditChainProblem): void {
  expect({ intact: v.intact, firstBadSequence: v.firstBadSequence, problem: AuditChainProblem[v.problem] }).toEqual({
    intact: false,
    firstBadSequence: BigInt(sequence),
    problem: AuditChainProblem[problem],
  });
  expect(v.detail).not.toBe("");
}

describe("an untouched chain", () => {
  it("verifies intact, from sequence 1 to the last, gapless", async () => {
    const tenantId = await tenantWithEvents(7);
    const v = await verify(tenantId);
    expect(v).toMatchObject({ intact: true, chainId: tenantId, baseSequence: 0n, lastSequence: 7n, eventsChecked: 7n });
    const { events } = await client.listAuditEvents({ tenantId });
    expect(events.map((e) => e.sequence)).toEqual([7n, 6n, 5n, 4n, 3n, 2n, 1n]);
    expect(events.at(-1)!.previousHash).toBe("0".repeat(64));
    for (let i = 0; i < events.length - 1; i++) expect(events[i]!.previousHash).toBe(events[i + 1]!.hash);
  });

  it("hashes to what the canonical form recomputed outside the database gives", async () => {
    const tenantId = await tenantWithEvents(3);
    const stored = await listChainEvents(pool, tenantId, 0n, 10);
    expect(stored).toHaveLength(3);
    for (const e of stored) expect(chainHash(e.previousHash, e)).toBe(e.hash);
    // Including the registry's own events, written one at a time by a mutation.
    const platform = await listChainEvents(pool, PLATFORM_CHAIN, 0n, 50);
    for (const e of platform) expect(chainHash(e.previousHash, e)).toBe(e.hash);
  });

  it("is intact for a tenant with no events yet, and NotFound for an unknown tenant", async () => {
    const tenant = await insertTenant(sql);
    expect(await verify(tenant.id)).toMatchObject({ intact: true, lastSequence: 0n, eventsChecked: 0n });
    await expect(verify("7d3c1e2a-0000-4000-8000-000000000000")).rejects.toMatchObject({ code: Code.NotFound });
    await expect(verify("not-a-uuid")).rejects.toMatchObject({ code: Code.InvalidArgument });
  });
});

describe("a row edited in SQL is named by its sequence", () => {
  it.each([
    ["action", "UPDATE audit_log SET action = 'document.read' WHERE chain_id = $1 AND seq = 3"],
    ["actor", "UPDATE audit_log SET actor_id = 'someone-else' WHERE chain_id = $1 AND seq = 3"],
    ["fields", `UPDATE audit_log SET fields = fields || '{"n": 99}' WHERE chain_id = $1 AND seq = 3`],
    ["created_at", "UPDATE audit_log SET created_at = created_at - interval '1 microsecond' WHERE chain_id = $1 AND seq = 3"],
    ["a null made empty", "UPDATE audit_log SET actor_name = '' WHERE chain_id = $1 AND seq = 3 AND actor_name IS NULL"],
  ])("%s", async (_what, statement) => {
    const tenantId = await tenantWithEvents(5);
    await superuserTamper(statement, [tenantId]);
    expectBroken(await verify(tenantId), 3, AuditChainProblem.HASH_MISMATCH);
  });

  it("also when the edited row's own hash is recomputed: the next event no longer follows it", async () => {
    const tenantId = await tenantWithEvents(5);
    await superuserTamper(
      `UPDATE audit_log SET action = 'document.read',
         hash = sha256(prev_hash || convert_to(audit_canonical(chain_id, seq, id, created_at, 'document.read', crud, actor_id,
           actor_name, actor_type, actor_href, target_id, target_name, target_type, source_ip, description, fields,
           is_failure, is_anonymous, component, external_id), 'UTF8'))
       WHERE chain_id = $1 AND seq = 3`,
      [tenantId],
    );
    expectBroken(await verify(tenantId), 4, AuditChainProblem.REORDERED);
  });
});

describe("rows removed or moved in SQL", () => {
  it("a deleted middle row is a gap at its sequence", async () => {
    const tenantId = await tenantWithEvents(6);
    await superuserTamper("DELETE FROM audit_log WHERE chain_id = $1 AND seq = 4", [tenantId]);
    expectBroken(await verify(tenantId), 4, AuditChainProblem.GAP);
  });

  it("deleted newest rows: missing against the recorded head; when the head is rewound too, intact as a chain but broken against an earlier checkpoint", async () => {
    const tenantId = await tenantWithEvents(6);
    const { checkpoint } = await client.getAuditCheckpoint({ tenantId });
    expect(checkpoint).toMatchObject({ chainId: tenantId, sequence: 6n });
    await superuserTamper("DELETE FROM audit_log WHERE chain_id = $1 AND seq > 4", [tenantId]);
    expectBroken(await verify(tenantId), 5, AuditChainProblem.MISSING_TAIL);

    await sql.query(
      "UPDATE audit_chain_heads SET seq = 4, hash = (SELECT hash FROM audit_log WHERE chain_id = $1 AND seq = 4) WHERE chain_id = $1",
      [tenantId],
    );
    expect(await verify(tenantId)).toMatchObject({ intact: true, lastSequence: 4n });
    expectBroken(await verify(tenantId, { checkpoint }), 5, AuditChainProblem.MISSING_TAIL);
  });

  it("two rows' contents swapped are detected at the first of them", async () => {
    const tenantId = await tenantWithEvents(5);
    await superuserTamper(
      `UPDATE audit_log a SET actor_id = b.actor_id, target_id = b.target_id, fields = b.fields
       FROM audit_log b WHERE a.chain_id = $1 AND b.chain_id = $1 AND ((a.seq = 2 AND b.seq = 4) OR (a.seq = 4 AND b.seq = 2))`,
      [tenantId],
    );
    expectBroken(await verify(tenantId), 2, AuditChainProblem.HASH_MISMATCH);
  });

  it("two whole rows swapped (sequence numbers exchanged) break the links", async () => {
    const tenantId = await tenantWithEvents(5);
    await superuserTamper(
      `UPDATE audit_log SET seq = 1000 WHERE chain_id = '${tenantId}' AND seq = 2;
       UPDATE audit_log SET seq = 2 WHERE chain_id = '${tenantId}' AND seq = 4;
       UPDATE audit_log SET seq = 4 WHERE chain_id = '${tenantId}' AND seq = 1000;`,
      [],
    );
    const v = await verify(tenantId);
    expect(v.intact).toBe(false);
    expect(v.firstBadSequence).toBe(2n);
  });
});

describe("checkpoints", () => {
  it("one the service signed verifies; a forged signature, another key's, or another chain's is refused", async () => {
    const tenantId = await tenantWithEvents(3);
    const { checkpoint } = await client.getAuditCheckpoint({ tenantId });
    expect(await verify(tenantId, { checkpoint })).toMatchObject({ intact: true });

    const forged = { ...checkpoint!, signature: new Uint8Array(checkpoint!.signature).map((b, i) => (i === 0 ? b ^ 1 : b)) };
    expectBroken(await verify(tenantId, { checkpoint: forged }), 3, AuditChainProblem.BAD_SIGNATURE);

    const other = ephemeralAuditSigner().sign({ chainId: tenantId, sequence: 3n, hash: checkpoint!.hash }, "2030-01-01T00:00:00.000000Z");
    expectBroken(
      await verify(tenantId, { checkpoint: { ...checkpoint!, keyId: other.keyId, signature: other.signature } }),
      3,
      AuditChainProblem.BAD_SIGNATURE,
    );
    const raised = { ...checkpoint!, sequence: 2n };
    expectBroken(await verify(tenantId, { checkpoint: raised }), 2, AuditChainProblem.BAD_SIGNATURE);
  });

  it("a rewritten chain does not contain the checkpoint's hash", async () => {
    const tenantId = await tenantWithEvents(4);
    const { checkpoint } = await client.getAuditCheckpoint({ tenantId });
    // Rewrite event 2 and re-chain everything after it, as an attacker with the canonical form would.
    await superuserTamper(
      `UPDATE audit_log SET action = 'document.read' WHERE chain_id = $1 AND seq = 2`,
      [tenantId],
    );
    await rechain(tenantId);
    expect(await verify(tenantId)).toMatchObject({ intact: true });
    expectBroken(await verify(tenantId, { checkpoint }), 4, AuditChainProblem.CHECKPOINT_MISMATCH);
  });

  it("publishes the public key the checkpoints verify with", async () => {
    const key = await client.getAuditPublicKey({});
    expect(key.publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    const { checkpoint } = await client.getAuditCheckpoint({ tenantId: "" });
    expect(checkpoint!.keyId).toBe(key.keyId);
    expect(checkpoint!.chainId).toBe(PLATFORM_CHAIN);
  });
});

/** Recomputes every hash of a chain in order (what an attacker who knows the canonical form does) and rewinds the head. */
async function rechain(chainId: string): Promise<void> {
  await sql.query("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only");
  try {
    await sql.query(
      `DO $$
       DECLARE e record; prev bytea := '\\x' || repeat('00', 32);
       BEGIN
         FOR e IN SELECT * FROM audit_log WHERE chain_id = '${chainId}' ORDER BY seq LOOP
           UPDATE audit_log SET prev_hash = prev, hash = sha256(prev || convert_to(audit_canonical(e.chain_id, e.seq, e.id,
             e.created_at, e.action, e.crud, e.actor_id, e.actor_name, e.actor_type, e.actor_href, e.target_id, e.target_name,
             e.target_type, e.source_ip, e.description, e.fields, e.is_failure, e.is_anonymous, e.component, e.external_id), 'UTF8'))
           WHERE id = e.id RETURNING hash INTO prev;
         END LOOP;
         UPDATE audit_chain_heads SET hash = prev WHERE chain_id = '${chainId}';
       END $$`,
    );
  } finally {
    await sql.query("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only");
  }
}

describe("append-only for real", () => {
  it("refuses UPDATE, DELETE and TRUNCATE on the service's own connection", async () => {
    const tenantId = await tenantWithEvents(2);
    for (const statement of [
      slonikSql.unsafe`UPDATE audit_log SET action = 'x.y' WHERE chain_id = ${tenantId}`,
      slonikSql.unsafe`DELETE FROM audit_log WHERE chain_id = ${tenantId}`,
      slonikSql.unsafe`TRUNCATE audit_log`,
      slonikSql.unsafe`UPDATE audit_log SET tenant_id = NULL WHERE chain_id = ${tenantId}`,
      slonikSql.unsafe`DELETE FROM audit_checkpoints`,
    ]) {
      await expect(pool.query(statement)).rejects.toThrow(/append-only/);
    }
    expect(await verify(tenantId)).toMatchObject({ intact: true, lastSequence: 2n });
  });

  it("a deleted tenant's events stay, in its chain, verifiable by its id; the delete itself is a platform event", async () => {
    const created = await client.createTenant({ slug: `gone-${Date.now().toString(36)}`, name: "Gone" });
    const tenantId = created.tenant!.id;
    await client.updateTenant({ tenant: { id: tenantId, name: "Gone soon" }, updateMask: { paths: ["name"] } });
    await client.suspendTenant({ id: tenantId, reason: "closing" });
    await client.archiveTenant({ id: tenantId });
    await client.deleteTenant({ id: tenantId });
    const { rows } = await sql.query("SELECT tenant_id, seq FROM audit_log WHERE chain_id = $1 ORDER BY seq", [tenantId]);
    expect(rows.map((r) => r.tenant_id)).toEqual(rows.map(() => null));
    expect(rows.length).toBeGreaterThanOrEqual(2);
    expect(await verify(tenantId)).toMatchObject({ intact: true, lastSequence: BigInt(rows.length) });
    const platform = await sql.query("SELECT 1 FROM audit_log WHERE chain_id = $1 AND action = 'tenant.delete' AND target_id = $2", [
      PLATFORM_CHAIN,
      tenantId,
    ]);
    expect(platform.rowCount).toBe(1);
    expect(await verify("")).toMatchObject({ intact: true });
  });
});

