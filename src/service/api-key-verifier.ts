import type { CachedApiKey, KeyWithTenant } from "../cache/hot-reads.js";
import type { CacheNote } from "../cache/read-cache.js";
import { parseApiKeyToken, tokenMatchesHash, verificationCode, type VerifyCode } from "../domain/api-key.js";
import type { ProductCode, Tenant } from "../domain/tenant.js";
import { USAGE_RESOLUTION_MS, type ApiKeyUsageTracker } from "./api-key-usage.js";
import type { ServiceDeps } from "./deps.js";

export type KeyVerification =
  | { readonly code: "not_found" }
  | {
      readonly code: Exclude<VerifyCode, "not_found">;
      readonly key: CachedApiKey;
      /** The key's tenant as it is now (its products unexpired now). */
      readonly tenant: Tenant;
    };

/** Is this token a key, and may it do what is asked? One indexed lookup at most (none when cached); malformed tokens none. */
export type ApiKeyVerifier = (
  token: string,
  request?: { readonly requiredScopes?: readonly string[]; readonly product?: ProductCode },
  note?: CacheNote,
) => Promise<KeyVerification>;

const NOT_FOUND: KeyVerification = Object.freeze({ code: "not_found" });

/**
 * The one verification path, shared by the VerifyApiKey RPC and by API-key
 * authentication of calls to this service, so both answer a key the same way.
 * The key's state comes from the cache when it can, but every verdict that
 * depends on time (expiry, a rotation's grace period, grant expiry) is judged
 * here, against the clock, on every call.
 */
export function createApiKeyVerifier(
  { clock, hot, metrics }: Pick<ServiceDeps, "clock" | "hot" | "metrics">,
  usage: ApiKeyUsageTracker,
): ApiKeyVerifier {
  const verify: ApiKeyVerifier = async (token, request = {}, note) => {
    const parsed = parseApiKeyToken(token);
    if (!parsed) return NOT_FOUND;
    const match = matchToken(token, parsed.prefix, await hot.apiKeysByPrefix(parsed.prefix, note));
    if (!match) return NOT_FOUND;
    const now = clock();
    const { key } = match.entry;
    const tenant = match.entry.tenant.at(now);
    // The cached row's last_used_at is as it was read: note a use at most once a resolution period.
    const seen = key.lastNotedAtMs ?? key.lastUsedAt?.getTime() ?? null;
    if (seen === null || now.getTime() - seen >= USAGE_RESOLUTION_MS) {
      usage.touch(key.id, null, now);
      key.lastNotedAtMs = now.getTime();
    }
    const code = verificationCode(
      {
        revokedAt: key.revokedAt,
        expiresAt: key.expiresAt,
        matchedPrevious: match.matchedPrevious,
        previousExpiresAt: key.previousExpiresAt,
        tenantStatus: tenant.status,
        scopes: key.scopes,
        products: tenant.products,
      },
      { requiredScopes: request.requiredScopes ?? [], product: request.product },
      now,
    );
    return { code, key, tenant };
  };
  return async (token, request, note) => {
    const verification = await verify(token, request, note);
    metrics.apiKeyVerified(verification.code);
    return verification;
  };
}

/** The stored key the token belongs to, and whether it matched the previous (grace-period) secret. */
function matchToken(token: string, prefix: string, rows: readonly KeyWithTenant[]) {
  for (const entry of rows) {
    const { key } = entry;
    if (key.prefix === prefix && tokenMatchesHash(token, key.secretHash)) return { entry, matchedPrevious: false };
    if (key.previousPrefix === prefix && key.previousSecretHash && tokenMatchesHash(token, key.previousSecretHash)) {
      return { entry, matchedPrevious: true };
    }
  }
  return undefined;
}
