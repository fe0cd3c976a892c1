import { createHash } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { migrate } from "postgres-migrations";
import { PACKAGE_ROOT } from "../paths.js";

/**
 * Schema migrations in the postgres-migrations format (migrations/N_name.sql),
 * plus a dev-only down script per migration (migrations/down/N_name.sql).
 *
 * The SQL ships inside the package and is found relative to this module, so the
 * init container can run `migrate up` from any working directory.
 */
export const MIGRATIONS_DIR = join(PACKAGE_ROOT, "migrations");
// postgres-migrations' own bookkeeping migration; always applied first.
const BOOKKEEPING_ID = 0;

export type MigrationFile = { readonly id: number; readonly name: string; readonly fileName: string };
export type AppliedMigration = { readonly id: number; readonly name: string; readonly hash: string };
export type SchemaStatus = {
  readonly applied: readonly AppliedMigration[];
  readonly pending: readonly MigrationFile[];
  /** Applied migrations whose file changed since (or vanished): never safe to serve. */
  readonly modified: readonly AppliedMigration[];
  /**
   * Applied migrations newer than every file this build has: a newer release's
   * init container ran them while this one still serves. Forward-only
   * migrations keep the schema usable by the release before, so this is safe.
   */
  readonly ahead: readonly AppliedMigration[];
  readonly current: boolean;
  /** Highest applied migration id, 0 for an empty database. */
  readonly version: number;
};

export class MigrationError extends Error {
  override readonly name = "MigrationError";
}

export async function listMigrationFiles(dir = MIGRATIONS_DIR): Promise<MigrationFile[]> {
  const names = await readdir(dir);
  return names
    .map((fileName) => {
      const match = /^(\d+)[-_](.+)\.sql$/.exec(fileName);
      return match ? { id: Number(match[1]), name: match[2]!, fileName } : undefined;
    })
    .filter((m): m is MigrationFile => m !== undefined)
    .sort((a, b) => a.id - b.id);
}

/** The hash postgres-migrations records: sha1 of file name and contents. */
async function hashMigration(file: MigrationFile, dir = MIGRATIONS_DIR): Promise<string> {
  const contents = await readFile(join(dir, file.fileName), "utf8");
  return createHash("sha1").update(file.fileName + contents, "utf8").digest("hex");
}

type Queryable = Pick<pg.Client, "query">;

export async function readApplied(client: Queryable): Promise<AppliedMigration[]> {
  const exists = await client.query<{ exists: boolean }>(
    "SELECT to_regclass('public.migrations') IS NOT NULL AS exists",
  );
  if (!exists.rows[0]?.exists) return [];
  const { rows } = await client.query<AppliedMigration>(
    "SELECT id, name, hash FROM migrations WHERE id > $1 ORDER BY id",
    [BOOKKEEPING_ID],
  );
  return rows;
}

/** Every migration file with the hash postgres-migrations will record for it. */
export type MigrationPlan = readonly (MigrationFile & { readonly hash: string })[];

export async function loadMigrationPlan(dir = MIGRATIONS_DIR): Promise<MigrationPlan> {
  const files = await listMigrationFiles(dir);
  return Promise.all(files.map(async (f) => ({ ...f, hash: await hashMigration(f, dir) })));
}

export function compareSchema(plan: MigrationPlan, applied: readonly AppliedMigration[]): SchemaStatus {
  const appliedIds = new Set(applied.map((m) => m.id));
  const newestKnown = Math.max(0, ...plan.map((f) => f.id));
  const ahead = applied.filter((m) => m.id > newestKnown);
  const modified = applied.filter((m) => m.id <= newestKnown && plan.find((f) => f.id === m.id)?.hash !== m.hash);
  const pending = plan.filter((f) => !appliedIds.has(f.id)).map(({ hash: _, ...file }) => file);
  return {
    applied,
    pending,
    modified,
    ahead,
    current: pending.length === 0 && modified.length === 0,
    version: applied.at(-1)?.id ?? 0,
  };
}

export async function schemaStatus(client: Queryable, dir = MIGRATIONS_DIR): Promise<SchemaStatus> {
  const [plan, applied] = await Promise.all([loadMigrationPlan(dir), readApplied(client)]);
  return compareSchema(plan, applied);
}

/** Why an instance must not serve on this schema, or undefined when it may. */
export function schemaProblem(status: SchemaStatus): string | undefined {
  if (status.modified.length > 0) {
    return `applied migration(s) ${status.modified.map((m) => `${m.id}_${m.name}`).join(", ")} no longer match their files`;
  }
  if (status.pending.length > 0) {
    return `${status.pending.length} pending migration(s): ${status.pending.map((m) => m.fileName).join(", ")}`;
  }
  return undefined;
}

// Neither `migrate up` nor MIGRATE_ON_START can fix an edited migration: both
// stop at the same hash check. Say what does.
const MODIFIED_REMEDY =
  "a migration must not change once applied: restore the file exactly as it was applied (e.g. `git checkout <deployed revision> -- migrations/<file>`) " +
  "and put the change into a new migration (`make migrate-create NAME=...`); `migrate up` and MIGRATE_ON_START=true cannot fix this";

/** What the operator should do about `schemaProblem(status)`. */
export function schemaRemedy(status: SchemaStatus): string | undefined {
  if (status.modified.length > 0) return MODIFIED_REMEDY;
  if (status.pending.length > 0) return "run `tenant-registry migrate up` (the init container) or set MIGRATE_ON_START=true";
  return undefined;
}

export type Log = (line: string) => void;

/**
 * Connects, retrying with capped exponential backoff until `timeoutMs` has passed:
 * in an init container the database may still be starting.
 */
export async function connectWithRetry(databaseUrl: string, timeoutMs: number, log: Log): Promise<pg.Client> {
  const deadline = Date.now() + timeoutMs;
  let delay = 100;
  for (let attempt = 1; ; attempt++) {
    const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5_000 });
    client.on("error", () => {}); // a dropped idle connection surfaces on the next query instead
    try {
      await client.connect();
      await client.query("SELECT 1");
      return client;
    } catch (error) {
      await client.end().catch(() => {});
      const reason = error instanceof Error ? error.message : String(error);
      if (Date.now() + delay > deadline) {
        throw new MigrationError(`database not reachable after ${attempt} attempts in ${timeoutMs} ms: ${reason}`);
      }
      log(`waiting for the database (attempt ${attempt}: ${reason}); retrying in ${delay} ms`);
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 2_000);
    }
  }
}

/**
 * Applies every pending migration. postgres-migrations holds an advisory lock, so
 * replicas running this at once serialise and the schema is applied exactly once;
 * it refuses to run when an applied migration's file has changed.
 */
export async function migrateUp(client: pg.Client, log: Log, dir = MIGRATIONS_DIR): Promise<MigrationFile[]> {
  try {
    const applied = await migrate({ client }, dir);
    const files = await listMigrationFiles(dir);
    const done = applied.filter((m) => m.id !== BOOKKEEPING_ID).map((m) => files.find((f) => f.id === m.id)!);
    for (const m of done) log(`applied ${m.fileName}`);
    return done;
  } catch (error) {
    const message = (error instanceof Error ? error.message : String(error)).replace(/^Migration failed\. Reason: /, "migration failed: ");
    // postgres-migrations: "Hashes don't match for migrations '1_init.sql'. This means that the scripts have changed since it was applied."
    throw new MigrationError(/hashes don't match/i.test(message) ? `${message} Fix: ${MODIFIED_REMEDY}.` : message);
  }
}

const LOCK_KEY = -8525285245963000605n; // the same advisory lock postgres-migrations takes

async function withMigrationLock<T>(client: pg.Client, fn: () => Promise<T>): Promise<T> {
  await client.query("SELECT pg_advisory_lock($1)", [LOCK_KEY.toString()]);
  try {
    return await fn();
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [LOCK_KEY.toString()]);
  }
}

/**
 * Dev-only: reverts the latest applied migration (or every one) with its down
 * script, each in its own transaction. Production is forward-only; the caller
 * enforces that.
 */
export async function migrateDown(
  client: pg.Client,
  options: { all: boolean },
  log: Log,
  dir = MIGRATIONS_DIR,
): Promise<AppliedMigration[]> {
  return withMigrationLock(client, async () => {
    const applied = await readApplied(client);
    const toRevert = options.all ? [...applied].reverse() : applied.slice(-1);
    const downFiles = await listMigrationFiles(join(dir, "down")).catch(() => []);
    for (const m of toRevert) {
      const down = downFiles.find((f) => f.id === m.id);
      if (!down) throw new MigrationError(`no down script for migration ${m.id} (${m.name}) in migrations/down/`);
      const sql = await readFile(join(dir, "down", down.fileName), "utf8");
      await client.query("BEGIN");
      try {
        await client.query(sql);
        await client.query("DELETE FROM migrations WHERE id = $1", [m.id]);
        await client.query("COMMIT");
      } catch (error) {
        await client.query("ROLLBACK");
        throw new MigrationError(`down script for ${m.id} (${m.name}) failed: ${(error as Error).message}`);
      }
      log(`reverted ${m.id}_${m.name}`);
    }
    if (options.all) {
      await client.query("DROP TABLE IF EXISTS migrations");
      log("dropped the migrations table");
    }
    return toRevert;
  });
}

/** Writes the next numbered migration and its down script; returns their paths. */
export async function createMigration(name: string, dir = MIGRATIONS_DIR): Promise<[string, string]> {
  if (!/^[a-z0-9][a-z0-9_]*$/.test(name)) {
    throw new MigrationError(`migration name must be lowercase letters, digits and underscores, got "${name}"`);
  }
  const files = await listMigrationFiles(dir);
  const id = (files.at(-1)?.id ?? 0) + 1;
  const fileName = `${id}_${name}.sql`;
  const up = join(dir, fileName);
  const down = join(dir, "down", fileName);
  await writeFile(up, `-- ${fileName}: describe why this change exists.\n`, { flag: "wx" });
  await writeFile(down, `-- Dev-only rollback of ${fileName}.\n`, { flag: "wx" });
  return [up, down];
}
