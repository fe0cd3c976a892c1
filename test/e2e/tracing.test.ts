import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { PACKAGE_ROOT } from "../../src/paths.js";
import { startCliServer, type CliServer } from "../support/cli-server.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { insertTenant, uniqueSlug, type TenantRow } from "../support/fixtures.js";
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "../support/otlp-receiver.js";
import { clientFor } from "../support/server.js";
import { restFetch } from "../support/rest.js";

// The built CLI in its own process: tracing must hook pg before the app loads
// it, which only a real process start shows.
const MAIN = join(PACKAGE_ROOT, "dist", "bin", "main.js");
const SERVICE = TenantRegistryService.typeName;
const SERVER = 2; // OTLP SpanKind

let db: TestDatabase;
let sql: pg.Client;
let tenant: TenantRow;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.client();
  tenant = await insertTenant(sql);
});
afterAll(async () => db?.drop());

async function serveTracedTo(receiver: OtlpReceiver, env: Record<string, string> = {}): Promise<CliServer> {
  return startCliServer([process.execPath, MAIN, "serve"], {
    APP_ENV: "dev",
    DATABASE_URL: db.url,
    ADDR: "127.0.0.1:0",
    MIGRATE_ON_START: "false",
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    ...env,
  });
}

const hex = (bytes: number) => randomBytes(bytes).toString("hex");
const serverSpan = (spans: readonly ReceivedSpan[], method: string, where: (s: ReceivedSpan) => boolean = () => true) => {
  const found = spans.filter((s) => s.kind === SERVER && s.name === `${SERVICE}/${method}` && where(s));
  expect(found, `one server span of ${method}`).toHaveLength(1);
  return found[0]!;
};

describe("traces over OTLP/HTTP (http/json)", () => {
  let receiver: OtlpReceiver;
  let server: CliServer;
  const callerTrace = hex(16);
  const callerSpan = hex(8);
  const missingSlug = uniqueSlug("missing");

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    server = await serveTracedTo(receiver, {
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_EXPORTER_OTLP_HEADERS: "signoz-ingestion-key=test-key",
      OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=test,service.version=9.9.9",
    });
    // gRPC metadata carries the caller's trace context, as any gRPC client sends it.
    const traced = clientFor(TenantRegistryService, server.baseUrl, "grpc", {
      traceparent: `00-${callerTrace}-${callerSpan}-01`,
      tracestate: "vendor=abc",
    });
    await traced.getTenantBySlug({ slug: tenant.slug });
    await clientFor(TenantRegistryService, server.baseUrl, "connect-json-h1").getTenant({ id: tenant.id });
    await clientFor(TenantRegistryService, server.baseUrl, "grpc-web").listTenants({ pageSize: 1 });
    const failed = await clientFor(TenantRegistryService, server.baseUrl, "connect-binary-h2")
      .getTenantBySlug({ slug: missingSlug })
      .catch((e: unknown) => ConnectError.from(e));
    expect((failed as ConnectError).code).toBe(Code.NotFound);
    expect((await restFetch(`${server.baseUrl}/v1/tenants/by-slug/${tenant.slug}`)).status).toBe(200);
    // Spans are batched; stopping the server flushes them.
    expect(await server.stop()).toBe(0);
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await receiver?.stop();
  });

  it("exports with the configured protocol, headers and the service's resource", () => {
    expect(receiver.contentTypes.length).toBeGreaterThan(0);
    expect(receiver.requestHeaders.every((h) => h["signoz-ingestion-key"] === "test-key")).toBe(true);
    expect(server.output()).not.toContain("test-key");
    expect(receiver.contentTypes.every((t) => t.startsWith("application/json"))).toBe(true);
    expect(receiver.spans[0]!.resource).toMatchObject({
      "service.name": "tenant-registry",
      "deployment.environment": "test",
      "service.version": "9.9.9",
    });
  });

  it("continues the caller's trace: the server span has its trace id, its span as parent, and its tracestate", () => {
    const span = serverSpan(receiver.spans, "GetTenantBySlug", (s) => s.traceId === callerTrace);
    expect(span.parentSpanId).toBe(callerSpan);
    expect(span.traceState).toBe("vendor=abc");
    expect(span.attributes).toMatchObject({
      "rpc.system": "grpc",
      "rpc.service": SERVICE,
      "rpc.method": "GetTenantBySlug",
      "rpc.grpc.status_code": 0,
    });
  });

  it("makes the pg queries of the call child spans, with the statement but never its parameter values", () => {
    const span = serverSpan(receiver.spans, "GetTenantBySlug", (s) => s.traceId === callerTrace);
    const queries = receiver.spans.filter((s) => s.parentSpanId === span.spanId && s.name.startsWith("pg.query"));
    expect(queries.length).toBeGreaterThan(0);
    for (const q of queries) {
      expect(q.traceId).toBe(callerTrace);
      expect(String(q.attributes["db.query.text"] ?? q.attributes["db.statement"])).toMatch(/select/i);
    }
    // The slug was a parameter: it appears in no span at all.
    expect(JSON.stringify(receiver.spans)).not.toContain(tenant.slug.slice(2));
  });

  it("makes one server span per call on every protocol, with its status code", () => {
    expect(serverSpan(receiver.spans, "GetTenant").attributes).toMatchObject({ "rpc.system": "connect_rpc", "tenant_registry.protocol": "connect" });
    expect(serverSpan(receiver.spans, "ListTenants").attributes).toMatchObject({ "rpc.system": "grpc", "tenant_registry.protocol": "grpc_web", "rpc.grpc.status_code": 0 });
    const notFound = serverSpan(receiver.spans, "GetTenantBySlug", (s) => s.attributes["tenant_registry.protocol"] === "connect");
    expect(notFound.attributes["rpc.connect_rpc.error_code"]).toBe("not_found");
    expect(notFound.statusCode).toBe(0); // the caller's mistake, not a server fault
    expect(notFound.traceId).not.toBe(callerTrace); // a call without traceparent starts its own trace
  });

  it("names the REST call's route template as http.route", () => {
    const rest = serverSpan(receiver.spans, "GetTenantBySlug", (s) => s.attributes["tenant_registry.protocol"] === "rest");
    expect(rest.attributes["http.route"]).toBe("/v1/tenants/by-slug/{slug}");
  });

  it("writes the trace id into the call's log lines", () => {
    const lines = server.logs().filter((l) => l["traceId"] === callerTrace);
    expect(lines.some((l) => l["msg"] === "rpc" && l["procedure"] === `${SERVICE}/GetTenantBySlug`)).toBe(true);
    // Pg queries logged inside the call carry it too, through the logger's mixin.
    const startup = server.logs().find((l) => String(l["msg"]).startsWith("serving on"));
    expect(startup?.["traceId"]).toBeUndefined();
  });
});

describe("traces over OTLP/HTTP (http/protobuf, the default)", () => {
  it("exports protobuf spans and flushes them on shutdown", async () => {
    const receiver = await startOtlpReceiver();
    const server = await serveTracedTo(receiver);
    try {
      const trace = hex(16);
      const parent = hex(8);
      await clientFor(TenantRegistryService, server.baseUrl, "grpc", { traceparent: `00-${trace}-${parent}-01` }).getTenant({ id: tenant.id });
      expect(receiver.spans).toHaveLength(0); // still batched
      expect(await server.stop()).toBe(0);
      expect(receiver.contentTypes.every((t) => t.startsWith("application/x-protobuf"))).toBe(true);
      const span = serverSpan(receiver.spans, "GetTenant", (s) => s.traceId === trace);
      expect(span.parentSpanId).toBe(parent);
      expect(receiver.spans.some((s) => s.parentSpanId === span.spanId && s.name.startsWith("pg.query"))).toBe(true);
    } finally {
      await server.stop();
      await receiver.stop();
    }
  }, 60_000);
});
