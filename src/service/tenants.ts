import { randomUUID } from "node:crypto";
import type { JsonValue } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  CreateTenantRequestSchema,
  type TenantRegistryService,
} from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import {
  ProductCode as ProtoProductCode,
  TenantPlan as ProtoTenantPlan,
  TenantStatus as ProtoTenantStatus,
} from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { translateUniqueViolations } from "../db/constraints.js";
import { claimIdempotencyKey } from "../db/queries/idempotency.js";
import {
  deleteTenant,
  findTenantById,
  insertTenant,
  listTenants,
  lockTenant,
  setTenantStatus,
  updateTenant,
  type Db,
  type TenantChanges,
} from "../db/queries/tenants.js";
import type { AuditEventDraft } from "../domain/audit.js";
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../domain/errors.js";
import {
  PRODUCT_CODES,
  TENANT_PLANS,
  TENANT_STATUSES,
  TRANSITIONS,
  type LifecycleAction,
  type Tenant,
} from "../domain/tenant.js";
import { cacheKey } from "../cache/change-notice.js";
import { auditContextOf, cacheNoteKey } from "../transport/context.js";
import { fromProtoEnum, tenantToProto } from "../transport/convert.js";
import { audited } from "./audited.js";
import type { ServiceDeps } from "./deps.js";
import { canonical, requestFingerprint } from "./idempotency.js";
import { decodeSlugPageToken, encodePageToken, pageSize, takePage } from "./pagination.js";
import {
  checkExternalId,
  checkMetadata,
  checkName,
  checkSlug,
  maskPaths,
  requireSlug,
  requireUuid,
  Violations,
} from "./validate.js";

const UPDATABLE = ["name", "plan", "metadata", "external_id"] as const;
const IMMUTABLE = {
  slug: "slug is immutable",
  id: "id identifies the tenant and cannot be updated",
  status: "status changes through SuspendTenant, ReactivateTenant and ArchiveTenant",
  products: "products change through GrantProduct and RevokeProduct",
};

// Tenant uniqueness, in the caller's words.
const uniqueTenant = (slug: string, externalId: string | null) => ({
  tenants_slug_key: () => new AlreadyExistsError("tenant", "slug", slug),
  tenants_external_id_key: () => new AlreadyExistsError("tenant", "external_id", externalId ?? ""),
});

const plan = (value: number) => fromProtoEnum(ProtoTenantPlan, value, TENANT_PLANS);
const product = (value: number) => fromProtoEnum(ProtoProductCode, value, PRODUCT_CODES);

function tenantTarget(t: Pick<Tenant, "id" | "slug">) {
  return { id: t.id, name: t.slug, type: "tenant" } as const;
}

async function mustFind(db: Db, id: string): Promise<Tenant> {
  const tenant = await findTenantById(db, id);
  if (!tenant) throw new NotFoundError("tenant", id);
  return tenant;
}

export function createTenantHandlers(deps: ServiceDeps) {
  const { db, hot, clock } = deps;
  async function transition(ctx: HandlerContext, id: string, action: LifecycleAction, reason = "") {
    const { from, to } = TRANSITIONS[action];
    const tenant = await audited(deps, auditContextOf(ctx), async (tx) => {
      const current = await lockTenant(tx, id);
      if (!current) throw new NotFoundError("tenant", id);
      if (!from.includes(current.status)) {
        throw new FailedPreconditionError(
          `tenant ${current.slug} cannot go from ${current.status} to ${to} (${action} applies to ${from.join(" or ")} tenants)`,
        );
      }
      await setTenantStatus(tx, id, to, reason);
      const event: AuditEventDraft = {
        tenantId: id,
        action: `tenant.${action}`,
        crud: "u",
        target: tenantTarget(current),
        fields: { status: { from: current.status, to }, ...(reason ? { reason } : {}) },
      };
      return { result: await mustFind(tx, id), event, changed: { tenantId: id, keys: [cacheKey.tenant(id)] } };
    });
    return { tenant: tenantToProto(tenant) };
  }

  return {
    async createTenant(req, ctx) {
      const v = new Violations();
      checkSlug(v, "slug", req.slug);
      checkName(v, "name", req.name);
      const tenantPlan = req.plan === ProtoTenantPlan.UNSPECIFIED ? "free" : plan(req.plan);
      if (!tenantPlan) v.add("plan", "is not a known plan");
      const products = req.products.map(product);
      if (products.some((p) => p === undefined)) v.add("products", "contains an unknown product");
      checkMetadata(v, "metadata", req.metadata);
      checkExternalId(v, "external_id", req.externalId);
      if (req.idempotencyKey.length > 200) v.add("idempotency_key", "must be at most 200 characters");
      v.throwIfAny();

      const id = randomUUID();
      const externalId = req.externalId === "" ? null : req.externalId;
      const tenant = await audited(deps, auditContextOf(ctx), async (tx) => {
        if (req.idempotencyKey !== "") {
          const claim = await claimIdempotencyKey(tx, {
            scope: "tenant.create",
            key: req.idempotencyKey,
            requestHash: requestFingerprint(CreateTenantRequestSchema, req),
            resourceId: id,
          });
          if (!claim.claimed) {
            if (!claim.sameRequest) {
              throw new FailedPreconditionError("idempotency_key was already used with a different request");
            }
            // A retry: the first request's tenant, and no second event.
            return { result: await mustFind(tx, claim.resourceId), event: null, changed: null };
          }
        }
        const created = {
          id,
          slug: req.slug,
          name: req.name.trim(),
          plan: tenantPlan!,
          status: req.provisioning ? ("provisioning" as const) : ("active" as const),
          products: PRODUCT_CODES.filter((p) => products.includes(p)),
          metadata: req.metadata,
          externalId,
        };
        await translateUniqueViolations(() => insertTenant(tx, created), uniqueTenant(req.slug, externalId));
        const event: AuditEventDraft = {
          tenantId: id,
          action: "tenant.create",
          crud: "c",
          target: tenantTarget(created),
          fields: {
            slug: created.slug,
            name: created.name,
            plan: created.plan,
            status: created.status,
            products: created.products,
            metadata: created.metadata,
            external_id: externalId,
          },
        };
        // Both names may be cached as missing (a lookup before the tenant existed).
        return { result: await mustFind(tx, id), event, changed: { tenantId: id, keys: [cacheKey.tenant(id), cacheKey.slug(created.slug)] } };
      });
      return { tenant: tenantToProto(tenant) };
    },

    // The hot reads: from the cache when it can, with products judged at the clock's now.
    async getTenant(req, ctx) {
      const id = requireUuid("id", req.id);
      const tenant = await hot.tenantById(id, ctx.values.get(cacheNoteKey));
      if (!tenant) throw new NotFoundError("tenant", id);
      return { tenant: tenantToProto(tenant.at(clock())) };
    },

    async getTenantBySlug(req, ctx) {
      const slug = requireSlug("slug", req.slug);
      const tenant = await hot.tenantBySlug(slug, ctx.values.get(cacheNoteKey));
      if (!tenant) throw new NotFoundError("tenant", slug);
      return { tenant: tenantToProto(tenant.at(clock())) };
    },

    async listTenants(req) {
      const v = new Violations();
      const filters = {
        status: req.status === ProtoTenantStatus.UNSPECIFIED ? undefined : fromProtoEnum(ProtoTenantStatus, req.status, TENANT_STATUSES),
        plan: req.plan === ProtoTenantPlan.UNSPECIFIED ? undefined : plan(req.plan),
        product: req.product === ProtoProductCode.UNSPECIFIED ? undefined : product(req.product),
        query: req.query.trim() === "" ? undefined : req.query.trim(),
      };
      v.check(req.status === ProtoTenantStatus.UNSPECIFIED || filters.status !== undefined, "status", "is not a known status");
      v.check(req.plan === ProtoTenantPlan.UNSPECIFIED || filters.plan !== undefined, "plan", "is not a known plan");
      v.check(req.product === ProtoProductCode.UNSPECIFIED || filters.product !== undefined, "product", "is not a known product");
      v.check(req.query.length <= 200, "query", "must be at most 200 characters");
      v.throwIfAny();
      const size = pageSize(req.pageSize);
      const after = decodeSlugPageToken(req.pageToken, filters);
      const { page, more } = takePage(await listTenants(db, filters, after, size + 1), size);
      return {
        tenants: page.map(tenantToProto),
        nextPageToken: more ? encodePageToken([page.at(-1)!.slug], filters) : "",
      };
    },

    async updateTenant(req, ctx) {
      const id = requireUuid("tenant.id", req.tenant?.id ?? "");
      const paths = maskPaths(req.updateMask, UPDATABLE, IMMUTABLE);
      const t = req.tenant!;
      const v = new Violations();
      const changes: { -readonly [K in keyof TenantChanges]: TenantChanges[K] } = {};
      if (paths.includes("name")) {
        checkName(v, "tenant.name", t.name);
        changes.name = t.name.trim();
      }
      if (paths.includes("plan")) {
        changes.plan = plan(t.plan);
        if (!changes.plan) v.add("tenant.plan", "must be a known plan");
      }
      if (paths.includes("metadata")) {
        checkMetadata(v, "tenant.metadata", t.metadata);
        changes.metadata = t.metadata;
      }
      if (paths.includes("external_id")) {
        checkExternalId(v, "tenant.external_id", t.externalId);
        changes.externalId = t.externalId === "" ? null : t.externalId;
      }
      v.throwIfAny();

      const tenant = await audited(deps, auditContextOf(ctx), async (tx) => {
        const before = await lockTenant(tx, id);
        if (!before) throw new NotFoundError("tenant", id);
        if (before.status === "archived") throw new FailedPreconditionError(`tenant ${before.slug} is archived and read-only`);
        // Write only what differs: an update that changes nothing leaves updated_at alone and audits nothing.
        const effective = Object.fromEntries(
          Object.entries(changes).filter(([field, value]) => !sameValue(before[field as keyof TenantChanges], value)),
        ) as TenantChanges;
        if (Object.keys(effective).length === 0) return { result: before, event: null, changed: null };
        await translateUniqueViolations(() => updateTenant(tx, id, effective), uniqueTenant(before.slug, changes.externalId ?? null));
        const after = await mustFind(tx, id);
        const event: AuditEventDraft = {
          tenantId: id,
          action: "tenant.update",
          crud: "u",
          target: tenantTarget(before),
          fields: diff(before, after, paths),
        };
        return { result: after, event, changed: { tenantId: id, keys: [cacheKey.tenant(id)] } };
      });
      return { tenant: tenantToProto(tenant) };
    },

    async suspendTenant(req, ctx) {
      const id = requireUuid("id", req.id);
      const reason = req.reason.trim();
      if (reason === "") throw InvalidArgumentError.field("reason", "is required: say why the tenant is suspended");
      if (reason.length > 1000) throw InvalidArgumentError.field("reason", "must be at most 1000 characters");
      return transition(ctx, id, "suspend", reason);
    },

    async reactivateTenant(req, ctx) {
      return transition(ctx, requireUuid("id", req.id), "reactivate");
    },

    async archiveTenant(req, ctx) {
      return transition(ctx, requireUuid("id", req.id), "archive");
    },

    async deleteTenant(req, ctx) {
      const id = requireUuid("id", req.id);
      await audited(deps, auditContextOf(ctx), async (tx) => {
        const tenant = await lockTenant(tx, id);
        if (!tenant) throw new NotFoundError("tenant", id);
        if (tenant.status !== "archived") {
          throw new FailedPreconditionError(`tenant ${tenant.slug} is ${tenant.status}: only archived tenants can be deleted`);
        }
        await deleteTenant(tx, id);
        // The tenant row is gone, so the event cannot reference it; the target keeps its id and slug.
        const event: AuditEventDraft = {
          tenantId: null,
          action: "tenant.delete",
          crud: "d",
          target: tenantTarget(tenant),
          fields: { slug: tenant.slug, name: tenant.name, external_id: tenant.externalId },
        };
        // Everything cached about the tenant goes: its keys, IdP domains and lookups went by cascade.
        return { result: undefined, event, changed: { tenantId: id, keys: [cacheKey.tenant(id), cacheKey.slug(tenant.slug)], tenantWide: true } };
      });
      return {};
    },
  } satisfies Partial<ServiceImpl<typeof TenantRegistryService>>;
}

/** Equal as values: metadata maps compare by content, whatever their key order. */
function sameValue(a: unknown, b: unknown): boolean {
  return canonical((a ?? null) as JsonValue) === canonical((b ?? null) as JsonValue);
}

const FIELD_OF = { name: "name", plan: "plan", metadata: "metadata", external_id: "externalId" } as const;

/** The masked fields that actually changed, as {field: {from, to}}. */
function diff(before: Tenant, after: Tenant, paths: readonly string[]): Record<string, { from: unknown; to: unknown }> {
  const changed: Record<string, { from: unknown; to: unknown }> = {};
  for (const path of paths) {
    const key = FIELD_OF[path as keyof typeof FIELD_OF];
    if (!sameValue(before[key], after[key])) changed[path] = { from: before[key], to: after[key] };
  }
  return changed;
}
