import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { getOption, hasOption } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { http as httpRule } from "../../gen/google/api/annotations_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { PACKAGE_ROOT } from "../../src/paths.js";
import { useOidcTestServer } from "../support/harness.js";
import { restFetch } from "../support/rest.js";
import type { TestServer } from "../support/server.js";

let server: TestServer;

// Authentication on: the document must be as open as /healthz, and everything else closed.
useOidcTestServer((h) => {
  server = h.server;
});

const committed = async () => JSON.parse(await readFile(join(PACKAGE_ROOT, "gen", "openapi.json"), "utf8")) as {
  openapi: string;
  paths: Record<string, Record<string, { operationId: string; "x-rpc": string }>>;
};

describe("GET /openapi.json", () => {
  it("serves the committed document without a token", async () => {
    const res = await fetch(`${server.baseUrl}/openapi.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await res.json()).toEqual(await committed());

    const head = await fetch(`${server.baseUrl}/openapi.json`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
  });

  it("leaves the API itself closed", async () => {
    const res = await restFetch(`${server.baseUrl}/v1/tenants/by-slug/acme`);
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ code: "unauthenticated" });
  });
});

describe("the document", () => {
  it("is OpenAPI 3.1 with one operation per google.api.http binding of the service", async () => {
    const document = await committed();
    expect(document.openapi).toBe("3.1.0");
    const operations = Object.values(document.paths).flatMap((item) => Object.values(item));
    const annotated = TenantRegistryService.methods.filter((m) => hasOption(m, httpRule));
    const bindings = annotated.flatMap((m) => {
      const rule = getOption(m, httpRule);
      return [m.name, ...rule.additionalBindings.map((_, i) => `${m.name}_${i + 1}`)];
    });
    expect(operations.map((o) => o.operationId).sort()).toEqual(bindings.sort());
    expect(annotated.length).toBeGreaterThan(20);
    for (const op of operations) expect(op["x-rpc"]).toBe(`${TenantRegistryService.typeName}/${op.operationId.replace(/_\d+$/, "")}`);
  });
});
