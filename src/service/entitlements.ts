import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { ProductCode as ProtoProductCode } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import type { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import {
  deleteProductGrant,
  listProductGrantsByTenant,
  upsertProductGrant,
} from "../db/queries/entitlements.js";
import { findTenantRef, lockTenantForChange } from "../db/queries/tenants.js";
import { writerOf } from "./tenant-writer.js";
import type { AuditEventDraft } from "../domain/audit.js";
import { entitlementReason, limitsForAudit, limitsProblems, type ProductGrant } from "../domain/entitlement.js";
import { NotFoundError } from "../domain/errors.js";
import { isUuid } from "../domain/ids.js";
import { slugProblem, type ProductCode } from "../domain/tenant.js";
import { cacheKey } from "../cache/change-notice.js";
import { auditContextOf, cacheNoteKey } from "../transport/context.js";
import { planToProto, statusToProto } from "../transport/convert.js";
import { entitlementReasonToProto, grantToProto, limitsToProto, productFromProto } from "../transport/convert-entitlement.js";
import { audited } from "./audited.js";
import type { ServiceDeps } from "./deps.js";
import { checkFuture, checkUuid, requireUuid, Violations } from "./validate.js";

/** Records a violation unless `value` names a known product; UNSPECIFIED is "required". */
function checkProduct(v: Violations, field: string, value: number): ProductCode | undefined {
  const product = productFromProto(value);
  if (value === ProtoProductCode.UNSPECIFIED) v.add(field, "is required");
  else if (!product) v.add(field, "is not a known product");
  return product;
}

// The grant's audit target: one per (tenant, product).
const grantTarget = (tenantId: string, product: ProductCode) => ({ id: `${tenantId}/${product}`, name: product, type: "product" });

const grantFields = (g: ProductGrant) => ({
  product: g.product,
  expires_at: g.expiresAt?.toISOString() ?? null,
  limits: limitsForAudit(g.limits),
});

export function createEntitlementHandlers(deps: ServiceDeps) {
  const { db, clock, metrics, hot } = deps;
  return {
    async grantProduct(req, ctx) {
      const v = new Violations();
      checkUuid(v, "tenant_id", req.tenantId);
      const product = checkProduct(v, "product", req.product);
      const expiresAt = checkFuture(v, "expires_at", req.expiresAt, clock());
      for (const [suffix, problem] of limitsProblems(req.limits)) v.add(`limits${suffix}`, problem);
      v.throwIfAny();

      const tenantId = req.tenantId.toLowerCase();
      const grant = await audited(deps, auditContextOf(ctx), async (tx) => {
        await lockTenantForChange(tx, tenantId, writerOf(ctx));
        const { grant, created } = await upsertProductGrant(tx, { tenantId, product: product!, expiresAt, limits: req.limits });
        const event: AuditEventDraft = {
          tenantId,
          action: "product.grant",
          crud: created ? "c" : "u",
          target: grantTarget(tenantId, grant.product),
          fields: grantFields(grant),
        };
        // Grants live in the tenant's entry (CheckEntitlement, the products of GetTenant and VerifyApiKey).
        return { result: grant, event, changed: { tenantId, keys: [cacheKey.tenant(tenantId)] } };
      });
      return { grant: grantToProto(grant) };
    },

    async revokeProduct(req, ctx) {
      const v = new Violations();
      checkUuid(v, "tenant_id", req.tenantId);
      const product = checkProduct(v, "product", req.product);
      v.throwIfAny();

      const tenantId = req.tenantId.toLowerCase();
      await audited(deps, auditContextOf(ctx), async (tx) => {
        await lockTenantForChange(tx, tenantId, writerOf(ctx));
        const grant = await deleteProductGrant(tx, tenantId, product!);
        if (!grant) throw new NotFoundError("product grant", `${tenantId}/${product}`);
        const event: AuditEventDraft = {
          tenantId,
          action: "product.revoke",
          crud: "d",
          target: grantTarget(tenantId, grant.product),
          fields: grantFields(grant),
        };
        return { result: undefined, event, changed: { tenantId, keys: [cacheKey.tenant(tenantId)] } };
      });
      return {};
    },

    async listTenantProducts(req) {
      const tenantId = requireUuid("tenant_id", req.tenantId);
      if (!(await findTenantRef(db, tenantId))) throw new NotFoundError("tenant", tenantId);
      const grants = await listProductGrantsByTenant(db, tenantId);
      return { grants: grants.map(grantToProto) };
    },

    /**
     * A hot path: one statement at most (none when cached; the grant's expiry is
     * judged against the clock on every call), and every outcome about the tenant is an answer
     * (entitled or a reason), never an error. Only malformed input is an error.
     * limits and expires_at are the grant's whenever one exists (also when it has
     * expired or the tenant is not active), so callers can see why.
     */
    async checkEntitlement(req, ctx) {
      const v = new Violations();
      const tenant = req.tenant;
      if (tenant === "") v.add("tenant", "is required");
      else if (!isUuid(tenant)) {
        const problem = slugProblem(tenant);
        if (problem) v.add("tenant", `must be a tenant id (UUID) or slug: a slug ${problem}`);
      }
      const product = checkProduct(v, "product", req.product);
      v.throwIfAny();

      const note = ctx.values.get(cacheNoteKey);
      const cached = isUuid(tenant) ? await hot.tenantById(tenant.toLowerCase(), note) : await hot.tenantBySlug(tenant, note);
      const facts = cached ? cached.entitlement(product!) : null;
      const reason = entitlementReason(facts, clock());
      metrics.entitlementChecked(reason);
      const grant = facts?.grant;
      return {
        entitled: reason === "entitled",
        reason: entitlementReasonToProto(reason),
        tenantStatus: facts ? statusToProto(facts.tenantStatus) : undefined,
        plan: facts ? planToProto(facts.plan) : undefined,
        limits: grant ? limitsToProto(grant.limits) : {},
        expiresAt: grant?.expiresAt ? timestampFromDate(grant.expiresAt) : undefined,
        tenantId: facts?.tenantId ?? "",
      };
    },
  } satisfies Partial<ServiceImpl<typeof TenantRegistryService>>;
}
