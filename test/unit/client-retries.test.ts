import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { TenantSchema } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { createTenantRegistryClient, type TenantRegistryClientOptions } from "../../src/client/index.js";
import { createLogger } from "../../src/logger.js";
import { listen, type Listening } from "../../src/transport/server.js";

/**
 * A real server on a real port that answers what each test scripts (Unavailable
 * first, say), counting every call it receives: the client's retries are
 * observed where they land, not inside the client.
 */
type Script = { failures: number; code: Code };
let script: Script;
let calls: Record<string, number>;
let authorizations: string[];
let server: Listening;
// Each test's calls carry its number: a late attempt of an earlier test (a loaded
// machine delivers them late) is turned away uncounted.
let testNumber = 0;

function scripted(method: string, ctx: HandlerContext): void {
  if (ctx.requestHeader.get("x-test-number") !== String(testNumber)) throw new ConnectError("an earlier test's call", Code.Aborted);
  if (method === "getTenantBySlug" || method === "exportAuditEvents") authorizations.push(ctx.requestHeader.get("authorization") ?? "");
  calls[method] = (calls[method] ?? 0) + 1;
  if (calls[method]! <= script.failures) throw new ConnectError("scripted failure", script.code);
}

const routes = (router: ConnectRouter) =>
  router.service(TenantRegistryService, {
    async getTenantBySlug(req, ctx) {
      scripted("getTenantBySlug", ctx);
      return { tenant: create(TenantSchema, { slug: req.slug }) };
    },
    async createTenant(req, ctx) {
      scripted("createTenant", ctx);
      return { tenant: create(TenantSchema, { slug: req.slug }) };
    },
    async verifyApiKey(_req, ctx) {
      scripted("verifyApiKey", ctx);
      return { valid: true };
    },
    async getTenant(_req, ctx) {
      calls["getTenant"] = (calls["getTenant"] ?? 0) + 1;
      // Never answers: only the caller's deadline ends this call.
      await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
      return {};
    },
    // Two messages, the second after 600 ms: longer than the short default deadlines below.
    async *exportAuditEvents(_req, ctx) {
      // Through the stream's own transport, the caller's interceptors and the credential still apply.
      scripted("exportAuditEvents", ctx);
      yield { events: [] };
      await new Promise((resolve) => setTimeout(resolve, 600));
      ctx.signal.throwIfAborted();
      yield { events: [] };
    },
    async suspendTenant(_req, ctx) {
      scripted("suspendTenant", ctx);
      return {};
    },
  });

beforeAll(async () => {
  server = await listen(connectNodeAdapter({ routes }), { host: "127.0.0.1", port: 0 }, createLogger("silent"));
});
afterAll(async () => server.close(1_000));
beforeEach(() => {
  testNumber += 1;
  script = { failures: 0, code: Code.Unavailable };
  calls = {};
  authorizations = [];
});

const PROTOCOLS = [
  { name: "grpc", protocol: "grpc" },
  { name: "connect", protocol: "connect" },
  { name: "connect over HTTP/2", protocol: "connect", httpVersion: "2" },
] as const satisfies readonly (Pick<TenantRegistryClientOptions, "protocol" | "httpVersion"> & { name: string })[];

describe.each(PROTOCOLS)("createTenantRegistryClient retries ($name)", ({ name: _name, ...transport }) => {
  const client = (options: Partial<TenantRegistryClientOptions> = {}) => {
    const tag = String(testNumber);
    const tagged: Interceptor = (next) => async (req) => {
      req.header.set("x-test-number", tag);
      return next(req);
    };
    return createTenantRegistryClient({
      baseUrl: `http://127.0.0.1:${server.port}`,
      ...transport,
      retries: { max: 2, baseDelayMs: 5 },
      interceptors: [tagged],
      ...options,
    });
  };

  it("retries a NO_SIDE_EFFECTS call on Unavailable and answers once the server does", async () => {
    script = { failures: 2, code: Code.Unavailable };
    const { tenant } = await client().getTenantBySlug({ slug: "acme" });
    expect(tenant?.slug).toBe("acme");
    expect(calls["getTenantBySlug"]).toBe(3);
  });

  it("gives up after the configured retries with the server's Unavailable", async () => {
    script = { failures: 10, code: Code.Unavailable };
    await expect(client().getTenantBySlug({ slug: "acme" })).rejects.toMatchObject({ code: Code.Unavailable });
    expect(calls["getTenantBySlug"]).toBe(3);
  });

  it("never retries a create without an idempotency key: it might have been applied", async () => {
    script = { failures: 10, code: Code.Unavailable };
    await expect(client().createTenant({ slug: "new-one", name: "New" })).rejects.toMatchObject({ code: Code.Unavailable });
    expect(calls["createTenant"]).toBe(1);
  });

  it("retries a create that carries an idempotency key: the server replays instead of creating twice", async () => {
    script = { failures: 1, code: Code.Unavailable };
    const { tenant } = await client().createTenant({ slug: "new-one", name: "New", idempotencyKey: "k-1" });
    expect(tenant?.slug).toBe("new-one");
    expect(calls["createTenant"]).toBe(2);
  });

  it("never retries other mutations", async () => {
    script = { failures: 10, code: Code.Unavailable };
    await expect(client().suspendTenant({ id: "x", reason: "r" })).rejects.toMatchObject({ code: Code.Unavailable });
    expect(calls["suspendTenant"]).toBe(1);
  });

  it("retries VerifyApiKey, which the proto marks IDEMPOTENT", async () => {
    script = { failures: 1, code: Code.Unavailable };
    expect((await client().verifyApiKey({ key: "trk_x" })).valid).toBe(true);
    expect(calls["verifyApiKey"]).toBe(2);
  });

  it.each([Code.Internal, Code.DeadlineExceeded, Code.ResourceExhausted, Code.NotFound])("does not retry code %s, even on a safe call", async (code) => {
    script = { failures: 10, code };
    await expect(client().getTenantBySlug({ slug: "acme" })).rejects.toMatchObject({ code });
    expect(calls["getTenantBySlug"]).toBe(1);
  });

  it("does not retry when retries is 0", async () => {
    script = { failures: 10, code: Code.Unavailable };
    await expect(client({ retries: 0 }).getTenantBySlug({ slug: "acme" })).rejects.toMatchObject({ code: Code.Unavailable });
    expect(calls["getTenantBySlug"]).toBe(1);
  });

  it("keeps retries inside the call's deadline", async () => {
    script = { failures: 1_000, code: Code.Unavailable };
    const started = Date.now();
    await expect(
      client({ timeoutMs: 300, retries: { max: 1_000, baseDelayMs: 100, maxDelayMs: 100 } }).getTenantBySlug({ slug: "acme" }),
    ).rejects.toMatchObject({ code: Code.DeadlineExceeded });
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(calls["getTenantBySlug"]).toBeLessThan(20);
  });

  it("sends a static token as a bearer credential on every attempt", async () => {
    script = { failures: 1, code: Code.Unavailable };
    await client({ token: "static-token" }).getTenantBySlug({ slug: "acme" });
    expect(authorizations).toEqual(["Bearer static-token", "Bearer static-token"]);
  });

  it("asks an async token provider before every attempt, so a retry carries a refreshed token", async () => {
    script = { failures: 1, code: Code.Unavailable };
    let issued = 0;
    const tokenProvider = async () => `token-${++issued}`;
    await client({ tokenProvider }).getTenantBySlug({ slug: "acme" });
    expect(authorizations).toEqual(["Bearer token-1", "Bearer token-2"]);
  });

  it("applies the default deadline to calls that set none", async () => {
    const started = Date.now();
    await expect(client({ timeoutMs: 200 }).getTenant({ id: "x" })).rejects.toMatchObject({ code: Code.DeadlineExceeded });
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(calls["getTenant"]).toBe(1);
  });

  it("gives a server stream no default deadline: an export runs as long as its data", async () => {
    let messages = 0;
    for await (const _ of client({ timeoutMs: 200, token: "stream-token" }).exportAuditEvents({})) messages += 1;
    expect(messages).toBe(2);
    expect(calls["exportAuditEvents"]).toBe(1);
    expect(authorizations).toEqual(["Bearer stream-token"]);
  });

  it("still ends a server stream at a deadline the call gives", async () => {
    const read = async () => {
      for await (const _ of client().exportAuditEvents({}, { timeoutMs: 200 })) {
        // drained
      }
    };
    await expect(read()).rejects.toMatchObject({ code: Code.DeadlineExceeded });
  });
});

describe("createTenantRegistryClient options", () => {
  it("refuses a static token and a provider together", () => {
    expect(() => createTenantRegistryClient({ baseUrl: "http://127.0.0.1:1", token: "a", tokenProvider: () => "b" })).toThrow(/token or tokenProvider/);
  });
});
