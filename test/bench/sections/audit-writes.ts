import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { TenantRegistryService } from "../../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { ACME } from "../../../src/db/seed.js";
import { startApp, type BenchSection } from "../harness/context.js";
import { grpcLoad } from "../harness/load.js";
import { fmt, type Cell } from "../harness/report.js";

const BATCH = 1_000;

/**
 * Issue 10: what the audit log costs on writes. A mutation writes its audit event in
 * its own transaction; RecordAuditEvents stores sibling services' events in batches
 * of 1,000. Both are measured here on one tenant (the case a per-tenant chain
 * serialises). "Before vs after the chain" needs the chain and a way to run without
 * it in the same run; until both exist, these are the figures without a chain.
 */
export const auditWritesSection: BenchSection = {
  id: "audit-writes",
  title: "Audit log write cost: a mutation with its event, RecordAuditEvents batches",
  async run(ctx) {
    const { config, report } = ctx;
    const url = await ctx.postgres.createDatabase("writes");
    const server = await startApp(ctx, { name: "app (writes)", databaseUrl: url, cache: true });
    const registry = createClient(TenantRegistryService, createGrpcTransport({ baseUrl: server.baseUrl }));
    let n = 0;
    const mutate = () => registry.updateTenant({ tenant: { id: ACME.id, name: `Acme ${++n}` }, updateMask: { paths: ["name"] } });
    let batch = 0;
    const record = () => {
      const run = ++batch;
      return registry.recordAuditEvents({
        events: Array.from({ length: BATCH }, (_, i) => ({
          tenantId: ACME.id,
          action: "report.export",
          crud: "r",
          actor: { id: `user-${i % 50}`, name: "Bench User", type: "user" },
          target: { id: `report-${i}`, name: "Report", type: "report" },
          description: "recorded by make bench",
          externalId: `bench-${run}-${i}`,
          component: "bench",
        })),
      });
    };
    // A connect-node gRPC client keeping N calls in flight; the request bytes are unused on this path.
    const cell = async (call: () => Promise<unknown>, inFlight: number) => {
      const spec = { path: "", request: new Uint8Array(), call: () => call() };
      await grpcLoad(server.baseUrl, spec, inFlight, config.warmupMs, false);
      const cpuBefore = server.cpuMicros();
      const result = await grpcLoad(server.baseUrl, spec, inFlight, config.cellMs, false);
      const cpuAfter = server.cpuMicros();
      const { p50, p99 } = result.latencies.summary();
      const cpu = cpuBefore === undefined || cpuAfter === undefined || result.ok === 0 ? undefined : (cpuAfter - cpuBefore) / result.ok;
      return { perSecond: result.ok / result.seconds, p50, p99, cpu, failed: result.failed };
    };
    const rows: Cell[][] = [];
    for (const inFlight of [1, 16]) {
      const m = await cell(mutate, inFlight);
      rows.push([`UpdateTenant (one tenant) + its event, ${inFlight} in flight`, fmt.int(m.perSecond), fmt.int(m.perSecond), fmt.ms(m.p50), fmt.ms(m.p99), fmt.int(m.cpu), m.failed]);
    }
    for (const inFlight of [1, 4]) {
      const r = await cell(record, inFlight);
      rows.push([`RecordAuditEvents × ${BATCH} (one tenant), ${inFlight} in flight`, fmt.int(r.perSecond), fmt.int(r.perSecond * BATCH), fmt.ms(r.p50), fmt.ms(r.p99), fmt.int(r.cpu), r.failed]);
    }
    report.table("gRPC, sequential or N calls in flight", ["write", "calls/s", "events/s", "p50 ms", "p99 ms", "server CPU µs/call", "errors"], rows);
    if ("verifyAuditChain" in TenantRegistryService.method) {
      report.notMeasured("write cost with the chain vs without it, and verification speed on 1M events", "the chain is on main, but this section does not drive it yet");
    } else {
      report.notMeasured("write cost with the audit chain vs without it; verification events/s on 1M events", "feature absent: no audit chain on main in this build (issue 10)");
    }
    await server.stop();
    await ctx.postgres.dropDatabase(url);
  },
};
