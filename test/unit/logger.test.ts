import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.js";

// The service's stdout writes in blocks (createStdoutDestination); here a real
// sonic-boom block writer to a file, without the timer, shows what reaches it when.
function blockFile() {
  const file = join(mkdtempSync(join(tmpdir(), "tenant-registry-log-")), "out.log");
  const destination = pino.destination({ dest: file, sync: true, minLength: 4096 });
  const lines = () => readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  return { destination, lines };
}

describe("log lines through a block writer", () => {
  it("info lines wait for the block; a warning is written at once, with every line before it", () => {
    const { destination, lines } = blockFile();
    const logger = createLogger("info", destination);
    logger.info("first");
    logger.child({ procedure: "x" }).info("second");
    expect(lines()).toEqual([]);
    logger.warn("trouble");
    expect(lines().map((l) => l["msg"])).toEqual(["first", "second", "trouble"]);
    logger.info("after");
    logger.error({ err: new Error("boom") }, "failed");
    expect(lines().map((l) => l["msg"])).toEqual(["first", "second", "trouble", "after", "failed"]);
  });

  it("a full block is written without a warning", () => {
    const { destination, lines } = blockFile();
    const logger = createLogger("info", destination);
    for (let i = 0; i < 100; i++) logger.info({ i }, "access line with some length to it");
    expect(lines().length).toBeGreaterThan(0);
    expect(lines().length).toBeLessThan(100);
  });

  it("every line carries the ISO time of the millisecond it was written in", async () => {
    const { destination, lines } = blockFile();
    const logger = createLogger("info", destination);
    const written: [number, number][] = [];
    for (let i = 0; i < 3; i++) {
      const before = Date.now();
      logger.info({ i }, "line");
      written.push([before, Date.now()]);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    logger.warn("flush");
    const times = lines().slice(0, 3).map((l) => l["time"] as string);
    for (const [i, time] of times.entries()) {
      expect(time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      const [before, after] = written[i]!;
      expect(Date.parse(time)).toBeGreaterThanOrEqual(before);
      expect(Date.parse(time)).toBeLessThanOrEqual(after);
    }
    expect(new Set(times).size).toBe(3);
  });
});
