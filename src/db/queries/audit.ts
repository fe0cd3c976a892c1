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
 * Appends one event to its chain: a plain INSERT that audit_log_chain_row
 * (migrations/7) chains, holding the chain's head row until commit, so a
 * mutation's event costs one row, not audit_append's batch machinery. Takes the
 * connection of the change it records, so both commit together or not at all.
 */
export async function insertAuditEvent(db: Db, event: AuditEventDraft, context: AuditContext): Promise<void> {
  const actor = context.actor;
  const anonymous = actor.kind === "anonymous";
  await db.query(sql.unsafe`
    INSERT INTO audit_log (
      tenant_id, action, crud, actor_id, actor_name, actor_type, actor_href,
      target_id, target_name, target_type, source_ip, description, fields, is_failure, is_anonymous
    ) VALUES (
      ${event.tenantId}, ${event.action}, ${event.crud},
      ${anonymous ? null : actor.id}, ${anonymous ? null : actor.name}, ${anonymous ? null : actor.kind},
      ${anonymous ? null : (actor.href ?? null)},
      ${event.target.id}, ${event.target.name ?? null}, ${event.target.type},
      ${context.sourceIp ?? null}::inet, ${event.description ?? ""}, ${sql.jsonb((event.fields ?? {}) as never)},
      ${event.isFailure ?? false}, ${anonymous}
    )`);
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

/**
 * Reads one audit_log row as selected by selectAuditEvent. Lists and exports
 * read up to a million of these per call, so this is a typed check per column
 * rather than a zod schema (which cost as much CPU per event as encoding it);
 * a row that does not have the expected shape is schema drift and fails loudly,
 * naming the column.
 */
function toAuditEvent(row: Record<string, unknown>): AuditEvent {
  const id = text(row, "id");
  const actorId = nullableText(row, "actor_id");
  const actorName = nullableText(row, "actor_name");
  const actorType = nullableText(row, "actor_type");
  const actorHref = nullableText(row, "actor_href");
  const targetId = nullableText(row, "target_id");
  const targetName = nullableText(row, "target_name");
  const targetType = nullableText(row, "target_type");
  const fields = JSON.parse(text(row, "fields_json")) as unknown;
  if (typeof fields !== "object" || fields === null || Array.isArray(fields)) drift("fields", fields);
  const sequence = text(row, "sequence");
  if (!DIGITS.test(sequence)) drift("sequence", sequence);
  return {
    id,
    tenantId: nullableText(row, "tenant_id"),
    action: text(row, "action"),
    crud: text(row, "crud"),
    actor:
      actorId !== null || actorName !== null || actorType !== null || actorHref !== null
        ? { id: actorId ?? "", name: actorName ?? "", type: actorType ?? "", href: actorHref ?? "" }
        : null,
    target:
      targetId !== null || targetName !== null || targetType !== null
        ? { id: targetId ?? "", name: targetName ?? "", type: targetType ?? "" }
        : null,
    sourceIp: nullableText(row, "source_ip"),
    description: text(row, "description"),
    fields: fields as Record<string, unknown>,
    isFailure: bool(row, "is_failure"),
    isAnonymous: bool(row, "is_anonymous"),
    createdAt: text(row, "created_at_utc"),
    externalId: nullableText(row, "external_id"),
    component: text(row, "component"),
    chainId: text(row, "chain_id"),
    sequence: BigInt(sequence),
    previousHash: hex64(row, "prev_hash"),
    hash: hex64(row, "hash"),
  };
}

const DIGITS = /^[1-9][0-9]*$/;

function drift(column: string, value: unknown): never {
  throw new TypeError(`audit_log row: column ${column} has an unexpected ${value === null ? "null" : typeof value} value`);
}

function text(row: Record<string, unknown>, column: string): string {
  const value = row[column];
  return typeof value === "string" ? value : drift(column, value);
}

function nullableText(row: Record<string, unknown>, column: string): string | null {
  const value = row[column];
  return value === null || typeof value === "string" ? value : drift(column, value);
}

function bool(row: Record<string, unknown>, column: string): boolean {
  const value = row[column];
  return typeof value === "boolean" ? value : drift(column, value);
}

// encode(…, 'hex') only ever yields hex: the length is what tells a hash (a regular
// expression over 64 characters, twice per row, was visible in an export's profile).
function hex64(row: Record<string, unknown>, column: string): string {
  const value = text(row, column);
  return value.length === 64 ? value : drift(column, value);
}

// created_at as an exact Instant: a Date would drop the microseconds the keyset needs.
// (Named apart from created_at and seq so ORDER BY sorts by the columns, not the text.)
const selectAuditEvent = sql.fragment`
  SELECT id, tenant_id, action, crud, actor_id, actor_name, actor_type, actor_href,
         target_id, target_name, target_type, host(source_ip) AS source_ip, description, fields::text AS fields_json,
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
  return (await auditEventPage(db, filter, order, after, limit)).events;
}

export type AuditEventPage = { readonly events: AuditEvent[]; readonly sizes: number[] };

/**
 * A page as listAuditEvents reads it, with each event's approximate encoded
 * size in bytes (its text columns, fields as JSON), so that an export can cut
 * its messages by size without encoding anything twice.
 */
export async function auditEventPage(
  db: Db,
  filter: AuditFilter,
  order: "newest_first" | "oldest_first",
  after: AuditCursor | undefined,
  limit: number,
): Promise<AuditEventPage> {
  const conditions = filterConditions(filter);
  const newestFirst = order === "newest_first";
  if (after) {
    conditions.push(newestFirst ? sql.fragment`seq < ${after.sequence}` : sql.fragment`seq > ${after.sequence}`);
  }
  const orderBy = newestFirst ? sql.fragment`seq DESC` : sql.fragment`seq ASC`;
  // sql.unsafe: toAuditEvent checks each row (see there for why not a zod schema).
  const rows = await db.any(sql.unsafe`
    ${selectAuditEvent}
    WHERE ${sql.join(conditions, sql.fragment` AND `)}
    ORDER BY ${orderBy}
    LIMIT ${limit}`);
  const events: AuditEvent[] = new Array(rows.length);
  const sizes: number[] = new Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] as Record<string, unknown>;
    events[i] = toAuditEvent(row);
    sizes[i] = approximateSize(row);
  }
  return { events, sizes };
}

/** Fixed fields (ids, hashes, timestamps, tags) plus the free text; an estimate, not a bound. */
function approximateSize(row: Record<string, unknown>): number {
  let size = 256;
  for (const column of ["description", "fields_json", "actor_name", "actor_href", "target_name", "action"]) {
    const value = row[column];
    if (typeof value === "string") size += value.length;
  }
  return size;
}
