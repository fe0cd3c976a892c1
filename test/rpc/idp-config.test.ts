import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdpProtocol } from "../../gen/breakpilot/tenantregistry/v1/idp_pb.js";
import { TenantStatus } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { auditEvents, insertTenant, uniqueSlug } from "../support/fixtures.js";
import { clientFor, startTestServer, type TestServer, type TransportName } from "../support/server.js";

let db: TestDatabase;
/** appEnv "dev" (the default): http issuers are allowed. */
let server: TestServer;
/** appEnv "prod": https only. */
let prodServer: TestServer;
let sql: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  const pool = await db.pool();
  server = await startTestServer(pool);
  prodServer = await startTestServer(pool, { appEnv: "prod" });
  sql = await db.client();
});
afterAll(async () => {
  await server?.close();
  await prodServer?.close();
  await db?.drop();
});

const UNKNOWN_ID = "00000000-0000-4000-8000-00000000dead";
const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => ConnectError.from(e));


/** An email domain no other test uses. */
const uniqueDomain = () => `${uniqueSlug("d")}.example.com`;

const oidc = (domains: string[], overrides: Record<string, unknown> = {}) => ({
  protocol: IdpProtocol.OIDC,
  issuerUrl: "https://idp.example.com/realms/acme",
  clientId: "tenant-registry",
  clientSecretRef: "vault://kv/tenants/acme/oidc",
  keycloakRealm: "acme",
  emailDomains: domains,
  enabled: true,
  ...overrides,
});

async function domainRows(tenantId: string): Promise<string[]> {
  const { rows } = await sql.query<{ domain: string }>(
    "SELECT domain FROM tenant_idp_email_domains WHERE tenant_id = $1 ORDER BY domain",
    [tenantId],
  );
  return rows.map((r) => r.domain);
}

describe.each(["grpc", "connect-json-h1"] as TransportName[])("IdP config over %s", (transport) => {
  const client = () => clientFor(TenantRegistryService, server.baseUrl, transport);
  const prodClient = () => clientFor(TenantRegistryService, prodServer.baseUrl, transport);

  it("sets (c), reads, replaces (u) and deletes (d) a tenant's config, auditing each change without the secret reference", async () => {
    const tenant = await insertTenant(sql);
    const [a, b, c] = [uniqueDomain(), uniqueDomain(), uniqueDomain()];

    const { idpConfig } = await client().setIdpConfig({
      tenantId: tenant.id,
      idpConfig: oidc([b.toUpperCase(), a, ` ${b} `]),
    });
    expect(idpConfig).toMatchObject({
      tenantId: tenant.id,
      protocol: IdpProtocol.OIDC,
      issuerUrl: "https://idp.example.com/realms/acme",
      clientId: "tenant-registry",
      clientSecretRef: "vault://kv/tenants/acme/oidc",
      keycloakRealm: "acme",
      emailDomains: [a, b].sort(), // lowercased, deduplicated, sorted
      enabled: true,
    });
    expect(idpConfig!.createdAt?.seconds).toBeGreaterThan(0n);
    expect((await client().getIdpConfig({ tenantId: tenant.id })).idpConfig).toEqual(idpConfig);

    const { idpConfig: replaced } = await client().setIdpConfig({
      tenantId: tenant.id,
      idpConfig: {
        protocol: IdpProtocol.SAML,
        issuerUrl: "https://idp.example.com/saml/metadata",
        emailDomains: [c],
        enabled: false,
      },
    });
    expect(replaced).toMatchObject({
      protocol: IdpProtocol.SAML,
      issuerUrl: "https://idp.example.com/saml/metadata",
      clientId: "",
      clientSecretRef: "",
      keycloakRealm: "",
      emailDomains: [c],
      enabled: false,
    });
    expect((await client().getIdpConfig({ tenantId: tenant.id })).idpConfig).toEqual(replaced);
    expect(await domainRows(tenant.id)).toEqual([c]);

    await client().deleteIdpConfig({ tenantId: tenant.id });
    expect(await failure(client().getIdpConfig({ tenantId: tenant.id }))).toMatchObject({ code: Code.NotFound });
    expect(await domainRows(tenant.id)).toEqual([]);

    const events = await auditEvents(sql, { tenantId: tenant.id });
    const target = { tenant_id: tenant.id, target_type: "idp_config", is_anonymous: false, actor_id: "dev", actor_type: "user" };
    expect(events).toEqual([
      expect.objectContaining({
        ...target,
        action: "idp_config.set",
        crud: "c",
        target_name: "https://idp.example.com/realms/acme",
        fields: {
          protocol: "oidc",
          issuer_url: "https://idp.example.com/realms/acme",
          client_id: "tenant-registry",
          client_secret_ref_set: true,
          keycloak_realm: "acme",
          email_domains: [a, b].sort(),
          enabled: true,
        },
      }),
      expect.objectContaining({
        ...target,
        action: "idp_config.set",
        crud: "u",
        fields: {
          protocol: "saml",
          issuer_url: "https://idp.example.com/saml/metadata",
          client_id: "",
          client_secret_ref_set: false,
          keycloak_realm: "",
          email_domains: [c],
          enabled: false,
        },
      }),
      expect.objectContaining({ ...target, action: "idp_config.delete", crud: "d", fields: { protocol: "saml", email_domains: [c] } }),
    ]);
    // One config row per tenant: every event targets the same one.
    expect(new Set(events.map((e) => e.target_id)).size).toBe(1);
    expect(JSON.stringify(events)).not.toContain("vault://");
  });

  it("resolves an email's domain to its tenant and enabled config", async () => {
    const tenant = await insertTenant(sql);
    const domain = uniqueDomain();
    const { idpConfig } = await client().setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([domain]) });

    const resolved = await client().resolveIdp({ email: `Jane.Doe+tag@${domain.toUpperCase()}` });
    expect(resolved.idpConfig).toEqual(idpConfig);
    expect(resolved.tenant).toMatchObject({ id: tenant.id, slug: tenant.slug, status: TenantStatus.ACTIVE });
    // The domain is what follows the last '@'.
    expect((await client().resolveIdp({ email: `"odd@local"@${domain}` })).tenant?.id).toBe(tenant.id);

    // Exactly that domain: neither subdomains nor parents.
    expect(await failure(client().resolveIdp({ email: `a@sub.${domain}` }))).toMatchObject({
      code: Code.NotFound,
      rawMessage: `no identity provider for domain sub.${domain}`,
    });

    // A disabled config does not route.
    await client().setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([domain], { enabled: false }) });
    expect(await failure(client().resolveIdp({ email: `a@${domain}` }))).toMatchObject({
      code: Code.NotFound,
      rawMessage: `no identity provider for domain ${domain}`,
    });
  });

  it("rejects malformed emails naming the field", async () => {
    for (const email of ["", "no-at-sign", "@example.com", "a@localhost", "a@exa mple.com", "a@-bad-.com"]) {
      expect(await failure(client().resolveIdp({ email })), email).toMatchObject({
        code: Code.InvalidArgument,
        rawMessage: expect.stringMatching(/^email: /),
      });
    }
  });

  it("an email domain belongs to one tenant: another tenant's claim is AlreadyExists and changes nothing", async () => {
    const owner = await insertTenant(sql);
    const claimant = await insertTenant(sql);
    const [shared, free] = [uniqueDomain(), uniqueDomain()];
    const { idpConfig: ownerConfig } = await client().setIdpConfig({ tenantId: owner.id, idpConfig: oidc([shared]) });

    const conflict = await failure(client().setIdpConfig({ tenantId: claimant.id, idpConfig: oidc([free, shared]) }));
    expect(conflict).toMatchObject({ code: Code.AlreadyExists, rawMessage: `identity provider with email_domains "${shared}" already exists` });
    // Never names the owner.
    expect(conflict?.rawMessage).not.toContain(owner.id);
    expect(conflict?.rawMessage).not.toContain(owner.slug);

    // The whole set rolled back: no config, no domain, no event for the claimant.
    expect(await failure(client().getIdpConfig({ tenantId: claimant.id }))).toMatchObject({ code: Code.NotFound });
    expect(await domainRows(claimant.id)).toEqual([]);
    expect(await auditEvents(sql, { tenantId: claimant.id })).toEqual([]);
    expect((await client().getIdpConfig({ tenantId: owner.id })).idpConfig).toEqual(ownerConfig);
    expect((await client().resolveIdp({ email: `x@${shared}` })).tenant?.id).toBe(owner.id);

    // A replace that fails keeps the claimant's previous config and domains too.
    await client().setIdpConfig({ tenantId: claimant.id, idpConfig: oidc([free]) });
    expect(await failure(client().setIdpConfig({ tenantId: claimant.id, idpConfig: oidc([shared], { clientId: "changed" }) }))).toMatchObject({
      code: Code.AlreadyExists,
    });
    expect((await client().getIdpConfig({ tenantId: claimant.id })).idpConfig).toMatchObject({ clientId: "tenant-registry", emailDomains: [free] });
    expect((await auditEvents(sql, { tenantId: claimant.id })).map((e) => e.crud)).toEqual(["c"]);

    // Once the owner lets go, the domain is free.
    await client().setIdpConfig({ tenantId: owner.id, idpConfig: oidc([]) });
    await client().setIdpConfig({ tenantId: claimant.id, idpConfig: oidc([free, shared]) });
    expect((await client().resolveIdp({ email: `x@${shared}` })).tenant?.id).toBe(claimant.id);
  });

  it("validates every field, naming it", async () => {
    const tenant = await insertTenant(sql);
    const invalid = async (idpConfig: Record<string, unknown>) =>
      failure(client().setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([uniqueDomain()], idpConfig) }));

    expect(await invalid({ protocol: IdpProtocol.UNSPECIFIED })).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "idp_config.protocol: is required: oidc or saml",
    });
    expect(await invalid({ issuerUrl: "" })).toMatchObject({ code: Code.InvalidArgument, rawMessage: "idp_config.issuer_url: is required" });
    expect(await invalid({ issuerUrl: "idp.example.com/realms/x" })).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "idp_config.issuer_url: must be an absolute URL",
    });
    expect(await invalid({ issuerUrl: "ftp://idp.example.com/" })).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: expect.stringMatching(/^idp_config\.issuer_url: /),
    });
    expect(await invalid({ issuerUrl: "https://admin:hunter2@idp.example.com/" })).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "idp_config.issuer_url: must not contain credentials",
    });
    expect(await invalid({ clientId: "" })).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "idp_config.client_id: is required for oidc",
    });
    expect(await invalid({ clientId: "c".repeat(256) })).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "idp_config.client_id: must be at most 255 characters",
    });
    expect(await invalid({ keycloakRealm: "acme realm" })).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "idp_config.keycloak_realm: must be 1-64 of [A-Za-z0-9_-]",
    });
    expect(await invalid({ keycloakRealm: "r".repeat(65) })).toMatchObject({ code: Code.InvalidArgument });
    expect(await invalid({ emailDomains: ["localhost"] })).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: expect.stringMatching(/^idp_config\.email_domains: "localhost" is not a domain name/),
    });
    expect(await invalid({ emailDomains: ["bad_domain.com"] })).toMatchObject({ code: Code.InvalidArgument });
    const zone = uniqueDomain();
    const tooMany = Array.from({ length: 101 }, (_, i) => `d${i}.${zone}`);
    expect(await invalid({ emailDomains: tooMany })).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "idp_config.email_domains: may list at most 100 domains",
    });
    expect(await invalid({ tenantId: UNKNOWN_ID })).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "idp_config.tenant_id: must be empty or equal tenant_id",
    });
    expect(await failure(client().setIdpConfig({ tenantId: tenant.id }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "idp_config: is required",
    });
    expect(await failure(client().setIdpConfig({ tenantId: "x", idpConfig: oidc([]) }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "tenant_id: must be a UUID",
    });
    expect(await failure(client().getIdpConfig({ tenantId: "" }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "tenant_id: is required" });
    expect(await failure(client().deleteIdpConfig({ tenantId: "x" }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "tenant_id: must be a UUID" });

    // SAML needs no client id; exactly 100 domains are fine.
    const saml = await client().setIdpConfig({
      tenantId: tenant.id,
      idpConfig: { protocol: IdpProtocol.SAML, issuerUrl: "https://idp.example.com/saml", emailDomains: tooMany.slice(1) },
    });
    expect(saml.idpConfig?.emailDomains).toHaveLength(100);
    expect((await auditEvents(sql, { tenantId: tenant.id })).map((e) => e.action)).toEqual(["idp_config.set"]);
  });

  it("takes a reference to the client secret, never the secret itself, and never logs or echoes it", async () => {
    const tenant = await insertTenant(sql);
    const secrets = ["s3cr3t-P@ssw0rd-value", "vault:kv/missing-slashes", "https://user:hunter2@vault.example.com/kv", "env://  spaced"];
    for (const secret of secrets) {
      const error = await failure(
        client().setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([uniqueDomain()], { clientSecretRef: secret }) }),
      );
      expect(error, secret).toMatchObject({
        code: Code.InvalidArgument,
        rawMessage: expect.stringContaining("idp_config.client_secret_ref: "),
      });
      expect(error?.rawMessage).toContain("pass a reference, not the secret");
      expect(error?.rawMessage).not.toContain(secret);
    }
    for (const ref of ["vault://kv/tenants/acme/oidc", "k8s://ns/name/key", "env://OIDC_SECRET", "aws-sm://arn:aws:secretsmanager:eu-central-1:1:secret:x", "gcp-sm://projects/p/secrets/s/versions/1"]) {
      const { idpConfig } = await client().setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([], { clientSecretRef: ref }) });
      expect(idpConfig?.clientSecretRef).toBe(ref);
    }
    const logs = server.logText();
    for (const secret of [...secrets, "vault://kv/tenants/acme/oidc", "k8s://ns/name/key"]) expect(logs).not.toContain(secret);
    const events = await auditEvents(sql, { tenantId: tenant.id });
    expect(events.every((e) => !("client_secret_ref" in e.fields) && e.fields.client_secret_ref_set === true)).toBe(true);
  });

  it("http issuers are accepted in dev; prod requires https", async () => {
    const tenant = await insertTenant(sql);
    const http = oidc([], { issuerUrl: "http://keycloak.local:8080/realms/dev" });
    expect((await client().setIdpConfig({ tenantId: tenant.id, idpConfig: http })).idpConfig?.issuerUrl).toBe(
      "http://keycloak.local:8080/realms/dev",
    );
    expect(await failure(prodClient().setIdpConfig({ tenantId: tenant.id, idpConfig: http }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "idp_config.issuer_url: must use https",
    });
    const https = await prodClient().setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([]) });
    expect(https.idpConfig?.issuerUrl).toBe("https://idp.example.com/realms/acme");
  });

  it("NotFound for an unknown tenant and for a tenant without a config", async () => {
    const tenantNotFound = { code: Code.NotFound, rawMessage: `tenant ${UNKNOWN_ID} not found` };
    expect(await failure(client().setIdpConfig({ tenantId: UNKNOWN_ID, idpConfig: oidc([]) }))).toMatchObject(tenantNotFound);
    expect(await failure(client().getIdpConfig({ tenantId: UNKNOWN_ID }))).toMatchObject(tenantNotFound);
    expect(await failure(client().deleteIdpConfig({ tenantId: UNKNOWN_ID }))).toMatchObject(tenantNotFound);

    const tenant = await insertTenant(sql);
    const none = { code: Code.NotFound, rawMessage: `identity provider config of tenant ${tenant.id} not found` };
    expect(await failure(client().getIdpConfig({ tenantId: tenant.id }))).toMatchObject(none);
    expect(await failure(client().deleteIdpConfig({ tenantId: tenant.id }))).toMatchObject(none);
    expect(await auditEvents(sql, { tenantId: tenant.id })).toEqual([]);
  });

  it("an archived tenant's config is read-only: FailedPrecondition for changes, reads still work", async () => {
    const tenant = await insertTenant(sql);
    const domain = uniqueDomain();
    const { idpConfig } = await client().setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([domain]) });
    await sql.query("UPDATE tenants SET status = 'archived' WHERE id = $1", [tenant.id]);
    const archived = { code: Code.FailedPrecondition, rawMessage: expect.stringContaining("archived") };
    expect(await failure(client().setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([domain], { enabled: false }) }))).toMatchObject(archived);
    expect(await failure(client().deleteIdpConfig({ tenantId: tenant.id }))).toMatchObject(archived);
    expect((await client().getIdpConfig({ tenantId: tenant.id })).idpConfig).toEqual(idpConfig);
    expect((await auditEvents(sql, { tenantId: tenant.id })).map((e) => e.action)).toEqual(["idp_config.set"]);
  });
});

describe("IdP config over REST", () => {
  const url = (path: string) => `${server.baseUrl}${path}`;

  it("PUT sets, GET reads, resolve routes, DELETE deletes", async () => {
    const tenant = await insertTenant(sql);
    const domain = uniqueDomain();
    const path = `/v1/tenants/${tenant.id}/idp-config`;

    const put = await fetch(url(path), {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        protocol: "oidc",
        issuerUrl: "https://idp.example.com/realms/x",
        clientId: "c",
        emailDomains: [domain.replace("example", "Example").replace(".com", ".COM")],
        enabled: true,
      }),
    });
    expect(put.status).toBe(200);
    const config = await put.json();
    expect(config).toEqual({
      tenantId: tenant.id,
      protocol: "oidc",
      issuerUrl: "https://idp.example.com/realms/x",
      clientId: "c",
      clientSecretRef: "",
      keycloakRealm: "",
      emailDomains: [domain],
      enabled: true,
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      updatedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });

    expect(await (await fetch(url(path))).json()).toEqual(config);

    const resolved = await fetch(url(`/v1/idp-configs:resolve?email=${encodeURIComponent(`a@${domain}`)}`));
    expect(resolved.status).toBe(200);
    expect(await resolved.json()).toMatchObject({
      tenant: { id: tenant.id, slug: tenant.slug, status: "active", plan: "starter" },
      idpConfig: config,
    });

    const deleted = await fetch(url(path), { method: "DELETE" });
    expect(deleted.status).toBe(200);
    expect(await deleted.json()).toEqual({});

    const gone = await fetch(url(`/v1/idp-configs:resolve?email=${encodeURIComponent(`a@${domain}`)}`));
    expect(gone.status).toBe(404);
    expect(await gone.json()).toEqual({ code: "not_found", message: `no identity provider for domain ${domain}` });
    expect((await auditEvents(sql, { tenantId: tenant.id })).map((e) => `${e.action}/${e.crud}`)).toEqual([
      "idp_config.set/c",
      "idp_config.delete/d",
    ]);
  });

  it("answers errors as JSON with field violations", async () => {
    const owner = await insertTenant(sql);
    const claimant = await insertTenant(sql);
    const domain = uniqueDomain();
    const put = (tenantId: string, body: unknown) =>
      fetch(url(`/v1/tenants/${tenantId}/idp-config`), { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

    expect((await put(owner.id, { protocol: "saml", issuerUrl: "https://idp.example.com/saml", emailDomains: [domain] })).status).toBe(200);
    const conflict = await put(claimant.id, { protocol: "saml", issuerUrl: "https://idp.example.com/saml", emailDomains: [domain] });
    expect(conflict.status).toBe(409);
    expect(await conflict.json()).toEqual({ code: "already_exists", message: `identity provider with email_domains "${domain}" already exists` });

    const secret = await put(claimant.id, { protocol: "oidc", issuerUrl: "https://idp.example.com/x", clientId: "c", clientSecretRef: "plain-secret" });
    expect(secret.status).toBe(400);
    expect(await secret.json()).toMatchObject({
      code: "invalid_argument",
      fieldViolations: [{ field: "idp_config.client_secret_ref", description: expect.stringContaining("pass a reference, not the secret") }],
    });

    const badEmail = await fetch(url("/v1/idp-configs:resolve?email=nobody"));
    expect(badEmail.status).toBe(400);
    expect(await badEmail.json()).toMatchObject({ code: "invalid_argument", fieldViolations: [{ field: "email" }] });

    const none = await fetch(url(`/v1/tenants/${claimant.id}/idp-config`));
    expect(none.status).toBe(404);
  });
});
