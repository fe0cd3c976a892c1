import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createChangeListener, type ChangeListener } from "../../src/cache/change-listener.js";
import { cacheKey, type ChangeNotice } from "../../src/cache/change-notice.js";
import { createReadCache, type Loaded, type ReadCache } from "../../src/cache/read-cache.js";
import { DEFAULT_CACHE_SETTINGS } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";

/*
 * Loads racing change notices, on a cache whose listener is connected to a real
 * PostgreSQL. The loads are the callers' (here: answers the test hands over when
 * it chooses), so that a notice can arrive while one is running.
 */

const TENANT = "0b7e1a52-52c4-4cf5-9c1b-6b9c3a4f4d10";
const SLUG = cacheKey.slug("acme-races");

let db: TestDatabase;
let listener: ChangeListener;
beforeAll(async () => {
  db = await createTestDatabase();
  listener = createChangeListener({ connectionUri: db.url, logger: createLogger("silent") });
  await listener.whenConnected(10_000);
});
afterAll(async () => {
  await listener?.close();
  await db?.drop();
});

/** A load whose answer the test gives when it likes; `calls` counts how often the cache started it. */
function heldLoads() {
  const waiting: ((status: string) => void)[] = [];
  const loads = {
    calls: 0,
    load: () => {
      loads.calls++;
      return new Promise<Loaded<{ status: string }>>((resolve) =>
        waiting.push((status) => resolve({ value: { status }, tenantId: TENANT, dependsOn: [cacheKey.tenant(TENANT)] })),
      );
    },
    /** Answers the oldest load still waiting. */
    answer: (status: string) => waiting.shift()!(status),
  };
  return loads;
}

const notice = (keys: ChangeNotice["keys"]): ChangeNotice => ({ tenantId: TENANT, action: "tenant.suspend", keys, tenantWide: false, at: Date.now() });
const cacheOf = () => createReadCache(DEFAULT_CACHE_SETTINGS, listener, createLogger("silent"));
const read = (cache: ReadCache, loads: ReturnType<typeof heldLoads>, key = SLUG) => cache.read(key, loads.load, undefined);

describe("a reader who comes after a change notice never gets an answer loaded before it", () => {
  it("readers of one key in one epoch share one load", async () => {
    const cache = cacheOf();
    const loads = heldLoads();
    const readers = Array.from({ length: 50 }, () => read(cache, loads));
    loads.answer("active");
    expect((await Promise.all(readers)).every((r) => r?.status === "active")).toBe(true);
    expect(loads.calls).toBe(1);
  });

  it("a reader who joined after a notice naming the tenant (not the slug) loads anew once the load it joined ends", async () => {
    const cache = cacheOf();
    const loads = heldLoads();
    // Read before the suspension committed, answered after its notice.
    const before = read(cache, loads);
    cache.apply(notice([cacheKey.tenant(TENANT)]));
    const after = read(cache, loads);
    loads.answer("active");
    expect((await before)?.status).toBe("active");
    // The answer rests on the tenant, which the notice named: the later reader does not take it.
    await vi.waitFor(() => expect(loads.calls).toBe(2));
    loads.answer("suspended");
    expect((await after)?.status).toBe("suspended");
    // And what is kept is the later load's answer, not the earlier one's.
    expect((await read(cache, loads))?.status).toBe("suspended");
    expect(loads.calls).toBe(2);
  });

  it("a notice about something the answer does not rest on leaves the load shared", async () => {
    const cache = cacheOf();
    const loads = heldLoads();
    const before = read(cache, loads);
    cache.apply(notice([cacheKey.apiKeyPrefix("trk_unrelated")]));
    const after = read(cache, loads);
    loads.answer("active");
    expect([(await before)?.status, (await after)?.status]).toEqual(["active", "active"]);
    expect(loads.calls).toBe(1);
  });
});

describe("what the cache remembers for running loads is bounded by them", () => {
  it("invalidations are forgotten once no load that began before them still runs, and still stop the loads they concern", async () => {
    const cache = cacheOf();
    const oldLoad = heldLoads();
    const first = read(cache, oldLoad, cacheKey.slug("old"));
    for (let i = 0; i < 1_000; i++) cache.apply(notice([cacheKey.apiKeyPrefix(`trk_${i}`)]));
    expect(cache.stats.invalidationsHeld).toBe(1_000);

    // A load that begins now, and outlives the first.
    const laterLoad = heldLoads();
    const later = read(cache, laterLoad);
    oldLoad.answer("active");
    await first;
    expect(cache.stats.invalidationsHeld).toBe(0);

    // While it runs, what is invalidated is remembered, and its answer is not kept.
    cache.apply(notice([cacheKey.tenant(TENANT)]));
    expect(cache.stats.invalidationsHeld).toBe(1);
    laterLoad.answer("active");
    await later;
    expect(cache.stats.invalidationsHeld).toBe(0);
    const again = heldLoads();
    const reread = read(cache, again);
    again.answer("suspended");
    expect((await reread)?.status).toBe("suspended");
    expect(again.calls).toBe(1);
  });
});
