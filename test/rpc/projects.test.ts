import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { auditEvents, insertTenant } from "../support/fixtures.js";
import { clientFor, type TestServer, type TransportName } from "../support/server.js";
import { useTestServer } from "../support/harness.js";
import { restFetch } from "../support/rest.js";

let server: TestServer;
let sql: pg.Client;

useTestServer((h) => ({ server, sql } = h));


const UNKNOWN_ID = "00000000-0000-4000-8000-00000000dead";
const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => ConnectError.from(e));

/** An API key row straight in the table: the fixture for "keys go with their project". */
async function insertApiKey(tenantId: string, projectId: string | null): Promise<string> {
  const { rows } = await sql.query<{ id: string }>(
    `INSERT INTO api_keys (tenant_id, project_id, name, prefix, secret_hash) VALUES ($1, $2, 'key', $3, $4) RETURNING id`,
    [tenantId, projectId, `trk_${randomBytes(6).toString("hex")}`, randomBytes(32)],
  );
  return rows[0]!.id;
}

async function projectCount(tenantId: string): Promise<number> {
  const { rows } = await sql.query<{ n: number }>("SELECT count(*)::int AS n FROM tenant_projects WHERE tenant_id = $1", [tenantId]);
  return rows[0]!.n;
}

describe.each(["grpc", "connect-json-h1"] as TransportName[])("projects over %s", (transport) => {
  const client = () => clientFor(TenantRegistryService, server.baseUrl, transport);

  it("creates, gets, updates and deletes a project, auditing each change", async () => {
    const tenant = await insertTenant(sql);
    const { project } = await client().createProject({ tenantId: tenant.id, slug: "web", name: "  Web App ", description: "The web app" });
    expect(project).toMatchObject({ tenantId: tenant.id, slug: "web", name: "Web App", description: "The web app" });
    expect(project!.createdAt?.seconds).toBeGreaterThan(0n);
    const id = project!.id;

    expect((await client().getProject({ tenantId: tenant.id, id })).project).toEqual(project);

    const { project: renamed } = await client().updateProject({
      project: { tenantId: tenant.id, id, name: "Website", description: "not masked, not changed", slug: "ignored" },
      updateMask: { paths: ["name"] },
    });
    expect(renamed).toMatchObject({ id, slug: "web", name: "Website", description: "The web app" });

    const { project: described } = await client().updateProject({
      project: { tenantId: tenant.id, id, name: "Website", description: "" },
      updateMask: { paths: ["name", "description"] },
    });
    expect(described).toMatchObject({ name: "Website", description: "" });

    await client().deleteProject({ tenantId: tenant.id, id });
    expect(await failure(client().getProject({ tenantId: tenant.id, id }))).toMatchObject({
      code: Code.NotFound,
      rawMessage: `project ${id} not found`,
    });

    const events = await auditEvents(sql, { tenantId: tenant.id });
    const target = { target_id: id, target_name: "web", target_type: "project", tenant_id: tenant.id, is_anonymous: false, actor_id: "dev", actor_type: "user" };
    expect(events).toEqual([
      expect.objectContaining({
        ...target,
        action: "project.create",
        crud: "c",
        fields: { slug: "web", name: "Web App", description: "The web app" },
      }),
      // Only what changed, from its old to its new value.
      expect.objectContaining({ ...target, action: "project.update", crud: "u", fields: { name: { from: "Web App", to: "Website" } } }),
      expect.objectContaining({ ...target, action: "project.update", crud: "u", fields: { description: { from: "The web app", to: "" } } }),
      expect.objectContaining({ ...target, action: "project.delete", crud: "d", fields: { api_keys_deleted: 0 } }),
    ]);
  });

  it("an update that changes nothing answers the project and records no event", async () => {
    const tenant = await insertTenant(sql);
    const { project } = await client().createProject({ tenantId: tenant.id, slug: "same", name: "Same" });
    const { project: unchanged } = await client().updateProject({
      project: { tenantId: tenant.id, id: project!.id, name: "Same" },
      updateMask: { paths: ["name"] },
    });
    expect(unchanged).toEqual(project);
    expect((await auditEvents(sql, { tenantId: tenant.id })).map((e) => e.action)).toEqual(["project.create"]);
  });

  it("deletes the API keys scoped to the project and records how many", async () => {
    const tenant = await insertTenant(sql);
    const { project } = await client().createProject({ tenantId: tenant.id, slug: "keys", name: "Keys" });
    const { project: other } = await client().createProject({ tenantId: tenant.id, slug: "other", name: "Other" });
    await insertApiKey(tenant.id, project!.id);
    await insertApiKey(tenant.id, project!.id);
    const otherProjectKey = await insertApiKey(tenant.id, other!.id);
    const tenantKey = await insertApiKey(tenant.id, null);

    await client().deleteProject({ tenantId: tenant.id, id: project!.id });

    const { rows } = await sql.query<{ id: string }>("SELECT id FROM api_keys WHERE tenant_id = $1 ORDER BY id", [tenant.id]);
    expect(rows.map((r) => r.id).sort()).toEqual([otherProjectKey, tenantKey].sort());
    expect((await auditEvents(sql, { targetId: project!.id })).at(-1)).toMatchObject({
      action: "project.delete",
      crud: "d",
      fields: { api_keys_deleted: 2 },
    });
  });

  it("rejects invalid input, naming every offending field", async () => {
    const tenant = await insertTenant(sql);
    const invalid = await failure(
      client().createProject({ tenantId: tenant.id, slug: "Not_A_Slug", name: " ", description: "x".repeat(2001) }),
    );
    expect(invalid?.code).toBe(Code.InvalidArgument);
    expect(invalid?.rawMessage).toContain("slug: may contain only lowercase letters, digits and '-'");
    expect(invalid?.rawMessage).toContain("name: is required");
    expect(invalid?.rawMessage).toContain("description: must be at most 2000 characters");

    expect(await failure(client().createProject({ tenantId: tenant.id, slug: "ok-slug", name: "n".repeat(201) }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "name: must be at most 200 characters",
    });
    expect(await failure(client().createProject({ tenantId: "nope", slug: "ok-slug", name: "Ok" }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "tenant_id: must be a UUID",
    });
    expect(await failure(client().getProject({ tenantId: tenant.id, id: "" }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "id: is required",
    });
    expect(await failure(client().deleteProject({ tenantId: tenant.id, id: "42" }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "id: must be a UUID",
    });
    expect(await projectCount(tenant.id)).toBe(0);
    expect(await auditEvents(sql, { tenantId: tenant.id })).toEqual([]);
  });

  it("a duplicate slug within the tenant is AlreadyExists naming the slug, and leaves no audit event", async () => {
    const tenant = await insertTenant(sql);
    const other = await insertTenant(sql);
    await client().createProject({ tenantId: tenant.id, slug: "api", name: "API" });
    expect(await failure(client().createProject({ tenantId: tenant.id, slug: "api", name: "API again" }))).toMatchObject({
      code: Code.AlreadyExists,
      rawMessage: 'project with slug "api" already exists',
    });
    // Unique within the tenant only.
    await client().createProject({ tenantId: other.id, slug: "api", name: "API" });
    expect((await auditEvents(sql, { tenantId: tenant.id })).map((e) => e.action)).toEqual(["project.create"]);
    expect(await projectCount(tenant.id)).toBe(1);
  });

  it("update_mask: required, slug immutable, only name and description", async () => {
    const tenant = await insertTenant(sql);
    const { project } = await client().createProject({ tenantId: tenant.id, slug: "masked", name: "Masked" });
    const ref = { tenantId: tenant.id, id: project!.id };
    expect(await failure(client().updateProject({ project: { ...ref, slug: "new-slug" }, updateMask: { paths: ["slug"] } }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: expect.stringMatching(/^update_mask: slug is immutable/),
    });
    expect(await failure(client().updateProject({ project: { ...ref, name: "x" } }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: expect.stringContaining("update_mask: is required"),
    });
    expect(await failure(client().updateProject({ project: { ...ref }, updateMask: { paths: ["tenant_id"] } }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: expect.stringContaining('"tenant_id" cannot be updated'),
    });
    expect(await failure(client().updateProject({ project: { ...ref, name: "" }, updateMask: { paths: ["name"] } }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "project.name: is required",
    });
    expect(await failure(client().updateProject({ updateMask: { paths: ["name"] } }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "project: is required",
    });
    expect((await client().getProject(ref)).project).toEqual(project);
    expect((await auditEvents(sql, { tenantId: tenant.id })).map((e) => e.action)).toEqual(["project.create"]);
  });

  it("another tenant's project is NotFound for every RPC and stays unchanged", async () => {
    const owner = await insertTenant(sql);
    const intruder = await insertTenant(sql);
    const { project } = await client().createProject({ tenantId: owner.id, slug: "secret", name: "Secret" });
    const id = project!.id;
    const notFound = { code: Code.NotFound, rawMessage: `project ${id} not found` };
    expect(await failure(client().getProject({ tenantId: intruder.id, id }))).toMatchObject(notFound);
    expect(
      await failure(client().updateProject({ project: { tenantId: intruder.id, id, name: "Mine" }, updateMask: { paths: ["name"] } })),
    ).toMatchObject(notFound);
    expect(await failure(client().deleteProject({ tenantId: intruder.id, id }))).toMatchObject(notFound);
    expect((await client().listProjects({ tenantId: intruder.id })).projects).toEqual([]);
    expect((await client().getProject({ tenantId: owner.id, id })).project).toEqual(project);
    expect(await auditEvents(sql, { tenantId: intruder.id })).toEqual([]);
  });

  it("an unknown tenant is NotFound naming the tenant", async () => {
    const tenantNotFound = { code: Code.NotFound, rawMessage: `tenant ${UNKNOWN_ID} not found` };
    expect(await failure(client().createProject({ tenantId: UNKNOWN_ID, slug: "web", name: "Web" }))).toMatchObject(tenantNotFound);
    expect(await failure(client().getProject({ tenantId: UNKNOWN_ID, id: UNKNOWN_ID }))).toMatchObject(tenantNotFound);
    expect(await failure(client().listProjects({ tenantId: UNKNOWN_ID }))).toMatchObject(tenantNotFound);
    expect(
      await failure(client().updateProject({ project: { tenantId: UNKNOWN_ID, id: UNKNOWN_ID, name: "x" }, updateMask: { paths: ["name"] } })),
    ).toMatchObject(tenantNotFound);
    expect(await failure(client().deleteProject({ tenantId: UNKNOWN_ID, id: UNKNOWN_ID }))).toMatchObject(tenantNotFound);
  });

  it("an archived tenant's projects are read-only: FailedPrecondition for changes, reads still work", async () => {
    const tenant = await insertTenant(sql);
    const { project } = await client().createProject({ tenantId: tenant.id, slug: "frozen", name: "Frozen" });
    await sql.query("UPDATE tenants SET status = 'archived' WHERE id = $1", [tenant.id]);
    const archived = { code: Code.FailedPrecondition, rawMessage: expect.stringContaining("archived") };
    expect(await failure(client().createProject({ tenantId: tenant.id, slug: "more", name: "More" }))).toMatchObject(archived);
    expect(
      await failure(client().updateProject({ project: { tenantId: tenant.id, id: project!.id, name: "x" }, updateMask: { paths: ["name"] } })),
    ).toMatchObject(archived);
    expect(await failure(client().deleteProject({ tenantId: tenant.id, id: project!.id }))).toMatchObject(archived);
    expect((await client().getProject({ tenantId: tenant.id, id: project!.id })).project).toEqual(project);
    expect((await client().listProjects({ tenantId: tenant.id })).projects).toEqual([project]);
    expect((await auditEvents(sql, { tenantId: tenant.id })).map((e) => e.action)).toEqual(["project.create"]);
  });

  it("pages through projects in slug order, each exactly once", async () => {
    const tenant = await insertTenant(sql);
    const slugs = ["gamma", "alpha", "eta", "delta", "beta", "zeta", "epsilon"];
    for (const slug of slugs) await client().createProject({ tenantId: tenant.id, slug, name: slug });

    const pages: string[][] = [];
    let pageToken = "";
    do {
      const res = await client().listProjects({ tenantId: tenant.id, pageSize: 3, pageToken });
      pages.push(res.projects.map((p) => p.slug));
      pageToken = res.nextPageToken;
    } while (pageToken !== "");
    expect(pages).toEqual([["alpha", "beta", "delta"], ["epsilon", "eta", "gamma"], ["zeta"]]);

    // Default page size holds them all; exactly page_size rows means no further page.
    const all = await client().listProjects({ tenantId: tenant.id });
    expect(all.projects.map((p) => p.slug)).toEqual([...slugs].sort());
    expect(all.nextPageToken).toBe("");
    expect((await client().listProjects({ tenantId: tenant.id, pageSize: 7 })).nextPageToken).toBe("");
  });

  it("rejects a page token issued for another tenant, a forged token and a negative page size", async () => {
    const tenant = await insertTenant(sql);
    const other = await insertTenant(sql);
    for (const slug of ["one", "two"]) await client().createProject({ tenantId: tenant.id, slug, name: slug });
    const { nextPageToken } = await client().listProjects({ tenantId: tenant.id, pageSize: 1 });
    expect(nextPageToken).not.toBe("");
    expect(await failure(client().listProjects({ tenantId: other.id, pageSize: 1, pageToken: nextPageToken }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "page_token: was issued for different filters",
    });
    expect(await failure(client().listProjects({ tenantId: tenant.id, pageToken: "garbage!" }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: expect.stringContaining("page_token"),
    });
    expect(await failure(client().listProjects({ tenantId: tenant.id, pageSize: -1 }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "page_size: must not be negative",
    });
  });
});

describe("projects over REST", () => {
  const url = (path: string) => `${server.baseUrl}${path}`;
  const json = (method: string, body: unknown) => ({
    method,
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });

  it("POST creates, GET reads and lists, PATCH updates (mask from the body or explicit), DELETE deletes", async () => {
    const tenant = await insertTenant(sql);
    const base = `/v1/tenants/${tenant.id}/projects`;

    const created = await restFetch(url(base), json("POST", { slug: "web", name: "Web" }));
    expect(created.status).toBe(200);
    const project = (await created.json()) as Record<string, string>;
    expect(project).toEqual({
      id: expect.any(String),
      tenantId: tenant.id,
      slug: "web",
      name: "Web",
      description: "",
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      updatedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });

    expect(await (await restFetch(url(`${base}/${project.id}`))).json()).toEqual(project);
    expect(await (await restFetch(url(`${base}?pageSize=10`))).json()).toEqual({ projects: [project], nextPageToken: "" });

    // The REST layer infers update_mask from the body's fields.
    const patched = await restFetch(url(`${base}/${project.id}`), json("PATCH", { name: "New" }));
    expect(patched.status).toBe(200);
    expect(await patched.json()).toMatchObject({ id: project.id, slug: "web", name: "New", description: "" });

    // An explicit mask wins: only the description changes.
    const explicit = await restFetch(url(`${base}/${project.id}?updateMask=description`), json("PATCH", { name: "Ignored", description: "Site" }));
    expect(explicit.status).toBe(200);
    expect(await explicit.json()).toMatchObject({ name: "New", description: "Site" });

    const deleted = await restFetch(url(`${base}/${project.id}`), { method: "DELETE" });
    expect(deleted.status).toBe(200);
    expect(await deleted.json()).toEqual({});

    expect((await auditEvents(sql, { tenantId: tenant.id })).map((e) => [e.action, e.fields])).toEqual([
      ["project.create", { slug: "web", name: "Web", description: "" }],
      ["project.update", { name: { from: "Web", to: "New" } }],
      ["project.update", { description: { from: "", to: "Site" } }],
      ["project.delete", { api_keys_deleted: 0 }],
    ]);
  });

  it("answers errors as JSON with REST status codes", async () => {
    const tenant = await insertTenant(sql);
    const base = `/v1/tenants/${tenant.id}/projects`;
    await restFetch(url(base), json("POST", { slug: "dup", name: "Dup" }));

    const duplicate = await restFetch(url(base), json("POST", { slug: "dup", name: "Dup" }));
    expect(duplicate.status).toBe(409);
    expect(await duplicate.json()).toEqual({ code: "already_exists", message: 'project with slug "dup" already exists' });

    const invalid = await restFetch(url(base), json("POST", { slug: "x", name: "X" }));
    expect(invalid.status).toBe(400);
    expect(await invalid.json()).toEqual({
      code: "invalid_argument",
      message: "slug: must be 3 to 63 characters long",
      fieldViolations: [{ field: "slug", description: "must be 3 to 63 characters long" }],
    });

    const missing = await restFetch(url(`${base}/${UNKNOWN_ID}`));
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ code: "not_found", message: `project ${UNKNOWN_ID} not found` });

    const immutable = await restFetch(url(`${base}/${UNKNOWN_ID}`), json("PATCH", { slug: "new-slug" }));
    expect(immutable.status).toBe(400);
    expect(await immutable.json()).toMatchObject({ code: "invalid_argument", message: expect.stringContaining("slug is immutable") });

    await sql.query("UPDATE tenants SET status = 'archived' WHERE id = $1", [tenant.id]);
    const archived = await restFetch(url(base), json("POST", { slug: "late", name: "Late" }));
    expect(archived.status).toBe(400);
    expect(await archived.json()).toMatchObject({ code: "failed_precondition" });
  });

  it("GET of an unknown tenant's projects is 404 naming the tenant", async () => {
    const res = await restFetch(url(`/v1/tenants/${UNKNOWN_ID}/projects`));
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ code: "not_found", message: `tenant ${UNKNOWN_ID} not found` });
  });
});
