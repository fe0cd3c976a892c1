import type { HandlerContext } from "@connectrpc/connect";
import type { TenantWriter } from "../db/queries/tenants.js";
import { principalKey } from "../transport/context.js";

/**
 * Whether the caller changes a tenant's resources as one of the tenant's own
 * principals (a tenant-scoped token or API key) or as the platform. Calls
 * without a principal run with authentication bypassed (tests) and act as the platform.
 */
export function writerOf(ctx: HandlerContext): TenantWriter {
  const principal = ctx.values.get(principalKey);
  if (!principal || principal.roles.includes("platform-admin")) return "platform";
  return principal.tenantId === undefined ? "platform" : "tenant";
}
