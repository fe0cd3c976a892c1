import pg from "pg";
import { generateApiKeyToken } from "../../../src/domain/api-key.js";
import { ACME } from "../../../src/db/seed.js";
import { measureCell, startApp, type BenchSection, type CellResult } from "../harness/context.js";
import { insertAcme, withClient } from "../harness/datasets.js";
import { http1Load } from "../harness/load.js";
import { fmt, type Cell } from "../harness/report.js";

/**
 * Issue 7: server RSS under VerifyApiKey load at concurrency 64 over 100k distinct
 * keys (so a cache holds them all), against the bare connect-node server under the
 * same load. Keys are inserted in SQL (hash of a real token, as the service stores it).
 */
export const keyCacheMemorySection: BenchSection = {
  id: "key-memory",
  title: "Server memory with many API keys verified (and cached)",
  async run(ctx) {
    const { config, report } = ctx;
    const keyCount = config.quick ? Math.min(5_000, config.largeRows) : 100_000;
    const url = await ctx.postgres.createDatabase("keys");
    const tokens: string[] = [];
    await withClient(url, async (client: pg.Client) => {
      await insertAcme(client);
      for (let start = 0; start < keyCount; start += 10_000) {
        const batch = Array.from({ length: Math.min(10_000, keyCount - start) }, () => generateApiKeyToken());
        tokens.push(...batch.map((k) => k.token));
        await client.query(
          `INSERT INTO api_keys (tenant_id, name, prefix, secret_hash)
           SELECT $1, 'bench ' || prefix, prefix, hash FROM unnest($2::text[], $3::bytea[]) AS k(prefix, hash)`,
          [ACME.id, batch.map((k) => k.prefix), batch.map((k) => k.hash)],
        );
      }
    });
    let next = 0;
    const spec = {
      method: "POST" as const,
      path: "/breakpilot.tenantregistry.v1.TenantRegistryService/VerifyApiKey",
      headers: { "content-type": "application/json", "connect-protocol-version": "1" },
      nextBody: () => JSON.stringify({ key: tokens[next++ % tokens.length] }),
    };
    const concurrency = 64;
    // Touch every key once before measuring (bounded in time), then measure the cell.
    const touchAll = async (baseUrl: string) => {
      next = 0;
      const deadline = performance.now() + (config.quick ? 20_000 : 300_000);
      while (next < tokens.length && performance.now() < deadline) await http1Load(baseUrl, spec, concurrency, config.quick ? 1_000 : 2_000);
      return Math.min(next, tokens.length);
    };
    const rows: Cell[][] = [];
    const results: CellResult[] = [];
    // Touching 100k keys takes minutes here: a TTL longer than that keeps every key touched
    // cached and answered from the cache during the cell (CACHE_TTL's default is 60 s).
    const app = await startApp(ctx, { name: "app (keys)", databaseUrl: url, cache: true, env: { CACHE_TTL: "900" } });
    const bare = await ctx.processes.start({ name: "(c) bare connect-node", script: "dist/test/bench/servers/bare-connect.js", cpu: config.serverCpu });
    for (const [label, server] of [["service, Connect JSON, CACHE=on", app], ["(c) bare connect-node, Connect JSON", bare]] as const) {
      // The bare server keeps nothing per key: under BENCH_QUICK its cell is its only load.
      const touched = config.quick && server === bare ? 0 : await touchAll(server.baseUrl);
      const cell = await measureCell(server, (ms) => http1Load(server.baseUrl, spec, concurrency, ms), config);
      results.push(cell);
      rows.push([label, touched.toLocaleString("en-US"), fmt.int(cell.rps), fmt.ms(cell.p50), fmt.mb(cell.rssBytes), fmt.ratio(cell.rssBytes, results[1]?.rssBytes ?? cell.rssBytes), cell.failed]);
      await server.stop();
    }
    rows[0]![5] = fmt.ratio(results[0]!.rssBytes, results[1]!.rssBytes);
    report.table(
      `VerifyApiKey over ${keyCount.toLocaleString("en-US")} distinct keys, concurrency ${concurrency} (target: RSS ≤ 1.15× (c))`,
      ["server", "keys verified before the cell", "req/s", "p50 ms", "RSS MB", "RSS ÷(c)", "errors"],
      rows,
    );
    await ctx.postgres.dropDatabase(url);
  },
};
