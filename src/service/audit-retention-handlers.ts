import type { Duration } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { AuditRetention } from "../../gen/breakpilot/tenantregistry/v1/audit_pb.js";
import type { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { findTenantRetention, setTenantRetention } from "../db/queries/audit-chain.js";
import { InvalidArgumentError, NotFoundError } from "../domain/errors.js";
import { auditContextOf } from "../transport/context.js";
import { audited } from "./audited.js";
import type { ServiceDeps } from "./deps.js";
import { requireUuid } from "./validate.js";

const DAY_SECONDS = 86_400;
/** The shortest period the API sets: shorter would let one call erase yesterday's evidence on the next tick. */
export const MIN_RETENTION_SECONDS = DAY_SECONDS;
/** migrations/6: tenants_audit_retention_at_most_a_century. */
export const MAX_RETENTION_SECONDS = 36_500 * DAY_SECONDS;

function periodSeconds(period: Duration | undefined): number | null {
  if (period === undefined) return null;
  const seconds = Number(period.seconds);
  if (period.nanos !== 0) throw InvalidArgumentError.field("period", "must be whole seconds");
  if (!Number.isSafeInteger(seconds) || seconds < MIN_RETENTION_SECONDS || seconds > MAX_RETENTION_SECONDS) {
    throw InvalidArgumentError.field("period", `must be from ${MIN_RETENTION_SECONDS} s (1 day) to ${MAX_RETENTION_SECONDS} s (36,500 days); unset clears it`);
  }
  return seconds;
}

const duration = (seconds: number): Duration => ({ $typeName: "google.protobuf.Duration", seconds: BigInt(seconds), nanos: 0 });

/**
 * A tenant's own audit retention (tenants.audit_retention): read by whoever
 * may read its audit log, set by platform admins only (RPC_POLICIES). The
 * retention pass (service/audit-chain.ts) reads the column on its next tick.
 */
export function createAuditRetentionHandlers(deps: ServiceDeps, defaultRetentionMs: number | undefined) {
  const fallbackSeconds = defaultRetentionMs === undefined ? null : Math.trunc(defaultRetentionMs / 1000);

  function toProto(tenantId: string, seconds: number | null): AuditRetention {
    const effective = seconds ?? fallbackSeconds;
    return {
      $typeName: "breakpilot.tenantregistry.v1.AuditRetention",
      tenantId,
      period: seconds === null ? undefined : duration(seconds),
      effectivePeriod: effective === null ? undefined : duration(effective),
    };
  }

  return {
    async getAuditRetention(req) {
      const tenantId = requireUuid("tenant_id", req.tenantId);
      const found = await findTenantRetention(deps.db, tenantId);
      if (!found) throw new NotFoundError("tenant", tenantId);
      return { retention: toProto(tenantId, found.seconds) };
    },

    async setAuditRetention(req, ctx: HandlerContext) {
      const tenantId = requireUuid("tenant_id", req.tenantId);
      const seconds = periodSeconds(req.period);
      await audited(deps, auditContextOf(ctx), async (tx) => {
        const before = await setTenantRetention(tx, tenantId, seconds);
        if (!before) throw new NotFoundError("tenant", tenantId);
        // Setting what is already set changes nothing and records nothing, like revoking a revoked key.
        const event =
          before.seconds === seconds
            ? null
            : {
                tenantId,
                action: "tenant.audit_retention.set",
                crud: "u" as const,
                target: { id: tenantId, name: before.slug, type: "tenant" },
                fields: { previous_period_seconds: before.seconds, period_seconds: seconds },
              };
        // No hot answer carries the period (migrations/6 keeps updated_at still).
        return { result: undefined, event, changed: null };
      });
      return { retention: toProto(tenantId, seconds) };
    },
  } satisfies Partial<ServiceImpl<typeof TenantRegistryService>>;
}
