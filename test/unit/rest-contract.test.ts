import { readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../src/paths.js";
import { contract, type Answer } from "../support/rest.js";

/**
 * The REST tests trust restFetch to fail on any disagreement with gen/openapi.json.
 * These exchanges are the disagreements it must catch (and the agreements it must let through).
 */
const TENANT_ID = "0b8e4f5c-6a57-4d1f-9f64-3c1c8a0f1b2e";
const tenant = {
  id: TENANT_ID,
  slug: "acme",
  name: "Acme",
  status: "active",
  plan: "professional",
  products: ["certifai"],
  createdAt: "2026-01-01T00:00:00Z",
  updatedAt: "2026-01-01T00:00:00Z",
  metadata: {},
  externalId: "",
  suspensionReason: "",
};
const ok = (body: unknown): Answer => ({ status: 200, text: JSON.stringify(body) });
const fail = (status: number, body: unknown, allow?: string): Answer => ({ status, text: JSON.stringify(body), allow: allow ?? null });
const get = (path: string) => ({ method: "GET", url: new URL(path, "http://127.0.0.1") });
const post = (path: string, body: unknown) => ({ method: "POST", url: new URL(path, "http://127.0.0.1"), body: JSON.stringify(body) });

describe("restFetch's contract check", () => {
  it("lets a conforming call through: short enum labels, response_body unwrapped", () => {
    expect(contract().check(get("/v1/tenants/by-slug/acme"), ok(tenant))).toEqual([]);
    expect(contract().check(get("/v1/tenants?plan=professional&pageSize=10&query=ac"), ok({ tenants: [tenant], nextPageToken: "" }))).toEqual([]);
    expect(contract().check(post("/v1/tenants", { slug: "acme", name: "Acme", plan: "free" }), ok(tenant))).toEqual([]);
  });

  it("refuses an answer with protobuf's full enum names", () => {
    const problems = contract().check(get("/v1/tenants/by-slug/acme"), ok({ ...tenant, status: "TENANT_STATUS_ACTIVE" }));
    expect(problems.join()).toMatch(/GetTenantBySlug answer\/status: must be equal to one of the allowed values/);
  });

  it("refuses a wrapped answer where the rule unwraps response_body, and an unknown field", () => {
    expect(contract().check(get("/v1/tenants/by-slug/acme"), ok({ tenant })).join()).toMatch(/must NOT have additional properties/);
    expect(contract().check(get("/v1/tenants/by-slug/acme"), ok({ ...tenant, secret: "x" })).join()).toMatch(/additional properties/);
  });

  it("requires in answers every field the server always emits, and nothing of the kind in requests", () => {
    const { products: _products, ...withoutProducts } = tenant;
    expect(contract().check(get("/v1/tenants/by-slug/acme"), ok(withoutProducts)).join()).toMatch(/required property 'products'/);
    const patch = { method: "PATCH", url: new URL(`http://127.0.0.1/v1/tenants/${TENANT_ID}`), body: JSON.stringify({ name: "New" }) };
    expect(contract().check(patch, ok(tenant))).toEqual([]);
  });

  it("refuses an error body of another shape", () => {
    expect(contract().check(get("/v1/tenants/by-slug/acme"), fail(404, { code: "not_found", message: "no" }))).toEqual([]);
    expect(contract().check(get("/v1/tenants/by-slug/acme"), fail(404, { error: "not found" })).join()).toMatch(/required property 'code'/);
    expect(contract().check(get("/v1/tenants/by-slug/acme"), fail(500, { code: "oops", message: "" })).join()).toMatch(/allowed values/);
  });

  it("refuses a success for a request the document forbids, and accepts its refusal", () => {
    const unknownParameter = get("/v1/tenants?colour=blue");
    expect(contract().check(unknownParameter, ok({ tenants: [], nextPageToken: "" })).join()).toMatch(/forbids:.*additional properties/s);
    expect(contract().check(unknownParameter, fail(400, { code: "invalid_argument", message: 'unknown query parameter "colour"' }))).toEqual([]);
    const badEnum = post("/v1/tenants", { slug: "acme", name: "Acme", plan: "platinum" });
    expect(contract().check(badEnum, ok(tenant)).join()).toMatch(/request body\/plan/);
    expect(contract().check(get("/v1/tenants?pageSize=many"), ok({ tenants: [], nextPageToken: "" })).join()).toMatch(/query\/pageSize: must be integer/);
  });

  it("holds undocumented paths and methods to 404 and 405 with the documented Allow", () => {
    expect(contract().check(get("/v1/nothing"), fail(404, { code: "not_found", message: "no route" }))).toEqual([]);
    expect(contract().check(get("/v1/nothing"), ok({})).join()).toMatch(/no documented path/);
    const del = { method: "DELETE", url: new URL("http://127.0.0.1/v1/tenants/by-slug/acme") };
    expect(contract().check(del, fail(405, { code: "method_not_allowed", message: "no" }, "GET"))).toEqual([]);
    expect(contract().check(del, fail(405, { code: "method_not_allowed", message: "no" }, "GET, POST")).join()).toMatch(/allows/);
  });
});

describe("REST calls in the tests", () => {
  it("all go through restFetch", async () => {
    const root = join(PACKAGE_ROOT, "test");
    // Benchmarks measure the raw call; validating there would distort what they time.
    const files = (await readdir(root, { recursive: true })).filter((f) => f.endsWith(".ts") && !f.startsWith("bench")).map((f) => join(root, f));
    const bypassing: string[] = [];
    for (const file of files) {
      const text = await readFile(file, "utf8");
      for (const [i, line] of text.split("\n").entries()) {
        // The audit export streams NDJSON or CSV: no JSON answer to check, and not in
        // gen/openapi.json (google.api.http maps unary RPCs only); its test checks it line by line.
        if (line.includes("/audit/events:export")) continue;
        if (/(?<![\w.])fetch\(`[^`]*\/v1\//.test(line)) bypassing.push(`${relative(PACKAGE_ROOT, file)}:${i + 1}`);
      }
    }
    expect(bypassing).toEqual([]);
  });
});
