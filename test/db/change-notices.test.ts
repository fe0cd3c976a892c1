import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createChangeListener, type ChangeListener } from "../../src/cache/change-listener.js";
import { publishChangeNotice, type ChangeNotice } from "../../src/cache/change-notice.js";
import type { DatabasePool } from "../../src/db/pool.js";
import { createLogger } from "../../src/logger.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";

let db: TestDatabase;
let pool: DatabasePool;
let listener: ChangeListener;
const received: (ChangeNotice | undefined)[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  pool = await db.pool();
  listener = createChangeListener({ connectionUri: db.url, logger: createLogger("silent") });
  listener.subscribe((n) => received.push(n));
  await listener.whenConnected(10_000);
});

afterAll(async () => {
  await listener?.close();
  await db?.drop();
});

const notice = (tenantId: string, keys: string[]): ChangeNotice => ({ tenantId, action: "test.change", keys, tenantWide: false, at: Date.now() });

class Rollback extends Error {}

describe("change notices travel on commit only", () => {
  it("a committed transaction's notice reaches the listener with its tenant, keys and publish time", async () => {
    const sent = notice("6f1c2b1e-0000-4000-8000-000000000001", ["t:6f1c2b1e-0000-4000-8000-000000000001", "s:acme"]);
    await pool.transaction((tx) => publishChangeNotice(tx, sent));
    await vi.waitFor(() => expect(received).toContainEqual(sent), { timeout: 2_000, interval: 5 });
  });

  it("a rolled-back transaction's notice never arrives", async () => {
    const lost = notice("6f1c2b1e-0000-4000-8000-000000000002", ["s:rolled-back"]);
    await expect(
      pool.transaction(async (tx) => {
        await publishChangeNotice(tx, lost);
        throw new Rollback();
      }),
    ).rejects.toBeInstanceOf(Rollback);
    // A later commit is delivered after anything the rolled-back one could have sent.
    const marker = notice("6f1c2b1e-0000-4000-8000-000000000003", ["s:marker"]);
    await pool.transaction((tx) => publishChangeNotice(tx, marker));
    await vi.waitFor(() => expect(received).toContainEqual(marker), { timeout: 2_000, interval: 5 });
    expect(received.filter((n) => n?.tenantId === lost.tenantId)).toEqual([]);
  });

  it("a change naming more keys than one payload holds arrives as several notices naming all of them", async () => {
    const tenantId = "6f1c2b1e-0000-4000-8000-000000000004";
    const keys = Array.from({ length: 600 }, (_, i) => `k:trk_${String(i).padStart(12, "0")}_padding`);
    await pool.transaction((tx) => publishChangeNotice(tx, notice(tenantId, keys)));
    await vi.waitFor(
      () => expect(received.filter((n) => n?.tenantId === tenantId).flatMap((n) => n!.keys).sort()).toEqual([...keys].sort()),
      { timeout: 2_000, interval: 5 },
    );
    expect(received.filter((n) => n?.tenantId === tenantId).length).toBeGreaterThan(1);
  });
});
