import { createPrivateKey, generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, isAbsolute, join } from "node:path";
import { createAuditSigner, type AuditSigner } from "../domain/audit-chain.js";
import { PACKAGE_ROOT } from "../paths.js";

/** Where dev keeps the key it generates: beside the embedded database, never committed. */
export const DEV_SIGNING_KEY_FILE = ".data/audit-signing-key.pem";

export class SigningKeyError extends Error {
  override readonly name = "StartupError";
}

/**
 * The Ed25519 key checkpoints are signed with: AUDIT_SIGNING_KEY_FILE (a PKCS#8
 * PEM), or in dev one generated once under .data/. Stage and prod must name a
 * file: a key that changes with every start would make old checkpoints unverifiable.
 */
export async function loadAuditSigner(file: string | undefined, appEnv: "dev" | "stage" | "prod"): Promise<AuditSigner> {
  if (file === undefined && appEnv !== "dev") {
    throw new SigningKeyError(`AUDIT_SIGNING_KEY_FILE: required when APP_ENV=${appEnv} (an Ed25519 private key, PKCS#8 PEM)`);
  }
  const path = file ?? join(PACKAGE_ROOT, DEV_SIGNING_KEY_FILE);
  const resolved = isAbsolute(path) ? path : join(process.cwd(), path);
  if (file === undefined && !existsSync(resolved)) {
    const { privateKey } = generateKeyPairSync("ed25519");
    await mkdir(dirname(resolved), { recursive: true });
    await writeFile(resolved, privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600, flag: "wx" }).catch(
      (error: NodeJS.ErrnoException) => {
        if (error.code !== "EEXIST") throw error;
      },
    );
  }
  let pem: string;
  try {
    pem = await readFile(resolved, "utf8");
  } catch (error) {
    throw new SigningKeyError(`AUDIT_SIGNING_KEY_FILE: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
  try {
    return createAuditSigner(createPrivateKey(pem));
  } catch {
    throw new SigningKeyError(`AUDIT_SIGNING_KEY_FILE: ${path} is not an Ed25519 private key in PEM`);
  }
}

/** A key that lives as long as the process: for tests and benchmarks. */
export function ephemeralAuditSigner(): AuditSigner {
  return createAuditSigner(generateKeyPairSync("ed25519").privateKey);
}
