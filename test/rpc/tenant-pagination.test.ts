import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { clientFor, type TestServer } from "../support/server.js";
import { useTestServer } from "../support/harness.js";

let server: TestServer;
let sql: pg.Client;

useTestServer(async (h) => {
  ({ server, sql } = h);
  await sql.query(`
    INSERT INTO tenants (slug, name)
    SELECT 'page-' || lpad(n::text, 5, '0'), 'Tenant ' || n FROM generate_series(1, 1200) AS n`);
});

describe("keyset pagination of tenants", () => {
  it("walks all 1,200 tenants exactly once, in order, while tenants are being created", async () => {
    const client = clientFor(TenantRegistryService, server.baseUrl, "grpc");
    const seeded = (await sql.query<{ slug: string }>("SELECT slug FROM tenants ORDER BY slug")).rows.map((r) => r.slug);
    expect(seeded).toHaveLength(1200);

    // Writers insert tenants all over the key space while the reader pages.
    let writing = true;
    let created = 0;
    const writer = (async () => {
      while (writing && created < 300) {
        const n = Math.floor(Math.random() * 1300);
        await client.createTenant({ slug: `page-${String(n).padStart(5, "0")}-new-${created}`, name: "Concurrent" });
        created++;
      }
    })();

    const seen: string[] = [];
    let token = "";
    let pages = 0;
    do {
      const page = await client.listTenants({ pageSize: 97, pageToken: token });
      seen.push(...page.tenants.map((t) => t.slug));
      token = page.nextPageToken;
      pages++;
    } while (token !== "" && pages < 100);
    writing = false;
    await writer;

    expect(created).toBeGreaterThan(0);
    expect(seen).toEqual([...seen].sort()); // in order
    expect(new Set(seen).size).toBe(seen.length); // nothing twice
    const seenOriginal = seen.filter((s) => /^page-\d{5}$/.test(s));
    expect(seenOriginal).toEqual(seeded); // every original exactly once
  });

  it("clamps page_size to 500 and defaults it to 50", async () => {
    const client = clientFor(TenantRegistryService, server.baseUrl, "connect-binary-h2");
    expect((await client.listTenants({})).tenants).toHaveLength(50);
    expect((await client.listTenants({ pageSize: 10_000 })).tenants).toHaveLength(500);
  });
});

/** A token the service issued, with its position replaced (its filters' fingerprint kept, so only the position is wrong). */
function rewritten(token: string, position: unknown[]): string {
  const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { a: unknown[]; f: string };
  return Buffer.from(JSON.stringify({ ...parsed, a: position })).toString("base64url");
}

describe("page tokens are input like any other", () => {
  const notIssued = { code: Code.InvalidArgument, rawMessage: "page_token: is not a token this service issued" };
  const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => ConnectError.from(e));

  it("ListTenants refuses a token whose position is not one slug (a NUL in it, a number, two values)", async () => {
    const client = clientFor(TenantRegistryService, server.baseUrl, "grpc");
    const { nextPageToken } = await client.listTenants({ pageSize: 1 });
    for (const position of [["page-\u0000"], [42], ["page-00001", "page-00002"]]) {
      expect(await failure(client.listTenants({ pageSize: 1, pageToken: rewritten(nextPageToken, position) })), JSON.stringify(position)).toMatchObject(notIssued);
    }
  });

  it("ListAuditEvents refuses a sequence past a bigint's end", async () => {
    const client = clientFor(TenantRegistryService, server.baseUrl, "grpc");
    const { tenant } = await client.createTenant({ slug: "page-audit-token", name: "Audited" });
    await client.updateTenant({ tenant: { id: tenant!.id, name: "Audited again" }, updateMask: { paths: ["name"] } });
    const { nextPageToken } = await client.listAuditEvents({ tenantId: tenant!.id, pageSize: 1 });
    expect(nextPageToken).not.toBe("");
    const past = rewritten(nextPageToken, ["9999999999999999999"]);
    expect(await failure(client.listAuditEvents({ tenantId: tenant!.id, pageSize: 1, pageToken: past }))).toMatchObject(notIssued);
  });
});
