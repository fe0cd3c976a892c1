import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProductCode } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { VerifyApiKeyCode } from "../../gen/breakpilot/tenantregistry/v1/api_key_pb.js";
import type { DatabasePool } from "../../src/db/pool.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { insertTenant, type TenantRow } from "../support/fixtures.js";
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

function counting<T extends object>(target: T): T {
  return new Proxy(target, {
    get(obj, prop, receiver) {
      const value = Reflect.get(obj, prop, receiver) as unknown;
      if (typeof prop !== "string" || !QUERY_METHODS.has(prop) || typeof value !== "function") return value;
      return (...args: unknown[]) => {
        queries++;
        counted.push(prop);
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
let server: TestServer;
let sql: pg.Client;
let tenant: TenantRow;
let secret: string;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.client();
  const pool: DatabasePool = await db.pool();
  server = await startTestServer(counting(pool));
  tenant = await insertTenant(sql, { products: ["certifai"] });
  ({ secret } = await client().createApiKey({ tenantId: tenant.id, name: "hot", scopes: ["read"] }));
  // last_used_at is written by a timer (every 5 s) through the same pool, and
  // only for keys whose stored last_used_at is over a minute old. Marking the
  // key as just used keeps the tracker from noting it, so no background write
  // can ever land inside a measured call (each is also asserted right after it
  // returns, a few milliseconds later). The hourly maintenance job (idempotency
  // keys) first runs an hour after start, far outside the test's lifetime.
  await sql.query("UPDATE api_keys SET last_used_at = now() WHERE tenant_id = $1", [tenant.id]);
});

afterAll(async () => {
  await server?.close();
  await db?.drop();
});

const client = () => clientFor(TenantRegistryService, server.baseUrl, "grpc");

/** The call's result and how many database calls it made, counted from just before it to just after it. */
async function measure<T>(call: () => Promise<T>): Promise<{ result: T; queries: number; methods: string[] }> {
  queries = 0;
  counted.length = 0;
  const result = await call();
  return { result, queries, methods: [...counted] };
}

describe("hot paths are one indexed query at most", () => {
  it("VerifyApiKey with a malformed token touches no database", async () => {
    const { result, queries: n } = await measure(() => client().verifyApiKey({ key: "trk_not-a-key" }));
    expect(result).toMatchObject({ valid: false, code: VerifyApiKeyCode.NOT_FOUND });
    expect(n).toBe(0);
  });

  it("VerifyApiKey with a valid key is one query", async () => {
    const { result, queries: n, methods } = await measure(() => client().verifyApiKey({ key: secret, product: ProductCode.CERTIFAI }));
    expect(result).toMatchObject({ valid: true, code: VerifyApiKeyCode.VALID, tenant: { id: tenant.id } });
    expect(n, methods.join(", ")).toBe(1);
  });

  it("GetTenantBySlug is one query", async () => {
    const { result, queries: n, methods } = await measure(() => client().getTenantBySlug({ slug: tenant.slug }));
    expect(result.tenant).toMatchObject({ id: tenant.id, slug: tenant.slug, products: [ProductCode.CERTIFAI] });
    expect(n, methods.join(", ")).toBe(1);
  });

  it("GetTenant is one query", async () => {
    const { result, queries: n, methods } = await measure(() => client().getTenant({ id: tenant.id }));
    expect(result.tenant).toMatchObject({ id: tenant.id, slug: tenant.slug, products: [ProductCode.CERTIFAI] });
    expect(n, methods.join(", ")).toBe(1);
  });

  it.each([
    ["slug", () => tenant.slug],
    ["id", () => tenant.id],
  ])("CheckEntitlement by %s is one query", async (_by, tenantOf) => {
    const { result, queries: n, methods } = await measure(() => client().checkEntitlement({ tenant: tenantOf(), product: ProductCode.CERTIFAI }));
    expect(result).toMatchObject({ entitled: true, tenantId: tenant.id });
    expect(n, methods.join(", ")).toBe(1);
  });
});
