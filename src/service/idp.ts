import type { ServiceImpl } from "@connectrpc/connect";
import type { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import {
  deleteIdpConfig,
  findIdpConfigByTenant,
  listIdpEmailDomains,
  replaceIdpEmailDomains,
  upsertIdpConfig,
} from "../db/queries/idp.js";
import { findTenantRef, lockTenantForChange } from "../db/queries/tenants.js";
import { writerOf } from "./tenant-writer.js";
import { permissionsOf } from "../auth/permissions.js";
import { AlreadyExistsError, InvalidArgumentError, NotFoundError, PermissionDeniedError } from "../domain/errors.js";
import {
  CLIENT_ID_MAX,
  EMAIL_DOMAINS_MAX,
  emailDomainOf,
  emailDomainProblem,
  issuerUrlProblem,
  KEYCLOAK_REALM_PATTERN,
  NoIdpForDomainError,
  normaliseEmailDomains,
  secretRefProblem,
  type IdpConfigInput,
} from "../domain/idp.js";
import { cacheKey } from "../cache/change-notice.js";
import { tenantToProto } from "../transport/convert.js";
import { idpConfigToProto, idpProtocolFromProto } from "../transport/convert-idp.js";
import { auditContextOf, cacheNoteKey, principalKey } from "../transport/context.js";
import { audited } from "./audited.js";
import type { ServiceDeps } from "./deps.js";
import { checkUuid, requireUuid, Violations } from "./validate.js";

type SetIdpConfigRequest = Parameters<ServiceImpl<typeof TenantRegistryService>["setIdpConfig"]>[0];

/** The request as a domain config, or InvalidArgument naming every offending field. */
function idpConfigInput(req: SetIdpConfigRequest, appEnv: ServiceDeps["appEnv"]): IdpConfigInput {
  const config = req.idpConfig;
  if (!config) throw InvalidArgumentError.field("idp_config", "is required");
  const v = new Violations();
  checkUuid(v, "tenant_id", req.tenantId);
  const tenantId = req.tenantId.toLowerCase();
  if (config.tenantId !== "" && config.tenantId.toLowerCase() !== tenantId) {
    v.add("idp_config.tenant_id", "must be empty or equal tenant_id");
  }
  const protocol = idpProtocolFromProto(config.protocol);
  if (!protocol) v.add("idp_config.protocol", "is required: oidc or saml");

  if (config.issuerUrl === "") v.add("idp_config.issuer_url", "is required");
  else {
    const problem = issuerUrlProblem(config.issuerUrl, appEnv === "dev");
    if (problem) v.add("idp_config.issuer_url", problem);
  }

  if (protocol === "oidc" && config.clientId.trim() === "") v.add("idp_config.client_id", "is required for oidc");
  v.check(config.clientId.length <= CLIENT_ID_MAX, "idp_config.client_id", `must be at most ${CLIENT_ID_MAX} characters`);

  if (config.clientSecretRef !== "") {
    const problem = secretRefProblem(config.clientSecretRef);
    if (problem) v.add("idp_config.client_secret_ref", problem);
  }

  if (config.keycloakRealm !== "" && !KEYCLOAK_REALM_PATTERN.test(config.keycloakRealm)) {
    v.add("idp_config.keycloak_realm", "must be 1-64 of [A-Za-z0-9_-]");
  }

  const emailDomains = normaliseEmailDomains(config.emailDomains);
  if (emailDomains.length > EMAIL_DOMAINS_MAX) v.add("idp_config.email_domains", `may list at most ${EMAIL_DOMAINS_MAX} domains`);
  else {
    for (const domain of emailDomains) {
      const problem = emailDomainProblem(domain);
      if (problem) v.add("idp_config.email_domains", problem);
    }
  }
  v.throwIfAny();

  return {
    tenantId,
    protocol: protocol!,
    issuerUrl: config.issuerUrl,
    clientId: config.clientId.trim(),
    clientSecretRef: config.clientSecretRef,
    keycloakRealm: config.keycloakRealm,
    emailDomains,
    enabled: config.enabled,
  };
}

/** What a domain change needs: domain ownership is verified by a platform admin, not asserted by a tenant. */
const DOMAINS_PERMISSION = "idp:domains";

/** The domains in `next` but not `current` and the reverse; both empty when the sets are equal. */
function domainChanges(current: readonly string[], next: readonly string[]): { added: string[]; removed: string[] } {
  return { added: next.filter((d) => !current.includes(d)), removed: current.filter((d) => !next.includes(d)) };
}

export function createIdpHandlers(deps: ServiceDeps) {
  const { db, appEnv, hot, clock } = deps;
  return {
    async setIdpConfig(req, ctx) {
      const input = idpConfigInput(req, appEnv);
      const { emailDomains, ...row } = input;
      // Undefined only where auth is bypassed (tests); AUTH_MODE=none runs as the dev platform admin.
      const principal = ctx.values.get(principalKey);
      const mayChangeDomains = !principal || permissionsOf(principal).has(DOMAINS_PERMISSION);

      const config = await audited(deps, auditContextOf(ctx), async (tx) => {
        await lockTenantForChange(tx, input.tenantId, writerOf(ctx));
        // The upsert locks the config row (or waits for a concurrent first set), so the
        // domains read next are the ones this transaction replaces: no change slips in between.
        const { config: saved, created } = await upsertIdpConfig(tx, row);
        const before = await listIdpEmailDomains(tx, input.tenantId);
        if (!mayChangeDomains) {
          const changes = domainChanges(before, emailDomains);
          if (changes.added.length > 0 || changes.removed.length > 0) {
            // Rolls the upsert back with everything else; the auth interceptor audits the attempt.
            throw new PermissionDeniedError(
              "permission denied: email_domains are assigned by a platform admin once the domain's ownership is verified; " +
                "set the config with the tenant's current email_domains",
              {
                permission: DOMAINS_PERMISSION,
                target: { id: input.tenantId, name: "SetIdpConfig", type: "tenant" },
                fields: { email_domains_added: changes.added, email_domains_removed: changes.removed },
              },
            );
          }
        }
        const taken = await replaceIdpEmailDomains(tx, input.tenantId, emailDomains);
        // Naming the domain, never its owner: other tenants stay invisible.
        if (taken.length > 0) throw new AlreadyExistsError("identity provider", "email_domains", taken[0]!);
        return {
          result: { ...saved, emailDomains },
          // Login routing of every domain the config owned or owns now (a new one may be cached as unknown).
          changed: { tenantId: input.tenantId, keys: [...new Set([...before, ...emailDomains])].map(cacheKey.emailDomain) },
          event: {
            tenantId: input.tenantId,
            action: "idp_config.set",
            crud: created ? "c" : "u",
            target: { id: saved.id, name: saved.issuerUrl, type: "idp_config" },
            // The secret reference is not a secret, but the audit log stays clear of anything next to one.
            fields: {
              protocol: saved.protocol,
              issuer_url: saved.issuerUrl,
              client_id: saved.clientId,
              client_secret_ref_set: saved.clientSecretRef !== "",
              keycloak_realm: saved.keycloakRealm,
              email_domains: emailDomains,
              enabled: saved.enabled,
            },
          },
        };
      });
      return { idpConfig: idpConfigToProto(config) };
    },

    async getIdpConfig(req) {
      const tenantId = requireUuid("tenant_id", req.tenantId);
      const config = await findIdpConfigByTenant(db, tenantId);
      if (!config) {
        if (!(await findTenantRef(db, tenantId))) throw new NotFoundError("tenant", tenantId);
        throw new NotFoundError("identity provider config of tenant", tenantId);
      }
      return { idpConfig: idpConfigToProto(config) };
    },

    async deleteIdpConfig(req, ctx) {
      const tenantId = requireUuid("tenant_id", req.tenantId);
      await audited(deps, auditContextOf(ctx), async (tx) => {
        await lockTenantForChange(tx, tenantId, writerOf(ctx));
        const deleted = await deleteIdpConfig(tx, tenantId);
        if (!deleted) throw new NotFoundError("identity provider config of tenant", tenantId);
        return {
          result: undefined,
          changed: { tenantId, keys: deleted.emailDomains.map(cacheKey.emailDomain) },
          event: {
            tenantId,
            action: "idp_config.delete",
            crud: "d",
            target: { id: deleted.id, name: deleted.issuerUrl, type: "idp_config" },
            fields: { protocol: deleted.protocol, email_domains: deleted.emailDomains },
          },
        };
      });
      return {};
    },

    async resolveIdp(req, ctx) {
      if (req.email === "") throw InvalidArgumentError.field("email", "is required");
      const domain = emailDomainOf(req.email);
      if (!domain) throw InvalidArgumentError.field("email", "must be an email address (local@domain.tld)");
      const route = await hot.idpByDomain(domain, ctx.values.get(cacheNoteKey));
      if (!route) throw new NoIdpForDomainError(domain);
      return { tenant: tenantToProto(route.tenant.at(clock())), idpConfig: idpConfigToProto(route.config) };
    },
  } satisfies Partial<ServiceImpl<typeof TenantRegistryService>>;
}
