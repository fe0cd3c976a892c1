import pg from "pg";
import { ACME } from "../../../src/db/seed.js";
import type { BenchContext } from "./context.js";

/**
 * Bench data sets, seeded in SQL with generate_series (seconds for 1M rows, not an
 * RPC per row), in their own databases that the bench drops at the end. Built once
 * per run and shared by the sections that read them.
 */
const built = new WeakMap<BenchContext, Map<string, Promise<string>>>();

function once(ctx: BenchContext, key: string, build: () => Promise<string>): Promise<string> {
  let map = built.get(ctx);
  if (!map) built.set(ctx, (map = new Map()));
  let database = map.get(key);
  if (!database) map.set(key, (database = build()));
  return database;
}

export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Inserts rows [from, to] of `insert` ($1, $2 = the range) in bounded batches. */
async function batched(client: pg.Client, insert: string, from: number, to: number, extra: unknown[] = [], size = 200_000): Promise<void> {
  for (let start = from; start <= to; start += size) {
    await client.query(insert, [start, Math.min(to, start + size - 1), ...extra]);
  }
}

/** The dev tenant (acme, with both products), as a fresh dev server would seed it. */
export async function insertAcme(client: pg.Client): Promise<void> {
  await client.query(
    `INSERT INTO tenants (id, slug, name, status, plan) VALUES ($1, $2, $3, 'active', 'professional') ON CONFLICT DO NOTHING`,
    [ACME.id, ACME.slug, ACME.name],
  );
  await client.query(
    `INSERT INTO tenant_products (tenant_id, product) SELECT $1, unnest(ARRAY['certifai', 'compliance']::product_code[]) ON CONFLICT DO NOTHING`,
    [ACME.id],
  );
}

/** One word that only every 100,000th tenant's name contains: the rare text `query`. */
export const RARE_NAME_WORD = "zebra";

/** A tenants database grown in place: `growTenants(url, n)` tops it up to n tenants (plus acme). */
export function tenantsDatabase(ctx: BenchContext): Promise<string> {
  return once(ctx, "tenants", async () => {
    const url = await ctx.postgres.createDatabase("tenants");
    await withClient(url, insertAcme);
    return url;
  });
}

export async function growTenants(url: string, count: number): Promise<void> {
  await withClient(url, async (client) => {
    const { rows } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM tenants WHERE slug LIKE 't-%'`);
    const have = rows[0]!.n;
    if (have >= count) return;
    await batched(
      client,
      `INSERT INTO tenants (slug, name, plan)
       SELECT 't-' || lpad(i::text, 7, '0'),
              'Tenant ' || i || CASE WHEN i % 100000 = 7 THEN ' ${RARE_NAME_WORD} works' ELSE ' holdings' END,
              (ARRAY['free', 'starter', 'professional', 'enterprise']::tenant_plan[])[1 + i % 4]
       FROM generate_series($1::int, $2::int) AS i`,
      have + 1,
      count,
    );
    await client.query("VACUUM ANALYZE tenants");
  });
}

/** Actions of the seeded audit events: the rare one is 0.01 % of rows. */
export const AUDIT_ACTIONS = ["tenant.update", "project.create", "project.update", "api_key.create", "api_key.rotate", "entitlement.grant", "idp.update"];
export const RARE_ACTION = "tenant.suspend";
/** 1,000 actors (0.1 % each) and 5,000 targets (0.02 % each). */
export const SOME_ACTOR = "user-7";
export const SOME_TARGET = "target-42";

/** `events` audit events, all of acme (one chain), one a second up to now. */
export function auditDatabase(ctx: BenchContext, events: number): Promise<string> {
  return once(ctx, `audit-${events}`, async () => {
    const url = await ctx.postgres.createDatabase(`audit_${events}`);
    await withClient(url, async (client) => {
      await insertAcme(client);
      // audit_append, the chain's bulk writer (a plain INSERT would chain row by row). Event i is
      // (events - i) seconds old, so sequence order and time order agree.
      await batched(
        client,
        `SELECT audit_append(jsonb_agg(jsonb_build_object(
           'tenant_id', $3::text,
           'action', CASE WHEN i % 10000 = 0 THEN '${RARE_ACTION}' ELSE ($4::text[])[1 + i % ${AUDIT_ACTIONS.length}] END,
           'crud', 'u', 'actor_id', 'user-' || (i % 1000), 'actor_name', 'User ' || (i % 1000), 'actor_type', 'user',
           'target_id', 'target-' || (i % 5000), 'target_name', 'Target ' || (i % 5000), 'target_type', 'project',
           'description', 'seeded by make bench', 'created_at', now() - make_interval(secs => $5::int - i)) ORDER BY i))
         FROM generate_series($1::int, $2::int) AS i`,
        1,
        events,
        [ACME.id, AUDIT_ACTIONS, events],
        50_000,
      );
      await client.query("VACUUM ANALYZE audit_log");
    });
    return url;
  });
}
