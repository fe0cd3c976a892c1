import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.js";

let db: TestDatabase;
let client: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  client = await db.client();
});
afterAll(async () => db?.drop());

async function insertTenant(slug: string): Promise<string> {
  const { rows } = await client.query<{ id: string }>(
    "INSERT INTO tenants (slug, name, plan) VALUES ($1, $2, 'starter') RETURNING id",
    [slug, `Tenant ${slug}`],
  );
  return rows[0]!.id;
}

describe("schema", () => {
  it("seeds all six tables, cascades a tenant delete, and keeps its audit events with tenant_id NULL", async () => {
    const tenantId = await insertTenant("seed-tenant");
    const { rows: [project] } = await client.query<{ id: string }>(
      "INSERT INTO tenant_projects (tenant_id, slug, name) VALUES ($1, 'web', 'Web') RETURNING id",
      [tenantId],
    );
    await client.query("INSERT INTO tenant_products (tenant_id, product) VALUES ($1, 'certifai'), ($1, 'compliance')", [tenantId]);
    await client.query(
      "INSERT INTO tenant_idp_config (tenant_id, protocol, issuer_url, client_id) VALUES ($1, 'oidc', 'https://idp.example.com', 'client')",
      [tenantId],
    );
    await client.query("INSERT INTO tenant_idp_email_domains (domain, tenant_id) VALUES ('seed.example.com', $1)", [tenantId]);
    await client.query(
      "INSERT INTO api_keys (tenant_id, project_id, name, prefix, secret_hash) VALUES ($1, $2, 'ci', 'trk_seedprefix', sha256('x'::bytea))",
      [tenantId, project!.id],
    );
    await client.query(
      "INSERT INTO audit_log (tenant_id, action, crud, actor_id, target_id, target_type, source_ip) VALUES ($1, 'tenant.create', 'c', 'system', $2, 'tenant', '10.0.0.1')",
      [tenantId, tenantId],
    );

    const count = async (table: string) =>
      (await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE tenant_id = $1`, [tenantId])).rows[0]!.n;
    for (const table of ["tenant_projects", "tenant_idp_config", "api_keys", "audit_log"]) expect(await count(table)).toBe(1);
    expect(await count("tenant_products")).toBe(2);

    await client.query("DELETE FROM tenants WHERE id = $1", [tenantId]);

    for (const table of ["tenant_projects", "tenant_products", "tenant_idp_config", "tenant_idp_email_domains", "api_keys", "audit_log"]) {
      expect(await count(table)).toBe(0);
    }
    const { rows: survivors } = await client.query("SELECT tenant_id, action, target_id FROM audit_log WHERE target_id = $1", [tenantId]);
    expect(survivors).toEqual([{ tenant_id: null, action: "tenant.create", target_id: tenantId }]);
  });

  it.each([
    ["ab", "too short"],
    ["-leading-dash", "leading dash"],
    ["trailing-dash-", "trailing dash"],
    ["UpperCase", "uppercase"],
    ["under_score", "underscore"],
    ["a".repeat(64), "too long"],
  ])("rejects the slug %j (%s)", async (slug) => {
    await expect(insertTenant(slug)).rejects.toMatchObject({ code: "23514", constraint: "tenants_slug_format" });
  });

  it.each(["abc", "acme", "a1-b2", "0-9", "a".repeat(63)])("accepts the slug %j", async (slug) => {
    await expect(insertTenant(slug)).resolves.toMatch(/^[0-9a-f-]{36}$/);
  });

  it("keeps updated_at current on update", async () => {
    const id = await insertTenant("touch-me");
    const before = (await client.query("SELECT updated_at FROM tenants WHERE id = $1", [id])).rows[0].updated_at as Date;
    await new Promise((r) => setTimeout(r, 5));
    await client.query("UPDATE tenants SET name = 'Touched' WHERE id = $1", [id]);
    const after = (await client.query("SELECT updated_at FROM tenants WHERE id = $1", [id])).rows[0].updated_at as Date;
    expect(after.getTime()).toBeGreaterThan(before.getTime());
  });

  it("does not count recording an API key's use as an update of the key", async () => {
    const tenant = await insertTenant("usage-owner");
    const { rows: [key] } = await client.query<{ id: string; updated_at: Date }>(
      "INSERT INTO api_keys (tenant_id, name, prefix, secret_hash) VALUES ($1, 'k', 'trk_usageprefix', sha256('u'::bytea)) RETURNING id, updated_at",
      [tenant],
    );
    await new Promise((r) => setTimeout(r, 5));
    await client.query("UPDATE api_keys SET last_used_at = now() WHERE id = $1", [key!.id]);
    const afterUse = (await client.query("SELECT updated_at FROM api_keys WHERE id = $1", [key!.id])).rows[0].updated_at as Date;
    expect(afterUse.getTime()).toBe(key!.updated_at.getTime());
    await client.query("UPDATE api_keys SET name = 'renamed' WHERE id = $1", [key!.id]);
    const afterRename = (await client.query("SELECT updated_at FROM api_keys WHERE id = $1", [key!.id])).rows[0].updated_at as Date;
    expect(afterRename.getTime()).toBeGreaterThan(key!.updated_at.getTime());
  });

  it("rejects an API key whose project belongs to another tenant", async () => {
    const a = await insertTenant("owner-a");
    const b = await insertTenant("owner-b");
    const { rows: [project] } = await client.query<{ id: string }>(
      "INSERT INTO tenant_projects (tenant_id, slug, name) VALUES ($1, 'proj', 'Proj') RETURNING id",
      [a],
    );
    await expect(
      client.query("INSERT INTO api_keys (tenant_id, project_id, name, prefix, secret_hash) VALUES ($1, $2, 'k', 'trk_crossprefix', sha256('y'::bytea))", [b, project!.id]),
    ).rejects.toMatchObject({ code: "23503" });
  });

  it("requires an actor or is_anonymous on audit events", async () => {
    await expect(client.query("INSERT INTO audit_log (action, crud) VALUES ('x.y', 'c')")).rejects.toMatchObject({
      constraint: "audit_log_actor_or_anonymous",
    });
    await expect(client.query("INSERT INTO audit_log (action, crud, is_anonymous) VALUES ('x.y', 'c', true)")).resolves.toBeDefined();
  });
});
