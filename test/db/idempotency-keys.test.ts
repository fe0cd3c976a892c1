import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DatabasePool } from "../../src/db/pool.js";
import { claimIdempotencyKey, deleteIdempotencyKeysBefore } from "../../src/db/queries/idempotency.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";

let db: TestDatabase;
let pool: DatabasePool;
beforeAll(async () => {
  db = await createTestDatabase();
  pool = await db.pool();
});
afterAll(async () => db?.drop());

const claim = (key: string, resourceId = randomUUID(), requestHash = Buffer.alloc(32, 1)) =>
  pool.transaction((tx) => claimIdempotencyKey(tx, { scope: "test", key, requestHash, resourceId }));

describe("idempotency keys", () => {
  it("the first claim wins; a retry finds it and whether it is the same request", async () => {
    const first = randomUUID();
    expect(await claim("k1", first)).toEqual({ claimed: true });
    expect(await claim("k1")).toEqual({ claimed: false, resourceId: first, sameRequest: true });
    expect(await claim("k1", randomUUID(), Buffer.alloc(32, 2))).toMatchObject({ claimed: false, sameRequest: false });
  });

  it("are forgotten after their retention, so the table does not grow without bound", async () => {
    await claim("old");
    await claim("new");
    const client = await db.client();
    await client.query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old'");
    expect(await deleteIdempotencyKeysBefore(pool, new Date(Date.now() - 24 * 3600 * 1000))).toBe(1);
    expect(await claim("old")).toEqual({ claimed: true }); // a retry after the window is a new request
    expect(await claim("new")).toMatchObject({ claimed: false });
  });
});
