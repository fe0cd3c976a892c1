export const TENANT_STATUSES = ["provisioning", "active", "suspended", "archived"] as const;
export const TENANT_PLANS = ["free", "starter", "professional", "enterprise"] as const;
export const PRODUCT_CODES = ["certifai", "compliance"] as const;

export type TenantStatus = (typeof TENANT_STATUSES)[number];
export type TenantPlan = (typeof TENANT_PLANS)[number];
export type ProductCode = (typeof PRODUCT_CODES)[number];

export type Tenant = {
  readonly id: string;
  readonly slug: string;
  readonly name: string;
  readonly status: TenantStatus;
  readonly plan: TenantPlan;
  /** Granted products, sorted, so every reader sees the same order. */
  readonly products: readonly ProductCode[];
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly metadata: Readonly<Record<string, string>>;
  /** The caller's own id for the tenant; null when unset. */
  readonly externalId: string | null;
  /** Why the tenant is suspended; "" unless it is. */
  readonly suspensionReason: string;
};

export type LifecycleAction = "suspend" | "reactivate" | "archive";

/**
 * The lifecycle: provisioning -> active <-> suspended -> archived. A tenant
 * whose sign-up never completed may be archived straight from provisioning;
 * archiving anything active takes a suspension first, so no live customer is
 * archived by one mistaken call.
 */
export const TRANSITIONS: Readonly<Record<LifecycleAction, { from: readonly TenantStatus[]; to: TenantStatus }>> = {
  suspend: { from: ["active"], to: "suspended" },
  reactivate: { from: ["suspended", "provisioning"], to: "active" },
  archive: { from: ["suspended", "provisioning"], to: "archived" },
};

/** Mirrors the tenants_slug_format CHECK: 3-63 of [a-z0-9-], alphanumeric at both ends. */
export const SLUG_PATTERN = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;

export function slugProblem(slug: string): string | undefined {
  if (slug.length < 3 || slug.length > 63) return "must be 3 to 63 characters long";
  if (!/^[a-z0-9-]+$/.test(slug)) return "may contain only lowercase letters, digits and '-'";
  if (!SLUG_PATTERN.test(slug)) return "must start and end with a letter or digit";
  return undefined;
}
