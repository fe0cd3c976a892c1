import { sql } from "slonik";
import { z } from "zod";
import type { Db } from "../db/queries/tenants.js";

/**
 * Change notices: how a committed change reaches every replica.
 *
 * A mutation publishes one notice INSIDE its transaction with pg_notify, so
 * PostgreSQL delivers it on commit only (a rolled-back change announces
 * nothing) and to every session LISTENing on CHANGE_CHANNEL, this replica's
 * included. Notices of one transaction arrive after that transaction's commit
 * and in commit order.
 *
 * Payload (JSON text on channel "tenant_registry_changes"; pg_notify allows < 8000 bytes, so a
 * change naming many keys is sent as several notices, each with a share of the keys):
 *
 *   {
 *     "v": 1,                    format version; a listener that does not know it flushes everything
 *     "tenant": "<uuid>",        the tenant the change belongs to: ALWAYS set, so a tenant-scoped
 *                                watcher can be shown only its own tenant's changes
 *     "action": "api_key.revoke",  the audit action of the change (tenant.create, product.grant, …)
 *     "keys": ["k:trk_ab12…"],   the cache keys the change makes stale (see CacheKey below)
 *     "all": false,              true: every cached entry of the tenant is stale (the tenant was
 *                                deleted); `keys` may still name entries to drop (e.g. its slug)
 *     "at": 1764654000000        publish time, epoch ms (the invalidation-lag measurement's start)
 *   }
 *
 * Cache keys name one hot answer each:
 *   t:<tenant id>      a tenant with its grants (GetTenant, CheckEntitlement, VerifyApiKey's tenant, ResolveIdp's tenant)
 *   s:<slug>           slug → tenant id (GetTenantBySlug, CheckEntitlement by slug, the auth interceptor)
 *   k:<prefix>         API-key verification rows by current or previous prefix (VerifyApiKey, API-key auth)
 *   ki:<api key id>    API key → its tenant (the auth interceptor's RevokeApiKey/RotateApiKey lookups)
 *   d:<email domain>   the enabled IdP config owning the domain (ResolveIdp)
 */
export const CHANGE_CHANNEL = "tenant_registry_changes";

export const CHANGE_NOTICE_VERSION = 1;

export type CacheKey = `t:${string}` | `s:${string}` | `k:${string}` | `ki:${string}` | `d:${string}`;

export const cacheKey = {
  tenant: (id: string): CacheKey => `t:${id}`,
  slug: (slug: string): CacheKey => `s:${slug}`,
  apiKeyPrefix: (prefix: string): CacheKey => `k:${prefix}`,
  apiKeyTenant: (keyId: string): CacheKey => `ki:${keyId}`,
  emailDomain: (domain: string): CacheKey => `d:${domain}`,
};

/** What a mutation changed, as it declares it (see AuditedChange.changed). */
export type Change = {
  readonly tenantId: string;
  readonly keys: readonly CacheKey[];
  /** Every cached entry of the tenant is stale (e.g. the tenant is gone). */
  readonly tenantWide?: boolean;
};

/** A change as it travels: what every subscriber of the change listener receives. */
export type ChangeNotice = {
  readonly tenantId: string;
  readonly action: string;
  readonly keys: readonly string[];
  readonly tenantWide: boolean;
  /** Publish time, epoch ms. */
  readonly at: number;
};

// pg_notify refuses payloads of 8000 bytes or more; leave room for the envelope.
const MAX_KEYS_BYTES = 7_000;

/**
 * The notice as pg_notify payload texts: one, or several when its keys do not
 * fit one payload (each then names a share of the keys; all are delivered on
 * the same commit).
 */
export function encodeChangeNotice(notice: ChangeNotice): string[] {
  const envelope = (keys: readonly string[]) =>
    JSON.stringify({ v: CHANGE_NOTICE_VERSION, tenant: notice.tenantId, action: notice.action, keys, all: notice.tenantWide, at: notice.at });
  const payloads: string[] = [];
  let chunk: string[] = [];
  let bytes = 0;
  for (const key of notice.keys) {
    const size = Buffer.byteLength(key) + 3;
    if (chunk.length > 0 && bytes + size > MAX_KEYS_BYTES) {
      payloads.push(envelope(chunk));
      chunk = [];
      bytes = 0;
    }
    chunk.push(key);
    bytes += size;
  }
  if (chunk.length > 0 || payloads.length === 0) payloads.push(envelope(chunk));
  return payloads;
}

const payloadSchema = z.object({
  v: z.literal(CHANGE_NOTICE_VERSION),
  tenant: z.string(),
  action: z.string(),
  keys: z.array(z.string()),
  all: z.boolean(),
  at: z.number(),
});

/** The notice, or undefined for a payload this version does not understand (the listener then flushes). */
export function decodeChangeNotice(payload: string | undefined): ChangeNotice | undefined {
  if (payload === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(payload);
  } catch {
    return undefined;
  }
  const parsed = payloadSchema.safeParse(json);
  if (!parsed.success) return undefined;
  const p = parsed.data;
  return { tenantId: p.tenant, action: p.action, keys: p.keys, tenantWide: p.all, at: p.at };
}

/**
 * Queues the notice on the transaction `tx`: delivered to every listener when
 * it commits, never if it rolls back. Must run on the transaction connection.
 */
export async function publishChangeNotice(tx: Db, notice: ChangeNotice): Promise<void> {
  const payloads = encodeChangeNotice(notice);
  await tx.query(sql.unsafe`
    SELECT pg_notify(${CHANGE_CHANNEL}, payload) FROM unnest(${sql.array(payloads, "text")}) AS payload`);
}
