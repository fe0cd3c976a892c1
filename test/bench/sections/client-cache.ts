import { TenantRegistryService } from "../../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import type { BenchSection } from "../harness/context.js";

/** Issue 11: the client-side cache with pushed invalidation, once the client package has one. */
export const clientCacheSection: BenchSection = {
  id: "client-cache",
  title: "Client-side cache: a cached check vs an uncached one",
  async run(ctx) {
    const client = (await import("../../../src/client/index.js")) as Record<string, unknown>;
    if (!Object.keys(client).some((name) => /cache/i.test(name)) && !("watchChanges" in TenantRegistryService.method)) {
      ctx.report.notMeasured("calls/s and p50 of a cached client check vs an uncached one", "feature absent: the client package has no cache and there is no WatchChanges RPC in this build (issue 11)");
      return;
    }
    ctx.report.notMeasured("calls/s and p50 of a cached client check vs an uncached one", "the client cache is on main, but this section does not drive it yet");
  },
};
