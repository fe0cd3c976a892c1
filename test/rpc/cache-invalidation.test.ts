import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { VerifyApiKeyCode } from "../../gen/breakpilot/tenantregistry/v1/api_key_pb.js";
import { EntitlementReason } from "../../gen/breakpilot/tenantregistry/v1/entitlement_pb.js";
import { IdpProtocol } from "../../gen/breakpilot/tenantregistry/v1/idp_pb.js";
import { ProductCode, TenantStatus } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import type { ChangeNotice } from "../../src/cache/change-notice.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { uniqueSlug } from "../support/fixtures.js";
import { clientFor, startTestServer, type TestServer } from "../support/server.js";

/*
 * Two replicas on one database. For every mutating RPC that can change a hot
 * answer: B reads (and caches) the answer, A makes the change, and B's first
 * read after the change's notice reached it shows the change, from B's cache
 * or from PostgreSQL but never stale.
 */

type Registry = Client<typeof TenantRegistryService>;

let db: TestDatabase;
let sql: pg.Client;
let serverA: TestServer;
let serverB: TestServer;
let a: Registry;
let b: Registry;
const noticesAtB: ChangeNotice[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.client();
  // Each replica with a pool of its own, as two processes would have.
  serverA = await startTestServer(await db.pool());
  serverB = await startTestServer(await db.pool());
  // Subscribed after B's cache: when this sees a notice, the cache has applied it.
  serverB.app.changes.subscribe((n) => n && noticesAtB.push(n));
  a = clientFor(TenantRegistryService, serverA.baseUrl, "connect-json-h1");
  b = clientFor(TenantRegistryService, serverB.baseUrl, "connect-json-h1");
});

afterAll(async () => {
  await serverA?.close();
  await serverB?.close();
  await db?.drop();
});

/** The call's error code, or "ok": a hot answer that may be NotFound. */
async function outcome<T>(call: Promise<T>): Promise<T | string> {
  try {
    return await call;
  } catch (error) {
    return `error: ${Code[ConnectError.from(error).code]}`;
  }
}

/** Waits until B has been told of a change with this action for this tenant, after `since` notices. */
async function noticeReachesB(tenantId: string, action: string, since: number): Promise<void> {
  await vi.waitFor(
    () => expect(noticesAtB.slice(since).some((n) => n.tenantId === tenantId && n.action === action)).toBe(true),
    { timeout: 1_000, interval: 2 },
  );
}

/**
 * Repeats `reads` until one whole pass is answered from `server`'s cache (a
 * load racing a notice of the world's own creation is not kept, by design).
 */
async function untilServedFromCache(server: TestServer, reads: () => Promise<unknown>): Promise<void> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const { hits, misses, bypassed } = server.app.cacheStats;
    await reads();
    const after = server.app.cacheStats;
    if (after.misses === misses && after.bypassed === bypassed && after.hits > hits) return;
  }
  throw new Error("the reads were never answered from the cache");
}

type World = {
  tenantId: string;
  slug: string;
  /** A key of the tenant (in `projectId`), and its secret. */
  keyId: string;
  secret: string;
  projectId: string;
  domain: string;
};

async function world(options: { status?: "suspended" | "archived"; idp?: boolean } = {}): Promise<World> {
  const slug = uniqueSlug("inv");
  const { tenant } = await a.createTenant({ slug, name: "Invalidation", products: [ProductCode.CERTIFAI] });
  const tenantId = tenant!.id;
  const { project } = await a.createProject({ tenantId, slug: "proj", name: "P" });
  const key = await a.createApiKey({ tenantId, name: "k", projectId: project!.id, scopes: ["read"] });
  const domain = `${slug}.example`;
  if (options.idp) {
    await a.setIdpConfig({
      tenantId,
      idpConfig: { protocol: IdpProtocol.OIDC, issuerUrl: "https://idp.example.com/realms/x", clientId: "c", emailDomains: [domain], enabled: true },
    });
  }
  if (options.status) await a.suspendTenant({ id: tenantId, reason: "test" });
  if (options.status === "archived") await a.archiveTenant({ id: tenantId });
  return { tenantId, slug, keyId: key.apiKey!.id, secret: key.secret, projectId: project!.id, domain };
}

// What B answers about the world, through every hot read that could be stale.
const read = {
  bySlug: async (w: World) => {
    const r = await outcome(b.getTenantBySlug({ slug: w.slug }));
    return typeof r === "string" ? r : { name: r.tenant!.name, status: TenantStatus[r.tenant!.status], products: r.tenant!.products.map((p) => ProductCode[p]) };
  },
  byId: async (w: World) => {
    const r = await outcome(b.getTenant({ id: w.tenantId }));
    return typeof r === "string" ? r : { name: r.tenant!.name, status: TenantStatus[r.tenant!.status], products: r.tenant!.products.map((p) => ProductCode[p]) };
  },
  entitlement: async (w: World, product = ProductCode.CERTIFAI) => {
    const [bySlug, byId] = await Promise.all([
      b.checkEntitlement({ tenant: w.slug, product }),
      b.checkEntitlement({ tenant: w.tenantId, product }),
    ]);
    expect(byId.reason).toBe(bySlug.reason);
    return EntitlementReason[bySlug.reason];
  },
  key: async (w: World, secret = w.secret, product?: ProductCode) => VerifyApiKeyCode[(await b.verifyApiKey({ key: secret, product })).code],
  idp: async (w: World) => {
    const r = await outcome(b.resolveIdp({ email: `someone@${w.domain}` }));
    return typeof r === "string" ? r : { tenant: r.tenant!.id, issuer: r.idpConfig!.issuerUrl };
  },
};

type Case = {
  readonly rpc: keyof typeof TenantRegistryService.method;
  readonly action: string;
  readonly arrange?: Parameters<typeof world>[0];
  /** The answers B gives (cached by the reads before the change). */
  readonly answers: (w: World) => Promise<unknown>;
  readonly change: (w: World) => Promise<unknown>;
  readonly before: (w: World) => unknown;
  readonly after: (w: World) => unknown;
};

const CASES: readonly Case[] = [
  {
    rpc: "createTenant",
    action: "tenant.create",
    // B has looked the slug up before it existed: a negative entry.
    answers: async (w) => ({ slug: await read.bySlug({ ...w, slug: `${w.slug}-new` }), entitled: await b.checkEntitlement({ tenant: `${w.slug}-new`, product: ProductCode.CERTIFAI }).then((r) => EntitlementReason[r.reason]) }),
    change: (w) => a.createTenant({ slug: `${w.slug}-new`, name: "Brand new", products: [ProductCode.CERTIFAI] }),
    before: () => ({ slug: "error: NotFound", entitled: "TENANT_NOT_FOUND" }),
    after: () => ({ slug: { name: "Brand new", status: "ACTIVE", products: ["CERTIFAI"] }, entitled: "ENTITLED" }),
  },
  {
    rpc: "updateTenant",
    action: "tenant.update",
    answers: async (w) => ({ slug: await read.bySlug(w), id: await read.byId(w), idp: await read.idp(w) }),
    arrange: { idp: true },
    change: (w) => a.updateTenant({ tenant: { id: w.tenantId, name: "Renamed" }, updateMask: { paths: ["name"] } }),
    before: (w) => ({
      slug: { name: "Invalidation", status: "ACTIVE", products: ["CERTIFAI"] },
      id: { name: "Invalidation", status: "ACTIVE", products: ["CERTIFAI"] },
      idp: { tenant: w.tenantId, issuer: "https://idp.example.com/realms/x" },
    }),
    after: (w) => ({
      slug: { name: "Renamed", status: "ACTIVE", products: ["CERTIFAI"] },
      id: { name: "Renamed", status: "ACTIVE", products: ["CERTIFAI"] },
      idp: { tenant: w.tenantId, issuer: "https://idp.example.com/realms/x" },
    }),
  },
  {
    rpc: "suspendTenant",
    action: "tenant.suspend",
    answers: async (w) => ({ status: (await read.bySlug(w)) as object, entitled: await read.entitlement(w), key: await read.key(w) }),
    change: (w) => a.suspendTenant({ id: w.tenantId, reason: "unpaid" }),
    before: () => ({ status: expect.objectContaining({ status: "ACTIVE" }), entitled: "ENTITLED", key: "VALID" }),
    after: () => ({ status: expect.objectContaining({ status: "SUSPENDED" }), entitled: "TENANT_NOT_ACTIVE", key: "TENANT_NOT_ACTIVE" }),
  },
  {
    rpc: "reactivateTenant",
    action: "tenant.reactivate",
    arrange: { status: "suspended" },
    answers: async (w) => ({ entitled: await read.entitlement(w), key: await read.key(w) }),
    change: (w) => a.reactivateTenant({ id: w.tenantId }),
    before: () => ({ entitled: "TENANT_NOT_ACTIVE", key: "TENANT_NOT_ACTIVE" }),
    after: () => ({ entitled: "ENTITLED", key: "VALID" }),
  },
  {
    rpc: "archiveTenant",
    action: "tenant.archive",
    arrange: { status: "suspended" },
    answers: async (w) => ({ status: ((await read.byId(w)) as { status: string }).status }),
    change: (w) => a.archiveTenant({ id: w.tenantId }),
    before: () => ({ status: "SUSPENDED" }),
    after: () => ({ status: "ARCHIVED" }),
  },
  {
    rpc: "deleteTenant",
    action: "tenant.delete",
    arrange: { status: "archived", idp: true },
    answers: async (w) => ({ slug: await read.bySlug(w), id: await read.byId(w), key: await read.key(w), idp: await read.idp(w), entitled: await read.entitlement(w) }),
    change: (w) => a.deleteTenant({ id: w.tenantId }),
    before: (w) => ({
      slug: expect.objectContaining({ status: "ARCHIVED" }),
      id: expect.objectContaining({ status: "ARCHIVED" }),
      key: "TENANT_NOT_ACTIVE",
      idp: { tenant: w.tenantId, issuer: "https://idp.example.com/realms/x" },
      entitled: "TENANT_NOT_ACTIVE",
    }),
    after: () => ({ slug: "error: NotFound", id: "error: NotFound", key: "NOT_FOUND", idp: "error: NotFound", entitled: "TENANT_NOT_FOUND" }),
  },
  {
    rpc: "deleteProject",
    action: "project.delete",
    answers: async (w) => ({ key: await read.key(w) }),
    change: (w) => a.deleteProject({ tenantId: w.tenantId, id: w.projectId }),
    before: () => ({ key: "VALID" }),
    after: () => ({ key: "NOT_FOUND" }),
  },
  {
    rpc: "grantProduct",
    action: "product.grant",
    answers: async (w) => ({
      entitled: await read.entitlement(w, ProductCode.COMPLIANCE),
      products: ((await read.bySlug(w)) as { products: string[] }).products,
      key: await read.key(w, w.secret, ProductCode.COMPLIANCE),
    }),
    change: (w) => a.grantProduct({ tenantId: w.tenantId, product: ProductCode.COMPLIANCE }),
    before: () => ({ entitled: "PRODUCT_NOT_GRANTED", products: ["CERTIFAI"], key: "NOT_ENTITLED" }),
    after: () => ({ entitled: "ENTITLED", products: ["CERTIFAI", "COMPLIANCE"], key: "VALID" }),
  },
  {
    rpc: "revokeProduct",
    action: "product.revoke",
    answers: async (w) => ({
      entitled: await read.entitlement(w),
      products: ((await read.byId(w)) as { products: string[] }).products,
      key: await read.key(w, w.secret, ProductCode.CERTIFAI),
    }),
    change: (w) => a.revokeProduct({ tenantId: w.tenantId, product: ProductCode.CERTIFAI }),
    before: () => ({ entitled: "ENTITLED", products: ["CERTIFAI"], key: "VALID" }),
    after: () => ({ entitled: "PRODUCT_NOT_GRANTED", products: [], key: "NOT_ENTITLED" }),
  },
  {
    rpc: "setIdpConfig",
    action: "idp_config.set",
    arrange: { idp: true },
    // The old domain moves to a new one: both answers change (the new one was cached as unknown).
    answers: async (w) => ({ old: await read.idp(w), moved: await read.idp({ ...w, domain: `moved.${w.domain}` }) }),
    change: (w) =>
      a.setIdpConfig({
        tenantId: w.tenantId,
        idpConfig: { protocol: IdpProtocol.OIDC, issuerUrl: "https://idp.example.com/realms/y", clientId: "c", emailDomains: [`moved.${w.domain}`], enabled: true },
      }),
    before: (w) => ({ old: { tenant: w.tenantId, issuer: "https://idp.example.com/realms/x" }, moved: "error: NotFound" }),
    after: (w) => ({ old: "error: NotFound", moved: { tenant: w.tenantId, issuer: "https://idp.example.com/realms/y" } }),
  },
  {
    rpc: "deleteIdpConfig",
    action: "idp_config.delete",
    arrange: { idp: true },
    answers: async (w) => ({ idp: await read.idp(w) }),
    change: (w) => a.deleteIdpConfig({ tenantId: w.tenantId }),
    before: (w) => ({ idp: { tenant: w.tenantId, issuer: "https://idp.example.com/realms/x" } }),
    after: () => ({ idp: "error: NotFound" }),
  },
  {
    rpc: "revokeApiKey",
    action: "api_key.revoke",
    answers: async (w) => ({ key: await read.key(w) }),
    change: (w) => a.revokeApiKey({ id: w.keyId }),
    before: () => ({ key: "VALID" }),
    after: () => ({ key: "REVOKED" }),
  },
  {
    rpc: "rotateApiKey",
    action: "api_key.rotate",
    answers: async (w) => ({ old: await read.key(w) }),
    // No grace period: the old secret stops working at once.
    change: (w) => a.rotateApiKey({ id: w.keyId }),
    before: () => ({ old: "VALID" }),
    after: () => ({ old: "NOT_FOUND" }),
  },
];

/**
 * Mutating RPCs whose changes no hot read can be stale about, each with why.
 * A new mutating RPC must join CASES or this list, or the coverage test fails.
 */
const CHANGES_NO_HOT_ANSWER: Readonly<Record<string, string>> = {
  createProject: "projects are in no hot answer",
  updateProject: "keys name their project by id only",
  recordAuditEvents: "audit events are in no hot answer",
  getAuditCheckpoint: "stores a signed audit checkpoint, which is in no hot answer",
  setAuditRetention: "a tenant's audit retention is in no hot answer, and does not move its updated_at",
  verifyApiKey: "writes only last_used_at, which VerifyApiKey does not answer",
  // Publishes a notice (checked below), but its prefix and id cannot be asked about before it exists.
  createApiKey: "a new key's prefix and id are unguessable: asserted on its notice instead",
};

describe("every mutation that changes a hot answer reaches the other replica", () => {
  it("every mutating RPC of the service is in the table or says why it changes no hot answer", () => {
    const mutating = TenantRegistryService.methods.filter((m) => m.idempotency !== MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS).map((m) => m.localName);
    const covered = [...CASES.map((c) => c.rpc), ...Object.keys(CHANGES_NO_HOT_ANSWER)];
    expect([...mutating].sort()).toEqual([...new Set(covered)].sort());
  });

  it.each(CASES.map((c) => [c.rpc, c] as const))("%s: B's next read after the notice shows the change", async (_rpc, c) => {
    const w = await world(c.arrange);
    expect(await c.answers(w)).toEqual(c.before(w));
    await untilServedFromCache(serverB, () => c.answers(w));
    expect(await c.answers(w)).toEqual(c.before(w));

    const since = noticesAtB.length;
    await c.change(w);
    await noticeReachesB(w.tenantId, c.action, since).catch(async () => {
      // createTenant's tenant id is new: find its notice by action alone.
      if (c.rpc !== "createTenant") throw new Error(`no ${c.action} notice reached B`);
      await vi.waitFor(() => expect(noticesAtB.slice(since).some((n) => n.action === c.action)).toBe(true), { timeout: 1_000, interval: 2 });
    });
    expect(await c.answers(w)).toEqual(c.after(w));
  });

  it("createApiKey's notice names the new key's prefix and id, which may be cached as unknown", async () => {
    const w = await world();
    const since = noticesAtB.length;
    const { apiKey, secret } = await a.createApiKey({ tenantId: w.tenantId, name: "fresh" });
    // (The world's own key may announce itself after `since` too: find this key's notice by its id.)
    await vi.waitFor(
      () => expect(noticesAtB.slice(since).find((n) => n.action === "api_key.create" && n.keys.includes(`ki:${apiKey!.id}`))).toBeDefined(),
      { timeout: 1_000, interval: 2 },
    );
    const notice = noticesAtB.slice(since).find((n) => n.keys.includes(`ki:${apiKey!.id}`))!;
    expect(notice).toMatchObject({ tenantId: w.tenantId, tenantWide: false });
    expect(notice.keys).toEqual([`k:${apiKey!.prefix}`, `ki:${apiKey!.id}`]);
    expect(secret.startsWith(apiKey!.prefix)).toBe(true);
  });
});

describe("a rolled-back mutation invalidates nothing", () => {
  it("a change whose commit fails after its notice was queued announces nothing; both replicas keep serving from cache", async () => {
    const [w, other] = [await world(), await world()];
    // Fails at COMMIT, after the change, its audit event and its pg_notify have all run.
    await sql.query(`
      CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.action = 'tenant.suspend' AND NEW.tenant_id = '${w.tenantId}' THEN RAISE EXCEPTION 'refused at commit'; END IF;
        RETURN NEW;
      END $$;
      CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON audit_log
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit();`);
    try {
      const onA = () => a.checkEntitlement({ tenant: w.slug, product: ProductCode.CERTIFAI });
      const onB = () => b.checkEntitlement({ tenant: w.slug, product: ProductCode.CERTIFAI });
      await untilServedFromCache(serverA, onA);
      await untilServedFromCache(serverB, onB);
      const since = noticesAtB.length;
      await expect(a.suspendTenant({ id: w.tenantId, reason: "never" })).rejects.toThrow();
      // Another tenant's later commit: its notice arrives after anything the failed one could have sent.
      await a.grantProduct({ tenantId: other.tenantId, product: ProductCode.COMPLIANCE });
      await noticeReachesB(other.tenantId, "product.grant", since);
      expect(noticesAtB.slice(since).map((n) => [n.action, n.tenantId])).toEqual([["product.grant", other.tenantId]]);

      // Neither replica dropped the tenant: both still answer from cache, unchanged.
      for (const [server, read] of [
        [serverB, onB],
        [serverA, onA],
      ] as const) {
        const { hits, misses } = server.app.cacheStats;
        expect((await read()).reason).toBe(EntitlementReason.ENTITLED);
        expect(server.app.cacheStats.hits).toBe(hits + 1);
        expect(server.app.cacheStats.misses).toBe(misses);
      }
      expect((await sql.query("SELECT status FROM tenants WHERE id = $1", [w.tenantId])).rows[0].status).toBe("active");
    } finally {
      await sql.query("DROP TRIGGER refuse_at_commit ON audit_log; DROP FUNCTION refuse_at_commit();");
    }
  });
});
