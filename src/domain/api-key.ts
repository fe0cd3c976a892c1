import { hash as oneShotHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { ProductCode, TenantStatus } from "./tenant.js";

/**
 * API-key tokens: `trk_<handle>_<secret>`.
 *
 * - handle: 12 lowercase base36 characters (~62 bits) from crypto.randomBytes.
 *   `trk_<handle>` is the key's public prefix: stored, unique, safe to log and
 *   show, and the lookup handle on verification.
 * - secret: 43 base62 characters encoding 32 random bytes (256 bits; 62^43 > 2^256).
 *
 * Only SHA-256 of the WHOLE token is stored. The token is returned once (by
 * create and rotate) and never stored, logged or audited.
 */
export const TOKEN_PREFIX = "trk_";
export const HANDLE_LENGTH = 12;
export const SECRET_LENGTH = 43;
const SECRET_BYTES = 32;

const TOKEN_PATTERN = /^(trk_[0-9a-z]{12})_([0-9A-Za-z]{43})$/;
const BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz";
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

export type GeneratedToken = {
  /** The whole token, shown to the caller once. */
  readonly token: string;
  /** "trk_<handle>": stored and shown. */
  readonly prefix: string;
  /** SHA-256 of the whole token: the only secret-derived value that is stored. */
  readonly hash: Buffer;
};

export function generateApiKeyToken(random: (size: number) => Buffer = randomBytes): GeneratedToken {
  const prefix = `${TOKEN_PREFIX}${randomBase36(HANDLE_LENGTH, random)}`;
  const secret = toBase62(random(SECRET_BYTES), SECRET_LENGTH);
  const token = `${prefix}_${secret}`;
  return { token, prefix, hash: hashApiKeyToken(token) };
}

/** The public prefix of a well-formed token, or null: malformed tokens never reach the database. */
export function parseApiKeyToken(token: string): { readonly prefix: string } | null {
  const match = TOKEN_PATTERN.exec(token);
  return match ? { prefix: match[1]! } : null;
}

// One call, no Hash object to build and finish: every VerifyApiKey and key-authenticated call hashes its token.
export function hashApiKeyToken(token: string): Buffer {
  return oneShotHash("sha256", token, "buffer");
}

/** Constant-time comparison of the token's hash with a stored one (base64, as verification rows carry it). */
export function tokenMatchesHash(token: string, storedHash: string): boolean {
  const digest = hashApiKeyToken(token);
  const stored = Buffer.from(storedHash, "base64");
  return stored.length === digest.length && timingSafeEqual(digest, stored);
}

/** Unbiased: bytes >= 252 (7 * 36) are rejected rather than folded onto the low digits. */
function randomBase36(length: number, random: (size: number) => Buffer): string {
  let out = "";
  while (out.length < length) {
    for (const byte of random(length * 2)) {
      if (byte < 252 && out.length < length) out += BASE36[byte % 36];
    }
  }
  return out;
}

/** The bytes as one big number in base 62, left-padded to `length` digits. */
function toBase62(bytes: Buffer, length: number): string {
  let n = BigInt(`0x${bytes.toString("hex") || "0"}`);
  let out = "";
  while (n > 0n) {
    out = BASE62[Number(n % 62n)]! + out;
    n /= 62n;
  }
  if (out.length > length) throw new RangeError("too many bytes for the secret length");
  return out.padStart(length, "0");
}

// ---- Key metadata and rules ----

export type ApiKey = {
  readonly id: string;
  readonly tenantId: string;
  readonly projectId: string | null;
  readonly name: string;
  readonly prefix: string;
  readonly scopes: readonly string[];
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
  readonly lastUsedAt: Date | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  /** After a rotation with a grace period: until when the previous secret still works. */
  readonly previousExpiresAt: Date | null;
  /** The previous secret's prefix while it may still be cached as a verification entry. */
  readonly previousPrefix: string | null;
};

export const SCOPE_PATTERN = /^[a-z][a-z0-9_.:-]{0,63}$/;
export const MAX_SCOPES = 50;
export const MAX_IDEMPOTENCY_KEY_LENGTH = 200;
export const MAX_GRACE_PERIOD_MS = 30 * 24 * 60 * 60 * 1000;

/** Scopes in first-seen order without duplicates. */
export function dedupeScopes(scopes: readonly string[]): string[] {
  return [...new Set(scopes)];
}

/** The idempotency scope of creates: keys are per tenant. */
export function createIdempotencyScope(tenantId: string): string {
  return `api_key.create:${tenantId}`;
}

// ---- Verification ----

export type VerifyCode =
  | "valid"
  | "not_found"
  | "revoked"
  | "expired"
  | "tenant_not_active"
  | "insufficient_scope"
  | "not_entitled";

/** What the lookup found about a key whose secret matched. */
export type VerificationFacts = {
  readonly revokedAt: Date | null;
  readonly expiresAt: Date | null;
  /** The token matched the previous secret (a rotation's grace period), not the current one. */
  readonly matchedPrevious: boolean;
  readonly previousExpiresAt: Date | null;
  readonly tenantStatus: TenantStatus;
  readonly scopes: readonly string[];
  /** The tenant's unexpired grants. */
  readonly products: readonly ProductCode[];
};

/**
 * The answer for a key that exists and whose secret matched, checked in this
 * order: revoked, expired (the key, or the previous secret after its grace
 * period), tenant not active, missing scope, product not entitled.
 */
export function verificationCode(
  facts: VerificationFacts,
  request: { readonly requiredScopes: readonly string[]; readonly product: ProductCode | undefined },
  now: Date,
): Exclude<VerifyCode, "not_found"> {
  const t = now.getTime();
  if (facts.revokedAt !== null) return "revoked";
  if (facts.expiresAt !== null && facts.expiresAt.getTime() <= t) return "expired";
  if (facts.matchedPrevious && (facts.previousExpiresAt === null || facts.previousExpiresAt.getTime() <= t)) return "expired";
  if (facts.tenantStatus !== "active") return "tenant_not_active";
  if (!request.requiredScopes.every((s) => facts.scopes.includes(s))) return "insufficient_scope";
  if (request.product !== undefined && !facts.products.includes(request.product)) return "not_entitled";
  return "valid";
}
