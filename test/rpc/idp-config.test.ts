import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdpProtocol } from "../../gen/breakpilot/tenantregistry/v1/idp_pb.js";
import { TenantStatus } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { permissionsOfScopes, ROLE_PERMISSIONS } from "../../src/auth/permissions.js";
import { tokenFor } from "../support/auth.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { auditEvents, insertTenant, uniqueSlug } from "../support/fixtures.js";
import { startOidcIssuer, type OidcIssuer } from "../support/oidc-issuer.js";
import { clientFor, startTestServer, type TestServer, type TransportName } from "../support/server.js";
import { restFetch } from "../support/rest.js";

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
    const secrets = [
      "s3cr3t-P@ssw0rd-value",
      "vault:kv/missing-slashes",
      "https://user:hunter2@vault.example.com/kv",
      "vault://user:hunter2@vault.example.com/kv",
      "vault:// spaced",
    ];
    for (const secret of secrets) {
      const error = await failure(
        client().setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([], { clientSecretRef: secret }) }),
      );
      expect(error, secret).toMatchObject({
        code: Code.InvalidArgument,
        rawMessage: expect.stringContaining("idp_config.client_secret_ref: "),
      });
      expect(error?.rawMessage).toContain("pass a reference, not the secret");
      expect(error?.rawMessage).not.toContain(secret);
    }
    const refs = ["vault://kv/tenants/acme/oidc", "k8s://ns/name/key", "aws-sm://arn:aws:secretsmanager:eu-central-1:1:secret:x", "gcp-sm://projects/p/secrets/s/versions/1", "azure-kv://acme-vault/oidc-secret"];
    for (const ref of refs) {
      const { idpConfig } = await client().setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([], { clientSecretRef: ref }) });
      expect(idpConfig?.clientSecretRef).toBe(ref);
    }
    const logs = server.logText();
    for (const secret of [...secrets, ...refs]) expect(logs).not.toContain(secret);
    const events = await auditEvents(sql, { tenantId: tenant.id });
    expect(events).toHaveLength(refs.length); // one per accepted set; the rejected ones left none
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

  it("client_secret_ref points into a known secret store only: env://, files and unknown schemes are rejected", async () => {
    const tenant = await insertTenant(sql);
    const outside = [
      "env://KEYCLOAK_ADMIN_SECRET", // the environment of whichever service reads the reference
      "env://OIDC_SECRET",
      "file:///etc/tenant-registry/secrets",
      "https://vault.example.com/v1/kv/acme",
      "s3://bucket/oidc-secret",
      "Vault://kv/upper-case-scheme",
      "vault:///kv/no-mount",
      "vault://kv/tenants/acme/../../other/oidc",
    ];
    for (const ref of outside) {
      const error = await failure(client().setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([], { clientSecretRef: ref }) }));
      expect(error, ref).toMatchObject({ code: Code.InvalidArgument, rawMessage: expect.stringMatching(/^idp_config\.client_secret_ref: /) });
      // The message names the stores a reference may point into.
      for (const scheme of ["vault://", "k8s://", "aws-sm://", "gcp-sm://", "azure-kv://"]) expect(error?.rawMessage).toContain(scheme);
      expect(error?.rawMessage).not.toContain(ref);
    }
    expect(await failure(client().getIdpConfig({ tenantId: tenant.id }))).toMatchObject({ code: Code.NotFound });
    expect(await auditEvents(sql, { tenantId: tenant.id })).toEqual([]);
  });

  it("outside dev, the issuer may not be an internal host (SSRF); dev accepts them", async () => {
    const tenant = await insertTenant(sql);
    const internal = [
      "https://localhost/realms/x",
      "https://LOCALHOST.:8443/realms/x",
      "https://keycloak.localhost/realms/x",
      "https://127.0.0.1/realms/x",
      "https://127.1/realms/x", // the URL parser canonicalises these to 127.0.0.1
      "https://2130706433/realms/x",
      "https://0x7f000001/realms/x",
      "https://0.0.0.0/realms/x",
      "https://10.1.2.3/realms/x",
      "https://172.16.0.1/realms/x",
      "https://172.31.255.254/realms/x",
      "https://192.168.1.10/realms/x",
      "https://169.254.169.254/latest/meta-data/",
      "https://100.64.0.1/realms/x",
      "https://[::1]/realms/x",
      "https://[::]/realms/x",
      "https://[fd12:3456::1]/realms/x",
      "https://[fc00::1]/realms/x",
      "https://[fe80::1]/realms/x",
      "https://[::ffff:10.0.0.1]/realms/x",
      "https://[::ffff:127.0.0.1]/realms/x",
      "https://keycloak/realms/x",
      "https://metadata.google.internal/computeMetadata/v1/",
      "https://keycloak.auth.svc.cluster.local/realms/x",
    ];
    for (const issuerUrl of internal) {
      expect(await failure(prodClient().setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([], { issuerUrl }) })), issuerUrl).toMatchObject({
        code: Code.InvalidArgument,
        rawMessage: expect.stringMatching(/^idp_config\.issuer_url: must not point at an internal host/),
      });
    }
    expect(await auditEvents(sql, { tenantId: tenant.id })).toEqual([]);

    // Public addresses next to the private ranges, and names, are fine.
    for (const issuerUrl of ["https://172.32.0.1/realms/x", "https://192.169.0.1/realms/x", "https://8.8.8.8/realms/x", "https://[2001:db8::1]/realms/x", "https://login.localhost-corp.example/realms/x"]) {
      const { idpConfig } = await prodClient().setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([], { issuerUrl }) });
      expect(idpConfig?.issuerUrl, issuerUrl).toBe(issuerUrl);
    }
    // Dev runs next to a local Keycloak.
    for (const issuerUrl of [...internal, "http://localhost:8080/realms/dev", "http://keycloak:8080/realms/dev"]) {
      const { idpConfig } = await client().setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([], { issuerUrl }) });
      expect(idpConfig?.issuerUrl, issuerUrl).toBe(issuerUrl);
    }
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

    const put = await restFetch(url(path), {
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

    expect(await (await restFetch(url(path))).json()).toEqual(config);

    const resolved = await restFetch(url(`/v1/idp-configs:resolve?email=${encodeURIComponent(`a@${domain}`)}`));
    expect(resolved.status).toBe(200);
    expect(await resolved.json()).toMatchObject({
      tenant: { id: tenant.id, slug: tenant.slug, status: "active", plan: "starter" },
      idpConfig: config,
    });

    const deleted = await restFetch(url(path), { method: "DELETE" });
    expect(deleted.status).toBe(200);
    expect(await deleted.json()).toEqual({});

    const gone = await restFetch(url(`/v1/idp-configs:resolve?email=${encodeURIComponent(`a@${domain}`)}`));
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
      restFetch(url(`/v1/tenants/${tenantId}/idp-config`), { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

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

    const badEmail = await restFetch(url("/v1/idp-configs:resolve?email=nobody"));
    expect(badEmail.status).toBe(400);
    expect(await badEmail.json()).toMatchObject({ code: "invalid_argument", fieldViolations: [{ field: "email" }] });

    const none = await restFetch(url(`/v1/tenants/${claimant.id}/idp-config`));
    expect(none.status).toBe(404);
  });
});

describe("email domains are assigned by a platform admin, not claimed by a tenant", () => {
  let issuer: OidcIssuer;
  /** AUTH_MODE=oidc: every call carries a token for a role. */
  let authServer: TestServer;
  beforeAll(async () => {
    issuer = await startOidcIssuer();
    authServer = await startTestServer(await db.pool(), { auth: { mode: "oidc", issuer: issuer.issuer } });
  });
  afterAll(async () => {
    await authServer?.close();
    await issuer?.stop();
  });

  const as = async (role: "platform-admin" | "tenant-admin", tenantId: string | undefined, transport: TransportName) =>
    clientFor(TenantRegistryService, authServer.baseUrl, transport, { authorization: `Bearer ${await tokenFor(issuer, role, { tenantId })}` });
  const denied = {
    code: Code.PermissionDenied,
    rawMessage: expect.stringContaining("email_domains are assigned by a platform admin once the domain's ownership is verified"),
  };

  describe.each(["grpc", "connect-json-h1"] as TransportName[])("over %s", (transport) => {
    it("a tenant admin sets and replaces its config keeping the domains; adding or removing one is PermissionDenied and changes nothing", async () => {
      const tenant = await insertTenant(sql);
      const other = await insertTenant(sql);
      const admin = await as("platform-admin", undefined, transport);
      const tenantAdmin = await as("tenant-admin", tenant.id, transport);
      const [a, b, c, othersDomain] = [uniqueDomain(), uniqueDomain(), uniqueDomain(), uniqueDomain()];
      await admin.setIdpConfig({ tenantId: other.id, idpConfig: oidc([othersDomain]) });

      // A first set: without domains only. The denied attempt leaves no config behind.
      expect(await failure(tenantAdmin.setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([a]) }))).toMatchObject(denied);
      expect(await failure(tenantAdmin.getIdpConfig({ tenantId: tenant.id }))).toMatchObject({ code: Code.NotFound });
      const { idpConfig: first } = await tenantAdmin.setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([]) });
      expect(first).toMatchObject({ tenantId: tenant.id, emailDomains: [] });

      // The platform admin assigns the verified domains.
      expect((await admin.setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([a, b]) })).idpConfig?.emailDomains).toEqual([a, b].sort());

      // The tenant admin replaces everything else, listing the same domains (in any case, order or repetition).
      const { idpConfig: replaced } = await tenantAdmin.setIdpConfig({
        tenantId: tenant.id,
        idpConfig: oidc([` ${b.toUpperCase()} `, a, b], { issuerUrl: "https://login.acme.example/realms/acme", clientId: "console" }),
      });
      expect(replaced).toMatchObject({ issuerUrl: "https://login.acme.example/realms/acme", clientId: "console", emailDomains: [a, b].sort() });

      // Adding, removing, swapping or clearing: PermissionDenied. Another tenant's domain too,
      // and not AlreadyExists: a tenant admin cannot probe which domains are taken.
      const attempts = [[a, b, c], [a], [a, c], [], [c], [a, b, othersDomain]];
      for (const domains of attempts) {
        const error = await failure(tenantAdmin.setIdpConfig({ tenantId: tenant.id, idpConfig: oidc(domains, { clientId: "sneaky", enabled: false }) }));
        expect(error, domains.join(",")).toMatchObject(denied);
        expect(error?.rawMessage).not.toContain(other.id);
      }
      expect((await tenantAdmin.getIdpConfig({ tenantId: tenant.id })).idpConfig).toEqual(replaced);
      expect(await domainRows(tenant.id)).toEqual([a, b].sort());
      expect(await domainRows(other.id)).toEqual([othersDomain]);
      expect((await admin.resolveIdp({ email: `x@${a}` })).tenant?.id).toBe(tenant.id);
      expect(await failure(admin.resolveIdp({ email: `x@${c}` }))).toMatchObject({ code: Code.NotFound });
      expect((await admin.resolveIdp({ email: `x@${othersDomain}` })).tenant?.id).toBe(other.id);

      // Every denied attempt is a failure event naming what it would have changed; the changes are audited as usual.
      const events = await auditEvents(sql, { tenantId: tenant.id });
      expect(events.map((e) => `${e.action}/${e.crud}${e.is_failure ? "/denied" : ""}`)).toEqual([
        "idp_config.set/u/denied",
        "idp_config.set/c",
        "idp_config.set/u",
        "idp_config.set/u",
        ...attempts.map(() => "idp_config.set/u/denied"),
      ]);
      const failures = events.filter((e) => e.is_failure);
      expect(failures[0]).toMatchObject({
        actor_type: "user",
        target_type: "tenant",
        target_id: tenant.id,
        fields: { rpc: "SetIdpConfig", permission: "idp:domains", code: "PermissionDenied", email_domains_added: [a], email_domains_removed: [] },
      });
      expect(failures.slice(1).map((e) => [e.fields.email_domains_added, e.fields.email_domains_removed])).toEqual([
        [[c], []],
        [[], [b]],
        [[c], [b]],
        [[], [a, b].sort()],
        [[c], [a, b].sort()],
        [[othersDomain], []],
      ]);

      // The platform admin changes domains at will.
      const { idpConfig: moved } = await admin.setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([a, c]) });
      expect(moved?.emailDomains).toEqual([a, c].sort());
      expect(await domainRows(tenant.id)).toEqual([a, c].sort());

      // Deleting the config, and its domains with it, stays with the tenant admin.
      await tenantAdmin.deleteIdpConfig({ tenantId: tenant.id });
      expect(await domainRows(tenant.id)).toEqual([]);
      expect(await failure(admin.resolveIdp({ email: `x@${a}` }))).toMatchObject({ code: Code.NotFound });
      // Afterwards the domains are not the tenant's any more: setting them again is a claim.
      expect(await failure(tenantAdmin.setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([a]) }))).toMatchObject(denied);
      expect((await tenantAdmin.setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([]) })).idpConfig?.emailDomains).toEqual([]);
    });
  });

  it("only the platform admin role holds idp:domains: never a tenant role, the service role or an API key, whatever its scopes", async () => {
    expect(ROLE_PERMISSIONS["platform-admin"]).toContain("idp:domains");
    for (const role of ["service", "tenant-admin", "tenant-viewer"] as const) expect(ROLE_PERMISSIONS[role], role).not.toContain("idp:domains");
    expect(permissionsOfScopes(["tenant-admin", "idp:domains"]).has("idp:domains")).toBe(false);

    const tenant = await insertTenant(sql);
    const admin = await as("platform-admin", undefined, "grpc");
    await admin.setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([]) });
    const { secret } = await admin.createApiKey({ tenantId: tenant.id, name: "domain claimer", scopes: ["tenant-admin", "idp:domains"] });
    const key = clientFor(TenantRegistryService, authServer.baseUrl, "grpc", { authorization: `Bearer ${secret}` });
    expect(await failure(key.setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([uniqueDomain()]) }))).toMatchObject(denied);
    expect((await key.setIdpConfig({ tenantId: tenant.id, idpConfig: oidc([], { clientId: "by-key" }) })).idpConfig?.clientId).toBe("by-key");
    expect(await domainRows(tenant.id)).toEqual([]);
  });

  it("over REST a tenant admin's claim is 403 permission_denied", async () => {
    const tenant = await insertTenant(sql);
    const token = await tokenFor(issuer, "tenant-admin", { tenantId: tenant.id });
    const put = await restFetch(`${authServer.baseUrl}/v1/tenants/${tenant.id}/idp-config`, {
      method: "PUT",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ protocol: "oidc", issuerUrl: "https://idp.example.com/realms/x", clientId: "c", emailDomains: ["gmail.com"], enabled: true }),
    });
    expect(put.status).toBe(403);
    expect(await put.json()).toEqual({ code: "permission_denied", message: expect.stringContaining("assigned by a platform admin") });
    expect(await failure(clientFor(TenantRegistryService, server.baseUrl, "grpc").resolveIdp({ email: "someone@gmail.com" }))).toMatchObject({
      code: Code.NotFound,
    });
  });
});
