import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ExportAuditEventsResponseSchema } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { loadBenchConfig } from "../bench/harness/config.js";
import { countEvents } from "../bench/clients/export-readers.js";
import { backendsUsed, medianCell } from "../bench/harness/context.js";
import { Report } from "../bench/harness/report.js";
import { Latencies } from "../bench/harness/stats.js";
import { hotStatements } from "../bench/sections/hot-reads.js";

describe("bench harness pieces (no timings)", () => {
  it("takes percentiles by nearest rank", () => {
    const latencies = new Latencies();
    for (let ms = 100; ms >= 1; ms--) latencies.record(ms);
    expect(latencies.count).toBe(100);
    expect(latencies.summary()).toEqual({ p50: 50, p99: 99, p100: 100 });
    expect(new Latencies().summary().p50).toBeNaN();
  });

  it("stays bounded past its sample limit and still counts every sample", () => {
    const latencies = new Latencies(10);
    for (let i = 0; i < 1_000; i++) latencies.record(5);
    expect(latencies.count).toBe(1_000);
    expect(latencies.summary().p100).toBe(5);
  });

  it("gives baseline (b) the statements an uncached hot read sends, with PostgreSQL placeholders", async () => {
    const statements = await hotStatements("acme", "trk_abcdefabcdef");
    // The names the hot path prepares for a lone key (test/rpc/hot-path-batching reads them in pg_prepared_statements).
    expect(Object.fromEntries(Object.entries(statements).map(([route, s]) => [route, s.name]))).toEqual({
      "/tenant": "tenant_record_by_slug",
      "/entitlement": "tenant_record_by_slug",
      "/api-key": "api_key_record_by_prefix",
    });
    for (const [route, key] of [["/tenant", "acme"], ["/api-key", "trk_abcdefabcdef"]] as const) {
      const statement = statements[route]!;
      expect(statement.text).toMatch(/^\s*SELECT/);
      expect(statement.text).not.toContain("$slonik_");
      expect(statement.text).not.toContain("ANY(");
      expect(new Set(statement.values)).toEqual(new Set([key]));
    }
  });

  it("quick mode has fewer cells and smaller data than the full run", () => {
    const full = loadBenchConfig({}, 2, true);
    const quick = loadBenchConfig({ BENCH_QUICK: "1" }, 2, true);
    expect(full.concurrencies).toEqual([1, 16, 64]);
    expect(quick.concurrencies.length).toBeLessThan(full.concurrencies.length);
    expect(full.largeRows).toBe(1_000_000);
    expect(quick.largeRows).toBe(10_000);
    expect(quick.cellMs).toBeLessThan(full.cellMs);
    expect([full.rounds, quick.rounds, loadBenchConfig({ BENCH_ROUNDS: "5" }, 2, true).rounds]).toEqual([3, 1, 5]);
    expect([full.serverCpu, full.generatorCpu]).toEqual([0, 1]);
    expect(loadBenchConfig({}, 1, true).serverCpu).toBeUndefined();
    expect(() => loadBenchConfig({ BENCH_CELL_MS: "soon" }, 2, true)).toThrow(/BENCH_CELL_MS/);
    // Quick cells have no warm-up of their own (the hot-read servers are warmed on every read first); a cell cannot be empty.
    expect([full.warmupMs, quick.warmupMs, loadBenchConfig({ BENCH_WARMUP_MS: "0" }, 2, true).warmupMs]).toEqual([1_000, 0, 0]);
    expect(() => loadBenchConfig({ BENCH_CELL_MS: "0" }, 2, true)).toThrow(/BENCH_CELL_MS: expected a positive number/);
    expect(() => loadBenchConfig({ BENCH_WARMUP_MS: "-1" }, 2, true)).toThrow(/BENCH_WARMUP_MS: expected a non-negative number/);
    // Every read is warmed on every server before any hot-read cell, longer in the full run.
    expect([full.serverWarmMs, quick.serverWarmMs]).toEqual([5_000, 2_000]);
    expect(loadBenchConfig({ BENCH_SERVER_WARM_MS: "0" }, 2, true).serverWarmMs).toBe(0);
  });

  it("measures the concurrencies BENCH_CONCURRENCIES names, and refuses what is not one", () => {
    expect(loadBenchConfig({ BENCH_CONCURRENCIES: "1, 64" }, 2, true).concurrencies).toEqual([1, 64]);
    expect(loadBenchConfig({ BENCH_QUICK: "1", BENCH_CONCURRENCIES: "1" }, 2, true).concurrencies).toEqual([1]);
    expect(loadBenchConfig({ BENCH_CONCURRENCIES: "16, 1,16," }, 2, true).concurrencies).toEqual([16, 1]);
    for (const bad of ["0", "16,x", "1.5", "2000", ",", " ", "0x10", "1e1", "+16"]) {
      expect(() => loadBenchConfig({ BENCH_CONCURRENCIES: bad }, 2, true)).toThrow(/BENCH_CONCURRENCIES: expected comma-separated whole numbers/);
    }
  });

  it("reports each figure's median over rounds, and sums the errors", () => {
    const cell = (rps: number, cpu: number | undefined, failed: number) => ({
      rps, p50: rps / 100, p99: rps / 10, cpuPerCall: cpu, pgCpuPerCall: cpu && cpu / 2, rssBytes: 1e8, ok: 10, failed,
    });
    expect(medianCell([cell(300, 90, 0), cell(100, undefined, 1), cell(200, 70, 2)])).toEqual({
      rps: 200, p50: 2, p99: 20, cpuPerCall: 80, pgCpuPerCall: 40, rssBytes: 1e8, ok: 30, failed: 3,
    });
  });

  it("counts PostgreSQL's CPU over the backends of a cell: those that stayed, and those that connected during it", () => {
    const before = new Map([[1, 1_000], [2, 5_000], [3, 700]]);
    const after = new Map([[1, 1_600], [2, 5_000], [4, 250]]);
    // 3 went away (its share is lost, as /proc no longer has it); 4 is new.
    expect(backendsUsed(before, after)).toBe(600 + 0 + 250);
  });

  it("counts an export message's events without decoding them", () => {
    const message = create(ExportAuditEventsResponseSchema, {
      events: [{ id: "a", fields: { n: 1 } }, { id: "b", action: "x".repeat(300) }, {}],
    });
    expect(countEvents(Buffer.from(toBinary(ExportAuditEventsResponseSchema, message)))).toBe(3);
    expect(countEvents(Buffer.alloc(0))).toBe(0);
  });

  it("prints tables aligned and says n/a, never a number, for a missing figure", () => {
    const lines: string[] = [];
    const report = new Report((line) => lines.push(line));
    report.section("s");
    report.table("t", ["name", "req/s"], [["a", "1,000"], ["bb", undefined]]);
    report.notMeasured("x", "feature absent");
    expect(lines).toContain("    a     1,000");
    expect(lines).toContain("    bb      n/a");
    expect(lines).toContain("  not measured: x (feature absent)");
  });
});
