import { readFile } from "node:fs/promises";
import type { Config } from "../config.js";
import { createDatabasePool } from "../db/pool.js";
import { checkpointFromJson, checkpointToJson, PLATFORM_CHAIN, type Checkpoint } from "../domain/audit-chain.js";
import { isUuid } from "../domain/ids.js";
import { signChainHead, verifyStoredChain } from "../service/audit-chain.js";
import { loadAuditSigner } from "../service/audit-signing-key.js";

export const AUDIT_USAGE = `usage: tenant-registry audit checkpoint [--tenant ID]
       tenant-registry audit verify [--tenant ID] [--checkpoint FILE]

  checkpoint  sign the chain's current head and print it as JSON (keep it elsewhere)
  verify      walk the chain from its base; exit 0 intact, 1 broken, 2 usage
  --tenant    the tenant's chain (also of a deleted tenant); omitted: the platform chain`;

type Out = { log(line: string): void; error(line: string): void };

/** The audit command: parse, call one function, return the exit code. */
export async function runAudit(args: readonly string[], config: Config, out: Out): Promise<number> {
  const [command, ...rest] = args;
  const options = new Map<string, string>();
  for (let i = 0; i < rest.length; i += 2) {
    const [flag, value] = [rest[i]!, rest[i + 1]];
    if (!["--tenant", "--checkpoint"].includes(flag) || value === undefined || options.has(flag)) {
      out.error(AUDIT_USAGE);
      return 2;
    }
    options.set(flag, value);
  }
  if ((command !== "verify" && command !== "checkpoint") || (command === "checkpoint" && options.has("--checkpoint"))) {
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
    const json = Object.fromEntries(Object.entries(verdict).map(([k, v]) => [k, typeof v === "bigint" ? v.toString() : v]));
    out.log(JSON.stringify(json, null, 2));
    return verdict.intact ? 0 : 1;
  } finally {
    await db.end();
  }
}
