import { brotliCompressSync, gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import type pg from "pg";
import { insertTenant, uniqueSlug } from "../support/fixtures.js";
import { useTestServer } from "../support/harness.js";
import { restFetch } from "../support/rest.js";
import type { TestServer } from "../support/server.js";

/*
 * JSON.parse reads 9007199254740993 as 9007199254740992: an int64 sent as a JSON
 * number beyond 2^53 would be stored as another number without a word. It is
 * refused instead, and the same value as a string is kept exactly.
 */

let server: TestServer;
let sql: pg.Client;
useTestServer((h) => ({ server, sql } = h));

const BEYOND = "9007199254740993";
const stored = async (tenantId: string) =>
  (await sql.query("SELECT limits::text AS limits FROM tenant_products WHERE tenant_id = $1 AND product = 'compliance'", [tenantId])).rows[0]?.limits as string | undefined;

describe("an integer beyond 2^53 sent as a JSON number", () => {
  it("over Connect JSON: InvalidArgument naming the number, and nothing granted", async () => {
    const tenant = await insertTenant(sql);
    const res = await fetch(`${server.baseUrl}/breakpilot.tenantregistry.v1.TenantRegistryService/GrantProduct`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: `{"tenantId":"${tenant.id}","product":"PRODUCT_CODE_COMPLIANCE","limits":{"seats":${BEYOND}}}`,
    });
    const json = (await res.json()) as { code: string; message: string };
    expect([res.status, json.code]).toEqual([400, "invalid_argument"]);
    expect(json.message).toContain(`the number ${BEYOND} cannot be read exactly`);
    expect(await stored(tenant.id)).toBeUndefined();
  });

  it("over REST: 400 naming the number; as a string it is stored exactly", async () => {
    const tenant = await insertTenant(sql);
    const put = (limits: string) =>
      restFetch(`${server.baseUrl}/v1/tenants/${tenant.id}/products/compliance`, { method: "PUT", headers: { "content-type": "application/json" }, body: `{"limits":${limits}}` });
    const refused = await put(`{"seats":${BEYOND}}`);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { message: string }).message).toContain(BEYOND);
    expect(await stored(tenant.id)).toBeUndefined();

    const kept = await put(`{"seats":"${BEYOND}"}`);
    expect(kept.status).toBe(200);
    expect(await stored(tenant.id)).toBe(`{"seats": ${BEYOND}}`);
    // Numbers a double holds exactly, 2^53 itself included, are read as sent (JSON numbers
    // for int64 are valid ProtoJSON; REST's OpenAPI document asks for strings, so over Connect).
    const exact = await fetch(`${server.baseUrl}/breakpilot.tenantregistry.v1.TenantRegistryService/GrantProduct`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: `{"tenantId":"${tenant.id}","product":"PRODUCT_CODE_COMPLIANCE","limits":{"seats":9007199254740992, "api_calls": 12}}`,
    });
    expect(exact.status).toBe(200);
    expect(await stored(tenant.id)).toBe(`{"seats": 9007199254740992, "api_calls": 12}`);
  });

  it("a long digit run inside a string is no number", async () => {
    const tenant = await insertTenant(sql);
    const res = await restFetch(`${server.baseUrl}/v1/tenants/${tenant.id}`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: `Order ${BEYOND}${BEYOND}` }),
    });
    expect(res.status).toBe(200);
  });
});

describe("a value REST cannot decode names its field", () => {
  it("a query parameter (endTime=yesterday) and a body field (expiresAt) are named in fieldViolations", async () => {
    const tenant = await insertTenant(sql);
    const listed = await restFetch(`${server.baseUrl}/v1/tenants/${tenant.id}/audit/events?startTime=2026-01-01T00:00:00Z&endTime=yesterday`);
    expect(listed.status).toBe(400);
    expect(await listed.json()).toMatchObject({ code: "invalid_argument", fieldViolations: [{ field: "end_time", description: expect.stringContaining("Timestamp") }] });

    const granted = await restFetch(`${server.baseUrl}/v1/tenants/${tenant.id}/products/compliance`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ expiresAt: "tomorrow", limits: { seats: "5" } }),
    });
    expect(granted.status).toBe(400);
    expect(await granted.json()).toMatchObject({ fieldViolations: [{ field: "expires_at" }] });
  });

  it("a field of a message in a list is named with its index", async () => {
    const tenant = await insertTenant(sql);
    const event = { tenantId: tenant.id, action: "doc.create", crud: "c", isAnonymous: true };
    const res = await restFetch(`${server.baseUrl}/v1/audit/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ events: [event, { ...event, created: "last week" }] }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ fieldViolations: [{ field: "events[1].created" }] });
  });
});

describe("a compressed REST body", () => {
  const post = (body: Uint8Array, encoding: string) =>
    restFetch(`${server.baseUrl}/v1/tenants`, { method: "POST", headers: { "content-type": "application/json", "content-encoding": encoding }, body });

  it("gzip and br are inflated, as on the RPC protocols", async () => {
    for (const [encoding, pack] of [["gzip", gzipSync], ["br", brotliCompressSync]] as const) {
      const slug = uniqueSlug(encoding);
      const res = await post(pack(JSON.stringify({ slug, name: "Packed" })), encoding);
      expect(res.status, encoding).toBe(200);
      expect((await sql.query("SELECT name FROM tenants WHERE slug = $1", [slug])).rows).toEqual([{ name: "Packed" }]);
    }
  });

  it("an unknown encoding, bytes that do not inflate, and a body that inflates beyond the limit are 400s saying so", async () => {
    const refused = async (res: Response) => [res.status, ((await res.json()) as { message: string }).message];
    expect(await refused(await post(Buffer.from("{}"), "compress"))).toEqual([400, expect.stringContaining('content-encoding "compress" is not supported')]);
    expect(await refused(await post(Buffer.from("not gzip at all"), "gzip"))).toEqual([400, "request body is not valid gzip"]);
    // 8 MiB of spaces: a few KiB on the wire.
    const bomb = gzipSync(Buffer.concat([Buffer.from('{"slug":"bomb","name":"'), Buffer.alloc(8 * 1024 * 1024, " "), Buffer.from('"}')]));
    expect(bomb.length).toBeLessThan(64 * 1024);
    expect(await refused(await post(bomb, "gzip"))).toEqual([400, expect.stringContaining("once decompressed")]);
  });
});
