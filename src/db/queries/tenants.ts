import { sql, type CommonQueryMethods, type IdentifierSqlToken } from "slonik";
import { z } from "zod";
import { limitsFromJson, type TenantRecord } from "../../domain/entitlement.js";
import { FailedPreconditionError, NotFoundError } from "../../domain/errors.js";
import {
  PRODUCT_CODES,
  TENANT_PLANS,
  TENANT_STATUSES,
  type ProductCode,
  type Tenant,
  type TenantPlan,
  type TenantStatus,
} from "../../domain/tenant.js";

/** Any connection: the pool, a pooled connection or a transaction. */
export type Db = CommonQueryMethods;

/** A tenant's columns as `tenantColumns` selects them; extend it to read a tenant alongside other columns. */
export const tenantRow = z.object({
  id: z.guid(),
  slug: z.string(),
  name: z.string(),
  status: z.enum(TENANT_STATUSES),
  plan: z.enum(TENANT_PLANS),
  products: z.array(z.enum(PRODUCT_CODES)),
  created_at: z.date(),
  updated_at: z.date(),
  metadata: z.record(z.string(), z.string()),
  external_id: z.string().nullable(),
  suspension_reason: z.string(),
});

/**
 * A tenant's columns with all its grants (expired ones too) as JSON: product,
 * expires_at as epoch milliseconds, limits as the jsonb's text (exact int64s).
 */
export const tenantRecordColumns = sql.fragment`
  t.id, t.slug, t.name, t.status, t.plan, t.created_at, t.updated_at, t.metadata, t.external_id, t.suspension_reason,
  COALESCE(
    (SELECT json_agg(json_build_object(
              'product', p.product,
              'expires_at_ms', floor(extract(epoch FROM p.expires_at) * 1000),
              'limits', p.limits::text) ORDER BY p.product)
     FROM tenant_products p WHERE p.tenant_id = t.id),
    '[]'::json
  ) AS grants`;

export const tenantRecordRow = tenantRow.omit({ products: true }).extend({
  grants: z.array(z.object({ product: z.enum(PRODUCT_CODES), expires_at_ms: z.number().nullable(), limits: z.string() })),
});

export function toTenantRecord(row: z.infer<typeof tenantRecordRow>): TenantRecord {
  return {
    ...tenantFields(row),
    grants: row.grants.map((g) => ({
      product: g.product,
      expiresAt: g.expires_at_ms === null ? null : new Date(g.expires_at_ms),
      limits: limitsFromJson(g.limits),
    })),
  };
}

/**
 * `column = $1` for one key, `column = ANY($1)` for more: the condition of the
 * hot reads' batched lookups. PostgreSQL plans a one-key statement generically
 * after five runs and then stops planning it; an `= ANY` statement it plans on
 * every execution (its generic plan assumes ten keys, so it wins only where
 * batches average more), and planning costs more than running it, which a
 * lookup alone in its turn, the usual case without load, would pay every time.
 * The two shapes are two statements: name them by `keys.length === 1`.
 */
export function keysMatch(column: IdentifierSqlToken, keys: readonly string[], type: "uuid" | "text") {
  return keys.length === 1 ? sql.fragment`${column} = ${keys[0]!}` : sql.fragment`${column} = ANY(${sql.array(keys, type)})`;
}

/**
 * Tenants and all their grants, by ids or by slugs, in one statement however
 * many are asked: the hot reads batch the lookups that arrive together. Named
 * prepared statements (see keysMatch), so each is parsed once per connection;
 * a tenant that does not exist is absent from the answer.
 */
export async function findTenantRecords(
  db: Db,
  by: { readonly ids: readonly string[] } | { readonly slugs: readonly string[] },
): Promise<TenantRecord[]> {
  const [kind, keys, type] = "ids" in by ? (["id", by.ids, "uuid"] as const) : (["slug", by.slugs, "text"] as const);
  const name = `${keys.length === 1 ? "tenant_record" : "tenant_records"}_by_${kind}`;
  const rows = await db.any(
    sql.prepared(name, tenantRecordRow)`SELECT ${tenantRecordColumns} FROM tenants t WHERE ${keysMatch(sql.identifier(["t", kind]), keys, type)}`,
  );
  return rows.map(toTenantRecord);
}

/** A tenant's own columns, as the domain names them (everything but its products). */
function tenantFields(row: Omit<z.infer<typeof tenantRow>, "products">): Omit<Tenant, "products"> {
  return {
    id: row.id,
    slug: row.slug,
    name: row.name,
    status: row.status,
    plan: row.plan,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    metadata: row.metadata,
    externalId: row.external_id,
    suspensionReason: row.suspension_reason,
  };
}

export function toTenant(row: z.infer<typeof tenantRow>): Tenant {
  return { ...tenantFields(row), products: row.products };
}

/**
 * The columns of tenant `t` with its products unexpired at `asOf` (default: the
 * database's now()), so one statement reads a tenant in a single round trip.
 */
export function tenantColumns(asOf?: Date) {
  const now = asOf ? sql.fragment`${sql.timestamp(asOf)}` : sql.fragment`now()`;
  return sql.fragment`
    t.id, t.slug, t.name, t.status, t.plan,
    COALESCE(
      (SELECT array_agg(p.product::text ORDER BY p.product)
       FROM tenant_products p
       WHERE p.tenant_id = t.id AND (p.expires_at IS NULL OR p.expires_at > ${now})),
      '{}'
    ) AS products,
    t.created_at, t.updated_at, t.metadata, t.external_id, t.suspension_reason`;
}

const selectTenant = sql.fragment`SELECT ${tenantColumns()} FROM tenants t`;

// The write paths' lookup of the tenant they change; a named prepared statement,
// planned once per connection (the hot reads use findTenantRecords).
export async function findTenantById(db: Db, id: string): Promise<Tenant | null> {
  const row = await db.maybeOne(sql.prepared("tenant_by_id", tenantRow)`${selectTenant} WHERE t.id = ${id}`);
  return row && toTenant(row);
}

export type NewTenant = {
  readonly id: string;
  readonly slug: string;
  readonly name: string;
  readonly plan: TenantPlan;
  readonly status: "active" | "provisioning";
  readonly products: readonly ProductCode[];
  readonly metadata: Readonly<Record<string, string>>;
  readonly externalId: string | null;
};

/** Inserts the tenant and its initial grants in one statement. */
export async function insertTenant(tx: Db, t: NewTenant): Promise<void> {
  await tx.query(sql.unsafe`
    WITH created AS (
      INSERT INTO tenants (id, slug, name, plan, status, metadata, external_id)
      VALUES (${t.id}, ${t.slug}, ${t.name}, ${t.plan}, ${t.status}, ${sql.jsonb(t.metadata)}, ${t.externalId})
      RETURNING id
    )
    INSERT INTO tenant_products (tenant_id, product)
    SELECT created.id, product
    FROM created, unnest(${sql.array([...t.products], "text")}::product_code[]) AS product`);
}

export type TenantFilters = {
  readonly status?: TenantStatus;
  readonly plan?: TenantPlan;
  readonly product?: ProductCode;
  /** Case-insensitive substring of slug or name. */
  readonly query?: string;
};

/** One page in slug order; `afterSlug` is the keyset cursor. Reads `limit` rows. */
export async function listTenants(db: Db, filters: TenantFilters, afterSlug: string | undefined, limit: number): Promise<Tenant[]> {
  const conditions = [sql.fragment`TRUE`];
  if (filters.status) conditions.push(sql.fragment`t.status = ${filters.status}`);
  if (filters.plan) conditions.push(sql.fragment`t.plan = ${filters.plan}`);
  if (filters.product) {
    conditions.push(sql.fragment`EXISTS (
      SELECT 1 FROM tenant_products p
      WHERE p.tenant_id = t.id AND p.product = ${filters.product} AND (p.expires_at IS NULL OR p.expires_at > now()))`);
  }
  if (filters.query) {
    const pattern = `%${filters.query.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    conditions.push(sql.fragment`(t.slug ILIKE ${pattern} OR t.name ILIKE ${pattern})`);
  }
  if (afterSlug !== undefined) conditions.push(sql.fragment`t.slug > ${afterSlug}`);
  const rows = await db.any(sql.type(tenantRow)`
    ${selectTenant}
    WHERE ${sql.join(conditions, sql.fragment` AND `)}
    ORDER BY t.slug
    LIMIT ${limit}`);
  return rows.map(toTenant);
}

export type TenantChanges = {
  readonly name?: string;
  readonly plan?: TenantPlan;
  readonly metadata?: Readonly<Record<string, string>>;
  readonly externalId?: string | null;
};

/** Applies the given (non-empty) changes. The tenant must already be locked by the caller. */
export async function updateTenant(tx: Db, id: string, changes: TenantChanges): Promise<void> {
  const sets = [];
  if (changes.name !== undefined) sets.push(sql.fragment`name = ${changes.name}`);
  if (changes.plan !== undefined) sets.push(sql.fragment`plan = ${changes.plan}`);
  if (changes.metadata !== undefined) sets.push(sql.fragment`metadata = ${sql.jsonb(changes.metadata)}`);
  if (changes.externalId !== undefined) sets.push(sql.fragment`external_id = ${changes.externalId}`);
  if (sets.length === 0) return;
  await tx.query(sql.unsafe`UPDATE tenants SET ${sql.join(sets, sql.fragment`, `)} WHERE id = ${id}`);
}

/** Locks the tenant row for an update of the tenant itself; null when it does not exist. */
export async function lockTenant(tx: Db, id: string): Promise<Tenant | null> {
  const row = await tx.maybeOne(sql.type(tenantRow)`${selectTenant} WHERE t.id = ${id} FOR UPDATE OF t`);
  return row && toTenant(row);
}

export async function setTenantStatus(tx: Db, id: string, status: TenantStatus, suspensionReason: string): Promise<void> {
  await tx.query(sql.unsafe`
    UPDATE tenants SET status = ${status}, suspension_reason = ${suspensionReason} WHERE id = ${id}`);
}

/** Deletes the tenant; everything it owns goes by cascade, its audit events stay (tenant_id NULL). */
export async function deleteTenant(tx: Db, id: string): Promise<void> {
  await tx.query(sql.unsafe`DELETE FROM tenants WHERE id = ${id}`);
}

const tenantRefRow = z.object({ id: z.guid(), slug: z.string(), status: z.enum(TENANT_STATUSES) });
export type TenantRef = { readonly id: string; readonly slug: string; readonly status: TenantStatus };

/**
 * Who is changing a tenant's resources: its own principals (tenant roles, its
 * API keys) or the platform (platform admins, services, dev mode).
 */
export type TenantWriter = "tenant" | "platform";

/**
 * For changes to what a tenant owns (projects, keys, grants, IdP config): the
 * tenant must exist and not be archived, and it stays that way until the
 * transaction ends (FOR SHARE blocks a concurrent archive or delete). A
 * suspended tenant is read-only for its own principals; the platform keeps acting
 * (e.g. revoking a key during an investigation).
 */
export async function lockTenantForChange(tx: Db, tenantId: string, writer: TenantWriter): Promise<TenantRef> {
  const tenant = await tx.maybeOne(sql.type(tenantRefRow)`
    SELECT id, slug, status FROM tenants WHERE id = ${tenantId} FOR SHARE`);
  if (!tenant) throw new NotFoundError("tenant", tenantId);
  if (tenant.status === "archived") {
    throw new FailedPreconditionError(`tenant ${tenant.slug} is archived; its resources are read-only`);
  }
  if (tenant.status === "suspended" && writer === "tenant") {
    throw new FailedPreconditionError(`tenant ${tenant.slug} is suspended; its resources are read-only until a platform admin reactivates it`);
  }
  return tenant;
}

/** Whether a tenant exists, for reads of what it owns (NotFound before an empty list). */
export async function findTenantRef(db: Db, tenantId: string): Promise<TenantRef | null> {
  return db.maybeOne(sql.type(tenantRefRow)`SELECT id, slug, status FROM tenants WHERE id = ${tenantId}`);
}

export async function findTenantIdBySlug(db: Db, slug: string): Promise<string | null> {
  return db.maybeOneFirst(sql.type(z.object({ id: z.guid() }))`SELECT id FROM tenants WHERE slug = ${slug}`);
}
