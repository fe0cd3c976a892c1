import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { IdpProtocol } from "../../gen/breakpilot/tenantregistry/v1/idp_pb.js";
import { insertApiKeyRow, insertIdpConfig, insertProject, tokenFor } from "../support/auth.js";
import { insertTenant } from "../support/fixtures.js";
import { useOidcTestServer } from "../support/harness.js";
import type { OidcIssuer } from "../support/oidc-issuer.js";
import { clientFor, type TestServer } from "../support/server.js";

type Registry = Client<typeof TenantRegistryService>;
let server: TestServer;
let issuer: OidcIssuer;
let sql: pg.Client;
useOidcTestServer((h) => {
  server = h.server;
  issuer = h.issuer;
  sql = h.sql;
});

const outcome = (p: Promise<unknown>) =>
  p.then(
    () => "OK",
    (e: unknown) => `${Code[ConnectError.from(e).code]}: ${ConnectError.from(e).rawMessage}`,
  );

type Suspended = { tenantId: string; slug: string; projectId: string; keyId: string };

async function suspendedTenant(): Promise<Suspended> {
  const tenant = await insertTenant(sql, { status: "suspended" });
  await insertIdpConfig(sql, tenant.id);
  return { tenantId: tenant.id, slug: tenant.slug, projectId: await insertProject(sql, tenant.id), keyId: await insertApiKeyRow(sql, tenant.id) };
}

/** Every change a tenant admin may make to its own tenant's resources. */
const CHANGES: Record<string, (c: Registry, t: Suspended) => Promise<unknown>> = {
  CreateProject: (c, t) => c.createProject({ tenantId: t.tenantId, slug: "new-project", name: "New" }),
  UpdateProject: (c, t) => c.updateProject({ project: { tenantId: t.tenantId, id: t.projectId, name: "Renamed" }, updateMask: { paths: ["name"] } }),
  DeleteProject: (c, t) => c.deleteProject({ tenantId: t.tenantId, id: t.projectId }),
  CreateApiKey: (c, t) => c.createApiKey({ tenantId: t.tenantId, name: "new key" }),
  RotateApiKey: (c, t) => c.rotateApiKey({ id: t.keyId }),
  RevokeApiKey: (c, t) => c.revokeApiKey({ id: t.keyId }),
  SetIdpConfig: (c, t) =>
    c.setIdpConfig({ tenantId: t.tenantId, idpConfig: { protocol: IdpProtocol.OIDC, issuerUrl: "https://idp.example.com/realms/y", clientId: "c2", enabled: true } }),
  DeleteIdpConfig: (c, t) => c.deleteIdpConfig({ tenantId: t.tenantId }),
};

describe("a suspended tenant is read-only for its own principals", () => {
  let tenant: Suspended;
  let own: Registry;
  let ownKey: Registry;
  beforeAll(async () => {
    tenant = await suspendedTenant();
    own = clientFor(TenantRegistryService, server.baseUrl, "grpc", {
      authorization: `Bearer ${await tokenFor(issuer, "tenant-admin", { tenantId: tenant.tenantId })}`,
    });
    // An admin-scoped API key of the tenant, made while it was active.
    await sql.query("UPDATE tenants SET status = 'active', suspension_reason = '' WHERE id = $1", [tenant.tenantId]);
    const admin = clientFor(TenantRegistryService, server.baseUrl, "grpc", { authorization: `Bearer ${await tokenFor(issuer, "platform-admin")}` });
    const { secret } = await admin.createApiKey({ tenantId: tenant.tenantId, name: "admin key", scopes: ["tenant-admin"] });
    await sql.query("UPDATE tenants SET status = 'suspended', suspension_reason = 'fixture' WHERE id = $1", [tenant.tenantId]);
    ownKey = clientFor(TenantRegistryService, server.baseUrl, "connect-json-h1", { authorization: `Bearer ${secret}` });
  });

  it.each(Object.keys(CHANGES))("%s by its tenant admin: FailedPrecondition naming the status, nothing changed", async (rpc) => {
    const before = await sql.query("SELECT (SELECT count(*) FROM tenant_projects WHERE tenant_id = $1) AS p, (SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL) AS k", [tenant.tenantId]);
    expect(await outcome(CHANGES[rpc]!(own, tenant))).toMatch(/^FailedPrecondition: tenant .* is suspended/);
    const after = await sql.query("SELECT (SELECT count(*) FROM tenant_projects WHERE tenant_id = $1) AS p, (SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL) AS k", [tenant.tenantId]);
    expect(after.rows).toEqual(before.rows);
  });

  it.each(["CreateProject", "CreateApiKey", "SetIdpConfig"])("%s by its own API key: refused before that, the key does not authenticate", async (rpc) => {
    expect(await outcome(CHANGES[rpc]!(ownKey, tenant))).toMatch(/^Unauthenticated: api key rejected/);
  });

  it("reads still work", async () => {
    expect(await outcome(own.getTenant({ id: tenant.tenantId }))).toBe("OK");
    expect(await outcome(own.listProjects({ tenantId: tenant.tenantId }))).toBe("OK");
    expect(await outcome(own.listApiKeys({ tenantId: tenant.tenantId }))).toBe("OK");
    expect(await outcome(own.getIdpConfig({ tenantId: tenant.tenantId }))).toBe("OK");
  });
});

describe("platform admins keep acting on a suspended tenant", () => {
  it.each(Object.keys(CHANGES))("%s by a platform admin succeeds", async (rpc) => {
    const tenant = await suspendedTenant();
    const admin = clientFor(TenantRegistryService, server.baseUrl, "grpc", { authorization: `Bearer ${await tokenFor(issuer, "platform-admin")}` });
    expect(await outcome(CHANGES[rpc]!(admin, tenant))).toBe("OK");
  });
});
