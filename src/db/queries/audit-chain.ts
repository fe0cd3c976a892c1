import { sql } from "slonik";
import { z } from "zod";
import type { ChainEvent, Checkpoint } from "../../domain/audit-chain.js";
import type { Db } from "./tenants.js";

/**
 * The audit chain's own tables: heads, signed checkpoints, retention cuts, and
 * the events as the chain hashes them (every value as PostgreSQL prints it).
 */

const INSTANT_SQL = sql.fragment`'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'`;

const headRow = z.object({
  seq: z.string(),
  hash: z.string(),
  base_seq: z.string(),
  base_hash: z.string(),
});

export type ChainHead = { readonly sequence: bigint; readonly hash: string; readonly baseSequence: bigint; readonly baseHash: string };

export async function findChainHead(db: Db, chainId: string): Promise<ChainHead | null> {
  const row = await db.maybeOne(sql.type(headRow)`
    SELECT seq::text AS seq, encode(hash, 'hex') AS hash, base_seq::text AS base_seq, encode(base_hash, 'hex') AS base_hash
    FROM audit_chain_heads WHERE chain_id = ${chainId}`);
  return row && { sequence: BigInt(row.seq), hash: row.hash, baseSequence: BigInt(row.base_seq), baseHash: row.base_hash };
}

// Aliases differ from the columns: ORDER BY seq must sort the bigint, not its text.
const chainEventRow = z.object({
  chain_id: z.string(),
  sequence: z.string(),
  id: z.string(),
  created_at: z.string(),
  action: z.string(),
  crud: z.string(),
  actor_id: z.string().nullable(),
  actor_name: z.string().nullable(),
  actor_type: z.string().nullable(),
  actor_href: z.string().nullable(),
  target_id: z.string().nullable(),
  target_name: z.string().nullable(),
  target_type: z.string().nullable(),
  source_ip: z.string().nullable(),
  description: z.string(),
  fields: z.string(),
  is_failure: z.boolean(),
  is_anonymous: z.boolean(),
  component: z.string(),
  external_id: z.string().nullable(),
  prev_hash: z.string(),
  hash: z.string(),
  tenant_id: z.string().nullable(),
});

export type StoredChainEvent = ChainEvent & { readonly tenantId: string | null };

function toChainEvent(r: z.infer<typeof chainEventRow>): StoredChainEvent {
  return {
    chainId: r.chain_id,
    sequence: BigInt(r.sequence),
    id: r.id,
    createdAt: r.created_at,
    action: r.action,
    crud: r.crud,
    actorId: r.actor_id,
    actorName: r.actor_name,
    actorType: r.actor_type,
    actorHref: r.actor_href,
    targetId: r.target_id,
    targetName: r.target_name,
    targetType: r.target_type,
    sourceIp: r.source_ip,
    description: r.description,
    fieldsJson: r.fields,
    isFailure: r.is_failure,
    isAnonymous: r.is_anonymous,
    component: r.component,
    externalId: r.external_id,
    previousHash: r.prev_hash,
    hash: r.hash,
    tenantId: r.tenant_id,
  };
}

/** One keyset batch of a chain in sequence order, after `afterSeq`. */
export async function listChainEvents(db: Db, chainId: string, afterSeq: bigint, limit: number): Promise<StoredChainEvent[]> {
  const rows = await db.any(sql.type(chainEventRow)`
    SELECT chain_id::text AS chain_id, seq::text AS sequence, id::text AS id,
           to_char(created_at AT TIME ZONE 'UTC', ${INSTANT_SQL}) AS created_at,
           action, crud::text AS crud, actor_id, actor_name, actor_type, actor_href,
           target_id, target_name, target_type, host(source_ip) AS source_ip, description,
           fields::text AS fields, is_failure, is_anonymous, component, external_id,
           encode(prev_hash, 'hex') AS prev_hash, encode(hash, 'hex') AS hash, tenant_id::text AS tenant_id
    FROM audit_log
    WHERE chain_id = ${chainId} AND seq > ${afterSeq.toString()}::bigint
    ORDER BY audit_log.seq
    LIMIT ${limit}`);
  return rows.map(toChainEvent);
}

const signedRow = z.object({
  chain_id: z.string(),
  seq: z.string(),
  hash: z.string(),
  signed_at: z.string(),
  key_id: z.string(),
  signature: z.string(),
});

function toCheckpoint(r: z.infer<typeof signedRow>): Checkpoint {
  return {
    chainId: r.chain_id,
    sequence: BigInt(r.seq),
    hash: r.hash,
    signedAt: r.signed_at,
    keyId: r.key_id,
    signature: Buffer.from(r.signature, "hex"),
  };
}

export async function insertCheckpoint(db: Db, c: Checkpoint): Promise<void> {
  await db.query(sql.unsafe`
    INSERT INTO audit_checkpoints (chain_id, seq, hash, signed_at, key_id, signature)
    VALUES (${c.chainId}, ${c.sequence.toString()}::bigint, decode(${c.hash}, 'hex'), ${c.signedAt}::timestamptz,
            ${c.keyId}, decode(${c.signature.toString("hex")}, 'hex'))
    ON CONFLICT DO NOTHING`);
}

/** The newest stored checkpoint of a chain. */
export async function findLatestCheckpoint(db: Db, chainId: string): Promise<Checkpoint | null> {
  const row = await db.maybeOne(sql.type(signedRow)`
    SELECT chain_id::text AS chain_id, seq::text AS seq, encode(hash, 'hex') AS hash,
           to_char(signed_at AT TIME ZONE 'UTC', ${INSTANT_SQL}) AS signed_at, key_id, encode(signature, 'hex') AS signature
    FROM audit_checkpoints WHERE chain_id = ${chainId}
    ORDER BY audit_checkpoints.seq DESC, audit_checkpoints.signed_at DESC LIMIT 1`);
  return row && toCheckpoint(row);
}

/** Heads that moved since their newest checkpoint (or never had one): what periodic signing signs. */
export async function listUncheckpointedHeads(db: Db, limit: number): Promise<{ chainId: string; sequence: bigint; hash: string }[]> {
  const rows = await db.any(sql.type(z.object({ chain_id: z.string(), seq: z.string(), hash: z.string() }))`
    SELECT h.chain_id::text AS chain_id, h.seq::text AS seq, encode(h.hash, 'hex') AS hash
    FROM audit_chain_heads h
    WHERE h.seq > 0
      AND NOT EXISTS (SELECT 1 FROM audit_checkpoints c WHERE c.chain_id = h.chain_id AND c.seq = h.seq)
    ORDER BY h.chain_id
    LIMIT ${limit}`);
  return rows.map((r) => ({ chainId: r.chain_id, sequence: BigInt(r.seq), hash: r.hash }));
}

/** The signed retention cut that made `baseSeq` the chain's base. */
export async function findRetentionCut(db: Db, chainId: string, baseSeq: bigint): Promise<Checkpoint | null> {
  const row = await db.maybeOne(sql.type(signedRow)`
    SELECT chain_id::text AS chain_id, base_seq::text AS seq, encode(base_hash, 'hex') AS hash,
           to_char(signed_at AT TIME ZONE 'UTC', ${INSTANT_SQL}) AS signed_at, key_id, encode(signature, 'hex') AS signature
    FROM audit_retention_cuts WHERE chain_id = ${chainId} AND base_seq = ${baseSeq.toString()}::bigint`);
  return row && toCheckpoint(row);
}

/** Runs `read` in one REPEATABLE READ, READ ONLY snapshot: the events and the head it reads agree. */
export async function inChainSnapshot<T>(db: Db, read: (tx: Db) => Promise<T>): Promise<T> {
  return db.transaction(async (tx) => {
    await tx.query(sql.unsafe`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`);
    return read(tx);
  });
}

// ---- Retention ----

/**
 * The chains that have events older than their retention (the tenant's own,
 * else `defaultRetentionMs`; none when neither is set), and the last sequence
 * each may cut: the events before the first one that is not old enough (a
 * chain only loses a prefix), at most `batch` past its base.
 */
export async function listRetentionCuts(
  db: Db,
  now: Date,
  defaultRetentionMs: number | undefined,
  batch: number,
): Promise<{ chainId: string; through: bigint; hash: string }[]> {
  const fallback = defaultRetentionMs === undefined ? null : `${defaultRetentionMs} milliseconds`;
  const rows = await db.any(sql.type(z.object({ chain_id: z.string(), through: z.string(), hash: z.string() }))`
    WITH policy AS (
      SELECT h.chain_id, h.base_seq, h.seq,
             ${now.toISOString()}::timestamptz - coalesce(t.audit_retention, ${fallback}::interval) AS cutoff
      FROM audit_chain_heads h LEFT JOIN tenants t ON t.id = h.chain_id
      WHERE h.seq > h.base_seq
    ), cut AS (
      SELECT p.chain_id,
             least(
               p.base_seq + ${batch},
               coalesce((SELECT min(a.seq) - 1 FROM audit_log a
                         WHERE a.chain_id = p.chain_id AND a.seq > p.base_seq AND a.created_at >= p.cutoff), p.seq)
             ) AS through, p.base_seq
      FROM policy p WHERE p.cutoff IS NOT NULL
    )
    SELECT c.chain_id::text AS chain_id, c.through::text AS through, encode(a.hash, 'hex') AS hash
    FROM cut c JOIN audit_log a ON a.chain_id = c.chain_id AND a.seq = c.through
    WHERE c.through > c.base_seq
    ORDER BY c.chain_id`);
  return rows.map((r) => ({ chainId: r.chain_id, through: BigInt(r.through), hash: r.hash }));
}

/** Removes a chain's events up to `cut.sequence` through the one allowed path; returns how many went. */
export async function applyRetentionCut(db: Db, cut: Checkpoint): Promise<number> {
  const removed = await db.oneFirst(sql.type(z.object({ removed: z.string() }))`
    SELECT audit_apply_retention(${cut.chainId}, ${cut.sequence.toString()}::bigint, decode(${cut.hash}, 'hex'),
      ${cut.signedAt}::timestamptz, ${cut.keyId}, decode(${cut.signature.toString("hex")}, 'hex'))::text AS removed`);
  return Number(removed);
}

// ---- A tenant's own retention period (tenants.audit_retention) ----

const retentionRow = z.object({ slug: z.string(), seconds: z.string().nullable() });
const SELECT_RETENTION = sql.fragment`SELECT slug, extract(epoch FROM audit_retention)::bigint::text AS seconds FROM tenants`;

export type TenantRetention = { readonly slug: string; /** Whole seconds; null: none of its own. */ readonly seconds: number | null };

function toRetention(row: z.infer<typeof retentionRow>): TenantRetention {
  return { slug: row.slug, seconds: row.seconds === null ? null : Number(row.seconds) };
}

/** The tenant's own period, or null when there is no such tenant. */
export async function findTenantRetention(db: Db, tenantId: string): Promise<TenantRetention | null> {
  const row = await db.maybeOne(sql.type(retentionRow)`${SELECT_RETENTION} WHERE id = ${tenantId}`);
  return row && toRetention(row);
}

/**
 * Sets (seconds) or clears (null) the tenant's period; returns the one it had,
 * or null when there is no such tenant. The row lock orders concurrent setters,
 * so each one's audit event names the period it really replaced.
 */
export async function setTenantRetention(tx: Db, tenantId: string, seconds: number | null): Promise<TenantRetention | null> {
  const before = await tx.maybeOne(sql.type(retentionRow)`${SELECT_RETENTION} WHERE id = ${tenantId} FOR UPDATE`);
  if (!before) return null;
  await tx.query(sql.unsafe`
    UPDATE tenants SET audit_retention = ${seconds === null ? null : `${seconds} seconds`}::interval WHERE id = ${tenantId}`);
  return toRetention(before);
}
