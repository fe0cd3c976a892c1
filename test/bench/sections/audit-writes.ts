import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { TenantRegistryService } from "../../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { ACME } from "../../../src/db/seed.js";
import { startApp, type BenchSection } from "../harness/context.js";
import { grpcLoad } from "../harness/load.js";
import { auditDatabase } from "../harness/datasets.js";
import { fmt, type Cell } from "../harness/report.js";
import { measureChainCost } from "./audit-chain-cost.js";

const BATCH = 1_000;
const pct = (part: number, whole: number) => (Number.isFinite(part / whole) ? `${((100 * part) / whole).toFixed(0)} %` : undefined);

/**
 * Issue 10: what the audit log costs on writes. A mutation writes its audit event in
 * its own transaction; RecordAuditEvents stores sibling services' events in batches
 * of 1,000. Both are measured here on one tenant (the case a per-tenant chain
 * serialises), then what the chain itself costs (audit-chain-cost.ts: the same
 * writes on the schema before it), then VerifyAuditChain's speed over the large data set.
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
      await grpcLoad(server.baseUrl, spec, inFlight, Math.max(200, config.warmupMs), false);
      const cpuBefore = server.cpuMicros();
      const result = await grpcLoad(server.baseUrl, spec, inFlight, config.cellMs, false);
      const cpuAfter = server.cpuMicros();
      const { p50, p99 } = result.latencies.summary();
      const cpu = cpuBefore === undefined || cpuAfter === undefined || result.ok === 0 ? undefined : (cpuAfter - cpuBefore) / result.ok;
      return { perSecond: result.ok / result.seconds, p50, p99, cpu, failed: result.failed };
    };
    const rows: Cell[][] = [];
    const sequentialMs: number[] = [];
    for (const inFlight of [1, 16]) {
      const m = await cell(mutate, inFlight);
      if (inFlight === 1) sequentialMs.push(1000 / m.perSecond);
      rows.push([`UpdateTenant (one tenant) + its event, ${inFlight} in flight`, fmt.int(m.perSecond), fmt.int(m.perSecond), fmt.ms(m.p50), fmt.ms(m.p99), fmt.int(m.cpu), m.failed]);
    }
    for (const inFlight of [1, 4]) {
      const r = await cell(record, inFlight);
      if (inFlight === 1) sequentialMs.push(1000 / r.perSecond);
      rows.push([`RecordAuditEvents × ${BATCH} (one tenant), ${inFlight} in flight`, fmt.int(r.perSecond), fmt.int(r.perSecond * BATCH), fmt.ms(r.p50), fmt.ms(r.p99), fmt.int(r.cpu), r.failed]);
    }
    report.table("gRPC, sequential or N calls in flight", ["write", "calls/s", "events/s", "p50 ms", "p99 ms", "server CPU µs/call", "errors"], rows);
    // Before vs after the chain: the same writes on the pre-chain schema, side by side.
    const added = await measureChainCost(ctx);
    // The chain is SQL only, so what it adds to a whole call is what it adds in the database.
    report.table(
      "the chain's share of a whole write through the service (sequential): database time it adds ÷ the call's time (target ≤ 30 %)",
      ["write", "call ms (with the chain)", "chain adds ms", "share", "throughput after ÷ before"],
      [
        ["UpdateTenant + its event", fmt.ms(sequentialMs[0]), fmt.ms(added.mutationMs), pct(added.mutationMs, sequentialMs[0]!), fmt.ratio(sequentialMs[0]! - added.mutationMs, sequentialMs[0]!)],
        [`RecordAuditEvents × ${BATCH}`, fmt.ms(sequentialMs[1]), fmt.ms(added.batchMs), pct(added.batchMs, sequentialMs[1]!), fmt.ratio(sequentialMs[1]! - added.batchMs, sequentialMs[1]!)],
      ],
    );

    // Verification speed: VerifyAuditChain walks the whole chain of the tenant with the large data set.
    const events = config.largeRows;
    const seeded = await auditDatabase(ctx, events);
    const verifier = await startApp(ctx, { name: "app (verify)", databaseUrl: seeded, cache: true });
    const onVerifier = createClient(TenantRegistryService, createGrpcTransport({ baseUrl: verifier.baseUrl }));
    const started = performance.now();
    const cpuBefore = verifier.cpuMicros();
    const verdict = await onVerifier.verifyAuditChain({ tenantId: ACME.id }, { timeoutMs: 600_000 });
    const seconds = (performance.now() - started) / 1000;
    const cpuAfter = verifier.cpuMicros();
    const checked = Number(verdict.eventsChecked);
    report.table(
      `VerifyAuditChain over one tenant's ${events.toLocaleString("en-US")} events`,
      ["intact", "events checked", "seconds", "events/s", "server CPU µs/event"],
      [[String(verdict.intact), fmt.int(checked), seconds.toFixed(1), fmt.int(checked / seconds),
        cpuBefore === undefined || cpuAfter === undefined || checked === 0 ? undefined : fmt.ms((cpuAfter - cpuBefore) / checked)]],
    );
    await verifier.stop();
    await server.stop();
    await ctx.postgres.dropDatabase(url);
  },
};
