import { BlockList, isIP } from "node:net";
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

/**
 * What an issuer URL may be. `dev` relaxes two rules for local setups: plain
 * http, and hosts on loopback or private networks (a Keycloak in docker compose).
 */
export function issuerUrlProblem(value: string, dev: boolean): string | undefined {
  if (value.length > ISSUER_URL_MAX) return `must be at most ${ISSUER_URL_MAX} characters`;
  const url = URL.parse(value);
  if (!url || url.host === "") return "must be an absolute URL";
  // It is shown to clients and written to the audit log: no place for credentials.
  if (url.username !== "" || url.password !== "") return "must not contain credentials";
  if (url.protocol !== "https:" && url.protocol !== "http:") return dev ? "must be an http or https URL" : "must be an https URL";
  if (url.protocol === "http:" && !dev) return "must use https";
  if (!dev && isInternalHost(url.hostname)) {
    return "must not point at an internal host: localhost, a loopback, private, link-local or unspecified address, or a name that only resolves inside a network";
  }
  return undefined;
}

/**
 * Addresses whatever fetches an issuer's discovery document must never be sent to
 * (SSRF): loopback, private, link-local (cloud metadata at 169.254.169.254),
 * unspecified, and shared (carrier-grade NAT, used inside some clusters). IPv4-mapped
 * IPv6 addresses (::ffff:10.0.0.1) match the IPv4 rules: BlockList checks them so.
 */
const INTERNAL_ADDRESSES = (() => {
  const list = new BlockList();
  list.addSubnet("0.0.0.0", 8, "ipv4"); // "this network"; 0.0.0.0 reaches the local host on Linux
  list.addSubnet("10.0.0.0", 8, "ipv4");
  list.addSubnet("100.64.0.0", 10, "ipv4");
  list.addSubnet("127.0.0.0", 8, "ipv4");
  list.addSubnet("169.254.0.0", 16, "ipv4");
  list.addSubnet("172.16.0.0", 12, "ipv4");
  list.addSubnet("192.168.0.0", 16, "ipv4");
  list.addAddress("::", "ipv6");
  list.addAddress("::1", "ipv6");
  list.addSubnet("fc00::", 7, "ipv6");
  list.addSubnet("fe80::", 10, "ipv6");
  return list;
})();

/**
 * Hosts that are internal by their name or address. The URL parser has already
 * canonicalised IPv4 literals (0x7f.1, 2130706433 → 127.0.0.1) and lowercased names.
 * DNS names are not resolved here: a public-looking name whose records point at a
 * private address passes this check, so the component that fetches discovery must
 * still pin and check the addresses it connects to.
 */
function isInternalHost(hostname: string): boolean {
  const host = hostname.startsWith("[") ? hostname.slice(1, -1) : hostname.replace(/\.$/, "");
  const family = isIP(host);
  if (family !== 0) return INTERNAL_ADDRESSES.check(host, family === 4 ? "ipv4" : "ipv6");
  // Names that only resolve inside a network: localhost, single labels ("keycloak",
  // a Kubernetes service), mDNS and cluster names (*.local, *.svc.cluster.local), and
  // the private-use .internal (metadata.google.internal is the metadata server).
  return !host.includes(".") || /\.(localhost|local|internal)$/.test(host);
}

/** The secret stores a client_secret_ref may point into; said in the error message, so callers learn the list. */
export const SECRET_REF_SCHEMES = ["vault", "k8s", "aws-sm", "gcp-sm", "azure-kv"] as const;

/**
 * A secret *reference*: `<scheme>://<path>` into one of SECRET_REF_SCHEMES
 * (vault://kv/tenants/acme/oidc, k8s://namespace/secret/key, aws-sm://arn:...,
 * gcp-sm://projects/p/secrets/s/versions/1, azure-kv://vault-name/secret-name).
 * Nothing else: env:// would name the environment of whichever service reads the
 * reference (its own admin secrets), file:// or unknown schemes arbitrary places.
 * Anything else is most likely the secret itself pasted into the wrong field, so
 * the message never repeats the value.
 */
const SECRET_REF_PATTERN = new RegExp(`^(${SECRET_REF_SCHEMES.join("|")})://[^\\s]+$`);

export function secretRefProblem(value: string): string | undefined {
  const schemes = SECRET_REF_SCHEMES.map((s) => `${s}://`).join(", ");
  const notARef = `must be a reference to where the secret is stored, in one of the secret stores ${schemes} (such as vault://kv/path or k8s://namespace/secret/key): pass a reference, not the secret`;
  if (value.length > SECRET_REF_MAX || !SECRET_REF_PATTERN.test(value)) return notARef;
  const segments = value.slice(value.indexOf("://") + 3).split("/");
  // scheme://user:password@host carries a credential: a secret, not a reference to one.
  if (segments[0] === "" || segments[0]!.includes("@")) return notARef;
  // No climbing out of the path a reference names (vault://kv/tenants/acme/../../other).
  if (segments.some((s) => s === "." || s === "..")) return notARef;
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
