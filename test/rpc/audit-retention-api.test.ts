import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import type { DatabasePool } from "../../src/db/pool.js";
import { applyRetention, verifyStoredChain } from "../../src/service/audit-chain.js";
import { ephemeralAuditSigner } from "../../src/service/audit-signing-key.js";
import { tokenFor } from "../support/auth.js";
import { auditEvents, insertTenant } from "../support/fixtures.js";
import { useOidcTestServer } from "../support/harness.js";
import type { OidcIssuer } from "../support/oidc-issuer.js";
import { restFetch } from "../support/rest.js";
import { clientFor, type TestServer } from "../support/server.js";

// A tenant's own audit retention, through the API: read by whoever reads the
// tenant's audit log, set by platform admins only (a shorter period removes
// evidence), audited, and what the retention pass applies.

const DAY_S = 86_400;
const GLOBAL_DAYS = 365;
const signer = ephemeralAuditSigner();

type Registry = Client<typeof TenantRegistryService>;
let server: TestServer;
let issuer: OidcIssuer;
let sql: pg.Client;
let pool: DatabasePool;
let admin: Registry;
useOidcTestServer(
  async (h) => {
    ({ server, issuer, sql, pool } = h);
    admin = as(await tokenFor(issuer, "platform-admin"));
  },
  (issuer) => ({
    auth: { mode: "oidc", issuer: issuer.issuer },
    auditSigner: signer,
    audit: { checkpointIntervalMs: 3_600_000, retentionMs: GLOBAL_DAYS * DAY_S * 1000 },
  }),
);

const as = (token: string): Registry => clientFor(TenantRegistryService, server.baseUrl, "grpc", { authorization: `Bearer ${token}` });
const seconds = (d: { seconds: bigint } | undefined) => (d === undefined ? undefined : Number(d.seconds));
const failure = (p: Promise<unknown>) =>
  p.then(
    () => "OK",
    (e: unknown) => `${Code[ConnectError.from(e).code]}: ${ConnectError.from(e).rawMessage}`,
  );

describe("GetAuditRetention and SetAuditRetention", () => {
  it("a tenant without its own period falls back to AUDIT_RETENTION", async () => {
    const tenant = await insertTenant(sql);
    const { retention } = await admin.getAuditRetention({ tenantId: tenant.id });
    expect(retention?.tenantId).toBe(tenant.id);
    expect(retention?.period).toBeUndefined();
    expect(seconds(retention?.effectivePeriod)).toBe(GLOBAL_DAYS * DAY_S);
  });

  it("a platform admin sets a period, which applies, is audited with the old and new values, and clears back to the global one", async () => {
    const tenant = await insertTenant(sql);
    const set = await admin.setAuditRetention({ tenantId: tenant.id, period: { seconds: BigInt(30 * DAY_S) } });
    expect(seconds(set.retention?.period)).toBe(30 * DAY_S);
    expect(seconds(set.retention?.effectivePeriod)).toBe(30 * DAY_S);
    const read = await admin.getAuditRetention({ tenantId: tenant.id });
    expect(seconds(read.retention?.period)).toBe(30 * DAY_S);
    const { rows } = await sql.query<{ seconds: number }>("SELECT extract(epoch FROM audit_retention)::int AS seconds FROM tenants WHERE id = $1", [tenant.id]);
    expect(rows[0]?.seconds).toBe(30 * DAY_S);

    const cleared = await admin.setAuditRetention({ tenantId: tenant.id });
    expect(cleared.retention?.period).toBeUndefined();
    expect(seconds(cleared.retention?.effectivePeriod)).toBe(GLOBAL_DAYS * DAY_S);

    const events = (await auditEvents(sql, { tenantId: tenant.id })).filter((e) => e.action === "tenant.audit_retention.set");
    expect(events.map((e) => e.fields)).toEqual([
      { previous_period_seconds: null, period_seconds: 30 * DAY_S },
      { previous_period_seconds: 30 * DAY_S, period_seconds: null },
    ]);
    expect(events[0]).toMatchObject({ crud: "u", target_id: tenant.id, target_type: "tenant" });
  });

  it("setting the period the tenant already has records nothing", async () => {
    const tenant = await insertTenant(sql);
    await admin.setAuditRetention({ tenantId: tenant.id, period: { seconds: BigInt(90 * DAY_S) } });
    await admin.setAuditRetention({ tenantId: tenant.id, period: { seconds: BigInt(90 * DAY_S) } });
    const events = (await auditEvents(sql, { tenantId: tenant.id })).filter((e) => e.action === "tenant.audit_retention.set");
    expect(events).toHaveLength(1);
  });

  it("does not move the tenant's updated_at, which cached tenant answers carry", async () => {
    const tenant = await insertTenant(sql);
    const before = await admin.getTenant({ id: tenant.id });
    await admin.setAuditRetention({ tenantId: tenant.id, period: { seconds: BigInt(10 * DAY_S) } });
    const { rows } = await sql.query<{ updated_at: Date }>("SELECT updated_at FROM tenants WHERE id = $1", [tenant.id]);
    expect(rows[0]!.updated_at.getTime()).toBe(Number(before.tenant!.updatedAt!.seconds) * 1000 + Math.trunc(before.tenant!.updatedAt!.nanos / 1e6));
  });

  it("refuses periods under a day or over 36,500 days, fractions of a second, and unknown tenants, naming the field", async () => {
    const tenant = await insertTenant(sql);
    expect(await failure(admin.setAuditRetention({ tenantId: tenant.id, period: { seconds: 3_600n } }))).toMatch(/^InvalidArgument: .*period.*1 day/);
    expect(await failure(admin.setAuditRetention({ tenantId: tenant.id, period: { seconds: BigInt(36_501 * DAY_S) } }))).toMatch(/^InvalidArgument: .*period/);
    expect(await failure(admin.setAuditRetention({ tenantId: tenant.id, period: { seconds: BigInt(DAY_S), nanos: 5 } }))).toMatch(/^InvalidArgument: .*period.*whole seconds/);
    expect(await failure(admin.setAuditRetention({ tenantId: "not-a-uuid", period: { seconds: BigInt(DAY_S) } }))).toMatch(/^InvalidArgument: .*tenant_id/);
    const unknown = "7d0f2c1e-0000-4000-8000-000000000000";
    expect(await failure(admin.setAuditRetention({ tenantId: unknown, period: { seconds: BigInt(DAY_S) } }))).toMatch(/^NotFound: /);
    expect(await failure(admin.getAuditRetention({ tenantId: unknown }))).toMatch(/^NotFound: /);
    const { rows } = await sql.query("SELECT 1 FROM tenants WHERE id = $1 AND audit_retention IS NOT NULL", [tenant.id]);
    expect(rows).toHaveLength(0);
  });

  it("a tenant admin reads its own tenant's period but may not change it; the denial is audited", async () => {
    const tenant = await insertTenant(sql);
    const tenantAdmin = as(await tokenFor(issuer, "tenant-admin", { tenantId: tenant.id }));
    expect(seconds((await tenantAdmin.getAuditRetention({ tenantId: tenant.id })).retention?.effectivePeriod)).toBe(GLOBAL_DAYS * DAY_S);
    expect(await failure(tenantAdmin.setAuditRetention({ tenantId: tenant.id, period: { seconds: BigInt(DAY_S) } }))).toMatch(/^PermissionDenied: /);
    const { rows } = await sql.query("SELECT 1 FROM tenants WHERE id = $1 AND audit_retention IS NOT NULL", [tenant.id]);
    expect(rows).toHaveLength(0);
    const denied = (await auditEvents(sql, { tenantId: tenant.id })).filter((e) => e.action === "tenant.audit_retention.set");
    expect(denied).toMatchObject([{ is_failure: true }]);
  });

  it("over REST: PUT and GET /v1/tenants/{tenant_id}/audit/retention", async () => {
    const tenant = await insertTenant(sql);
    const headers = { authorization: `Bearer ${await tokenFor(issuer, "platform-admin")}`, "content-type": "application/json" };
    const url = `${server.baseUrl}/v1/tenants/${tenant.id}/audit/retention`;
    const put = await restFetch(url, { method: "PUT", headers, body: JSON.stringify({ period: "604800s" }) });
    expect(put.status).toBe(200);
    expect(await put.json()).toEqual({ tenantId: tenant.id, period: "604800s", effectivePeriod: "604800s" });
    const get = await restFetch(url, { headers });
    expect(await get.json()).toEqual({ tenantId: tenant.id, period: "604800s", effectivePeriod: "604800s" });
    const bad = await restFetch(url, { method: "PUT", headers, body: JSON.stringify({ period: "60s" }) });
    expect(bad.status).toBe(400);
  });

  it("the retention pass removes what the period set through the API makes old, and the rest verifies", async () => {
    const tenant = await insertTenant(sql);
    const now = Date.now();
    const at = (days: number) => new Date(now - days * DAY_S * 1000).toISOString();
    const events = [...[10, 10, 10].map(at), ...[0, 0].map(at)].map((created_at, i) => ({ tenant_id: tenant.id, action: "document.update", crud: "u", actor_id: `u${i}`, created_at }));
    await sql.query("SELECT audit_append($1::jsonb)", [JSON.stringify(events)]);
    // The global period (365 days) keeps everything; the tenant's 7 days do not.
    expect(await applyRetention(pool, signer, new Date(now), GLOBAL_DAYS * DAY_S * 1000)).toBe(0);
    await admin.setAuditRetention({ tenantId: tenant.id, period: { seconds: BigInt(7 * DAY_S) } });
    expect(await applyRetention(pool, signer, new Date(now), GLOBAL_DAYS * DAY_S * 1000)).toBe(3);
    const { rows } = await sql.query<{ seq: string }>("SELECT seq FROM audit_log WHERE chain_id = $1 ORDER BY seq", [tenant.id]);
    // 4 and 5 are the fixture's; 6 is the audit event of setting the period itself.
    expect(rows.map((r) => Number(r.seq))).toEqual([4, 5, 6]);
    expect(await verifyStoredChain(pool, tenant.id, undefined, signer.publicKey)).toMatchObject({ intact: true, baseSequence: 3n });
  });
});
