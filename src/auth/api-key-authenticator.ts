import type { ApiKeyVerifier } from "../service/api-key-verifier.js";
import { AuthenticationError, type ApiKeyAuthenticator } from "./authenticate.js";

/**
 * A tenant's own API key as a credential: it acts for the key's tenant, with
 * what its scopes allow (see permissionsOfScopes). Any answer but "valid" is
 * Unauthenticated, saying why (revoked, expired, …) and nothing more.
 */
export function createApiKeyAuthenticator(verifyKey: ApiKeyVerifier): ApiKeyAuthenticator {
  return async (token) => {
    const result = await verifyKey(token);
    if (result.code !== "valid") throw new AuthenticationError(`api key rejected: ${result.code.replaceAll("_", " ")}`);
    const { key, tenant } = result;
    return {
      kind: "api_key",
      id: key.id,
      name: `api key ${key.prefix}`,
      roles: [],
      tenantId: tenant.id,
      scopes: key.scopes,
    };
  };
}
