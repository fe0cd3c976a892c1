import { NotFoundError } from "./errors.js";

export const IDP_PROTOCOLS = ["oidc", "saml"] as const;
export type IdpProtocol = (typeof IDP_PROTOCOLS)[number];

/** A tenant's identity provider: how its users sign in. */
export type IdpConfig = {
  readonly id: string;
  readonly tenantId: string;
  readonly protocol: IdpProtocol;
  /** OIDC: the issuer URL. SAML: the metadata URL. */
  readonly issuerUrl: string;
  readonly clientId: string;
  /** Where the client secret lives ("vault://kv/..."); never the secret itself. */
  readonly clientSecretRef: string;
  readonly keycloakRealm: string;
  /** Lowercase, sorted; each domain belongs to one tenant at most. */
  readonly emailDomains: readonly string[];
  readonly enabled: boolean;
  readonly createdAt: Date;
  readonly updatedAt: Date;
};

/** What SetIdpConfig writes: the config without its generated columns. */
export type IdpConfigInput = Omit<IdpConfig, "id" | "createdAt" | "updatedAt">;

export const CLIENT_ID_MAX = 255;
export const EMAIL_DOMAINS_MAX = 100;
export const ISSUER_URL_MAX = 2048;
export const SECRET_REF_MAX = 1024;

/** Mirrors the tenant_idp_email_domains_domain_format CHECK: a DNS name with at least one dot. */
const DOMAIN_PATTERN = /^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function emailDomainProblem(domain: string): string | undefined {
  if (domain.length > 253 || !DOMAIN_PATTERN.test(domain)) {
    return `"${domain}" is not a domain name (labels of [a-z0-9-] separated by dots, at least one dot)`;
  }
  return undefined;
}

/** Lowercased, deduplicated and sorted: the form stored and answered. */
export function normaliseEmailDomains(domains: readonly string[]): string[] {
  return [...new Set(domains.map((d) => d.trim().toLowerCase()))].sort();
}

/**
 * The routing domain of an email address: what follows the last '@', lowercased.
 * Undefined when the address is not shaped like one.
 */
export function emailDomainOf(email: string): string | undefined {
  if (email.length > 320 || /\s/.test(email)) return undefined;
  const at = email.lastIndexOf("@");
  if (at <= 0) return undefined;
  const domain = email.slice(at + 1).toLowerCase();
  return emailDomainProblem(domain) ? undefined : domain;
}

export function issuerUrlProblem(value: string, allowHttp: boolean): string | undefined {
  if (value.length > ISSUER_URL_MAX) return `must be at most ${ISSUER_URL_MAX} characters`;
  const url = URL.parse(value);
  if (!url || url.host === "") return "must be an absolute URL";
  // It is shown to clients and written to the audit log: no place for credentials.
  if (url.username !== "" || url.password !== "") return "must not contain credentials";
  if (url.protocol === "https:") return undefined;
  if (url.protocol === "http:") return allowHttp ? undefined : "must use https";
  return allowHttp ? "must be an http or https URL" : "must be an https URL";
}

/**
 * A secret *reference*: `<scheme>://<path>` (vault://kv/tenants/acme/oidc,
 * k8s://namespace/secret/key, env://NAME, aws-sm://..., gcp-sm://...). Anything
 * else is most likely the secret itself pasted into the wrong field. The message
 * never repeats the value.
 */
const SECRET_REF_PATTERN = /^[a-z][a-z0-9+.-]*:\/\/[^\s]+$/;

export function secretRefProblem(value: string): string | undefined {
  const notARef = "must be a reference to where the secret is stored, such as vault://kv/path or k8s://namespace/secret/key: pass a reference, not the secret";
  if (value.length > SECRET_REF_MAX || !SECRET_REF_PATTERN.test(value)) return notARef;
  // scheme://user:password@host carries a credential: a secret, not a reference to one.
  const authority = value.slice(value.indexOf("://") + 3).split("/")[0]!;
  if (authority.includes("@")) return notARef;
  return undefined;
}

/** Keycloak realm names as this platform creates them. */
export const KEYCLOAK_REALM_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Login routing found no enabled identity provider owning the domain. */
export class NoIdpForDomainError extends NotFoundError {
  constructor(readonly domain: string) {
    super("identity provider for domain", domain);
    this.message = `no identity provider for domain ${domain}`;
  }
}
