import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createChangeListener } from "../../src/cache/change-listener.js";
import { createReadCache } from "../../src/cache/read-cache.js";
import { DEFAULT_CACHE_SETTINGS } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { startNoticeDropper, type NoticeDropper } from "../support/pg-notice-dropper.js";

/*
 * A listener is "connected", and the cache serves, only while notices published
 * by another session reach it: a session whose queries work but whose notices
 * never arrive (a pooler in transaction mode, a proxy that swallows them) would
 * otherwise serve stale answers until CACHE_TTL.
 */

let db: TestDatabase;
let dropper: NoticeDropper;
const timing = { heartbeatMs: 50, heartbeatTimeoutMs: 200, backoffMinMs: 50, backoffMaxMs: 200 };

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await dropper?.close();
  await db?.drop();
});

describe("the change listener proves that notices arrive, not only that its connection answers", () => {
  it("through a connection that swallows notices it never reports connected, and a cache on it goes to PostgreSQL every time", async () => {
    dropper = await startNoticeDropper(db.url, true);
    const logs: string[] = [];
    const logger = createLogger("warn", { write: (line: string) => void logs.push(line) });
    const listener = createChangeListener({ connectionUri: dropper.url, logger, ...timing });
    try {
      await expect(listener.whenConnected(1_500)).rejects.toThrow(/not connected/);
      expect(listener.connected).toBe(false);
      expect(logs.join("\n")).toMatch(/did not arrive within 200 ms: LISTEN needs a session of its own/);

      const cache = createReadCache(DEFAULT_CACHE_SETTINGS, listener, createLogger("silent"));
      let loads = 0;
      const load = async () => ({ value: { n: ++loads }, tenantId: undefined });
      await cache.read("s:probe", load, undefined);
      await cache.read("s:probe", load, undefined);
      expect(loads).toBe(2);
      expect(cache.stats.bypassed).toBe(2);

      // Once notices come through, it connects.
      dropper.dropping = false;
      await listener.whenConnected(5_000);
    } finally {
      await listener.close();
      await dropper.close();
    }
  });

  it("when notices stop arriving mid-session it reports disconnected within a heartbeat and its timeout, and reconnects when they flow again", async () => {
    dropper = await startNoticeDropper(db.url, false);
    const listener = createChangeListener({ connectionUri: dropper.url, logger: createLogger("silent"), ...timing });
    const states: string[] = [];
    listener.onStateChange((s) => states.push(s));
    try {
      await listener.whenConnected(5_000);
      const stoppedAt = Date.now();
      dropper.dropping = true;
      await vi.waitFor(() => expect(listener.connected).toBe(false), { timeout: 1_000, interval: 5 });
      expect(Date.now() - stoppedAt).toBeLessThan(timing.heartbeatMs + timing.heartbeatTimeoutMs + 250);
      dropper.dropping = false;
      await listener.whenConnected(5_000);
      expect(states).toEqual(["connected", "disconnected", "connected"]);
    } finally {
      await listener.close();
      await dropper.close();
    }
  });
});
