import { createHash, randomUUID } from "node:crypto";
import { Writable } from "node:stream";
import { toJsonString } from "@bufbuild/protobuf";
import { durationFromMs, timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type pg from "pg";
import { beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { ApiKeySchema, VerifyApiKeyCode } from "../../gen/breakpilot/tenantregistry/v1/api_key_pb.js";
import { ProductCode, TenantStatus } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import type { DatabasePool } from "../../src/db/pool.js";
import { insertApiKey, rotateApiKeySecret } from "../../src/db/queries/api-keys.js";
import { generateApiKeyToken } from "../../src/domain/api-key.js";
import { createLogger } from "../../src/logger.js";
import { createApiKeyUsageTracker } from "../../src/service/api-key-usage.js";
import { auditEvents, insertTenant, uniqueSlug } from "../support/fixtures.js";
import type { TestDatabase } from "../support/database.js";
import { useTestServer } from "../support/harness.js";
import { clientFor, type TestServer, type TransportName } from "../support/server.js";
import { restFetch } from "../support/rest.js";

const SECOND = 1_000;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const TOKEN = /^trk_[0-9a-z]{12}_[0-9A-Za-z]{43}$/;

let db: TestDatabase;
let pool: DatabasePool;
let server: TestServer;
let sqlClient: pg.Client;
// The server's clock: expiry and grace periods are decided against it.
let now = new Date();

useTestServer((h) => ({ db, pool, server, sql: sqlClient } = h), { clock: () => now });

beforeEach(() => {
  now = new Date();
});

async function insertProject(tenantId: string): Promise<string> {
  const { rows } = await sqlClient.query<{ id: string }>(
    "INSERT INTO tenant_projects (tenant_id, slug, name) VALUES ($1, $2, 'Project') RETURNING id",
    [tenantId, uniqueSlug("p")],
  );
  return rows[0]!.id;
}

// Through the service, not SQL: a change made behind its back reaches a cached answer only by CACHE_TTL.
async function setStatus(tenantId: string, status: "active" | "suspended") {
  const api = clientFor(TenantRegistryService, server.baseUrl, "grpc");
  if (status === "suspended") await api.suspendTenant({ id: tenantId, reason: "test" });
  else await api.reactivateTenant({ id: tenantId });
}

async function failure(promise: Promise<unknown>): Promise<ConnectError> {
  return promise.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (e: unknown) => ConnectError.from(e),
  );
}

const secretPart = (token: string) => token.split("_")[2]!;
const sha256 = (s: string) => createHash("sha256").update(s).digest();

type Api = Client<typeof TenantRegistryService>;

describe.each<TransportName>(["grpc", "connect-json-h1"])("api keys over %s", (transport) => {
  let api: Api;
  beforeAll(() => {
    api = clientFor(TenantRegistryService, server.baseUrl, transport);
  });

  async function newKey(tenantId: string, extra: { name?: string; expiresAt?: Timestamp } = {}) {
    const res = await api.createApiKey({ tenantId, name: "key", scopes: ["read", "write"], ...extra });
    return { key: res.apiKey!, secret: res.secret };
  }
  const verify = (key: string, more: { requiredScopes?: string[]; product?: ProductCode } = {}) => api.verifyApiKey({ key, ...more });

  it("creates a key: the token once, only its hash stored, metadata everywhere else, an audit event without secrets", async () => {
    const tenant = await insertTenant(sqlClient, { products: ["certifai"] });
    const projectId = await insertProject(tenant.id);
    const expiresAt = new Date(now.getTime() + DAY);
    const created = await api.createApiKey({
      tenantId: tenant.id,
      name: "  CI deploy  ",
      projectId,
      scopes: ["read", "write", "read"],
      expiresAt: timestampFromDate(expiresAt),
    });
    const { apiKey, secret } = created;
    expect(secret).toMatch(TOKEN);
    expect(created.idempotentReplay).toBe(false);
    expect(apiKey).toMatchObject({
      tenantId: tenant.id,
      projectId,
      name: "CI deploy",
      prefix: secret.slice(0, 16),
      scopes: ["read", "write"],
    });
    expect(timestampDate(apiKey!.expiresAt!).getTime()).toBe(expiresAt.getTime());
    expect(apiKey!.revokedAt).toBeUndefined();
    expect(apiKey!.lastUsedAt).toBeUndefined();

    const { rows } = await sqlClient.query("SELECT prefix, secret_hash FROM api_keys WHERE id = $1", [apiKey!.id]);
    expect(rows[0].prefix).toBe(apiKey!.prefix);
    expect(rows[0].secret_hash).toEqual(sha256(secret));

    expect((await api.getApiKey({ id: apiKey!.id })).apiKey).toEqual(apiKey);

    const events = await auditEvents(sqlClient, { targetId: apiKey!.id });
    expect(events).toEqual([
      expect.objectContaining({
        action: "api_key.create",
        crud: "c",
        tenant_id: tenant.id,
        target_id: apiKey!.id,
        target_name: "CI deploy",
        target_type: "api_key",
        fields: {
          name: "CI deploy",
          prefix: apiKey!.prefix,
          scopes: ["read", "write"],
          project_id: projectId,
          expires_at: expiresAt.toISOString(),
        },
      }),
    ]);
    expect(JSON.stringify(events)).not.toContain(secretPart(secret));

    const verified = await verify(secret, { requiredScopes: ["read"], product: ProductCode.CERTIFAI });
    expect(verified).toMatchObject({
      valid: true,
      code: VerifyApiKeyCode.VALID,
      keyId: apiKey!.id,
      projectId,
      scopes: ["read", "write"],
      tenant: { id: tenant.id, slug: tenant.slug, status: TenantStatus.ACTIVE, products: [ProductCode.CERTIFAI] },
    });
    expect(timestampDate(verified.expiresAt!).getTime()).toBe(expiresAt.getTime());
  });

  it("VerifyApiKey answers every code, checked in order", async () => {
    const tenant = await insertTenant(sqlClient, { products: ["certifai"] });
    const { key, secret } = await newKey(tenant.id, { expiresAt: timestampFromDate(new Date(now.getTime() + 30 * DAY)) });

    // NOT_FOUND: malformed, unknown prefix, wrong secret; nothing else is told.
    const unknown = generateApiKeyToken().token;
    const wrongSecret = `${key.prefix}_${secretPart(generateApiKeyToken().token)}`;
    for (const token of ["", "trk_", secret.slice(0, -1), `${secret} `, secret.toUpperCase(), unknown, wrongSecret]) {
      const answer = await verify(token);
      expect(answer, token).toMatchObject({ valid: false, code: VerifyApiKeyCode.NOT_FOUND, keyId: "", projectId: "", scopes: [] });
      expect(answer.tenant).toBeUndefined();
      expect(answer.expiresAt).toBeUndefined();
    }

    expect(await verify(secret)).toMatchObject({ valid: true, code: VerifyApiKeyCode.VALID, keyId: key.id });
    expect(await verify(secret, { requiredScopes: ["read", "write"], product: ProductCode.CERTIFAI })).toMatchObject({
      valid: true,
      code: VerifyApiKeyCode.VALID,
    });
    expect(await verify(secret, { requiredScopes: ["read", "admin"] })).toMatchObject({
      valid: false,
      code: VerifyApiKeyCode.INSUFFICIENT_SCOPE,
      keyId: key.id,
      scopes: ["read", "write"],
    });

    // NOT_ENTITLED: no grant, then a grant that expires.
    expect(await verify(secret, { product: ProductCode.COMPLIANCE })).toMatchObject({ valid: false, code: VerifyApiKeyCode.NOT_ENTITLED });
    await api.grantProduct({ tenantId: tenant.id, product: ProductCode.COMPLIANCE, expiresAt: timestampFromDate(new Date(now.getTime() + HOUR)) });
    expect(await verify(secret, { product: ProductCode.COMPLIANCE })).toMatchObject({ valid: true, code: VerifyApiKeyCode.VALID });
    now = new Date(now.getTime() + 2 * HOUR);
    const expiredGrant = await verify(secret, { product: ProductCode.COMPLIANCE });
    expect(expiredGrant).toMatchObject({ valid: false, code: VerifyApiKeyCode.NOT_ENTITLED });
    expect(expiredGrant.tenant?.products).toEqual([ProductCode.CERTIFAI]);

    // TENANT_NOT_ACTIVE comes before scope and product.
    await setStatus(tenant.id, "suspended");
    const suspended = await verify(secret, { requiredScopes: ["admin"], product: ProductCode.COMPLIANCE });
    expect(suspended).toMatchObject({ valid: false, code: VerifyApiKeyCode.TENANT_NOT_ACTIVE, tenant: { status: TenantStatus.SUSPENDED } });

    // EXPIRED comes before the tenant, at expires_at exactly and after.
    now = timestampDate(key.expiresAt!);
    expect(await verify(secret)).toMatchObject({ valid: false, code: VerifyApiKeyCode.EXPIRED, keyId: key.id });

    // REVOKED comes first of all.
    await api.revokeApiKey({ id: key.id });
    expect(await verify(secret)).toMatchObject({ valid: false, code: VerifyApiKeyCode.REVOKED, keyId: key.id });
    await setStatus(tenant.id, "active");
  });

  it("revocation is effective on the very next verify; revoking again changes nothing", async () => {
    const tenant = await insertTenant(sqlClient);
    const { key, secret } = await newKey(tenant.id);
    expect((await verify(secret)).valid).toBe(true);
    const revoked = await api.revokeApiKey({ id: key.id });
    expect(revoked.apiKey?.revokedAt).toBeDefined();
    expect(await verify(secret)).toMatchObject({ valid: false, code: VerifyApiKeyCode.REVOKED });
    const again = await api.revokeApiKey({ id: key.id });
    expect(again.apiKey).toEqual(revoked.apiKey);
    expect((await api.getApiKey({ id: key.id })).apiKey?.revokedAt).toEqual(revoked.apiKey?.revokedAt);
    const events = await auditEvents(sqlClient, { targetId: key.id });
    expect(events.map((e) => [e.action, e.crud])).toEqual([
      ["api_key.create", "c"],
      ["api_key.revoke", "u"],
    ]);
    expect(events[1]).toMatchObject({ target_type: "api_key", target_name: "key", fields: { prefix: key.prefix } });
  });

  it("rotates: the old secret works through the grace period, then answers EXPIRED; grace 0 forgets it (NOT_FOUND)", async () => {
    const tenant = await insertTenant(sqlClient);
    const { key, secret: a } = await newKey(tenant.id);

    const first = await api.rotateApiKey({ id: key.id, gracePeriod: durationFromMs(HOUR) });
    const b = first.secret;
    expect(b).toMatch(TOKEN);
    expect(first.apiKey?.prefix).toBe(b.slice(0, 16));
    expect(first.apiKey?.prefix).not.toBe(key.prefix);
    expect(first.apiKey?.id).toBe(key.id);
    expect(timestampDate(first.apiKey!.previousSecretExpiresAt!).getTime()).toBe(now.getTime() + HOUR);
    expect(await verify(a)).toMatchObject({ valid: true, keyId: key.id });
    expect(await verify(b)).toMatchObject({ valid: true, keyId: key.id });

    now = new Date(now.getTime() + HOUR);
    expect(await verify(a)).toMatchObject({ valid: false, code: VerifyApiKeyCode.EXPIRED, keyId: key.id });
    expect((await verify(b)).valid).toBe(true);

    // A second rotation replaces the previous secret: a is gone, b is the previous one now.
    const second = await api.rotateApiKey({ id: key.id, gracePeriod: durationFromMs(2 * HOUR) });
    const c = second.secret;
    expect(await verify(a)).toMatchObject({ valid: false, code: VerifyApiKeyCode.NOT_FOUND });
    expect((await verify(b)).valid).toBe(true);
    expect((await verify(c)).valid).toBe(true);

    // Grace 0: previous_* are cleared, so the replaced secret's prefix is unknown: NOT_FOUND (not EXPIRED).
    const third = await api.rotateApiKey({ id: key.id });
    const d = third.secret;
    expect(third.apiKey?.previousSecretExpiresAt).toBeUndefined();
    expect(await verify(c)).toMatchObject({ valid: false, code: VerifyApiKeyCode.NOT_FOUND });
    expect(await verify(b)).toMatchObject({ valid: false, code: VerifyApiKeyCode.NOT_FOUND });
    expect((await verify(d)).valid).toBe(true);
    const { rows } = await sqlClient.query("SELECT previous_prefix, previous_secret_hash, previous_expires_at FROM api_keys WHERE id = $1", [key.id]);
    expect(rows[0]).toEqual({ previous_prefix: null, previous_secret_hash: null, previous_expires_at: null });

    const rotations = (await auditEvents(sqlClient, { targetId: key.id })).filter((e) => e.action === "api_key.rotate");
    expect(rotations.map((e) => [e.crud, e.fields])).toEqual([
      ["u", { grace_period_seconds: 3600, prefix: b.slice(0, 16), previous_prefix: key.prefix }],
      ["u", { grace_period_seconds: 7200, prefix: c.slice(0, 16), previous_prefix: b.slice(0, 16) }],
      ["u", { grace_period_seconds: 0, prefix: d.slice(0, 16), previous_prefix: c.slice(0, 16) }],
    ]);
    for (const token of [a, b, c, d]) expect(JSON.stringify(rotations)).not.toContain(secretPart(token));

    // Grace at the 30-day limit is fine; beyond it, negative, or rotating a revoked key is not.
    await api.rotateApiKey({ id: key.id, gracePeriod: durationFromMs(30 * DAY) });
    for (const ms of [30 * DAY + SECOND, -SECOND]) {
      const error = await failure(api.rotateApiKey({ id: key.id, gracePeriod: durationFromMs(ms) }));
      expect(error).toMatchObject({ code: Code.InvalidArgument, rawMessage: "grace_period: must be between 0 and 30 days" });
    }
    await api.revokeApiKey({ id: key.id });
    expect((await failure(api.rotateApiKey({ id: key.id }))).code).toBe(Code.FailedPrecondition);
    expect((await failure(api.rotateApiKey({ id: randomUUID() }))).code).toBe(Code.NotFound);
  });

  it("lists newest first in pages, without revoked keys unless asked", async () => {
    const tenant = await insertTenant(sqlClient);
    const keys = [];
    for (let i = 0; i < 5; i++) keys.push((await newKey(tenant.id, { name: `key ${i}` })).key);
    await api.revokeApiKey({ id: keys[1]!.id });

    const all = async (includeRevoked: boolean) => {
      const seen: string[] = [];
      let pageToken = "";
      do {
        const page = await api.listApiKeys({ tenantId: tenant.id, includeRevoked, pageSize: 2, pageToken });
        expect(page.apiKeys.length).toBeLessThanOrEqual(2);
        seen.push(...page.apiKeys.map((k) => k.name));
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      return seen;
    };
    expect(await all(false)).toEqual(["key 4", "key 3", "key 2", "key 0"]);
    expect(await all(true)).toEqual(["key 4", "key 3", "key 2", "key 1", "key 0"]);

    const page = await api.listApiKeys({ tenantId: tenant.id, pageSize: 2 });
    const otherFilters = await failure(api.listApiKeys({ tenantId: tenant.id, includeRevoked: true, pageToken: page.nextPageToken }));
    expect(otherFilters).toMatchObject({ code: Code.InvalidArgument, rawMessage: "page_token: was issued for different filters" });
    expect((await failure(api.listApiKeys({ tenantId: tenant.id, pageToken: "garbage" }))).code).toBe(Code.InvalidArgument);
    // A real token with its position rewritten (its filters' fingerprint kept) to times PostgreSQL cannot read.
    const { a, f } = JSON.parse(Buffer.from(page.nextPageToken, "base64url").toString()) as { a: [string, string]; f: string };
    for (const at of ["2026-13-45 25:61:61+00", "0000-01-01 00:00:00+00", "2025-02-29 00:00:00+00"]) {
      const forged = Buffer.from(JSON.stringify({ a: [at, a[1]], f })).toString("base64url");
      expect(await failure(api.listApiKeys({ tenantId: tenant.id, pageSize: 2, pageToken: forged })), at).toMatchObject({
        code: Code.InvalidArgument,
        rawMessage: "page_token: is not a token this service issued",
      });
    }
    expect((await failure(api.listApiKeys({ tenantId: randomUUID() }))).code).toBe(Code.NotFound);
    expect((await api.listApiKeys({ tenantId: (await insertTenant(sqlClient)).id })).apiKeys).toEqual([]);
  });

  it("answers InvalidArgument naming the field, NotFound and FailedPrecondition", async () => {
    const tenant = await insertTenant(sqlClient);
    const other = await insertTenant(sqlClient);
    const otherProject = await insertProject(other.id);
    const ok = { tenantId: tenant.id, name: "k" };
    const invalid: [() => Promise<unknown>, string][] = [
      [() => api.createApiKey({ ...ok, tenantId: "x" }), "tenant_id: must be a UUID"],
      [() => api.createApiKey({ ...ok, name: "  " }), "name: is required"],
      [() => api.createApiKey({ ...ok, name: "n".repeat(201) }), "name: must be at most 200 characters"],
      [() => api.createApiKey({ ...ok, projectId: "nope" }), "project_id: must be a UUID"],
      [() => api.createApiKey({ ...ok, scopes: ["Read"] }), 'scopes: "Read" is not a scope'],
      [() => api.createApiKey({ ...ok, scopes: ["a".repeat(65)] }), "scopes:"],
      [() => api.createApiKey({ ...ok, scopes: Array.from({ length: 51 }, (_, i) => `s${i}`) }), "scopes: may have at most 50 entries"],
      [() => api.createApiKey({ ...ok, expiresAt: timestampFromDate(now) }), "expires_at: must be in the future"],
      [() => api.createApiKey({ ...ok, idempotencyKey: "i".repeat(201) }), "idempotency_key: must be at most 200 characters"],
      [() => api.getApiKey({ id: "" }), "id: is required"],
      [() => api.revokeApiKey({ id: "nope" }), "id: must be a UUID"],
      [() => api.rotateApiKey({ id: "nope" }), "id: must be a UUID"],
      [() => api.listApiKeys({ tenantId: "nope" }), "tenant_id: must be a UUID"],
      [() => api.listApiKeys({ tenantId: tenant.id, pageSize: -1 }), "page_size: must not be negative"],
      [() => api.verifyApiKey({ key: "trk_x", product: 42 as ProductCode }), "product: is not a known product"],
    ];
    for (const [call, message] of invalid) {
      const error = await failure(call());
      expect(error.code, message).toBe(Code.InvalidArgument);
      expect(error.rawMessage).toContain(message);
    }
    // 50 distinct scopes (duplicates do not count) are fine.
    const many = [...Array.from({ length: 50 }, (_, i) => `s${i}`), "s0"];
    expect((await api.createApiKey({ ...ok, scopes: many })).apiKey?.scopes).toHaveLength(50);

    const projectElsewhere = await failure(api.createApiKey({ ...ok, projectId: otherProject }));
    expect(projectElsewhere).toMatchObject({ code: Code.NotFound, rawMessage: `project ${otherProject} not found` });
    expect((await failure(api.createApiKey({ ...ok, projectId: randomUUID() }))).code).toBe(Code.NotFound);
    expect((await failure(api.createApiKey({ ...ok, tenantId: randomUUID() }))).code).toBe(Code.NotFound);
    expect((await failure(api.getApiKey({ id: randomUUID() }))).code).toBe(Code.NotFound);
    expect((await failure(api.revokeApiKey({ id: randomUUID() }))).code).toBe(Code.NotFound);

    const archived = await insertTenant(sqlClient, { status: "archived" });
    expect((await failure(api.createApiKey({ ...ok, tenantId: archived.id }))).code).toBe(Code.FailedPrecondition);
  });

  it("idempotent creates: a retry replays the first key without its secret; another request under the key fails", async () => {
    const tenant = await insertTenant(sqlClient);
    const idempotencyKey = randomUUID();
    const request = { tenantId: tenant.id, name: "deploy", scopes: ["b", "a"], idempotencyKey };
    const first = await api.createApiKey(request);
    expect(first).toMatchObject({ idempotentReplay: false, secret: expect.stringMatching(TOKEN) });
    // Same request (scopes reordered and repeated) → the same key, no secret (it was never stored).
    const retry = await api.createApiKey({ ...request, scopes: ["a", "b", "a"] });
    expect(retry).toMatchObject({ idempotentReplay: true, secret: "" });
    expect(retry.apiKey).toEqual(first.apiKey);

    const different = await failure(api.createApiKey({ ...request, name: "other" }));
    expect(different).toMatchObject({
      code: Code.FailedPrecondition,
      rawMessage: "idempotency_key was already used with a different request",
    });
    // Keys are per tenant: the same idempotency key elsewhere is a new create.
    const elsewhere = await api.createApiKey({ ...request, tenantId: (await insertTenant(sqlClient)).id });
    expect(elsewhere.idempotentReplay).toBe(false);

    const { rows } = await sqlClient.query("SELECT count(*)::int AS n FROM api_keys WHERE tenant_id = $1", [tenant.id]);
    expect(rows[0].n).toBe(1);
    expect((await auditEvents(sqlClient, { tenantId: tenant.id })).map((e) => e.action)).toEqual(["api_key.create"]);
  });

  it("10 concurrent retries with the same idempotency key make exactly one key", async () => {
    const tenant = await insertTenant(sqlClient);
    const request = { tenantId: tenant.id, name: "concurrent", scopes: ["read"], idempotencyKey: `retry-${randomUUID()}` };
    const answers = await Promise.all(Array.from({ length: 10 }, () => api.createApiKey(request)));
    expect(new Set(answers.map((a) => a.apiKey?.id)).size).toBe(1);
    expect(answers.filter((a) => !a.idempotentReplay)).toHaveLength(1);
    expect(answers.filter((a) => a.secret !== "")).toHaveLength(1);
    const { rows } = await sqlClient.query("SELECT count(*)::int AS n FROM api_keys WHERE tenant_id = $1", [tenant.id]);
    expect(rows[0].n).toBe(1);
    expect(await auditEvents(sqlClient, { tenantId: tenant.id })).toHaveLength(1);
    const winner = answers.find((a) => a.secret !== "")!;
    expect((await verify(winner.secret)).valid).toBe(true);
  });
});

describe("the secret is kept nowhere", () => {
  it("appears in no table, no log line and no List/Get response", async () => {
    const api = clientFor(TenantRegistryService, server.baseUrl, "connect-json-h1");
    const tenant = await insertTenant(sqlClient, { products: ["certifai"] });
    const projectId = await insertProject(tenant.id);
    const created = await api.createApiKey({ tenantId: tenant.id, name: "leak check", projectId, scopes: ["read"], idempotencyKey: randomUUID() });
    const rotated = await api.rotateApiKey({ id: created.apiKey!.id, gracePeriod: durationFromMs(HOUR) });
    const viaRest = await restFetch(`${server.baseUrl}/v1/tenants/${tenant.id}/api-keys`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "rest", scopes: ["read"] }),
    }).then((r) => r.json() as Promise<{ secret: string }>);
    const tokens = [created.secret, rotated.secret, viaRest.secret];
    for (const token of tokens) {
      expect(token).toMatch(TOKEN);
      expect((await api.verifyApiKey({ key: token, requiredScopes: ["read"], product: ProductCode.CERTIFAI })).valid).toBe(true);
      await restFetch(`${server.baseUrl}/v1/api-keys:verify`, { method: "POST", body: JSON.stringify({ key: token }) });
    }
    // A failed verify with a well-formed token must not log it either.
    await api.verifyApiKey({ key: `${created.apiKey!.prefix}_${"A".repeat(43)}` });

    const needles = tokens.flatMap((t) => [t, secretPart(t), Buffer.from(t).toString("hex"), Buffer.from(secretPart(t)).toString("hex")]);
    const { rows: tables } = await sqlClient.query<{ name: string }>(
      "SELECT quote_ident(table_name) AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    );
    expect(tables.map((t) => t.name)).toEqual(expect.arrayContaining(["api_keys", "audit_log", "idempotency_keys"]));
    // The scan finds what is stored: the public prefix is in api_keys and in the audit log.
    const control = await sqlClient.query(
      "SELECT (SELECT count(*) FROM api_keys x WHERE x::text LIKE '%' || $1 || '%')::int AS keys, (SELECT count(*) FROM audit_log x WHERE x::text LIKE '%' || $1 || '%')::int AS events",
      [rotated.apiKey!.prefix],
    );
    expect(control.rows[0]).toEqual({ keys: 1, events: 1 });
    for (const { name } of tables) {
      for (const needle of needles) {
        const { rows } = await sqlClient.query(`SELECT count(*)::int AS n FROM ${name} x WHERE x::text LIKE '%' || $1 || '%'`, [needle]);
        expect(rows[0].n, `${name} contains a secret`).toBe(0);
      }
    }

    const log = server.logText();
    expect(log).toContain("VerifyApiKey");
    for (const needle of needles) expect(log).not.toContain(needle);

    const list = await api.listApiKeys({ tenantId: tenant.id, includeRevoked: true });
    expect(list.apiKeys).toHaveLength(2);
    const got = await api.getApiKey({ id: created.apiKey!.id });
    const restList = await (await restFetch(`${server.baseUrl}/v1/tenants/${tenant.id}/api-keys`)).text();
    const restGet = await (await restFetch(`${server.baseUrl}/v1/api-keys/${created.apiKey!.id}`)).text();
    const responses = [...list.apiKeys.map((k) => toJsonString(ApiKeySchema, k)), toJsonString(ApiKeySchema, got.apiKey!), restList, restGet];
    for (const response of responses) {
      for (const needle of needles) expect(response).not.toContain(needle);
      expect(response).not.toMatch(/secret_?hash|"secret"/i);
    }
  });
});

describe("prefix collisions", () => {
  it("a prefix taken as a current or a previous prefix is refused (null: the service retries with a new token)", async () => {
    const tenant = await insertTenant(sqlClient);
    const api = clientFor(TenantRegistryService, server.baseUrl, "grpc");
    const { apiKey } = await api.createApiKey({ tenantId: tenant.id, name: "taken" });
    const rotated = await api.rotateApiKey({ id: apiKey!.id, gracePeriod: durationFromMs(HOUR) });
    const fresh = (prefix: string) => ({
      id: randomUUID(),
      tenantId: tenant.id,
      projectId: null,
      name: "collides",
      prefix,
      secretHash: sha256(randomUUID()),
      scopes: [],
      expiresAt: null,
    });
    // apiKey.prefix is now the previous prefix, rotated's the current one.
    expect(await insertApiKey(pool, fresh(rotated.apiKey!.prefix))).toBeNull();
    expect(await insertApiKey(pool, fresh(apiKey!.prefix))).toBeNull();
    const other = await insertApiKey(pool, fresh(generateApiKeyToken().prefix));
    expect(other).not.toBeNull();
    const next = { secretHash: sha256(randomUUID()), previousExpiresAt: null };
    expect(await rotateApiKeySecret(pool, other!.id, { ...next, prefix: apiKey!.prefix })).toBeNull();
    expect(await rotateApiKeySecret(pool, other!.id, { ...next, prefix: rotated.apiKey!.prefix })).toBeNull();
    expect((await rotateApiKeySecret(pool, other!.id, { ...next, prefix: generateApiKeyToken().prefix }))?.id).toBe(other!.id);
  });
});

describe("last_used_at", () => {
  it("is written off the request path, at most once a minute per key", { timeout: 60_000 }, async () => {
    const api = clientFor(TenantRegistryService, server.baseUrl, "grpc");
    const tenant = await insertTenant(sqlClient);
    const { apiKey, secret } = await api.createApiKey({ tenantId: tenant.id, name: "used" });
    const lastUsed = async () =>
      (await sqlClient.query("SELECT last_used_at FROM api_keys WHERE id = $1", [apiKey!.id])).rows[0].last_used_at as Date | null;
    const t0 = new Date(Math.floor(now.getTime() / 1000) * 1000);

    now = t0;
    expect((await api.verifyApiKey({ key: secret })).valid).toBe(true);
    expect(await lastUsed()).toBeNull(); // not on the request path
    await vi.waitFor(async () => expect(await lastUsed()).toEqual(t0), { timeout: 15_000, interval: 200 });
    expect((await api.getApiKey({ id: apiKey!.id })).apiKey?.lastUsedAt).toEqual(timestampFromDate(t0));

    // 30 s later: not rewritten. 61 s later: rewritten. Had the 30 s use been
    // written, the 61 s one would be under a minute after it and skipped, so
    // seeing t0 + 61 s proves the 30 s use was not written.
    now = new Date(t0.getTime() + 30 * SECOND);
    await api.verifyApiKey({ key: secret });
    now = new Date(t0.getTime() + 61 * SECOND);
    await api.verifyApiKey({ key: secret });
    await vi.waitFor(async () => expect(await lastUsed()).toEqual(new Date(t0.getTime() + 61 * SECOND)), { timeout: 15_000, interval: 200 });
  });

  describe("the usage tracker", () => {
    const logs: string[] = [];
    const logger = createLogger("debug", new Writable({ write: (chunk, _e, cb) => void (logs.push(String(chunk)), cb()) }));

    async function keyRow() {
      const tenant = await insertTenant(sqlClient);
      const { rows } = await sqlClient.query<{ id: string }>(
        "INSERT INTO api_keys (tenant_id, name, prefix, secret_hash) VALUES ($1, 'k', $2, $3) RETURNING id",
        [tenant.id, generateApiKeyToken().prefix, sha256(randomUUID())],
      );
      return rows[0]!.id;
    }
    const lastUsed = async (id: string) =>
      (await sqlClient.query("SELECT last_used_at FROM api_keys WHERE id = $1", [id])).rows[0].last_used_at as Date | null;

    it("writes noted uses with flush(), skips recent and pending ones, and never moves backwards", async () => {
      const shutdown = new AbortController();
      const tracker = createApiKeyUsageTracker({ db: pool, logger, shutdownSignal: shutdown.signal }, { flushIntervalMs: 3_600_000 });
      const [a, b] = [await keyRow(), await keyRow()];
      const t0 = new Date("2030-01-01T00:00:00Z");
      tracker.touch(a, null, t0);
      tracker.touch(a, null, new Date(t0.getTime() + SECOND)); // pending: skipped
      tracker.touch(b, new Date(t0.getTime() - 59 * SECOND), t0); // used 59 s ago: skipped
      expect(tracker.pending).toBe(1);
      await tracker.flush();
      expect(tracker.pending).toBe(0);
      expect(await lastUsed(a)).toEqual(t0);
      expect(await lastUsed(b)).toBeNull();

      // The statement itself refuses a write under a minute after the last one (another instance's, say).
      tracker.touch(a, null, new Date(t0.getTime() + 30 * SECOND));
      await tracker.flush();
      expect(await lastUsed(a)).toEqual(t0);
      tracker.touch(a, t0, new Date(t0.getTime() + 60 * SECOND));
      tracker.touch(b, new Date(t0.getTime() - 60 * SECOND), t0);
      await tracker.flush();
      expect(await lastUsed(a)).toEqual(new Date(t0.getTime() + 60 * SECOND));
      expect(await lastUsed(b)).toEqual(t0);
      shutdown.abort();
    });

    it("flushes once more on shutdown", async () => {
      const shutdown = new AbortController();
      const tracker = createApiKeyUsageTracker({ db: pool, logger, shutdownSignal: shutdown.signal }, { flushIntervalMs: 3_600_000 });
      const id = await keyRow();
      tracker.touch(id, null, new Date("2030-01-01T00:00:00Z"));
      shutdown.abort();
      await vi.waitFor(async () => expect(await lastUsed(id)).toEqual(new Date("2030-01-01T00:00:00Z")));
    });

    it("logs a failed write as a warning and never rejects", async () => {
      const closed = await db.pool();
      await closed.end();
      const shutdown = new AbortController();
      const tracker = createApiKeyUsageTracker({ db: closed, logger, shutdownSignal: shutdown.signal }, { flushIntervalMs: 3_600_000 });
      tracker.touch(randomUUID(), null, new Date());
      await expect(tracker.flush()).resolves.toBeUndefined();
      expect(tracker.pending).toBe(0);
      const warning = logs.map((l) => JSON.parse(l) as { level: number; msg: string }).find((l) => l.msg.startsWith("could not record api key usage"));
      expect(warning?.level).toBe(40);
      shutdown.abort();
    });
  });
});

describe("REST", () => {
  const rest = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await restFetch(`${server.baseUrl}${path}`, {
      method,
      headers: { "content-type": "application/json", ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  it("creates, gets, lists, verifies, rotates and revokes with short enum labels", async () => {
    const tenant = await insertTenant(sqlClient, { products: ["certifai"] });
    const created = await rest("POST", `/v1/tenants/${tenant.id}/api-keys`, { name: "rest key", scopes: ["read"] });
    expect(created.status).toBe(200);
    expect(created.body).toMatchObject({
      apiKey: { tenantId: tenant.id, name: "rest key", scopes: ["read"], prefix: expect.stringMatching(/^trk_/) },
      secret: expect.stringMatching(TOKEN),
      idempotentReplay: false,
    });
    const secret = created.body["secret"] as string;
    const id = (created.body["apiKey"] as { id: string }).id;

    expect((await rest("GET", `/v1/api-keys/${id}`)).body).toMatchObject({ id, name: "rest key" });
    expect((await rest("GET", `/v1/tenants/${tenant.id}/api-keys`)).body).toMatchObject({ apiKeys: [{ id }], nextPageToken: "" });

    expect((await rest("POST", "/v1/api-keys:verify", { key: secret, requiredScopes: ["read"], product: "certifai" })).body).toMatchObject({
      valid: true,
      code: "valid",
      keyId: id,
      tenant: { id: tenant.id, status: "active", products: ["certifai"] },
    });
    expect((await rest("POST", "/v1/api-keys:verify", { key: secret, product: "compliance" })).body).toMatchObject({
      valid: false,
      code: "not_entitled",
    });
    expect((await rest("POST", "/v1/api-keys:verify", { key: "trk_nope" })).body).toMatchObject({ valid: false, code: "not_found", keyId: "" });

    const rotated = await rest("POST", `/v1/api-keys/${id}:rotate`, { gracePeriod: "3600s" });
    expect(rotated.body).toMatchObject({ apiKey: { id, previousSecretExpiresAt: expect.any(String) }, secret: expect.stringMatching(TOKEN) });
    expect((await rest("POST", "/v1/api-keys:verify", { key: secret })).body).toMatchObject({ valid: true, code: "valid" });

    const revoked = await rest("POST", `/v1/api-keys/${id}:revoke`, {});
    expect(revoked.body).toMatchObject({ id, revokedAt: expect.any(String) });
    expect((await rest("POST", "/v1/api-keys:verify", { key: rotated.body["secret"] })).body).toMatchObject({
      valid: false,
      code: "revoked",
      keyId: id,
    });

    const missing = await rest("GET", `/v1/api-keys/${randomUUID()}`);
    expect(missing).toMatchObject({ status: 404, body: { code: "not_found" } });
    const invalid = await rest("POST", `/v1/tenants/${tenant.id}/api-keys`, { name: "" });
    expect(invalid).toMatchObject({ status: 400, body: { code: "invalid_argument", fieldViolations: [{ field: "name" }] } });
  });

  it("accepts the idempotency key as an Idempotency-Key header", async () => {
    const tenant = await insertTenant(sqlClient);
    const headers = { "idempotency-key": randomUUID() };
    const first = await rest("POST", `/v1/tenants/${tenant.id}/api-keys`, { name: "once" }, headers);
    const again = await rest("POST", `/v1/tenants/${tenant.id}/api-keys`, { name: "once" }, headers);
    expect(first.body).toMatchObject({ idempotentReplay: false, secret: expect.stringMatching(TOKEN) });
    expect(again.body).toMatchObject({ idempotentReplay: true, secret: "", apiKey: { id: (first.body["apiKey"] as { id: string }).id } });
  });
});
