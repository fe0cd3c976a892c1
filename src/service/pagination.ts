import { createHash } from "node:crypto";
import { InvalidArgumentError } from "../domain/errors.js";

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;

/** page_size: 0 means the default; larger than the maximum is clamped (AIP-158). */
export function pageSize(requested: number, field = "page_size"): number {
  if (!Number.isInteger(requested) || requested < 0) throw InvalidArgumentError.field(field, "must not be negative");
  if (requested === 0) return DEFAULT_PAGE_SIZE;
  return Math.min(requested, MAX_PAGE_SIZE);
}

/**
 * Opaque keyset tokens: the sort key of the last row returned, bound to the
 * filters it was issued for, so reusing a token with other filters is an error
 * rather than a silently wrong page. No OFFSET: every page costs the same.
 */
export function encodePageToken(after: readonly (string | number)[], filters: unknown): string {
  return Buffer.from(JSON.stringify({ a: after, f: fingerprint(filters) })).toString("base64url");
}

export function decodePageToken(token: string, filters: unknown, field = "page_token"): (string | number)[] | undefined {
  if (token === "") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw InvalidArgumentError.field(field, "is not a token this service issued");
  }
  const p = parsed as { a?: unknown; f?: unknown };
  // Tokens are not signed (a position within what the caller may read anyway), so they are read as any input is.
  if (!Array.isArray(p.a) || !p.a.every((v) => (typeof v === "string" && !v.includes("\0")) || typeof v === "number") || typeof p.f !== "string") {
    throw InvalidArgumentError.field(field, "is not a token this service issued");
  }
  if (p.f !== fingerprint(filters)) throw InvalidArgumentError.field(field, "was issued for different filters");
  return p.a as (string | number)[];
}

/** The keyset position of a page token that carries the last slug returned (ListTenants, ListProjects). */
export function decodeSlugPageToken(token: string, filters: unknown): string | undefined {
  const after = decodePageToken(token, filters);
  if (after === undefined) return undefined;
  const [slug] = after;
  if (after.length !== 1 || typeof slug !== "string") {
    throw InvalidArgumentError.field("page_token", "is not a token this service issued");
  }
  return slug;
}

function fingerprint(filters: unknown): string {
  return createHash("sha256").update(JSON.stringify(filters ?? null)).digest("base64url").slice(0, 16);
}

/** Splits a page+1 query result into the page and whether another page follows. */
export function takePage<T>(rows: readonly T[], size: number): { page: T[]; more: boolean } {
  return { page: rows.slice(0, size), more: rows.length > size };
}
