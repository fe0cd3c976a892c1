import { ProductCode } from "../../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { createTenantRegistryClient, type TenantRegistryClient } from "../../../src/client/index.js";
import { ACME } from "../../../src/db/seed.js";
import { startApp, type BenchSection } from "../harness/context.js";
import { fmt, type Cell } from "../harness/report.js";
import { Latencies } from "../harness/stats.js";

/** Sequential calls for `ms` (after `warmupMs` not counted): calls/s and p50, ms. */
async function sequential(call: () => Promise<unknown>, warmupMs: number, ms: number): Promise<{ rps: number; p50: number; calls: number }> {
  for (const end = performance.now() + warmupMs; performance.now() < end; ) await call();
  const latencies = new Latencies();
  const started = performance.now();
  const end = started + ms;
  while (performance.now() < end) {
    const t = performance.now();
    await call();
    latencies.record(performance.now() - t);
  }
  return { rps: latencies.count / ((performance.now() - started) / 1000), p50: latencies.summary().p50, calls: latencies.count };
}

/**
 * Issue 11: a sibling's repeated check with tenant-registry/client's cache on
 * (answered from memory, kept current by WatchChanges) against the same check as
 * a call, on the same server in the same run.
 */
export const clientCacheSection: BenchSection = {
  id: "client-cache",
  title: "Client cache: a repeated check from the client's memory vs a call",
  async run(ctx) {
    const url = await ctx.postgres.createDatabase("client-cache");
    // Sequential calls, timed by this process (no whole-second generator): quarter cells suffice under BENCH_QUICK.
    const cellMs = ctx.config.quick ? ctx.config.cellMs / 4 : ctx.config.cellMs;
    const warmupMs = Math.max(100, ctx.config.warmupMs);
    const app = await startApp(ctx, { name: "server", databaseUrl: url, cache: true });
    const clients: TenantRegistryClient[] = [];
    const rows: Cell[][] = [];
    try {
      for (const protocol of ["grpc", "connect"] as const) {
        const plain = createTenantRegistryClient({ baseUrl: app.baseUrl, protocol });
        const cached = createTenantRegistryClient({ baseUrl: app.baseUrl, protocol, cache: true });
        clients.push(plain, cached);
        await cached.cache!.whenLive();
        const { secret } = await plain.createApiKey({ tenantId: ACME.id, name: `client cache bench ${protocol}` });
        const cases: [string, (c: TenantRegistryClient) => Promise<unknown>][] = [
          ["CheckEntitlement", (c) => c.checkEntitlement({ tenant: ACME.slug, product: ProductCode.CERTIFAI })],
          ["GetTenantBySlug", (c) => c.getTenantBySlug({ slug: ACME.slug })],
          ["VerifyApiKey", (c) => c.verifyApiKey({ key: secret })],
        ];
        for (const [name, call] of cases) {
          const uncached = await sequential(() => call(plain), warmupMs, cellMs);
          const before = cached.cache!.stats;
          const fromCache = await sequential(() => call(cached), warmupMs, cellMs);
          const after = cached.cache!.stats;
          const hitRate = (after.hits - before.hits) / (after.hits - before.hits + after.misses - before.misses);
          rows.push([name, protocol, fmt.int(uncached.rps), fmt.ms(uncached.p50), fmt.int(fromCache.rps), (fromCache.p50 * 1000).toFixed(1), `${(hitRate * 100).toFixed(1)}%`, `${(fromCache.rps / uncached.rps).toFixed(0)}×`]);
        }
      }
    } finally {
      clients.forEach((c) => c.close());
    }
    ctx.report.table(
      "sequential calls from one client, cache off vs on (VerifyApiKey answers are kept at most 1 s)",
      ["call", "protocol", "uncached calls/s", "uncached p50 ms", "cached calls/s", "cached p50 µs", "hit rate", "speed-up"],
      rows,
    );
    await app.stop();
    await ctx.postgres.dropDatabase(url);
  },
};
