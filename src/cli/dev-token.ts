import { parseArgs } from "node:util";
import { devIssuerSettings, loadDevIssuer, type DevIssuer } from "../auth/dev-issuer.js";
import { ROLES, type Role } from "../auth/principal.js";
import type { Config } from "../config.js";

export const DEV_TOKEN_USAGE = `usage: tenant-registry dev-token --role <${ROLES.join(" | ")}> [--tenant <slug or id>] [--ttl 1h]

  Prints an access token from the dev issuer (KEYCLOAK_ISSUER=dev, APP_ENV=dev) for a
  server started with AUTH_MODE=oidc KEYCLOAK_ISSUER=dev and the same ADDR.
  --tenant   the tenant of a tenant-admin or tenant-viewer (a slug is looked up on the server)
  --ttl      lifetime: 90s, 30m, 1h, 7d (default 1h, at most 30d)`;

type Out = { log(line: string): void; error(line: string): void };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_TTL_SEC = 30 * 24 * 3600;

/** dev-token: parse, sign, print. Exit code 2 for usage errors, 1 when the token cannot be made. */
export async function runDevToken(args: readonly string[], config: Config, out: Out): Promise<number> {
  let values: { role?: string | undefined; tenant?: string | undefined; ttl?: string | undefined };
  try {
    ({ values } = parseArgs({
      args: [...args],
      options: { role: { type: "string" }, tenant: { type: "string" }, ttl: { type: "string", default: "1h" } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    out.error(`${(error as Error).message}\n${DEV_TOKEN_USAGE}`);
    return 2;
  }
  if (!values.role || !(ROLES as readonly string[]).includes(values.role)) {
    out.error(`--role: expected one of ${ROLES.join(", ")}\n${DEV_TOKEN_USAGE}`);
    return 2;
  }
  const ttlSec = parseTtl(values.ttl ?? "1h");
  if (ttlSec === undefined) {
    out.error(`--ttl: expected a duration such as 90s, 30m, 1h or 7d, at most 30d\n${DEV_TOKEN_USAGE}`);
    return 2;
  }
  if (!config.devIssuer) {
    out.error("dev-token signs for the dev issuer only: run it with KEYCLOAK_ISSUER=dev (or unset) and APP_ENV=dev");
    return 1;
  }
  const issuer = await loadDevIssuer(devIssuerSettings(config));
  try {
    const tenantId = values.tenant === undefined ? undefined : await tenantIdOf(values.tenant, issuer);
    out.log(await issuer.issue({ role: values.role as Role, tenantId, ttlSec }));
    return 0;
  } catch (error) {
    out.error(`dev-token: ${(error as Error).message}`);
    return 1;
  }
}

function parseTtl(text: string): number | undefined {
  const match = /^(\d+)(s|m|h|d)?$/.exec(text.trim());
  if (!match) return undefined;
  const seconds = Number(match[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[(match[2] ?? "s") as "s" | "m" | "h" | "d"];
  return seconds > 0 && seconds <= MAX_TTL_SEC ? seconds : undefined;
}

/** An id is taken as given; a slug is asked of the running server, as a short-lived platform admin. */
async function tenantIdOf(tenant: string, issuer: DevIssuer): Promise<string> {
  if (UUID.test(tenant)) return tenant.toLowerCase();
  const origin = new URL(issuer.issuer).origin;
  const token = await issuer.issue({ role: "platform-admin", ttlSec: 60 });
  let res: Response;
  try {
    res = await fetch(`${origin}/v1/tenants/by-slug/${encodeURIComponent(tenant)}`, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(5_000),
    });
  } catch {
    throw new Error(`cannot look up tenant "${tenant}": no server answers at ${origin} (start it, or pass the tenant id)`);
  }
  const body = (await res.json().catch(() => ({}))) as { id?: unknown; message?: unknown };
  if (res.status !== 200 || typeof body.id !== "string") {
    throw new Error(`cannot look up tenant "${tenant}" at ${origin}: ${res.status} ${String(body.message ?? "")}`.trimEnd());
  }
  return body.id;
}
