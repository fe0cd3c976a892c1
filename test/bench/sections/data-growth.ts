import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { TenantRegistryService } from "../../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { ACME } from "../../../src/db/seed.js";
import { startApp, type BenchContext, type BenchSection } from "../harness/context.js";
import { auditDatabase, growTenants, RARE_ACTION, RARE_NAME_WORD, SOME_ACTOR, SOME_TARGET, tenantsDatabase } from "../harness/datasets.js";
import { sequential } from "../harness/load.js";
import { fmt, type Cell } from "../harness/report.js";

type Registry = Client<typeof TenantRegistryService>;
const PAGE_SIZE = 20;
const DEEP_PAGE = 500;

/** p50 of sequential calls, bounded in count and time (a slow query gets fewer calls, never an endless loop). */
async function p50(ctx: BenchContext, fn: () => Promise<unknown>): Promise<number> {
  const calls = ctx.config.quick ? 20 : 60;
  await sequential(fn, 3, 5_000);
  return (await sequential(fn, calls, ctx.config.quick ? 3_000 : 10_000)).summary().p50;
}

function client(baseUrl: string): Registry {
  return createClient(TenantRegistryService, createConnectTransport({ baseUrl, httpVersion: "1.1" }));
}

export const tenantGrowthSection: BenchSection = {
  id: "tenant-growth",
  title: "Cost growth with data: ListTenants",
  async run(ctx) {
    const sizes = [...new Set([ctx.config.smallRows, ctx.config.largeRows])];
    const url = await tenantsDatabase(ctx);
    const rows: Cell[][] = [];
    for (const size of sizes) {
      const seeding = Date.now();
      await growTenants(url, size);
      ctx.report.note(`${size.toLocaleString("en-US")} tenants seeded in ${((Date.now() - seeding) / 1000).toFixed(1)} s`);
      // A fresh server per size: nothing cached from the smaller data set.
      const server = await startApp(ctx, { name: `app (${size} tenants)`, databaseUrl: url, cache: true });
      const registry = client(server.baseUrl);
      // Walk to the deep page once (bounded by DEEP_PAGE calls); then time that page alone.
      const depth = Math.min(DEEP_PAGE, Math.floor(size / PAGE_SIZE) - 1);
      let token = "";
      for (let page = 1; page < depth; page++) {
        token = (await registry.listTenants({ pageSize: PAGE_SIZE, pageToken: token })).nextPageToken;
        if (!token) throw new Error(`ListTenants ended after ${page} pages of ${size} tenants`);
      }
      const deepToken = token;
      const first = await p50(ctx, () => registry.listTenants({ pageSize: PAGE_SIZE }));
      const deep = await p50(ctx, () => registry.listTenants({ pageSize: PAGE_SIZE, pageToken: deepToken }));
      const matches = (await registry.listTenants({ pageSize: PAGE_SIZE, query: RARE_NAME_WORD })).tenants.length;
      const query = await p50(ctx, () => registry.listTenants({ pageSize: PAGE_SIZE, query: RARE_NAME_WORD }));
      rows.push([size.toLocaleString("en-US"), fmt.ms(first), fmt.ms(deep), fmt.ratio(deep, first), fmt.ms(query), fmt.ratio(query, first), matches, depth]);
      await server.stop();
    }
    ctx.report.table(
      `ListTenants over Connect JSON, page size ${PAGE_SIZE}, p50 of sequential calls (targets: deep ≤ 1.2× first, query ≤ 1.5× first at 1M)`,
      ["tenants", "first page ms", "deep page ms", "deep ÷ first", `query "${RARE_NAME_WORD}" ms`, "query ÷ first", "matches", "deep page #"],
      rows,
    );
  },
};

export const auditGrowthSection: BenchSection = {
  id: "audit-filters",
  title: "Cost growth with data: ListAuditEvents filters at one tenant's events",
  async run(ctx) {
    const events = ctx.config.largeRows;
    const seeding = Date.now();
    const url = await auditDatabase(ctx, events);
    ctx.report.note(`${events.toLocaleString("en-US")} events of one tenant seeded in ${((Date.now() - seeding) / 1000).toFixed(1)} s`);
    const server = await startApp(ctx, { name: "app (audit)", databaseUrl: url, cache: true });
    const registry = client(server.baseUrl);
    const filters: [label: string, filter: Record<string, string>][] = [
      ["first page, no filter", {}],
      ['action prefix "tenant.*"', { action: "tenant.*" }],
      [`rare exact action "${RARE_ACTION}" (0.01 %)`, { action: RARE_ACTION }],
      [`actor "${SOME_ACTOR}" (0.1 %)`, { actorId: SOME_ACTOR }],
      [`target "${SOME_TARGET}" (0.02 %)`, { targetId: SOME_TARGET }],
    ];
    const rows: Cell[][] = [];
    let unfiltered = NaN;
    for (const [label, filter] of filters) {
      const request = { tenantId: ACME.id, pageSize: PAGE_SIZE, ...filter };
      const found = (await registry.listAuditEvents(request)).events.length;
      const ms = await p50(ctx, () => registry.listAuditEvents(request));
      if (Number.isNaN(unfiltered)) unfiltered = ms;
      rows.push([label, fmt.ms(ms), fmt.ratio(ms, unfiltered), found]);
    }
    ctx.report.table(
      `ListAuditEvents over Connect JSON at ${events.toLocaleString("en-US")} events, page size ${PAGE_SIZE}, p50 (target: every filter ≤ 2× the unfiltered first page)`,
      ["filter", "first page ms", "÷ unfiltered", "events on page"],
      rows,
    );
    await server.stop();
  },
};
