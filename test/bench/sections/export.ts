import { createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { to as copyTo } from "pg-copy-streams";
import { TenantRegistryService } from "../../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { ACME } from "../../../src/db/seed.js";
import { startApp, type BenchSection } from "../harness/context.js";
import { auditDatabase, withClient } from "../harness/datasets.js";
import { fmt, type Cell } from "../harness/report.js";

/** Issue 12: ExportAuditEvents against PostgreSQL's own COPY of the same rows, and what the first export costs in memory. */
export const exportSection: BenchSection = {
  id: "export",
  title: "ExportAuditEvents vs COPY of the same rows",
  async run(ctx) {
    const events = ctx.config.largeRows;
    const url = await auditDatabase(ctx, events);

    const copyStarted = performance.now();
    const copied = await withClient(url, async (client) => {
      const stream = client.query(
        copyTo(`COPY (SELECT * FROM audit_log WHERE tenant_id = '${ACME.id}' ORDER BY created_at, id) TO STDOUT`),
      );
      let rows = 0;
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) rows++;
      }
      return rows;
    });
    const copyPerSecond = copied / ((performance.now() - copyStarted) / 1000);

    const rows: Cell[][] = [["COPY ... TO STDOUT (pg-copy-streams)", fmt.int(copied), fmt.int(copyPerSecond), "1.00×", undefined, undefined, undefined, undefined]];
    const transports: [label: string, make: (baseUrl: string) => Transport][] = [
      ["gRPC", (baseUrl) => createGrpcTransport({ baseUrl })],
      ["Connect JSON (HTTP/1.1)", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" })],
    ];
    for (const [label, make] of transports) {
      // A fresh server per protocol: the RSS growth is that of a first export.
      const server = await startApp(ctx, { name: `app (export, ${label})`, databaseUrl: url, cache: true });
      const registry = createClient(TenantRegistryService, make(server.baseUrl));
      const rssBefore = server.rssBytes();
      let rssPeak = rssBefore ?? 0;
      const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, server.rssBytes() ?? 0)), 100);
      const cpuBefore = server.cpuMicros();
      const started = performance.now();
      let received = 0;
      try {
        // Bounded by the data set, and in time by the signal.
        for await (const message of registry.exportAuditEvents({ tenantId: ACME.id }, { signal: AbortSignal.timeout(600_000) })) received += message.events.length;
      } finally {
        clearInterval(sampler);
      }
      const seconds = (performance.now() - started) / 1000;
      const cpuAfter = server.cpuMicros();
      const perSecond = received / seconds;
      const cpuPerEvent = cpuBefore === undefined || cpuAfter === undefined ? undefined : (cpuAfter - cpuBefore) / received;
      rows.push([
        `ExportAuditEvents, ${label}`,
        fmt.int(received),
        fmt.int(perSecond),
        fmt.ratio(perSecond, copyPerSecond),
        fmt.ms(cpuPerEvent),
        fmt.mb(rssBefore),
        fmt.mb(rssPeak),
        rssBefore === undefined ? undefined : fmt.mb(rssPeak - rssBefore),
      ]);
      await server.stop();
    }
    ctx.report.table(
      `one tenant's ${events.toLocaleString("en-US")} events, oldest first (targets: ≥ 0.3× COPY, RSS growth < 100 MB)`,
      ["reader", "events", "events/s", "÷ COPY", "server CPU µs/event", "RSS before MB", "RSS peak MB", "growth MB"],
      rows,
    );
  },
};
