import pg from "pg";
import type { BenchContext } from "../harness/context.js";
import { fmt, type Cell } from "../harness/report.js";
import { median } from "../harness/stats.js";

/**
 * Issue 10: what the chain costs on writes, "before and after", in one run. The
 * chain lives entirely in SQL (audit_append: the head row lock, the canonical
 * form, SHA-256, the head update), so the same writes are timed on three schemas
 * side by side: before the chain (migrations 1–3, and the INSERTs the service sent
 * then), with it as it landed (1–4, audit_append for every event), and as shipped
 * (every migration: single events chained by a trigger, the later filter and
 * search indexes included). Everything above the
 * database (protocol, auth, handlers) is the same either way and left out, so
 * the ratio is the chain's share of the database's work: an upper bound on what
 * it adds to a whole call.
 */

const TENANT = "5f0e8e5e-1d2a-4c57-9a37-3f2b8f0d1a01";
/** 50 more tenants, for writes spread across chains (no global serialisation). */
const SPREAD = Array.from({ length: 50 }, (_, i) => `5f0e8e5e-1d2a-4c57-9a37-${(i + 1).toString(16).padStart(12, "0")}`);
const BATCH = 1_000;

/**
 * How each schema's writer sends a mutation's event: before the chain and as
 * shipped, one plain INSERT (migration 7's trigger chains it); migration 4's
 * service sent a one-element audit_append. Batches always went through one
 * statement: the old INSERT … SELECT before the chain, audit_append since.
 */
type Schema = { readonly throughMigration: number | undefined; readonly single: "insert" | "audit_append"; readonly batch: "insert" | "audit_append" };
const SCHEMAS: readonly (Schema & { readonly column: string })[] = [
  { column: "before the chain (1–3)", throughMigration: 3, single: "insert", batch: "insert" },
  { column: "chain, as landed (1–4)", throughMigration: 4, single: "audit_append", batch: "audit_append" },
  { column: "chain (1–4)", throughMigration: 4, single: "insert", batch: "audit_append" },
  { column: "as shipped (1–7)", throughMigration: undefined, single: "insert", batch: "audit_append" },
];

// The mutation's event as the service writes it (one row, the caller's actor and address).
function eventRow(n: number, tenant: string) {
  return {
    tenant_id: tenant,
    action: "tenant.update",
    crud: "u",
    actor_id: "bench-admin",
    actor_name: "Bench Admin",
    actor_type: "user",
    actor_href: null,
    target_id: tenant,
    target_name: "bench",
    target_type: "tenant",
    source_ip: "127.0.0.1",
    description: "",
    fields: { name: `Bench ${n}` },
    is_failure: false,
    is_anonymous: false,
  };
}

// What the service sent before the chain (git show fa10d29^:src/db/queries/audit.ts).
const INSERT_BEFORE = `
  INSERT INTO audit_log (
    tenant_id, action, crud, actor_id, actor_name, actor_type, actor_href,
    target_id, target_name, target_type, source_ip, description, fields, is_failure, is_anonymous
  ) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::inet, $12, $13::jsonb, $14, $15)`;
const BATCH_BEFORE = `
  WITH inserted AS (
    INSERT INTO audit_log (
      tenant_id, action, crud, actor_id, actor_name, actor_type, actor_href,
      target_id, target_name, target_type, source_ip, description, fields,
      is_failure, is_anonymous, created_at, external_id, component
    )
    SELECT x.tenant_id, x.action, x.crud, x.actor_id, x.actor_name, x.actor_type, x.actor_href,
           x.target_id, x.target_name, x.target_type, x.source_ip, x.description, x.fields,
           x.is_failure, x.is_anonymous, x.created_at, x.external_id, x.component
    FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(value, n)
    CROSS JOIN LATERAL jsonb_to_record(e.value) AS x(
      tenant_id uuid, action text, crud text, actor_id text, actor_name text, actor_type text, actor_href text,
      target_id text, target_name text, target_type text, source_ip inet, description text, fields jsonb,
      is_failure boolean, is_anonymous boolean, created_at timestamptz, external_id text, component text
    )
    ORDER BY e.n
    ON CONFLICT (component, external_id) DO NOTHING
    RETURNING 1
  )
  SELECT count(*)::int AS recorded FROM inserted`;

type Work = (client: pg.PoolClient, n: number) => Promise<void>;

function mutation(via: Schema["single"], tenants: readonly string[]): Work {
  return async (client, n) => {
    const tenant = tenants[n % tenants.length]!;
    await client.query("BEGIN");
    try {
      await client.query("UPDATE tenants SET name = $1 WHERE id = $2", [`Bench ${n}`, tenant]);
      const e = eventRow(n, tenant);
      if (via === "audit_append") await client.query("SELECT audit_append($1::jsonb)", [JSON.stringify([e])]);
      else {
        await client.query(INSERT_BEFORE, [
          e.tenant_id, e.action, e.crud, e.actor_id, e.actor_name, e.actor_type, e.actor_href,
          e.target_id, e.target_name, e.target_type, e.source_ip, e.description, JSON.stringify(e.fields), e.is_failure, e.is_anonymous,
        ]);
      }
      await client.query("COMMIT");
    } catch (error) {
      await client.query("ROLLBACK");
      throw error;
    }
  };
}

function batch(via: Schema["batch"], run: string): Work {
  return async (client, n) => {
    const rows = Array.from({ length: BATCH }, (_, i) => ({
      tenant_id: TENANT,
      action: "report.export",
      crud: "r",
      actor_id: `user-${i % 50}`,
      actor_name: "Bench User",
      actor_type: "user",
      actor_href: null,
      target_id: `report-${i}`,
      target_name: "Report",
      target_type: "report",
      source_ip: null,
      description: "recorded by make bench",
      fields: {},
      is_failure: false,
      is_anonymous: false,
      created_at: new Date().toISOString(),
      external_id: `bench-${run}-${n}-${i}`,
      component: "bench",
    }));
    await client.query(via === "audit_append" ? "SELECT audit_append($1::jsonb)" : BATCH_BEFORE, [JSON.stringify(rows)]);
  };
}

/** `inFlight` workers, each on its own connection, until `ms` have passed; calls per second. */
async function drive(pool: pg.Pool, work: Work, inFlight: number, ms: number): Promise<number> {
  let n = 0;
  let done = 0;
  let failed: unknown;
  const deadline = performance.now() + ms;
  const started = performance.now();
  // One failure stops every worker (Promise.all alone would leave the others running).
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      const client = await pool.connect();
      try {
        while (failed === undefined && performance.now() < deadline) {
          await work(client, ++n);
          done++;
        }
      } catch (error) {
        failed ??= error;
      } finally {
        client.release();
      }
    }),
  );
  if (failed !== undefined) throw failed;
  return done / ((performance.now() - started) / 1000);
}

/** What the chain adds to one call, sequentially (1 in flight): the database time with it minus without it, ms. */
export type ChainCost = { readonly mutationMs: number; readonly batchMs: number };

export async function measureChainCost(ctx: BenchContext): Promise<ChainCost> {
  const { config, report } = ctx;
  const cases: { label: string; perCall: number; inFlight: number; work: (s: Schema) => Work }[] = [
    { label: "UPDATE tenants + its event, one tenant", perCall: 1, inFlight: 1, work: (s) => mutation(s.single, [TENANT]) },
    { label: "UPDATE tenants + its event, one tenant", perCall: 1, inFlight: 16, work: (s) => mutation(s.single, [TENANT]) },
    { label: "UPDATE tenants + its event, 50 tenants", perCall: 1, inFlight: 16, work: (s) => mutation(s.single, SPREAD) },
    { label: `a batch of ${BATCH} events, one tenant`, perCall: BATCH, inFlight: 1, work: (s) => batch(s.batch, "1") },
    { label: `a batch of ${BATCH} events, one tenant`, perCall: BATCH, inFlight: 4, work: (s) => batch(s.batch, "4") },
  ];
  // Every schema at once, and each cell measured in rounds that take the schemas in turn: drift of
  // a shared machine then falls on all of them alike; the median of the rounds is reported.
  const rounds = config.quick ? 1 : 5;
  const databases: { url: string; pool: pg.Pool }[] = [];
  const perSecond: number[][] = cases.map(() => []);
  try {
    for (const schema of SCHEMAS) {
      const url = await ctx.postgres.createDatabase(`chain_cost_${schema.throughMigration ?? "all"}_${schema.single}`, { throughMigration: schema.throughMigration });
      const pool = new pg.Pool({ connectionString: url, max: 16 });
      // An idle connection the database drops must not crash the run; the next query says what went wrong.
      pool.on("error", () => {});
      databases.push({ url, pool });
      await pool.query("INSERT INTO tenants (id, slug, name) VALUES ($1, 'bench', 'Bench')", [TENANT]);
      await pool.query("INSERT INTO tenants (id, slug, name) SELECT id, 'bench-' || n, 'Bench' FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, n)", [SPREAD]);
    }
    for (const [i, c] of cases.entries()) {
      const samples: number[][] = SCHEMAS.map(() => []);
      for (let round = 0; round < rounds; round++) {
        for (const [k, schema] of SCHEMAS.entries()) {
          const work = c.work(schema);
          if (round === 0) await drive(databases[k]!.pool, work, c.inFlight, Math.max(100, config.warmupMs));
          samples[k]!.push(await drive(databases[k]!.pool, work, c.inFlight, config.quick ? config.cellMs / 8 : config.cellMs / 2));
        }
      }
      perSecond[i] = samples.map(median);
    }
  } finally {
    for (const { url, pool } of databases) {
      await pool.end();
      await ctx.postgres.dropDatabase(url);
    }
  }
  const rows: Cell[][] = cases.map((c, i) => {
    const events = perSecond[i]!.map((r) => r * c.perCall);
    const before = events[0]!;
    return [`${c.label}, ${c.inFlight} in flight`, ...events.map(fmt.int), ...events.slice(1).map((e) => fmt.ratio(e, before))];
  });
  report.table(
    "the chain's cost in the database: the same writes on each schema, events/s (target: the chain costs ≤ 30 %, i.e. chain ÷ before ≥ 0.77×)",
    ["write", ...SCHEMAS.map((s) => s.column), ...SCHEMAS.slice(1).map((s) => `${s.column.split(" (")[0]} ÷ before`)],
    rows,
  );
  report.note(
    "chain (1–4): single events as the service sends them now (a plain INSERT the trigger chains); as shipped adds migration 5's four audit filter indexes and the tenants' trigram search indexes, which are not the chain's cost",
  );
  const [, oneTenant, spread] = perSecond.map((r) => r[3]!);
  report.note(`as shipped, 16 writers across 50 tenants ÷ on one tenant: ${fmt.ratio(spread!, oneTenant!)} (no global serialisation: one tenant's writers queue on its row, others do not)`);
  // Sequential cells (cases 0 and 3), the chain as the service writes it now (column 2) against before (column 0).
  const added = (i: number) => 1000 / perSecond[i]![2]! - 1000 / perSecond[i]![0]!;
  return { mutationMs: added(0), batchMs: added(3) };
}
