import { create, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import type { CommonQueryMethods } from "slonik";
import { ProductCode } from "../../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import {
  CheckEntitlementRequestSchema,
  GetTenantBySlugRequestSchema,
  TenantRegistryService,
  VerifyApiKeyRequestSchema,
} from "../../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { parseApiKeyToken } from "../../../src/domain/api-key.js";
import { createHotReads } from "../../../src/cache/hot-reads.js";
import { createReadCache } from "../../../src/cache/read-cache.js";
import { DEFAULT_CACHE_SETTINGS } from "../../../src/config.js";
import { createLogger } from "../../../src/logger.js";
import { ACME } from "../../../src/db/seed.js";
import { measureCell, medianCell, startApp, type BenchSection, type CellResult } from "../harness/context.js";
import { grpcLoad, http1Load, type GrpcLoadSpec, type HttpRequestSpec, type LoadResult } from "../harness/load.js";
import { hasCommand, type BenchProcess } from "../harness/processes.js";
import { fmt, type Cell } from "../harness/report.js";

type Registry = Client<typeof TenantRegistryService>;
type Statement = { name: string; text: string; values: unknown[] };

/** One hot read, in each shape a sibling may send it. */
type HotRead = {
  readonly name: string;
  readonly rest: HttpRequestSpec;
  readonly connect: HttpRequestSpec;
  readonly grpc: GrpcLoadSpec;
  /** The route of baseline (b) that runs this read's statement. */
  readonly pgRoute: string;
  /** True when an answer is the one this read should give (checked once per server before loading it). */
  check(client: Registry): Promise<boolean>;
};

const SERVICE = TenantRegistryService.typeName;
const json = { "content-type": "application/json", "connect-protocol-version": "1" };

function connectJson(method: string, body: unknown): HttpRequestSpec {
  return { method: "POST", path: `/${SERVICE}/${method}`, headers: json, body: JSON.stringify(body) };
}

function grpc<Desc extends DescMessage>(method: string, schema: Desc, init: MessageInitShape<Desc>, call: GrpcLoadSpec["call"]): GrpcLoadSpec {
  return { path: `/${SERVICE}/${method}`, request: toBinary(schema, create(schema, init)), call };
}

function hotReads(secret: string): HotRead[] {
  return [
    {
      name: "GetTenantBySlug",
      rest: { method: "GET", path: `/v1/tenants/by-slug/${ACME.slug}` },
      connect: connectJson("GetTenantBySlug", { slug: ACME.slug }),
      grpc: grpc("GetTenantBySlug", GetTenantBySlugRequestSchema, { slug: ACME.slug }, (c) => c.getTenantBySlug({ slug: ACME.slug })),
      pgRoute: "/tenant",
      check: async (c) => (await c.getTenantBySlug({ slug: ACME.slug })).tenant?.slug === ACME.slug,
    },
    {
      name: "CheckEntitlement",
      rest: { method: "GET", path: `/v1/entitlements:check?tenant=${ACME.slug}&product=certifai` },
      connect: connectJson("CheckEntitlement", { tenant: ACME.slug, product: "PRODUCT_CODE_CERTIFAI" }),
      grpc: grpc("CheckEntitlement", CheckEntitlementRequestSchema, { tenant: ACME.slug, product: ProductCode.CERTIFAI }, (c) =>
        c.checkEntitlement({ tenant: ACME.slug, product: ProductCode.CERTIFAI }),
      ),
      pgRoute: "/entitlement",
      check: async (c) => (await c.checkEntitlement({ tenant: ACME.slug, product: ProductCode.CERTIFAI })).entitled,
    },
    {
      name: "VerifyApiKey",
      rest: { method: "POST", path: "/v1/api-keys:verify", headers: json, body: JSON.stringify({ key: secret }) },
      connect: connectJson("VerifyApiKey", { key: secret }),
      grpc: grpc("VerifyApiKey", VerifyApiKeyRequestSchema, { key: secret }, (c) => c.verifyApiKey({ key: secret })),
      pgRoute: "/api-key",
      check: async (c) => (await c.verifyApiKey({ key: secret })).valid,
    },
  ];
}

/**
 * The statement a data-access function sends, taken from the function itself (run
 * against a recorder instead of a pool) so that baseline (b) runs exactly our SQL,
 * whatever it becomes.
 */
export async function captureStatement(name: string, run: (db: CommonQueryMethods) => Promise<unknown>): Promise<Statement> {
  let captured: { sql: string; values: readonly unknown[]; name?: string } | undefined;
  const recorder = new Proxy({} as CommonQueryMethods, {
    get: (_target, method) => async (query: typeof captured) => {
      captured ??= query;
      return method === "any" || method === "many" || method === "anyFirst" || method === "manyFirst" ? [] : null;
    },
  });
  await run(recorder).catch(() => {});
  if (!captured) throw new Error(`${name}: the data-access function sent no query`);
  // Slonik numbers its placeholders $slonik_N and renames them to $N just before sending.
  const text = captured.sql.replace(/\$slonik_(\d+)/g, "$$$1");
  return { name: captured.name ?? `bench_${name}`, text, values: [...captured.values] };
}

/**
 * The statements baseline (b) runs, by its route: those an uncached hot read sends, taken
 * from the hot reads themselves with the cache off (a lookup alone in its turn: the one-key
 * statements the app sends at c=1, and at any concurrency when the calls of a turn all ask
 * for one tenant or key). GetTenantBySlug and CheckEntitlement send the same one: the
 * tenant record by slug.
 */
export async function hotStatements(slug: string, prefix: string): Promise<Record<string, Statement>> {
  const hot = (db: CommonQueryMethods) => createHotReads(db, createReadCache({ ...DEFAULT_CACHE_SETTINGS, enabled: false }, undefined, createLogger("silent")));
  const bySlug = await captureStatement("tenant", (db) => hot(db).tenantBySlug(slug));
  return {
    "/tenant": bySlug,
    "/entitlement": bySlug,
    "/api-key": await captureStatement("api_key", (db) => hot(db).apiKeysByPrefix(prefix)),
  };
}

type Protocol = "rest" | "connect" | "grpc";
const PROTOCOLS: readonly { id: Protocol; label: string }[] = [
  { id: "rest", label: "REST" },
  { id: "connect", label: "Connect JSON" },
  { id: "grpc", label: "gRPC" },
];

export const hotReadsSection: BenchSection = {
  id: "hot-reads",
  title: "Hot reads under load: GetTenantBySlug, CheckEntitlement, VerifyApiKey",
  async run(ctx) {
    const { config, report } = ctx;
    const useH2load = config.h2load && hasCommand("h2load");
    const databaseUrl = await ctx.postgres.createDatabase("hot");
    const cacheOn = await startApp(ctx, { name: "app (cache on)", databaseUrl, cache: true });
    const cacheOff = await startApp(ctx, { name: "app (cache off)", databaseUrl, cache: false });
    const admin = createClient(TenantRegistryService, createGrpcTransport({ baseUrl: cacheOn.baseUrl }));
    const { secret } = await admin.createApiKey({ tenantId: ACME.id, name: "bench" });
    const prefix = parseApiKeyToken(secret)!.prefix;

    const statements = await hotStatements(ACME.slug, prefix);
    const fixed = await ctx.processes.start({ name: "(a) node:http fixed JSON", script: "dist/test/bench/servers/fixed-json.js", cpu: config.serverCpu });
    const rawPg = await ctx.processes.start({
      name: "(b) node:http + pg",
      script: "dist/test/bench/servers/pg-select.js",
      cpu: config.serverCpu,
      env: { DATABASE_URL: databaseUrl, BENCH_QUERIES: JSON.stringify(statements) },
    });
    const bare = await ctx.processes.start({ name: "(c) bare connect-node", script: "dist/test/bench/servers/bare-connect.js", cpu: config.serverCpu });

    report.note(
      `server processes on CPU ${config.serverCpu ?? "any (no taskset or one CPU)"}, generator and PostgreSQL on CPU ${config.generatorCpu ?? "any"}; ` +
        `every server warmed on each read and every protocol (${config.serverWarmMs} ms a read, all servers at once, not counted), then ${config.warmupMs} ms warm-up + ${config.cellMs} ms per cell; HTTP/1.1 load from autocannon (one request in flight per connection), ` +
        `gRPC from ${useH2load ? "h2load" : "a connect-node client (h2load not installed)"} (one h2c connection, N calls in flight)`,
    );
    report.note("auth off (AUTH_MODE=none) so a cell measures the call path, not a token issuer; LOG_LEVEL=info as in production");
    report.note("cache on/off: the server runs with CACHE=on or CACHE=off (see the README's hot-read cache section for what it covers)");

    const reads = hotReads(secret);
    const clients = new Map<BenchProcess, Registry>();
    const clientOf = (server: BenchProcess) => {
      let client = clients.get(server);
      if (!client) clients.set(server, (client = createClient(TenantRegistryService, createGrpcTransport({ baseUrl: server.baseUrl }))));
      return client;
    };
    const connectClient = (server: BenchProcess) =>
      createClient(TenantRegistryService, createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1", useBinaryFormat: false }));

    for (const read of reads) {
      if (!(await read.check(clientOf(cacheOn))) || !(await read.check(connectClient(cacheOff))) || !(await read.check(clientOf(bare)))) {
        throw new Error(`${read.name}: a server did not give the expected answer; refusing to measure errors`);
      }
    }

    const load = (server: BenchProcess, read: HotRead, protocol: Protocol, concurrency: number) => (ms: number) =>
      protocol === "grpc" ? grpcLoad(server.baseUrl, read.grpc, concurrency, ms, useH2load) : http1Load(server.baseUrl, protocol === "rest" ? read.rest : read.connect, concurrency, ms);
    const fixedLoad = (concurrency: number) => (ms: number) => http1Load(fixed.baseUrl, { method: "GET", path: "/" }, concurrency, ms);
    const rawPgLoad = (read: HotRead, concurrency: number) => (ms: number) => http1Load(rawPg.baseUrl, { method: "GET", path: read.pgRoute }, concurrency, ms);

    // V8 compiles a server's call path over its first tens of thousands of calls, and each
    // read has paths of its own (its statement, its conversions): every server answers every
    // read on every protocol before any cell counts (with BENCH_QUICK no cell has a warm-up
    // of its own), so that cells measure servers past most of their compiling. A read's loads
    // run all at once; nothing is measured here.
    if (config.serverWarmMs > 0) {
      const ms = config.serverWarmMs;
      for (const read of reads) {
        await Promise.all([
          ...[cacheOn, cacheOff].flatMap((server) => PROTOCOLS.map((protocol) => load(server, read, protocol.id, 16)(ms))),
          ...(["connect", "grpc"] as const).map((protocol) => load(bare, read, protocol, 16)(ms)),
          rawPgLoad(read, 16)(ms),
        ]);
      }
      // (a) answers the same bytes whatever the read.
      await fixedLoad(16)(ms);
    }

    // Every cell of one read and concurrency, measured round after round in this order
    // (baselines interleaved with the app), then reported as medians.
    type Measured = {
      readonly label: string;
      readonly server: BenchProcess;
      readonly load: (ms: number) => Promise<LoadResult>;
      readonly base?: "connect" | "grpc";
      /** Whether the server asks PostgreSQL: then its cell also reads the database's CPU. */
      readonly db?: true;
    };
    // Every server that queries uses this one database, and only the one under load is busy.
    const databaseCpu = () => ctx.postgres.backendCpu(databaseUrl);
    for (const concurrency of config.concurrencies) {
      for (const read of reads) {
        const cells: Measured[] = [
          { label: "(a) node:http, fixed JSON", server: fixed, load: fixedLoad(concurrency) },
          { label: "(b) node:http + pg, same SELECT", server: rawPg, load: rawPgLoad(read, concurrency), db: true },
          { label: "(c) bare connect-node, Connect JSON", server: bare, load: load(bare, read, "connect", concurrency), base: "connect" },
          { label: "(c) bare connect-node, gRPC", server: bare, load: load(bare, read, "grpc", concurrency), base: "grpc" },
        ];
        for (const [server, label] of [[cacheOn, "cache on"], [cacheOff, "cache off"]] as const) {
          for (const protocol of PROTOCOLS) {
            cells.push({
              label: `${protocol.label}, ${label}`,
              server,
              load: load(server, read, protocol.id, concurrency),
              base: protocol.id === "grpc" ? "grpc" : "connect",
              db: true,
            });
          }
        }
        const samples = cells.map((): CellResult[] => []);
        for (let round = 0; round < config.rounds; round++) {
          for (const [i, cell] of cells.entries()) samples[i]!.push(await measureCell(cell.server, cell.load, config, cell.db && databaseCpu));
        }
        const results = samples.map(medianCell);
        const [, b, cConnect, cGrpc] = results as [CellResult, CellResult, CellResult, CellResult];
        const rows = cells.map((cell, i) => row(cell.label, results[i]!, b, cell.base === undefined ? undefined : cell.base === "grpc" ? cGrpc : cConnect));
        report.table(`${read.name}, concurrency ${concurrency}`, COLUMNS, rows);
      }
    }
    if (config.rounds > 1) report.note(`each figure is the median of ${config.rounds} rounds; a round measures every row once, in the order shown`);
    report.note("÷(b), ÷(c): this row's figure over the baseline's in the same run; (c) is the same protocol (REST compares with Connect JSON); req/s higher is better, CPU and RSS lower");

    for (const server of [cacheOn, cacheOff, fixed, rawPg, bare]) await server.stop();
    await ctx.postgres.dropDatabase(databaseUrl);
  },
};

const COLUMNS = [
  "server / protocol", "req/s", "p50 ms", "p99 ms", "CPU µs/call", "PG µs/call", "RSS MB",
  "req/s ÷(b)", "req/s ÷(c)", "CPU ÷(b)", "CPU ÷(c)", "PG ÷(b)", "RSS ÷(c)", "errors",
];

function row(label: string, cell: CellResult, b: CellResult, c: CellResult | undefined): Cell[] {
  return [
    label,
    fmt.int(cell.rps),
    fmt.ms(cell.p50),
    fmt.ms(cell.p99),
    fmt.int(cell.cpuPerCall),
    fmt.int(cell.pgCpuPerCall),
    fmt.mb(cell.rssBytes),
    fmt.ratio(cell.rps, b.rps),
    c ? fmt.ratio(cell.rps, c.rps) : "",
    fmt.ratio(cell.cpuPerCall, b.cpuPerCall),
    c ? fmt.ratio(cell.cpuPerCall, c.cpuPerCall) : "",
    fmt.ratio(cell.pgCpuPerCall, b.pgCpuPerCall),
    c ? fmt.ratio(cell.rssBytes, c.rssBytes) : "",
    cell.failed,
  ];
}
