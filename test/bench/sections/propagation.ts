import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { TenantRegistryService } from "../../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { ACME } from "../../../src/db/seed.js";
import { startApp, type BenchSection } from "../harness/context.js";
import { backgroundHttp1Load } from "../harness/load.js";
import { fmt } from "../harness/report.js";
import { Latencies } from "../harness/stats.js";

/** The longest we wait for one revocation to show on the other replica before calling it missed. */
const MISS_AFTER_MS = 5_000;

/**
 * Issue 7: a revocation committed through replica A is seen by replica B within
 * 1 s (p100), measured while both replicas serve hot reads. Each key is verified on
 * B first (so a cache has it), revoked on A, then B is asked until it says revoked.
 */
export const propagationSection: BenchSection = {
  id: "propagation",
  title: "Revocation propagation between two replicas on one database",
  async run(ctx) {
    const count = ctx.config.revocations;
    const url = await ctx.postgres.createDatabase("replicas");
    const a = await startApp(ctx, { name: "replica A", databaseUrl: url, cache: true });
    const b = await startApp(ctx, { name: "replica B", databaseUrl: url, cache: true });
    const onA = createClient(TenantRegistryService, createGrpcTransport({ baseUrl: a.baseUrl }));
    const onB = createClient(TenantRegistryService, createGrpcTransport({ baseUrl: b.baseUrl }));
    const keys: { id: string; secret: string }[] = [];
    for (let i = 0; i < count; i++) {
      const { apiKey, secret } = await onA.createApiKey({ tenantId: ACME.id, name: `propagation ${i}` });
      keys.push({ id: apiKey!.id, secret });
    }

    const read = { method: "GET" as const, path: `/v1/tenants/by-slug/${ACME.slug}` };
    const maxMs = count * MISS_AFTER_MS + 30_000;
    const loads = [backgroundHttp1Load(a.baseUrl, read, 8, maxMs), backgroundHttp1Load(b.baseUrl, read, 8, maxMs)];
    const lags = new Latencies();
    let missed = 0;
    let polls = 0;
    try {
      for (const key of keys) {
        if (!(await onB.verifyApiKey({ key: key.secret })).valid) throw new Error("a new key did not verify on replica B");
        await onA.revokeApiKey({ id: key.id });
        // From the moment A answered: the revocation is committed.
        const committed = performance.now();
        for (;;) {
          polls++;
          if (!(await onB.verifyApiKey({ key: key.secret })).valid) {
            lags.record(performance.now() - committed);
            break;
          }
          if (performance.now() - committed > MISS_AFTER_MS) {
            missed++;
            break;
          }
        }
      }
    } finally {
      const results = await Promise.all(loads.map((load) => load.stop()));
      const ok = results.reduce((sum, r) => sum + r.ok, 0);
      const seconds = Math.max(...results.map((r) => r.seconds));
      ctx.report.note(`background load: REST GetTenantBySlug, 8 connections on each replica, ${fmt.int(ok / seconds)} req/s in total, ${results.reduce((s, r) => s + r.failed, 0)} errors`);
    }
    const { p50, p99, p100 } = lags.summary();
    ctx.report.table(
      `${count} revocations through A, read back on B (target: p100 ≤ 1,000 ms)`,
      ["revocations", "seen", `missed (> ${MISS_AFTER_MS} ms)`, "p50 ms", "p99 ms", "p100 ms", "reads of B per revocation"],
      [[count, lags.count, missed, fmt.ms(p50), fmt.ms(p99), missed ? `> ${MISS_AFTER_MS}` : fmt.ms(p100), (polls / count).toFixed(1)]],
    );
    await a.stop();
    await b.stop();
    await ctx.postgres.dropDatabase(url);
  },
};
