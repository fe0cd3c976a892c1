import { randomBytes, randomUUID } from "node:crypto";
import type pg from "pg";
import type { OidcIssuer } from "./oidc-issuer.js";

export type RoleName = "platform-admin" | "service" | "tenant-admin" | "tenant-viewer";

/** A Keycloak-shaped access token for a principal with realm roles (and a tenant claim). */
export async function tokenFor(
  issuer: OidcIssuer,
  role: RoleName,
  options: { tenantId?: string; subject?: string; name?: string } = {},
): Promise<string> {
  const service = role === "service";
  return issuer.issue({
    sub: options.subject ?? `${role}-${randomUUID()}`,
    azp: service ? "certifai-api" : "registry-console",
    preferred_username: service ? "service-account-certifai-api" : `${role}-user`,
    ...(options.name ? { name: options.name } : {}),
    realm_access: { roles: [role, "offline_access"] },
    ...(options.tenantId ? { tenant_id: options.tenantId } : {}),
  });
}

/** A project row straight in the table. */
export async function insertProject(sql: pg.Client, tenantId: string): Promise<string> {
  const slug = `p-${randomBytes(5).toString("hex")}`;
  const { rows } = await sql.query<{ id: string }>(
    "INSERT INTO tenant_projects (tenant_id, slug, name) VALUES ($1, $2, $2) RETURNING id",
    [tenantId, slug],
  );
  return rows[0]!.id;
}

/** An API key row with a random hash: a key to list, get, revoke or rotate, never to present. */
export async function insertApiKeyRow(sql: pg.Client, tenantId: string): Promise<string> {
  const { rows } = await sql.query<{ id: string }>(
    "INSERT INTO api_keys (tenant_id, name, prefix, secret_hash) VALUES ($1, 'fixture', $2, $3) RETURNING id",
    [tenantId, `trk_${randomBytes(6).toString("hex")}`, randomBytes(32)],
  );
  return rows[0]!.id;
}

export async function insertIdpConfig(sql: pg.Client, tenantId: string): Promise<void> {
  await sql.query(
    "INSERT INTO tenant_idp_config (tenant_id, protocol, issuer_url, client_id) VALUES ($1, 'oidc', 'https://idp.example.com/realms/x', 'c')",
    [tenantId],
  );
}
