import { execFile, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMigration } from "../../src/db/migrations.js";
import { PACKAGE_ROOT } from "../../src/paths.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { restFetch } from "../support/rest.js";

const MAIN = join(PACKAGE_ROOT, "dist", "bin", "main.js");
// Production needs an issuer; nothing in these tests presents a token, so it is never contacted.
const ISSUER = "https://sso.invalid/realms/platform";
const execFileP = promisify(execFile);

type Result = { code: number; stdout: string; stderr: string };

/** Runs the built CLI, like the init container does, with exactly the given environment. */
async function cli(args: string[], env: Record<string, string>, cwd = PACKAGE_ROOT): Promise<Result> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [MAIN, ...args], {
      cwd,
      env: { PATH: process.env["PATH"] ?? "", ...env },
      timeout: 30_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const databases: TestDatabase[] = [];
async function fresh(migrate = false): Promise<TestDatabase> {
  const db = await createTestDatabase({ migrate });
  databases.push(db);
  return db;
}

/** Stage and prod sign audit checkpoints with a key they are given, never one they make up. */
let signingKeyFile: string;

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), "tenant-registry-key-"));
  signingKeyFile = join(dir, "audit-signing-key.pem");
  await writeFile(signingKeyFile, generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }));
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`make build\` first (make test does)`);
  // These tests run the built CLI: a build older than the sources would test old code.
  // The build is incremental (unchanged outputs keep their times): its stamp says when it last ran.
  const built = (await stat(join(PACKAGE_ROOT, "dist", ".build-stamp")).catch(() => stat(MAIN))).mtimeMs;
  const sources = await readdir(join(PACKAGE_ROOT, "src"), { recursive: true });
  for (const file of sources.filter((f) => f.endsWith(".ts"))) {
    if ((await stat(join(PACKAGE_ROOT, "src", file))).mtimeMs > built) {
      throw new Error(`dist/ is older than src/${file}: run \`make build\` first (make test does)`);
    }
  }
});
afterAll(async () => {
  await Promise.all(databases.map((db) => db.drop()));
});

describe("tenant-registry migrate (init-container mode)", () => {
  it("applies the migrations from any working directory, prints each, and exits 0; a re-run is a no-op", async () => {
    const db = await fresh();
    const elsewhere = await mkdtemp(join(tmpdir(), "cwd-"));
    try {
      const first = await cli(["migrate", "up"], { DATABASE_URL: db.url, APP_ENV: "prod" }, elsewhere);
      expect(first).toMatchObject({ code: 0 });
      expect(first.stdout).toContain("applied 1_init.sql");
      const again = await cli(["migrate", "up"], { DATABASE_URL: db.url, APP_ENV: "prod" }, elsewhere);
      expect(again.code).toBe(0);
      expect(again.stdout).not.toContain("applied");
      expect(again.stdout).toMatch(/schema is current at version \d+/);
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
  });

  it("lets several replicas run it at once: all exit 0, the schema is applied once", async () => {
    const db = await fresh();
    const runs = await Promise.all([1, 2, 3].map(() => cli(["migrate", "up"], { DATABASE_URL: db.url })));
    expect(runs.map((r) => r.code)).toEqual([0, 0, 0]);
    expect(runs.filter((r) => r.stdout.includes("applied 1_init.sql"))).toHaveLength(1);
  });

  it("waits for the database with backoff, then gives up with a clear error", async () => {
    const result = await cli(["migrate", "up"], {
      DATABASE_URL: "postgres://nobody:nothing@127.0.0.1:1/none",
      DATABASE_WAIT_TIMEOUT: "1",
    });
    expect(result.code).not.toBe(0);
    expect(result.stdout).toMatch(/waiting for the database \(attempt 1/);
    expect(result.stderr).toMatch(/database not reachable after \d+ attempts/);
  });

  it("prints the version and what is pending", async () => {
    const db = await fresh();
    const empty = await cli(["migrate", "version"], { DATABASE_URL: db.url });
    expect(empty.stdout).toContain("version 0 (empty database)");
    expect(empty.stdout).toContain("pending 1_init.sql");
    await cli(["migrate", "up"], { DATABASE_URL: db.url });
    const current = await cli(["migrate", "version"], { DATABASE_URL: db.url });
    expect(current.code).toBe(0);
    expect(current.stdout).not.toContain("pending");
  });

  it("refuses down and down-all outside dev unless forced", async () => {
    const db = await fresh(true);
    for (const command of ["down", "down-all"]) {
      const refused = await cli(["migrate", command], { DATABASE_URL: db.url, APP_ENV: "prod" });
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain("production is forward-only");
    }
    const forced = await cli(["migrate", "down-all", "--force"], { DATABASE_URL: db.url, APP_ENV: "stage" });
    expect(forced.code).toBe(0);
    expect(forced.stdout).toContain("reverted 1_init");
    const dev = await cli(["migrate", "down"], { DATABASE_URL: db.url, APP_ENV: "dev" });
    expect(dev).toMatchObject({ code: 0 });
    expect(dev.stdout).toContain("nothing to revert");
  });

  it("rejects unknown subcommands with usage and exit code 2", async () => {
    const result = await cli(["migrate", "sideways"], { DATABASE_URL: "postgres://x@127.0.0.1:1/x" });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("usage: tenant-registry migrate");
  });

  it("create writes the next numbered migration and its down script", async () => {
    const dir = await mkdtemp(join(tmpdir(), "create-"));
    try {
      const { mkdir, writeFile } = await import("node:fs/promises");
      await mkdir(join(dir, "down"));
      await writeFile(join(dir, "1_init.sql"), "SELECT 1;");
      const [up, down] = await createMigration("add_widgets", dir);
      expect(up).toBe(join(dir, "2_add_widgets.sql"));
      expect(down).toBe(join(dir, "down", "2_add_widgets.sql"));
      expect(await readFile(down, "utf8")).toContain("rollback");
      await expect(createMigration("Bad Name", dir)).rejects.toThrow(/lowercase/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("tenant-registry serve", () => {
  it("refuses AUTH_MODE=none outside dev", async () => {
    const result = await cli(["serve"], { APP_ENV: "prod", DATABASE_URL: "postgres://x@127.0.0.1:1/x", KEYCLOAK_ISSUER: ISSUER, AUTH_MODE: "none" });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("AUTH_MODE: none is allowed only with APP_ENV=dev");
  });

  it("refuses to start in stage/prod without DATABASE_URL, naming the variable", async () => {
    const result = await cli(["serve"], { APP_ENV: "stage" });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("DATABASE_URL: required when APP_ENV=stage");
  });

  it("names the variable of a malformed setting", async () => {
    const result = await cli(["serve"], { APP_ENV: "qa", ADDR: "nonsense" });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("APP_ENV: expected one of dev, stage, prod");
  });

  it("refuses to serve in prod without an audit signing key, naming the variable", async () => {
    const db = await fresh();
    const result = await cli(["serve"], { APP_ENV: "prod", DATABASE_URL: db.url, ADDR: "127.0.0.1:0", KEYCLOAK_ISSUER: ISSUER });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("AUDIT_SIGNING_KEY_FILE: required when APP_ENV=prod");
  });

  it("refuses to serve in prod with pending migrations and says why", async () => {
    const db = await fresh();
    const result = await cli(["serve"], {
      APP_ENV: "prod", DATABASE_URL: db.url, ADDR: "127.0.0.1:0", KEYCLOAK_ISSUER: ISSUER, AUDIT_SIGNING_KEY_FILE: signingKeyFile,
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/refusing to serve: \d+ pending migration\(s\): 1_init\.sql, 2_api_surface\.sql/);
  });

  it("with an applied migration modified, serve and migrate up both name the fix, not each other", async () => {
    const db = await fresh(true);
    const sql = await db.client();
    try {
      // As if 1_init.sql had been edited after it was applied.
      await sql.query("UPDATE migrations SET hash = 'edited-after-the-fact' WHERE id = 1");
    } finally {
      await sql.end();
    }
    const env = { APP_ENV: "prod", DATABASE_URL: db.url, ADDR: "127.0.0.1:0", KEYCLOAK_ISSUER: ISSUER, AUDIT_SIGNING_KEY_FILE: signingKeyFile };
    const served = await cli(["serve"], env);
    expect(served.code).toBe(1);
    expect(served.stderr).toMatch(/refusing to serve: applied migration\(s\) 1_init no longer match their files/);
    expect(served.stderr).toMatch(/restore the file exactly as it was applied/);
    expect(served.stderr).toMatch(/new migration/);
    expect(served.stderr).not.toMatch(/Run `tenant-registry migrate up`|set MIGRATE_ON_START=true(?! cannot)/);
    const migrated = await cli(["migrate", "up"], env);
    expect(migrated.code).not.toBe(0);
    expect(migrated.stderr).toMatch(/restore the file exactly as it was applied/);
  });

  it("migrates at start when MIGRATE_ON_START=true, serves, and drains on SIGTERM", async () => {
    const db = await fresh();
    const child = spawn(process.execPath, [MAIN, "serve"], {
      cwd: PACKAGE_ROOT,
      env: {
        PATH: process.env["PATH"] ?? "", APP_ENV: "prod", DATABASE_URL: db.url, ADDR: "127.0.0.1:0", MIGRATE_ON_START: "true",
        KEYCLOAK_ISSUER: ISSUER, AUDIT_SIGNING_KEY_FILE: signingKeyFile,
      },
    });
    let out = "";
    child.stdout.on("data", (chunk) => (out += String(chunk)));
    child.stderr.on("data", (chunk) => (out += String(chunk)));
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 20_000);
      child.stdout.on("data", () => {
        const match = /serving on [^:]+:(\d+)/.exec(out);
        if (match) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      });
    });
    expect(out).toContain("applied 1_init.sql");
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(ready.status).toBe(200);
    // prod authenticates every call (and does not seed the dev tenant).
    expect((await restFetch(`http://127.0.0.1:${port}/v1/tenants/by-slug/acme`)).status).toBe(401);

    child.kill("SIGTERM");
    expect({ code: await exited, out }).toMatchObject({ code: 0 });
    expect(out).toContain("shutting down");
    expect(out).toContain('"msg":"stopped"');
  });
});
