import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { sql as slonikSql, type Interceptor } from "slonik";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { VerifyApiKeyCode } from "../../gen/breakpilot/tenantregistry/v1/api_key_pb.js";
import { ProductCode } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { MAX_BATCH_KEYS } from "../../src/cache/batch.js";
import { createHotReads, type HotReads } from "../../src/cache/hot-reads.js";
import { createReadCache } from "../../src/cache/read-cache.js";
import { DEFAULT_CACHE_SETTINGS } from "../../src/config.js";
import type { DatabasePool } from "../../src/db/pool.js";
import { generateApiKeyToken } from "../../src/domain/api-key.js";
import { createLogger } from "../../src/logger.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { insertTenant, uniqueSlug, type TenantRow } from "../support/fixtures.js";
import { clientFor, startTestServer, type TestServer } from "../support/server.js";

// The hot reads' statements as the pool sends them, by name, and a hook that
// runs as each goes out (to change the database between two lookups).
let sent: string[] = [];
let onSend: (() => Promise<void>) | undefined;
const recordStatements: Interceptor = {
  name: "record-hot-statements",
  async beforeQueryExecution(_context, query) {
    if (query.name) sent.push(query.name);
    const hook = onSend;
    onSend = undefined;
    await hook?.();
    return null;
  },
};

let db: TestDatabase;
let sql: pg.Client;
let pool: DatabasePool;
/** The hot reads with the cache off: every lookup goes to PostgreSQL. */
let hot: HotReads;
let tenants: TenantRow[];
let server: TestServer;

async function insertKey(tenantId: string, rotated = false) {
  const current = generateApiKeyToken();
  const previous = generateApiKeyToken();
  await sql.query(
    rotated
      ? `INSERT INTO api_keys (tenant_id, name, prefix, secret_hash, previous_prefix, previous_secret_hash, previous_expires_at)
         VALUES ($1, 'batch', $2, $3, $4, $5, now() + interval '1 hour')`
      : `INSERT INTO api_keys (tenant_id, name, prefix, secret_hash) VALUES ($1, 'batch', $2, $3)`,
    rotated ? [tenantId, current.prefix, current.hash, previous.prefix, previous.hash] : [tenantId, current.prefix, current.hash],
  );
  return { current, previous };
}

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.client();
  pool = await db.pool({ interceptors: [recordStatements] });
  const logger = createLogger("silent");
  hot = createHotReads(pool, createReadCache({ ...DEFAULT_CACHE_SETTINGS, enabled: false }, undefined, logger));
  tenants = [];
  for (let i = 0; i < 6; i++) tenants.push(await insertTenant(sql, { products: ["certifai"] }));
  server = await startTestServer(pool, { cache: { ...DEFAULT_CACHE_SETTINGS, enabled: false } });
});

afterAll(async () => {
  await server?.close();
  await db?.drop();
});

beforeEach(() => {
  sent = [];
  onSend = undefined;
});

describe("hot lookups made together share one statement, each with its own answer", () => {
  it("tenants by slug: one statement for all of them; unknown and repeated slugs are answered too", async () => {
    const ghost = uniqueSlug("ghost");
    const asked = [...tenants.map((t) => t.slug), ghost, tenants[0]!.slug];
    const answers = await Promise.all(asked.map((slug) => hot.tenantBySlug(slug)));
    expect(sent).toEqual(["tenant_records_by_slug"]);
    expect(answers.map((a) => a?.id ?? null)).toEqual([...tenants.map((t) => t.id), null, tenants[0]!.id]);
    expect(answers.map((a) => a?.record.slug ?? null)).toEqual([...tenants.map((t) => t.slug), null, tenants[0]!.slug]);
  });

  it("tenants by id: one statement, the same way", async () => {
    const unknown = "00000000-0000-4000-8000-000000000000";
    const answers = await Promise.all([...tenants.map((t) => hot.tenantById(t.id)), hot.tenantById(unknown)]);
    expect(sent).toEqual(["tenant_records_by_id"]);
    expect(answers.map((a) => a?.id ?? null)).toEqual([...tenants.map((t) => t.id), null]);
  });

  it("API keys by prefix: one statement; a rotated key answers its current and its previous prefix", async () => {
    const plain = await insertKey(tenants[1]!.id);
    const rotated = await insertKey(tenants[2]!.id, true);
    const unknown = generateApiKeyToken();
    const [a, b, c, d] = await Promise.all(
      [plain.current, rotated.current, rotated.previous, unknown].map((token) => hot.apiKeysByPrefix(token.prefix)),
    );
    expect(sent).toEqual(["api_key_records_by_prefix"]);
    expect(a!.map((k) => [k.key.prefix, k.tenant.id])).toEqual([[plain.current.prefix, tenants[1]!.id]]);
    expect(b!.map((k) => [k.key.prefix, k.key.previousPrefix, k.tenant.id])).toEqual([[rotated.current.prefix, rotated.previous.prefix, tenants[2]!.id]]);
    expect(c!.map((k) => k.key.id)).toEqual(b!.map((k) => k.key.id));
    expect(d).toEqual([]);
  });

  it(`a batch holds at most ${MAX_BATCH_KEYS} keys: more lookups are more statements, every one answered`, async () => {
    const slugs = Array.from({ length: 2 * MAX_BATCH_KEYS + 1 }, (_, i) => tenants[i % tenants.length]!.slug);
    const answers = await Promise.all(slugs.map((slug) => hot.tenantBySlug(slug)));
    // Two full batches and the one key left over, sent together (in whatever order the pool lets them go).
    expect([...sent].sort()).toEqual(["tenant_record_by_slug", "tenant_records_by_slug", "tenant_records_by_slug"]);
    expect(answers.map((a) => a?.record.slug)).toEqual(slugs);
  });

  it("a lookup made after the statement went out is not answered by it: it sees what committed in between", async () => {
    const t = await insertTenant(sql);
    let later: ReturnType<HotReads["tenantById"]> | undefined;
    // As the first lookup's statement is sent: rename the tenant, then ask again.
    onSend = async () => {
      await sql.query("UPDATE tenants SET name = 'renamed' WHERE id = $1", [t.id]);
      later = hot.tenantById(t.id);
    };
    expect((await hot.tenantById(t.id))?.id).toBe(t.id);
    expect((await later!)?.record.name).toBe("renamed");
    // Had it joined the statement already on its way, there would be one.
    expect(sent).toEqual(["tenant_record_by_id", "tenant_record_by_id"]);
  });

  it("a slug or id that cannot exist is answered as missing without a statement, and spoils no batch", async () => {
    // What the auth interceptor may pass straight from a request, before any handler checked it.
    const garbage = ["", "x", "Upper-Case", "a\u0000b", "nul\u0000-in-a-slug", "' OR 1=1 --", "a".repeat(64)];
    const answers = await Promise.all([...garbage.map((slug) => hot.tenantIdBySlug(slug)), hot.tenantIdBySlug(tenants[3]!.slug)]);
    expect(answers).toEqual([...garbage.map(() => null), tenants[3]!.id]);
    expect(sent).toEqual(["tenant_record_by_slug"]);

    sent = [];
    expect(await Promise.all(["not-a-uuid", "\u0000", ""].map((id) => hot.tenantById(id)))).toEqual([null, null, null]);
    expect(sent).toEqual([]);
  });
});

describe("a lookup alone in its turn takes a one-key statement that PostgreSQL stops planning", () => {
  it("each kind answers a lone key, a rotated key's previous prefix included, through its one-key statement", async () => {
    const rotated = await insertKey(tenants[4]!.id, true);
    sent = [];
    expect((await hot.tenantBySlug(tenants[4]!.slug))?.id).toBe(tenants[4]!.id);
    expect((await hot.tenantById(tenants[4]!.id))?.record.slug).toBe(tenants[4]!.slug);
    expect((await hot.apiKeysByPrefix(rotated.current.prefix))!.map((k) => k.tenant.id)).toEqual([tenants[4]!.id]);
    expect((await hot.apiKeysByPrefix(rotated.previous.prefix))!.map((k) => k.key.previousPrefix)).toEqual([rotated.previous.prefix]);
    expect(await hot.apiKeysByPrefix(generateApiKeyToken().prefix)).toEqual([]);
    expect(await hot.tenantBySlug(uniqueSlug("ghost"))).toBeNull();
    expect(sent).toEqual([
      "tenant_record_by_slug",
      "tenant_record_by_id",
      "api_key_record_by_prefix",
      "api_key_record_by_prefix",
      "api_key_record_by_prefix",
      "tenant_record_by_slug",
    ]);
  });

  it("lookups of one key made together are sent as that one key, each of them answered", async () => {
    const key = await insertKey(tenants[3]!.id);
    const slugs = await Promise.all(Array.from({ length: 5 }, () => hot.tenantBySlug(tenants[3]!.slug)));
    const ids = await Promise.all(Array.from({ length: 5 }, () => hot.tenantById(tenants[3]!.id)));
    const keys = await Promise.all(Array.from({ length: 5 }, () => hot.apiKeysByPrefix(key.current.prefix)));
    expect(sent).toEqual(["tenant_record_by_slug", "tenant_record_by_id", "api_key_record_by_prefix"]);
    expect([...slugs, ...ids].map((t) => t?.id)).toEqual(Array(10).fill(tenants[3]!.id));
    expect(keys.map((k) => k!.map((row) => row.key.prefix))).toEqual(Array(5).fill([key.current.prefix]));
  });

  it("after a few runs on one connection the one-key statements run on a generic plan, not planned per call", async () => {
    // The `= ANY` statements seldom get one (their generic plan assumes ten keys): planning a
    // lookup costs PostgreSQL more than running it, so a lone lookup must not pay it every time.
    const single = await db.pool({ maxPoolSize: 1 });
    const lone = createHotReads(single, createReadCache({ ...DEFAULT_CACHE_SETTINGS, enabled: false }, undefined, createLogger("silent")));
    const key = await insertKey(tenants[5]!.id);
    for (let i = 0; i < 8; i++) {
      await lone.tenantBySlug(tenants[i % tenants.length]!.slug);
      await lone.tenantById(tenants[i % tenants.length]!.id);
      await lone.apiKeysByPrefix(i % 2 === 0 ? key.current.prefix : generateApiKeyToken().prefix);
    }
    const plans = await single.any(
      slonikSql.type(z.object({ name: z.string(), generic_plans: z.coerce.number(), custom_plans: z.coerce.number() }))`
        SELECT name, generic_plans, custom_plans FROM pg_prepared_statements WHERE name LIKE '%record_by%' ORDER BY name`,
    );
    expect(plans.map((p) => p.name)).toEqual(["api_key_record_by_prefix", "tenant_record_by_id", "tenant_record_by_slug"]);
    for (const p of plans) {
      expect(p.generic_plans, p.name).toBeGreaterThanOrEqual(2);
      expect(p.custom_plans, p.name).toBeLessThanOrEqual(5);
    }
  });
});

describe("over the wire, with CACHE=off, concurrent hot reads of different tenants each get their own answer", () => {
  it("40 calls at once over one gRPC connection: slugs, ids, entitlements and keys mixed, none confused", async () => {
    const client = clientFor(TenantRegistryService, server.baseUrl, "grpc");
    const keys = await Promise.all(tenants.map((t) => client.createApiKey({ tenantId: t.id, name: "wire" })));
    sent = [];
    const calls = Array.from({ length: 40 }, async (_, i) => {
      const t = tenants[i % tenants.length]!;
      switch (i % 5) {
        case 0:
          return [t.id, (await client.getTenantBySlug({ slug: t.slug })).tenant?.id];
        case 1:
          return [t.id, (await client.getTenant({ id: t.id })).tenant?.id];
        case 2:
          return [t.id, (await client.checkEntitlement({ tenant: t.slug, product: ProductCode.CERTIFAI })).tenantId];
        case 3: {
          const verified = await client.verifyApiKey({ key: keys[i % tenants.length]!.secret });
          return [t.id, verified.code === VerifyApiKeyCode.VALID ? verified.tenant?.id : verified.code];
        }
        default:
          try {
            await client.getTenantBySlug({ slug: uniqueSlug("nobody") });
            return [null, "found"];
          } catch (error) {
            return [null, ConnectError.from(error).code === Code.NotFound ? null : ConnectError.from(error).code];
          }
      }
    });
    for (const [expected, got] of await Promise.all(calls)) expect(got).toBe(expected);
    // Every call's lookup was sent, alone or batched with others: never more statements than calls.
    expect(sent.length).toBeGreaterThan(0);
    expect(sent.length).toBeLessThanOrEqual(40);
  });
});
