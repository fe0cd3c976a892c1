import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, importJWK, SignJWT } from "jose";
import type { CryptoKey, JWK } from "jose";

/**
 * A real, minimal OpenID issuer on a loopback port, shaped like a Keycloak realm: discovery
 * document, JWKS, RS256 keys with `kid`s. Tests get real HTTP and real signatures, and can
 * rotate keys or take the issuer down and up again on the same port.
 */

export type IssueOptions = {
  /** Default 300. Negative for an already expired token; `null` for a token without `exp`. */
  readonly expiresInSec?: number | null;
  /** Sets `nbf` this many seconds from now. */
  readonly notBeforeSec?: number;
  /** The header's `kid`. Signs with that key if the issuer ever held it, else with the current key. */
  readonly kid?: string;
  /** Default "tenant-registry". */
  readonly audience?: string | string[];
  /** Default: this issuer. */
  readonly issuer?: string;
  /** Default RS256; other RSA algorithms sign with the same key pair but the JWKS advertises RS256. */
  readonly alg?: string;
};

export type OidcIssuer = {
  /** Keycloak-style: `http://127.0.0.1:<port>/realms/test`. */
  readonly issuer: string;
  /** How many times the JWKS has been served. */
  readonly jwksRequests: number;
  /** How many times the discovery document has been served. */
  readonly discoveryRequests: number;
  /** The `kid` new tokens are signed with. */
  readonly currentKid: string;
  /** A client-credentials-style access token; `claims` override the defaults (`sub`, `azp`, …). */
  issue(claims?: Record<string, unknown>, options?: IssueOptions): Promise<string>;
  /** A new signing key, published next to the old one unless `dropOld`. Returns its `kid`. */
  rotateKey(options?: { dropOld?: boolean }): Promise<string>;
  /** The current key's public JWK, as published. */
  publicJwk(): JWK;
  /** Closes the port and every open connection: the issuer "goes down". */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  start(): Promise<void>;
};

type KeyPair = {
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly privateJwk: JWK;
  readonly publicJwk: JWK;
};

const REALM_PATH = "/realms/test";
const DISCOVERY_PATH = `${REALM_PATH}/.well-known/openid-configuration`;
const JWKS_PATH = `${REALM_PATH}/protocol/openid-connect/certs`;

export const TEST_CLIENT_ID = "test-client";

export async function startOidcIssuer(): Promise<OidcIssuer> {
  // Every key ever generated stays here, so a test can still sign with a dropped one.
  const keys = new Map<string, KeyPair>();
  let current = await newKeyPair(keys);
  let published = [current.kid];
  let jwksRequests = 0;
  let discoveryRequests = 0;
  let baseUrl = "";

  const handle = (request: http.IncomingMessage, response: http.ServerResponse): void => {
    if (request.method === "GET" && request.url === DISCOVERY_PATH) {
      discoveryRequests += 1;
      return sendJson(response, discoveryDocument(`${baseUrl}${REALM_PATH}`));
    }
    if (request.method === "GET" && request.url === JWKS_PATH) {
      jwksRequests += 1;
      return sendJson(response, { keys: published.map((kid) => keys.get(kid)?.publicJwk) });
    }
    response.writeHead(404).end();
  };

  let server = await listen(handle, 0);
  const port = (server.address() as AddressInfo).port;
  baseUrl = `http://127.0.0.1:${port}`;
  const issuer = `${baseUrl}${REALM_PATH}`;

  return {
    issuer,
    get jwksRequests() {
      return jwksRequests;
    },
    get discoveryRequests() {
      return discoveryRequests;
    },
    get currentKid() {
      return current.kid;
    },
    async issue(claims = {}, options = {}) {
      const key = (options.kid === undefined ? undefined : keys.get(options.kid)) ?? current;
      return sign(claims, { ...options, kid: options.kid ?? current.kid }, key, issuer);
    },
    async rotateKey({ dropOld = false } = {}) {
      current = await newKeyPair(keys);
      published = dropOld ? [current.kid] : [...published, current.kid];
      return current.kid;
    },
    publicJwk: () => structuredClone(current.publicJwk),
    async stop() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Keep-alive connections would otherwise keep answering after "stop".
      server.closeAllConnections();
      await closed;
    },
    async start() {
      server = await listen(handle, port);
    },
  };
}

async function newKeyPair(keys: Map<string, KeyPair>): Promise<KeyPair> {
  const kid = `key-${keys.size + 1}-${randomUUID().slice(0, 8)}`;
  // Extractable so the private JWK can be re-imported for other RSA algorithms.
  const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
  const pair: KeyPair = {
    kid,
    privateKey,
    privateJwk: await exportJWK(privateKey),
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" },
  };
  keys.set(kid, pair);
  return pair;
}

async function sign(
  claims: Record<string, unknown>,
  options: IssueOptions & { readonly kid: string },
  key: KeyPair,
  issuer: string,
): Promise<string> {
  const alg = options.alg ?? "RS256";
  const now = Math.floor(Date.now() / 1000);
  // What Keycloak puts in a client-credentials access token for a service account.
  const defaults = {
    sub: "5c1f3a7e-0d7b-4a53-9d1e-2f0c6b8a9e41",
    azp: TEST_CLIENT_ID,
    preferred_username: `service-account-${TEST_CLIENT_ID}`,
    typ: "Bearer",
    scope: "profile email",
  };
  const jwt = new SignJWT({ ...defaults, ...claims })
    .setProtectedHeader({ alg, kid: options.kid, typ: "JWT" })
    .setIssuer(options.issuer ?? issuer)
    .setAudience(options.audience ?? "tenant-registry")
    .setIssuedAt(now);
  if (options.expiresInSec !== null) jwt.setExpirationTime(now + (options.expiresInSec ?? 300));
  if (options.notBeforeSec !== undefined) jwt.setNotBefore(now + options.notBeforeSec);
  return jwt.sign(alg === "RS256" ? key.privateKey : await importJWK(key.privateJwk, alg));
}

function discoveryDocument(issuer: string): Record<string, unknown> {
  return {
    issuer,
    jwks_uri: `${issuer}/protocol/openid-connect/certs`,
    token_endpoint: `${issuer}/protocol/openid-connect/token`,
    grant_types_supported: ["client_credentials"],
    id_token_signing_alg_values_supported: ["RS256"],
  };
}

function sendJson(response: http.ServerResponse, body: unknown): void {
  response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
}

async function listen(handler: http.RequestListener, port: number): Promise<http.Server> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  return server;
}
