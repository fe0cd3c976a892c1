import { create, type JsonObject } from "@bufbuild/protobuf";
import { TimestampSchema, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  AuditActorSchema,
  AuditEventSchema,
  AuditTargetSchema,
  type AuditEvent as ProtoAuditEvent,
  type AuditEventInput as ProtoAuditEventInput,
} from "../../gen/breakpilot/tenantregistry/v1/audit_pb.js";
import {
  instantFromEpoch,
  instantToEpoch,
  type AuditEvent,
  type AuditEventInput,
  type AuditFilterInput,
  type Instant,
} from "../domain/audit-query.js";

/** A protobuf Timestamp as an Instant (microseconds); undefined when unset, null when out of range. */
export function instantFromTimestamp(ts: Timestamp | undefined): Instant | undefined | null {
  return ts === undefined ? undefined : instantFromEpoch(ts.seconds, ts.nanos);
}

export function instantToTimestamp(instant: Instant): Timestamp {
  return create(TimestampSchema, instantToEpoch(instant));
}

export function auditEventInputFromProto(input: ProtoAuditEventInput): AuditEventInput {
  return {
    tenantId: input.tenantId,
    action: input.action,
    crud: input.crud,
    actor: input.actor && { id: input.actor.id, name: input.actor.name, type: input.actor.type, href: input.actor.href },
    target: input.target && { id: input.target.id, name: input.target.name, type: input.target.type },
    sourceIp: input.sourceIp,
    description: input.description,
    fields: input.fields,
    isFailure: input.isFailure,
    isAnonymous: input.isAnonymous,
    created: instantFromTimestamp(input.created),
    externalId: input.externalId,
    component: input.component,
  };
}

/** The filter fields ListAuditEventsRequest and ExportAuditEventsRequest share. */
type ProtoAuditFilter = {
  readonly tenantId: string;
  readonly action: string;
  readonly crud: string;
  readonly actorId: string;
  readonly targetId: string;
  readonly targetType: string;
  readonly startTime?: Timestamp | undefined;
  readonly endTime?: Timestamp | undefined;
  readonly isFailure?: boolean | undefined;
};

export function auditFilterInputFromProto(req: ProtoAuditFilter): AuditFilterInput {
  return {
    tenantId: req.tenantId,
    action: req.action,
    crud: req.crud,
    actorId: req.actorId,
    targetId: req.targetId,
    targetType: req.targetType,
    startTime: instantFromTimestamp(req.startTime),
    endTime: instantFromTimestamp(req.endTime),
    isFailure: req.isFailure,
  };
}

export function auditEventToProto(e: AuditEvent): ProtoAuditEvent {
  return create(AuditEventSchema, {
    id: e.id,
    tenantId: e.tenantId ?? "",
    action: e.action,
    crud: e.crud,
    actor: e.actor ? create(AuditActorSchema, e.actor) : undefined,
    target: e.target ? create(AuditTargetSchema, e.target) : undefined,
    sourceIp: e.sourceIp ?? "",
    description: e.description,
    // google.protobuf.Struct is a JsonObject in protobuf-es; jsonb comes back as one.
    fields: e.fields as JsonObject,
    isFailure: e.isFailure,
    isAnonymous: e.isAnonymous,
    createdAt: instantToTimestamp(e.createdAt),
    externalId: e.externalId ?? "",
    component: e.component,
  });
}
