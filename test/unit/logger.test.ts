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

describe("errors in log lines", () => {
  it("carry their type, message, code, cause and the functions they came through, never a stack, a path, SQL or the values sent", () => {
    const logged: string[] = [];
    const logger = createLogger("debug", { write: (line: string) => void logged.push(line) });
    // As pg and Slonik build them: the driver's error (with the server's source position and
    // the statement it ran) as the cause of one carrying the query and its values.
    const driver = Object.assign(new Error("duplicate key value violates unique constraint \"tenants_slug_key\""), {
      code: "23505",
      severity: "ERROR",
      constraint: "tenants_slug_key",
      detail: "Key (slug)=(secret-customer) already exists.",
      where: "SQL statement \"INSERT INTO tenants (slug) VALUES ($1)\"",
      internalQuery: "SELECT * FROM tenants",
      file: "nbtinsert.c",
      line: "666",
      routine: "_bt_check_unique",
    });
    function insertTenant() {
      return Object.assign(new Error("Query violates a unique integrity constraint.", { cause: driver }), {
        sql: "INSERT INTO tenants (slug) VALUES ($1)",
        values: ["secret-customer"],
      });
    }
    logger.error({ err: insertTenant() }, "unexpected error");

    const text = logged.join("");
    const { err } = JSON.parse(text) as { err: Record<string, unknown> };
    expect(err).toMatchObject({
      type: "Error",
      message: "Query violates a unique integrity constraint.",
      cause: { type: "Error", code: "23505", severity: "ERROR", constraint: "tenants_slug_key" },
    });
    expect(err["frames"]).toMatch(/^insertTenant < /);
    for (const leak of ["INSERT", "SELECT", "secret-customer", "nbtinsert", "_bt_check_unique", "file://", "/test/unit/", "logger.test", "    at "]) {
      expect(text, leak).not.toContain(leak);
    }
  });

  it("a value that is not an Error is logged as it is when it is a primitive, and by its kind when it is an object", () => {
    const logged: string[] = [];
    const logger = createLogger("debug", { write: (line: string) => void logged.push(line) });
    logger.warn({ err: "connection ended" }, "a");
    logger.warn({ err: { sql: "SELECT 1", password: "hunter2" } }, "b");
    expect(logged.map((l) => (JSON.parse(l) as { err: unknown }).err)).toEqual(["connection ended", { type: "non-error object" }]);
  });
});
