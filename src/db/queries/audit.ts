import { sql } from "slonik";
import { z } from "zod";
import type { AuditContext, AuditEventDraft } from "../../domain/audit.js";
import {
  likePrefixPattern,
  type AuditCursor,
  type AuditEvent,
  type AuditFilter,
  type NewAuditEvent,
} from "../../domain/audit-query.js";
import type { Db } from "./tenants.js";

/**
 * Appends one event to its chain (audit_append in migrations/4_audit_hash_chain.sql
 * assigns the sequence and hash). Takes the connection of the change it records,
 * so both commit together or not at all; on a pool it is one atomic statement.
 */
export async function insertAuditEvent(db: Db, event: AuditEventDraft, context: AuditContext): Promise<void> {
  const actor = context.actor;
  const anonymous = actor.kind === "anonymous";
  const row = {
    tenant_id: event.tenantId,
    action: event.action,
    crud: event.crud,
    actor_id: anonymous ? null : actor.id,
    actor_name: anonymous ? null : actor.name,
    actor_type: anonymous ? null : actor.kind,
    actor_href: anonymous ? null : (actor.href ?? null),
    target_id: event.target.id,
    target_name: event.target.name ?? null,
    target_type: event.target.type,
    source_ip: context.sourceIp ?? null,
    description: event.description ?? "",
    fields: (event.fields ?? {}) as Record<string, never>,
    is_failure: event.isFailure ?? false,
    is_anonymous: anonymous,
  };
  await db.query(sql.unsafe`SELECT audit_append(${sql.jsonb([row])})`);
}

// ---- Events reported by sibling services, and the audit-log reads ----

export type RecordedAuditEvents = { readonly recorded: number; readonly duplicates: number };

/** Which of `tenantIds` exist, locked against deletion until the transaction ends. */
export async function lockExistingTenantIds(tx: Db, tenantIds: readonly string[]): Promise<Set<string>> {
  if (tenantIds.length === 0) return new Set();
  const rows = await tx.anyFirst(sql.type(z.object({ id: z.guid() }))`
    SELECT id FROM tenants WHERE id = ANY(${sql.array(tenantIds, "uuid")}) FOR KEY SHARE`);
  return new Set(rows);
}

/**
 * Stores a batch in one statement. An event whose (component, external_id) is
 * already stored — or appears earlier in the same batch — is skipped, so a
 * retried batch records nothing twice.
 */
export async function insertAuditEvents(db: Db, events: readonly NewAuditEvent[]): Promise<RecordedAuditEvents> {
  if (events.length === 0) return { recorded: 0, duplicates: 0 };
  const rows = events.map((e) => ({
    tenant_id: e.tenantId,
    action: e.action,
    crud: e.crud,
    actor_id: e.actorId,
    actor_name: e.actorName,
    actor_type: e.actorType,
    actor_href: e.actorHref,
    target_id: e.targetId,
    target_name: e.targetName,
    target_type: e.targetType,
    source_ip: e.sourceIp,
    description: e.description,
    fields: e.fields as Record<string, never>,
    is_failure: e.isFailure,
    is_anonymous: e.isAnonymous,
    created_at: e.createdAt,
    external_id: e.externalId,
    component: e.component,
  }));
  // audit_append keeps the batch's order within each chain; the first of two equal external ids wins.
  const recorded = await db.oneFirst(sql.type(z.object({ recorded: z.number().int() }))`
    SELECT audit_append(${sql.jsonb(rows)}) AS recorded`);
  return { recorded, duplicates: events.length - recorded };
}

const auditEventRow = z.object({
  id: z.guid(),
  tenant_id: z.guid().nullable(),
  action: z.string(),
  crud: z.string(),
  actor_id: z.string().nullable(),
  actor_name: z.string().nullable(),
  actor_type: z.string().nullable(),
  actor_href: z.string().nullable(),
  target_id: z.string().nullable(),
  target_name: z.string().nullable(),
  target_type: z.string().nullable(),
  source_ip: z.string().nullable(),
  description: z.string(),
  fields: z.record(z.string(), z.unknown()),
  is_failure: z.boolean(),
  is_anonymous: z.boolean(),
  created_at_utc: z.string(),
  external_id: z.string().nullable(),
  component: z.string(),
  chain_id: z.guid(),
  sequence: z.string().regex(/^[1-9][0-9]*$/),
  prev_hash: z.string().regex(/^[0-9a-f]{64}$/),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
});

function toAuditEvent(row: z.infer<typeof auditEventRow>): AuditEvent {
  const hasActor = row.actor_id !== null || row.actor_name !== null || row.actor_type !== null || row.actor_href !== null;
  const hasTarget = row.target_id !== null || row.target_name !== null || row.target_type !== null;
  return {
    id: row.id,
    tenantId: row.tenant_id,
    action: row.action,
    crud: row.crud,
    actor: hasActor
      ? { id: row.actor_id ?? "", name: row.actor_name ?? "", type: row.actor_type ?? "", href: row.actor_href ?? "" }
      : null,
    target: hasTarget ? { id: row.target_id ?? "", name: row.target_name ?? "", type: row.target_type ?? "" } : null,
    sourceIp: row.source_ip,
    description: row.description,
    fields: row.fields,
    isFailure: row.is_failure,
    isAnonymous: row.is_anonymous,
    createdAt: row.created_at_utc,
    externalId: row.external_id,
    component: row.component,
    chainId: row.chain_id,
    sequence: BigInt(row.sequence),
    previousHash: row.prev_hash,
    hash: row.hash,
  };
}

// created_at as an exact Instant: a Date would drop the microseconds the keyset needs.
// (Named apart from created_at and seq so ORDER BY sorts by the columns, not the text.)
const selectAuditEvent = sql.fragment`
  SELECT id, tenant_id, action, crud, actor_id, actor_name, actor_type, actor_href,
         target_id, target_name, target_type, host(source_ip) AS source_ip, description, fields,
         is_failure, is_anonymous,
         to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at_utc,
         external_id, component, chain_id, seq::text AS sequence,
         encode(prev_hash, 'hex') AS prev_hash, encode(hash, 'hex') AS hash
  FROM audit_log`;

function filterConditions(filter: AuditFilter) {
  const conditions = [sql.fragment`chain_id = ${filter.tenantId}`];
  if (filter.action && "exact" in filter.action) conditions.push(sql.fragment`action = ${filter.action.exact}`);
  if (filter.action && "prefix" in filter.action) {
    conditions.push(sql.fragment`action LIKE ${likePrefixPattern(filter.action.prefix)} ESCAPE ${"\\"}`);
  }
  if (filter.crud !== null) conditions.push(sql.fragment`crud = ${filter.crud}`);
  if (filter.actorId !== null) conditions.push(sql.fragment`actor_id = ${filter.actorId}`);
  if (filter.targetId !== null) conditions.push(sql.fragment`target_id = ${filter.targetId}`);
  if (filter.targetType !== null) conditions.push(sql.fragment`target_type = ${filter.targetType}`);
  if (filter.startTime !== null) conditions.push(sql.fragment`created_at >= ${filter.startTime}::timestamptz`);
  if (filter.endTime !== null) conditions.push(sql.fragment`created_at < ${filter.endTime}::timestamptz`);
  if (filter.isFailure !== null) conditions.push(sql.fragment`is_failure = ${filter.isFailure}`);
  return conditions;
}

/**
 * One keyset page of a tenant's events matching `filter`, in chain order (the
 * order the changes committed): newest first for lists, oldest first for
 * exports; `after` is the sequence of the last event already delivered.
 * Served by audit_log_chain_id_seq_key (forwards or backwards).
 */
export async function listAuditEvents(
  db: Db,
  filter: AuditFilter,
  order: "newest_first" | "oldest_first",
  after: AuditCursor | undefined,
  limit: number,
): Promise<AuditEvent[]> {
  const conditions = filterConditions(filter);
  const newestFirst = order === "newest_first";
  if (after) {
    conditions.push(newestFirst ? sql.fragment`seq < ${after.sequence}` : sql.fragment`seq > ${after.sequence}`);
  }
  const orderBy = newestFirst ? sql.fragment`seq DESC` : sql.fragment`seq ASC`;
  const rows = await db.any(sql.type(auditEventRow)`
    ${selectAuditEvent}
    WHERE ${sql.join(conditions, sql.fragment` AND `)}
    ORDER BY ${orderBy}
    LIMIT ${limit}`);
  return rows.map(toAuditEvent);
}
