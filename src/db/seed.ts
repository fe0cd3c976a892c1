import { sql } from "slonik";
import type { Db } from "./queries/tenants.js";

/** The dev tenant every fresh environment has, exactly as the original service seeded it. */
export const ACME = {
  id: "00000000-0000-0000-0000-000000000001",
  slug: "acme",
  name: "Acme Inc.",
  status: "active",
  plan: "professional",
  products: ["certifai", "compliance"],
} as const;

/**
 * Idempotent: the tenant and its products are inserted together the first time
 * only, so re-running never re-grants a product someone revoked since.
 */
export async function seedDevData(db: Db): Promise<void> {
  await db.query(sql.unsafe`
    WITH seeded AS (
      INSERT INTO tenants (id, slug, name, status, plan)
      VALUES (${ACME.id}, ${ACME.slug}, ${ACME.name}, ${ACME.status}, ${ACME.plan})
      ON CONFLICT DO NOTHING
      RETURNING id
    )
    INSERT INTO tenant_products (tenant_id, product)
    SELECT seeded.id, product
    FROM seeded, unnest(${sql.array([...ACME.products], "text")}::product_code[]) AS product`);
}
