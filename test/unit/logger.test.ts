import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
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
});

describe("log line timestamps", () => {
  afterEach(() => vi.useRealTimers());

  it("each line has pino's ISO time of the millisecond it was written in, the clock stepping back included", () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const { destination, lines } = blockFile();
    const logger = createLogger("info", destination);
    const expected: string[] = [];
    const t = Date.parse("2026-12-07T17:00:00.000Z");
    for (const at of [t, t, t + 1, t - 5]) {
      vi.setSystemTime(at);
      logger.info("line");
      // pino's own field, e.g. ,"time":"2026-12-07T17:00:00.000Z"
      expected.push(JSON.parse(`{${pino.stdTimeFunctions.isoTime().slice(1)}}`).time as string);
    }
    logger.warn("flush");
    expect(lines().slice(0, 4).map((l) => l["time"])).toEqual(expected);
    expect(expected).toEqual(["2026-12-07T17:00:00.000Z", "2026-12-07T17:00:00.000Z", "2026-12-07T17:00:00.001Z", "2026-12-07T16:59:59.995Z"]);
  });
});
