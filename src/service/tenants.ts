import type { ServiceImpl } from "@connectrpc/connect";
import type { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { findTenantById, findTenantBySlug } from "../db/queries/tenants.js";
import { NotFoundError } from "../domain/errors.js";
import { tenantToProto } from "../transport/convert.js";
import { requireSlug, requireUuid } from "./validate.js";

import type { ServiceDeps } from "./deps.js";

export function createTenantHandlers({ db }: ServiceDeps) {
  return {
    async getTenant(req) {
      const id = requireUuid("id", req.id);
      const tenant = await findTenantById(db, id);
      if (!tenant) throw new NotFoundError("tenant", id);
      return { tenant: tenantToProto(tenant) };
    },

    async getTenantBySlug(req) {
      const slug = requireSlug("slug", req.slug);
      const tenant = await findTenantBySlug(db, slug);
      if (!tenant) throw new NotFoundError("tenant", slug);
      return { tenant: tenantToProto(tenant) };
    },
  } satisfies Partial<ServiceImpl<typeof TenantRegistryService>>;
}
