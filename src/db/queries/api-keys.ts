import { sql } from "slonik";
import { z } from "zod";
import type { ApiKey } from "../../domain/api-key.js";
import type { TenantRecord } from "../../domain/entitlement.js";
import { keysMatch, tenantRecordColumns, tenantRecordRow, toTenantRecord, type Db } from "./tenants.js";

/*
 * Metadata reads never select secret_hash or previous_secret_hash: only the
 * verification lookup (findApiKeysByPrefixes) sees hashes, and nothing ever sees
 * a secret, which is not stored at all.
 */
const apiKeyRow = z.object({
  id: z.guid(),
  tenant_id: z.guid(),
  project_id: z.guid().nullable(),
  name: z.string(),
  prefix: z.string(),
  scopes: z.array(z.string()),
  expires_at: z.date().nullable(),
  revoked_at: z.date().nullable(),
  last_used_at: z.date().nullable(),
  created_at: z.date(),
  updated_at: z.date(),
  previous_expires_at: z.date().nullable(),
  previous_prefix: z.string().nullable(),
});

function toApiKey(row: z.infer<typeof apiKeyRow>): ApiKey {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    projectId: row.project_id,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    lastUsedAt: row.last_used_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    previousExpiresAt: row.previous_expires_at,
    previousPrefix: row.previous_prefix,
  };
}

const apiKeyColumns = sql.fragment`
  id, tenant_id, project_id, name, prefix, scopes, expires_at, revoked_at, last_used_at,
  created_at, updated_at, previous_expires_at, previous_prefix`;

// A new prefix must be free as a current and as a previous prefix: verification
// looks up `prefix = $1 OR previous_prefix = $1`. The unique constraints cover
// each column; this covers the pair.
const prefixIsFree = (prefix: string) =>
  sql.fragment`NOT EXISTS (SELECT 1 FROM api_keys o WHERE o.prefix = ${prefix} OR o.previous_prefix = ${prefix})`;

export type NewApiKey = {
  readonly id: string;
  readonly tenantId: string;
  readonly projectId: string | null;
  readonly name: string;
  readonly prefix: string;
  readonly secretHash: Buffer;
  readonly scopes: readonly string[];
  readonly expiresAt: Date | null;
};

/**
 * Inserts the key; null when its prefix is taken (the caller retries with a new
 * token). ON CONFLICT keeps a collision from aborting the caller's transaction.
 * A project of another tenant violates api_keys_project_fkey.
 */
export async function insertApiKey(tx: Db, key: NewApiKey): Promise<ApiKey | null> {
  const row = await tx.maybeOne(sql.type(apiKeyRow)`
    INSERT INTO api_keys (id, tenant_id, project_id, name, prefix, secret_hash, scopes, expires_at)
    SELECT ${key.id}, ${key.tenantId}, ${key.projectId}, ${key.name}, ${key.prefix}, ${sql.binary(key.secretHash)},
           ${sql.array([...key.scopes], "text")}, ${key.expiresAt ? sql.timestamp(key.expiresAt) : null}
    WHERE ${prefixIsFree(key.prefix)}
    ON CONFLICT (prefix) DO NOTHING
    RETURNING ${apiKeyColumns}`);
  return row && toApiKey(row);
}

export async function findApiKeyById(db: Db, id: string): Promise<ApiKey | null> {
  const row = await db.maybeOne(sql.type(apiKeyRow)`SELECT ${apiKeyColumns} FROM api_keys WHERE id = ${id}`);
  return row && toApiKey(row);
}

/** The owning tenant of a key, to lock the tenant before changing the key. */
export async function findApiKeyTenantId(db: Db, id: string): Promise<string | null> {
  return db.maybeOneFirst(sql.type(z.object({ tenant_id: z.guid() }))`SELECT tenant_id FROM api_keys WHERE id = ${id}`);
}

/** The key, locked until the transaction ends. */
export async function lockApiKey(tx: Db, id: string): Promise<ApiKey | null> {
  const row = await tx.maybeOne(sql.type(apiKeyRow)`SELECT ${apiKeyColumns} FROM api_keys WHERE id = ${id} FOR UPDATE`);
  return row && toApiKey(row);
}

/** The keys of a project (id and prefixes), which deleting the project deletes with it; locked until the transaction ends. */
export async function lockApiKeysOfProject(
  tx: Db,
  tenantId: string,
  projectId: string,
): Promise<readonly { readonly id: string; readonly prefix: string; readonly previous_prefix: string | null }[]> {
  // FOR UPDATE, not a plain read: a rotation committing while this waits for its
  // row would otherwise leave the cascade deleting a key under a prefix nobody
  // names, and a replica that cached the new prefix would keep verifying it.
  // Under READ COMMITTED a locked row is read again as it is once the lock is ours.
  return tx.any(sql.type(z.object({ id: z.guid(), prefix: z.string(), previous_prefix: z.string().nullable() }))`
    SELECT id, prefix, previous_prefix FROM api_keys WHERE tenant_id = ${tenantId} AND project_id = ${projectId} FOR UPDATE`);
}

/** Keyset position in ListApiKeys' order: created_at in PostgreSQL's full (microsecond) text form, and id. */
export type ApiKeyCursor = { readonly createdAt: string; readonly id: string };

/** A page of a tenant's keys, newest first ((created_at, id) DESC, the api_keys_tenant_id_idx order). */
export async function listApiKeysByTenant(
  db: Db,
  tenantId: string,
  options: { readonly includeRevoked: boolean; readonly after: ApiKeyCursor | undefined; readonly limit: number },
): Promise<{ key: ApiKey; cursor: ApiKeyCursor }[]> {
  const { includeRevoked, after, limit } = options;
  const rows = await db.any(sql.type(apiKeyRow.extend({ cursor_created_at: z.string() }))`
    SELECT ${apiKeyColumns}, created_at::text AS cursor_created_at
    FROM api_keys
    WHERE tenant_id = ${tenantId}
      ${includeRevoked ? sql.fragment`` : sql.fragment`AND revoked_at IS NULL`}
      ${after ? sql.fragment`AND (created_at, id) < (${after.createdAt}::timestamptz, ${after.id}::uuid)` : sql.fragment``}
    ORDER BY created_at DESC, id DESC
    LIMIT ${limit}`);
  return rows.map(({ cursor_created_at, ...row }) => ({ key: toApiKey(row), cursor: { createdAt: cursor_created_at, id: row.id } }));
}

/** Sets revoked_at; null when the key was already revoked (nothing changes then). */
export async function revokeApiKey(tx: Db, id: string, at: Date): Promise<ApiKey | null> {
  const row = await tx.maybeOne(sql.type(apiKeyRow)`
    UPDATE api_keys SET revoked_at = ${sql.timestamp(at)}
    WHERE id = ${id} AND revoked_at IS NULL
    RETURNING ${apiKeyColumns}`);
  return row && toApiKey(row);
}

/**
 * Makes a new prefix and hash current. With `previousExpiresAt` the replaced
 * prefix and hash become the previous secret until then (replacing any earlier
 * previous secret); without it, previous_* are cleared. null when the new
 * prefix is taken (the caller retries with a new token).
 */
export async function rotateApiKeySecret(
  tx: Db,
  id: string,
  next: { readonly prefix: string; readonly secretHash: Buffer; readonly previousExpiresAt: Date | null },
): Promise<ApiKey | null> {
  const keep = next.previousExpiresAt !== null;
  const row = await tx.maybeOne(sql.type(apiKeyRow)`
    UPDATE api_keys SET
      prefix = ${next.prefix},
      secret_hash = ${sql.binary(next.secretHash)},
      previous_prefix = ${keep ? sql.fragment`prefix` : null},
      previous_secret_hash = ${keep ? sql.fragment`secret_hash` : null},
      previous_expires_at = ${next.previousExpiresAt ? sql.timestamp(next.previousExpiresAt) : null}
    WHERE id = ${id} AND ${prefixIsFree(next.prefix)}
    RETURNING ${apiKeyColumns}`);
  return row && toApiKey(row);
}

// The tenant's own columns (id, slug, …, its grants) plus the key's, prefixed key_ where they would collide.
const verificationRow = tenantRecordRow.extend({
  key_id: z.guid(),
  project_id: z.guid().nullable(),
  prefix: z.string(),
  secret_hash: z.instanceof(Buffer),
  previous_prefix: z.string().nullable(),
  previous_secret_hash: z.instanceof(Buffer).nullable(),
  previous_expires_at: z.date().nullable(),
  scopes: z.array(z.string()),
  expires_at: z.date().nullable(),
  revoked_at: z.date().nullable(),
  last_used_at: z.date().nullable(),
});

/** A key as VerifyApiKey sees it: hashes to compare, its state (timestamps, judged when read), and its tenant. */
export type ApiKeyForVerification = {
  readonly id: string;
  readonly tenantId: string;
  readonly projectId: string | null;
  readonly prefix: string;
  /** The SHA-256 of the secret, base64: what the hot-read cache keeps, for every cached key. */
  readonly secretHash: string;
  readonly previousPrefix: string | null;
  readonly previousSecretHash: string | null;
  readonly previousExpiresAt: Date | null;
  readonly scopes: readonly string[];
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
  readonly lastUsedAt: Date | null;
};

/**
 * The hot path of VerifyApiKey, for every prefix asked at once (the hot reads
 * batch the lookups that arrive together): one statement through the two
 * unique prefix indexes (a BitmapOr), joined to the tenant by primary key, with
 * all the tenant's grants (from the (tenant_id, product) index). Each row
 * answers the prefixes it holds as its current or previous one; a prefix is
 * usually one row, more only if it were both one key's current and another's
 * previous prefix, which the writers prevent.
 */
export async function findApiKeysByPrefixes(
  db: Db,
  prefixes: readonly string[],
): Promise<{ key: ApiKeyForVerification; tenant: TenantRecord }[]> {
  // Named prepared statements, one per shape of the condition (see keysMatch).
  const rows = await db.any(sql.prepared(prefixes.length === 1 ? "api_key_record_by_prefix" : "api_key_records_by_prefix", verificationRow)`
    SELECT k.id AS key_id, k.project_id, k.prefix, k.secret_hash,
           k.previous_prefix, k.previous_secret_hash, k.previous_expires_at,
           k.scopes, k.expires_at, k.revoked_at, k.last_used_at,
           ${tenantRecordColumns}
    FROM api_keys k
    JOIN tenants t ON t.id = k.tenant_id
    WHERE ${keysMatch(sql.identifier(["k", "prefix"]), prefixes, "text")}
       OR ${keysMatch(sql.identifier(["k", "previous_prefix"]), prefixes, "text")}`);
  return rows.map((row) => ({
    key: {
      id: row.key_id,
      tenantId: row.id,
      projectId: row.project_id,
      prefix: row.prefix,
      secretHash: row.secret_hash.toString("base64"),
      previousPrefix: row.previous_prefix,
      previousSecretHash: row.previous_secret_hash && row.previous_secret_hash.toString("base64"),
      previousExpiresAt: row.previous_expires_at,
      scopes: row.scopes.length === 0 ? NO_SCOPES : row.scopes,
      expiresAt: row.expires_at,
      revokedAt: row.revoked_at,
      lastUsedAt: row.last_used_at,
    },
    tenant: toTenantRecord(row),
  }));
}

/**
 * The hot-read cache keeps a verification row per key for as long as the process
 * runs, so its hashes are strings: pg decodes bytea as a slice of Node's shared
 * buffer pool, which would pin a whole slab per cached key (≈ 6 KB of RSS,
 * measured), and even a 32-byte Buffer of its own costs ≈ 250 B of heap against
 * ≈ 60 B for its base64 string (measured over 100k of each).
 */
const NO_SCOPES: readonly string[] = Object.freeze([]);

/**
 * Records usage for many keys in one statement. Never moves last_used_at
 * backwards, and writes a key at most once a minute even when several
 * instances report it.
 */
export async function recordApiKeysUsed(db: Db, uses: readonly { readonly id: string; readonly at: Date }[]): Promise<void> {
  if (uses.length === 0) return;
  await db.query(sql.unsafe`
    UPDATE api_keys k SET last_used_at = u.used_at
    FROM unnest(
      ${sql.array(uses.map((u) => u.id), "uuid")},
      ${sql.array(uses.map((u) => u.at.toISOString()), "timestamptz")}
    ) AS u(id, used_at)
    WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at <= u.used_at - interval '1 minute')`);
}
