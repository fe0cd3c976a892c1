import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  generateApiKeyToken,
  hashApiKeyToken,
  parseApiKeyToken,
  tokenMatchesHash,
  verificationCode,
  type VerificationFacts,
} from "../../src/domain/api-key.js";
import { entitlementReason, limitsFromJson, limitsProblems, limitsToJson } from "../../src/domain/entitlement.js";

const TOKEN = /^trk_[0-9a-z]{12}_[0-9A-Za-z]{43}$/;

describe("api key tokens", () => {
  it("have the format trk_<12 base36>_<43 base62> and a prefix of trk_<12 base36>", () => {
    for (let i = 0; i < 200; i++) {
      const { token, prefix, hash } = generateApiKeyToken();
      expect(token).toMatch(TOKEN);
      expect(prefix).toMatch(/^trk_[0-9a-z]{12}$/);
      expect(token.startsWith(`${prefix}_`)).toBe(true);
      expect(hash).toEqual(createHash("sha256").update(token).digest());
      expect(hash).toHaveLength(32);
    }
  });

  it("are unique: 10,000 tokens, 10,000 prefixes", () => {
    const tokens = Array.from({ length: 10_000 }, () => generateApiKeyToken());
    expect(new Set(tokens.map((t) => t.token)).size).toBe(10_000);
    expect(new Set(tokens.map((t) => t.prefix)).size).toBe(10_000);
  });

  it("encode all 256 random bits of the secret (no truncation at either extreme)", () => {
    const zeros = generateApiKeyToken((n) => (n === 32 ? Buffer.alloc(32, 0) : Buffer.alloc(n, 1)));
    const ones = generateApiKeyToken((n) => (n === 32 ? Buffer.alloc(32, 0xff) : Buffer.alloc(n, 1)));
    expect(zeros.token).toBe(`trk_111111111111_${"0".repeat(43)}`);
    expect(ones.token).toMatch(TOKEN);
    // 2^256 - 1 in base 62, 43 digits: the largest secret still fits the format.
    let n = 0n;
    for (const c of ones.token.split("_")[2]!) n = n * 62n + BigInt("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".indexOf(c));
    expect(n).toBe(2n ** 256n - 1n);
  });

  it("draw handle characters without modulo bias (bytes >= 252 are rejected)", () => {
    let calls = 0;
    // First the handle's bytes: all 255 (rejected), then 35s ("z"); then the secret.
    const { prefix } = generateApiKeyToken((n) => (n === 32 ? Buffer.alloc(32, 7) : Buffer.alloc(n, calls++ === 0 ? 255 : 35)));
    expect(prefix).toBe("trk_zzzzzzzzzzzz");
    expect(calls).toBe(2);
  });

  it("parse strictly: only a well-formed token yields its prefix", () => {
    const { token, prefix } = generateApiKeyToken();
    expect(parseApiKeyToken(token)).toEqual({ prefix });
    const malformed = [
      "",
      prefix,
      `${token}x`,
      token.slice(0, -1),
      ` ${token}`,
      `${token}\n`,
      token.replace("trk_", "TRK_"),
      token.replace("trk_", "trx_"),
      `trk_${"A".repeat(12)}_${"a".repeat(43)}`, // upper case in the handle
      `trk_${"a".repeat(12)}_${"-".repeat(43)}`,
      `trk_${"a".repeat(12)}-${"a".repeat(43)}`,
      `trk_${"a".repeat(11)}_${"a".repeat(44)}`,
      "x".repeat(100_000),
    ];
    for (const m of malformed) expect(parseApiKeyToken(m), JSON.stringify(m.slice(0, 80))).toBeNull();
  });

  it("hash the whole token with SHA-256 and compare in constant time", () => {
    const { token, hash } = generateApiKeyToken();
    expect(hashApiKeyToken(token).equals(hash)).toBe(true);
    // Stored hashes reach the comparison as base64, as verification rows carry them.
    const stored = hash.toString("base64");
    expect(tokenMatchesHash(token, stored)).toBe(true);
    const other = generateApiKeyToken();
    expect(tokenMatchesHash(other.token, stored)).toBe(false);
    // Same prefix, other secret: the hash covers the secret too.
    const forged = `${token.slice(0, 17)}${other.token.slice(17)}`;
    expect(tokenMatchesHash(forged, stored)).toBe(false);
    expect(tokenMatchesHash(token, Buffer.alloc(16).toString("base64"))).toBe(false);
    expect(tokenMatchesHash(token, "")).toBe(false);
  });
});

describe("verificationCode", () => {
  const now = new Date("2030-01-01T00:00:00Z");
  const later = new Date("2030-01-02T00:00:00Z");
  const earlier = new Date("2029-12-31T00:00:00Z");
  const ok: VerificationFacts = {
    revokedAt: null,
    expiresAt: null,
    matchedPrevious: false,
    previousExpiresAt: null,
    tenantStatus: "active",
    scopes: ["read", "write"],
    products: ["certifai"],
  };
  const req = { requiredScopes: ["read"], product: "certifai" as const };

  it("checks revoked, expired, tenant, scope and product in that order", () => {
    expect(verificationCode(ok, req, now)).toBe("valid");
    const all = { ...ok, revokedAt: earlier, expiresAt: earlier, tenantStatus: "suspended" as const, scopes: [], products: [] };
    expect(verificationCode(all, req, now)).toBe("revoked");
    expect(verificationCode({ ...all, revokedAt: null }, req, now)).toBe("expired");
    expect(verificationCode({ ...all, revokedAt: null, expiresAt: later }, req, now)).toBe("tenant_not_active");
    expect(verificationCode({ ...all, revokedAt: null, expiresAt: null, tenantStatus: "active" }, req, now)).toBe("insufficient_scope");
    expect(verificationCode({ ...ok, products: [] }, req, now)).toBe("not_entitled");
    expect(verificationCode({ ...ok, products: [] }, { ...req, product: undefined }, now)).toBe("valid");
  });

  it("treats expires_at == now as expired, and the previous secret as expired from previous_expires_at on", () => {
    expect(verificationCode({ ...ok, expiresAt: now }, req, now)).toBe("expired");
    expect(verificationCode({ ...ok, matchedPrevious: true, previousExpiresAt: later }, req, now)).toBe("valid");
    expect(verificationCode({ ...ok, matchedPrevious: true, previousExpiresAt: now }, req, now)).toBe("expired");
    expect(verificationCode({ ...ok, matchedPrevious: false, previousExpiresAt: earlier }, req, now)).toBe("valid");
  });
});

describe("entitlement rules", () => {
  const now = new Date("2030-01-01T00:00:00Z");
  it("answers each reason", () => {
    const facts = { tenantId: "t", tenantStatus: "active" as const, plan: "free" as const, grant: { expiresAt: null, limits: {} } };
    expect(entitlementReason(null, now)).toBe("tenant_not_found");
    expect(entitlementReason({ ...facts, tenantStatus: "suspended" }, now)).toBe("tenant_not_active");
    expect(entitlementReason({ ...facts, grant: null }, now)).toBe("product_not_granted");
    expect(entitlementReason({ ...facts, grant: { expiresAt: now, limits: {} } }, now)).toBe("grant_expired");
    expect(entitlementReason({ ...facts, grant: { expiresAt: new Date(now.getTime() + 1), limits: {} } }, now)).toBe("entitled");
    expect(entitlementReason(facts, now)).toBe("entitled");
  });

  it("keeps int64 limits exact through JSON", () => {
    const limits = { seats: 50n, big: 2n ** 63n - 1n, zero: 0n };
    const json = limitsToJson(limits);
    expect(json).toBe('{"big":9223372036854775807,"seats":50,"zero":0}');
    expect(limitsFromJson(json)).toEqual(limits);
    expect(limitsFromJson('{"seats": "50"}')).toEqual({ seats: 50n });
    expect(() => limitsFromJson('{"seats": 1.5}')).toThrow();
    // No limits, as PostgreSQL prints them and as written by hand: each call its own object.
    expect(limitsFromJson("{}")).toEqual({});
    expect(limitsFromJson("{}")).not.toBe(limitsFromJson("{}"));
    expect(limitsFromJson(" { } ")).toEqual({});
  });

  it("validates limit keys, values and count", () => {
    expect(limitsProblems({ seats: 1n, a_1: 0n })).toEqual([]);
    expect(limitsProblems({ Seats: 1n })).toEqual([[".Seats", expect.stringContaining("keys")]]);
    expect(limitsProblems({ seats: -1n })).toEqual([[".seats", "must not be negative"]]);
    expect(limitsProblems({ ["a".repeat(64)]: 1n })).toHaveLength(1);
    const many = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 1n]));
    expect(limitsProblems(many)).toEqual([["", "may have at most 32 entries"]]);
  });
});
