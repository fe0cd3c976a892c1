import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { PACKAGE_ROOT } from "../../src/paths.js";

const RUN = join(PACKAGE_ROOT, "dist", "test", "bench", "run.js");
const execFileP = promisify(execFile);
let dir: string;

beforeAll(async () => {
  if (!existsSync(RUN)) throw new Error(`${RUN} is missing: run \`make build\` first (make test does)`);
  // The build is incremental (unchanged outputs keep their times): its stamp says when it last ran.
  const built = (await stat(join(PACKAGE_ROOT, "dist", ".build-stamp")).catch(() => stat(RUN))).mtimeMs;
  for (const folder of ["src", "test/bench"]) {
    for (const file of (await readdir(join(PACKAGE_ROOT, folder), { recursive: true })).filter((f) => f.endsWith(".ts"))) {
      if ((await stat(join(PACKAGE_ROOT, folder, file))).mtimeMs > built) throw new Error(`dist/ is older than ${folder}/${file}: run \`make build\``);
    }
  }
  dir = await mkdtemp(join(tmpdir(), "bench-smoke-"));
});
afterAll(() => (dir ? rm(dir, { recursive: true, force: true }) : undefined));

type Entry = { section: string; entry: { kind: string; title?: string; columns?: string[]; rows?: (string | number | null)[][]; what?: string; why?: string } };

// Smoke only: every section runs end to end with tiny settings and reports
// figures; no timing is asserted (a loaded CI machine makes them noise).
it("make bench runs every section against real servers, reports figures and leaves nothing behind", { timeout: 420_000 }, async () => {
  const adminUrl = inject("adminDatabaseUrl");
  const output = join(dir, "bench.json");
  await execFileP(process.execPath, [RUN], {
    cwd: PACKAGE_ROOT,
    env: {
      PATH: process.env["PATH"] ?? "",
      BENCH_QUICK: "1",
      BENCH_DATABASE_URL: adminUrl,
      BENCH_CELL_MS: "100",
      BENCH_WARMUP_MS: "20",
      BENCH_SERVER_WARM_MS: "100",
      BENCH_ROWS: "500",
      BENCH_REVOCATIONS: "3",
      BENCH_OUTPUT: output,
    },
    timeout: 400_000,
  });
  const { entries } = JSON.parse(await readFile(output, "utf8")) as { entries: Entry[] };
  const failures = entries.filter((e) => e.entry.kind === "not-measured" && e.entry.what?.startsWith("the rest of"));
  expect(failures.map((e) => e.entry.why)).toEqual([]);
  const tables = entries.filter((e) => e.entry.kind === "table").map((e) => e.entry);

  const hot = tables.filter((t) => /^(GetTenantBySlug|CheckEntitlement|VerifyApiKey), concurrency/.test(t.title!));
  expect(hot).toHaveLength(3);
  for (const table of hot) {
    // 4 baselines + 3 protocols × cache on/off, every one answered without errors.
    expect(table.rows).toHaveLength(10);
    const reqs = table.columns!.indexOf("req/s");
    const errors = table.columns!.indexOf("errors");
    for (const row of table.rows!) {
      expect(Number(String(row[reqs]).replaceAll(",", "")), `${table.title}: ${row[0]}`).toBeGreaterThan(0);
      expect(row[errors], `${table.title}: ${row[0]}`).toBe(0);
    }
  }
  const propagation = tables.find((t) => /revocations through A/.test(t.title!))!;
  expect(propagation.rows![0]!.slice(0, 3)).toEqual([3, 3, 0]);
  for (const title of [/^VerifyApiKey over .* distinct keys/, /^ListTenants/, /^ListAuditEvents/, /events, oldest first/, /^gRPC, sequential or N calls/, /^VerifyAuditChain over/, /^median of/]) {
    expect(tables.some((t) => title.test(t.title!)), String(title)).toBe(true);
  }

  const verify = tables.find((t) => /^VerifyAuditChain over/.test(t.title!))!;
  expect(verify.rows![0]!.slice(0, 2)).toEqual(["true", "500"]);

  // Its databases are dropped again.
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const { rows } = await admin.query("SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%'");
    expect(rows).toEqual([]);
  } finally {
    await admin.end();
  }
});
