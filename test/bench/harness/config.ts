/**
 * The benchmark's knobs, read once from the environment by run.ts and passed to
 * every section. BENCH_QUICK=1 trades precision for a run under two minutes.
 */
export type BenchConfig = {
  readonly quick: boolean;
  /** An existing PostgreSQL (admin URL: the bench creates and drops its own databases there). */
  readonly databaseUrl: string | undefined;
  /** Only these sections (BENCH_SECTIONS=hot-reads,cold-start), in registry order. */
  readonly sections: readonly string[] | undefined;
  /**
   * Load per measured cell, after `warmupMs` of the same load that is not counted (0: none;
   * the hot-read servers are warmed on every read before any cell either way). autocannon and h2load
   * count whole seconds: an HTTP/1.1 or h2load cell shorter than a second still loads for one.
   */
  readonly cellMs: number;
  readonly warmupMs: number;
  /**
   * Hot-read cells are measured this many times, every server and baseline once per round
   * in turn, and reported as medians: these machines drift by ±20 % over minutes, and a
   * baseline measured once at the start is not the baseline the last row ran against.
   */
  readonly rounds: number;
  /**
   * Before any hot-read cell, every server answers each read on every protocol for this
   * long (read after read, all servers at once, not counted; 0: none). V8 compiles a call
   * path over its first tens of thousands of calls, and each read has paths of its own: a
   * fresh server at c=1 without the cache still spent 38 µs a call on V8's compiler threads
   * after 5 s of it alone, 8 µs after 30 s.
   */
  readonly serverWarmMs: number;
  /** BENCH_CONCURRENCIES=1,16 measures only these (each once, in that order). */
  readonly concurrencies: readonly number[];
  /** Rows for the "cost grows with data" sections: the small and the large data set (BENCH_ROWS sets the large). */
  readonly smallRows: number;
  readonly largeRows: number;
  /** Revocations timed across two replicas. */
  readonly revocations: number;
  /** CPU for servers under test and CPU for the generator, when the machine has two and taskset exists. */
  readonly serverCpu: number | undefined;
  readonly generatorCpu: number | undefined;
  /** Use h2load for gRPC when it is installed (BENCH_H2LOAD=off forces the connect-node generator). */
  readonly h2load: boolean;
};

export function loadBenchConfig(env: Record<string, string | undefined>, cpus: number, hasTaskset: boolean): BenchConfig {
  const quick = env["BENCH_QUICK"] === "1" || env["BENCH_QUICK"] === "true";
  const pinned = hasTaskset && cpus >= 2;
  const number = (name: string, fallback: number, { zero = false } = {}) => {
    const raw = env[name];
    if (raw === undefined || raw === "") return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < 0 || (value === 0 && !zero)) {
      throw new Error(`${name}: expected a ${zero ? "non-negative" : "positive"} number, got "${raw}"`);
    }
    return value;
  };
  return {
    quick,
    databaseUrl: env["BENCH_DATABASE_URL"] || undefined,
    sections: env["BENCH_SECTIONS"] ? env["BENCH_SECTIONS"].split(",").map((s) => s.trim()).filter(Boolean) : undefined,
    cellMs: number("BENCH_CELL_MS", quick ? 1_000 : 3_000),
    // Quick: no warm-up per cell (at autocannon's whole seconds it doubled the run), only the servers' before the first cell.
    warmupMs: number("BENCH_WARMUP_MS", quick ? 0 : 1_000, { zero: true }),
    rounds: Math.round(number("BENCH_ROUNDS", quick ? 1 : 3)),
    serverWarmMs: number("BENCH_SERVER_WARM_MS", quick ? 2_000 : 5_000, { zero: true }),
    concurrencies: env["BENCH_CONCURRENCIES"] ? concurrencyList(env["BENCH_CONCURRENCIES"]) : quick ? [16] : [1, 16, 64],
    smallRows: Math.min(number("BENCH_ROWS", 10_000), 10_000),
    largeRows: number("BENCH_ROWS", quick ? 10_000 : 1_000_000),
    revocations: number("BENCH_REVOCATIONS", quick ? 20 : 200),
    serverCpu: pinned ? 0 : undefined,
    generatorCpu: pinned ? 1 : undefined,
    h2load: env["BENCH_H2LOAD"] !== "off",
  };
}

function concurrencyList(raw: string): number[] {
  const parts = raw.split(",").map((part) => part.trim()).filter(Boolean);
  if (parts.length === 0 || parts.some((part) => !/^\d{1,4}$/.test(part) || Number(part) < 1 || Number(part) > 1024)) {
    throw new Error(`BENCH_CONCURRENCIES: expected comma-separated whole numbers from 1 to 1024, got "${raw}"`);
  }
  // Each once, in the order given: a repeat would measure and print the same tables again.
  return [...new Set(parts.map(Number))];
}
