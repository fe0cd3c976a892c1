import type { HotReads } from "../cache/hot-reads.js";

/** The lookups authorization needs to find which tenant a request is about (cached like the hot reads). */
export type TenantLookup = {
  bySlug(slug: string): Promise<string | undefined>;
  byApiKeyId(id: string): Promise<string | undefined>;
};

export function createTenantLookup(hot: HotReads): TenantLookup {
  return {
    bySlug: async (slug) => (await hot.tenantIdBySlug(slug)) ?? undefined,
    byApiKeyId: async (id) => (await hot.tenantIdOfApiKey(id)) ?? undefined,
  };
}
