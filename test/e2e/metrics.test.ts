import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { ProductCode } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { tokenFor } from "../support/auth.js";
import { insertTenant, uniqueSlug, type TenantRow } from "../support/fixtures.js";
import { useOidcTestServer, useTestServer } from "../support/harness.js";
import type { OidcIssuer } from "../support/oidc-issuer.js";
import { scrape, valueOf, type Sample } from "../support/prometheus.js";
import { clientFor, type TestServer } from "../support/server.js";
import { restFetch } from "../support/rest.js";

const SERVICE = TenantRegistryService.typeName;
const rpc = (method: string, protocol: string, code: string) => ({ service: SERVICE, method, protocol, code });

/** Counter differences between two scrapes, for the series named. */
function delta(before: readonly Sample[], after: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  return valueOf(after, name, labels) - valueOf(before, name, labels);
}

async function rejected(promise: Promise<unknown>): Promise<ConnectError> {
  return promise.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (e: unknown) => ConnectError.from(e),
  );
}

describe("GET /metrics counts exactly the calls made, by RPC, protocol and code", () => {
  let server: TestServer;
  let sql: pg.Client;
  let entitled: TenantRow;
  let bare: TenantRow;
  useTestServer((h) => ({ server, sql } = h));
  beforeAll(async () => {
    entitled = await insertTenant(sql, { products: ["certifai"] });
    bare = await insertTenant(sql, { products: [] });
  });

  it("is open (no token), in Prometheus text format, with latency buckets from 0.5 ms", async () => {
    const { contentType, text } = await scrape(server.baseUrl);
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(text).toContain("# TYPE tenant_registry_rpc_duration_seconds histogram");
    expect(text).toContain("# TYPE tenant_registry_db_pool_waiting_clients gauge");
    expect(text).toMatch(/^tenant_registry_db_pool_connections\{state="idle"\} \d+$/m);
  });

  it("moves each counter by exactly the calls made over gRPC, gRPC-Web, Connect and REST", async () => {
    const grpc = clientFor(TenantRegistryService, server.baseUrl, "grpc");
    const grpcWeb = clientFor(TenantRegistryService, server.baseUrl, "grpc-web");
    const connect = clientFor(TenantRegistryService, server.baseUrl, "connect-json-h1");
    const before = (await scrape(server.baseUrl)).samples;

    await grpc.getTenantBySlug({ slug: entitled.slug });
    await grpc.getTenantBySlug({ slug: entitled.slug });
    expect((await rejected(grpc.getTenantBySlug({ slug: uniqueSlug("missing") }))).code).toBe(Code.NotFound);
    await grpcWeb.getTenant({ id: entitled.id });
    expect((await connect.checkEntitlement({ tenant: entitled.slug, product: ProductCode.CERTIFAI })).entitled).toBe(true);
    expect((await connect.checkEntitlement({ tenant: bare.id, product: ProductCode.CERTIFAI })).entitled).toBe(false);
    expect((await rejected(connect.checkEntitlement({ tenant: "", product: ProductCode.CERTIFAI }))).code).toBe(Code.InvalidArgument);
    const rest = await restFetch(`${server.baseUrl}/v1/tenants/by-slug/${entitled.slug}`);
    expect(rest.status).toBe(200);
    const restMissing = await restFetch(`${server.baseUrl}/v1/tenants/${crypto.randomUUID()}`);
    expect(restMissing.status).toBe(404);
    await connect.createTenant({ slug: uniqueSlug(), name: "Metrics" });
    const created = await connect.createApiKey({ tenantId: entitled.id, name: "metrics", scopes: ["tenants:read"] });
    expect((await grpc.verifyApiKey({ key: created.secret })).valid).toBe(true);
    expect((await grpc.verifyApiKey({ key: "trk_notakey_000000" })).valid).toBe(false);

    const after = (await scrape(server.baseUrl)).samples;
    const requests = "tenant_registry_rpc_requests_total";
    expect(delta(before, after, requests, rpc("GetTenantBySlug", "grpc", "ok"))).toBe(2);
    expect(delta(before, after, requests, rpc("GetTenantBySlug", "grpc", "not_found"))).toBe(1);
    expect(delta(before, after, requests, rpc("GetTenant", "grpc_web", "ok"))).toBe(1);
    expect(delta(before, after, requests, rpc("CheckEntitlement", "connect", "ok"))).toBe(2);
    expect(delta(before, after, requests, rpc("CheckEntitlement", "connect", "invalid_argument"))).toBe(1);
    expect(delta(before, after, requests, rpc("GetTenantBySlug", "rest", "ok"))).toBe(1);
    expect(delta(before, after, requests, rpc("GetTenant", "rest", "not_found"))).toBe(1);
    expect(delta(before, after, requests, rpc("VerifyApiKey", "grpc", "ok"))).toBe(2);
    // Nothing else was counted: the sum over every series moved by the 13 calls made.
    const total = (samples: readonly Sample[]) => samples.filter((s) => s.name === requests).reduce((sum, s) => sum + s.value, 0);
    expect(total(after) - total(before)).toBe(13);

    // The histogram saw the same calls, in its 0.5 ms..10 s buckets.
    const count = "tenant_registry_rpc_duration_seconds_count";
    expect(delta(before, after, count, rpc("GetTenantBySlug", "grpc", "ok"))).toBe(2);
    expect(after.some((s) => s.name === "tenant_registry_rpc_duration_seconds_bucket" && s.labels["le"] === "0.0005")).toBe(true);
    expect(valueOf(after, "tenant_registry_rpc_in_flight", { protocol: "grpc" })).toBe(0);

    expect(delta(before, after, "tenant_registry_entitlement_checks_total", { reason: "entitled" })).toBe(1);
    expect(delta(before, after, "tenant_registry_entitlement_checks_total", { reason: "product_not_granted" })).toBe(1);
    expect(delta(before, after, "tenant_registry_api_key_verifications_total", { code: "valid" })).toBe(1);
    expect(delta(before, after, "tenant_registry_api_key_verifications_total", { code: "not_found" })).toBe(1);
    // CreateTenant and CreateApiKey: one audit event each.
    expect(delta(before, after, "tenant_registry_audit_events_written_total")).toBe(2);
  });

  it("shows the cache's listener connected and the lag of every change notice it applies", async () => {
    await expect.poll(async () => valueOf((await scrape(server.baseUrl)).samples, "tenant_registry_cache_listener_connected"), { timeout: 10_000 }).toBe(1);
    const lag = "tenant_registry_cache_invalidation_lag_seconds_count";
    // The notices of earlier tests' changes arrive asynchronously: count from once they are all in.
    let last = -1;
    await expect
      .poll(async () => last === (last = valueOf((await scrape(server.baseUrl)).samples, lag) ?? 0), { timeout: 10_000, interval: 250 })
      .toBe(true);
    const before = (await scrape(server.baseUrl)).samples;
    const connect = clientFor(TenantRegistryService, server.baseUrl, "connect-json-h1");
    // A rename makes the tenant's cached answers stale: one change notice, delivered back to this replica.
    await connect.updateTenant({ tenant: { id: entitled.id, name: "Renamed" }, updateMask: { paths: ["name"] } });
    await expect.poll(async () => delta(before, (await scrape(server.baseUrl)).samples, lag), { timeout: 10_000 }).toBe(1);
    const after = (await scrape(server.baseUrl)).samples;
    expect(after.some((s) => s.name === "tenant_registry_cache_entries")).toBe(true);
    for (const name of ["hits", "misses", "bypassed", "evictions", "invalidations"]) {
      expect(after.some((s) => s.name === `tenant_registry_cache_${name}_total`), name).toBe(true);
    }
  });

  it("counts the keys each batched hot-lookup statement carried: every miss once", async () => {
    const fresh = await Promise.all(Array.from({ length: 10 }, () => insertTenant(sql)));
    const name = "tenant_registry_hot_lookup_batch_keys";
    const before = (await scrape(server.baseUrl)).samples;
    const grpc = clientFor(TenantRegistryService, server.baseUrl, "grpc");
    const answers = await Promise.all(fresh.map((t) => grpc.getTenant({ id: t.id })));
    expect(answers.map((a) => a.tenant?.id)).toEqual(fresh.map((t) => t.id));
    const after = (await scrape(server.baseUrl)).samples;
    expect(delta(before, after, `${name}_sum`, { lookup: "tenant_by_id" })).toBe(10);
    const statements = delta(before, after, `${name}_count`, { lookup: "tenant_by_id" });
    expect(statements).toBeGreaterThanOrEqual(1);
    expect(statements).toBeLessThanOrEqual(10);
  });

  it("never labels a series with a tenant id, slug, key or user (bounded cardinality)", async () => {
    const connect = clientFor(TenantRegistryService, server.baseUrl, "connect-json-h1");
    const slug = uniqueSlug("card");
    const tenant = (await connect.createTenant({ slug, name: "Cardinality" })).tenant!;
    const key = await connect.createApiKey({ tenantId: tenant.id, name: "card", scopes: ["tenants:read"] });
    await connect.verifyApiKey({ key: key.secret });
    await connect.getTenantBySlug({ slug });
    await restFetch(`${server.baseUrl}/v1/tenants/${tenant.id}`);
    await rejected(connect.getTenantBySlug({ slug: `${slug}-nope` }));

    const { text, samples } = await scrape(server.baseUrl);
    for (const secret of [tenant.id, slug, key.secret, key.apiKey!.id, key.apiKey!.prefix]) expect(text).not.toContain(secret);
    // Only these label names exist on our series, each from a closed set of values.
    const allowed = new Set(["service", "method", "protocol", "code", "reason", "state", "lookup", "le"]);
    const ours = samples.filter((s) => s.name.startsWith("tenant_registry_"));
    expect(ours.length).toBeGreaterThan(0);
    for (const s of ours) for (const label of Object.keys(s.labels)) expect(allowed, `${s.name} has label ${label}`).toContain(label);
    const methods = new Set(TenantRegistryService.methods.map((m) => m.name));
    for (const s of ours) if (s.labels["method"] !== undefined) expect(methods).toContain(s.labels["method"]);
  });
});

describe("denied calls are counted by method and code", () => {
  let server: TestServer;
  let sql: pg.Client;
  let issuer: OidcIssuer;
  useOidcTestServer((h) => ({ server, sql, issuer } = h));

  it("counts a tenant admin's denials: another tenant is not_found, a platform RPC permission_denied", async () => {
    const own = await insertTenant(sql);
    const other = await insertTenant(sql);
    const token = await tokenFor(issuer, "tenant-admin", { tenantId: own.id });
    const client = clientFor(TenantRegistryService, server.baseUrl, "grpc", { authorization: `Bearer ${token}` });
    const before = (await scrape(server.baseUrl)).samples;

    expect((await rejected(client.getTenant({ id: other.id }))).code).toBe(Code.NotFound);
    expect((await rejected(client.listTenants({}))).code).toBe(Code.PermissionDenied);
    expect((await rejected(client.listTenants({}))).code).toBe(Code.PermissionDenied);
    await client.getTenant({ id: own.id });

    const after = (await scrape(server.baseUrl)).samples;
    const denied = "tenant_registry_denied_calls_total";
    expect(delta(before, after, denied, { method: "GetTenant", code: "not_found" })).toBe(1);
    expect(delta(before, after, denied, { method: "ListTenants", code: "permission_denied" })).toBe(2);
    expect(delta(before, after, "tenant_registry_rpc_requests_total", rpc("ListTenants", "grpc", "permission_denied"))).toBe(2);
    // An unauthenticated scrape: /metrics is open like /healthz.
    expect((await fetch(`${server.baseUrl}/metrics`)).status).toBe(200);
  });
});
