import type { Logger } from "../logger.js";
import { TokenError, type OidcVerifier, type VerifiedToken } from "./oidc.js";
import { ROLES, type Principal, type Role } from "./principal.js";

/** Why a credential was refused; the message says which check failed, never the credential. */
export class AuthenticationError extends Error {
  override readonly name = "AuthenticationError";
  constructor(
    message: string,
    /** The issuer could not be reached: the caller should retry, not re-authenticate. */
    readonly unavailable = false,
  ) {
    super(message);
  }
}

/** Verifies a tenant's own API key presented as a bearer token. */
export type ApiKeyAuthenticator = (token: string) => Promise<Principal>;

export const API_KEY_TOKEN_PREFIX = "trk_";

export type Authenticator = (authorization: string | null) => Promise<Principal>;

export function createAuthenticator(options: { oidc: OidcVerifier; apiKeys: ApiKeyAuthenticator; logger: Logger }): Authenticator {
  return async (authorization) => {
    if (authorization === null || authorization.trim() === "") {
      throw new AuthenticationError("missing credentials: send Authorization: Bearer <access token or API key>");
    }
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!match) throw new AuthenticationError("malformed Authorization header: expected \"Bearer <token>\"");
    const token = match[1]!;
    if (token.startsWith(API_KEY_TOKEN_PREFIX)) return options.apiKeys(token);
    let verified: VerifiedToken;
    try {
      verified = await options.oidc.verify(token);
    } catch (error) {
      if (error instanceof TokenError) {
        if (error.issuerFault) options.logger.warn({ reason: error.reason, err: error.cause }, "token issuer unavailable");
        throw new AuthenticationError(`invalid access token: ${error.message}`, error.issuerFault);
      }
      throw error;
    }
    return principalOfToken(verified);
  };
}

function principalOfToken(token: VerifiedToken): Principal {
  const roles = token.roles.filter((r): r is Role => (ROLES as readonly string[]).includes(r));
  // Keycloak names client-credentials principals "service-account-<client>".
  const service = roles.includes("service") || token.username?.startsWith("service-account-") === true;
  return {
    kind: service ? "service" : "user",
    id: token.subject,
    name: token.name ?? token.username ?? token.clientId ?? token.subject,
    roles,
    // Tenant ids are compared as stored (lowercase); a claim in upper case means the same tenant.
    ...(token.tenantId ? { tenantId: token.tenantId.toLowerCase() } : {}),
  };
}
