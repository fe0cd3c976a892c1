import { randomBytes } from "node:crypto";
import pg from "pg";
import { inject } from "vitest";
import { migrateUp } from "../../src/db/migrations.js";
import { createDatabasePool, type DatabasePool, type PoolOptions } from "../../src/db/pool.js";

export type TestDatabase = {
  readonly name: string;
  readonly url: string;
  /** A plain pg client, for tests that look under the service at the schema itself. */
  client(): Promise<pg.Client>;
  pool(options?: PoolOptions): Promise<DatabasePool>;
  drop(): Promise<void>;
};

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/**
 * A fresh database of its own for one test file (migrated unless asked not to),
 * so files run in parallel without sharing rows.
 */
export async function createTestDatabase(options: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const adminUrl = inject("adminDatabaseUrl");
  const name = `test_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = withDatabase(adminUrl, name);
  const clients: pg.Client[] = [];
  const pools: DatabasePool[] = [];
  const client = async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    clients.push(c);
    return c;
  };
  if (options.migrate ?? true) {
    const c = await client();
    await migrateUp(c, () => {});
  }
  return {
    name,
    url,
    client,
    async pool(poolOptions?: PoolOptions) {
      const p = await createDatabasePool(url, poolOptions);
      pools.push(p);
      return p;
    },
    async drop() {
      await Promise.all(clients.map((c) => c.end().catch(() => {})));
      await Promise.all(pools.map((p) => p.end().catch(() => {})));
      const a = new pg.Client({ connectionString: adminUrl });
      await a.connect();
      try {
        await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await a.end();
      }
    },
  };
}
