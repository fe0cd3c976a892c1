import { create, type JsonObject } from "@bufbuild/protobuf";
import { TimestampSchema, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  AuditCheckpointSchema,
  type AuditCheckpoint as ProtoAuditCheckpoint,
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
import {
  AuditChainProblem,
  VerifyAuditChainResponseSchema,
  type VerifyAuditChainResponse,
} from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { checkpointFromJson, type ChainProblem, type ChainVerdict, type Checkpoint } from "../domain/audit-chain.js";

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

/**
 * Built as plain message objects (protobuf-es v2 messages are objects with a
 * $typeName): an export converts up to a million events, and create() walking
 * the schema for each of them and its actor, target and timestamp was a tenth
 * of the export's server CPU. The literal types make the compiler check every
 * field is given.
 */
export function auditEventToProto(e: AuditEvent): ProtoAuditEvent {
  const { seconds, nanos } = instantToEpoch(e.createdAt);
  return {
    $typeName: "breakpilot.tenantregistry.v1.AuditEvent",
    id: e.id,
    tenantId: e.tenantId ?? "",
    action: e.action,
    crud: e.crud,
    actor: e.actor ? { $typeName: "breakpilot.tenantregistry.v1.AuditActor", id: e.actor.id, name: e.actor.name, type: e.actor.type, href: e.actor.href } : undefined,
    target: e.target ? { $typeName: "breakpilot.tenantregistry.v1.AuditTarget", id: e.target.id, name: e.target.name, type: e.target.type } : undefined,
    sourceIp: e.sourceIp ?? "",
    description: e.description,
    // google.protobuf.Struct is a JsonObject in protobuf-es; jsonb comes back as one.
    fields: e.fields as JsonObject,
    isFailure: e.isFailure,
    isAnonymous: e.isAnonymous,
    createdAt: { $typeName: "google.protobuf.Timestamp", seconds, nanos },
    externalId: e.externalId ?? "",
    component: e.component,
    sequence: e.sequence,
    hash: e.hash,
    previousHash: e.previousHash,
    chainId: e.chainId,
  } satisfies ProtoAuditEvent;
}

export function checkpointToProto(c: Checkpoint): ProtoAuditCheckpoint {
  return create(AuditCheckpointSchema, {
    chainId: c.chainId,
    sequence: c.sequence,
    hash: c.hash,
    signedAt: instantToTimestamp(c.signedAt),
    keyId: c.keyId,
    signature: c.signature,
  });
}

/** A checkpoint sent back to be checked; field problems come back as violations, not exceptions. */
export function checkpointFromProto(c: ProtoAuditCheckpoint): Checkpoint | { readonly problem: string } {
  const signedAt = instantFromTimestamp(c.signedAt);
  if (!signedAt) return { problem: "signed_at: is required" };
  return checkpointFromJson({
    chain_id: c.chainId.toLowerCase(),
    sequence: c.sequence.toString(),
    hash: c.hash.toLowerCase(),
    signed_at: signedAt,
    key_id: c.keyId,
    signature: Buffer.from(c.signature).toString("base64"),
  });
}

const PROBLEMS: Record<ChainProblem, AuditChainProblem> = {
  hash_mismatch: AuditChainProblem.HASH_MISMATCH,
  gap: AuditChainProblem.GAP,
  reordered: AuditChainProblem.REORDERED,
  missing_tail: AuditChainProblem.MISSING_TAIL,
  bad_signature: AuditChainProblem.BAD_SIGNATURE,
  checkpoint_mismatch: AuditChainProblem.CHECKPOINT_MISMATCH,
};

export function verdictToProto(v: ChainVerdict): VerifyAuditChainResponse {
  return create(VerifyAuditChainResponseSchema, {
    intact: v.intact,
    chainId: v.chainId,
    baseSequence: v.baseSequence,
    lastSequence: v.lastSequence,
    eventsChecked: v.eventsChecked,
    ...(v.intact ? {} : { firstBadSequence: v.firstBadSequence, problem: PROBLEMS[v.problem], detail: v.detail }),
  });
}
