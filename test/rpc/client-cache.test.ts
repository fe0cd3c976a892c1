import { randomUUID } from "node:crypto";
import http2 from "node:http2";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProductCode } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { VerifyApiKeyCode } from "../../gen/breakpilot/tenantregistry/v1/api_key_pb.js";
import { TenantRegistryService, type WatchChangesResponse } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { createTenantRegistryClient, type TenantRegistryClient } from "../../src/client/index.js";
import type { DatabasePool } from "../../src/db/pool.js";
import { tokenFor } from "../support/auth.js";
import { insertTenant } from "../support/fixtures.js";
import { useOidcTestServer } from "../support/harness.js";
import type { OidcIssuer } from "../support/oidc-issuer.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";
import { envelope, grpcStatus, h2Post } from "../support/wire.js";

/**
 * The client's opt-in cache, against the real server and its real change feed:
 * calls are counted where they land (the server's access log), changes are made
 * through a second replica on the same database, and the watch stream is taken
 * away by a real TCP proxy and by killing the server's LISTEN session.
 */
const SERVICE = "breakpilot.tenantregistry.v1.TenantRegistryService";
const BOUND_MS = 1_000;

let sql: pg.Client;
let issuer: OidcIssuer;
let server: TestServer;
let pool: DatabasePool;
let replica: TestServer;
let admin: Client<typeof TenantRegistryService>;
let serviceToken: string;
const clients: TenantRegistryClient[] = [];
const proxies: TcpProxy[] = [];

useOidcTestServer(async (h) => {
  ({ sql, issuer, server, pool } = h);
});
beforeAll(async () => {
  // Another replica on the same database: its commits reach `server` only as change notices.
  replica = await startTestServer(pool, { auth: { mode: "oidc", issuer: issuer.issuer } });
  admin = createTenantRegistryClient({ baseUrl: replica.baseUrl, token: await tokenFor(issuer, "platform-admin") });
  serviceToken = await tokenFor(issuer, "service");
});
afterAll(async () => {
  clients.forEach((c) => c.close());
  await replica?.close();
});

/** How many calls of `method` the server has received. */
const callsAt = (s: TestServer, method: string) => s.logs.filter((l) => l["msg"] === "rpc" && l["procedure"] === `${SERVICE}/${method}`).length;

async function cachedClient(protocol: "grpc" | "connect", baseUrl = server.baseUrl, token = serviceToken): Promise<TenantRegistryClient> {
  const client = createTenantRegistryClient({ baseUrl, protocol, token, retries: 0, cache: { baseDelayMs: 20, maxDelayMs: 100 } });
  clients.push(client);
  await client.cache!.whenLive();
  return client;
}

/** Polls `probe` until it is true; returns how long that took. Fails past `limitMs`. */
async function timeUntil(probe: () => Promise<boolean>, limitMs = 5_000): Promise<number> {
  const started = performance.now();
  while (!(await probe())) {
    if (performance.now() - started > limitMs) throw new Error(`not within ${limitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return performance.now() - started;
}

/**
 * A tenant with a product and an API key, made before the test's calls: returns once
 * `client` has seen the key's creation notice, which would otherwise land mid-test.
 */
async function seeded(client: TenantRegistryClient) {
  const seen = client.cache!.stats.invalidations;
  const tenant = await insertTenant(sql, { products: ["certifai"] });
  const { secret, apiKey } = await admin.createApiKey({ tenantId: tenant.id, name: "cached", scopes: ["tenant-viewer"] });
  await timeUntil(async () => client.cache!.stats.invalidations > seen);
  return { ...tenant, secret, keyId: apiKey!.id };
}

describe.each(["grpc", "connect"] as const)("the client cache over %s", (protocol) => {
  it("answers repeated lookups, checks and verifications without calling the server", async () => {
    const client = await cachedClient(protocol);
    const t = await seeded(client);
    const calls = {
      GetTenantBySlug: () => client.getTenantBySlug({ slug: t.slug }),
      GetTenant: () => client.getTenant({ id: t.id }),
      CheckEntitlement: () => client.checkEntitlement({ tenant: t.slug, product: ProductCode.CERTIFAI }),
      VerifyApiKey: () => client.verifyApiKey({ key: t.secret }),
    };
    for (const [method, call] of Object.entries(calls)) {
      const before = callsAt(server, method);
      const first = await call();
      for (let i = 0; i < 50; i++) expect(await call()).toEqual(first);
      expect(callsAt(server, method) - before, method).toBe(1);
    }
    expect(client.cache!.stats.hits).toBe(200);
  });

  it("hands out copies: a caller mutating an answer does not change the next one", async () => {
    const client = await cachedClient(protocol);
    const t = await seeded(client);
    const first = await client.getTenantBySlug({ slug: t.slug });
    first.tenant!.name = "scribbled";
    expect((await client.getTenantBySlug({ slug: t.slug })).tenant!.name).toBe(`Tenant ${t.slug}`);
  });

  it("sees a revocation made through another replica within 1 s", async () => {
    const client = await cachedClient(protocol);
    const t = await seeded(client);
    expect((await client.verifyApiKey({ key: t.secret })).code).toBe(VerifyApiKeyCode.VALID);
    expect((await client.verifyApiKey({ key: t.secret })).code).toBe(VerifyApiKeyCode.VALID);
    await admin.revokeApiKey({ id: t.keyId });
    const lag = await timeUntil(async () => (await client.verifyApiKey({ key: t.secret })).code === VerifyApiKeyCode.REVOKED);
    expect(lag).toBeLessThan(BOUND_MS);
  });

  it("sees a revoked product and a suspended tenant within 1 s", async () => {
    const client = await cachedClient(protocol);
    const t = await seeded(client);
    const check = () => client.checkEntitlement({ tenant: t.slug, product: ProductCode.CERTIFAI });
    expect((await check()).entitled).toBe(true);
    expect((await check()).entitled).toBe(true);
    await admin.revokeProduct({ tenantId: t.id, product: ProductCode.CERTIFAI });
    expect(await timeUntil(async () => !(await check()).entitled)).toBeLessThan(BOUND_MS);

    expect((await client.getTenantBySlug({ slug: t.slug })).tenant!.suspensionReason).toBe("");
    await admin.suspendTenant({ id: t.id, reason: "unpaid" });
    expect(await timeUntil(async () => (await client.getTenantBySlug({ slug: t.slug })).tenant!.suspensionReason === "unpaid")).toBeLessThan(BOUND_MS);
  });

  it("stops answering from the cache when its watch stream drops, until it has resubscribed and flushed", async () => {
    const proxy = await startTcpProxy("127.0.0.1", server.port);
    proxies.push(proxy);
    const client = await cachedClient(protocol, `http://127.0.0.1:${proxy.port}`);
    const t = await seeded(client);
    await client.getTenantBySlug({ slug: t.slug });
    await client.getTenantBySlug({ slug: t.slug });
    expect(client.cache!.stats.hits).toBe(1);

    await proxy.cut();
    await timeUntil(async () => !client.cache!.stats.live);
    // Not a stale answer from memory: the call goes out, and finds no server.
    const error = await client.getTenantBySlug({ slug: t.slug }).catch((e: unknown) => ConnectError.from(e));
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.Unavailable);

    // A change nobody could tell this client about while it was cut off.
    await admin.suspendTenant({ id: t.id, reason: "while cut off" });
    await proxy.restore();
    await client.cache!.whenLive();
    expect((await client.getTenantBySlug({ slug: t.slug })).tenant!.suspensionReason).toBe("while cut off");
  });

  it("stops answering from the cache while the server's own listener is down, and flushes when it is back", async () => {
    const client = await cachedClient(protocol);
    const t = await seeded(client);
    await client.getTenantBySlug({ slug: t.slug });
    const flushes = client.cache!.stats.flushes;

    await sql.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tenant-registry change listener' AND pid <> pg_backend_pid()",
    );
    await timeUntil(async () => !client.cache!.stats.live, 3_000);
    const before = callsAt(server, "GetTenantBySlug");
    await client.getTenantBySlug({ slug: t.slug });
    await client.cache!.whenLive();
    expect(callsAt(server, "GetTenantBySlug") - before).toBe(1);
    // Paused (everything dropped), then flushed on reconnect: two flushes, and the stream itself stayed up.
    expect(client.cache!.stats.flushes - flushes).toBeGreaterThanOrEqual(2);
  });
});

/** Change events of one stream, collected in the background. */
function collect(stream: AsyncIterable<WatchChangesResponse>) {
  const events: WatchChangesResponse["event"][] = [];
  const done = (async () => {
    for await (const res of stream) events.push(res.event);
  })().catch((e: unknown) => ConnectError.from(e));
  return { events, done };
}

describe("WatchChanges", () => {
  it("shows a tenant-scoped caller only its own tenant's changes, and a platform caller every tenant's", async () => {
    const a = await insertTenant(sql);
    const b = await insertTenant(sql);
    const abort = new AbortController();
    const viewerOfA = createTenantRegistryClient({ baseUrl: server.baseUrl, token: await tokenFor(issuer, "tenant-viewer", { tenantId: a.id }) });
    const platform = createTenantRegistryClient({ baseUrl: server.baseUrl, token: serviceToken });
    const scoped = collect(viewerOfA.watchChanges({}, { signal: abort.signal, timeoutMs: 0 }));
    const all = collect(platform.watchChanges({}, { signal: abort.signal, timeoutMs: 0 }));
    await timeUntil(async () => scoped.events.length > 0 && all.events.length > 0);
    expect(scoped.events[0]?.case).toBe("flush");

    await admin.grantProduct({ tenantId: b.id, product: ProductCode.COMPLIANCE });
    await admin.grantProduct({ tenantId: a.id, product: ProductCode.COMPLIANCE });
    await timeUntil(async () => scoped.events.some((e) => e.case === "change"));
    await timeUntil(async () => all.events.filter((e) => e.case === "change").length >= 2);
    abort.abort();
    await Promise.all([scoped.done, all.done]);

    const tenantsOf = (events: WatchChangesResponse["event"][]) => events.flatMap((e) => (e.case === "change" ? [e.value.tenantId] : []));
    expect(tenantsOf(scoped.events)).toEqual([a.id]);
    expect(tenantsOf(all.events)).toEqual(expect.arrayContaining([a.id, b.id]));
    const change = scoped.events.find((e) => e.case === "change");
    expect(change?.case === "change" && change.value.action).toBe("product.grant");
  });

  it("refuses another tenant's id to a tenant-scoped caller (NotFound) and a malformed id to anyone", async () => {
    const a = await insertTenant(sql);
    const b = await insertTenant(sql);
    const viewerOfA = createTenantRegistryClient({ baseUrl: server.baseUrl, token: await tokenFor(issuer, "tenant-viewer", { tenantId: a.id }) });
    const first = async (client: TenantRegistryClient, tenantId: string) => {
      for await (const res of client.watchChanges({ tenantId })) return res.event.case;
      return "ended";
    };
    await expect(first(viewerOfA, b.id)).rejects.toMatchObject({ code: Code.NotFound });
    await expect(first(viewerOfA, "not-a-uuid")).rejects.toMatchObject({ code: Code.InvalidArgument });
    expect(await first(viewerOfA, a.id)).toBe("flush");
    expect(await first(admin as TenantRegistryClient, randomUUID())).toBe("flush");
  });

  it("ends DeadlineExceeded, not OK, when the caller's deadline passes", async () => {
    const session = http2.connect(server.baseUrl);
    try {
      const started = performance.now();
      const answer = await h2Post(
        session,
        "/breakpilot.tenantregistry.v1.TenantRegistryService/WatchChanges",
        { "content-type": "application/grpc", te: "trailers", "grpc-timeout": "400m", authorization: `Bearer ${serviceToken}` },
        envelope(new Uint8Array(0)),
      );
      expect(grpcStatus(answer)).toBe(String(Code.DeadlineExceeded));
      expect(performance.now() - started).toBeGreaterThanOrEqual(350);
    } finally {
      session.close();
    }
  });

  it("ends cleanly when the server drains, and the client's cache goes off", async () => {
    const draining = await startTestServer(pool, { auth: { mode: "oidc", issuer: issuer.issuer } });
    const client = createTenantRegistryClient({ baseUrl: draining.baseUrl, token: serviceToken, cache: true });
    await client.cache!.whenLive();
    const raw = createTenantRegistryClient({ baseUrl: draining.baseUrl, token: serviceToken });
    const stream = collect(raw.watchChanges({}, { timeoutMs: 0 }));
    await timeUntil(async () => stream.events.length > 0);

    const started = performance.now();
    await draining.close();
    expect(await stream.done).toBeUndefined(); // ended, not failed
    expect(performance.now() - started).toBeLessThan(2_000);
    await timeUntil(async () => !client.cache!.stats.live);
    client.close();
    expect(draining.logs.filter((l) => (l["level"] as number) >= 50)).toEqual([]);
  });
});
