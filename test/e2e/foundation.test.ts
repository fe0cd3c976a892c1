import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { TenantPlan, TenantStatus, ProductCode } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/health/v1/health_pb.js";
import { ACME, seedDevData } from "../../src/db/seed.js";
import { PACKAGE_ROOT } from "../../src/paths.js";
import { useTestServer } from "../support/harness.js";
import { clientFor, TRANSPORTS, type TestServer } from "../support/server.js";
import { restFetch } from "../support/rest.js";

const run = promisify(execFile);
const BUF = join(PACKAGE_ROOT, "node_modules", ".bin", "buf");
const SERVICE = "breakpilot.tenantregistry.v1.TenantRegistryService";

let server: TestServer;

useTestServer(async (h) => {
  server = h.server;
  await seedDevData(h.pool);
});

describe.each(TRANSPORTS)("typed client over %s", (transport) => {
  it("gets the seeded tenant by id and by slug", async () => {
    const client = clientFor(TenantRegistryService, server.baseUrl, transport);
    const byId = await client.getTenant({ id: ACME.id });
    const bySlug = await client.getTenantBySlug({ slug: "acme" });
    expect(byId.tenant).toEqual(bySlug.tenant);
    expect(byId.tenant).toMatchObject({
      id: ACME.id,
      slug: "acme",
      name: "Acme Inc.",
      status: TenantStatus.ACTIVE,
      plan: TenantPlan.PROFESSIONAL,
      products: [ProductCode.CERTIFAI, ProductCode.COMPLIANCE],
    });
    expect(byId.tenant?.createdAt?.seconds).toBeGreaterThan(0n);
  });

  it("answers NotFound for an unknown tenant and InvalidArgument for a malformed id", async () => {
    const client = clientFor(TenantRegistryService, server.baseUrl, transport);
    await expect(client.getTenant({ id: "00000000-0000-0000-0000-00000000dead" })).rejects.toMatchObject({ code: Code.NotFound });
    await expect(client.getTenantBySlug({ slug: "no-such-tenant" })).rejects.toMatchObject({ code: Code.NotFound });
    const error = await client.getTenant({ id: "not-a-uuid" }).catch((e: unknown) => ConnectError.from(e));
    expect(error).toMatchObject({ code: Code.InvalidArgument, rawMessage: "id: must be a UUID" });
    await expect(client.getTenantBySlug({ slug: "A_B" })).rejects.toMatchObject({ code: Code.InvalidArgument });
  });

  it("reports SERVING on grpc.health.v1", async () => {
    const health = clientFor(Health, server.baseUrl, transport);
    expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect((await health.check({ service: SERVICE })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    await expect(health.check({ service: "no.such.Service" })).rejects.toMatchObject({ code: Code.NotFound });
  });
});

describe("REST mapping from google.api.http", () => {
  it("GET /v1/tenants/by-slug/{slug} answers the tenant in the original service's JSON style", async () => {
    const res = await restFetch(`${server.baseUrl}/v1/tenants/by-slug/acme`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const body = await res.json();
    expect(body).toEqual({
      id: ACME.id,
      slug: "acme",
      name: "Acme Inc.",
      status: "active",
      plan: "professional",
      products: ["certifai", "compliance"],
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      updatedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      metadata: {},
      externalId: "",
      suspensionReason: "",
    });
  });

  it("GET /v1/tenants/{id} answers the same tenant", async () => {
    const [byId, bySlug] = await Promise.all([
      restFetch(`${server.baseUrl}/v1/tenants/${ACME.id}`).then((r) => r.json()),
      restFetch(`${server.baseUrl}/v1/tenants/by-slug/acme`).then((r) => r.json()),
    ]);
    expect(byId).toEqual(bySlug);
  });

  it("answers 404 with a JSON error body for a missing tenant", async () => {
    const res = await restFetch(`${server.baseUrl}/v1/tenants/00000000-0000-0000-0000-00000000dead`);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ code: "not_found", message: "tenant 00000000-0000-0000-0000-00000000dead not found" });
  });

  it("answers 400 naming the field for a malformed id", async () => {
    const res = await restFetch(`${server.baseUrl}/v1/tenants/not-a-uuid`);
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      code: "invalid_argument",
      message: "id: must be a UUID",
      fieldViolations: [{ field: "id", description: "must be a UUID" }],
    });
  });

  it("answers 405 for a known path with the wrong method and 404 for an unknown path", async () => {
    const wrongMethod = await restFetch(`${server.baseUrl}/v1/tenants/by-slug/acme`, { method: "DELETE" });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("allow")).toBe("GET");
    const unknown = await restFetch(`${server.baseUrl}/v1/nothing-here`);
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ code: "not_found" });
  });

  it("serves Connect GET for side-effect-free methods", async () => {
    const message = encodeURIComponent(JSON.stringify({ slug: "acme" }));
    const res = await fetch(`${server.baseUrl}/${SERVICE}/GetTenantBySlug?encoding=json&message=${message}`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { tenant: { slug: string } }).tenant.slug).toBe("acme");
  });
});

describe("liveness and readiness", () => {
  it("/healthz answers ok without touching the database", async () => {
    const res = await fetch(`${server.baseUrl}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
  });

  it("/readyz answers 200 when the database answers and the schema is current", async () => {
    const res = await fetch(`${server.baseUrl}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
  });
});

describe("buf curl through server reflection", () => {
  it("lists every served service", async () => {
    const { stdout } = await run(BUF, ["curl", "--http2-prior-knowledge", "--list-services", server.baseUrl]);
    expect(stdout.trim().split("\n").sort()).toEqual([
      SERVICE,
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
    ]);
  });

  it.each(["grpc", "connect", "grpcweb"])("calls GetTenantBySlug over %s without a local schema", async (protocol) => {
    const { stdout } = await run(BUF, [
      "curl", "--http2-prior-knowledge", "--protocol", protocol, "-d", '{"slug":"acme"}',
      `${server.baseUrl}/${SERVICE}/GetTenantBySlug`,
    ]);
    expect(JSON.parse(stdout).tenant).toMatchObject({ slug: "acme", status: "TENANT_STATUS_ACTIVE" });
  });

  it("works with the v1alpha reflection protocol too", async () => {
    const { stdout } = await run(BUF, [
      "curl", "--http2-prior-knowledge", "--reflect-protocol", "grpc-v1alpha", "-d", `{"id":"${ACME.id}"}`,
      `${server.baseUrl}/${SERVICE}/GetTenant`,
    ]);
    expect(JSON.parse(stdout).tenant.id).toBe(ACME.id);
  });

  it("reports a NotFound as a gRPC error", async () => {
    const failure = await run(BUF, [
      "curl", "--http2-prior-knowledge", "-d", '{"slug":"missing-tenant"}', `${server.baseUrl}/${SERVICE}/GetTenantBySlug`,
    ]).then(
      () => undefined,
      (e: { stderr: string; code: number }) => e,
    );
    expect(failure?.code).not.toBe(0);
    expect(JSON.parse(failure!.stderr)).toMatchObject({ code: "not_found", message: "tenant missing-tenant not found" });
  });
});
