import type { ServiceImpl } from "@connectrpc/connect";
import type { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { translateUniqueViolations } from "../db/constraints.js";
import {
  deleteProject,
  findProjectById,
  insertProject,
  listProjectsByTenant,
  lockProjectForChange,
  updateProject,
} from "../db/queries/projects.js";
import { cacheKey } from "../cache/change-notice.js";
import { lockApiKeysOfProject } from "../db/queries/api-keys.js";
import { findTenantRef, lockTenantForChange, type Db } from "../db/queries/tenants.js";
import { writerOf } from "./tenant-writer.js";
import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from "../domain/errors.js";
import { PROJECT_DESCRIPTION_MAX, PROJECT_UPDATABLE, type ProjectUpdatable } from "../domain/project.js";
import { projectToProto } from "../transport/convert-project.js";
import { auditContextOf } from "../transport/context.js";
import { audited } from "./audited.js";
import type { ServiceDeps } from "./deps.js";
import { decodeSlugPageToken, encodePageToken, pageSize, takePage } from "./pagination.js";
import { checkName, checkSlug, checkUuid, maskPaths, requireUuid, Violations } from "./validate.js";

function checkDescription(v: Violations, field: string, value: string): void {
  v.check(value.length <= PROJECT_DESCRIPTION_MAX, field, `must be at most ${PROJECT_DESCRIPTION_MAX} characters`);
}


/** NotFound for the tenant when it does not exist, else for the project. */
async function projectNotFound(db: Db, tenantId: string, id: string): Promise<NotFoundError> {
  return (await findTenantRef(db, tenantId)) ? new NotFoundError("project", id) : new NotFoundError("tenant", tenantId);
}

export function createProjectHandlers(deps: ServiceDeps) {
  const { db } = deps;
  return {
    async createProject(req, ctx) {
      const v = new Violations();
      checkUuid(v, "tenant_id", req.tenantId);
      checkSlug(v, "slug", req.slug);
      checkName(v, "name", req.name);
      checkDescription(v, "description", req.description);
      v.throwIfAny();
      const tenantId = req.tenantId.toLowerCase();

      const project = await audited(deps, auditContextOf(ctx), async (tx) => {
        await lockTenantForChange(tx, tenantId, writerOf(ctx));
        const created = await translateUniqueViolations(
          () => insertProject(tx, { tenantId, slug: req.slug, name: req.name.trim(), description: req.description }),
          { tenant_projects_tenant_id_slug_key: () => new AlreadyExistsError("project", "slug", req.slug) },
        );
        return {
          result: created,
          // A project is in no hot answer.
          changed: null,
          event: {
            tenantId,
            action: "project.create",
            crud: "c",
            target: { id: created.id, name: created.slug, type: "project" },
            fields: { slug: created.slug, name: created.name, description: created.description },
          },
        };
      });
      return { project: projectToProto(project) };
    },

    async getProject(req) {
      const v = new Violations();
      checkUuid(v, "tenant_id", req.tenantId);
      checkUuid(v, "id", req.id);
      v.throwIfAny();
      const [tenantId, id] = [req.tenantId.toLowerCase(), req.id.toLowerCase()];
      const project = await findProjectById(db, tenantId, id);
      if (!project) throw await projectNotFound(db, tenantId, id);
      return { project: projectToProto(project) };
    },

    async listProjects(req) {
      const tenantId = requireUuid("tenant_id", req.tenantId);
      const size = pageSize(req.pageSize);
      const filters = { tenantId };
      const afterSlug = decodeSlugPageToken(req.pageToken, filters);
      if (!(await findTenantRef(db, tenantId))) throw new NotFoundError("tenant", tenantId);
      const { page, more } = takePage(await listProjectsByTenant(db, tenantId, afterSlug, size + 1), size);
      return {
        projects: page.map(projectToProto),
        nextPageToken: more ? encodePageToken([page.at(-1)!.slug], filters) : "",
      };
    },

    async updateProject(req, ctx) {
      const input = req.project;
      if (!input) throw InvalidArgumentError.field("project", "is required");
      const paths = maskPaths(req.updateMask, PROJECT_UPDATABLE, {
        slug: "slug is immutable: create a new project to use another slug",
      }) as ProjectUpdatable[];
      const v = new Violations();
      checkUuid(v, "project.tenant_id", input.tenantId);
      checkUuid(v, "project.id", input.id);
      if (paths.includes("name")) checkName(v, "project.name", input.name);
      if (paths.includes("description")) checkDescription(v, "project.description", input.description);
      v.throwIfAny();
      const [tenantId, id] = [input.tenantId.toLowerCase(), input.id.toLowerCase()];
      const wanted = {
        ...(paths.includes("name") ? { name: input.name.trim() } : {}),
        ...(paths.includes("description") ? { description: input.description } : {}),
      };

      const project = await audited(deps, auditContextOf(ctx), async (tx) => {
        await lockTenantForChange(tx, tenantId, writerOf(ctx));
        const current = await lockProjectForChange(tx, tenantId, id);
        if (!current) throw new NotFoundError("project", id);
        const changes = Object.fromEntries(
          Object.entries(wanted).filter(([field, value]) => current[field as ProjectUpdatable] !== value),
        ) as typeof wanted;
        if (Object.keys(changes).length === 0) return { result: current, event: null, changed: null };
        const updated = await updateProject(tx, tenantId, id, changes);
        return {
          result: updated,
          // Keys name their project by id only: renaming it changes no hot answer.
          changed: null,
          event: {
            tenantId,
            action: "project.update",
            crud: "u",
            target: { id, name: updated.slug, type: "project" },
            // Like tenant.update: each changed field with its old and new value.
            fields: Object.fromEntries(
              Object.entries(changes).map(([field, to]) => [field, { from: current[field as ProjectUpdatable], to }]),
            ),
          },
        };
      });
      return { project: projectToProto(project) };
    },

    async deleteProject(req, ctx) {
      const v = new Violations();
      checkUuid(v, "tenant_id", req.tenantId);
      checkUuid(v, "id", req.id);
      v.throwIfAny();
      const [tenantId, id] = [req.tenantId.toLowerCase(), req.id.toLowerCase()];

      await audited(deps, auditContextOf(ctx), async (tx) => {
        await lockTenantForChange(tx, tenantId, writerOf(ctx));
        // The row lock keeps new keys off the project while its keys are counted.
        const project = await lockProjectForChange(tx, tenantId, id);
        if (!project) throw new NotFoundError("project", id);
        const keys = await lockApiKeysOfProject(tx, tenantId, id);
        await deleteProject(tx, tenantId, id);
        return {
          result: undefined,
          // The project's keys go by cascade: their verification entries and tenant lookups with them.
          changed: {
            tenantId,
            keys: keys.flatMap((k) => [
              cacheKey.apiKeyPrefix(k.prefix),
              ...(k.previous_prefix ? [cacheKey.apiKeyPrefix(k.previous_prefix)] : []),
              cacheKey.apiKeyTenant(k.id),
            ]),
          },
          event: {
            tenantId,
            action: "project.delete",
            crud: "d",
            target: { id, name: project.slug, type: "project" },
            fields: { api_keys_deleted: keys.length },
          },
        };
      });
      return {};
    },
  } satisfies Partial<ServiceImpl<typeof TenantRegistryService>>;
}
