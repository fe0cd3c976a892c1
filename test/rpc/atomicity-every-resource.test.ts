import { randomBytes } from "node:crypto";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import { IdpProtocol } from "../../gen/breakpilot/tenantregistry/v1/idp_pb.js";
import { ProductCode } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { insertApiKeyRow, insertIdpConfig, insertProject } from "../support/auth.js";
import { insertTenant, uniqueSlug } from "../support/fixtures.js";
import { useTestServer } from "../support/harness.js";
import { clientFor, type TestServer } from "../support/server.js";

// A database of its own: the test-only table and trigger below refuse audit
// events by action, and the "nothing changed" check compares whole tables.
let server: TestServer;
let sql: pg.Client;

useTestServer(async (h) => {
  ({ server, sql } = h);
  await sql.query(`
    CREATE TABLE refused_actions (action text PRIMARY KEY);
    CREATE FUNCTION refuse_listed_audit_actions() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF EXISTS (SELECT 1 FROM refused_actions WHERE action = NEW.action) THEN
        RAISE EXCEPTION 'audit store refused the event: %', NEW.action;
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER refuse_listed_audit_actions BEFORE INSERT ON audit_log
      FOR EACH ROW EXECUTE FUNCTION refuse_listed_audit_actions();`);
});

type Api = Client<typeof TenantRegistryService>;
/** What a case's fixture hands to its call and to its row query. */
type Fixture = { tenantId: string; slug: string; projectId?: string; keyId?: string };

type Case = {
  readonly action: string;
  /** Fixtures by SQL, valid for the call (the successful retry proves it). */
  readonly arrange: () => Promise<Fixture>;
  readonly call: (api: Api, f: Fixture) => Promise<unknown>;
  /** The row(s) the mutation changes, as JSON text; null/[] when absent. */
  readonly row: (f: Fixture) => Promise<unknown>;
};

const rowsOf = async (query: string, params: unknown[]) =>
  (await sql.query<{ row: string }>(`SELECT to_jsonb(x)::text AS row FROM (${query}) x ORDER BY 1`, params)).rows.map((r) => r.row);

const tenant = (overrides: Parameters<typeof insertTenant>[1] = {}) => async (): Promise<Fixture> => {
  const t = await insertTenant(sql, overrides);
  return { tenantId: t.id, slug: t.slug };
};

const uniqueDomain = () => `${randomBytes(4).toString("hex")}.example.com`;

const CASES: readonly Case[] = [
  {
    action: "project.create",
    arrange: async () => ({ ...(await tenant()()), slug: uniqueSlug("p") }),
    call: (api, f) => api.createProject({ tenantId: f.tenantId, slug: f.slug, name: "Created" }),
    row: (f) => rowsOf("SELECT * FROM tenant_projects WHERE tenant_id = $1", [f.tenantId]),
  },
  {
    action: "project.update",
    arrange: async () => {
      const f = await tenant()();
      return { ...f, projectId: await insertProject(sql, f.tenantId) };
    },
    call: (api, f) => api.updateProject({ project: { tenantId: f.tenantId, id: f.projectId!, name: "Renamed" }, updateMask: { paths: ["name"] } }),
    row: (f) => rowsOf("SELECT * FROM tenant_projects WHERE id = $1", [f.projectId]),
  },
  {
    action: "project.delete",
    arrange: async () => {
      const f = await tenant()();
      const projectId = await insertProject(sql, f.tenantId);
      // A key on the project: its cascade delete must roll back too.
      await sql.query(
        "INSERT INTO api_keys (tenant_id, project_id, name, prefix, secret_hash) VALUES ($1, $2, 'on-project', $3, $4)",
        [f.tenantId, projectId, `trk_${randomBytes(6).toString("hex")}`, randomBytes(32)],
      );
      return { ...f, projectId };
    },
    call: (api, f) => api.deleteProject({ tenantId: f.tenantId, id: f.projectId! }),
    row: async (f) => [
      ...(await rowsOf("SELECT * FROM tenant_projects WHERE id = $1", [f.projectId])),
      ...(await rowsOf("SELECT * FROM api_keys WHERE project_id = $1", [f.projectId])),
    ],
  },
  {
    action: "product.grant",
    arrange: tenant({ products: ["certifai"] }),
    call: (api, f) => api.grantProduct({ tenantId: f.tenantId, product: ProductCode.COMPLIANCE }),
    row: (f) => rowsOf("SELECT * FROM tenant_products WHERE tenant_id = $1", [f.tenantId]),
  },
  {
    action: "product.revoke",
    arrange: tenant({ products: ["certifai", "compliance"] }),
    call: (api, f) => api.revokeProduct({ tenantId: f.tenantId, product: ProductCode.CERTIFAI }),
    row: (f) => rowsOf("SELECT * FROM tenant_products WHERE tenant_id = $1", [f.tenantId]),
  },
  {
    action: "idp_config.set",
    arrange: tenant(),
    call: (api, f) =>
      api.setIdpConfig({
        tenantId: f.tenantId,
        idpConfig: { protocol: IdpProtocol.OIDC, issuerUrl: "https://idp.example.com/realms/set", clientId: "c", enabled: true },
      }),
    row: (f) => rowsOf("SELECT * FROM tenant_idp_config WHERE tenant_id = $1", [f.tenantId]),
  },
  {
    action: "idp_config.delete",
    arrange: async () => {
      const f = await tenant()();
      await insertIdpConfig(sql, f.tenantId);
      // A routed domain: its cascade delete must roll back too.
      await sql.query("INSERT INTO tenant_idp_email_domains (domain, tenant_id) VALUES ($1, $2)", [uniqueDomain(), f.tenantId]);
      return f;
    },
    call: (api, f) => api.deleteIdpConfig({ tenantId: f.tenantId }),
    row: async (f) => [
      ...(await rowsOf("SELECT * FROM tenant_idp_config WHERE tenant_id = $1", [f.tenantId])),
      ...(await rowsOf("SELECT * FROM tenant_idp_email_domains WHERE tenant_id = $1", [f.tenantId])),
    ],
  },
  {
    action: "api_key.create",
    arrange: tenant(),
    call: (api, f) => api.createApiKey({ tenantId: f.tenantId, name: "created", scopes: ["read"] }),
    row: (f) => rowsOf("SELECT * FROM api_keys WHERE tenant_id = $1", [f.tenantId]),
  },
  {
    action: "api_key.revoke",
    arrange: async () => {
      const f = await tenant()();
      return { ...f, keyId: await insertApiKeyRow(sql, f.tenantId) };
    },
    call: (api, f) => api.revokeApiKey({ id: f.keyId! }),
    row: (f) => rowsOf("SELECT * FROM api_keys WHERE id = $1", [f.keyId]),
  },
  {
    action: "api_key.rotate",
    arrange: async () => {
      const f = await tenant()();
      return { ...f, keyId: await insertApiKeyRow(sql, f.tenantId) };
    },
    call: (api, f) => api.rotateApiKey({ id: f.keyId! }),
    row: (f) => rowsOf("SELECT * FROM api_keys WHERE id = $1", [f.keyId]),
  },
  {
    action: "tenant.update",
    arrange: tenant(),
    call: (api, f) => api.updateTenant({ tenant: { id: f.tenantId, name: "Renamed" }, updateMask: { paths: ["name"] } }),
    row: (f) => rowsOf("SELECT * FROM tenants WHERE id = $1", [f.tenantId]),
  },
  {
    action: "tenant.archive",
    arrange: tenant({ status: "suspended" }),
    call: (api, f) => api.archiveTenant({ id: f.tenantId }),
    row: (f) => rowsOf("SELECT * FROM tenants WHERE id = $1", [f.tenantId]),
  },
  {
    action: "tenant.delete",
    arrange: async () => {
      // An archived tenant owning things: the cascade must roll back with the delete.
      const f = await tenant({ status: "archived", products: ["certifai"] })();
      await insertProject(sql, f.tenantId);
      await insertApiKeyRow(sql, f.tenantId);
      return f;
    },
    call: (api, f) => api.deleteTenant({ id: f.tenantId }),
    row: async (f) => [
      ...(await rowsOf("SELECT * FROM tenants WHERE id = $1", [f.tenantId])),
      ...(await rowsOf("SELECT * FROM tenant_products WHERE tenant_id = $1", [f.tenantId])),
      ...(await rowsOf("SELECT * FROM tenant_projects WHERE tenant_id = $1", [f.tenantId])),
      ...(await rowsOf("SELECT * FROM api_keys WHERE tenant_id = $1", [f.tenantId])),
    ],
  },
];

// Every table the service writes, whole (the database is this file's own and
// its tests run one after another): "nothing changed" means nothing anywhere,
// not only in the row the case names.
const TABLES = [
  "tenants",
  "tenant_projects",
  "tenant_products",
  "tenant_idp_config",
  "tenant_idp_email_domains",
  "api_keys",
  "idempotency_keys",
  "audit_log",
] as const;

async function everything(): Promise<Record<string, string[]>> {
  const state: Record<string, string[]> = {};
  for (const table of TABLES) state[table] = await rowsOf(`SELECT * FROM ${table}`, []);
  return state;
}

describe("every mutation and its audit event commit in one transaction", () => {
  const api = () => clientFor(TenantRegistryService, server.baseUrl, "grpc");

  it.each(CASES)("$action: a refused audit event leaves everything as it was; accepted, the same call succeeds", async ({ action, arrange, call, row }) => {
    const fixture = await arrange();
    const rowBefore = await row(fixture);
    const before = await everything();

    await sql.query("INSERT INTO refused_actions (action) VALUES ($1)", [action]);
    try {
      const error = await call(api(), fixture).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      expect(error?.code, error?.rawMessage).toBe(Code.Internal);
      // The refusal was this action's own audit insert, not some other failure.
      expect(server.logText()).toContain(`audit store refused the event: ${action}`);
      expect(await row(fixture)).toEqual(rowBefore);
      expect(await everything()).toEqual(before);
    } finally {
      await sql.query("DELETE FROM refused_actions WHERE action = $1", [action]);
    }

    // The fixture was valid: the very same call now succeeds, changes the row and records its event.
    await call(api(), fixture);
    expect(await row(fixture)).not.toEqual(rowBefore);
    const { rows } = await sql.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_log WHERE action = $1", [action]);
    expect(rows[0]!.n).toBe(1);
  });
});
