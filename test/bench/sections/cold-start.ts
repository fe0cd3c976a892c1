import { execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "../../../src/db/embedded.js";
import { PACKAGE_ROOT } from "../../../src/paths.js";
import type { BenchSection } from "../harness/context.js";
import { waitForHttp200 } from "../harness/processes.js";
import { median } from "../harness/stats.js";
import { fmt } from "../harness/report.js";

/**
 * Issue 12: spawn → first 200 on /readyz, as an orchestrator sees a new replica:
 * production settings (stage, OIDC, migrations already applied by the init
 * container), an external (already running) database, against a bare node:http server;
 * the shipped command (the bundle) once compiling its code, once from the compile cache
 * `preload` fills, as the image starts (Dockerfile); and tsc's unbundled modules, to show
 * what the bundle saves.
 */
export const coldStartSection: BenchSection = {
  id: "cold-start",
  title: "Cold start: spawn → first 200 on /readyz",
  async run(ctx) {
    const url = await ctx.postgres.createDatabase("cold");
    const runs = ctx.config.quick ? 3 : 7;
    const time = async (script: string, env: Record<string, string>) => {
      const samples: number[] = [];
      for (let i = 0; i < runs; i++) {
        const port = await freePort();
        const started = performance.now();
        const [command, ...args] = ctx.config.serverCpu === undefined ? [process.execPath, join(PACKAGE_ROOT, script)] : ["taskset", "-c", String(ctx.config.serverCpu), process.execPath, join(PACKAGE_ROOT, script)];
        const child = spawn(command!, [...args, "serve"], {
          cwd: PACKAGE_ROOT,
          env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? "/tmp", ...env, PORT: String(port), ADDR: `127.0.0.1:${port}` },
          stdio: "ignore",
        });
        try {
          await waitForHttp200(`http://127.0.0.1:${port}/readyz`, 30_000, child);
          samples.push(performance.now() - started);
        } finally {
          const exited = new Promise((resolve) => child.once("exit", resolve));
          child.kill("SIGTERM");
          const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
          await exited;
          clearTimeout(timer);
        }
      }
      return samples;
    };
    const stage = {
      APP_ENV: "stage",
      AUTH_MODE: "oidc",
      // Never contacted before the first token arrives; readiness is the database and its schema.
      KEYCLOAK_ISSUER: "http://127.0.0.1:9/realms/bench",
      DATABASE_URL: url,
      LOG_LEVEL: "info",
      AUDIT_SIGNING_KEY_FILE: ctx.signingKeyFile,
    };
    const app = await time("dist/bin/main.js", stage);
    const cacheDir = await mkdtemp(join(tmpdir(), "bench-compile-cache-"));
    await promisify(execFile)(process.execPath, [join(PACKAGE_ROOT, "dist/bin/main.js"), "preload"], { env: { PATH: process.env["PATH"] ?? "", NODE_COMPILE_CACHE: cacheDir } });
    const cached = await time("dist/bin/main.js", { ...stage, NODE_COMPILE_CACHE: cacheDir });
    await rm(cacheDir, { recursive: true, force: true });
    const unbundled = await time("dist/src/main.js", stage);
    const bare = await time("dist/test/bench/servers/fixed-json.js", {});
    ctx.report.table(
      `median of ${runs} starts (target: the service < 1 s)`,
      ["process", "median ms", "min ms", "max ms", "÷ bare"],
      [
        ["tenant-registry serve (stage, external DB; the bundle)", fmt.int(median(app)), fmt.int(Math.min(...app)), fmt.int(Math.max(...app)), fmt.ratio(median(app), median(bare))],
        ["  the same, compile cache from `preload` (as the image)", fmt.int(median(cached)), fmt.int(Math.min(...cached)), fmt.int(Math.max(...cached)), fmt.ratio(median(cached), median(bare))],
        ["  the same unbundled (tsc's dist/src/main.js)", fmt.int(median(unbundled)), fmt.int(Math.min(...unbundled)), fmt.int(Math.max(...unbundled)), fmt.ratio(median(unbundled), median(bare))],
        ["bare node:http server", fmt.int(median(bare)), fmt.int(Math.min(...bare)), fmt.int(Math.max(...bare)), "1.00×"],
      ],
    );
    await ctx.postgres.dropDatabase(url);
  },
};
