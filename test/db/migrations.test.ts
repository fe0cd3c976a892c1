import { appendFile, cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { MIGRATIONS_DIR, MigrationError, migrateDown, migrateUp, schemaStatus } from "../../src/db/migrations.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";

// The six tables of 1_init; later migrations add more around them.
const TABLES = ["api_keys", "audit_log", "tenant_idp_config", "tenant_products", "tenant_projects", "tenants"];
const ENUMS = ["idp_protocol", "product_code", "tenant_plan", "tenant_status"];
const quiet = () => {};

const databases: TestDatabase[] = [];
async function freshDatabase(): Promise<TestDatabase> {
  const db = await createTestDatabase({ migrate: false });
  databases.push(db);
  return db;
}
afterEach(async () => {
  await Promise.all(databases.splice(0).map((db) => db.drop()));
});

async function tables(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
  );
  return rows.map((r) => r.name);
}

async function enums(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    "SELECT t.typname AS name FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'public' AND t.typtype = 'e' ORDER BY 1",
  );
  return rows.map((r) => r.name);
}

describe("migrations", () => {
  it("round-trips: up creates 6 tables and 4 enums, down-all empties the schema, up again succeeds", async () => {
    const client = await (await freshDatabase()).client();

    const applied = await migrateUp(client, quiet);
    expect(applied.map((m) => m.fileName)).toContain("1_init.sql");
    const created = await tables(client);
    expect(created).toEqual(expect.arrayContaining([...TABLES, "migrations"]));
    expect(await enums(client)).toEqual(ENUMS);

    await migrateDown(client, { all: true }, quiet);
    expect(await tables(client)).toEqual([]);
    expect(await enums(client)).toEqual([]);
    const { rows } = await client.query("SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'");
    expect(rows).toEqual([]);

    await migrateUp(client, quiet);
    expect(await tables(client)).toEqual(created);
    expect((await schemaStatus(client)).current).toBe(true);
  });

  it("down reverts only the latest migration", async () => {
    const client = await (await freshDatabase()).client();
    await migrateUp(client, quiet);
    const before = await schemaStatus(client);
    const reverted = await migrateDown(client, { all: false }, quiet);
    expect(reverted.map((m) => m.id)).toEqual([before.version]);
    const after = await schemaStatus(client);
    expect(after.version).toBe(before.applied.at(-2)?.id ?? 0);
    expect(after.pending.map((m) => m.id)).toEqual([before.version]);
  });

  it("re-running up is a no-op", async () => {
    const client = await (await freshDatabase()).client();
    await migrateUp(client, quiet);
    const lines: string[] = [];
    expect(await migrateUp(client, (l) => lines.push(l))).toEqual([]);
    expect(lines).toEqual([]);
    expect((await schemaStatus(client)).current).toBe(true);
  });

  it("two concurrent runners both succeed and the schema is applied once", async () => {
    const db = await freshDatabase();
    const [a, b] = await Promise.all([db.client(), db.client()]);
    const [ranA, ranB] = await Promise.all([migrateUp(a, quiet), migrateUp(b, quiet)]);
    // Exactly one of them applied the migrations; the other found them applied.
    expect([ranA.length, ranB.length].sort()).toEqual([0, (await schemaStatus(a)).applied.length]);
    const { rows } = await a.query("SELECT id, count(*)::int AS n FROM migrations GROUP BY id HAVING count(*) > 1");
    expect(rows).toEqual([]);
  });

  it("refuses to run when an applied migration was modified", async () => {
    const client = await (await freshDatabase()).client();
    const dir = await mkdtemp(join(tmpdir(), "migrations-"));
    try {
      await cp(MIGRATIONS_DIR, dir, { recursive: true });
      await migrateUp(client, quiet, dir);
      await appendFile(join(dir, "1_init.sql"), "\n-- an edit after the fact\n");
      await expect(migrateUp(client, quiet, dir)).rejects.toThrow(MigrationError);
      await expect(migrateUp(client, quiet, dir)).rejects.toThrow(/1_init|altered|hash/i);
      const status = await schemaStatus(client, dir);
      expect(status.current).toBe(false);
      expect(status.modified.map((m) => m.id)).toEqual([1]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
