import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { VerifyApiKeyCode } from "../../gen/breakpilot/tenantregistry/v1/api_key_pb.js";
import { EntitlementReason } from "../../gen/breakpilot/tenantregistry/v1/entitlement_pb.js";
import { ProductCode } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { DEFAULT_CACHE_SETTINGS } from "../../src/config.js";
import { generateApiKeyToken } from "../../src/domain/api-key.js";
import type { DatabasePool } from "../../src/db/pool.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { insertTenant, uniqueSlug, type TenantRow } from "../support/fixtures.js";
import { clientFor, startTestServer, type TestServer } from "../support/server.js";

// Every way Slonik reaches the database. transaction and connect count once
// for themselves, and the connection they hand their callback is counted too,
// so queries hidden inside them are not missed.
const QUERY_METHODS = new Set([
  "any",
  "anyFirst",
  "exists",
  "many",
  "manyFirst",
  "maybeOne",
  "maybeOneFirst",
  "one",
  "oneFirst",
  "query",
  "stream",
  "transaction",
  "connect",
]);

let queries = 0;
const counted: string[] = [];
// The usage writer (last_used_at, every few seconds through the same pool) is
// not part of any read: its statement is not counted.
const BACKGROUND = /SET last_used_at/;

function counting<T extends object>(target: T): T {
  return new Proxy(target, {
    get(obj, prop, receiver) {
      const value = Reflect.get(obj, prop, receiver) as unknown;
      if (typeof prop !== "string" || !QUERY_METHODS.has(prop) || typeof value !== "function") return value;
      return (...args: unknown[]) => {
        const text = (args[0] as { sql?: unknown } | undefined)?.sql;
        if (!(typeof text === "string" && BACKGROUND.test(text))) {
          queries++;
          counted.push(prop);
        }
        if (prop === "transaction" || prop === "connect") {
          // (handler) or (handler, retryLimit): wrap the connection the handler receives.
          const [handler, ...rest] = args as [(connection: object) => unknown, ...unknown[]];
          return (value as (...a: unknown[]) => unknown).call(obj, (connection: object) => handler(counting(connection)), ...rest);
        }
        return (value as (...a: unknown[]) => unknown).apply(obj, args);
      };
    },
  });
}

let db: TestDatabase;
/** Change notices the cached server has applied so far. */
let applied = 0;
/** CACHE=off: every hot read is its query. */
let uncached: TestServer;
/** The cache on, and a clock the tests move. */
let cached: TestServer;
let now = new Date();
let sql: pg.Client;
let tenant: TenantRow;
let secret: string;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.client();
  const pool: DatabasePool = await db.pool();
  uncached = await startTestServer(counting(pool), { cache: { ...DEFAULT_CACHE_SETTINGS, enabled: false } });
  cached = await startTestServer(counting(pool), { clock: () => now });
  cached.app.onInvalidation(() => applied++);
  tenant = await insertTenant(sql, { products: ["certifai"] });
  ({ secret } = await client(uncached).createApiKey({ tenantId: tenant.id, name: "hot", scopes: ["read"] }));
  await markKeysUsed(tenant.id);
});

afterAll(async () => {
  await uncached?.close();
  await cached?.close();
  await db?.drop();
});

/**
 * last_used_at is written by a timer (every 5 s) through the same pool, only
 * for keys whose stored last_used_at is over a minute old. Marking a key as
 * just used keeps the tracker from noting it. (The hourly maintenance job
 * first runs an hour after start, far outside the test's lifetime.)
 */
async function markKeysUsed(tenantId: string) {
  await sql.query("UPDATE api_keys SET last_used_at = now() WHERE tenant_id = $1", [tenantId]);
}

/**
 * Runs a change and waits until the cached server has applied its notice: a
 * load racing a notice is (rightly) not kept, which would make the next
 * measured read a miss.
 */
async function changed<T>(change: () => Promise<T>): Promise<T> {
  const before = applied;
  const result = await change();
  await vi.waitFor(() => expect(applied).toBeGreaterThan(before), { timeout: 2_000, interval: 2 });
  return result;
}

const client = (server: TestServer) => clientFor(TenantRegistryService, server.baseUrl, "grpc");

/** The call's result and how many database calls it made, counted from just before it to just after it. */
async function measure<T>(call: () => Promise<T>): Promise<{ result: T; queries: number; methods: string[] }> {
  queries = 0;
  counted.length = 0;
  const result = await call();
  return { result, queries, methods: [...counted] };
}

async function code(call: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await call;
    return "ok";
  } catch (error) {
    return ConnectError.from(error).code;
  }
}

describe("with CACHE=off, hot paths are one indexed query at most", () => {
  it("VerifyApiKey with a malformed token touches no database", async () => {
    const { result, queries: n } = await measure(() => client(uncached).verifyApiKey({ key: "trk_not-a-key" }));
    expect(result).toMatchObject({ valid: false, code: VerifyApiKeyCode.NOT_FOUND });
    expect(n).toBe(0);
  });

  it("VerifyApiKey with a valid key is one query, every time", async () => {
    for (let i = 0; i < 2; i++) {
      const { result, queries: n, methods } = await measure(() => client(uncached).verifyApiKey({ key: secret, product: ProductCode.CERTIFAI }));
      expect(result).toMatchObject({ valid: true, code: VerifyApiKeyCode.VALID, tenant: { id: tenant.id } });
      expect(n, methods.join(", ")).toBe(1);
    }
  });

  it("GetTenantBySlug is one query", async () => {
    const { result, queries: n, methods } = await measure(() => client(uncached).getTenantBySlug({ slug: tenant.slug }));
    expect(result.tenant).toMatchObject({ id: tenant.id, slug: tenant.slug, products: [ProductCode.CERTIFAI] });
    expect(n, methods.join(", ")).toBe(1);
  });

  it("GetTenant is one query", async () => {
    const { result, queries: n, methods } = await measure(() => client(uncached).getTenant({ id: tenant.id }));
    expect(result.tenant).toMatchObject({ id: tenant.id, slug: tenant.slug, products: [ProductCode.CERTIFAI] });
    expect(n, methods.join(", ")).toBe(1);
  });

  it.each([
    ["slug", () => tenant.slug],
    ["id", () => tenant.id],
  ])("CheckEntitlement by %s is one query", async (_by, tenantOf) => {
    const { result, queries: n, methods } = await measure(() => client(uncached).checkEntitlement({ tenant: tenantOf(), product: ProductCode.CERTIFAI }));
    expect(result).toMatchObject({ entitled: true, tenantId: tenant.id });
    expect(n, methods.join(", ")).toBe(1);
  });
});

type HotRead = readonly [name: string, call: (t: TenantRow, secret: string) => Promise<unknown>];

/** Each hot read, on a tenant the cached server has not seen yet. */
const HOT_READS: readonly HotRead[] = [
  ["GetTenantBySlug", (t) => client(cached).getTenantBySlug({ slug: t.slug })],
  ["GetTenant", (t) => client(cached).getTenant({ id: t.id })],
  ["CheckEntitlement by slug", (t) => client(cached).checkEntitlement({ tenant: t.slug, product: ProductCode.CERTIFAI })],
  ["CheckEntitlement by id", (t) => client(cached).checkEntitlement({ tenant: t.id, product: ProductCode.CERTIFAI })],
  ["VerifyApiKey", (_t, key) => client(cached).verifyApiKey({ key, product: ProductCode.CERTIFAI })],
];

async function freshTenant(): Promise<{ t: TenantRow; key: string }> {
  const t = await insertTenant(sql, { products: ["certifai"] });
  const { secret: key } = await changed(() => client(uncached).createApiKey({ tenantId: t.id, name: "hot", scopes: ["read"] }));
  await markKeysUsed(t.id);
  return { t, key };
}

describe("with the cache, a hot read is one query on a miss and none on a hit", () => {
  it.each(HOT_READS)("%s: a miss is one query, the next call none", async (_name, call) => {
    const { t, key } = await freshTenant();
    const miss = await measure(() => call(t, key));
    expect(miss.queries, miss.methods.join(", ")).toBe(1);
    const hit = await measure(() => call(t, key));
    expect(hit.queries, hit.methods.join(", ")).toBe(0);
    expect(hit.result).toEqual(miss.result);
  });

  it.each(HOT_READS)("%s: 50 concurrent misses of one key are one query", async (_name, call) => {
    const { t, key } = await freshTenant();
    const { result, queries: n, methods } = await measure(() => Promise.all(Array.from({ length: 50 }, () => call(t, key))));
    expect(n, methods.join(", ")).toBe(1);
    expect(new Set(result.map((r) => JSON.stringify(r, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v)))).size).toBe(1);
  });

  it("ResolveIdp: a miss is two queries (the domain, its tenant), the next call none", async () => {
    const t = await insertTenant(sql);
    const domain = `${t.slug}.example`;
    await changed(() => client(uncached).setIdpConfig({
      tenantId: t.id,
      idpConfig: { protocol: 1, issuerUrl: "https://idp.example.com/realms/x", clientId: "c", emailDomains: [domain], enabled: true },
    }));
    const miss = await measure(() => client(cached).resolveIdp({ email: `a@${domain}` }));
    expect(miss.queries, miss.methods.join(", ")).toBe(2);
    const hit = await measure(() => client(cached).resolveIdp({ email: `b@${domain}` }));
    expect(hit.queries).toBe(0);
    expect(hit.result.tenant?.id).toBe(t.id);
  });
});

describe("unknown names are cached as missing: guessing does not reach PostgreSQL", () => {
  it("an unknown slug is one query, then none; creating the tenant makes it found", async () => {
    const slug = uniqueSlug("ghost");
    for (const expected of [1, 0, 0]) {
      const { result, queries: n } = await measure(() => code(client(cached).getTenantBySlug({ slug })));
      expect(result).toBe(Code.NotFound);
      expect(n).toBe(expected);
    }
    const entitlement = await measure(() => client(cached).checkEntitlement({ tenant: slug, product: ProductCode.CERTIFAI }));
    expect(entitlement).toMatchObject({ queries: 0, result: { reason: EntitlementReason.TENANT_NOT_FOUND } });

    await client(cached).createTenant({ slug, name: "Now real" });
    expect((await client(cached).getTenantBySlug({ slug })).tenant?.name).toBe("Now real");
  });

  it("an unknown API-key prefix and an unknown email domain are one query, then none", async () => {
    const guess = generateApiKeyToken().token;
    const domain = `${uniqueSlug("nobody")}.example`;
    for (const expected of [1, 0]) {
      const key = await measure(() => client(cached).verifyApiKey({ key: guess }));
      expect(key).toMatchObject({ queries: expected, result: { valid: false, code: VerifyApiKeyCode.NOT_FOUND } });
      const idp = await measure(() => code(client(cached).resolveIdp({ email: `x@${domain}` })));
      expect(idp).toMatchObject({ queries: expected, result: Code.NotFound });
    }
  });
});

describe("time-dependent facts are judged at read time, against the clock, even when cached", () => {
  const HOUR = 3_600_000;

  it("a cached key whose expiry passes verifies as EXPIRED, with no invalidation and no query", async () => {
    const t = await insertTenant(sql, { products: ["certifai"] });
    const { secret: key } = await changed(() =>
      client(cached).createApiKey({ tenantId: t.id, name: "expiring", expiresAt: timestampFromDate(new Date(now.getTime() + HOUR)) }),
    );
    await markKeysUsed(t.id);
    expect((await client(cached).verifyApiKey({ key })).code).toBe(VerifyApiKeyCode.VALID);
    const invalidations = cached.app.cacheStats.invalidations;
    now = new Date(now.getTime() + 2 * HOUR);
    const later = await measure(() => client(cached).verifyApiKey({ key }));
    expect(later).toMatchObject({ queries: 0, result: { valid: false, code: VerifyApiKeyCode.EXPIRED } });
    expect(cached.app.cacheStats.invalidations).toBe(invalidations);
  });

  it("a rotated key's previous secret works through its grace period and is EXPIRED after it, from the cache", async () => {
    const t = await insertTenant(sql, { products: ["certifai"] });
    const created = await changed(() => client(cached).createApiKey({ tenantId: t.id, name: "rotating" }));
    await changed(() => client(cached).rotateApiKey({ id: created.apiKey!.id, gracePeriod: durationFromMs(HOUR) }));
    await markKeysUsed(t.id);
    expect((await client(cached).verifyApiKey({ key: created.secret })).code).toBe(VerifyApiKeyCode.VALID);
    now = new Date(now.getTime() + 2 * HOUR);
    const later = await measure(() => client(cached).verifyApiKey({ key: created.secret }));
    expect(later).toMatchObject({ queries: 0, result: { valid: false, code: VerifyApiKeyCode.EXPIRED } });
  });

  it("a cached grant whose expiry passes is GRANT_EXPIRED and leaves the tenant's products, with no query", async () => {
    const t = await insertTenant(sql, { products: ["certifai"] });
    await changed(() =>
      client(cached).grantProduct({ tenantId: t.id, product: ProductCode.COMPLIANCE, expiresAt: timestampFromDate(new Date(now.getTime() + HOUR)) }),
    );
    expect((await client(cached).checkEntitlement({ tenant: t.slug, product: ProductCode.COMPLIANCE })).reason).toBe(EntitlementReason.ENTITLED);
    expect((await client(cached).getTenant({ id: t.id })).tenant?.products).toEqual([ProductCode.CERTIFAI, ProductCode.COMPLIANCE]);
    now = new Date(now.getTime() + 2 * HOUR);
    const check = await measure(() => client(cached).checkEntitlement({ tenant: t.slug, product: ProductCode.COMPLIANCE }));
    expect(check).toMatchObject({ queries: 0, result: { entitled: false, reason: EntitlementReason.GRANT_EXPIRED } });
    const get = await measure(() => client(cached).getTenant({ id: t.id }));
    expect(get).toMatchObject({ queries: 0, result: { tenant: { products: [ProductCode.CERTIFAI] } } });
  });
});
