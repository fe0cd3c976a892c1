import { sql, type CommonQueryMethods, type QuerySqlToken } from "slonik";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { MAX_BATCH_KEYS } from "../../src/cache/batch.js";
import type { DatabasePool } from "../../src/db/pool.js";
import { listAuditEvents } from "../../src/db/queries/audit.js";
import { findApiKeysByPrefixes } from "../../src/db/queries/api-keys.js";
import { findTenantRecords, listTenants } from "../../src/db/queries/tenants.js";
import type { AuditFilter } from "../../src/domain/audit-query.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";

// The filters that would scan at 1M rows must be able to use their index, as
// the query functions really write them (a lower() or a concatenation around
// the column would silently lose it). On a tiny table PostgreSQL rightly
// prefers a sequential scan, so each plan is taken with enable_seqscan off:
// this pins "the index can serve this query", not a timing. A few thousand
// rows where the filtered values are rare give the planner real statistics.

let db: TestDatabase;
let pool: DatabasePool;
beforeAll(async () => {
  db = await createTestDatabase();
  pool = await db.pool();
  const client = await db.client();
  await client.query(`INSERT INTO tenants (id, slug, name) VALUES ('${tenant}', 'plans', 'Plans')`);
  await client.query(`INSERT INTO tenants (slug, name) SELECT 'plan-' || i, 'Company ' || md5(i::text) FROM generate_series(1, 3000) i`);
  await client.query(`
    INSERT INTO audit_log (tenant_id, action, crud, actor_id, target_id, target_type, created_at)
    SELECT '${tenant}', 'project.update', 'u', 'user-' || (i % 3), 'target-' || (i % 3), 'other', now() - i * interval '1 second'
    FROM generate_series(1, 3000) i`);
  await client.query("ANALYZE tenants; ANALYZE audit_log");
});
afterAll(async () => db?.drop());

/**
 * Runs `read` against a connection that answers each query with its plan's index names instead of rows.
 * `generic`: the plan made without the values, which PostgreSQL runs a prepared statement on once it
 * has found it no worse than planning each call.
 */
async function indexesUsedBy(read: (explaining: CommonQueryMethods) => Promise<unknown>, bitmapOnly = false, generic = false): Promise<string[]> {
  return pool.connect(async (connection) => {
    await connection.query(sql.unsafe`SET enable_seqscan = off`);
    if (bitmapOnly) await connection.query(sql.unsafe`SET enable_indexscan = off`);
    try {
      const used: string[] = [];
      const explain = async (query: QuerySqlToken) => {
        // Unnamed: an EXPLAIN must not take the name of the statement it explains.
        const explained = generic
          ? { ...query, name: undefined, sql: `EXPLAIN (GENERIC_PLAN, FORMAT JSON) ${query.sql}`, values: [] }
          : { ...query, name: undefined, sql: `EXPLAIN (FORMAT JSON) ${query.sql}` };
        const plan = await connection.oneFirst({ ...explained, parser: z.any() } as QuerySqlToken);
        used.push(...Array.from(JSON.stringify(plan).matchAll(/"Index Name":"([^"]+)"/g), (m) => m[1]!));
        return [];
      };
      await read({ ...connection, any: explain } as CommonQueryMethods);
      return used;
    } finally {
      await connection.query(sql.unsafe`RESET enable_seqscan`);
      await connection.query(sql.unsafe`RESET enable_indexscan`);
    }
  });
}

const tenant = "00000000-0000-4000-8000-00000000beef";
const unfiltered: AuditFilter = {
  tenantId: tenant, action: null, crud: null, actorId: null, targetId: null, targetType: null, startTime: null, endTime: null, isFailure: null,
};

describe("query plans at scale", () => {
  it("the hot reads find their rows through the unique indexes, alone or however many keys a batch holds", async () => {
    const slugs = Array.from({ length: MAX_BATCH_KEYS }, (_, i) => `plan-${i + 1}`);
    const prefixes = slugs.map((s) => `trk_${s.padEnd(12, "0").slice(0, 12)}`);
    for (const asked of [slugs, slugs.slice(0, 1)]) {
      expect(await indexesUsedBy((db) => findTenantRecords(db, { slugs: asked }))).toContain("tenants_slug_key");
    }
    for (const ids of [[tenant, "00000000-0000-4000-8000-00000000cafe"], [tenant]]) {
      expect(await indexesUsedBy((db) => findTenantRecords(db, { ids }))).toContain("tenants_pkey");
    }
    for (const asked of [prefixes, prefixes.slice(0, 1)]) {
      expect(await indexesUsedBy((db) => findApiKeysByPrefixes(db, asked))).toEqual(
        expect.arrayContaining(["api_keys_prefix_key", "api_keys_previous_prefix_key"]),
      );
    }
  });

  it("a lone key's statement can use its indexes on a generic plan (the plan it runs on after five calls)", async () => {
    const generic = (read: (db: CommonQueryMethods) => Promise<unknown>) => indexesUsedBy(read, false, true);
    expect(await generic((db) => findTenantRecords(db, { slugs: ["plan-1"] }))).toContain("tenants_slug_key");
    expect(await generic((db) => findTenantRecords(db, { ids: [tenant] }))).toContain("tenants_pkey");
    expect(await generic((db) => findApiKeysByPrefixes(db, ["trk_plan10000000"]))).toEqual(
      expect.arrayContaining(["api_keys_prefix_key", "api_keys_previous_prefix_key"]),
    );
  });

  it("ListTenants' text query can use the trigram indexes on slug and name", async () => {
    // Bitmap scans only: at 3,000 rows walking tenants_slug_key in order is cheaper, at 1M it is not.
    const used = await indexesUsedBy((c) => listTenants(c, { query: "no_such%company" }, undefined, 51), true);
    expect(used).toEqual(expect.arrayContaining(["tenants_slug_trgm_idx", "tenants_name_trgm_idx"]));
  });

  it.each([
    ["an exact action", { action: { exact: "tenant.suspend" } }, "audit_log_chain_id_action_idx"],
    ["an action prefix", { action: { prefix: "tenant." } }, "audit_log_chain_id_action_idx"],
    ["an actor", { actorId: "user-1" }, "audit_log_chain_id_actor_id_idx"],
    ["a target", { targetId: "t-1" }, "audit_log_chain_id_target_id_idx"],
    ["a target type", { targetType: "project" }, "audit_log_chain_id_target_type_idx"],
    ["failures only", { isFailure: true }, "audit_log_chain_id_failures_idx"],
  ] as const)("an audit page filtered by %s can use its index, newest and oldest first", async (_, filter, index) => {
    for (const order of ["newest_first", "oldest_first"] as const) {
      const used = await indexesUsedBy((c) => listAuditEvents(c, { ...unfiltered, ...filter }, order, undefined, 51));
      expect(used, order).toContain(index);
    }
  });
});
