import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DatabasePool } from "../../src/db/pool.js";
import { findApiKeysByPrefix } from "../../src/db/queries/api-keys.js";
import { generateApiKeyToken } from "../../src/domain/api-key.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { insertTenant } from "../support/fixtures.js";

// What the hot-read cache keeps lives as long as the process; a row that
// drags more memory along than its own bytes multiplies by every entry.

let db: TestDatabase;
let pool: DatabasePool;
beforeAll(async () => {
  db = await createTestDatabase();
  pool = await db.pool();
});
afterAll(async () => db?.drop());

describe("verification rows as the cache keeps them", () => {
  it("a key's current and previous hashes own their bytes, not a slice of Node's shared buffer pool", async () => {
    const client = await db.client();
    const tenant = await insertTenant(client);
    const current = generateApiKeyToken();
    const previous = generateApiKeyToken();
    await client.query(
      `INSERT INTO api_keys (tenant_id, name, prefix, secret_hash, previous_prefix, previous_secret_hash, previous_expires_at)
       VALUES ($1, 'pool', $2, $3, $4, $5, now() + interval '1 hour')`,
      [tenant.id, current.prefix, current.hash, previous.prefix, previous.hash],
    );
    const [row] = await findApiKeysByPrefix(pool, current.prefix);
    const hashes = [row!.key.secretHash, row!.key.previousSecretHash!];
    expect(hashes.map((h) => h.length)).toEqual([current.hash.length, previous.hash.length]);
    // A pooled slice would report the 8 KB slab it pins as its buffer.
    expect(hashes.map((h) => h.buffer.byteLength)).toEqual([current.hash.length, previous.hash.length]);
    expect(hashes[0]!.equals(current.hash)).toBe(true);
  });
});
