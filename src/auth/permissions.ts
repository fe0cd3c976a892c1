import type { DescService } from "@bufbuild/protobuf";
import type { Principal, Role } from "./principal.js";

export const PERMISSIONS = [
  "tenants:list",
  "tenants:read",
  "tenants:write",
  "projects:read",
  "projects:write",
  "entitlements:read",
  "entitlements:write",
  "entitlements:check",
  "idp:read",
  "idp:write",
  "idp:resolve",
  /** Assign email domains to an IdP config (ResolveIdp routes them): platform admins only, once ownership is verified. */
  "idp:domains",
  "api_keys:read",
  "api_keys:write",
  "api_keys:verify",
  "audit:read",
  "audit:write",
  /** Verify a chain and sign its head: platform admins, and tenant admins for their own tenant. */
  "audit:verify",
  /** Set how long a tenant's audit events are kept: platform admins only (a shorter period removes evidence). */
  "audit:retention",
] as const;
export type Permission = (typeof PERMISSIONS)[number];

/**
 * How to find the tenant a request is about, so a tenant-scoped caller can be
 * confined to its own: a request field holding the tenant id, a slug, an id-or-slug,
 * the id of an API key, or nothing (platform-level calls).
 */
export type TenantLocator =
  /** `emptyIsPlatform`: an empty id names the platform (its audit chain), which only platform principals reach. */
  | { readonly by: "tenant_id"; readonly field: string; readonly emptyIsPlatform?: boolean }
  | { readonly by: "slug"; readonly field: string }
  | { readonly by: "id_or_slug"; readonly field: string }
  | { readonly by: "api_key_id"; readonly field: string }
  | { readonly by: "none" };

export type RpcPolicy = {
  readonly permission: Permission;
  readonly tenant: TenantLocator;
  /** For mutating RPCs: the audit action a denied call is recorded under. */
  readonly auditAction?: string;
};

const tenantId = (field: string): TenantLocator => ({ by: "tenant_id", field });
const none: TenantLocator = { by: "none" };

/**
 * Every RPC of TenantRegistryService and what it needs: the whole authorization
 * policy in one table. A startup check (and a test) fails if an RPC is missing.
 */
export const RPC_POLICIES: Readonly<Record<string, RpcPolicy>> = {
  CreateTenant: { permission: "tenants:write", tenant: none, auditAction: "tenant.create" },
  GetTenant: { permission: "tenants:read", tenant: tenantId("id") },
  GetTenantBySlug: { permission: "tenants:read", tenant: { by: "slug", field: "slug" } },
  ListTenants: { permission: "tenants:list", tenant: none },
  UpdateTenant: { permission: "tenants:write", tenant: tenantId("tenant.id"), auditAction: "tenant.update" },
  SuspendTenant: { permission: "tenants:write", tenant: tenantId("id"), auditAction: "tenant.suspend" },
  ReactivateTenant: { permission: "tenants:write", tenant: tenantId("id"), auditAction: "tenant.reactivate" },
  ArchiveTenant: { permission: "tenants:write", tenant: tenantId("id"), auditAction: "tenant.archive" },
  DeleteTenant: { permission: "tenants:write", tenant: tenantId("id"), auditAction: "tenant.delete" },

  CreateProject: { permission: "projects:write", tenant: tenantId("tenant_id"), auditAction: "project.create" },
  GetProject: { permission: "projects:read", tenant: tenantId("tenant_id") },
  ListProjects: { permission: "projects:read", tenant: tenantId("tenant_id") },
  UpdateProject: { permission: "projects:write", tenant: tenantId("project.tenant_id"), auditAction: "project.update" },
  DeleteProject: { permission: "projects:write", tenant: tenantId("tenant_id"), auditAction: "project.delete" },

  GrantProduct: { permission: "entitlements:write", tenant: tenantId("tenant_id"), auditAction: "product.grant" },
  RevokeProduct: { permission: "entitlements:write", tenant: tenantId("tenant_id"), auditAction: "product.revoke" },
  ListTenantProducts: { permission: "entitlements:read", tenant: tenantId("tenant_id") },
  CheckEntitlement: { permission: "entitlements:check", tenant: { by: "id_or_slug", field: "tenant" } },

  SetIdpConfig: { permission: "idp:write", tenant: tenantId("tenant_id"), auditAction: "idp_config.set" },
  GetIdpConfig: { permission: "idp:read", tenant: tenantId("tenant_id") },
  DeleteIdpConfig: { permission: "idp:write", tenant: tenantId("tenant_id"), auditAction: "idp_config.delete" },
  ResolveIdp: { permission: "idp:resolve", tenant: none },

  CreateApiKey: { permission: "api_keys:write", tenant: tenantId("tenant_id"), auditAction: "api_key.create" },
  ListApiKeys: { permission: "api_keys:read", tenant: tenantId("tenant_id") },
  GetApiKey: { permission: "api_keys:read", tenant: { by: "api_key_id", field: "id" } },
  RevokeApiKey: { permission: "api_keys:write", tenant: { by: "api_key_id", field: "id" }, auditAction: "api_key.revoke" },
  RotateApiKey: { permission: "api_keys:write", tenant: { by: "api_key_id", field: "id" }, auditAction: "api_key.rotate" },
  VerifyApiKey: { permission: "api_keys:verify", tenant: none },

  RecordAuditEvents: { permission: "audit:write", tenant: none, auditAction: "audit.record" },
  ListAuditEvents: { permission: "audit:read", tenant: tenantId("tenant_id") },
  ExportAuditEvents: { permission: "audit:read", tenant: tenantId("tenant_id") },
  // An empty tenant_id is the platform chain: only platform principals resolve it.
  VerifyAuditChain: { permission: "audit:verify", tenant: { by: "tenant_id", field: "tenant_id", emptyIsPlatform: true } },
  GetAuditCheckpoint: { permission: "audit:verify", tenant: { by: "tenant_id", field: "tenant_id", emptyIsPlatform: true } },
  GetAuditPublicKey: { permission: "audit:read", tenant: none },
  GetAuditRetention: { permission: "audit:read", tenant: tenantId("tenant_id") },
  SetAuditRetention: { permission: "audit:retention", tenant: tenantId("tenant_id"), auditAction: "tenant.audit_retention.set" },

  // Whoever may read a tenant may learn that it changed; the handler confines a
  // tenant-scoped caller who names no tenant to its own.
  WatchChanges: { permission: "tenants:read", tenant: tenantId("tenant_id") },
};

const TENANT_VIEWER: readonly Permission[] = ["tenants:read", "projects:read", "entitlements:read", "audit:read"];
const TENANT_ADMIN: readonly Permission[] = [
  ...TENANT_VIEWER,
  "projects:write",
  "api_keys:read",
  "api_keys:write",
  "idp:read",
  "idp:write",
  "audit:verify",
];

export const ROLE_PERMISSIONS: Readonly<Record<Role, readonly Permission[]>> = {
  "platform-admin": PERMISSIONS,
  // Sibling services: look tenants up, answer the hot-path questions, report events.
  service: ["tenants:list", "tenants:read", "projects:read", "entitlements:check", "api_keys:verify", "idp:resolve", "audit:write"],
  "tenant-admin": TENANT_ADMIN,
  "tenant-viewer": TENANT_VIEWER,
};

/**
 * API-key scopes map onto the tenant roles: "tenant-admin" or "tenant-viewer"
 * grant that role's permissions, and a scope naming a single permission grants
 * it, but only within what a tenant admin may do: a key never outranks its tenant.
 */
export function permissionsOfScopes(scopes: readonly string[]): Set<Permission> {
  const granted = new Set<Permission>();
  for (const scope of scopes) {
    if (scope === "tenant-admin" || scope === "tenant-viewer") ROLE_PERMISSIONS[scope].forEach((p) => granted.add(p));
    else if ((TENANT_ADMIN as readonly string[]).includes(scope)) granted.add(scope as Permission);
  }
  return granted;
}

const PLATFORM_ROLES: readonly Role[] = ["platform-admin", "service"];

/** What the principal may do on every tenant: what its platform roles allow. */
export function platformPermissionsOf(principal: Principal): Set<Permission> {
  if (principal.kind === "api_key") return new Set();
  return new Set(principal.roles.filter((r) => PLATFORM_ROLES.includes(r)).flatMap((role) => ROLE_PERMISSIONS[role]));
}

const ROLE_PERMISSION_SETS: Readonly<Record<Role, ReadonlySet<Permission>>> = {
  "platform-admin": new Set(ROLE_PERMISSIONS["platform-admin"]),
  service: new Set(ROLE_PERMISSIONS.service),
  "tenant-admin": new Set(ROLE_PERMISSIONS["tenant-admin"]),
  "tenant-viewer": new Set(ROLE_PERMISSIONS["tenant-viewer"]),
};

/**
 * Whether one of the principal's platform roles grants `permission`: the
 * check every call makes, so it builds no set per call.
 */
export function hasPlatformPermission(principal: Principal, permission: Permission): boolean {
  if (principal.kind === "api_key") return false;
  return principal.roles.some((role) => PLATFORM_ROLES.includes(role) && ROLE_PERMISSION_SETS[role].has(permission));
}

/** What the principal may do on its own tenant only: its tenant roles, or an API key's scopes. */
export function tenantPermissionsOf(principal: Principal): Set<Permission> {
  if (principal.kind === "api_key") return permissionsOfScopes(principal.scopes ?? []);
  return new Set(principal.roles.filter((r) => !PLATFORM_ROLES.includes(r)).flatMap((role) => ROLE_PERMISSIONS[role]));
}

/** Everything the principal holds, wherever it applies. */
export function permissionsOf(principal: Principal): Set<Permission> {
  return new Set([...platformPermissionsOf(principal), ...tenantPermissionsOf(principal)]);
}

/** Fails at startup (and in a test) when an RPC has no policy, or a policy names no RPC. */
export function assertEveryRpcHasAPolicy(service: DescService): void {
  const methods = service.methods.map((m) => m.name);
  const missing = methods.filter((m) => !RPC_POLICIES[m]);
  const stale = Object.keys(RPC_POLICIES).filter((name) => !methods.includes(name));
  if (missing.length > 0 || stale.length > 0) {
    throw new Error(
      `authorization table out of date: ${missing.length ? `no policy for ${missing.join(", ")}` : ""}` +
        `${missing.length && stale.length ? "; " : ""}${stale.length ? `policy for unknown RPC ${stale.join(", ")}` : ""}`,
    );
  }
}
