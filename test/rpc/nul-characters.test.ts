import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { insertTenant, uniqueSlug } from "../support/fixtures.js";
import { useTestServer } from "../support/harness.js";
import { restFetch } from "../support/rest.js";
import { clientFor, TRANSPORTS, type TestServer } from "../support/server.js";

/*
 * PostgreSQL cannot store U+0000 in text or jsonb. A request carrying one, in
 * any string at any depth, is refused as InvalidArgument naming the field, on
 * every protocol, and nothing is written.
 */

let server: TestServer;
let sql: pg.Client;
useTestServer((h) => ({ server, sql } = h));

const violations = (error: unknown) =>
  ConnectError.from(error)
    .findDetails(BadRequestSchema)
    .flatMap((d) => d.fieldViolations.map(({ field, description }) => ({ field, description })));
const NUL = "must not contain a NUL character (U+0000)";

describe.each(TRANSPORTS)("over %s", (transport) => {
  const api = () => clientFor(TenantRegistryService, server.baseUrl, transport);

  it.each([
    ["a map value", (slug: string) => ({ slug, name: "N", metadata: { k: "a\0" } }), 'metadata["k"]'],
    ["a map key", (slug: string) => ({ slug, name: "N", metadata: { "k\0": "a" } }), 'metadata["k\\u0000"]'],
    ["a string field", (slug: string) => ({ slug, name: "a\0b" }), "name"],
  ])("CreateTenant with a NUL in %s: InvalidArgument naming it, and no tenant", async (_what, request, field) => {
    const slug = uniqueSlug("nul");
    const error = await api().createTenant(request(slug)).then(() => undefined, (e: unknown) => e);
    expect(ConnectError.from(error).code).toBe(Code.InvalidArgument);
    expect(violations(error)).toEqual([{ field, description: NUL }]);
    expect((await sql.query("SELECT 1 FROM tenants WHERE slug = $1", [slug])).rowCount).toBe(0);
  });

  it("RecordAuditEvents with a NUL deep in an event's fields: InvalidArgument naming the path, and nothing recorded", async () => {
    const tenant = await insertTenant(sql);
    const event = (title: string) => ({ tenantId: tenant.id, action: "doc.create", crud: "c", isAnonymous: true, fields: { doc: { tags: ["ok", title] } } });
    const error = await api()
      .recordAuditEvents({ events: [event("fine"), event("bad\0")] })
      .then(() => undefined, (e: unknown) => e);
    expect(violations(error)).toEqual([{ field: 'events[1].fields["doc"]["tags"][1]', description: NUL }]);
    expect((await sql.query("SELECT 1 FROM audit_log WHERE tenant_id = $1 AND action = 'doc.create'", [tenant.id])).rowCount).toBe(0);
  });
});

describe("over REST", () => {
  it("a NUL in a body field or a query parameter is a 400 naming it", async () => {
    const slug = uniqueSlug("nul");
    const created = await restFetch(`${server.baseUrl}/v1/tenants`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ slug, name: "N", metadata: { k: "a\0" } }),
    });
    expect(created.status).toBe(400);
    expect(await created.json()).toMatchObject({ code: "invalid_argument", fieldViolations: [{ field: 'metadata["k"]', description: NUL }] });

    const listed = await restFetch(`${server.baseUrl}/v1/tenants?query=%00`);
    expect(listed.status).toBe(400);
    expect(await listed.json()).toMatchObject({ code: "invalid_argument", fieldViolations: [{ field: "query", description: NUL }] });
  });
});
