import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { uniqueSlug } from "../support/fixtures.js";
import { clientFor, type TestServer } from "../support/server.js";
import { useTestServer } from "../support/harness.js";

// A database of its own: the test-only trigger below must not touch other files' data.
let server: TestServer;
let sql: pg.Client;

useTestServer(async (h) => {
  ({ server, sql } = h);
  // Test-only: refuses audit events whose target is named "audit-refused-*".
  await sql.query(`
    CREATE FUNCTION refuse_marked_audit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.target_name LIKE 'audit-refused-%' THEN RAISE EXCEPTION 'audit store refused the event'; END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER refuse_marked_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_marked_audit();`);
});

describe("a change and its audit event commit together or not at all", () => {
  const client = () => clientFor(TenantRegistryService, server.baseUrl, "grpc");

  it("when the audit insert fails, the tenant is not created and the caller gets an error", async () => {
    const slug = uniqueSlug("audit-refused");
    const error = await client().createTenant({ slug, name: "Never" }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(error?.code).toBe(Code.Internal);
    expect(error?.rawMessage).toMatch(/^internal error \(request id [0-9a-f-]+\)$/); // no SQL, no trigger text
    expect((await sql.query("SELECT 1 FROM tenants WHERE slug = $1", [slug])).rowCount).toBe(0);
    expect(server.logText()).toContain("audit store refused the event"); // the cause is logged for operators
  });

  it("when the audit insert fails, a lifecycle change is rolled back too", async () => {
    const slug = uniqueSlug("audit-refused");
    await sql.query("INSERT INTO tenants (slug, name) VALUES ($1, 'Stays active')", [slug]);
    const { rows } = await sql.query<{ id: string }>("SELECT id FROM tenants WHERE slug = $1", [slug]);
    await expect(client().suspendTenant({ id: rows[0]!.id, reason: "x" })).rejects.toMatchObject({ code: Code.Internal });
    expect((await sql.query("SELECT status FROM tenants WHERE slug = $1", [slug])).rows[0].status).toBe("active");
  });

  it("when the change fails, no audit event exists", async () => {
    const slug = uniqueSlug("dupe");
    await client().createTenant({ slug, name: "First" });
    await expect(client().createTenant({ slug, name: "Second" })).rejects.toMatchObject({ code: Code.AlreadyExists });
    const { rows } = await sql.query("SELECT action FROM audit_log WHERE target_name = $1", [slug]);
    expect(rows).toEqual([{ action: "tenant.create" }]);
  });
});
