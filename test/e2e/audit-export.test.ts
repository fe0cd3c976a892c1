import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import type { DatabasePool } from "../../src/db/pool.js";
import { checkpointToJson } from "../../src/domain/audit-chain.js";
import { applyRetention } from "../../src/service/audit-chain.js";
import { PACKAGE_ROOT } from "../../src/paths.js";
import { ephemeralAuditSigner } from "../../src/service/audit-signing-key.js";
import { tokenFor } from "../support/auth.js";
import { awkwardAuditEvents, insertTenant } from "../support/fixtures.js";
import { useOidcTestServer } from "../support/harness.js";
import { restFetch } from "../support/rest.js";
import type { OidcIssuer } from "../support/oidc-issuer.js";
import { clientFor } from "../support/server.js";

/**
 * `GET /v1/tenants/{id}/audit/events:export` fetched from the real server, and
 * the file verified offline by the built CLI (`audit verify --file`, no
 * DATABASE_URL): intact as exported, broken with the sequence named once edited.
 */

const MAIN = join(PACKAGE_ROOT, "dist", "bin", "main.js");
const execFileP = promisify(execFile);
const signer = ephemeralAuditSigner();

let baseUrl: string;
let sql: pg.Client;
let pool: DatabasePool;
let issuer: OidcIssuer;
let admin: string;
let dir: string;
let publicKeyFile: string;

useOidcTestServer(
  async (h) => {
    ({ sql, issuer, pool } = h);
    baseUrl = h.server.baseUrl;
    admin = await tokenFor(issuer, "platform-admin");
  },
  (i) => ({ auth: { mode: "oidc", issuer: i.issuer }, auditSigner: signer }),
);

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`make build\` first (make test does)`);
  dir = await mkdtemp(join(tmpdir(), "audit-export-"));
  publicKeyFile = join(dir, "public-key.pem");
  // What an auditor has: the public key the service publishes, nothing else.
  const published = (await (await restFetch(`${baseUrl}/v1/audit/public-key`, { headers: { authorization: `Bearer ${admin}` } })).json()) as {
    publicKeyPem: string;
  };
  await writeFile(publicKeyFile, published.publicKeyPem);
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The built CLI with no database in its environment: verification is offline. */
async function verifyFile(file: string, extra: string[] = []): Promise<{ code: number; verdict: Record<string, unknown>; stderr: string }> {
  const env = { PATH: process.env["PATH"] ?? "", APP_ENV: "prod" };
  const args = [MAIN, "audit", "verify", "--file", file, "--public-key", publicKeyFile, ...extra];
  try {
    const { stdout, stderr } = await execFileP(process.execPath, args, { env, timeout: 30_000 });
    return { code: 0, verdict: JSON.parse(stdout) as Record<string, unknown>, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, verdict: e.stdout ? (JSON.parse(e.stdout) as Record<string, unknown>) : {}, stderr: e.stderr };
  }
}

/** A tenant with `n` awkward events recorded through the service. */
async function tenantWithEvents(n: number): Promise<string> {
  const tenant = await insertTenant(sql);
  const client = clientFor(TenantRegistryService, baseUrl, "grpc", { authorization: `Bearer ${admin}` });
  await client.recordAuditEvents({ events: awkwardAuditEvents(tenant.id, n) });
  return tenant.id;
}

/** Plain fetch, as curl would: the export streams NDJSON or CSV, not the one JSON answer restFetch checks. */
async function exportOf(tenantId: string, query = "", token = admin): Promise<Response> {
  return fetch(`${baseUrl}/v1/tenants/${tenantId}/audit/events:export${query}`, { headers: { authorization: `Bearer ${token}` } });
}

async function exportFile(tenantId: string): Promise<{ file: string; lines: string[] }> {
  const res = await exportOf(tenantId);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^application\/x-ndjson/);
  const text = await res.text();
  const file = join(dir, `${tenantId}.ndjson`);
  await writeFile(file, text);
  return { file, lines: text.trimEnd().split("\n") };
}

async function tampered(file: string, edit: (lines: string[]) => string[]): Promise<string> {
  const lines = (await readFile(file, "utf8")).trimEnd().split("\n");
  const out = `${file}.tampered-${Math.random().toString(36).slice(2)}`;
  await writeFile(out, edit(lines).join("\n") + "\n");
  return out;
}

describe("GET /v1/tenants/{tenant_id}/audit/events:export", () => {
  it("ndjson: every event in sequence order with its hashes, then a signed checkpoint; the file verifies offline", async () => {
    const tenantId = await tenantWithEvents(6);
    const { file, lines } = await exportFile(tenantId);
    expect(lines).toHaveLength(7);
    const events = lines.slice(0, 6).map((l) => (JSON.parse(l) as { event: Record<string, string> }).event);
    expect(events.map((e) => e.sequence)).toEqual(["1", "2", "3", "4", "5", "6"]);
    for (const e of events) expect(e).toMatchObject({ hash: expect.stringMatching(/^[0-9a-f]{64}$/), previousHash: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(events[1]!.previousHash).toBe(events[0]!.hash);
    const { checkpoint } = JSON.parse(lines[6]!) as { checkpoint: Record<string, string> };
    expect(checkpoint).toMatchObject({ chainId: tenantId, sequence: "6", hash: events[5]!.hash, keyId: signer.keyId });

    const result = await verifyFile(file);
    expect(result.code, result.stderr).toBe(0);
    expect(result.verdict).toMatchObject({ intact: true, chainId: tenantId, baseSequence: "0", lastSequence: "6", eventsChecked: "6" });
  });

  it("an edited action, a deleted middle line and a dropped tail each fail verification naming the sequence", async () => {
    const tenantId = await tenantWithEvents(5);
    const { file } = await exportFile(tenantId);

    const edited = await tampered(file, (lines) => lines.map((l, i) => (i === 2 ? l.replace('"action":"document.update"', '"action":"document.view"') : l)));
    expect(await verifyFile(edited)).toMatchObject({ code: 1, verdict: { intact: false, firstBadSequence: "3", problem: "hash_mismatch" } });

    const deleted = await tampered(file, (lines) => lines.filter((_, i) => i !== 2));
    expect(await verifyFile(deleted)).toMatchObject({ code: 1, verdict: { intact: false, firstBadSequence: "3", problem: "gap" } });

    // The last two events gone, the checkpoint line kept: the signed tail is missing.
    const cut = await tampered(file, (lines) => [...lines.slice(0, 3), lines.at(-1)!]);
    expect(await verifyFile(cut)).toMatchObject({ code: 1, verdict: { intact: false, firstBadSequence: "4", problem: "missing_tail" } });

    // The checkpoint dropped too: the events still chain, but a full export always ends with
    // a checkpoint, so a file without one has lost its tail as far as anyone can prove.
    const cutClean = await tampered(file, (lines) => lines.slice(0, 3));
    const unsigned = await verifyFile(cutClean);
    expect(unsigned).toMatchObject({ code: 1, verdict: { intact: false, firstBadSequence: "4", problem: "missing_tail" } });
    expect(unsigned.verdict["detail"]).toMatch(/no checkpoint line/);
    const kept = join(dir, `${tenantId}.checkpoint.json`);
    await writeFile(kept, JSON.stringify((JSON.parse((await readFile(file, "utf8")).trimEnd().split("\n").at(-1)!) as { checkpoint: unknown }).checkpoint));
    expect(await verifyFile(cutClean, ["--checkpoint", kept])).toMatchObject({ code: 1, verdict: { firstBadSequence: "4", problem: "missing_tail" } });

    // Nothing may follow the checkpoint line.
    const appended = await tampered(file, (lines) => [...lines, lines[0]!]);
    const afterCheckpoint = await verifyFile(appended);
    expect(afterCheckpoint).toMatchObject({ code: 1, verdict: { intact: false, problem: "malformed" } });
    expect(afterCheckpoint.verdict["detail"]).toMatch(/after the checkpoint line 6/);

    // An older genuine checkpoint (of sequence 3) in place of the export's: events 4 and 5 are not covered by it.
    const third = (JSON.parse((await readFile(file, "utf8")).split("\n")[2]!) as { event: { hash: string } }).event.hash;
    const older = JSON.stringify({ checkpoint: checkpointToJson(signer.sign({ chainId: tenantId, sequence: 3n, hash: third }, "2026-01-01T00:00:00.000000Z")) });
    const swapped = await tampered(file, (lines) => [...lines.slice(0, -1), older]);
    expect(await verifyFile(swapped)).toMatchObject({ code: 1, verdict: { intact: false, firstBadSequence: "4", problem: "checkpoint_mismatch" } });
  });

  it("an export longer than one read page (250) stays in order across pages and messages and verifies", async () => {
    const tenant = await insertTenant(sql);
    await sql.query(
      `SELECT audit_append(jsonb_agg(jsonb_build_object('tenant_id', $1::text, 'action', 'report.view', 'crud', 'r', 'actor_id', 'u-' || i) ORDER BY i))
       FROM generate_series(1, 2345) AS i`,
      [tenant.id],
    );
    const { file, lines } = await exportFile(tenant.id);
    expect(lines).toHaveLength(2346);
    const result = await verifyFile(file);
    expect(result.code, result.stderr).toBe(0);
    expect(result.verdict).toMatchObject({ intact: true, lastSequence: "2345", eventsChecked: "2345" });
  });

  it("a filtered export carries no checkpoint (it is not the whole chain)", async () => {
    const tenantId = await tenantWithEvents(3);
    const res = await exportOf(tenantId, "?actorId=user-1");
    expect(res.status).toBe(200);
    const lines = (await res.text()).trimEnd().split("\n");
    expect(lines.map((l) => Object.keys(JSON.parse(l) as object))).toEqual([["event"]]);
  });

  it("csv: a header, then one row per event with sequence, hash and previous hash", async () => {
    const tenantId = await tenantWithEvents(3);
    const res = await exportOf(tenantId, "?format=csv");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/csv/);
    const text = await res.text();
    expect(text.split("\r\n")[0]).toMatch(/^sequence,hash,previous_hash,chain_id,/);
    // Descriptions hold a newline and quotes: quoted, so each record starts with its sequence.
    const records = text.split(/\r\n(?=\d+,[0-9a-f]{64},)/);
    expect(records.slice(1).map((r) => r.split(",")[0])).toEqual(["1", "2", "3"]);
    expect(text).toContain('"line one\nline two\t✓, ""quoted"""');
  });

  it("csv: a cell a spreadsheet would run as a formula starts with ' (ndjson keeps the value as recorded)", async () => {
    const tenant = await insertTenant(sql);
    const client = clientFor(TenantRegistryService, baseUrl, "grpc", { authorization: `Bearer ${admin}` });
    const hostile = ['=HYPERLINK("http://evil.example")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\tTAB"];
    await client.recordAuditEvents({
      events: hostile.map((name, i) => ({ tenantId: tenant.id, action: "report.view", crud: "r", actor: { id: `u${i}`, name, type: "user" }, description: name })),
    });
    const csv = await (await exportOf(tenant.id, "?format=csv")).text();
    const names = csv.split("\r\n").slice(1, -1).map((r) => r.split(",")[10]);
    expect(names).toEqual(["\"'=HYPERLINK(\"\"http://evil.example\"\")\"", "'+1+cmd|' /C calc'!A0", "'-2+3", "'@SUM(A1:A9)", "'\tTAB"]);
    const ndjson = (await (await exportOf(tenant.id)).text()).trimEnd().split("\n");
    const actors = ndjson.slice(0, -1).map((l) => (JSON.parse(l) as { event: { actor: { name: string } } }).event.actor.name);
    expect(actors).toEqual(hostile);
  });

  it("format=xml is 400 invalid_argument naming format", async () => {
    const tenantId = await tenantWithEvents(1);
    const res = await exportOf(tenantId, "?format=xml");
    expect(res.status).toBe(400);
    const body = (await res.json()) as { code: string; fieldViolations: { field: string }[] };
    expect(body.code).toBe("invalid_argument");
    expect(body.fieldViolations.map((v) => v.field)).toEqual(["format"]);
  });

  it("a tenant admin exports its own tenant's events, and gets another tenant's refused as the rest of REST refuses it", async () => {
    const own = await tenantWithEvents(2);
    const other = await tenantWithEvents(2);
    const token = await tokenFor(issuer, "tenant-admin", { tenantId: own });
    expect((await exportOf(own, "", token)).status).toBe(200);

    const listed = await restFetch(`${baseUrl}/v1/tenants/${other}/audit/events`, { headers: { authorization: `Bearer ${token}` } });
    const exported = await exportOf(other, "", token);
    expect([403, 404]).toContain(exported.status);
    expect(exported.status).toBe(listed.status);
    const body = await exported.text();
    expect(body).not.toContain("document.update");
    expect((JSON.parse(body) as { code: string }).code).toBe(((await listed.json()) as { code: string }).code);

    expect((await exportOf(own, "", "not-a-token")).status).toBe(401);
  });
});

describe("exports of a chain cut by retention", () => {
  const DAY = 24 * 60 * 60 * 1000;

  /** A tenant whose first `old` events are 10 days old and the next `recent` are new, after a 7-day retention pass. */
  async function cutTenant(old: number, recent: number): Promise<string> {
    const tenant = await insertTenant(sql);
    const now = Date.now();
    const events = Array.from({ length: old + recent }, (_, i) => ({
      tenant_id: tenant.id,
      action: "document.update",
      crud: "u",
      actor_id: `u${i}`,
      created_at: new Date(i < old ? now - 10 * DAY : now).toISOString(),
    }));
    await sql.query("SELECT audit_append($1::jsonb)", [JSON.stringify(events)]);
    // The server's own key signs the cut, as the server's retention tick would.
    await applyRetention(pool, signer, new Date(now), 7 * DAY);
    return tenant.id;
  }

  it("starts with the signed retention cut as its base line and verifies from there", async () => {
    const tenantId = await cutTenant(3, 3);
    const { file, lines } = await exportFile(tenantId);
    expect(lines.map((l) => Object.keys(JSON.parse(l) as object)[0])).toEqual(["base", "event", "event", "event", "checkpoint"]);
    const { base } = JSON.parse(lines[0]!) as { base: Record<string, string> };
    const first = (JSON.parse(lines[1]!) as { event: Record<string, string> }).event;
    expect(base).toMatchObject({ chainId: tenantId, sequence: "3", hash: first.previousHash, keyId: signer.keyId });
    expect(first.sequence).toBe("4");

    const result = await verifyFile(file);
    expect(result.code, result.stderr).toBe(0);
    expect(result.verdict).toMatchObject({ intact: true, baseSequence: "3", lastSequence: "6", eventsChecked: "3" });
  });

  it("without its base line, with a base signed by another key, or with the base moved, the file does not verify", async () => {
    const tenantId = await cutTenant(2, 2);
    const { file } = await exportFile(tenantId);

    const noBase = await tampered(file, (lines) => lines.slice(1));
    expect(await verifyFile(noBase)).toMatchObject({ code: 1, verdict: { intact: false, firstBadSequence: "1", problem: "gap" } });

    const forger = ephemeralAuditSigner();
    const forged = await tampered(file, (lines) => {
      const { base } = JSON.parse(lines[0]!) as { base: { sequence: string; hash: string } };
      const fake = forger.sign({ chainId: tenantId, sequence: BigInt(base.sequence), hash: base.hash }, "2026-01-01T00:00:00.000000Z");
      return [JSON.stringify({ base: checkpointToJson(fake) }), ...lines.slice(1)];
    });
    expect(await verifyFile(forged)).toMatchObject({ code: 1, verdict: { intact: false, firstBadSequence: "2", problem: "bad_signature" } });

    const moved = await tampered(file, (lines) => [lines[1]!, lines[0]!, ...lines.slice(2)]);
    expect(await verifyFile(moved)).toMatchObject({ code: 1, verdict: { intact: false, problem: "malformed" } });
  });

  it("a chain retention emptied exports its base and a checkpoint of it, and verifies", async () => {
    const tenantId = await cutTenant(4, 0);
    const { file, lines } = await exportFile(tenantId);
    expect(lines.map((l) => Object.keys(JSON.parse(l) as object)[0])).toEqual(["base", "checkpoint"]);
    const { checkpoint } = JSON.parse(lines[1]!) as { checkpoint: Record<string, string> };
    expect(checkpoint).toMatchObject({ sequence: "4", hash: (JSON.parse(lines[0]!) as { base: { hash: string } }).base.hash });
    expect(await verifyFile(file)).toMatchObject({ code: 0, verdict: { intact: true, baseSequence: "4", lastSequence: "4", eventsChecked: "0" } });
  });
});
