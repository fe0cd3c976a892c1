import { sql, type CommonQueryMethods } from "slonik";
import { z } from "zod";
import { PRODUCT_CODES, TENANT_PLANS, TENANT_STATUSES, type Tenant } from "../../domain/tenant.js";

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
