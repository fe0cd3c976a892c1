import { findApiKeysByPrefix, type ApiKeyForVerification } from "../db/queries/api-keys.js";
import { parseApiKeyToken, tokenMatchesHash, verificationCode, type VerifyCode } from "../domain/api-key.js";
import type { ProductCode } from "../domain/tenant.js";
import type { ApiKeyUsageTracker } from "./api-key-usage.js";
import type { ServiceDeps } from "./deps.js";

export type KeyVerification =
  | { readonly code: "not_found" }
  | { readonly code: Exclude<VerifyCode, "not_found">; readonly key: ApiKeyForVerification };

/** Is this token a key, and may it do what is asked? One indexed lookup; malformed tokens none. */
export type ApiKeyVerifier = (
  token: string,
  request?: { readonly requiredScopes?: readonly string[]; readonly product?: ProductCode },
) => Promise<KeyVerification>;

/**
 * The one verification path, shared by the VerifyApiKey RPC and by API-key
 * authentication of calls to this service, so both answer a key the same way.
 */
export function createApiKeyVerifier(
  { db, clock, metrics }: Pick<ServiceDeps, "db" | "clock" | "metrics">,
  usage: ApiKeyUsageTracker,
): ApiKeyVerifier {
  const verify: ApiKeyVerifier = async (token, request = {}) => {
    const parsed = parseApiKeyToken(token);
    if (!parsed) return { code: "not_found" };
    const now = clock();
    const match = matchToken(token, parsed.prefix, await findApiKeysByPrefix(db, parsed.prefix, now));
    if (!match) return { code: "not_found" };
    const { key, matchedPrevious } = match;
    usage.touch(key.id, key.lastUsedAt, now);
    const code = verificationCode(
      {
        revokedAt: key.revokedAt,
        expiresAt: key.expiresAt,
        matchedPrevious,
        previousExpiresAt: key.previousExpiresAt,
        tenantStatus: key.tenant.status,
        scopes: key.scopes,
        products: key.tenant.products,
      },
      { requiredScopes: request.requiredScopes ?? [], product: request.product },
      now,
    );
    return { code, key };
  };
  return async (token, request) => {
    const verification = await verify(token, request);
    metrics.apiKeyVerified(verification.code);
    return verification;
  };
}

/** The stored key the token belongs to, and whether it matched the previous (grace-period) secret. */
function matchToken(token: string, prefix: string, rows: readonly ApiKeyForVerification[]) {
  for (const key of rows) {
    if (key.prefix === prefix && tokenMatchesHash(token, key.secretHash)) return { key, matchedPrevious: false };
    if (key.previousPrefix === prefix && key.previousSecretHash && tokenMatchesHash(token, key.previousSecretHash)) {
      return { key, matchedPrevious: true };
    }
  }
  return undefined;
}
