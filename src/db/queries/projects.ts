import { sql } from "slonik";
import { z } from "zod";
import type { Project } from "../../domain/project.js";
import type { Db } from "./tenants.js";

const projectRow = z.object({
  id: z.guid(),
  tenant_id: z.guid(),
  slug: z.string(),
  name: z.string(),
  description: z.string(),
  created_at: z.date(),
  updated_at: z.date(),
});

function toProject(row: z.infer<typeof projectRow>): Project {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    slug: row.slug,
    name: row.name,
    description: row.description,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

const projectColumns = sql.fragment`id, tenant_id, slug, name, description, created_at, updated_at`;

export async function insertProject(
  db: Db,
  project: { readonly tenantId: string; readonly slug: string; readonly name: string; readonly description: string },
): Promise<Project> {
  const row = await db.one(sql.type(projectRow)`
    INSERT INTO tenant_projects (tenant_id, slug, name, description)
    VALUES (${project.tenantId}, ${project.slug}, ${project.name}, ${project.description})
    RETURNING ${projectColumns}`);
  return toProject(row);
}

/** The project with this id, only if it belongs to this tenant: other tenants' ids stay invisible. */
export async function findProjectById(db: Db, tenantId: string, id: string): Promise<Project | null> {
  const row = await db.maybeOne(sql.type(projectRow)`
    SELECT ${projectColumns} FROM tenant_projects WHERE tenant_id = ${tenantId} AND id = ${id}`);
  return row && toProject(row);
}

/** As findProjectById, locking the row until the transaction ends (no concurrent change, no new keys on it). */
export async function lockProjectForChange(tx: Db, tenantId: string, id: string): Promise<Project | null> {
  const row = await tx.maybeOne(sql.type(projectRow)`
    SELECT ${projectColumns} FROM tenant_projects WHERE tenant_id = ${tenantId} AND id = ${id} FOR UPDATE`);
  return row && toProject(row);
}

/** A page of a tenant's projects in slug order, starting after `afterSlug`; `limit` rows at most. */
export async function listProjectsByTenant(
  db: Db,
  tenantId: string,
  afterSlug: string | undefined,
  limit: number,
): Promise<Project[]> {
  const rows = await db.any(sql.type(projectRow)`
    SELECT ${projectColumns} FROM tenant_projects
    WHERE tenant_id = ${tenantId}
      ${afterSlug === undefined ? sql.fragment`` : sql.fragment`AND slug > ${afterSlug}`}
    ORDER BY slug
    LIMIT ${limit}`);
  return rows.map(toProject);
}

export async function updateProject(
  tx: Db,
  tenantId: string,
  id: string,
  changes: { readonly name?: string; readonly description?: string },
): Promise<Project> {
  const sets = [
    ...(changes.name === undefined ? [] : [sql.fragment`name = ${changes.name}`]),
    ...(changes.description === undefined ? [] : [sql.fragment`description = ${changes.description}`]),
  ];
  const row = await tx.one(sql.type(projectRow)`
    UPDATE tenant_projects SET ${sql.join(sets, sql.fragment`, `)}
    WHERE tenant_id = ${tenantId} AND id = ${id}
    RETURNING ${projectColumns}`);
  return toProject(row);
}

/** How many API keys are scoped to the project (they are deleted with it). */
/** Deletes the project; its API keys go with it (api_keys_project_fkey cascades). */
export async function deleteProject(tx: Db, tenantId: string, id: string): Promise<void> {
  await tx.query(sql.unsafe`DELETE FROM tenant_projects WHERE tenant_id = ${tenantId} AND id = ${id}`);
}
