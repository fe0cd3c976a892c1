import type { ProductCode, Tenant, TenantPlan, TenantStatus } from "./tenant.js";

/**
 * Numeric limits of a grant ({"seats": 50n}). Proto int64 values are bigints;
 * they are kept exact end to end: written to jsonb as exact JSON numbers
 * (jsonb numerics are arbitrary precision) and read back from the jsonb's text
 * with each number's source digits, never through a lossy JS number.
 */
export type Limits = Readonly<Record<string, bigint>>;

export const LIMIT_KEY_PATTERN = /^[a-z][a-z0-9_]{0,62}$/;
export const MAX_LIMITS = 32;
const INT64_MAX = 2n ** 63n - 1n;

/** A tenant's entitlement to one product. */
export type ProductGrant = {
  readonly tenantId: string;
  readonly product: ProductCode;
  /** null: never expires. */
  readonly expiresAt: Date | null;
  readonly limits: Limits;
  readonly createdAt: Date;
  readonly updatedAt: Date;
};

/** Problems with a limits map, as [field suffix, description] pairs ("" names the map itself). */
export function limitsProblems(limits: Readonly<Record<string, bigint>>): [string, string][] {
  const problems: [string, string][] = [];
  const entries = Object.entries(limits);
  if (entries.length > MAX_LIMITS) problems.push(["", `may have at most ${MAX_LIMITS} entries`]);
  for (const [key, value] of entries) {
    if (!LIMIT_KEY_PATTERN.test(key)) problems.push([`.${key}`, "keys are 1-63 of [a-z0-9_], starting with a letter"]);
    else if (value < 0n) problems.push([`.${key}`, "must not be negative"]);
    else if (value > INT64_MAX) problems.push([`.${key}`, "must fit in a signed 64-bit integer"]);
  }
  return problems;
}

/** Exact JSON text for jsonb: {"seats":50}, keys sorted. Keys must have passed limitsProblems. */
export function limitsToJson(limits: Limits): string {
  const parts = Object.keys(limits)
    .sort()
    .map((key) => `${JSON.stringify(key)}:${limits[key]!.toString()}`);
  return `{${parts.join(",")}}`;
}

/**
 * Parses a stored limits object exactly. Numbers are taken from their source
 * digits (JSON.parse's reviver context), so values beyond 2^53 survive; digit
 * strings are accepted too, for rows written by hand as {"seats": "50"}.
 */
export function limitsFromJson(text: string): Limits {
  // Most grants have no limits, and JSON.parse with a reviver is slow (3.4 µs of an uncached
  // hot read for acme's two empty grants, in a profile): PostgreSQL prints an empty jsonb as {}.
  if (text === "{}") return {};
  const reviver = (key: string, value: unknown, context?: { source?: string }): unknown => {
    if (key === "") return value;
    if (typeof value === "number" && context?.source !== undefined && /^\d+$/.test(context.source)) return BigInt(context.source);
    if (typeof value === "string" && /^\d+$/.test(value)) return BigInt(value);
    throw new TypeError(`limit "${key}" is not a non-negative integer`);
  };
  const parsed: unknown = JSON.parse(text, reviver);
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new TypeError("limits must be a JSON object");
  return parsed as Limits;
}

/** Limits as audit-event fields: JSON has no bigints, so the digits as strings (proto JSON style). */
export function limitsForAudit(limits: Limits): Record<string, string> {
  return Object.fromEntries(Object.entries(limits).map(([k, v]) => [k, v.toString()]));
}

/** A grant as stored: its expiry stays a timestamp, judged against the clock when it is read. */
export type StoredGrant = { readonly product: ProductCode; readonly expiresAt: Date | null; readonly limits: Limits };

/**
 * A tenant with every grant it holds, expired ones included: what the hot reads
 * keep, so one stored answer serves every moment (a Tenant's `products` are
 * those unexpired at one moment).
 */
export type TenantRecord = Omit<Tenant, "products"> & { readonly grants: readonly StoredGrant[] };

export type EntitlementReason = "entitled" | "tenant_not_found" | "tenant_not_active" | "product_not_granted" | "grant_expired";

/** What CheckEntitlement judges, taken from the tenant's record: the tenant (null if none) and its grant of the product (null if none). */
export type EntitlementFacts = {
  readonly tenantId: string;
  readonly tenantStatus: TenantStatus;
  readonly plan: TenantPlan;
  readonly grant: { readonly expiresAt: Date | null; readonly limits: Limits } | null;
} | null;

/** A grant entitles until its expiry; expires_at <= now is expired. */
export function grantActive(expiresAt: Date | null, now: Date): boolean {
  return expiresAt === null || expiresAt.getTime() > now.getTime();
}

/** Checked in this order: the tenant exists, is active, holds the grant, and the grant has not expired. */
export function entitlementReason(facts: EntitlementFacts, now: Date): EntitlementReason {
  if (!facts) return "tenant_not_found";
  if (facts.tenantStatus !== "active") return "tenant_not_active";
  if (!facts.grant) return "product_not_granted";
  if (!grantActive(facts.grant.expiresAt, now)) return "grant_expired";
  return "entitled";
}
