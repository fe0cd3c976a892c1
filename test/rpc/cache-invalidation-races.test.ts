import { type Client } from "@connectrpc/connect";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { IdpProtocol } from "../../gen/breakpilot/tenantregistry/v1/idp_pb.js";
import { ProductCode } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { cacheKey, type ChangeNotice } from "../../src/cache/change-notice.js";
import { generateApiKeyToken } from "../../src/domain/api-key.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { uniqueSlug } from "../support/fixtures.js";
import { clientFor, startTestServer, type TestServer } from "../support/server.js";

/*
 * A delete whose cascade takes rows a concurrent change rewrote: the delete's
 * notice must name those rows as they were when they went, not as they were when
 * the delete began, or a replica that cached the rewritten row keeps answering
 * from it. The concurrent change is held open in a transaction of the test's own,
 * committed once the RPC is seen waiting for its lock.
 */

let db: TestDatabase;
let server: TestServer;
let api: Client<typeof TenantRegistryService>;
const notices: ChangeNotice[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startTestServer(await db.pool());
  server.app.changes.subscribe((n) => n && notices.push(n));
  api = clientFor(TenantRegistryService, server.baseUrl, "connect-json-h1");
});
afterAll(async () => {
  await server?.close();
  await db?.drop();
});

async function newTenant() {
  const { tenant } = await api.createTenant({ slug: uniqueSlug("race"), name: "Race", products: [ProductCode.CERTIFAI] });
  return tenant!.id;
}

/** Runs `statements` in a transaction left open, starts `rpc`, commits once the RPC waits on a lock; the RPC's notice. */
async function whileAChangeCommitsUnderIt(statements: readonly [string, unknown[]][], rpc: () => Promise<unknown>, action: string, tenantId: string) {
  const change: pg.Client = await db.client();
  const watch: pg.Client = await db.client();
  try {
    await change.query("BEGIN");
    for (const [text, values] of statements) await change.query(text, values);
    const since = notices.length;
    const call = rpc();
    await vi.waitFor(
      async () => {
        const { rows } = await watch.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
        );
        expect(rows[0].n).toBeGreaterThan(0);
      },
      { timeout: 5_000, interval: 10 },
    );
    await change.query("COMMIT");
    await call;
    await vi.waitFor(() => expect(notices.slice(since).some((n) => n.tenantId === tenantId && n.action === action)).toBe(true), { timeout: 2_000, interval: 5 });
    return notices.slice(since).find((n) => n.tenantId === tenantId && n.action === action)!;
  } finally {
    await change.query("ROLLBACK").catch(() => {});
    await change.end();
    await watch.end();
  }
}

describe("a delete names what its cascade took, as it was when it went", () => {
  it("DeleteProject, while a rotation of one of its keys commits: the notice names the key's new prefix", async () => {
    const tenantId = await newTenant();
    const { project } = await api.createProject({ tenantId, slug: "proj", name: "P" });
    const { apiKey } = await api.createApiKey({ tenantId, projectId: project!.id, name: "k" });
    const next = generateApiKeyToken();
    // What RotateApiKey writes (with a grace period), not yet committed.
    const rotate: [string, unknown[]] = [
      `UPDATE api_keys SET prefix = $2, secret_hash = $3, previous_prefix = prefix, previous_secret_hash = secret_hash,
              previous_expires_at = now() + interval '1 hour'
       WHERE id = $1`,
      [apiKey!.id, next.prefix, next.hash],
    ];
    const notice = await whileAChangeCommitsUnderIt([rotate], () => api.deleteProject({ tenantId, id: project!.id }), "project.delete", tenantId);
    expect(notice.keys).toEqual(expect.arrayContaining([cacheKey.apiKeyPrefix(next.prefix), cacheKey.apiKeyPrefix(apiKey!.prefix), cacheKey.apiKeyTenant(apiKey!.id)]));
  });

  it("DeleteIdpConfig, while a change of its email domains commits: the notice names the new domains", async () => {
    const tenantId = await newTenant();
    const before = `before.${tenantId.slice(0, 8)}.example`;
    const after = `after.${tenantId.slice(0, 8)}.example`;
    await api.setIdpConfig({
      tenantId,
      idpConfig: { protocol: IdpProtocol.OIDC, issuerUrl: "https://idp.example.com/realms/x", clientId: "c", emailDomains: [before], enabled: true },
    });
    // What SetIdpConfig writes (its upsert locks the config's row, then the domains are replaced), not yet committed.
    const setDomains: [string, unknown[]][] = [
      [`UPDATE tenant_idp_config SET client_id = 'c2' WHERE tenant_id = $1`, [tenantId]],
      [`DELETE FROM tenant_idp_email_domains WHERE tenant_id = $1`, [tenantId]],
      [`INSERT INTO tenant_idp_email_domains (domain, tenant_id) VALUES ($1, $2)`, [after, tenantId]],
    ];
    const notice = await whileAChangeCommitsUnderIt(setDomains, () => api.deleteIdpConfig({ tenantId }), "idp_config.delete", tenantId);
    expect(notice.keys).toContain(cacheKey.emailDomain(after));
    // What the audit log says was deleted is what was deleted.
    const { events } = await api.listAuditEvents({ tenantId, action: "idp_config.delete" });
    expect(events[0]!.fields).toMatchObject({ email_domains: [after] });
  });
});
