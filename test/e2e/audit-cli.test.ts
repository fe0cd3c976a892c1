import { execFile } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../src/paths.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { insertTenant } from "../support/fixtures.js";

const MAIN = join(PACKAGE_ROOT, "dist", "bin", "main.js");
const execFileP = promisify(execFile);

let db: TestDatabase;
let sql: pg.Client;
let dir: string;
let env: Record<string, string>;

/** The built CLI, as an operator runs it: exit code and output. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [MAIN, ...args], { env, timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`make build\` first (make test does)`);
  db = await createTestDatabase();
  sql = await db.client();
  dir = await mkdtemp(join(tmpdir(), "audit-cli-"));
  const keyFile = join(dir, "key.pem");
  await writeFile(keyFile, generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }));
  env = { PATH: process.env["PATH"] ?? "", APP_ENV: "prod", DATABASE_URL: db.url, AUDIT_SIGNING_KEY_FILE: keyFile };
});
afterAll(async () => {
  await sql?.end();
  await db?.drop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function tenantWithEvents(n: number): Promise<string> {
  const tenant = await insertTenant(sql);
  await sql.query(
    `SELECT audit_append(jsonb_agg(jsonb_build_object('tenant_id', $1::text, 'action', 'report.view', 'crud', 'r', 'actor_id', 'u-' || i) ORDER BY i))
     FROM generate_series(1, $2::int) AS i`,
    [tenant.id, n],
  );
  return tenant.id;
}

describe("tenant-registry audit", () => {
  it("checkpoint prints a signed head as JSON; verify with it exits 0, and 1 once the newest events are cut off", async () => {
    const tenantId = await tenantWithEvents(5);
    const signed = await cli(["audit", "checkpoint", "--tenant", tenantId]);
    expect(signed.code, signed.stderr).toBe(0);
    const checkpoint = JSON.parse(signed.stdout) as Record<string, string>;
    expect(checkpoint).toMatchObject({ chain_id: tenantId, sequence: "5", hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
    const file = join(dir, `${tenantId}.json`);
    await writeFile(file, signed.stdout);

    const intact = await cli(["audit", "verify", "--tenant", tenantId, "--checkpoint", file]);
    expect(intact.code, intact.stderr).toBe(0);
    expect(JSON.parse(intact.stdout)).toMatchObject({ intact: true, lastSequence: "5" });

    // A superuser cuts the tail and rewinds the head: the chain alone looks whole, the checkpoint does not.
    await sql.query("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only");
    await sql.query("DELETE FROM audit_log WHERE chain_id = $1 AND seq > 3", [tenantId]);
    await sql.query("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only");
    await sql.query("UPDATE audit_chain_heads SET seq = 3, hash = (SELECT hash FROM audit_log WHERE chain_id = $1 AND seq = 3) WHERE chain_id = $1", [
      tenantId,
    ]);
    expect((await cli(["audit", "verify", "--tenant", tenantId])).code).toBe(0);
    const broken = await cli(["audit", "verify", "--tenant", tenantId, "--checkpoint", file]);
    expect(broken.code).toBe(1);
    expect(JSON.parse(broken.stdout)).toMatchObject({ intact: false, firstBadSequence: "4", problem: "missing_tail" });
  });

  it("exits 1 naming the sequence of an edited event", async () => {
    const tenantId = await tenantWithEvents(4);
    await sql.query("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only");
    await sql.query("UPDATE audit_log SET actor_id = 'mallory' WHERE chain_id = $1 AND seq = 2", [tenantId]);
    await sql.query("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only");
    const result = await cli(["audit", "verify", "--tenant", tenantId]);
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({ intact: false, firstBadSequence: "2", problem: "hash_mismatch" });
  });

  it("exits 2 on usage errors", async () => {
    for (const args of [["audit"], ["audit", "nope"], ["audit", "verify", "--tenant"], ["audit", "verify", "--tenant", "x"], ["audit", "verify", "--checkpoint", join(dir, "missing.json")]]) {
      expect((await cli(args)).code, args.join(" ")).toBe(2);
    }
  });
});
