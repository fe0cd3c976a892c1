import { sql, type CommonQueryMethods } from "slonik";
import { z } from "zod";
import { FailedPreconditionError, NotFoundError } from "../../domain/errors.js";
import { PRODUCT_CODES, TENANT_PLANS, TENANT_STATUSES, type Tenant, type TenantStatus } from "../../domain/tenant.js";

/** Any connection: the pool, a pooled connection or a transaction. */
export type Db = CommonQueryMethods;

const tenantRow = z.object({
  id: z.guid(),
  slug: z.string(),
  name: z.string(),
  status: z.enum(TENANT_STATUSES),
  plan: z.enum(TENANT_PLANS),
  products: z.array(z.enum(PRODUCT_CODES)),
  created_at: z.date(),
  updated_at: z.date(),
});

function toTenant(row: z.infer<typeof tenantRow>): Tenant {
  return {
    id: row.id,
    slug: row.slug,
    name: row.name,
    status: row.status,
    plan: row.plan,
    products: row.products,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

// One statement per lookup: the tenant and its products in a single round trip.
const selectTenant = sql.fragment`
  SELECT t.id, t.slug, t.name, t.status, t.plan,
         COALESCE(
           (SELECT array_agg(p.product::text ORDER BY p.product) FROM tenant_products p WHERE p.tenant_id = t.id),
           '{}'
         ) AS products,
         t.created_at, t.updated_at
  FROM tenants t`;

export async function findTenantById(db: Db, id: string): Promise<Tenant | null> {
  const row = await db.maybeOne(sql.type(tenantRow)`${selectTenant} WHERE t.id = ${id}`);
  return row && toTenant(row);
}

export async function findTenantBySlug(db: Db, slug: string): Promise<Tenant | null> {
  const row = await db.maybeOne(sql.type(tenantRow)`${selectTenant} WHERE t.slug = ${slug}`);
  return row && toTenant(row);
}

const tenantRefRow = z.object({ id: z.guid(), slug: z.string(), status: z.enum(TENANT_STATUSES) });
export type TenantRef = { readonly id: string; readonly slug: string; readonly status: TenantStatus };

/**
 * For changes to what a tenant owns (projects, keys, grants, IdP config): the
 * tenant must exist and not be archived, and it stays that way until the
 * transaction ends (FOR SHARE blocks a concurrent archive or delete).
 */
export async function lockTenantForChange(tx: Db, tenantId: string): Promise<TenantRef> {
  const tenant = await tx.maybeOne(sql.type(tenantRefRow)`
    SELECT id, slug, status FROM tenants WHERE id = ${tenantId} FOR SHARE`);
  if (!tenant) throw new NotFoundError("tenant", tenantId);
  if (tenant.status === "archived") {
    throw new FailedPreconditionError(`tenant ${tenant.slug} is archived; its resources are read-only`);
  }
  return tenant;
}

/** Whether a tenant exists, for reads of what it owns (NotFound before an empty list). */
export async function findTenantRef(db: Db, tenantId: string): Promise<TenantRef | null> {
  return db.maybeOne(sql.type(tenantRefRow)`SELECT id, slug, status FROM tenants WHERE id = ${tenantId}`);
}
