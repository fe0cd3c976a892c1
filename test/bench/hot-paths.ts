/**
 * make bench: the hot paths, measured against baselines taken in the same run on
 * the same machine, so the ratios mean something where absolute times do not.
 *
 *   data layer   vs a bare `SELECT 1` through the same pool (one round trip)
 *   RPC over gRPC vs a bare connect-node server answering a constant (transport only)
 *
 * Sequential calls on loopback against an embedded PostgreSQL; BENCH_ITERATIONS sets
 * the count (default 2000, after 10% warm-up).
 */
import http2 from "node:http2";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { sql } from "slonik";
import { ProductCode } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService, VerifyApiKeyResponseSchema } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { create } from "@bufbuild/protobuf";
import { createApp } from "../../src/app.js";
import { startEmbeddedPostgres } from "../../src/db/embedded.js";
import { connectWithRetry, loadMigrationPlan, migrateUp } from "../../src/db/migrations.js";
import { createDatabasePool } from "../../src/db/pool.js";
import { findApiKeysByPrefix } from "../../src/db/queries/api-keys.js";
import { findEntitlementFacts } from "../../src/db/queries/entitlements.js";
import { findTenantBySlug } from "../../src/db/queries/tenants.js";
import { ACME, seedDevData } from "../../src/db/seed.js";
import { createLogger } from "../../src/logger.js";
import { listen } from "../../src/transport/server.js";

const iterations = Number(process.env["BENCH_ITERATIONS"] ?? 2000);

async function measure(fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.ceil(iterations / 10); i++) await fn();
  const started = performance.now();
  for (let i = 0; i < iterations; i++) await fn();
  return (performance.now() - started) / iterations;
}

async function main() {
  const dataDir = await mkdtemp(join(tmpdir(), "tenant-registry-bench-"));
  const postgres = await startEmbeddedPostgres({ dataDir, database: "bench", persistent: false });
  const logger = createLogger("warn");
  try {
    const client = await connectWithRetry(postgres.url, 10_000, () => {});
    await migrateUp(client, () => {});
    await client.end();
    const db = await createDatabasePool(postgres.url);
    await seedDevData(db);

    const app = createApp({ db, logger, migrationPlan: await loadMigrationPlan() });
    const server = await listen(app.handler, { host: "127.0.0.1", port: 0 }, logger);
    const registry = createClient(TenantRegistryService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.port}` }));
    const { secret } = await registry.createApiKey({ tenantId: ACME.id, name: "bench" });

    // The transport baseline: connect-node on plain h2c, one constant answer, nothing of ours.
    const bare = http2.createServer(
      connectNodeAdapter({
        routes: (router) =>
          router.rpc(TenantRegistryService.method.verifyApiKey, async () => create(VerifyApiKeyResponseSchema, { valid: false })),
      }),
    );
    await new Promise<void>((resolve) => bare.listen(0, "127.0.0.1", resolve));
    const barePort = (bare.address() as { port: number }).port;
    const bareClient = createClient(TenantRegistryService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${barePort}` }));

    const prefix = secret.slice(0, "trk_".length + 12);
    const cases: [name: string, fn: () => Promise<unknown>, baseline: "db" | "rpc"][] = [
      ["SELECT 1 through the pool (baseline)", () => db.oneFirst(sql.unsafe`SELECT 1`), "db"],
      ["findTenantBySlug", () => findTenantBySlug(db, "acme"), "db"],
      ["findEntitlementFacts", () => findEntitlementFacts(db, { slug: "acme" }, "certifai"), "db"],
      ["findApiKeysByPrefix", () => findApiKeysByPrefix(db, prefix), "db"],
      ["bare connect-node gRPC call (baseline)", () => bareClient.verifyApiKey({ key: "x" }), "rpc"],
      ["gRPC VerifyApiKey, malformed (no database)", () => registry.verifyApiKey({ key: "x" }), "rpc"],
      ["gRPC GetTenantBySlug", () => registry.getTenantBySlug({ slug: "acme" }), "rpc"],
      ["gRPC CheckEntitlement", () => registry.checkEntitlement({ tenant: "acme", product: ProductCode.CERTIFAI }), "rpc"],
      ["gRPC VerifyApiKey", () => registry.verifyApiKey({ key: secret }), "rpc"],
      ["REST GET /v1/tenants/by-slug/acme", async () => (await fetch(`http://127.0.0.1:${server.port}/v1/tenants/by-slug/acme`)).json(), "rpc"],
    ];
    // Warm every path first (JIT, connections, prepared statements), then measure each in turn,
    // and take each baseline twice (first and last) so drift during the run shows in its ratio.
    for (const [, fn] of cases) for (let i = 0; i < iterations / 5; i++) await fn();
    const times = new Map<string, number>();
    for (const [name, fn] of cases) times.set(name, await measure(fn));
    const dbAgain = await measure(cases[0]![1]);
    const rpcAgain = await measure(cases[4]![1]);
    const dbBaseline = (times.get(cases[0]![0])! + dbAgain) / 2;
    const rpcBaseline = (times.get(cases[4]![0])! + rpcAgain) / 2;
    times.set(cases[0]![0], dbBaseline);
    times.set(cases[4]![0], rpcBaseline);
    const rows = cases.map(([name, , kind]) => [name, times.get(name)!, kind === "db" ? dbBaseline : rpcBaseline] as const);
    const drift = (a: number, b: number) => `${a.toFixed(3)} then ${b.toFixed(3)} ms`;

    console.log(`hot paths, ${iterations} sequential calls each (ms per call, ratio to the baseline above it)`);
    console.log(`  baselines measured first and last: pool ${drift(dbBaseline * 2 - dbAgain, dbAgain)}, gRPC ${drift(rpcBaseline * 2 - rpcAgain, rpcAgain)}`);
    for (const [name, ms, baseline] of rows) {
      console.log(`  ${name.padEnd(46)} ${ms.toFixed(3).padStart(7)} ms   x${(ms / baseline).toFixed(2)}`);
    }

    app.beginShutdown();
    await server.close(1_000);
    await app.drain();
    await new Promise((resolve) => bare.close(resolve));
    await db.end();
  } finally {
    await postgres.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
