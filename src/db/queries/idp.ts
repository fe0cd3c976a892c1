import { sql } from "slonik";
import { z } from "zod";
import { IDP_PROTOCOLS, type IdpConfig, type IdpConfigInput } from "../../domain/idp.js";
import type { Db } from "./tenants.js";

const idpConfigRow = z.object({
  id: z.guid(),
  tenant_id: z.guid(),
  protocol: z.enum(IDP_PROTOCOLS),
  issuer_url: z.string(),
  client_id: z.string(),
  client_secret_ref: z.string(),
  keycloak_realm: z.string(),
  email_domains: z.array(z.string()),
  enabled: z.boolean(),
  created_at: z.date(),
  updated_at: z.date(),
});

function toIdpConfig(row: z.infer<typeof idpConfigRow>): IdpConfig {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    protocol: row.protocol,
    issuerUrl: row.issuer_url,
    clientId: row.client_id,
    clientSecretRef: row.client_secret_ref,
    keycloakRealm: row.keycloak_realm,
    emailDomains: row.email_domains,
    enabled: row.enabled,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

// The config and its domains in one statement (the domains by tenant_idp_email_domains_tenant_id_idx).
const selectIdpConfig = sql.fragment`
  SELECT c.id, c.tenant_id, c.protocol::text AS protocol, c.issuer_url, c.client_id, c.client_secret_ref,
         c.keycloak_realm,
         COALESCE(
           (SELECT array_agg(d.domain ORDER BY d.domain) FROM tenant_idp_email_domains d WHERE d.tenant_id = c.tenant_id),
           '{}'
         ) AS email_domains,
         c.enabled, c.created_at, c.updated_at
  FROM tenant_idp_config c`;

export async function findIdpConfigByTenant(db: Db, tenantId: string): Promise<IdpConfig | null> {
  const row = await db.maybeOne(sql.type(idpConfigRow)`${selectIdpConfig} WHERE c.tenant_id = ${tenantId}`);
  return row && toIdpConfig(row);
}

/** Login routing: the enabled config owning exactly this (lowercase) domain, by the domain's primary key. */
export async function findEnabledIdpConfigByDomain(db: Db, domain: string): Promise<IdpConfig | null> {
  const row = await db.maybeOne(sql.type(idpConfigRow)`
    ${selectIdpConfig}
    JOIN tenant_idp_email_domains owner ON owner.tenant_id = c.tenant_id
    WHERE owner.domain = ${domain} AND c.enabled`);
  return row && toIdpConfig(row);
}

const upsertedRow = idpConfigRow.omit({ email_domains: true }).extend({ created: z.boolean() });

/**
 * Creates or replaces the tenant's config (not its domains: see replaceIdpEmailDomains).
 * `created` tells a first set from a replace, race-free: the row version written by
 * the INSERT branch has no xmax, the one written by DO UPDATE has.
 */
export async function upsertIdpConfig(
  tx: Db,
  input: Omit<IdpConfigInput, "emailDomains">,
): Promise<{ config: Omit<IdpConfig, "emailDomains">; created: boolean }> {
  const row = await tx.one(sql.type(upsertedRow)`
    INSERT INTO tenant_idp_config (tenant_id, protocol, issuer_url, client_id, client_secret_ref, keycloak_realm, enabled)
    VALUES (
      ${input.tenantId}, ${input.protocol}::idp_protocol, ${input.issuerUrl}, ${input.clientId},
      ${input.clientSecretRef}, ${input.keycloakRealm}, ${input.enabled}
    )
    ON CONFLICT ON CONSTRAINT tenant_idp_config_tenant_id_key DO UPDATE SET
      protocol = EXCLUDED.protocol,
      issuer_url = EXCLUDED.issuer_url,
      client_id = EXCLUDED.client_id,
      client_secret_ref = EXCLUDED.client_secret_ref,
      keycloak_realm = EXCLUDED.keycloak_realm,
      enabled = EXCLUDED.enabled
    RETURNING id, tenant_id, protocol::text AS protocol, issuer_url, client_id, client_secret_ref, keycloak_realm,
              enabled, created_at, updated_at, (xmax = 0) AS created`);
  const { created, ...config } = row;
  return { config: toIdpConfig({ ...config, email_domains: [] }), created };
}

/** The tenant's email domains as stored now, sorted (by tenant_idp_email_domains_tenant_id_idx). */
export async function listIdpEmailDomains(db: Db, tenantId: string): Promise<string[]> {
  const domains = await db.anyFirst(sql.type(z.object({ domain: z.string() }))`
    SELECT domain FROM tenant_idp_email_domains WHERE tenant_id = ${tenantId} ORDER BY domain`);
  return [...domains];
}

/**
 * Makes `domains` the tenant's email domains. Answers the domains another tenant
 * already owns (none were taken over); the caller rolls back when there are any.
 */
export async function replaceIdpEmailDomains(tx: Db, tenantId: string, domains: readonly string[]): Promise<string[]> {
  await tx.query(sql.unsafe`DELETE FROM tenant_idp_email_domains WHERE tenant_id = ${tenantId}`);
  if (domains.length === 0) return [];
  const inserted = await tx.anyFirst(sql.type(z.object({ domain: z.string() }))`
    INSERT INTO tenant_idp_email_domains (domain, tenant_id)
    SELECT domain, ${tenantId}::uuid FROM unnest(${sql.array([...domains], "text")}) AS domain
    ON CONFLICT ON CONSTRAINT tenant_idp_email_domains_pkey DO NOTHING
    RETURNING domain`);
  const mine = new Set(inserted);
  return domains.filter((d) => !mine.has(d));
}

/** Deletes the tenant's config and (by cascade) its domains; answers what was deleted. */
export async function deleteIdpConfig(tx: Db, tenantId: string): Promise<IdpConfig | null> {
  // The config's row first, in a statement of its own: a SetIdpConfig holds it until
  // it commits, and a statement that waited for it still reads the domains as they
  // were when it began. The next statement's snapshot has that change's domains,
  // so the cascade removes none that go unnamed (and stay cached elsewhere).
  const locked = await tx.maybeOneFirst(sql.type(z.object({ id: z.guid() }))`
    SELECT id FROM tenant_idp_config WHERE tenant_id = ${tenantId} FOR UPDATE`);
  if (locked === null) return null;
  const row = await tx.maybeOne(sql.type(idpConfigRow)`
    WITH deleted AS (
      DELETE FROM tenant_idp_config WHERE tenant_id = ${tenantId}
      RETURNING id, tenant_id, protocol, issuer_url, client_id, client_secret_ref, keycloak_realm, enabled, created_at, updated_at
    )
    SELECT c.id, c.tenant_id, c.protocol::text AS protocol, c.issuer_url, c.client_id, c.client_secret_ref,
           c.keycloak_realm,
           -- The statement's snapshot still shows the domains the cascade removes.
           COALESCE(
             (SELECT array_agg(d.domain ORDER BY d.domain) FROM tenant_idp_email_domains d WHERE d.tenant_id = c.tenant_id),
             '{}'
           ) AS email_domains,
           c.enabled, c.created_at, c.updated_at
    FROM deleted c`);
  return row && toIdpConfig(row);
}
