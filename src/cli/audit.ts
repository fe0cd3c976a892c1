import { createPublicKey, type KeyObject } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import type { Config } from "../config.js";
import { createDatabasePool } from "../db/pool.js";
import { checkpointFromJson, checkpointToJson, PLATFORM_CHAIN, type Checkpoint } from "../domain/audit-chain.js";
import { scanExport, verifyExport } from "../domain/audit-export.js";
import { isUuid } from "../domain/ids.js";
import { signChainHead, verifyStoredChain } from "../service/audit-chain.js";
import { loadAuditSigner } from "../service/audit-signing-key.js";

export const AUDIT_USAGE = `usage: tenant-registry audit checkpoint [--tenant ID]
       tenant-registry audit verify [--tenant ID] [--checkpoint FILE]
       tenant-registry audit verify --file EXPORT [--checkpoint FILE] [--public-key FILE]

  checkpoint  sign the chain's current head and print it as JSON (keep it elsewhere)
  verify      walk the chain from its base; exit 0 intact, 1 broken, 2 usage
  --tenant    the tenant's chain (also of a deleted tenant); omitted: the platform chain
  --file      verify an NDJSON export (GET /v1/tenants/{id}/audit/events:export) offline, no database
  --public-key  PEM of GET /v1/audit/public-key, to check checkpoints offline
              (default: derived from AUDIT_SIGNING_KEY_FILE when set)`;

type Out = { log(line: string): void; error(line: string): void };

/** The audit command: parse, call one function, return the exit code. */
export async function runAudit(args: readonly string[], config: Config, out: Out): Promise<number> {
  const [command, ...rest] = args;
  const options = new Map<string, string>();
  for (let i = 0; i < rest.length; i += 2) {
    const [flag, value] = [rest[i]!, rest[i + 1]];
    if (!["--tenant", "--checkpoint", "--file", "--public-key"].includes(flag) || value === undefined || options.has(flag)) {
      out.error(AUDIT_USAGE);
      return 2;
    }
    options.set(flag, value);
  }
  const offline = options.has("--file");
  if (
    (command !== "verify" && command !== "checkpoint") ||
    (command === "checkpoint" && (options.has("--checkpoint") || offline)) ||
    (offline && options.has("--tenant")) ||
    (!offline && options.has("--public-key"))
  ) {
    out.error(AUDIT_USAGE);
    return 2;
  }
  const tenant = options.get("--tenant");
  if (tenant !== undefined && !isUuid(tenant)) {
    out.error("--tenant: must be a tenant id (UUID)");
    return 2;
  }
  let checkpoint: Checkpoint | undefined;
  const file = options.get("--checkpoint");
  if (file !== undefined) {
    let parsed: ReturnType<typeof checkpointFromJson>;
    try {
      parsed = checkpointFromJson(JSON.parse(await readFile(file, "utf8")));
    } catch {
      out.error(`--checkpoint: cannot read ${file} as JSON`);
      return 2;
    }
    if ("problem" in parsed) {
      out.error(`--checkpoint: ${parsed.problem}`);
      return 2;
    }
    checkpoint = parsed;
  }
  if (offline) return verifyFile(options.get("--file")!, checkpoint, options.get("--public-key"), config, out);
  if (config.databaseUrl === undefined) {
    out.error("DATABASE_URL: required for audit");
    return 2;
  }
  const chainId = tenant?.toLowerCase() ?? PLATFORM_CHAIN;
  const signer = await loadAuditSigner(config.audit.signingKeyFile, config.appEnv);
  const db = await createDatabasePool(config.databaseUrl);
  try {
    if (command === "checkpoint") {
      out.log(JSON.stringify(checkpointToJson(await signChainHead(db, signer, chainId, new Date())), null, 2));
      return 0;
    }
    const verdict = await verifyStoredChain(db, chainId, checkpoint, signer.publicKey);
    printVerdict(out, verdict);
    return verdict.intact ? 0 : 1;
  } finally {
    await db.end();
  }
}

/** A verdict as indented JSON, its sequences (bigints) as decimal strings. */
function printVerdict(out: Out, verdict: object): void {
  out.log(JSON.stringify(Object.fromEntries(Object.entries(verdict).map(([k, v]) => [k, typeof v === "bigint" ? v.toString() : v])), null, 2));
}

/** The file's lines, one at a time: an export of any size in constant memory. */
function linesOf(file: string): AsyncIterable<string> {
  return createInterface({ input: createReadStream(file, { encoding: "utf8" }), crlfDelay: Infinity });
}

async function publicKeyFor(file: string | undefined, config: Config): Promise<KeyObject | { problem: string } | undefined> {
  const [flag, path] = file !== undefined ? ["--public-key", file] : ["AUDIT_SIGNING_KEY_FILE", config.audit.signingKeyFile];
  if (path === undefined) return undefined;
  try {
    // A private key's file gives its public key too; an auditor needs only the public one.
    return createPublicKey(await readFile(path, "utf8"));
  } catch {
    return { problem: `${flag}: cannot read ${path} as a PEM key` };
  }
}

/** `audit verify --file`: no database; the verdict as JSON, exit 0 intact, 1 broken, 2 usage. */
async function verifyFile(file: string, given: Checkpoint | undefined, keyFile: string | undefined, config: Config, out: Out): Promise<number> {
  let scan: Awaited<ReturnType<typeof scanExport>>;
  try {
    scan = await scanExport(linesOf(file));
  } catch {
    out.error(`--file: cannot read ${file}`);
    return 2;
  }
  if ("problem" in scan) {
    printVerdict(out, { intact: false, problem: "malformed", detail: scan.problem });
    return 1;
  }
  const chainId = scan.chainId ?? scan.base?.chainId ?? scan.checkpoint?.chainId ?? given?.chainId;
  if (chainId === undefined) {
    printVerdict(out, { intact: false, problem: "malformed", detail: "the file holds no events and no checkpoint" });
    return 1;
  }
  const key = await publicKeyFor(keyFile, config);
  if (key !== undefined && "problem" in key) {
    out.error(key.problem);
    return 2;
  }
  if (key === undefined && (scan.checkpoint || scan.base || given)) {
    out.error("--public-key: required to check the file's signed checkpoint and base (the PEM of GET /v1/audit/public-key)");
    return 2;
  }
  const verdict = await verifyExport(linesOf(file), chainId, { base: scan.base, file: scan.checkpoint, given }, key);
  printVerdict(out, verdict);
  return verdict.intact ? 0 : 1;
}
