import { rmSync } from "node:fs";
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { startEmbeddedPostgres } from "../../../src/db/embedded.js";
import { connectWithRetry, listMigrationFiles, migrateUp, MIGRATIONS_DIR } from "../../../src/db/migrations.js";
import { processCpuMicros } from "./processes.js";

/**
 * The bench's PostgreSQL: embedded and started here unless BENCH_DATABASE_URL names
 * a server (an admin URL). Either way every database the bench creates is its own,
 * named bench_<pid>_<name>, and dropped again by `close()`.
 */
export type BenchPostgres = {
  /**
   * A fresh database with every migration applied (or only those up to
   * `throughMigration`, to measure an older schema side by side); its URL.
   */
  createDatabase(name: string, options?: { readonly throughMigration?: number }): Promise<string>;
  dropDatabase(url: string): Promise<void>;
  /**
   * CPU time so far (user + system, µs) of every backend connected to `url`'s
   * database, by pid. Read from /proc, so only for a PostgreSQL on this machine:
   * undefined for one elsewhere.
   */
  backendCpu(url: string): Promise<ReadonlyMap<number, number> | undefined>;
  /** Drops every database still open, stops the embedded server, removes its files. */
  close(): Promise<void>;
};

export async function startBenchPostgres(adminUrl: string | undefined): Promise<BenchPostgres> {
  let stopEmbedded = async () => {};
  if (adminUrl === undefined) {
    const dataDir = await mkdtemp(join(tmpdir(), "tenant-registry-bench-pg-"));
    const embedded = await startEmbeddedPostgres({ dataDir, database: "bench", persistent: false });
    adminUrl = embedded.adminUrl;
    // If the bench dies, the embedded server dies with it (src/db/embedded.ts); its files go too.
    const removeFiles = () => rmSync(dataDir, { recursive: true, force: true });
    process.once("exit", removeFiles);
    stopEmbedded = async () => {
      await embedded.stop();
      process.removeListener("exit", removeFiles);
      await rm(dataDir, { recursive: true, force: true });
    };
  }
  const admin = new URL(adminUrl);
  const created = new Set<string>();

  const adminQuery = async <R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    try {
      return (await client.query<R>(text, values)).rows;
    } finally {
      await client.end();
    }
  };
  const nameOf = (url: string) => decodeURIComponent(new URL(url).pathname.slice(1));

  const self: BenchPostgres = {
    async createDatabase(name, options = {}) {
      const database = `bench_${process.pid}_${name.replace(/[^a-z0-9_]/gi, "_")}`.toLowerCase();
      await adminQuery(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
      await adminQuery(`CREATE DATABASE "${database}"`);
      const url = new URL(admin);
      url.pathname = `/${database}`;
      created.add(url.toString());
      const client = await connectWithRetry(url.toString(), 10_000, () => {});
      const through = options.throughMigration;
      const dir = through === undefined ? MIGRATIONS_DIR : await mkdtemp(join(tmpdir(), "tenant-registry-bench-migrations-"));
      try {
        if (through !== undefined) {
          for (const file of await listMigrationFiles()) {
            if (file.id <= through) await copyFile(join(MIGRATIONS_DIR, file.fileName), join(dir, file.fileName));
          }
        }
        await migrateUp(client, () => {}, dir);
      } finally {
        await client.end();
        if (dir !== MIGRATIONS_DIR) await rm(dir, { recursive: true, force: true });
      }
      return url.toString();
    },
    async dropDatabase(url) {
      // FORCE: a server process killed mid-run may still hold a connection for a moment.
      await adminQuery(`DROP DATABASE IF EXISTS "${nameOf(url).replaceAll('"', '""')}" WITH (FORCE)`);
      created.delete(url);
    },
    async backendCpu(url) {
      const backends = await adminQuery<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = $1", [nameOf(url)]);
      const cpu = new Map<number, number>();
      for (const { pid } of backends) {
        const micros = processCpuMicros(pid);
        if (micros === undefined) return undefined;
        cpu.set(pid, micros);
      }
      return cpu;
    },
    async close() {
      for (const url of [...created]) {
        try {
          await self.dropDatabase(url);
        } catch (error) {
          console.error(`bench: could not drop ${nameOf(url)}: ${(error as Error).message}`);
        }
      }
      await stopEmbedded();
    },
  };
  return self;
}
