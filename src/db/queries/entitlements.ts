import { sql } from "slonik";
import { z } from "zod";
import { limitsFromJson, limitsToJson, type Limits, type ProductGrant } from "../../domain/entitlement.js";
import { PRODUCT_CODES, type ProductCode } from "../../domain/tenant.js";
import type { Db } from "./tenants.js";

// limits travel as the jsonb's text so int64 values stay exact (see domain/entitlement.ts).
const grantRow = z.object({
  tenant_id: z.guid(),
  product: z.enum(PRODUCT_CODES),
  expires_at: z.date().nullable(),
  limits: z.string(),
  created_at: z.date(),
  updated_at: z.date(),
});

function toGrant(row: z.infer<typeof grantRow>): ProductGrant {
  return {
    tenantId: row.tenant_id,
    product: row.product,
    expiresAt: row.expires_at,
    limits: limitsFromJson(row.limits),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

const grantColumns = sql.fragment`tenant_id, product, expires_at, limits::text AS limits, created_at, updated_at`;

/**
 * Grants the product, or updates the expiry and limits of an existing grant.
 * `created` tells the two apart (xmax = 0 only for a freshly inserted row).
 */
export async function upsertProductGrant(
  tx: Db,
  grant: { readonly tenantId: string; readonly product: ProductCode; readonly expiresAt: Date | null; readonly limits: Limits },
): Promise<{ grant: ProductGrant; created: boolean }> {
  const row = await tx.one(sql.type(grantRow.extend({ created: z.boolean() }))`
    INSERT INTO tenant_products (tenant_id, product, expires_at, limits)
    VALUES (
      ${grant.tenantId}, ${grant.product},
      ${grant.expiresAt ? sql.timestamp(grant.expiresAt) : null}, ${limitsToJson(grant.limits)}::jsonb
    )
    ON CONFLICT ON CONSTRAINT tenant_products_tenant_id_product_key
    DO UPDATE SET expires_at = EXCLUDED.expires_at, limits = EXCLUDED.limits
    RETURNING ${grantColumns}, (xmax = 0) AS created`);
  const { created, ...rest } = row;
  return { grant: toGrant(rest), created };
}

/** Deletes the grant; null when the tenant did not hold it. */
export async function deleteProductGrant(tx: Db, tenantId: string, product: ProductCode): Promise<ProductGrant | null> {
  const row = await tx.maybeOne(sql.type(grantRow)`
    DELETE FROM tenant_products WHERE tenant_id = ${tenantId} AND product = ${product}
    RETURNING ${grantColumns}`);
  return row && toGrant(row);
}

/** Every grant of the tenant, expired ones included, in product order. */
export async function listProductGrantsByTenant(db: Db, tenantId: string): Promise<ProductGrant[]> {
  const rows = await db.any(sql.type(grantRow)`
    SELECT ${grantColumns} FROM tenant_products WHERE tenant_id = ${tenantId} ORDER BY product`);
  return rows.map(toGrant);
}
