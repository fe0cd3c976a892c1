import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import { ProductCode, TenantPlan, TenantStatus } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { auditEvents, uniqueSlug } from "../support/fixtures.js";
import { clientFor, type TestServer, type TransportName } from "../support/server.js";
import { useTestServer } from "../support/harness.js";
import { restFetch } from "../support/rest.js";

let server: TestServer;
let sql: pg.Client;

useTestServer((h) => ({ server, sql } = h));

const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => ConnectError.from(e));

describe.each(["grpc", "connect-json-h1"] as TransportName[])("tenants over %s", (transport) => {
  const client = () => clientFor(TenantRegistryService, server.baseUrl, transport);

  it("creates a tenant with plan, products, metadata and external id, and audits it", async () => {
    const slug = uniqueSlug("create");
    const { tenant } = await client().createTenant({
      slug,
      name: "  Example GmbH ",
      plan: TenantPlan.STARTER,
      products: [ProductCode.COMPLIANCE, ProductCode.CERTIFAI, ProductCode.COMPLIANCE],
      metadata: { crm: "hubspot", region: "eu" },
      externalId: `crm-${slug}`,
    });
    expect(tenant).toMatchObject({
      slug,
      name: "Example GmbH",
      status: TenantStatus.ACTIVE,
      plan: TenantPlan.STARTER,
      products: [ProductCode.CERTIFAI, ProductCode.COMPLIANCE],
      metadata: { crm: "hubspot", region: "eu" },
      externalId: `crm-${slug}`,
      suspensionReason: "",
    });
    expect((await client().getTenant({ id: tenant!.id })).tenant).toEqual(tenant);
    const events = await auditEvents(sql, { tenantId: tenant!.id });
    expect(events).toEqual([
      expect.objectContaining({
        action: "tenant.create",
        crud: "c",
        target_id: tenant!.id,
        target_name: slug,
        target_type: "tenant",
        is_anonymous: false, actor_id: "dev", actor_type: "user",
        source_ip: "127.0.0.1",
        fields: expect.objectContaining({ slug, plan: "starter", products: ["certifai", "compliance"] }),
      }),
    ]);
  });

  it("defaults to the free plan and active status; provisioning starts provisioning", async () => {
    const plain = await client().createTenant({ slug: uniqueSlug(), name: "Plain" });
    expect(plain.tenant).toMatchObject({ plan: TenantPlan.FREE, status: TenantStatus.ACTIVE, products: [] });
    const pending = await client().createTenant({ slug: uniqueSlug(), name: "Pending", provisioning: true });
    expect(pending.tenant?.status).toBe(TenantStatus.PROVISIONING);
    const activated = await client().reactivateTenant({ id: pending.tenant!.id });
    expect(activated.tenant?.status).toBe(TenantStatus.ACTIVE);
  });

  it("rejects invalid input naming every offending field, and stores nothing", async () => {
    const slug = "Bad_Slug";
    const error = await failure(client().createTenant({ slug, name: "", metadata: { "bad key": "x" }, externalId: "x".repeat(201) }));
    expect(error?.code).toBe(Code.InvalidArgument);
    expect(error?.rawMessage).toContain("slug: may contain only lowercase letters, digits and '-'");
    expect(error?.rawMessage).toContain("name: is required");
    expect(error?.rawMessage).toContain("metadata.bad key:");
    expect(error?.rawMessage).toContain("external_id: must be at most 200 characters");
    expect((await sql.query("SELECT 1 FROM tenants WHERE slug = $1", [slug])).rowCount).toBe(0);
  });

  it("answers AlreadyExists naming slug or external_id, and writes no audit event", async () => {
    const slug = uniqueSlug("dup");
    const first = await client().createTenant({ slug, name: "First", externalId: `ext-${slug}` });
    const before = (await sql.query("SELECT count(*)::int AS n FROM audit_log")).rows[0].n as number;
    const bySlug = await failure(client().createTenant({ slug, name: "Second" }));
    expect(bySlug).toMatchObject({ code: Code.AlreadyExists, rawMessage: `tenant with slug "${slug}" already exists` });
    const byExternalId = await failure(client().createTenant({ slug: uniqueSlug(), name: "Third", externalId: `ext-${slug}` }));
    expect(byExternalId).toMatchObject({ code: Code.AlreadyExists, rawMessage: expect.stringContaining("external_id") });
    expect((await sql.query("SELECT count(*)::int AS n FROM audit_log")).rows[0].n).toBe(before);
    expect(first.tenant?.slug).toBe(slug);
  });

  it("returns the first result for a retry with the same idempotency key", async () => {
    const request = { slug: uniqueSlug("idem"), name: "Idempotent", idempotencyKey: `key-${uniqueSlug()}` };
    const first = await client().createTenant(request);
    const retry = await client().createTenant(request);
    expect(retry.tenant).toEqual(first.tenant);
    expect(await auditEvents(sql, { tenantId: first.tenant!.id })).toHaveLength(1);
    const reused = await failure(client().createTenant({ ...request, name: "Something else" }));
    expect(reused).toMatchObject({ code: Code.FailedPrecondition, rawMessage: expect.stringContaining("idempotency_key") });
  });

  it("gets by id and slug; NotFound and InvalidArgument otherwise", async () => {
    const { tenant } = await client().createTenant({ slug: uniqueSlug(), name: "Lookup" });
    expect((await client().getTenantBySlug({ slug: tenant!.slug })).tenant).toEqual(tenant);
    expect(await failure(client().getTenant({ id: "00000000-0000-4000-8000-000000000000" }))).toMatchObject({ code: Code.NotFound });
    expect(await failure(client().getTenant({ id: "" }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "id: is required" });
  });

  it("updates the masked fields only, audits from/to, and keeps the slug immutable", async () => {
    const { tenant } = await client().createTenant({ slug: uniqueSlug("upd"), name: "Before", metadata: { a: "1" } });
    const id = tenant!.id;
    const { tenant: updated } = await client().updateTenant({
      tenant: { id, name: "After", plan: TenantPlan.ENTERPRISE, slug: "ignored-not-masked", metadata: { b: "2" } },
      updateMask: { paths: ["name", "plan"] },
    });
    expect(updated).toMatchObject({ name: "After", plan: TenantPlan.ENTERPRISE, slug: tenant!.slug, metadata: { a: "1" } });
    const events = await auditEvents(sql, { tenantId: id });
    expect(events.at(-1)).toMatchObject({
      action: "tenant.update",
      crud: "u",
      fields: { name: { from: "Before", to: "After" }, plan: { from: "free", to: "enterprise" } },
    });
    expect(await failure(client().updateTenant({ tenant: { id, slug: "new-slug" }, updateMask: { paths: ["slug"] } }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "update_mask: slug is immutable",
    });
    expect(await failure(client().updateTenant({ tenant: { id, name: "x" } }))).toMatchObject({ code: Code.InvalidArgument });
    expect(await failure(client().updateTenant({ tenant: { id: "00000000-0000-4000-8000-000000000000", name: "x" }, updateMask: { paths: ["name"] } }))).toMatchObject({
      code: Code.NotFound,
    });
  });

  it("an update that changes nothing writes nothing: no new updated_at, no audit event", async () => {
    const { tenant } = await client().createTenant({ slug: uniqueSlug("noop"), name: "Same", metadata: { a: "1", b: "2" } });
    const { tenant: same } = await client().updateTenant({
      tenant: { id: tenant!.id, name: "Same", metadata: { b: "2", a: "1" } },
      updateMask: { paths: ["name", "metadata"] },
    });
    expect(same?.updatedAt).toEqual(tenant!.updatedAt);
    expect((await auditEvents(sql, { tenantId: tenant!.id })).map((e) => e.action)).toEqual(["tenant.create"]);
  });

  it("rejects input the database cannot store, and mask paths that are not fields, as InvalidArgument", async () => {
    const nul = await failure(client().createTenant({ slug: uniqueSlug(), name: "Bad\u0000Name" }));
    expect(nul?.code).toBe(Code.InvalidArgument);
    expect(nul?.rawMessage).not.toMatch(/22021|SQL|invalid byte sequence/);
    const { tenant } = await client().createTenant({ slug: uniqueSlug(), name: "Masked" });
    const proto = await failure(client().updateTenant({ tenant: { id: tenant!.id }, updateMask: { paths: ["constructor"] } }));
    expect(proto).toMatchObject({ code: Code.InvalidArgument, rawMessage: expect.stringContaining('"constructor" cannot be updated') });
  });

  it("walks the lifecycle and refuses illegal transitions naming both states", async () => {
    const { tenant } = await client().createTenant({ slug: uniqueSlug("life"), name: "Lifecycle" });
    const id = tenant!.id;
    expect(await failure(client().suspendTenant({ id, reason: "  " }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: expect.stringContaining("reason") });
    const archiveActive = await failure(client().archiveTenant({ id }));
    expect(archiveActive).toMatchObject({ code: Code.FailedPrecondition });
    expect(archiveActive?.rawMessage).toContain("cannot go from active to archived");
    const suspended = await client().suspendTenant({ id, reason: "unpaid invoices" });
    expect(suspended.tenant).toMatchObject({ status: TenantStatus.SUSPENDED, suspensionReason: "unpaid invoices" });
    expect(await failure(client().suspendTenant({ id, reason: "again" }))).toMatchObject({ code: Code.FailedPrecondition });
    const reactivated = await client().reactivateTenant({ id });
    expect(reactivated.tenant).toMatchObject({ status: TenantStatus.ACTIVE, suspensionReason: "" });
    await client().suspendTenant({ id, reason: "closing" });
    const archived = await client().archiveTenant({ id });
    expect(archived.tenant?.status).toBe(TenantStatus.ARCHIVED);
    expect(await failure(client().reactivateTenant({ id }))).toMatchObject({ code: Code.FailedPrecondition, rawMessage: expect.stringContaining("from archived to active") });
    expect(await failure(client().updateTenant({ tenant: { id, name: "x" }, updateMask: { paths: ["name"] } }))).toMatchObject({ code: Code.FailedPrecondition });
    const actions = (await auditEvents(sql, { tenantId: id })).map((e) => e.action);
    expect(actions).toEqual(["tenant.create", "tenant.suspend", "tenant.reactivate", "tenant.suspend", "tenant.archive"]);
  });

  it("deletes only archived tenants; their audit events survive naming the tenant", async () => {
    const { tenant } = await client().createTenant({ slug: uniqueSlug("del"), name: "Doomed", products: [ProductCode.CERTIFAI] });
    const id = tenant!.id;
    expect(await failure(client().deleteTenant({ id }))).toMatchObject({
      code: Code.FailedPrecondition,
      rawMessage: expect.stringContaining("only archived tenants can be deleted"),
    });
    await client().suspendTenant({ id, reason: "contract ended" });
    await client().archiveTenant({ id });
    await client().deleteTenant({ id });
    expect(await failure(client().getTenant({ id }))).toMatchObject({ code: Code.NotFound });
    expect((await sql.query("SELECT 1 FROM tenant_products WHERE tenant_id = $1", [id])).rowCount).toBe(0);
    const survivors = await auditEvents(sql, { targetId: id });
    expect(survivors.map((e) => [e.action, e.tenant_id, e.target_name])).toEqual([
      ["tenant.create", null, tenant!.slug],
      ["tenant.suspend", null, tenant!.slug],
      ["tenant.archive", null, tenant!.slug],
      ["tenant.delete", null, tenant!.slug],
    ]);
    expect(await failure(client().deleteTenant({ id }))).toMatchObject({ code: Code.NotFound });
  });
});

describe("listing tenants", () => {
  const client = () => clientFor(TenantRegistryService, server.baseUrl, "grpc");

  it("filters by status, plan, product and text, in slug order", async () => {
    const marker = uniqueSlug("flt");
    const a = await client().createTenant({ slug: `${marker}-a`, name: "Alpha Widgets", plan: TenantPlan.ENTERPRISE, products: [ProductCode.CERTIFAI] });
    const b = await client().createTenant({ slug: `${marker}-b`, name: "Beta", plan: TenantPlan.STARTER });
    await client().suspendTenant({ id: b.tenant!.id, reason: "test" });
    const c = await client().createTenant({ slug: `${marker}-c`, name: "Gamma Widgets", plan: TenantPlan.ENTERPRISE });
    const slugs = async (req: Parameters<ReturnType<typeof client>["listTenants"]>[0]) =>
      (await client().listTenants({ query: marker, ...req })).tenants.map((t) => t.slug);
    expect(await slugs({})).toEqual([a.tenant!.slug, b.tenant!.slug, c.tenant!.slug]);
    expect(await slugs({ status: TenantStatus.SUSPENDED })).toEqual([b.tenant!.slug]);
    expect(await slugs({ plan: TenantPlan.ENTERPRISE })).toEqual([a.tenant!.slug, c.tenant!.slug]);
    expect(await slugs({ product: ProductCode.CERTIFAI })).toEqual([a.tenant!.slug]);
    expect((await client().listTenants({ query: "gamma WIDGETS" })).tenants.map((t) => t.slug)).toContain(c.tenant!.slug);
    expect(await slugs({ query: "no-such-thing-anywhere" })).toEqual([]);
  });

  it("rejects a negative page size and a token issued for other filters", async () => {
    expect(await failure(client().listTenants({ pageSize: -1 }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "page_size: must not be negative" });
    const first = await client().listTenants({ pageSize: 1 });
    expect(first.nextPageToken).not.toBe("");
    expect(await failure(client().listTenants({ pageSize: 1, pageToken: first.nextPageToken, plan: TenantPlan.FREE }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "page_token: was issued for different filters",
    });
    expect(await failure(client().listTenants({ pageToken: "garbage!" }))).toMatchObject({ code: Code.InvalidArgument });
  });
});

describe("concurrency", () => {
  it("50 concurrent creates of one slug: exactly 1 success, 49 AlreadyExists, no Internal", async () => {
    const client = clientFor(TenantRegistryService, server.baseUrl, "grpc");
    const slug = uniqueSlug("race");
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => client.createTenant({ slug, name: `Racer ${i}` }).then(() => "ok", (e: unknown) => Code[ConnectError.from(e).code])),
    );
    const counts = results.reduce<Record<string, number>>((acc, r) => ({ ...acc, [r]: (acc[r] ?? 0) + 1 }), {});
    expect(counts).toEqual({ ok: 1, AlreadyExists: 49 });
    expect((await sql.query("SELECT count(*)::int AS n FROM audit_log WHERE target_name = $1", [slug])).rows[0].n).toBe(1);
  });

  it("concurrent retries with one idempotency key create one tenant", async () => {
    const client = clientFor(TenantRegistryService, server.baseUrl, "connect-binary-h2");
    const request = { slug: uniqueSlug("idem-race"), name: "Once", idempotencyKey: uniqueSlug("k") };
    const results = await Promise.all(Array.from({ length: 20 }, () => client.createTenant(request)));
    expect(new Set(results.map((r) => r.tenant!.id)).size).toBe(1);
    expect((await sql.query("SELECT count(*)::int AS n FROM tenants WHERE slug = $1", [request.slug])).rows[0].n).toBe(1);
  });
});

describe("tenants over REST", () => {
  it("POST /v1/tenants takes short enum labels and answers the tenant itself", async () => {
    const slug = uniqueSlug("rest");
    const res = await restFetch(`${server.baseUrl}/v1/tenants`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ slug, name: "Rest Co", plan: "professional", products: ["certifai"] }),
    });
    expect(res.status).toBe(200);
    const tenant = (await res.json()) as Record<string, unknown>;
    expect(tenant).toMatchObject({ slug, plan: "professional", products: ["certifai"], status: "active" });

    const list = await restFetch(`${server.baseUrl}/v1/tenants?query=${slug}&plan=professional&pageSize=10`);
    expect(await list.json()).toEqual({ tenants: [tenant], nextPageToken: "" });

    const patched = await restFetch(`${server.baseUrl}/v1/tenants/${tenant["id"]}`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "Rest Company" }),
    });
    expect(patched.status).toBe(200);
    expect(await patched.json()).toMatchObject({ name: "Rest Company", plan: "professional" });

    const suspend = await restFetch(`${server.baseUrl}/v1/tenants/${tenant["id"]}:suspend`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ reason: "fraud check" }),
    });
    expect(await suspend.json()).toMatchObject({ status: "suspended", suspensionReason: "fraud check" });

    const del = await restFetch(`${server.baseUrl}/v1/tenants/${tenant["id"]}`, { method: "DELETE" });
    expect(del.status).toBe(400);
    expect(await del.json()).toMatchObject({ code: "failed_precondition" });
  });

  it("answers 409 for a duplicate slug and 400 with field violations for bad input", async () => {
    const slug = uniqueSlug("rest-dup");
    const post = (body: unknown) =>
      restFetch(`${server.baseUrl}/v1/tenants`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    expect((await post({ slug, name: "One" })).status).toBe(200);
    const dup = await post({ slug, name: "Two" });
    expect(dup.status).toBe(409);
    expect(await dup.json()).toEqual({ code: "already_exists", message: `tenant with slug "${slug}" already exists` });
    const bad = await post({ slug: "-x", name: "" });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({
      code: "invalid_argument",
      fieldViolations: [
        { field: "slug", description: "must be 3 to 63 characters long" },
        { field: "name", description: "is required" },
      ],
    });
    const badEnum = await post({ slug: uniqueSlug(), name: "x", plan: "platinum" });
    expect(badEnum.status).toBe(400);
  });
});
