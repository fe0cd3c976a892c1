import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ProjectSchema, type Project as ProtoProject } from "../../gen/breakpilot/tenantregistry/v1/project_pb.js";
import type { Project } from "../domain/project.js";

export function projectToProto(p: Project): ProtoProject {
  return create(ProjectSchema, {
    id: p.id,
    tenantId: p.tenantId,
    slug: p.slug,
    name: p.name,
    description: p.description,
    createdAt: timestampFromDate(p.createdAt),
    updatedAt: timestampFromDate(p.updatedAt),
  });
}
