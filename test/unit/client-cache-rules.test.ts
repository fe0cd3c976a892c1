import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { TenantSchema } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import {
  TenantRegistryService,
  WatchChangesResponseSchema,
  type WatchChangesResponse,
} from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { createTenantRegistryClient, type ClientCacheOptions, type TenantRegistryClient, type WatchOptions } from "../../src/client/index.js";
import { createLogger } from "../../src/logger.js";
import { listen, type Listening } from "../../src/transport/server.js";

/**
 * The cache's rules, against a real server whose change feed the test writes:
 * what is kept, for how long, and what a change, a flush, a pause or a silent
 * stream does to it. Calls are counted at the server.
 */
const TENANT = "0b6c1f52-3d5e-4a7b-9c1d-2e3f4a5b6c7d";

type FeedEvent = MessageInitShape<typeof WatchChangesResponseSchema>["event"];
type Feed = { push(event: FeedEvent): void; end(): void };
let feeds: Feed[];
let calls: Record<string, number>;
let gate: Promise<void> | undefined;
let entitlementExpiresAt: number | undefined;
let verifyNamesTenant: boolean;
let server: Listening;
let client: TenantRegistryClient;

const count = (method: string) => (calls[method] = (calls[method] ?? 0) + 1);

function openFeed(signal: AbortSignal): AsyncIterable<WatchChangesResponse> {
  const queue: FeedEvent[] = [{ case: "flush", value: {} }];
  let wake: (() => void) | undefined;
  let ended = false;
  feeds.push({
    push(event) {
      queue.push(event);
      wake?.();
    },
    end() {
      ended = true;
      wake?.();
    },
  });
  return (async function* () {
    while (!signal.aborted && !ended) {
      const event = queue.shift();
      if (event) yield create(WatchChangesResponseSchema, { event });
      else await new Promise<void>((resolve) => (wake = resolve));
    }
  })();
}

const routes = (router: ConnectRouter) =>
  router.service(TenantRegistryService, {
    async getTenantBySlug(req) {
      const n = count("getTenantBySlug");
      await gate;
      return { tenant: create(TenantSchema, { id: TENANT, slug: req.slug, name: `answer ${n}` }) };
    },
    async checkEntitlement() {
      count("checkEntitlement");
      return { entitled: true, tenantId: TENANT, expiresAt: entitlementExpiresAt ? timestampFromMs(entitlementExpiresAt) : undefined };
    },
    async verifyApiKey() {
      count("verifyApiKey");
      return verifyNamesTenant ? { valid: true, tenant: create(TenantSchema, { id: TENANT }) } : { valid: false };
    },
    async *watchChanges(_req, ctx) {
      count("watchChanges");
      yield* openFeed(ctx.signal);
    },
  });

beforeAll(async () => {
  server = await listen(connectNodeAdapter({ routes }), { host: "127.0.0.1", port: 0 }, createLogger("silent"));
});
afterAll(async () => server.close(1_000));
beforeEach(() => {
  feeds = [];
  calls = {};
  gate = undefined;
  entitlementExpiresAt = undefined;
  verifyNamesTenant = true;
});
afterEach(() => client?.close());

async function cachedClient(options: ClientCacheOptions & WatchOptions = {}) {
  client = createTenantRegistryClient({ baseUrl: `http://127.0.0.1:${server.port}`, retries: 0, cache: { baseDelayMs: 10, maxDelayMs: 20, ...options } });
  await client.cache!.whenLive();
  return client;
}

async function until(probe: () => boolean, limitMs = 3_000) {
  const started = Date.now();
  while (!probe()) {
    if (Date.now() - started > limitMs) throw new Error(`not within ${limitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
const lastFeed = () => feeds.at(-1)!;

describe("the client cache's rules", () => {
  it("does not keep an answer whose call began before a change of its tenant", async () => {
    await cachedClient();
    let release!: () => void;
    gate = new Promise((resolve) => (release = resolve));
    const inFlight = client.getTenantBySlug({ slug: "acme" });
    await until(() => calls["getTenantBySlug"] === 1);
    lastFeed().push({ case: "change", value: { tenantId: TENANT, action: "tenant.update" } });
    await until(() => client.cache!.stats.invalidations === 1);
    release();
    expect((await inFlight).tenant?.name).toBe("answer 1");
    gate = undefined;
    // The answer may predate the change: asked again, and only that answer is kept.
    expect((await client.getTenantBySlug({ slug: "acme" })).tenant?.name).toBe("answer 2");
    expect((await client.getTenantBySlug({ slug: "acme" })).tenant?.name).toBe("answer 2");
    expect(calls["getTenantBySlug"]).toBe(2);
  });

  it("does not keep an answer whose call began before a flush", async () => {
    await cachedClient();
    let release!: () => void;
    gate = new Promise((resolve) => (release = resolve));
    const inFlight = client.getTenantBySlug({ slug: "acme" });
    await until(() => calls["getTenantBySlug"] === 1);
    const flushes = client.cache!.stats.flushes;
    lastFeed().push({ case: "flush", value: {} });
    await until(() => client.cache!.stats.flushes > flushes);
    release();
    await inFlight;
    gate = undefined;
    await client.getTenantBySlug({ slug: "acme" });
    expect(calls["getTenantBySlug"]).toBe(2);
  });

  it("drops only the changed tenant's answers", async () => {
    await cachedClient();
    await client.getTenantBySlug({ slug: "acme" });
    lastFeed().push({ case: "change", value: { tenantId: "another-tenant", action: "tenant.update" } });
    await until(() => client.cache!.stats.invalidations === 1);
    await client.getTenantBySlug({ slug: "acme" });
    expect(calls["getTenantBySlug"]).toBe(1);
    lastFeed().push({ case: "change", value: { tenantId: TENANT, action: "tenant.update" } });
    await until(() => client.cache!.stats.invalidations === 2);
    await client.getTenantBySlug({ slug: "acme" });
    expect(calls["getTenantBySlug"]).toBe(2);
  });

  it("answers from the server while paused, and from memory again only after the next flush", async () => {
    await cachedClient();
    await client.getTenantBySlug({ slug: "acme" });
    lastFeed().push({ case: "paused", value: {} });
    await until(() => !client.cache!.stats.live);
    await client.getTenantBySlug({ slug: "acme" });
    await client.getTenantBySlug({ slug: "acme" });
    expect(calls["getTenantBySlug"]).toBe(3);
    lastFeed().push({ case: "flush", value: {} });
    await client.cache!.whenLive();
    await client.getTenantBySlug({ slug: "acme" });
    await client.getTenantBySlug({ slug: "acme" });
    expect(calls["getTenantBySlug"]).toBe(4);
  });

  it("keeps an entitlement no longer than the grant's expires_at", async () => {
    await cachedClient();
    entitlementExpiresAt = Date.now() + 300;
    await client.checkEntitlement({ tenant: "acme" });
    await client.checkEntitlement({ tenant: "acme" });
    expect(calls["checkEntitlement"]).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 350));
    await client.checkEntitlement({ tenant: "acme" });
    expect(calls["checkEntitlement"]).toBe(2);
  });

  it("keeps a verification at most verifyMaxAgeMs, other answers up to maxAgeMs", async () => {
    await cachedClient({ verifyMaxAgeMs: 100, maxAgeMs: 10_000 });
    await client.verifyApiKey({ key: "trk_x" });
    await client.verifyApiKey({ key: "trk_x" });
    await client.getTenantBySlug({ slug: "acme" });
    expect(calls["verifyApiKey"]).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 150));
    await client.verifyApiKey({ key: "trk_x" });
    await client.getTenantBySlug({ slug: "acme" });
    expect(calls["verifyApiKey"]).toBe(2);
    expect(calls["getTenantBySlug"]).toBe(1);
  });

  it("never keeps an answer that names no tenant (an unknown key): every guess reaches the server", async () => {
    await cachedClient();
    verifyNamesTenant = false;
    for (let i = 0; i < 3; i++) await client.verifyApiKey({ key: "trk_guess" });
    expect(calls["verifyApiKey"]).toBe(3);
  });

  it("keeps at most maxEntries answers, dropping the least recently used", async () => {
    await cachedClient({ maxEntries: 2 });
    await client.getTenantBySlug({ slug: "a" });
    await client.getTenantBySlug({ slug: "b" });
    await client.getTenantBySlug({ slug: "a" }); // a is now the most recent
    await client.getTenantBySlug({ slug: "c" }); // evicts b
    expect(calls["getTenantBySlug"]).toBe(3);
    await client.getTenantBySlug({ slug: "a" });
    expect(calls["getTenantBySlug"]).toBe(3);
    await client.getTenantBySlug({ slug: "b" });
    expect(calls["getTenantBySlug"]).toBe(4);
    expect(client.cache!.stats.entries).toBe(2);
  });

  it("takes a silent stream for dead: off, resubscribed, and live again only after the new flush", async () => {
    await cachedClient({ idleTimeoutMs: 200 });
    await client.getTenantBySlug({ slug: "acme" });
    await until(() => (calls["watchChanges"] ?? 0) >= 2);
    await client.cache!.whenLive();
    await client.getTenantBySlug({ slug: "acme" });
    expect(calls["getTenantBySlug"]).toBe(2);
  });

  it("resubscribes after the server ends the stream", async () => {
    await cachedClient();
    lastFeed().end();
    await until(() => (calls["watchChanges"] ?? 0) >= 2);
    await client.cache!.whenLive();
    expect(client.cache!.stats.live).toBe(true);
  });
});
