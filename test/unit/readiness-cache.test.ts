import { describe, expect, it } from "vitest";
import { cachedReadiness } from "../../src/transport/health.js";

describe("readiness seen by open health endpoints", () => {
  it("asks the database at most once per interval, however many probes and watchers ask", async () => {
    let checks = 0;
    let now = 0;
    const readiness = cachedReadiness({ check: async () => ({ ready: ++checks > 0 }) }, 1_000, () => now);
    await Promise.all(Array.from({ length: 100 }, () => readiness.check()));
    expect(checks).toBe(1);
    now = 999;
    await readiness.check();
    expect(checks).toBe(1);
    now = 1_000;
    await readiness.check();
    expect(checks).toBe(2);
  });
});
