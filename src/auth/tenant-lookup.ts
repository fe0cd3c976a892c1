import { findApiKeyTenantId } from "../db/queries/api-keys.js";
import { findTenantIdBySlug, type Db } from "../db/queries/tenants.js";

/** The lookups authorization needs to find which tenant a request is about. */
export type TenantLookup = {
  bySlug(slug: string): Promise<string | undefined>;
  byApiKeyId(id: string): Promise<string | undefined>;
};

export function createTenantLookup(db: Db): TenantLookup {
  return {
    bySlug: async (slug) => (await findTenantIdBySlug(db, slug)) ?? undefined,
    byApiKeyId: async (id) => (await findApiKeyTenantId(db, id)) ?? undefined,
  };
}
