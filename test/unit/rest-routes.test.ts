import { getOption, hasOption } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { http as httpRule } from "../../gen/google/api/annotations_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { compileRestRoutes, parseTemplate, RouteCompileError, variableValue } from "../../src/transport/rest-routes.js";
import { serviceWithRules, type RuleInit } from "../support/rest-descriptors.js";

const get = (path: string): RuleInit => ({ pattern: { case: "get", value: path } });
const post = (path: string, body = "*"): RuleInit => ({ pattern: { case: "post", value: path }, body });
const compile = (...rules: RuleInit[]) => compileRestRoutes([serviceWithRules(rules)]);

describe("REST route compiler: a bad annotation stops start-up", () => {
  it("rejects two routes with the same method and shape, naming both", () => {
    expect(() => compile(get("/v1/things/{id}"), get("/v1/things/{display_name}"))).toThrow(
      /GET \/v1\/things\/\{display_name\} \(rt\.v1\.Rt\.M1\) collides with GET \/v1\/things\/\{id\} \(rt\.v1\.Rt\.M0\)/,
    );
    expect(() => compile(post("/v1/things:go"), post("/v1/things:go"))).toThrow(RouteCompileError);
  });

  it("accepts the same path under different methods or verbs", () => {
    expect(compile(get("/v1/things/{id}"), post("/v1/things/{id}"), post("/v1/things/{id}:go")).routes).toHaveLength(3);
  });

  it.each([
    ["no leading slash", "v1/things", /must start with \//],
    ["unclosed variable", "/v1/things/{id", /unclosed \{/],
    ["nested variable", "/v1/{inner={id}}", /cannot nest/],
    ["bad field path", "/v1/things/{in-ner}", /bad field path/],
    ["** before the end", "/v1/**/things", /\*\* must be the last segment/],
    ["a bad literal", "/v1/th ings", /bad literal/],
    ["a variable bound twice", "/v1/{id}/{id}", /bound twice/],
    ["an empty verb", "/v1/things:", /bad literal/],
  ])("rejects a template with %s", (_, template, message) => {
    expect(() => compile(get(template))).toThrow(message);
  });

  it("rejects fields the messages do not have, and bodies on GET", () => {
    expect(() => compile(get("/v1/things/{nope}"))).toThrow(/path variable "nope" is not a field of rt\.v1\.Req/);
    expect(() => compile(get("/v1/things/{inner}"))).toThrow(/must be a singular scalar or enum field/);
    expect(() => compile(get("/v1/things/{tags}"))).toThrow(/must be a singular scalar or enum field/);
    expect(() => compile(post("/v1/things", "nope"))).toThrow(/body "nope" is not a field/);
    expect(() => compile({ ...get("/v1/things"), responseBody: "nope" })).toThrow(/response_body "nope" is not a field of rt\.v1\.Res/);
    expect(() => compile({ pattern: { case: "get", value: "/v1/things" }, body: "*" })).toThrow(/GET route cannot take a body/);
  });

  it("resolves variables, body and response_body to field descriptors", () => {
    const [route] = compile({ pattern: { case: "patch", value: "/v1/things/{inner.id}" }, body: "inner", responseBody: "item" }).routes;
    expect(route!.variables.map((v) => v.fieldPath.map((f) => f.name))).toEqual([["inner", "id"]]);
    expect(route!.body).toMatchObject({ name: "inner", fieldKind: "message" });
    expect(route!.responseBody).toMatchObject({ name: "item" });
  });

  it("compiles every annotation of the real service", () => {
    const annotated = TenantRegistryService.methods.filter((m) => hasOption(m, httpRule));
    const bindings = annotated.reduce((n, m) => n + 1 + getOption(m, httpRule).additionalBindings.length, 0);
    expect(bindings).toBeGreaterThanOrEqual(30);
    expect(compileRestRoutes([TenantRegistryService]).routes).toHaveLength(bindings);
  });
});

describe("REST route matching", () => {
  const router = compile(
    get("/v1/things/{id}"),
    get("/v1/things/by-name/{display_name}"),
    post("/v1/things/{id}:go"),
    post("/v1/things:search"),
    get("/v1/files/{display_name=docs/**}"),
    get("/v1/things/{id}/parts/{inner.id}"),
  );
  const found = (method: string, path: string) => {
    const m = router.match(method, path);
    return m.kind === "found" ? { template: m.route.template, values: m.route.variables.map((v) => variableValue(v, m.segments)) } : m;
  };

  it("prefers a literal segment over a variable", () => {
    expect(found("GET", "/v1/things/by-name/bob")).toEqual({ template: "/v1/things/by-name/{display_name}", values: ["bob"] });
    expect(found("GET", "/v1/things/by-name")).toEqual({ template: "/v1/things/{id}", values: ["by-name"] });
  });

  it("splits a custom verb off the last segment, and keeps a colon no route claims", () => {
    expect(found("POST", "/v1/things/t1:go")).toEqual({ template: "/v1/things/{id}:go", values: ["t1"] });
    expect(found("POST", "/v1/things:search")).toEqual({ template: "/v1/things:search", values: [] });
    expect(found("GET", "/v1/things/a:b")).toEqual({ template: "/v1/things/{id}", values: ["a:b"] });
  });

  it("percent-decodes variables and lets ** take the rest of the path", () => {
    expect(found("GET", "/v1/things/a%20b")).toEqual({ template: "/v1/things/{id}", values: ["a b"] });
    expect(found("GET", "/v1/files/docs/a/b.txt")).toEqual({ template: "/v1/files/{display_name=docs/**}", values: ["docs/a/b.txt"] });
    expect(found("GET", "/v1/things/t1/parts/p2")).toEqual({ template: "/v1/things/{id}/parts/{inner.id}", values: ["t1", "p2"] });
  });

  it("tells a wrong method (with the allowed ones) from an unknown path", () => {
    expect(router.match("DELETE", "/v1/things/t1")).toEqual({ kind: "method_not_allowed", allowed: ["GET"] });
    expect(router.match("GET", "/v1/things/t1:go")).toEqual({ kind: "method_not_allowed", allowed: ["POST"] });
    expect(router.match("GET", "/v1/nothing")).toEqual({ kind: "not_found" });
    expect(router.match("GET", "/v1/things/")).toEqual({ kind: "not_found" });
    expect(router.match("GET", "/v1/things/t1/extra")).toEqual({ kind: "not_found" });
  });

  it("parses templates into segments, verb and variable spans", () => {
    expect(parseTemplate("/v1/{name=shelves/*/books/*}:read")).toEqual({
      segments: [{ kind: "literal", value: "v1" }, { kind: "literal", value: "shelves" }, { kind: "*" }, { kind: "literal", value: "books" }, { kind: "*" }],
      verb: "read",
      variables: [{ path: "name", start: 1, end: 5 }],
    });
  });
});
