import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { getOption, hasOption } from "@bufbuild/protobuf";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
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
  it("is valid against the OpenAPI 3.1 specification's own JSON Schema", async () => {
    const specFile = join(PACKAGE_ROOT, "node_modules", "@apidevtools", "openapi-schemas", "schemas", "v3.1", "schema.json");
    // ajv cannot follow the spec's `$dynamicRef: "#meta"`; in this (non-dialect) schema it means exactly $defs/schema.
    const spec = JSON.parse((await readFile(specFile, "utf8")).replaceAll('"$dynamicRef": "#meta"', '"$ref": "#/$defs/schema"')) as object;
    const ajv = new Ajv2020({ allErrors: true, strict: false, formats: { "media-range": true } });
    (addFormatsModule as unknown as (a: Ajv2020) => void)(ajv);
    const validate = ajv.compile(spec);
    const document = await committed();
    expect(validate(document) ? [] : validate.errors).toEqual([]);
    // …and the check is not a formality: a response without a description is not OpenAPI.
    const broken = structuredClone(document) as unknown as { paths: Record<string, Record<string, { responses: unknown }>> };
    broken.paths["/v1/tenants"]!["post"]!.responses = { "200": { content: {} } };
    expect(validate(broken)).toBe(false);
  });

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
