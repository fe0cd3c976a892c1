import type { BenchConfig } from "./config.js";
import type { LoadResult } from "./load.js";
import type { BenchPostgres } from "./postgres.js";
import type { BenchProcess, ProcessRegistry } from "./processes.js";
import type { Report } from "./report.js";
import { median } from "./stats.js";

/** What every section gets: the knobs, the report, the database server and the process registry. */
export type BenchContext = {
  readonly config: BenchConfig;
  readonly report: Report;
  readonly postgres: BenchPostgres;
  readonly processes: ProcessRegistry;
  /** An Ed25519 key (PKCS#8 PEM) for the servers' audit checkpoints, in a temp dir the runner removes. */
  readonly signingKeyFile: string;
};

/**
 * One section of `make bench`: a module under test/bench/sections/ registered in
 * sections/index.ts. It starts what it needs through the context (so the runner can
 * stop it all), bounds every loop in count and time, and reports through `report`,
 * saying `notMeasured` for anything it could not measure.
 */
export type BenchSection = {
  readonly id: string;
  readonly title: string;
  run(ctx: BenchContext): Promise<void>;
};

export type AppOptions = {
  readonly name: string;
  readonly databaseUrl: string;
  /** CACHE=on|off for the service's in-process cache. */
  readonly cache: boolean;
  readonly env?: Readonly<Record<string, string>>;
};

/**
 * The service itself, as production runs it (dist/bin/main.js serve), on the server
 * CPU. Auth is off (AUTH_MODE=none, dev) so that a cell measures the call path, not a
 * token issuer; logging stays at info, as in production, into /dev/null.
 */
export function startApp(ctx: BenchContext, options: AppOptions): Promise<BenchProcess> {
  return ctx.processes.start({
    name: options.name,
    script: "dist/bin/main.js",
    args: ["serve"],
    cpu: ctx.config.serverCpu,
    env: {
      APP_ENV: "dev",
      AUTH_MODE: "none",
      DATABASE_URL: options.databaseUrl,
      MIGRATE_ON_START: "false",
      LOG_LEVEL: "info",
      SHUTDOWN_GRACE_PERIOD: "1",
      CACHE: options.cache ? "on" : "off",
      AUDIT_SIGNING_KEY_FILE: ctx.signingKeyFile,
      ...options.env,
      // Profiling only (see run.ts); the shipped flags come from the script's first line.
      ...(process.env["BENCH_SERVER_NODE_OPTIONS"] ? { NODE_OPTIONS: process.env["BENCH_SERVER_NODE_OPTIONS"] } : {}),
    },
  });
}

export type CellResult = {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  /** Server CPU (user + system, all threads) per successful call, µs. */
  readonly cpuPerCall: number | undefined;
  /** PostgreSQL's CPU (every backend of the cell's database) per successful call, µs; undefined without a database or /proc. */
  readonly pgCpuPerCall: number | undefined;
  readonly rssBytes: number | undefined;
  readonly ok: number;
  readonly failed: number;
};

/** Each figure's median over rounds of the same cell (every field on its own). */
export function medianCell(rounds: readonly CellResult[]): CellResult {
  const of = (pick: (c: CellResult) => number | undefined) => {
    const values = rounds.map(pick).filter((v): v is number => v !== undefined);
    return values.length === 0 ? undefined : median(values);
  };
  return {
    rps: of((c) => c.rps)!,
    p50: of((c) => c.p50)!,
    p99: of((c) => c.p99)!,
    cpuPerCall: of((c) => c.cpuPerCall),
    pgCpuPerCall: of((c) => c.pgCpuPerCall),
    rssBytes: of((c) => c.rssBytes),
    ok: rounds.reduce((n, c) => n + c.ok, 0),
    failed: rounds.reduce((n, c) => n + c.failed, 0),
  };
}

/** What PostgreSQL's backends of one database have used so far (BenchPostgres.backendCpu, bound to it). */
export type DatabaseCpu = () => Promise<ReadonlyMap<number, number> | undefined>;

/**
 * Reads the backends' CPU now; the function it gives reads it again and answers the µs used
 * in between (backendsUsed), or undefined when /proc could not be read at either reading.
 */
export async function databaseCpuSince(database: DatabaseCpu): Promise<() => Promise<number | undefined>> {
  const before = await database();
  return async () => {
    const after = await database();
    return before === undefined || after === undefined ? undefined : backendsUsed(before, after);
  };
}

/**
 * A warm-up run that is thrown away, then the measured run with the server's CPU
 * read around it, and PostgreSQL's for the database the server uses when given.
 */
export async function measureCell(
  server: BenchProcess,
  load: (durationMs: number) => Promise<LoadResult>,
  config: BenchConfig,
  database?: DatabaseCpu,
): Promise<CellResult> {
  if (config.warmupMs > 0) await load(config.warmupMs);
  const pgUsed = database && (await databaseCpuSince(database));
  const cpuBefore = server.cpuMicros();
  const result = await load(config.cellMs);
  const cpuAfter = server.cpuMicros();
  const pgMicros = await pgUsed?.();
  const rssBytes = server.rssBytes();
  const { p50, p99 } = result.latencies.summary();
  return {
    rps: result.ok / result.seconds,
    p50,
    p99,
    cpuPerCall: cpuBefore === undefined || cpuAfter === undefined || result.ok === 0 ? undefined : (cpuAfter - cpuBefore) / result.ok,
    pgCpuPerCall: pgMicros === undefined || result.ok === 0 ? undefined : pgMicros / result.ok,
    rssBytes,
    ok: result.ok,
    failed: result.failed,
  };
}

/** CPU the backends used between two readings; a backend that connected in between counts from its start. */
export function backendsUsed(before: ReadonlyMap<number, number>, after: ReadonlyMap<number, number>): number {
  let used = 0;
  for (const [pid, micros] of after) used += micros - (before.get(pid) ?? 0);
  return used;
}
