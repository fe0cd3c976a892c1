import { randomUUID } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, isAbsolute, join } from "node:path";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from "jose";
import type { Config } from "../config.js";
import { PACKAGE_ROOT } from "../paths.js";
import type { Role } from "./principal.js";

/**
 * A dev-only OpenID issuer inside the server (KEYCLOAK_ISSUER=dev): a discovery document
 * and a JWKS on the server's own port, and tokens shaped like Keycloak's access tokens,
 * signed with one key kept in a file under .data/. The server verifies them with the same
 * OIDC verifier as production tokens (discovery, JWKS, iss, aud, typ, exp), so trying
 * roles locally exercises the real path without a Keycloak.
 */
export type DevIssuer = {
  readonly issuer: string;
  /** The issuer's public documents by request path: discovery and JWKS. */
  readonly documents: ReadonlyMap<string, unknown>;
  /** An access token for `role`, valid for `ttlSec`. */
  issue(options: DevTokenOptions): Promise<string>;
};

export type DevTokenOptions = {
  readonly role: Role;
  /** Required for the tenant roles, refused for the platform roles. */
  readonly tenantId?: string | undefined;
  readonly ttlSec: number;
};

export type DevIssuerSettings = {
  /** The issuer URL (`http://127.0.0.1:8090/dev-issuer`), derived by config from ADDR. */
  readonly issuer: string;
  readonly keyFile: string;
  readonly audience: string;
  readonly tenantClaim: string;
};

/** The dev issuer as config describes it: the server and `dev-token` sign with the same settings. */
export function devIssuerSettings(config: Config): DevIssuerSettings {
  if (!config.devIssuer) throw new Error("the dev issuer needs KEYCLOAK_ISSUER=dev");
  const { keyFile } = config.devIssuer;
  return {
    issuer: config.keycloakIssuer,
    keyFile: isAbsolute(keyFile) ? keyFile : join(PACKAGE_ROOT, keyFile),
    audience: config.auth.audience,
    tenantClaim: config.auth.tenantClaim,
  };
}

type StoredKey = { readonly kid: string; readonly privateJwk: JWK };

const ALG = "ES256";
const TENANT_ROLES: readonly Role[] = ["tenant-admin", "tenant-viewer"];

export async function loadDevIssuer(settings: DevIssuerSettings): Promise<DevIssuer> {
  const stored = await loadOrCreateKey(settings.keyFile);
  const privateKey = await importJWK(stored.privateJwk, ALG);
  const { d: _private, ...publicJwk } = stored.privateJwk;
  const path = new URL(settings.issuer).pathname.replace(/\/+$/, "");
  const documents = new Map<string, unknown>([
    [
      `${path}/.well-known/openid-configuration`,
      {
        issuer: settings.issuer,
        jwks_uri: `${settings.issuer}/jwks`,
        grant_types_supported: [],
        response_types_supported: ["token"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: [ALG],
      },
    ],
    [`${path}/jwks`, { keys: [{ ...publicJwk, kid: stored.kid, alg: ALG, use: "sig" }] }],
  ]);

  return {
    issuer: settings.issuer,
    documents,
    async issue({ role, tenantId, ttlSec }) {
      const tenantRole = TENANT_ROLES.includes(role);
      if (tenantRole && !tenantId) throw new Error(`a ${role} token needs a tenant (--tenant <slug or id>)`);
      if (!tenantRole && tenantId) throw new Error(`--tenant is for tenant-admin and tenant-viewer; a ${role} acts on every tenant`);
      const service = role === "service";
      // The shapes Keycloak gives a user's and a service account's access tokens.
      const claims = {
        typ: "Bearer",
        azp: service ? "dev-service" : "registry-console",
        preferred_username: service ? "service-account-dev-service" : `dev-${role}`,
        name: service ? undefined : `dev ${role}`,
        realm_access: { roles: [role] },
        ...(tenantId ? { [settings.tenantClaim]: tenantId } : {}),
      };
      return new SignJWT(claims)
        .setProtectedHeader({ alg: ALG, kid: stored.kid, typ: "JWT" })
        .setIssuer(settings.issuer)
        .setAudience(settings.audience)
        .setSubject(service ? "dev-service" : `dev-${role}${tenantId ? `-${tenantId}` : ""}`)
        .setJti(randomUUID())
        .setIssuedAt()
        .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSec)
        .sign(privateKey);
    },
  };
}

/**
 * One key for the life of the .data folder, so tokens survive server restarts. Created
 * on first use by whichever of the server and dev-token comes first (exclusive create;
 * the loser reads the winner's file). Readable by the owner only.
 */
async function loadOrCreateKey(file: string): Promise<StoredKey> {
  try {
    return parseKey(await readFile(file, "utf8"), file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const { privateKey } = await generateKeyPair(ALG, { extractable: true });
  const privateJwk = await exportJWK(privateKey);
  const stored: StoredKey = { kid: await calculateJwkThumbprint(privateJwk), privateJwk };
  await mkdir(dirname(file), { recursive: true });
  try {
    await writeFile(file, `${JSON.stringify(stored)}\n`, { flag: "wx", mode: 0o600 });
    return stored;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    return parseKey(await readFile(file, "utf8"), file);
  }
}

function parseKey(text: string, file: string): StoredKey {
  const parsed = JSON.parse(text) as Partial<StoredKey>;
  if (typeof parsed.kid !== "string" || typeof parsed.privateJwk?.d !== "string") {
    throw new Error(`${file} is not a dev issuer key: delete it and a new one is made`);
  }
  return parsed as StoredKey;
}
