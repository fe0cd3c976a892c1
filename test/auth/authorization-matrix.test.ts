import { randomUUID } from "node:crypto";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { ProductCode } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { IdpProtocol } from "../../gen/breakpilot/tenantregistry/v1/idp_pb.js";
import { RPC_POLICIES } from "../../src/auth/permissions.js";
import { insertApiKeyRow, insertIdpConfig, insertProject, tokenFor, type RoleName } from "../support/auth.js";
import { insertTenant, uniqueSlug } from "../support/fixtures.js";
import { useOidcTestServer } from "../support/harness.js";
import type { OidcIssuer } from "../support/oidc-issuer.js";
import { clientFor, type TestServer } from "../support/server.js";

type Registry = Client<typeof TenantRegistryService>;
type Caller = RoleName | "api-key:tenant-admin" | "api-key:tenant-viewer";
const CALLERS: readonly Caller[] = ["platform-admin", "service", "tenant-admin", "tenant-viewer", "api-key:tenant-admin", "api-key:tenant-viewer"];

/**
 * The spec: which callers may use which RPC on their own tenant ("Y"), and
 * which get PermissionDenied ("-"). Written out by hand, not derived from the
 * policy table under test.
 *                              admin service t-admin t-viewer key:admin key:viewer */
const MATRIX: Record<string, string> = {
  CreateTenant: "              Y     -       -       -        -         -",
  GetTenant: "                 Y     Y       Y       Y        Y         Y",
  GetTenantBySlug: "           Y     Y       Y       Y        Y         Y",
  ListTenants: "               Y     Y       -       -        -         -",
  UpdateTenant: "              Y     -       -       -        -         -",
  SuspendTenant: "             Y     -       -       -        -         -",
  ReactivateTenant: "          Y     -       -       -        -         -",
  ArchiveTenant: "             Y     -       -       -        -         -",
  DeleteTenant: "              Y     -       -       -        -         -",
  CreateProject: "             Y     -       Y       -        Y         -",
  GetProject: "                Y     Y       Y       Y        Y         Y",
  ListProjects: "              Y     Y       Y       Y        Y         Y",
  UpdateProject: "             Y     -       Y       -        Y         -",
  DeleteProject: "             Y     -       Y       -        Y         -",
  GrantProduct: "              Y     -       -       -        -         -",
  RevokeProduct: "             Y     -       -       -        -         -",
  ListTenantProducts: "        Y     -       Y       Y        Y         Y",
  CheckEntitlement: "          Y     Y       -       -        -         -",
  SetIdpConfig: "              Y     -       Y       -        Y         -",
  GetIdpConfig: "              Y     -       Y       -        Y         -",
  DeleteIdpConfig: "           Y     -       Y       -        Y         -",
  ResolveIdp: "                Y     Y       -       -        -         -",
  CreateApiKey: "              Y     -       Y       -        Y         -",
  ListApiKeys: "               Y     -       Y       -        Y         -",
  GetApiKey: "                 Y     -       Y       -        Y         -",
  RevokeApiKey: "              Y     -       Y       -        Y         -",
  RotateApiKey: "              Y     -       Y       -        Y         -",
  VerifyApiKey: "              Y     Y       -       -        -         -",
  RecordAuditEvents: "         Y     Y       -       -        -         -",
  ListAuditEvents: "           Y     -       Y       Y        Y         Y",
  ExportAuditEvents: "         Y     -       Y       Y        Y         Y",
  VerifyAuditChain: "          Y     -       Y       -        Y         -",
  GetAuditCheckpoint: "        Y     -       Y       -        Y         -",
  GetAuditPublicKey: "         Y     -       -       -        -         -",
  GetAuditRetention: "         Y     -       Y       Y        Y         Y",
  SetAuditRetention: "         Y     -       -       -        -         -",
  WatchChanges: "              Y     Y       Y       Y        Y         Y",
};
const allowed = (rpc: string, caller: Caller) => MATRIX[rpc]!.trim().split(/\s+/)[CALLERS.indexOf(caller)] === "Y";

/** What an allowed call answers with the fixtures below: OK, except where the request itself must fail. */
const WHEN_ALLOWED: Record<string, string> = {
  ArchiveTenant: "FailedPrecondition", // the tenant is active
  DeleteTenant: "FailedPrecondition", // the tenant is not archived
  ResolveIdp: "NotFound", // nobody owns nowhere.example
};

type World = { tenantId: string; slug: string; projectId: string; apiKeyId: string };

/** One call of each RPC against `w`'s tenant; destructive calls get fresh resources. */
const CALLS: Record<string, (c: Registry, w: World, sql: pg.Client) => Promise<unknown>> = {
  CreateTenant: (c) => c.createTenant({ slug: uniqueSlug("m"), name: "Matrix" }),
  GetTenant: (c, w) => c.getTenant({ id: w.tenantId }),
  GetTenantBySlug: (c, w) => c.getTenantBySlug({ slug: w.slug }),
  ListTenants: (c) => c.listTenants({ pageSize: 1 }),
  UpdateTenant: (c, w) => c.updateTenant({ tenant: { id: w.tenantId, name: "Renamed" }, updateMask: { paths: ["name"] } }),
  SuspendTenant: (c, w) => c.suspendTenant({ id: w.tenantId, reason: "matrix" }),
  ReactivateTenant: async (c, w) => {
    await c.suspendTenant({ id: w.tenantId, reason: "matrix" }).catch(() => undefined); // so there is something to reactivate
    return c.reactivateTenant({ id: w.tenantId });
  },
  ArchiveTenant: (c, w) => c.archiveTenant({ id: w.tenantId }), // active: FailedPrecondition when allowed
  DeleteTenant: (c, w) => c.deleteTenant({ id: w.tenantId }), // not archived: FailedPrecondition when allowed
  CreateProject: (c, w) => c.createProject({ tenantId: w.tenantId, slug: uniqueSlug("p"), name: "P" }),
  GetProject: (c, w) => c.getProject({ tenantId: w.tenantId, id: w.projectId }),
  ListProjects: (c, w) => c.listProjects({ tenantId: w.tenantId }),
  UpdateProject: (c, w) => c.updateProject({ project: { tenantId: w.tenantId, id: w.projectId, name: "Q" }, updateMask: { paths: ["name"] } }),
  DeleteProject: async (c, w, sql) => c.deleteProject({ tenantId: w.tenantId, id: await insertProject(sql, w.tenantId) }),
  GrantProduct: (c, w) => c.grantProduct({ tenantId: w.tenantId, product: ProductCode.COMPLIANCE }),
  RevokeProduct: (c, w) => c.revokeProduct({ tenantId: w.tenantId, product: ProductCode.COMPLIANCE }),
  ListTenantProducts: (c, w) => c.listTenantProducts({ tenantId: w.tenantId }),
  CheckEntitlement: (c, w) => c.checkEntitlement({ tenant: w.slug, product: ProductCode.CERTIFAI }),
  // Keeps the tenant's email domains (none): changing them takes idp:domains (test/rpc/idp-config.test.ts).
  SetIdpConfig: (c, w) =>
    c.setIdpConfig({
      tenantId: w.tenantId,
      idpConfig: { protocol: IdpProtocol.OIDC, issuerUrl: "https://idp.example.com/realms/m", clientId: "c", emailDomains: [], enabled: true },
    }),
  GetIdpConfig: (c, w) => c.getIdpConfig({ tenantId: w.tenantId }),
  DeleteIdpConfig: async (c, w, sql) => {
    await sql.query("DELETE FROM tenant_idp_config WHERE tenant_id = $1", [w.tenantId]);
    await insertIdpConfig(sql, w.tenantId);
    return c.deleteIdpConfig({ tenantId: w.tenantId });
  },
  ResolveIdp: (c) => c.resolveIdp({ email: "someone@nowhere.example" }), // NotFound when allowed
  CreateApiKey: (c, w) => c.createApiKey({ tenantId: w.tenantId, name: "matrix" }),
  ListApiKeys: (c, w) => c.listApiKeys({ tenantId: w.tenantId }),
  GetApiKey: (c, w) => c.getApiKey({ id: w.apiKeyId }),
  RevokeApiKey: async (c, w, sql) => c.revokeApiKey({ id: await insertApiKeyRow(sql, w.tenantId) }),
  RotateApiKey: async (c, w, sql) => c.rotateApiKey({ id: await insertApiKeyRow(sql, w.tenantId) }),
  VerifyApiKey: (c) => c.verifyApiKey({ key: "trk_notarealkey00_x" }),
  RecordAuditEvents: (c, w) =>
    c.recordAuditEvents({ events: [{ tenantId: w.tenantId, action: "report.view", crud: "r", actor: { id: "u1", name: "U", type: "user" } }] }),
  ListAuditEvents: (c, w) => c.listAuditEvents({ tenantId: w.tenantId }),
  ExportAuditEvents: async (c, w) => {
    for await (const _ of c.exportAuditEvents({ tenantId: w.tenantId })) {
      // drain
    }
  },
  VerifyAuditChain: (c, w) => c.verifyAuditChain({ tenantId: w.tenantId }),
  GetAuditCheckpoint: (c, w) => c.getAuditCheckpoint({ tenantId: w.tenantId }),
  GetAuditPublicKey: (c) => c.getAuditPublicKey({}),
  GetAuditRetention: (c, w) => c.getAuditRetention({ tenantId: w.tenantId }),
  SetAuditRetention: (c, w) => c.setAuditRetention({ tenantId: w.tenantId, period: { seconds: 400n * 86_400n } }),
  // The stream stays open: its first message (flush or paused) is the answer.
  WatchChanges: async (c, w) => {
    for await (const _ of c.watchChanges({ tenantId: w.tenantId })) break;
  },
};

let sql: pg.Client;
let issuer: OidcIssuer;
let server: TestServer;
let admin: Registry;

useOidcTestServer(async (h) => {
  ({ sql, issuer, server } = h);
  admin = clientFor(TenantRegistryService, server.baseUrl, "grpc", { authorization: `Bearer ${await tokenFor(issuer, "platform-admin")}` });
});

/** A tenant of the caller's own, with a product, a project, a key and an IdP config. */
async function world(): Promise<World> {
  const tenant = await insertTenant(sql, { products: ["certifai"] });
  await insertIdpConfig(sql, tenant.id);
  return { tenantId: tenant.id, slug: tenant.slug, projectId: await insertProject(sql, tenant.id), apiKeyId: await insertApiKeyRow(sql, tenant.id) };
}

/** A client acting as `caller`, confined (where the caller is tenant-scoped) to `w`'s tenant. */
async function clientAs(caller: Caller, w: World): Promise<Registry> {
  let credential: string;
  if (caller.startsWith("api-key:")) {
    const scope = caller.slice("api-key:".length);
    const { secret } = await admin.createApiKey({ tenantId: w.tenantId, name: `as ${scope}`, scopes: [scope] });
    credential = secret;
  } else {
    credential = await tokenFor(issuer, caller as RoleName, { tenantId: w.tenantId });
  }
  return clientFor(TenantRegistryService, server.baseUrl, "connect-binary-h2", { authorization: `Bearer ${credential}` });
}

const codeOf = (p: Promise<unknown>) => p.then(() => "OK", (e: unknown) => Code[ConnectError.from(e).code]);

describe("every RPC has an entry in the matrix and in the policy table", () => {
  it("covers exactly the RPCs of the service", () => {
    const rpcs = TenantRegistryService.methods.map((m) => m.name).sort();
    expect(Object.keys(MATRIX).sort()).toEqual(rpcs);
    expect(Object.keys(CALLS).sort()).toEqual(rpcs);
    expect(Object.keys(RPC_POLICIES).sort()).toEqual(rpcs);
  });
});

describe.each(CALLERS)("as %s, on its own tenant", (caller) => {
  let w: World;
  let client: Registry;
  beforeAll(async () => {
    w = await world();
    client = await clientAs(caller, w);
  });

  it.each(Object.keys(MATRIX))("%s", async (rpc) => {
    const code = await codeOf(CALLS[rpc]!(client, w, sql));
    if (allowed(rpc, caller)) expect(code, `${caller} may call ${rpc}`).toBe(WHEN_ALLOWED[rpc] ?? "OK");
    else expect(code, `${caller} may not call ${rpc}`).toBe("PermissionDenied");
  });
});

describe("tenant isolation", () => {
  const TENANT_RPCS = Object.keys(MATRIX).filter((rpc) => RPC_POLICIES[rpc]!.tenant.by !== "none" && rpc !== "CheckEntitlement");

  describe.each(["tenant-admin", "tenant-viewer", "api-key:tenant-admin"] as const)("%s of tenant A", (caller) => {
    let a: World;
    let b: World;
    let client: Registry;
    beforeAll(async () => {
      a = await world();
      b = await world();
      client = await clientAs(caller, a);
    });

    it.each(TENANT_RPCS)("gets NotFound for tenant B's resources from %s", async (rpc) => {
      expect(await codeOf(CALLS[rpc]!(client, b, sql))).toBe("NotFound");
    });

    it.each(TENANT_RPCS)("gets NotFound from %s when B's ids are written in upper case", async (rpc) => {
      const upper = { ...b, tenantId: b.tenantId.toUpperCase(), projectId: b.projectId.toUpperCase(), apiKeyId: b.apiKeyId.toUpperCase() };
      expect(await codeOf(CALLS[rpc]!(client, upper, sql))).toBe("NotFound");
    });

    // Calls that make their own fresh resource (they take `sql`) name ids the world does not hold.
    const OWN_IDS_ONLY = TENANT_RPCS.filter((rpc) => CALLS[rpc]!.length < 3);
    it.each(OWN_IDS_ONLY)("%s answers B's ids in upper case word for word as it answers ids nobody has (ids are canonical before anything reads them)", async (rpc) => {
      const shout = (w: World): World => ({ ...w, tenantId: w.tenantId.toUpperCase(), projectId: w.projectId.toUpperCase(), apiKeyId: w.apiKeyId.toUpperCase() });
      const nobody: World = { ...b, tenantId: randomUUID(), projectId: randomUUID(), apiKeyId: randomUUID() };
      // The answer with each world's ids replaced by placeholders, in whatever case they appear.
      const answer = async (w: World) => {
        const message = await CALLS[rpc]!(client, shout(w), sql).then(() => "OK", (e: unknown) => `${Code[ConnectError.from(e).code]}: ${ConnectError.from(e).rawMessage}`);
        return message
          .replaceAll(w.tenantId, "<tenant>")
          .replaceAll(w.projectId, "<project>")
          .replaceAll(w.apiKeyId, "<key>")
          .replaceAll(shout(w).tenantId, "<TENANT>")
          .replaceAll(shout(w).projectId, "<PROJECT>")
          .replaceAll(shout(w).apiKeyId, "<KEY>");
      };
      expect(await answer(b)).toBe(await answer(nobody));
    });
  });

  it("records denied calls to mutating RPCs as failure events with the caller as actor", async () => {
    const w = await world();
    const subject = `viewer-${uniqueSlug()}`;
    const viewer = clientFor(TenantRegistryService, server.baseUrl, "grpc", {
      authorization: `Bearer ${await tokenFor(issuer, "tenant-viewer", { tenantId: w.tenantId, subject, name: "Vera Viewer" })}`,
    });
    await expect(viewer.createProject({ tenantId: w.tenantId, slug: "nope", name: "Nope" })).rejects.toMatchObject({ code: Code.PermissionDenied });
    const { rows } = await sql.query("SELECT action, crud, actor_id, actor_name, actor_type, is_failure, tenant_id FROM audit_log WHERE actor_id = $1", [subject]);
    expect(rows).toEqual([
      { action: "project.create", crud: "c", actor_id: subject, actor_name: "Vera Viewer", actor_type: "user", is_failure: true, tenant_id: w.tenantId },
    ]);
    expect((await sql.query("SELECT 1 FROM tenant_projects WHERE tenant_id = $1 AND slug = 'nope'", [w.tenantId])).rowCount).toBe(0);
  });

  it.each(["tenant-admin", "api-key:tenant-admin"] as const)(
    "%s, which may verify and checkpoint its own chain, may do neither to the platform's (an empty tenant_id); the platform admin may",
    async (caller) => {
      const w = await world();
      const client = await clientAs(caller, w);
      const checkpoints = async () => (await sql.query("SELECT count(*)::int AS n FROM audit_checkpoints")).rows[0].n as number;
      const before = await checkpoints();
      expect(await codeOf(client.verifyAuditChain({ tenantId: "" }))).toBe("PermissionDenied");
      expect(await codeOf(client.getAuditCheckpoint({ tenantId: "" }))).toBe("PermissionDenied");
      expect(await checkpoints()).toBe(before);
      expect(await codeOf(client.verifyAuditChain({ tenantId: w.tenantId }))).toBe("OK");
      expect((await admin.verifyAuditChain({ tenantId: "" })).chainId).toBe("00000000-0000-0000-0000-000000000000");
    },
  );

  it("does not let a platform role widen a tenant role: service + tenant-admin of A is only a service on B", async () => {
    const a = await world();
    const b = await world();
    const token = await issuer.issue({ sub: `mixed-${uniqueSlug()}`, realm_access: { roles: ["service", "tenant-admin"] }, tenant_id: a.tenantId });
    const mixed = clientFor(TenantRegistryService, server.baseUrl, "grpc", { authorization: `Bearer ${token}` });
    await expect(mixed.getTenant({ id: b.tenantId })).resolves.toBeDefined(); // service: read any tenant
    expect(await codeOf(mixed.listAuditEvents({ tenantId: b.tenantId }))).toBe("NotFound");
    expect(await codeOf(mixed.createApiKey({ tenantId: b.tenantId, name: "x" }))).toBe("NotFound");
    expect(await codeOf(mixed.listAuditEvents({ tenantId: a.tenantId }))).toBe("OK"); // tenant-admin: its own
  });

  it("answers NotFound, not PermissionDenied, for things that do not exist, so existence cannot be probed", async () => {
    const w = await world();
    const viewer = await clientAs("tenant-viewer", w);
    const nobody = "00000000-0000-4000-8000-00000000beef";
    expect(await codeOf(viewer.revokeApiKey({ id: nobody }))).toBe("NotFound");
    expect(await codeOf(viewer.revokeApiKey({ id: w.apiKeyId }))).toBe("PermissionDenied");
    expect(await codeOf(viewer.getTenantBySlug({ slug: "no-such-tenant-anywhere" }))).toBe("NotFound");
    expect(await codeOf(viewer.createProject({ tenantId: nobody, slug: "x-y-z", name: "X" }))).toBe("NotFound");
    expect(await codeOf(viewer.createProject({ tenantId: w.tenantId, slug: "x-y-z", name: "X" }))).toBe("PermissionDenied");
  });

  it("audits a burst of at most 30 denied calls per principal (then 30 a minute), so the audit log cannot be flooded", async () => {
    const w = await world();
    const subject = `flood-${uniqueSlug()}`;
    const viewer = clientFor(TenantRegistryService, server.baseUrl, "grpc", {
      authorization: `Bearer ${await tokenFor(issuer, "tenant-viewer", { tenantId: w.tenantId, subject })}`,
    });
    const started = Date.now();
    for (let i = 0; i < 35; i++) expect(await codeOf(viewer.createProject({ tenantId: w.tenantId, slug: `f-${i}-x`, name: "F" }))).toBe("PermissionDenied");
    const elapsed = Date.now() - started;
    const { rows } = await sql.query("SELECT count(*)::int AS n FROM audit_log WHERE actor_id = $1 AND is_failure", [subject]);
    expect(rows[0].n).toBeGreaterThanOrEqual(30);
    expect(rows[0].n).toBeLessThanOrEqual(30 + Math.ceil(elapsed / 2_000)); // the bucket refills one event every 2 s
    expect(rows[0].n).toBeLessThan(35);
    expect(server.logs.some((l) => l["actor"] === subject && String(l["msg"]).includes("too many denials"))).toBe(true);
  });
});
