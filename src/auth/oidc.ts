import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify } from "jose";
import type { CryptoKey, FlattenedJWSInput, JWSHeaderParameters, JWTPayload, LocalJWKSet } from "jose";

/**
 * Verifies OIDC bearer access tokens (Keycloak's, in production) against the issuer's
 * published keys. Every failure becomes a TokenError naming the check that failed, never
 * the token itself, so the transport can answer and log without leaking credentials.
 */

export type OidcVerifierOptions = {
  /** Compared exactly with the discovery document's `issuer` and every token's `iss`. */
  readonly issuer: string;
  /** Required in `aud`; also the client whose `resource_access` roles count. */
  readonly audience?: string;
  /** Slack for `exp` and `nbf`, for clocks that disagree a little. */
  readonly clockToleranceSec?: number;
  /** The claim carrying the caller's tenant. */
  readonly tenantClaim?: string;
  /** Minimum time between JWKS fetches caused by unknown `kid`s, and between retries while the issuer is down. */
  readonly jwksCooldownMs?: number;
  /** How long a fetched JWKS is used before it is refreshed. */
  readonly jwksCacheMaxAgeMs?: number;
  /** Timeout of each discovery and JWKS request. */
  readonly httpTimeoutMs?: number;
};

export type VerifiedToken = {
  readonly subject: string;
  /** `azp`: the client the token was issued to. */
  readonly clientId?: string | undefined;
  /** `name`, else `preferred_username`. */
  readonly name?: string | undefined;
  readonly username?: string | undefined;
  /** Realm roles and the audience client's roles, deduplicated. */
  readonly roles: readonly string[];
  readonly tenantId?: string | undefined;
  readonly expiresAt: Date;
};

export type OidcVerifier = {
  verify(token: string): Promise<VerifiedToken>;
};

export type TokenErrorReason =
  | "token is missing"
  | "token is malformed"
  | "token expired"
  | "token not yet valid"
  | "issuer mismatch"
  | "audience mismatch"
  | "required claim missing"
  | "claim invalid"
  | "signature verification failed"
  | "unknown signing key"
  | "algorithm not allowed"
  | "not an access token"
  | "token could not be verified"
  | "issuer unreachable"
  | "issuer misconfigured";

// The issuer, not the caller, is at fault: worth UNAVAILABLE and an alert, not UNAUTHENTICATED.
const ISSUER_FAULTS: ReadonlySet<TokenErrorReason> = new Set(["issuer unreachable", "issuer misconfigured"]);

export class TokenError extends Error {
  override readonly name = "TokenError";
  readonly issuerFault: boolean;

  /** `claim` names the offending claim (never its value); `cause` is kept only for issuer-side failures. */
  constructor(
    readonly reason: TokenErrorReason,
    options: { readonly claim?: string; readonly cause?: unknown } = {},
  ) {
    const message = options.claim === undefined ? reason : `${reason}: ${options.claim}`;
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.issuerFault = ISSUER_FAULTS.has(reason);
  }
}

// Asymmetric only: with an HS* algorithm allowed, a token "signed" with the issuer's public
// key as HMAC secret would verify (key confusion), and `none` needs no key at all.
const ALLOWED_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"];

// Far above any real access token, yet bounds the work garbage can cause.
const MAX_TOKEN_LENGTH = 16 * 1024;
// An empty signature passes, so that `alg: none` is reported as such rather than as malformed.
const COMPACT_JWS = /^[\w-]+\.[\w-]+\.[\w-]*$/;

type Settings = Required<OidcVerifierOptions>;

type KeyResolver = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>;

export function createOidcVerifier(options: OidcVerifierOptions): OidcVerifier {
  // `??` rather than spreading defaults: an option passed as undefined must still get its default.
  const settings: Settings = {
    issuer: options.issuer,
    audience: options.audience ?? "tenant-registry",
    clockToleranceSec: options.clockToleranceSec ?? 30,
    tenantClaim: options.tenantClaim ?? "tenant_id",
    jwksCooldownMs: options.jwksCooldownMs ?? 30_000,
    jwksCacheMaxAgeMs: options.jwksCacheMaxAgeMs ?? 10 * 60_000,
    httpTimeoutMs: options.httpTimeoutMs ?? 5_000,
  };
  const keySet = onceSucceeded(async () => createKeySet(await discoverJwksUri(settings), settings));
  // Discovery waits until a key is actually needed, so tokens that fail the header checks
  // (alg none, HS256) are rejected without the issuer being asked anything.
  const resolveKey: KeyResolver = async (header, token) => (await keySet())(header, token);

  return {
    async verify(token) {
      checkStructure(token);
      try {
        const { payload } = await jwtVerify(token, resolveKey, {
          issuer: settings.issuer,
          audience: settings.audience,
          algorithms: ALLOWED_ALGORITHMS,
          clockTolerance: settings.clockToleranceSec,
          // jose accepts a token without `exp` as valid forever.
          requiredClaims: ["sub", "exp"],
        });
        // Keycloak marks its tokens' kind in `typ`: an ID or refresh token that happens to
        // carry our audience is still not a credential for calling an API.
        if (payload["typ"] !== undefined && payload["typ"] !== "Bearer") throw new TokenError("not an access token");
        return toVerifiedToken(payload, settings);
      } catch (error) {
        throw toTokenError(error);
      }
    },
  };
}

/** Rejects what cannot be a compact JWS before any decoding or crypto. */
function checkStructure(token: string): void {
  if (token === "") throw new TokenError("token is missing");
  if (token.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(token)) throw new TokenError("token is malformed");
}

/**
 * Runs `load` on first use and caches its success forever; a failure is not cached, so
 * the next call retries. Concurrent callers share one attempt.
 */
function onceSucceeded<T>(load: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => {
    pending ??= load().catch((error: unknown) => {
      pending = undefined;
      throw error;
    });
    return pending;
  };
}

/** OpenID discovery: the JWKS location, from a document that must name exactly our issuer. */
async function discoverJwksUri(settings: Settings): Promise<URL> {
  // OpenID Connect Discovery 1.0 §4: strip a trailing slash before appending the well-known path.
  const url = `${settings.issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`;
  let document: unknown;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(settings.httpTimeoutMs) });
    if (response.status !== 200) throw new Error(`${url} answered HTTP ${response.status}`);
    document = await response.json();
  } catch (cause) {
    throw new TokenError("issuer unreachable", { cause });
  }
  return jwksUriOf(document, settings.issuer);
}

function jwksUriOf(document: unknown, issuer: string): URL {
  if (!isRecord(document) || document.issuer !== issuer) {
    throw new TokenError("issuer misconfigured", {
      cause: new Error(`the discovery document does not name the issuer ${issuer}`),
    });
  }
  const jwksUri = document.jwks_uri;
  if (typeof jwksUri !== "string" || !/^https?:/.test(jwksUri) || !URL.canParse(jwksUri)) {
    throw new TokenError("issuer misconfigured", {
      cause: new Error("the discovery document has no http(s) jwks_uri"),
    });
  }
  return new URL(jwksUri);
}

/**
 * jose's remote JWKS (caching, one refetch per unknown `kid`, rate-limited by the cooldown),
 * plus "stale if error": once its cache has aged out, jose fails every verification while
 * the issuer is down. We keep verifying with the last keys we saw instead, and ask the issuer
 * again only after a cooldown, so an outage does not add a timeout to every request.
 */
function createKeySet(jwksUri: URL, settings: Settings): KeyResolver {
  const remote = createRemoteJWKSet(jwksUri, {
    cooldownDuration: settings.jwksCooldownMs,
    cacheMaxAge: settings.jwksCacheMaxAgeMs,
    timeoutDuration: settings.httpTimeoutMs,
  });
  let stale: { readonly since: number; readonly keys: LocalJWKSet } | undefined;

  return async (header, token) => {
    if (stale !== undefined && Date.now() - stale.since < settings.jwksCooldownMs) {
      return stale.keys(header, token);
    }
    try {
      const key = await remote(header, token);
      stale = undefined;
      return key;
    } catch (error) {
      if (isKeySelectionError(error)) throw error;
      const lastKnown = remote.jwks();
      if (lastKnown === undefined) throw issuerFailure(error);
      stale = { since: Date.now(), keys: createLocalJWKSet(lastKnown) };
      return stale.keys(header, token);
    }
  };
}

/** The token's fault: the keys were fetched fine, none of them fits. */
function isKeySelectionError(error: unknown): boolean {
  return (
    error instanceof errors.JWKSNoMatchingKey ||
    error instanceof errors.JWKSMultipleMatchingKeys ||
    error instanceof errors.JOSENotSupported
  );
}

function issuerFailure(cause: unknown): TokenError {
  return new TokenError(cause instanceof errors.JWKSInvalid ? "issuer misconfigured" : "issuer unreachable", { cause });
}

/**
 * jose's errors → our reasons. jose's claim errors carry the decoded payload, so they are
 * deliberately not kept as `cause`: a logged TokenError must not carry the caller's claims.
 */
function toTokenError(error: unknown): TokenError {
  if (error instanceof TokenError) return error;
  if (error instanceof errors.JWTExpired) return new TokenError("token expired");
  if (error instanceof errors.JWTClaimValidationFailed) return claimFailure(error);
  if (error instanceof errors.JOSEAlgNotAllowed) return new TokenError("algorithm not allowed");
  if (error instanceof errors.JWSSignatureVerificationFailed) return new TokenError("signature verification failed");
  if (isKeySelectionError(error)) return new TokenError("unknown signing key");
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) {
    return new TokenError("token is malformed");
  }
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid) return issuerFailure(error);
  // Not a jose verdict (e.g. an issuer key too weak to import): keep it for the logs.
  return new TokenError("token could not be verified", { cause: error });
}

function claimFailure(error: errors.JWTClaimValidationFailed): TokenError {
  const { claim } = error;
  if (error.reason === "missing") return new TokenError("required claim missing", { claim });
  if (error.reason === "check_failed") {
    if (claim === "iss") return new TokenError("issuer mismatch");
    if (claim === "aud") return new TokenError("audience mismatch");
    if (claim === "nbf") return new TokenError("token not yet valid");
  }
  return new TokenError("claim invalid", { claim });
}

function toVerifiedToken(payload: JWTPayload, settings: Settings): VerifiedToken {
  const { sub, exp } = payload;
  if (typeof sub !== "string" || sub === "") throw new TokenError("claim invalid", { claim: "sub" });
  // jose has checked that exp is present and numeric; this narrows the type.
  if (typeof exp !== "number") throw new TokenError("claim invalid", { claim: "exp" });
  const username = stringClaim(payload, "preferred_username");
  return {
    subject: sub,
    clientId: stringClaim(payload, "azp"),
    name: stringClaim(payload, "name") ?? username,
    username,
    roles: rolesOf(payload, settings.audience),
    tenantId: stringClaim(payload, settings.tenantClaim),
    expiresAt: new Date(exp * 1000),
  };
}

/** Keycloak's layout: `realm_access.roles` and `resource_access[<client>].roles`. */
function rolesOf(payload: JWTPayload, audience: string): string[] {
  const clientAccess = ownProperty(payload.resource_access, audience);
  return [...new Set([...rolesIn(payload.realm_access), ...rolesIn(clientAccess)])];
}

function rolesIn(access: unknown): string[] {
  const roles = ownProperty(access, "roles");
  return Array.isArray(roles) ? roles.filter((role): role is string => typeof role === "string") : [];
}

// A claim of an unexpected type is ignored rather than trusted or fatal.
function stringClaim(payload: JWTPayload, claim: string): string | undefined {
  const value = ownProperty(payload, claim);
  return typeof value === "string" ? value : undefined;
}

// Own properties only: a claim named "__proto__" or "constructor" must not reach Object.prototype.
function ownProperty(value: unknown, key: string): unknown {
  return isRecord(value) && Object.hasOwn(value, key) ? value[key] : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
