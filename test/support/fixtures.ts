import { randomBytes } from "node:crypto";
import type pg from "pg";

/** A slug no other test uses: tests share nothing and never truncate. */
export function uniqueSlug(prefix = "t"): string {
  return `${prefix}-${randomBytes(5).toString("hex")}`;
}

export type TenantRow = { id: string; slug: string };

/**
 * Inserts a tenant straight into the table: a fixture for tests of what a
 * tenant owns, independent of the CreateTenant RPC.
 */
export async function insertTenant(
  client: pg.Client,
  overrides: { slug?: string; name?: string; status?: string; plan?: string; products?: string[] } = {},
): Promise<TenantRow> {
  const slug = overrides.slug ?? uniqueSlug();
  const status = overrides.status ?? "active";
  const { rows } = await client.query<TenantRow>(
    `INSERT INTO tenants (slug, name, status, plan, suspension_reason)
     VALUES ($1, $2, $3::tenant_status, $4::tenant_plan, CASE WHEN $3::text = 'suspended' THEN 'fixture' ELSE '' END)
     RETURNING id, slug`,
    [slug, overrides.name ?? `Tenant ${slug}`, status, overrides.plan ?? "starter"],
  );
  const tenant = rows[0]!;
  for (const product of overrides.products ?? []) {
    await client.query("INSERT INTO tenant_products (tenant_id, product) VALUES ($1, $2)", [tenant.id, product]);
  }
  return tenant;
}

/** The audit events of a tenant (or of a target), oldest first (within a chain: in sequence), for assertions. */
export async function auditEvents(client: pg.Client, where: { tenantId?: string; targetId?: string }) {
  const { rows } = await client.query(
    `SELECT action, crud, tenant_id, actor_id, actor_type, target_id, target_name, target_type,
            host(source_ip) AS source_ip, fields, is_failure, is_anonymous
     FROM audit_log
     WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR target_id = $2)
     ORDER BY created_at, chain_id, seq`,
    [where.tenantId ?? null, where.targetId ?? null],
  );
  return rows;
}

/**
 * `n` audit events for RecordAuditEvents whose canonical form is awkward to get
 * right: quotes, newlines and tabs in text, non-ASCII, numbers such as 1e21 and
 * 1.5e-7, nested fields with nulls, empty and absent values.
 */
export function awkwardAuditEvents(tenantId: string, n: number) {
  return Array.from({ length: n }, (_, i) => ({
    tenantId,
    action: "document.update",
    crud: "u",
    actor: { id: `user-${i}`, name: i % 2 ? 'Zoë "Z" Ünal' : "", type: "user" },
    target: { id: `doc-${i}`, type: "document" },
    sourceIp: i % 3 ? "2001:db8::1" : "",
    description: 'line one\nline two\t✓, "quoted"',
    fields: { n: i, ratio: 0.1 * i, big: 1e21, small: 1.5e-7, nested: { b: [1, "x", null, true], a: "é" }, "10": "numeric key" },
    externalId: `ext-${tenantId}-${i}`,
    component: "docs",
  }));
}
