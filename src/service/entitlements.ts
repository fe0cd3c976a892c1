import type { ServiceImpl } from "@connectrpc/connect";
import type { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import type { ServiceDeps } from "./deps.js";

export function createEntitlementHandlers(_deps: ServiceDeps) {
  return {} satisfies Partial<ServiceImpl<typeof TenantRegistryService>>;
}
