import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { to as copyTo } from "pg-copy-streams";
import { TenantRegistryService } from "../../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { createTenantRegistryClient } from "../../../src/client/index.js";
import { ACME } from "../../../src/db/seed.js";
import { connectFramesRead, grpcFramesRead, restLinesRead } from "../clients/export-readers.js";
import { databaseCpuSince, startApp, type BenchSection } from "../harness/context.js";
import { auditDatabase, withClient } from "../harness/datasets.js";
import { fmt, type Cell } from "../harness/report.js";

/** Issue 12: ExportAuditEvents against PostgreSQL's own COPY of the same rows, and what the first export costs in memory. */
export const exportSection: BenchSection = {
  id: "export",
  title: "ExportAuditEvents vs COPY of the same rows",
  async run(ctx) {
    const events = ctx.config.largeRows;
    const url = await auditDatabase(ctx, events);

    // The readers run in this process (on PostgreSQL's core when the bench pins them): their CPU
    // and PostgreSQL's per event show which of the three (server, reader, database) bounds a
    // reader's rate. PostgreSQL's is that of the database's backends alive at both readings.
    const databaseCpu = () => ctx.postgres.backendCpu(url);
    const perEvent = (used: number | undefined, count: number) => (used === undefined || count === 0 ? undefined : fmt.ms(used / count));
    const readerMicros = () => {
      const { user, system } = process.cpuUsage();
      return user + system;
    };
    const copy = await withClient(url, async (client) => {
      // Read before the clock starts (each reading is a connection of its own): the COPY's backend is up by now.
      const pgUsed = await databaseCpuSince(databaseCpu);
      const readerBefore = readerMicros();
      const started = performance.now();
      const stream = client.query(
        copyTo(`COPY (SELECT * FROM audit_log WHERE tenant_id = '${ACME.id}' ORDER BY created_at, id) TO STDOUT`),
      );
      let rows = 0;
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) rows++;
      }
      const seconds = (performance.now() - started) / 1000;
      const reader = readerMicros() - readerBefore;
      return { rows, seconds, reader, pg: await pgUsed() };
    });
    const copied = copy.rows;
    const copyPerSecond = copied / copy.seconds;

    const rows: Cell[][] = [
      [
        "COPY ... TO STDOUT (pg-copy-streams)",
        fmt.int(copied),
        fmt.int(copyPerSecond),
        "1.00×",
        undefined,
        perEvent(copy.reader, copied),
        perEvent(copy.pg, copied),
        undefined,
        undefined,
        undefined,
        undefined,
      ],
    ];
    // Each reader takes every event as its client would: gRPC and Connect decode messages; the REST
    // export is read as `curl > file` reads it, its lines counted (the checkpoint line is not an event).
    const viaClient = (make: (baseUrl: string) => Pick<Client<typeof TenantRegistryService>, "exportAuditEvents">) => async (baseUrl: string, signal: AbortSignal) => {
      const registry = make(baseUrl);
      let received = 0;
      for await (const message of registry.exportAuditEvents({ tenantId: ACME.id }, { signal })) received += message.events.length;
      return received;
    };
    const viaRpc = (make: (baseUrl: string) => Transport) => viaClient((baseUrl) => createClient(TenantRegistryService, make(baseUrl)));
    const readers: [label: string, read: (baseUrl: string, signal: AbortSignal) => Promise<number>][] = [
      ["gRPC", viaRpc((baseUrl) => createGrpcTransport({ baseUrl }))],
      // Node's default 64 KiB stream and connection windows stall a long stream on WINDOW_UPDATEs;
      // gRPC's own clients grow theirs (BDP probing) to megabytes, and so does ours (a wider stream
      // window alone gains nothing while the connection's stays at 64 KiB). It also runs the client's
      // interceptors (retries, which pass streams through untouched).
      ["gRPC, tenant-registry/client (wide windows)", viaClient((baseUrl) => createTenantRegistryClient({ baseUrl }))],
      // connect-node's default is the binary format; JSON is asked for separately.
      ["Connect binary (HTTP/1.1)", viaRpc((baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" }))],
      ["Connect JSON (HTTP/1.1)", viaRpc((baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false }))],
      // Read as COPY's reader reads COPY: messages framed and their events counted, not decoded.
      ["gRPC, 4 MiB windows, frames counted", (baseUrl, signal) => grpcFramesRead(baseUrl, ACME.id, signal)],
      ["Connect binary, frames counted", (baseUrl, signal) => connectFramesRead(baseUrl, ACME.id, true, signal)],
      ["Connect JSON, JSON.parse per message", (baseUrl, signal) => connectFramesRead(baseUrl, ACME.id, false, signal)],
      ["REST ndjson (GET …/audit/events:export)", (baseUrl, signal) => restLinesRead(`${baseUrl}/v1/tenants/${ACME.id}/audit/events:export`, signal)],
    ];
    // BENCH_QUICK: one decoding reader, the three that frame and count, and REST (a fresh server each is most of the time).
    const measured = ctx.config.quick ? readers.filter(([label]) => label === "gRPC" || / counted|JSON.parse|REST/.test(label)) : readers;
    if (measured.length < readers.length) ctx.report.note(`BENCH_QUICK: ${measured.length} of the ${readers.length} readers (the full run has them all)`);
    for (const [label, read] of measured) {
      // A fresh server per protocol: the RSS growth is that of a first export.
      const server = await startApp(ctx, { name: `app (export, ${label})`, databaseUrl: url, cache: true });
      const rssBefore = server.rssBytes();
      let rssPeak = rssBefore ?? 0;
      // The reader's heap too: a client that keeps what it has handed over grows with the export. Its
      // peak (garbage included, Buffers not): an upper bound on what the reader holds.
      const heapBefore = process.memoryUsage().heapUsed;
      let heapPeak = heapBefore;
      const sampler = setInterval(() => {
        rssPeak = Math.max(rssPeak, server.rssBytes() ?? 0);
        heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed);
      }, 100);
      const cpuBefore = server.cpuMicros();
      const pgUsed = await databaseCpuSince(databaseCpu);
      const readerBefore = readerMicros();
      const started = performance.now();
      let received = 0;
      try {
        // Bounded by the data set, and in time by the signal.
        received = await read(server.baseUrl, AbortSignal.timeout(600_000));
      } finally {
        clearInterval(sampler);
      }
      const seconds = (performance.now() - started) / 1000;
      const readerUsed = readerMicros() - readerBefore;
      const cpuAfter = server.cpuMicros();
      const pgMicros = await pgUsed();
      const perSecond = received / seconds;
      const cpuPerEvent = cpuBefore === undefined || cpuAfter === undefined ? undefined : (cpuAfter - cpuBefore) / received;
      rows.push([
        `ExportAuditEvents, ${label}`,
        fmt.int(received),
        fmt.int(perSecond),
        fmt.ratio(perSecond, copyPerSecond),
        fmt.ms(cpuPerEvent),
        perEvent(readerUsed, received),
        perEvent(pgMicros, received),
        fmt.mb(rssBefore),
        fmt.mb(rssPeak),
        rssBefore === undefined ? undefined : fmt.mb(rssPeak - rssBefore),
        fmt.mb(heapPeak - heapBefore),
      ]);
      await server.stop();
    }
    ctx.report.table(
      `one tenant's ${events.toLocaleString("en-US")} events, oldest first (targets: ≥ 0.3× COPY, RSS growth < 100 MB)`,
      [
        "reader",
        "events",
        "events/s",
        "÷ COPY",
        "server CPU µs/event",
        "reader CPU µs/event",
        "PG CPU µs/event",
        "RSS before MB",
        "RSS peak MB",
        "growth MB",
        "reader heap peak above start MB",
      ],
      rows,
    );
  },
};
