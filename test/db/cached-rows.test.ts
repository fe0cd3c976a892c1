import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createChangeListener } from "../../src/cache/change-listener.js";
import { createHotReads } from "../../src/cache/hot-reads.js";
import { createReadCache } from "../../src/cache/read-cache.js";
import { DEFAULT_CACHE_SETTINGS } from "../../src/config.js";
import type { DatabasePool } from "../../src/db/pool.js";
import { createLogger } from "../../src/logger.js";
import { findApiKeysByPrefixes } from "../../src/db/queries/api-keys.js";
import { generateApiKeyToken, tokenMatchesHash } from "../../src/domain/api-key.js";
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
  it("a key's current and previous hashes are kept as base64 strings, not buffers (a slice of Node's pool pins its slab)", async () => {
    const client = await db.client();
    const tenant = await insertTenant(client);
    const current = generateApiKeyToken();
    const previous = generateApiKeyToken();
    await client.query(
      `INSERT INTO api_keys (tenant_id, name, prefix, secret_hash, previous_prefix, previous_secret_hash, previous_expires_at)
       VALUES ($1, 'pool', $2, $3, $4, $5, now() + interval '1 hour')`,
      [tenant.id, current.prefix, current.hash, previous.prefix, previous.hash],
    );
    const [row] = await findApiKeysByPrefixes(pool, [current.prefix]);
    expect([row!.key.secretHash, row!.key.previousSecretHash]).toEqual([current.hash.toString("base64"), previous.hash.toString("base64")]);
    expect(tokenMatchesHash(current.token, row!.key.secretHash)).toBe(true);
    expect(tokenMatchesHash(previous.token, row!.key.previousSecretHash!)).toBe(true);
    expect(tokenMatchesHash(previous.token, row!.key.secretHash)).toBe(false);
  });

  it("the keys of one tenant share its dependency list, and keys without scopes one empty list", async () => {
    const client = await db.client();
    const tenant = await insertTenant(client);
    const tokens = [generateApiKeyToken(), generateApiKeyToken()];
    for (const t of tokens) {
      await client.query(`INSERT INTO api_keys (tenant_id, name, prefix, secret_hash) VALUES ($1, 'deps', $2, $3)`, [tenant.id, t.prefix, t.hash]);
    }
    const logger = createLogger("silent");
    const listener = createChangeListener({ connectionUri: db.url, logger });
    try {
      await listener.whenConnected(10_000);
      const seen: unknown[] = [];
      const cache = createReadCache(DEFAULT_CACHE_SETTINGS, listener, logger);
      const watching: typeof cache = {
        ...cache,
        read: (key, load, arg, note) => cache.read(key, async (a, put) => {
          const loaded = await load(a, put);
          if (key.startsWith("k:")) seen.push(loaded.dependsOn);
          return loaded;
        }, arg, note),
      };
      const hot = createHotReads(pool, watching);
      const [a, b] = [(await hot.apiKeysByPrefix(tokens[0]!.prefix))[0]!, (await hot.apiKeysByPrefix(tokens[1]!.prefix))[0]!];
      expect(seen).toHaveLength(2);
      expect(seen[0]).toBe(seen[1]);
      expect(a.key.scopes).toBe(b.key.scopes);
    } finally {
      await listener.close();
    }
  });
});

describe("the cache keeps one tenant for all the answers that embed it", () => {
  it("the keys of one tenant, its slug and its id share one cached tenant; a tenant-wide notice replaces it for all", async () => {
    const client = await db.client();
    const tenant = await insertTenant(client);
    const tokens = [generateApiKeyToken(), generateApiKeyToken(), generateApiKeyToken()];
    for (const t of tokens) {
      await client.query(`INSERT INTO api_keys (tenant_id, name, prefix, secret_hash) VALUES ($1, 'share', $2, $3)`, [tenant.id, t.prefix, t.hash]);
    }
    const logger = createLogger("silent");
    const listener = createChangeListener({ connectionUri: db.url, logger });
    try {
      await listener.whenConnected(10_000);
      const cache = createReadCache(DEFAULT_CACHE_SETTINGS, listener, logger);
      const hot = createHotReads(pool, cache);
      const embedded = [];
      for (const t of tokens) embedded.push((await hot.apiKeysByPrefix(t.prefix))[0]!.tenant);
      embedded.push((await hot.tenantBySlug(tenant.slug))!, (await hot.tenantById(tenant.id))!);
      expect(new Set(embedded).size).toBe(1);

      await client.query(`UPDATE tenants SET name = 'Renamed' WHERE id = $1`, [tenant.id]);
      cache.apply({ tenantId: tenant.id, action: "tenant.update", keys: [], tenantWide: true, at: Date.now() });
      const after = [(await hot.apiKeysByPrefix(tokens[0]!.prefix))[0]!.tenant, (await hot.tenantById(tenant.id))!];
      expect(after.map((t) => t.record.name)).toEqual(["Renamed", "Renamed"]);
      expect(after[0]).toBe(after[1]);
    } finally {
      await listener.close();
    }
  });
});
