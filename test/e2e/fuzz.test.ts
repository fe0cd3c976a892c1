import http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { create, getOption, hasOption, toBinary, type DescMethod } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { http as httpRule } from "../../gen/google/api/annotations_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { tokenFor } from "../support/auth.js";
import { insertTenant } from "../support/fixtures.js";
import { useOidcTestServer } from "../support/harness.js";
import type { TestServer } from "../support/server.js";
import { envelope, grpcStatus, grpcWebStatus, h2Post } from "../support/wire.js";

/**
 * A seeded fuzz run over every RPC (Connect JSON and binary, gRPC, gRPC-Web) and
 * every REST path. FUZZ_SEED reproduces a run; the budget bounds it in count and
 * time. Whatever a client sends, the answer is never Internal/Unknown, never a
 * 5xx the protocol does not call for, and never carries SQL, a stack or a path.
 */
const SEED = Number(process.env["FUZZ_SEED"] ?? 20261202);
const MAX_REQUESTS = Number(process.env["FUZZ_REQUESTS"] ?? 1_500);
const BUDGET_MS = Number(process.env["FUZZ_BUDGET_MS"] ?? 20_000);

let server: TestServer;
let adminToken: string;
let tenantId: string;
useOidcTestServer(async ({ server: s, issuer, sql }) => {
  server = s;
  adminToken = await tokenFor(issuer, "platform-admin");
  tenantId = (await insertTenant(sql)).id;
});

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    int,
    pick: <T>(items: readonly T[]): T => items[int(items.length)]!,
    bytes: (n: number) => Buffer.from(Array.from({ length: n }, () => int(256))),
    chance: (p: number) => next() < p,
  };
}
type Rng = ReturnType<typeof prng>;

const NASTY_STRINGS = [
  "",
  "' OR '1'='1' --",
  "'; DROP TABLE tenants; --",
  "\u0000",
  "a\u0000b",
  "../../../../etc/passwd",
  "%00%2e%2e%2f",
  "${jndi:ldap://x/a}",
  "<script>alert(1)</script>",
  "\ud800",
  "🙂".repeat(50),
  "x".repeat(70_000),
  "00000000-0000-0000-0000-000000000000",
  "C81D280B-0000-4000-8000-00000000BEEF",
  "not-a-uuid",
  "-1",
  "1e309",
  "NaN",
];
const NASTY_VALUES = (rng: Rng): unknown[] => [
  rng.pick(NASTY_STRINGS),
  -1,
  2 ** 53,
  1.5,
  true,
  null,
  [],
  [rng.pick(NASTY_STRINGS)],
  {},
  { nested: { deeper: rng.pick(NASTY_STRINGS) } },
  "9".repeat(400),
];

function deepNest(depth: number): string {
  return `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
}

/** A JSON body for `method`: its own fields with wrong or hostile values, or no JSON at all. */
function jsonBody(rng: Rng, method: DescMethod): Buffer {
  switch (rng.int(8)) {
    case 0:
      return rng.bytes(rng.int(200));
    case 1:
      return Buffer.from(deepNest(rng.pick([50, 500, 5_000])));
    case 2:
      return Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xff, 0xc3, 0x28]), Buffer.from('"}')]);
    case 3:
      return Buffer.from(JSON.stringify(rng.pick(NASTY_VALUES(rng))));
    default: {
      const body: Record<string, unknown> = {};
      for (const field of method.input.fields) {
        if (rng.chance(0.6)) body[field.jsonName] = rng.pick(NASTY_VALUES(rng));
      }
      if (rng.chance(0.2)) body["updateMask"] = rng.pick(["no_such_field", ",,", "name,name", "*", "tenant.id", "a.b.c.d"]);
      if (rng.chance(0.1)) body["tenantId"] = tenantId;
      const text = JSON.stringify(body);
      return Buffer.from(rng.chance(0.1) ? text.slice(0, rng.int(text.length)) : text);
    }
  }
}

/** A binary body: garbage, a truncated real message, or a real message with garbage appended. */
function binaryBody(rng: Rng, method: DescMethod): Buffer {
  const real = Buffer.from(toBinary(method.input, create(method.input, {})));
  const withField = Buffer.concat([real, Buffer.from([0x0a, 0x05]), Buffer.from("hello")]); // field 1, 5 bytes
  switch (rng.int(5)) {
    case 0:
      return rng.bytes(rng.int(300));
    case 1:
      return withField.subarray(0, rng.int(withField.length));
    case 2:
      return Buffer.concat([withField, rng.bytes(1 + rng.int(40))]);
    case 3:
      // A deeply nested group/length-delimited tower.
      return Buffer.from(Array.from({ length: 200 }, () => [0x0a, 0x7f]).flat());
    default:
      return withField;
  }
}

function headers(rng: Rng): Record<string, string> {
  const h: Record<string, string> = {};
  const auth = rng.int(10);
  if (auth < 7) h["authorization"] = `Bearer ${adminToken}`;
  else if (auth === 7) h["authorization"] = `Bearer ${rng.pick(["trk_garbage", "eyJhbGciOiJub25lIn0.e30.", "x".repeat(9_000), adminToken.slice(0, -5) + "AAAAA"])}`;
  else if (auth === 8) h["authorization"] = rng.pick(["Basic Zm9vOmJhcg==", "Bearer", "bearer  ", "Bearer \u0001"]).replace(/[^\x20-\x7e]/g, "");
  if (rng.chance(0.1)) h["connect-timeout-ms"] = rng.pick(["1", "0", "-5", "abc", "99999999999"]);
  if (rng.chance(0.05)) h["x-request-id"] = "x".repeat(500);
  return h;
}

type Finding = { readonly what: string; readonly answer: string };
const findings: Finding[] = [];
const LEAKS = /\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|syntax error at|violates \w+ constraint|relation "|node_modules|\/work\/|\/src\/|\.ts:\d+|\.js:\d+|at \w+ \(|Error: |ECONNREFUSED|pg_)/;
const BAD_CONNECT_CODES = new Set(["internal", "unknown", "data_loss"]);
const BAD_GRPC = new Set(["2", "13", "15"]);
// 501: unknown compression or an unimplemented protocol path; 503: the database is down; 504: the caller's own deadline.
const SANCTIONED_5XX = new Set([501, 503, 504]);

function note(what: string, answer: string) {
  if (findings.length < 50) findings.push({ what, answer: answer.slice(0, 300) });
}

function checkText(what: string, text: string) {
  if (LEAKS.test(text)) note(`${what}: leaks internals`, text);
}

const PATH = (m: DescMethod) => `/${TenantRegistryService.typeName}/${m.name}`;

// A well-formed WatchChanges call is meant to stay open; a short deadline of the caller's own
// ends it, so the loop stays bounded while the stream's parsing and auth are still fuzzed.
const LONG_LIVED = new Set(["WatchChanges"]);

async function connectCall(rng: Rng, method: DescMethod, binary: boolean) {
  const body = binary ? binaryBody(rng, method) : jsonBody(rng, method);
  const h: Record<string, string> = { ...headers(rng), "connect-protocol-version": "1" };
  const streaming = method.methodKind === "server_streaming";
  if (LONG_LIVED.has(method.name)) h["connect-timeout-ms"] = "200";
  h["content-type"] = streaming ? (binary ? "application/connect+proto" : "application/connect+json") : binary ? "application/proto" : "application/json";
  let payload: Buffer = streaming ? envelope(body, rng.chance(0.1) ? 1 : 0) : body;
  if (rng.chance(0.08)) {
    h[streaming ? "connect-content-encoding" : "content-encoding"] = rng.pick(["gzip", "br", "zstd", "nonsense"]);
    if (rng.chance(0.5) && !streaming) payload = gzipSync(payload).subarray(0, 1 + rng.int(20));
  }
  const what = `Connect ${binary ? "binary" : "JSON"} ${method.name} ${JSON.stringify({ ...h, authorization: h["authorization"]?.slice(0, 12) })}`;
  const res = await fetch(`${server.baseUrl}${PATH(method)}`, { method: "POST", headers: h, body: payload });
  const bytes = Buffer.from(await res.arrayBuffer());
  const text = bytes.toString("latin1");
  if (res.status >= 500 && !SANCTIONED_5XX.has(res.status)) note(`${what}: HTTP ${res.status}`, text);
  const code = /"code"\s*:\s*"([a-z_]+)"/.exec(text)?.[1];
  if (code && BAD_CONNECT_CODES.has(code)) note(`${what}: ${code}`, text);
  checkText(what, text);
}

async function grpcCall(rng: Rng, session: http2.ClientHttp2Session, method: DescMethod, web: boolean) {
  const h: Record<string, string> = { ...headers(rng), ...(web ? { "content-type": "application/grpc-web+proto" } : { "content-type": "application/grpc", te: "trailers" }) };
  if (LONG_LIVED.has(method.name)) h["grpc-timeout"] = "200m";
  const compressed = rng.chance(0.1);
  if (compressed) h["grpc-encoding"] = rng.pick(["gzip", "identity", "snappy"]);
  const body = envelope(rng.chance(0.2) ? jsonBody(rng, method) : binaryBody(rng, method), compressed ? 1 : 0);
  const framing = rng.int(6) === 0 ? body.subarray(0, rng.int(body.length)) : body;
  const what = `${web ? "gRPC-Web" : "gRPC"} ${method.name}`;
  const answer = await h2Post(session, PATH(method), h, framing);
  const status = web ? (answer.headers["grpc-status"] ?? grpcWebStatus(answer.body)) : grpcStatus(answer);
  if (status && BAD_GRPC.has(status)) note(`${what}: grpc-status ${status}`, decodeURIComponent(answer.trailers["grpc-message"] ?? answer.headers["grpc-message"] ?? ""));
  if (answer.status >= 500 && !SANCTIONED_5XX.has(answer.status)) note(`${what}: HTTP ${answer.status}`, answer.body.toString("latin1"));
  checkText(what, `${decodeURIComponent(answer.trailers["grpc-message"] ?? answer.headers["grpc-message"] ?? "")} ${answer.body.toString("latin1")}`);
}

type Route = { readonly verb: string; readonly template: string; readonly method: DescMethod };
const ROUTES: Route[] = TenantRegistryService.methods.flatMap((method) => {
  if (!hasOption(method, httpRule)) return [];
  const rule = getOption(method, httpRule);
  return [rule, ...rule.additionalBindings].map((r) => {
    const p = r.pattern;
    const [verb, template] = p.case === "custom" ? [p.value.kind.toUpperCase(), p.value.path] : [String(p.case).toUpperCase(), String(p.value)];
    return { verb, template, method };
  });
});

async function restCall(rng: Rng, route: Route) {
  const path = route.template.replace(/\{[^}]+\}/g, () =>
    encodeURIComponent(rng.pick([tenantId, tenantId.toUpperCase(), ...NASTY_STRINGS.filter((s) => s.length < 500 && s !== "" && s !== "\ud800")])),
  );
  const query = rng.chance(0.3) ? `?${rng.pick(["pageSize=-1", "pageSize=abc", "pageToken=%00", "unknown=1", "updateMask=zzz", "filter=' OR 1=1", "pageSize=99999999999999999999"])}` : "";
  const verb = rng.chance(0.1) ? rng.pick(["PUT", "DELETE", "PATCH", "OPTIONS"]) : route.verb;
  const init: RequestInit = { method: verb, headers: { ...headers(rng), "content-type": "application/json" } };
  if (verb !== "GET" && verb !== "HEAD" && verb !== "OPTIONS") init.body = jsonBody(rng, route.method);
  const what = `REST ${verb} ${route.template}`;
  const res = await fetch(`${server.baseUrl}${path}${query}`, init);
  const text = await res.text();
  if (res.status >= 500 && !SANCTIONED_5XX.has(res.status)) note(`${what}: HTTP ${res.status}`, text);
  if (/"code"\s*:\s*"(internal|unknown)"/.test(text)) note(`${what}: internal`, text);
  checkText(what, text);
}

describe(`fuzz (FUZZ_SEED=${SEED})`, () => {
  let session: http2.ClientHttp2Session;
  beforeAll(() => {
    session = http2.connect(server.baseUrl);
    session.on("error", () => {});
  });
  afterAll(() => session?.close());

  it("every RPC on every protocol and every REST path: no Internal, no unsanctioned 5xx, no internals in any answer", async () => {
    const rng = prng(SEED);
    const methods = TenantRegistryService.methods;
    const started = Date.now();
    let sent = 0;
    const counts = { connectJson: 0, connectBinary: 0, grpc: 0, grpcWeb: 0, rest: 0 };
    while (sent < MAX_REQUESTS && Date.now() - started < BUDGET_MS) {
      // Each round visits every RPC once on a random protocol, and one REST path.
      for (const method of methods) {
        const kind = rng.int(4);
        const call =
          kind === 0 ? (counts.connectJson++, connectCall(rng, method, false))
          : kind === 1 ? (counts.connectBinary++, connectCall(rng, method, true))
          : kind === 2 ? (counts.grpc++, grpcCall(rng, session.closed || session.destroyed ? (session = http2.connect(server.baseUrl)) : session, method, false))
          : (counts.grpcWeb++, grpcCall(rng, session.closed || session.destroyed ? (session = http2.connect(server.baseUrl)) : session, method, true));
        await call.catch((e: unknown) => note(`${method.name}: transport failure`, String(e)));
        sent++;
      }
      const route = rng.pick(ROUTES);
      counts.rest++;
      await restCall(rng, route).catch((e: unknown) => note(`REST ${route.template}: transport failure`, String(e)));
      sent++;
    }
    console.info(`fuzz: seed ${SEED}, ${sent} requests in ${Date.now() - started} ms`, counts);
    expect(findings, `reproduce with FUZZ_SEED=${SEED}`).toEqual([]);
    // Every client fault is logged as such, never as an error of ours.
    const errors = server.logs.filter((l) => (l["level"] as number) >= 50);
    expect(errors.map((l) => l["msg"])).toEqual([]);
  }, BUDGET_MS + 60_000);
});
