import { randomBytes, randomUUID } from "node:crypto";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { DatabasePool } from "../../src/db/pool.js";
import { createLogger } from "../../src/logger.js";
import { startMaintenance } from "../../src/service/maintenance.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";

let db: TestDatabase;
let pool: DatabasePool;
let sql: pg.Client;
const controller = new AbortController();

beforeAll(async () => {
  db = await createTestDatabase();
  pool = await db.pool();
  sql = await db.client();
});
afterAll(async () => {
  controller.abort();
  await db?.drop();
});

/** An idempotency key row created `age` ago (a PostgreSQL interval), by SQL. */
async function insertKey(age: string): Promise<string> {
  const key = `k-${randomBytes(6).toString("hex")}`;
  await sql.query(
    "INSERT INTO idempotency_keys (scope, key, request_hash, resource_id, created_at) VALUES ('test', $1, $2, $3, now() - $4::interval)",
    [key, randomBytes(32), randomUUID(), age],
  );
  return key;
}

async function exists(key: string): Promise<boolean> {
  return ((await sql.query("SELECT 1 FROM idempotency_keys WHERE key = $1", [key])).rowCount ?? 0) > 0;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("idempotency keys are forgotten after 24 hours by the maintenance job", () => {
  it("the running job deletes keys older than 24 hours, keeps younger ones, and stops on shutdown", async () => {
    const old = await insertKey("25 hours");
    const almostDay = await insertKey("23 hours 59 minutes"); // inside the window: a retry would still replay
    const fresh = await insertKey("0 seconds");
    // Nothing deletes them but the job started below.
    for (const key of [old, almostDay, fresh]) expect(await exists(key)).toBe(true);

    const intervalMs = 20;
    startMaintenance(
      { db: pool, clock: () => new Date(), logger: createLogger("silent"), appEnv: "dev", shutdownSignal: controller.signal },
      intervalMs,
    );

    await vi.waitFor(async () => expect(await exists(old)).toBe(false), { timeout: 5_000, interval: 10 });
    expect(await exists(almostDay)).toBe(true);
    expect(await exists(fresh)).toBe(true);

    // Still running: a key that ages past the window later goes too.
    const later = await insertKey("24 hours 1 minute");
    await vi.waitFor(async () => expect(await exists(later)).toBe(false), { timeout: 5_000, interval: 10 });
    expect(await exists(almostDay)).toBe(true);

    controller.abort();
    await sleep(2 * intervalMs); // lets a run that had already started finish
    const afterShutdown = await insertKey("25 hours");
    await sleep(200); // ten intervals
    expect(await exists(afterShutdown)).toBe(true);
  });
});
