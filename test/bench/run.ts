/**
 * make bench: the service under load next to baselines measured in the same run,
 * section by section (test/bench/sections/). Figures print as they are taken and
 * are saved as JSON (BENCH_OUTPUT, default .bench/latest.json).
 *
 *   BENCH_QUICK=1           fewer cells, shorter runs, 10k rows instead of 1M (< 2 min)
 *   BENCH_SECTIONS=a,b      only these sections (ids as listed at the start)
 *   BENCH_DATABASE_URL=...  an existing PostgreSQL (admin URL) instead of the embedded one
 *   BENCH_SERVER_NODE_OPTIONS="--cpu-prof --cpu-prof-dir=DIR"
 *                           NODE_OPTIONS for the servers the bench starts, to profile them; they
 *                           already run with the flags of src/main.ts's first line, as shipped
 */
import { generateKeyPairSync } from "node:crypto";
import { rmSync } from "node:fs";
import { mkdtemp, writeFile } from "node:fs/promises";
import { availableParallelism, cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../../src/paths.js";
import { loadBenchConfig } from "./harness/config.js";
import type { BenchContext } from "./harness/context.js";
import { startBenchPostgres, type BenchPostgres } from "./harness/postgres.js";
import { hasCommand, pinSelf, ProcessRegistry } from "./harness/processes.js";
import { Report } from "./harness/report.js";
import { SECTIONS } from "./sections/index.js";

async function main(): Promise<number> {
  const config = loadBenchConfig(process.env, availableParallelism(), hasCommand("taskset"));
  const unknown = config.sections?.filter((id) => !SECTIONS.some((s) => s.id === id)) ?? [];
  if (unknown.length > 0) {
    console.error(`bench: unknown section(s) ${unknown.join(", ")}; known: ${SECTIONS.map((s) => s.id).join(", ")}`);
    return 2;
  }
  const machine = `${cpus()[0]?.model ?? "unknown CPU"} × ${availableParallelism()}, load average ${loadavg().map((l) => l.toFixed(1)).join(" ")} at start`;
  if (config.generatorCpu !== undefined) pinSelf(config.generatorCpu);
  const report = new Report();
  const processes = new ProcessRegistry();
  const started = Date.now();
  let postgres: BenchPostgres | undefined;
  // Ctrl-C: stop every process at once, then drop the databases and stop PostgreSQL (bounded).
  const onSignal = () => {
    processes.killAllNow();
    setTimeout(() => process.exit(130), 15_000).unref();
    void (postgres?.close() ?? Promise.resolve()).catch(() => {}).finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  process.once("exit", () => processes.killAllNow());
  console.log(`make bench${config.quick ? " (BENCH_QUICK)" : ""}: ${machine}`);
  console.log(`sections: ${SECTIONS.map((s) => s.id).join(", ")}`);
  const keyDir = await mkdtemp(join(tmpdir(), "tenant-registry-bench-key-"));
  process.once("exit", () => rmSync(keyDir, { recursive: true, force: true }));
  const signingKeyFile = join(keyDir, "audit-signing-key.pem");
  await writeFile(signingKeyFile, generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600 });
  postgres = await startBenchPostgres(config.databaseUrl);
  const ctx: BenchContext = { config, report, postgres, processes, signingKeyFile };
  let failed = 0;
  try {
    for (const section of SECTIONS) {
      if (config.sections && !config.sections.includes(section.id)) continue;
      report.section(`${section.title} [${section.id}]`);
      const t0 = Date.now();
      try {
        await section.run(ctx);
      } catch (error) {
        failed++;
        report.notMeasured(`the rest of ${section.id}`, `failed: ${(error as Error).stack ?? String(error)}`);
      } finally {
        await processes.stopAll();
      }
      report.note(`(${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    }
  } finally {
    await processes.stopAll();
    await postgres.close();
  }
  const output = process.env["BENCH_OUTPUT"] ?? join(PACKAGE_ROOT, ".bench", "latest.json");
  await report.save(output, { quick: config.quick, machine, startedAt: new Date(started).toISOString(), seconds: (Date.now() - started) / 1000 });
  console.log(`\nbench: ${((Date.now() - started) / 1000).toFixed(0)} s; figures saved to ${output}${failed ? `; ${failed} section(s) failed` : ""}`);
  return failed ? 1 : 0;
}

process.exitCode = await main();
