import { findApiKeysByPrefixes, findApiKeyTenantId, type ApiKeyForVerification } from "../db/queries/api-keys.js";
import { findEnabledIdpConfigByDomain } from "../db/queries/idp.js";
import { findTenantRecords, type Db } from "../db/queries/tenants.js";
import type { EntitlementFacts, TenantRecord } from "../domain/entitlement.js";
import { isUuid } from "../domain/ids.js";
import type { IdpConfig } from "../domain/idp.js";
import { PRODUCT_CODES, SLUG_PATTERN, type ProductCode, type Tenant } from "../domain/tenant.js";
import { batchLookup } from "./batch.js";
import { cacheKey, type CacheKey } from "./change-notice.js";
import type { CacheNote, Loaded, Put, ReadCache } from "./read-cache.js";

/**
 * A cached tenant: the stored record, with what the hot paths derive from it
 * worked out once. Expiries stay timestamps: `at(now)` gives the tenant with
 * the products unexpired at `now`, reusing the last answer while `now` is in
 * the span between two expiries where it cannot change.
 */
export class CachedTenant {
  readonly id: string;
  /** What an answer embedding this tenant depends on: made once, shared by all of them. */
  readonly dependency: readonly CacheKey[];
  private readonly entitlements = new Map<ProductCode, NonNullable<EntitlementFacts>>();
  private memo: { tenant: Tenant; from: number; until: number } | undefined;

  constructor(readonly record: TenantRecord) {
    this.id = record.id;
    this.dependency = Object.freeze([cacheKey.tenant(record.id)]);
    for (const product of PRODUCT_CODES) {
      const grant = record.grants.find((g) => g.product === product);
      this.entitlements.set(product, {
        tenantId: record.id,
        tenantStatus: record.status,
        plan: record.plan,
        grant: grant ? { expiresAt: grant.expiresAt, limits: grant.limits } : null,
      });
    }
  }

  /** The tenant as it is at `now`: its products are the grants unexpired then. */
  at(now: Date): Tenant {
    const t = now.getTime();
    const memo = this.memo;
    if (memo && t >= memo.from && t < memo.until) return memo.tenant;
    let from = -Infinity;
    let until = Infinity;
    const products: ProductCode[] = [];
    for (const grant of this.record.grants) {
      const expires = grant.expiresAt?.getTime();
      if (expires === undefined || expires > t) {
        products.push(grant.product);
        if (expires !== undefined && expires < until) until = expires;
      } else if (expires > from) {
        from = expires;
      }
    }
    const { grants: _grants, ...tenant } = this.record;
    this.memo = { tenant: { ...tenant, products }, from, until };
    return this.memo.tenant;
  }

  /** CheckEntitlement's facts about one product (the reason is judged by the caller, at its `now`). */
  entitlement(product: ProductCode): NonNullable<EntitlementFacts> {
    return this.entitlements.get(product)!;
  }
}

/**
 * A cached verification row. `lastNotedAtMs` is this replica's note of the key's
 * last use (epoch ms: a number costs a cached key nothing, a Date ~100 B), kept
 * with the row so a cached key is not noted again on every call (the
 * last_used_at the row was read with goes stale by design).
 */
export type CachedApiKey = ApiKeyForVerification & { lastNotedAtMs: number | null };

/** A verification row with its tenant, as one cache entry (dropped with the tenant's). */
export type KeyWithTenant = { readonly key: CachedApiKey; readonly tenant: CachedTenant };

/** ResolveIdp's answer, as one cache entry (dropped with the tenant's). */
export type IdpRoute = { readonly config: IdpConfig; readonly tenant: CachedTenant };

/**
 * The hot reads, each answered from the read-through cache when it can be:
 * one query on a miss (ResolveIdp: two), none on a hit. When the cache is not
 * serving (off, or its listener down) each is exactly its queries. Tenants by
 * id or slug and keys by prefix that miss in the same turn of the event loop
 * share one statement (batchLookup); a slug or id that cannot exist (the
 * schema's CHECK, a UUID) is answered as missing without asking PostgreSQL.
 */
export type HotReads = {
  tenantById(id: string, note?: CacheNote): Promise<CachedTenant | null>;
  tenantBySlug(slug: string, note?: CacheNote): Promise<CachedTenant | null>;
  /** The keys whose current or previous prefix this is, each with its tenant. */
  apiKeysByPrefix(prefix: string, note?: CacheNote): Promise<readonly KeyWithTenant[]>;
  /** Login routing: the enabled IdP config owning the (lowercase) domain, and its tenant. */
  idpByDomain(domain: string, note?: CacheNote): Promise<IdpRoute | null>;
  /** The auth interceptor's lookups. */
  tenantIdBySlug(slug: string): Promise<string | null>;
  tenantIdOfApiKey(keyId: string): Promise<string | null>;
};

const NO_KEYS: readonly KeyWithTenant[] = Object.freeze([]);

type KeyRow = Awaited<ReturnType<typeof findApiKeysByPrefixes>>[number];
const NO_ROWS: readonly KeyRow[] = Object.freeze([]);

/** The hot lookups that go to PostgreSQL in batches, as metrics name them. */
export type BatchedLookup = "tenant_by_id" | "tenant_by_slug" | "api_key_by_prefix";

export function createHotReads(db: Db, cache: ReadCache, batched: (lookup: BatchedLookup, keys: number) => void = () => {}): HotReads {
  // Tenants by id and by slug: one batched statement each, its answers keyed by the column asked.
  const tenantRecordsBy = (lookup: BatchedLookup, by: "ids" | "slugs", keyOf: (record: TenantRecord) => string) =>
    batchLookup<string, TenantRecord | null>(
      async (keys) => new Map((await findTenantRecords(db, by === "ids" ? { ids: keys } : { slugs: keys })).map((record) => [keyOf(record), record])),
      null,
      (keys) => batched(lookup, keys),
    );
  const recordsById = tenantRecordsBy("tenant_by_id", "ids", (record) => record.id);
  const recordsBySlug = tenantRecordsBy("tenant_by_slug", "slugs", (record) => record.slug);
  const keyRowsByPrefix = batchLookup(async (prefixes: readonly string[]) => {
    const rows = new Map<string, KeyRow[]>();
    const answer = (prefix: string | null, row: KeyRow) => {
      if (prefix === null) return;
      const list = rows.get(prefix);
      if (list) list.push(row);
      else rows.set(prefix, [row]);
    };
    // A row answers the prefix it holds now and the one it held before a rotation.
    for (const row of await findApiKeysByPrefixes(db, prefixes)) {
      answer(row.key.prefix, row);
      if (row.key.previousPrefix !== row.key.prefix) answer(row.key.previousPrefix, row);
    }
    return rows;
  }, NO_ROWS, (keys) => batched("api_key_by_prefix", keys));

  // Loaders are made once, here, so that a cache hit allocates no closure. They see only ids and
  // slugs that can name a tenant: the reads below answer the rest before the cache.
  const loadTenantById = async (id: string): Promise<Loaded<CachedTenant>> => {
    // The answers are keyed by the id as PostgreSQL spells it (lowercase).
    const record = await recordsById(id.toLowerCase());
    return { value: record && new CachedTenant(record), tenantId: record?.id };
  };
  const loadTenantBySlug = async (slug: string, put: Put): Promise<Loaded<CachedTenant>> => {
    const record = await recordsBySlug(slug);
    if (!record) return { value: null, tenantId: undefined };
    const byId = cacheKey.tenant(record.id);
    const tenant = put(byId, { value: new CachedTenant(record), tenantId: record.id })!;
    return { value: tenant, tenantId: tenant.id, dependsOn: [byId] };
  };
  const loadApiKeys = async (prefix: string, put: Put): Promise<Loaded<readonly KeyWithTenant[]>> => {
    const rows = await keyRowsByPrefix(prefix);
    if (rows.length === 0) return { value: NO_KEYS, tenantId: undefined };
    const keys = rows.map(({ key, tenant }): KeyWithTenant => {
      const cached = put(cacheKey.tenant(tenant.id), { value: new CachedTenant(tenant), tenantId: tenant.id })!;
      return { key: { ...key, lastNotedAtMs: null }, tenant: cached };
    });
    // One key entry per cached API key: the usual single-tenant answer shares its tenant's dependency list.
    const dependsOn = keys.length === 1 ? keys[0]!.tenant.dependency : keys.map((k) => k.tenant.dependency[0]!);
    return { value: keys, tenantId: keys[0]!.tenant.id, dependsOn };
  };
  const loadIdpRoute = async (domain: string): Promise<Loaded<IdpRoute>> => {
    const config = await findEnabledIdpConfigByDomain(db, domain);
    const record = config && (await recordsById(config.tenantId));
    if (!config || !record) return { value: null, tenantId: undefined };
    return { value: { config, tenant: new CachedTenant(record) }, tenantId: record.id, dependsOn: [cacheKey.tenant(record.id)] };
  };
  const loadKeyTenant = async (keyId: string): Promise<Loaded<string>> => {
    const tenantId = await findApiKeyTenantId(db, keyId);
    return { value: tenantId, tenantId: tenantId ?? undefined };
  };

  // What cannot name a tenant is answered without the cache: its negative entry would be keyed by
  // whatever the caller sent (the auth interceptor looks slugs up before any handler checks them),
  // and the cache counts entries, not bytes.
  return {
    tenantById: async (id, note) => (isUuid(id) ? cache.read(cacheKey.tenant(id), loadTenantById, id, note) : null),
    tenantBySlug: async (slug, note) => (SLUG_PATTERN.test(slug) ? cache.read(cacheKey.slug(slug), loadTenantBySlug, slug, note) : null),
    apiKeysByPrefix: async (prefix, note) => (await cache.read(cacheKey.apiKeyPrefix(prefix), loadApiKeys, prefix, note)) ?? NO_KEYS,
    idpByDomain: (domain, note) => cache.read(cacheKey.emailDomain(domain), loadIdpRoute, domain, note),
    tenantIdBySlug: async (slug) => (SLUG_PATTERN.test(slug) ? ((await cache.read(cacheKey.slug(slug), loadTenantBySlug, slug))?.id ?? null) : null),
    // The interceptor passes ids as the caller wrote them; notices name them in lowercase.
    tenantIdOfApiKey: (keyId) => cache.read(cacheKey.apiKeyTenant(keyId.toLowerCase()), loadKeyTenant, keyId.toLowerCase()),
  };
}
