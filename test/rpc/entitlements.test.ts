import { randomUUID } from "node:crypto";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { beforeEach, describe, expect, it } from "vitest";
import { EntitlementReason } from "../../gen/breakpilot/tenantregistry/v1/entitlement_pb.js";
import { ProductCode, TenantPlan, TenantStatus } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { auditEvents, insertTenant, uniqueSlug } from "../support/fixtures.js";
import { clientFor, type TestServer, type TransportName } from "../support/server.js";
import { useTestServer } from "../support/harness.js";
import { restFetch } from "../support/rest.js";

const HOUR = 3_600_000;

let server: TestServer;
let sqlClient: pg.Client;
// The server's clock: expiry is decided against it, so tests move time instead of sleeping.
let now = new Date();

useTestServer((h) => ({ server, sql: sqlClient } = h), { clock: () => now });

beforeEach(() => {
  now = new Date();
});

async function failure(promise: Promise<unknown>): Promise<ConnectError> {
  return promise.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (e: unknown) => ConnectError.from(e),
  );
}

describe.each<TransportName>(["grpc", "connect-json-h1"])("entitlements over %s", (transport) => {
  const client = () => clientFor(TenantRegistryService, server.baseUrl, transport);

  it("grants a product, re-grants it with new expiry and limits, lists and revokes it, auditing each change", async () => {
    const tenant = await insertTenant(sqlClient, { products: [] });
    const expiresAt = new Date(now.getTime() + 24 * HOUR);
    const granted = await client().grantProduct({
      tenantId: tenant.id,
      product: ProductCode.CERTIFAI,
      expiresAt: timestampFromDate(expiresAt),
      limits: { seats: 50n, projects: 3n },
    });
    expect(granted.grant).toMatchObject({ tenantId: tenant.id, product: ProductCode.CERTIFAI, limits: { seats: 50n, projects: 3n } });
    expect(timestampDate(granted.grant!.expiresAt!).getTime()).toBe(expiresAt.getTime());

    const regranted = await client().grantProduct({ tenantId: tenant.id, product: ProductCode.CERTIFAI, limits: { seats: 75n } });
    expect(regranted.grant?.expiresAt).toBeUndefined();
    expect(regranted.grant?.limits).toEqual({ seats: 75n });
    expect(regranted.grant?.createdAt).toEqual(granted.grant?.createdAt);

    await client().grantProduct({ tenantId: tenant.id, product: ProductCode.COMPLIANCE });
    const listed = await client().listTenantProducts({ tenantId: tenant.id });
    expect(listed.grants.map((g) => [g.product, g.limits])).toEqual([
      [ProductCode.CERTIFAI, { seats: 75n }],
      [ProductCode.COMPLIANCE, {}],
    ]);
    const { rows } = await sqlClient.query("SELECT count(*)::int AS n FROM tenant_products WHERE tenant_id = $1", [tenant.id]);
    expect(rows[0].n).toBe(2);

    expect(await client().revokeProduct({ tenantId: tenant.id, product: ProductCode.CERTIFAI })).toBeDefined();
    expect((await client().listTenantProducts({ tenantId: tenant.id })).grants.map((g) => g.product)).toEqual([ProductCode.COMPLIANCE]);

    const target = `${tenant.id}/certifai`;
    expect(await auditEvents(sqlClient, { targetId: target })).toEqual([
      expect.objectContaining({
        action: "product.grant",
        crud: "c",
        tenant_id: tenant.id,
        target_type: "product",
        target_name: "certifai",
        fields: { product: "certifai", expires_at: expiresAt.toISOString(), limits: { seats: "50", projects: "3" } },
      }),
      expect.objectContaining({
        action: "product.grant",
        crud: "u",
        fields: { product: "certifai", expires_at: null, limits: { seats: "75" } },
      }),
      expect.objectContaining({ action: "product.revoke", crud: "d", target_type: "product", fields: expect.objectContaining({ product: "certifai" }) }),
    ]);
  });

  it("keeps int64 limits exact beyond 2^53", async () => {
    const tenant = await insertTenant(sqlClient);
    const big = 2n ** 63n - 1n;
    const { grant } = await client().grantProduct({ tenantId: tenant.id, product: ProductCode.CERTIFAI, limits: { bytes: big, seats: 0n } });
    expect(grant?.limits).toEqual({ bytes: big, seats: 0n });
    const { rows } = await sqlClient.query("SELECT limits::text AS t FROM tenant_products WHERE tenant_id = $1", [tenant.id]);
    expect(rows[0].t).toBe('{"bytes": 9223372036854775807, "seats": 0}');
    const check = await client().checkEntitlement({ tenant: tenant.slug, product: ProductCode.CERTIFAI });
    expect(check.limits).toEqual({ bytes: big, seats: 0n });
  });

  it("CheckEntitlement answers every reason, by id and by slug", async () => {
    const active = await insertTenant(sqlClient, { plan: "professional", products: [] });
    await client().grantProduct({
      tenantId: active.id,
      product: ProductCode.CERTIFAI,
      expiresAt: timestampFromDate(new Date(now.getTime() + HOUR)),
      limits: { seats: 10n },
    });

    for (const ref of [active.id, active.slug, active.id.toUpperCase()]) {
      const entitled = await client().checkEntitlement({ tenant: ref, product: ProductCode.CERTIFAI });
      expect(entitled).toMatchObject({
        entitled: true,
        reason: EntitlementReason.ENTITLED,
        tenantStatus: TenantStatus.ACTIVE,
        plan: TenantPlan.PROFESSIONAL,
        limits: { seats: 10n },
        tenantId: active.id,
      });
      expect(timestampDate(entitled.expiresAt!).getTime()).toBe(now.getTime() + HOUR);
    }

    const notGranted = await client().checkEntitlement({ tenant: active.slug, product: ProductCode.COMPLIANCE });
    expect(notGranted).toMatchObject({ entitled: false, reason: EntitlementReason.PRODUCT_NOT_GRANTED, tenantStatus: TenantStatus.ACTIVE, limits: {} });
    expect(notGranted.expiresAt).toBeUndefined();

    // Expired exactly at expires_at, and after it.
    const grantedAt = now;
    now = new Date(grantedAt.getTime() + HOUR);
    expect(await client().checkEntitlement({ tenant: active.id, product: ProductCode.CERTIFAI })).toMatchObject({
      entitled: false,
      reason: EntitlementReason.GRANT_EXPIRED,
      tenantId: active.id,
    });
    now = new Date(grantedAt.getTime() + HOUR - 1);
    expect((await client().checkEntitlement({ tenant: active.id, product: ProductCode.CERTIFAI })).entitled).toBe(true);
    now = new Date(grantedAt.getTime() + 2 * HOUR);
    const expired = await client().checkEntitlement({ tenant: active.slug, product: ProductCode.CERTIFAI });
    expect(expired).toMatchObject({ entitled: false, reason: EntitlementReason.GRANT_EXPIRED, limits: { seats: 10n } });
    expect(timestampDate(expired.expiresAt!).getTime()).toBe(grantedAt.getTime() + HOUR);

    const suspended = await insertTenant(sqlClient, { status: "suspended", products: ["certifai"] });
    expect(await client().checkEntitlement({ tenant: suspended.slug, product: ProductCode.CERTIFAI })).toMatchObject({
      entitled: false,
      reason: EntitlementReason.TENANT_NOT_ACTIVE,
      tenantStatus: TenantStatus.SUSPENDED,
      tenantId: suspended.id,
    });
    const provisioning = await insertTenant(sqlClient, { status: "provisioning", products: ["certifai"] });
    expect((await client().checkEntitlement({ tenant: provisioning.id, product: ProductCode.CERTIFAI })).reason).toBe(
      EntitlementReason.TENANT_NOT_ACTIVE,
    );

    for (const ref of [randomUUID(), uniqueSlug("missing")]) {
      const missing = await client().checkEntitlement({ tenant: ref, product: ProductCode.CERTIFAI });
      expect(missing).toMatchObject({
        entitled: false,
        reason: EntitlementReason.TENANT_NOT_FOUND,
        tenantStatus: TenantStatus.UNSPECIFIED,
        plan: TenantPlan.UNSPECIFIED,
        tenantId: "",
        limits: {},
      });
    }
  });

  it("answers InvalidArgument naming the field", async () => {
    const tenant = await insertTenant(sqlClient);
    const cases: [() => Promise<unknown>, string][] = [
      [() => client().checkEntitlement({ tenant: "", product: ProductCode.CERTIFAI }), "tenant: is required"],
      [() => client().checkEntitlement({ tenant: "Not_A_Slug", product: ProductCode.CERTIFAI }), "tenant: must be a tenant id (UUID) or slug"],
      [() => client().checkEntitlement({ tenant: tenant.slug, product: ProductCode.UNSPECIFIED }), "product: is required"],
      [() => client().checkEntitlement({ tenant: tenant.slug, product: 42 as ProductCode }), "product: is not a known product"],
      [() => client().grantProduct({ tenantId: "nope", product: ProductCode.CERTIFAI }), "tenant_id: must be a UUID"],
      [() => client().grantProduct({ tenantId: tenant.id, product: ProductCode.UNSPECIFIED }), "product: is required"],
      [
        () => client().grantProduct({ tenantId: tenant.id, product: ProductCode.CERTIFAI, expiresAt: timestampFromDate(now) }),
        "expires_at: must be in the future",
      ],
      [() => client().grantProduct({ tenantId: tenant.id, product: ProductCode.CERTIFAI, limits: { Seats: 1n } }), "limits.Seats: keys are"],
      [() => client().grantProduct({ tenantId: tenant.id, product: ProductCode.CERTIFAI, limits: { seats: -1n } }), "limits.seats: must not be negative"],
      [
        () => client().grantProduct({
          tenantId: tenant.id,
          product: ProductCode.CERTIFAI,
          limits: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 1n])),
        }),
        "limits: may have at most 32 entries",
      ],
      [() => client().revokeProduct({ tenantId: tenant.id, product: ProductCode.UNSPECIFIED }), "product: is required"],
      [() => client().listTenantProducts({ tenantId: "" }), "tenant_id: is required"],
    ];
    for (const [call, message] of cases) {
      const error = await failure(call());
      expect(error.code, message).toBe(Code.InvalidArgument);
      expect(error.rawMessage).toContain(message);
    }
    // Nothing was granted by the rejected calls.
    expect((await client().listTenantProducts({ tenantId: tenant.id })).grants).toEqual([]);
  });

  it("answers NotFound for unknown tenants and ungranted products, FailedPrecondition for archived tenants", async () => {
    const tenant = await insertTenant(sqlClient, { products: [] });
    const unknown = randomUUID();
    expect((await failure(client().grantProduct({ tenantId: unknown, product: ProductCode.CERTIFAI }))).code).toBe(Code.NotFound);
    expect((await failure(client().revokeProduct({ tenantId: unknown, product: ProductCode.CERTIFAI }))).code).toBe(Code.NotFound);
    expect((await failure(client().listTenantProducts({ tenantId: unknown }))).code).toBe(Code.NotFound);
    const notGranted = await failure(client().revokeProduct({ tenantId: tenant.id, product: ProductCode.COMPLIANCE }));
    expect(notGranted.code).toBe(Code.NotFound);
    expect(notGranted.rawMessage).toBe(`product grant ${tenant.id}/compliance not found`);

    const archived = await insertTenant(sqlClient, { status: "archived", products: ["certifai"] });
    const error = await failure(client().grantProduct({ tenantId: archived.id, product: ProductCode.COMPLIANCE }));
    expect(error.code).toBe(Code.FailedPrecondition);
    expect((await failure(client().revokeProduct({ tenantId: archived.id, product: ProductCode.CERTIFAI }))).code).toBe(
      Code.FailedPrecondition,
    );
    expect(await auditEvents(sqlClient, { tenantId: archived.id })).toEqual([]);
  });
});

describe("REST", () => {
  const rest = (path: string, init?: RequestInit) =>
    restFetch(`${server.baseUrl}${path}`, { ...init, headers: { "content-type": "application/json", ...init?.headers } });

  it("PUT /v1/tenants/{id}/products/{product} grants, GET lists, DELETE revokes", async () => {
    const tenant = await insertTenant(sqlClient, { products: [] });
    const put = await rest(`/v1/tenants/${tenant.id}/products/certifai`, { method: "PUT", body: JSON.stringify({ limits: { seats: "50" } }) });
    expect(put.status).toBe(200);
    expect(await put.json()).toEqual({
      tenantId: tenant.id,
      product: "certifai",
      limits: { seats: "50" },
      createdAt: expect.stringMatching(/^\d{4}-/),
      updatedAt: expect.stringMatching(/^\d{4}-/),
    });

    const list = await rest(`/v1/tenants/${tenant.id}/products`);
    expect(await list.json()).toMatchObject({ grants: [{ product: "certifai", limits: { seats: "50" } }] });

    const del = await rest(`/v1/tenants/${tenant.id}/products/certifai`, { method: "DELETE" });
    expect(del.status).toBe(200);
    const again = await rest(`/v1/tenants/${tenant.id}/products/certifai`, { method: "DELETE" });
    expect(again.status).toBe(404);
    expect(await again.json()).toMatchObject({ code: "not_found" });
  });

  it("GET /v1/entitlements:check answers each reason with short labels", async () => {
    const tenant = await insertTenant(sqlClient, { plan: "enterprise", products: [] });
    await rest(`/v1/tenants/${tenant.id}/products/certifai`, { method: "PUT", body: JSON.stringify({ limits: { seats: "50" } }) });
    const check = async (ref: string, product = "certifai") =>
      (await rest(`/v1/entitlements:check?tenant=${encodeURIComponent(ref)}&product=${product}`)).json();

    expect(await check(tenant.slug)).toEqual({
      entitled: true,
      reason: "entitled",
      tenantStatus: "active",
      plan: "enterprise",
      limits: { seats: "50" },
      tenantId: tenant.id,
    });
    expect(await check(tenant.slug, "compliance")).toMatchObject({ entitled: false, reason: "product_not_granted" });

    await rest(`/v1/tenants/${tenant.id}/products/compliance`, {
      method: "PUT",
      body: JSON.stringify({ expiresAt: new Date(now.getTime() + HOUR).toISOString() }),
    });
    expect(await check(tenant.id, "compliance")).toMatchObject({ entitled: true, reason: "entitled" });
    now = new Date(now.getTime() + 2 * HOUR);
    expect(await check(tenant.id, "compliance")).toMatchObject({ entitled: false, reason: "grant_expired" });

    // Through the API, so the change notice reaches the cache (a bare SQL UPDATE would not).
    expect((await rest(`/v1/tenants/${tenant.id}:suspend`, { method: "POST", body: JSON.stringify({ reason: "unpaid" }) })).status).toBe(200);
    expect(await check(tenant.slug)).toMatchObject({ entitled: false, reason: "tenant_not_active", tenantStatus: "suspended" });
    expect(await check(uniqueSlug("gone"))).toMatchObject({ entitled: false, reason: "tenant_not_found", tenantId: "" });

    const bad = await rest(`/v1/entitlements:check?tenant=&product=certifai`);
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ code: "invalid_argument", fieldViolations: [{ field: "tenant", description: "is required" }] });
  });
});
