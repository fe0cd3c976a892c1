import { isIP } from "node:net";
import type { Crud } from "./audit.js";
import type { FieldViolation } from "./errors.js";
import { isUuid } from "./ids.js";

/**
 * Audit events reported by sibling services (Retraced's publisher API) and the
 * filters of the audit-log reads. Pure: no SQL, no protobuf.
 *
 * Instants are RFC 3339 UTC strings with exactly six fractional digits
 * ("2025-01-02T03:04:05.123456Z"): PostgreSQL keeps microseconds, a Date keeps
 * milliseconds, and a keyset cursor that lost the microseconds would skip rows.
 */
export type Instant = string;

export const MAX_AUDIT_BATCH = 1000;
export const MAX_FUTURE_SKEW_MS = 5 * 60 * 1000;
/** The component the registry's own events carry; not for senders. */
export const OWN_COMPONENT = "tenant-registry";
export const DEFAULT_COMPONENT = "external";

const CRUDS: readonly string[] = ["c", "r", "u", "d"] satisfies readonly Crud[];

export type AuditActorValue = { readonly id: string; readonly name: string; readonly type: string; readonly href: string };
export type AuditTargetValue = { readonly id: string; readonly name: string; readonly type: string };

/** An event as a sender reports it, before validation (the wire shape, with `created` as an Instant). */
export type AuditEventInput = {
  readonly tenantId: string;
  readonly action: string;
  readonly crud: string;
  readonly actor: AuditActorValue | undefined;
  readonly target: AuditTargetValue | undefined;
  readonly sourceIp: string;
  readonly description: string;
  readonly fields: Readonly<Record<string, unknown>> | undefined;
  readonly isFailure: boolean;
  readonly isAnonymous: boolean;
  /** undefined: now. null: the sender's timestamp is not a valid instant. */
  readonly created: Instant | undefined | null;
  readonly externalId: string;
  readonly component: string;
};

/** A validated event, ready to store. Absent values are null, never "". */
export type NewAuditEvent = {
  readonly tenantId: string | null;
  readonly action: string;
  readonly crud: Crud;
  readonly actorId: string | null;
  readonly actorName: string | null;
  readonly actorType: string | null;
  readonly actorHref: string | null;
  readonly targetId: string | null;
  readonly targetName: string | null;
  readonly targetType: string | null;
  readonly sourceIp: string | null;
  readonly description: string;
  readonly fields: Readonly<Record<string, unknown>>;
  readonly isFailure: boolean;
  readonly isAnonymous: boolean;
  readonly createdAt: Instant;
  readonly externalId: string | null;
  readonly component: string;
};

/** A stored event, as the audit-log reads return it. */
export type AuditEvent = {
  readonly id: string;
  /** null once the tenant has been deleted, or for platform-level events. */
  readonly tenantId: string | null;
  readonly action: string;
  readonly crud: string;
  readonly actor: AuditActorValue | null;
  readonly target: AuditTargetValue | null;
  readonly sourceIp: string | null;
  readonly description: string;
  readonly fields: Readonly<Record<string, unknown>>;
  readonly isFailure: boolean;
  readonly isAnonymous: boolean;
  readonly createdAt: Instant;
  readonly externalId: string | null;
  readonly component: string;
  /** The chain the event belongs to: its tenant's id (kept after the tenant is deleted), or PLATFORM_CHAIN. */
  readonly chainId: string;
  /** Position in the chain: 1, 2, 3, … without gaps, in the order the changes committed. */
  readonly sequence: bigint;
  /** Lowercase hex SHA-256 of the previous event (or the chain's base). */
  readonly previousHash: string;
  /** Lowercase hex SHA-256(previous hash ‖ canonical(event)). */
  readonly hash: string;
};

/** Text PostgreSQL can store: no NUL characters, no lone UTF-16 surrogates. */
function storableText(value: string): boolean {
  return value.isWellFormed() && !value.includes("\0");
}

function storableJson(value: unknown): boolean {
  if (typeof value === "string") return storableText(value);
  if (Array.isArray(value)) return value.every(storableJson);
  if (value !== null && typeof value === "object") {
    return Object.entries(value).every(([k, v]) => storableText(k) && storableJson(v));
  }
  return true;
}

/**
 * The most an event's `fields` may take as PostgreSQL stores and prints them (jsonb text, what
 * the chain hashes), as the audit_log_fields_size CHECK says. Without it one event could fill a
 * 4 MiB request, and a page of 500 of them would be 2 GB for the server to hold.
 */
export const MAX_AUDIT_FIELDS_BYTES = 64 * 1024;

/**
 * UTF-8 bytes of `value` as jsonb text: compact JSON, plus the space jsonb prints after every
 * ":" and ",", with numbers written out in full as numeric prints them (1e300 is 301 digits
 * there, so a few bytes sent could be far more stored). Stops counting once past `limit`.
 */
export function jsonbTextBytes(value: unknown, limit = Infinity): number {
  let bytes = 0;
  const walk = (v: unknown): void => {
    if (bytes > limit) return;
    if (typeof v === "number") bytes += numericText(v);
    else if (typeof v === "string") bytes += Buffer.byteLength(JSON.stringify(v));
    else if (Array.isArray(v)) {
      bytes += 2 + Math.max(0, 2 * (v.length - 1)); // [ ] and ", " between elements
      for (const item of v) walk(item);
    } else if (v !== null && typeof v === "object") {
      const entries = Object.entries(v);
      bytes += 2 + Math.max(0, 2 * (entries.length - 1)) + 2 * entries.length; // { }, ", " and ": "
      for (const [key, item] of entries) {
        bytes += Buffer.byteLength(JSON.stringify(key));
        walk(item);
      }
    } else bytes += String(v).length; // true, false, null
  };
  walk(value);
  return bytes;
}

/** Characters of a JSON number as numeric prints it: plain decimal, never an exponent. */
function numericText(n: number): number {
  const [mantissa = "", exponent = "0"] = Math.abs(n).toExponential().split("e");
  const digits = mantissa.replace(".", "").length;
  const e = Number(exponent);
  const sign = n < 0 ? 1 : 0;
  // 1.5e3 → "1500"; 1.5e-3 → "0.0015"
  return sign + (e >= 0 ? Math.max(digits, e + 1) + (digits > e + 1 ? 1 : 0) : 1 + 1 + (-e - 1) + digits);
}

function checkText(problems: FieldViolation[], field: string, value: string, max: number): void {
  if (value.length > max) problems.push({ field, description: `must be at most ${max} characters` });
  else if (!storableText(value)) problems.push({ field, description: "must not contain NUL characters or invalid UTF-16" });
}

/** Mirrors Retraced's action rule: a dotted verb, 1-200 characters, no whitespace. */
export function actionProblem(action: string): string | undefined {
  if (action === "") return "is required";
  if (action.length > 200) return "must be at most 200 characters";
  if (/\s/.test(action)) return "must not contain whitespace";
  if (!storableText(action)) return "must not contain NUL characters or invalid UTF-16";
  return undefined;
}

export function crudProblem(crud: string): string | undefined {
  if (crud === "") return "is required";
  return CRUDS.includes(crud) ? undefined : "must be one of c, r, u, d";
}

/** A bare IPv4 or IPv6 address as PostgreSQL's inet takes it (no zone, no prefix length). */
export function sourceIpProblem(ip: string): string | undefined {
  return isIP(ip) !== 0 && !ip.includes("%") ? undefined : "must be an IPv4 or IPv6 address";
}

/**
 * Component names are compared as stored: trimmed and lower-cased, so
 * "Tenant-Registry " and "tenant-registry" are one name.
 */
export function normaliseComponent(component: string): string {
  return component.trim().toLowerCase();
}

const COMPONENT = /^[a-z0-9](?:[a-z0-9._-]{0,98}[a-z0-9])?$/;
// Separators removed: "tenant_registry", "tenant.registry" and "tenantregistry" look like the registry too.
const RESERVED_SKELETONS = new Set([OWN_COMPONENT].map((name) => name.replace(/[._-]/g, "")));

/** A normalised component: ASCII letters, digits and . _ - (no look-alike letters), never the registry's own. */
export function componentProblem(component: string): string | undefined {
  if (component === "") return undefined; // DEFAULT_COMPONENT
  if (component.length > 100) return "must be at most 100 characters";
  if (!COMPONENT.test(component)) {
    return 'must be letters a-z, digits, ".", "_" or "-", starting and ending with a letter or digit';
  }
  if (RESERVED_SKELETONS.has(component.replace(/[._-]/g, ""))) return `"${OWN_COMPONENT}" (in any spelling) is reserved for the registry's own events`;
  return undefined;
}

const nullIfEmpty = (s: string): string | null => (s === "" ? null : s);

/**
 * Validates one reported event against Retraced's rules. Field paths are
 * relative to the event ("action", "actor.id"); the caller prefixes them.
 */
export function validateAuditEventInput(
  input: AuditEventInput,
  now: Date,
): { readonly event: NewAuditEvent; readonly problems: readonly [] } | { readonly event: null; readonly problems: FieldViolation[] } {
  const problems: FieldViolation[] = [];
  const add = (field: string, description: string | undefined) => {
    if (description !== undefined) problems.push({ field, description });
  };

  add("action", actionProblem(input.action));
  add("crud", crudProblem(input.crud));
  if (input.tenantId !== "" && !isUuid(input.tenantId)) add("tenant_id", "must be a UUID");

  const actor = input.actor;
  if (!actor || actor.id === "") {
    if (!input.isAnonymous) add(actor ? "actor.id" : "actor", "is required unless is_anonymous is set");
  }
  if (actor) {
    checkText(problems, "actor.id", actor.id, 200);
    checkText(problems, "actor.name", actor.name, 200);
    checkText(problems, "actor.type", actor.type, 100);
    checkText(problems, "actor.href", actor.href, 2000);
  }
  if (input.target) {
    checkText(problems, "target.id", input.target.id, 200);
    checkText(problems, "target.name", input.target.name, 200);
    checkText(problems, "target.type", input.target.type, 100);
  }

  if (input.sourceIp !== "") add("source_ip", sourceIpProblem(input.sourceIp));
  checkText(problems, "description", input.description, 2000);
  checkText(problems, "external_id", input.externalId, 200);
  const component = normaliseComponent(input.component);
  add("component", componentProblem(component));
  if (input.fields !== undefined && !storableJson(input.fields)) {
    add("fields", "must not contain NUL characters or invalid UTF-16");
  } else if (input.fields !== undefined) {
    const bytes = jsonbTextBytes(input.fields, MAX_AUDIT_FIELDS_BYTES);
    if (bytes > MAX_AUDIT_FIELDS_BYTES) {
      add("fields", `must be at most ${MAX_AUDIT_FIELDS_BYTES.toLocaleString("en-US")} bytes as stored (jsonb text, numbers in full)`);
    }
  }

  let createdAt: Instant = toInstant(now);
  if (input.created === null) add("created", "is not a valid timestamp");
  else if (input.created !== undefined) {
    createdAt = input.created;
    const ms = Date.parse(input.created);
    if (ms < 0) add("created", "must not be before 1970");
    else if (ms > now.getTime() + MAX_FUTURE_SKEW_MS) add("created", "must not be more than 5 minutes in the future");
  }

  if (problems.length > 0) return { event: null, problems };
  return {
    event: {
      tenantId: input.tenantId === "" ? null : input.tenantId.toLowerCase(),
      action: input.action,
      crud: input.crud as Crud,
      actorId: nullIfEmpty(actor?.id ?? ""),
      actorName: nullIfEmpty(actor?.name ?? ""),
      actorType: nullIfEmpty(actor?.type ?? ""),
      actorHref: nullIfEmpty(actor?.href ?? ""),
      targetId: nullIfEmpty(input.target?.id ?? ""),
      targetName: nullIfEmpty(input.target?.name ?? ""),
      targetType: nullIfEmpty(input.target?.type ?? ""),
      sourceIp: nullIfEmpty(input.sourceIp),
      description: input.description,
      fields: input.fields ?? {},
      isFailure: input.isFailure,
      isAnonymous: input.isAnonymous,
      createdAt,
      externalId: nullIfEmpty(input.externalId),
      component: component === "" ? DEFAULT_COMPONENT : component,
    },
    problems: [],
  };
}

// ---- Instants ----

const INSTANT = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

/** A Date as an Instant (its microseconds are zero). */
export function toInstant(date: Date): Instant {
  return `${date.toISOString().slice(0, 23)}000Z`;
}

/**
 * Seconds and nanoseconds since the epoch (a protobuf Timestamp) as an Instant,
 * truncated to microseconds; null when it is not a valid instant between
 * 0001-01-01 and 9999-12-31.
 */
export function instantFromEpoch(seconds: bigint, nanos: number): Instant | null {
  if (!Number.isInteger(nanos) || nanos < 0 || nanos > 999_999_999) return null;
  if (seconds < -62_135_596_800n || seconds > 253_402_300_799n) return null;
  const iso = new Date(Number(seconds) * 1000).toISOString();
  return `${iso.slice(0, 19)}.${String(Math.floor(nanos / 1000)).padStart(6, "0")}Z`;
}

/**
 * An Instant as seconds and nanoseconds since the epoch, exactly. Exports convert
 * one per event: the fields are read from their fixed places and the days counted
 * in integers (a Date.parse per event was 3 % of an export's CPU); a field out of
 * range goes the Date.parse way, so the two never disagree.
 */
export function instantToEpoch(instant: Instant): { seconds: bigint; nanos: number } {
  if (!INSTANT.test(instant)) throw new TypeError(`not an instant: ${instant}`);
  const year = digits(instant, 0, 4);
  const month = digits(instant, 5, 2);
  const day = digits(instant, 8, 2);
  const hour = digits(instant, 11, 2);
  const minute = digits(instant, 14, 2);
  const second = digits(instant, 17, 2);
  const nanos = digits(instant, 20, 6) * 1000;
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) || hour > 23 || minute > 59 || second > 59) {
    return { seconds: BigInt(Date.parse(`${instant.slice(0, 19)}Z`) / 1000), nanos };
  }
  const seconds = daysFromCivil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
  return { seconds: BigInt(seconds), nanos };
}

function digits(s: string, from: number, count: number): number {
  let n = 0;
  for (let i = from; i < from + count; i++) n = n * 10 + (s.charCodeAt(i) - 48);
  return n;
}

function daysInMonth(year: number, month: number): number {
  if (month !== 2) return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146_097 + dayOfEra - 719_468;
}

// ---- Filters of ListAuditEvents / ExportAuditEvents ----

export type AuditFilterInput = {
  readonly tenantId: string;
  readonly action: string;
  readonly crud: string;
  readonly actorId: string;
  readonly targetId: string;
  readonly targetType: string;
  /** undefined: unbounded. null: not a valid timestamp. */
  readonly startTime: Instant | undefined | null;
  readonly endTime: Instant | undefined | null;
  readonly isFailure: boolean | undefined;
};

/** Normalised filters; also what a page token is bound to. */
export type AuditFilter = {
  readonly tenantId: string;
  /** An exact action, or every action starting with `prefix` ("tenant.*" → "tenant."). */
  readonly action: { readonly exact: string } | { readonly prefix: string } | null;
  readonly crud: Crud | null;
  readonly actorId: string | null;
  readonly targetId: string | null;
  readonly targetType: string | null;
  /** Inclusive. */
  readonly startTime: Instant | null;
  /** Exclusive. */
  readonly endTime: Instant | null;
  readonly isFailure: boolean | null;
};

export function parseAuditFilter(
  input: AuditFilterInput,
): { readonly filter: AuditFilter; readonly problems: readonly [] } | { readonly filter: null; readonly problems: FieldViolation[] } {
  const problems: FieldViolation[] = [];
  if (input.tenantId === "") problems.push({ field: "tenant_id", description: "is required" });
  else if (!isUuid(input.tenantId)) problems.push({ field: "tenant_id", description: "must be a UUID" });

  let action: AuditFilter["action"] = null;
  if (input.action !== "") {
    const problem = actionProblem(input.action);
    if (problem) problems.push({ field: "action", description: problem });
    else if (input.action.endsWith(".*")) {
      if (input.action.length === 2) problems.push({ field: "action", description: 'needs a prefix before ".*"' });
      else action = { prefix: input.action.slice(0, -1) };
    } else action = { exact: input.action };
  }
  if (input.crud !== "") {
    const problem = crudProblem(input.crud);
    if (problem) problems.push({ field: "crud", description: problem });
  }
  for (const [field, value] of [["actor_id", input.actorId], ["target_id", input.targetId], ["target_type", input.targetType]] as const) {
    if (!storableText(value)) problems.push({ field, description: "must not contain NUL characters or invalid UTF-16" });
  }
  if (input.startTime === null) problems.push({ field: "start_time", description: "is not a valid timestamp" });
  if (input.endTime === null) problems.push({ field: "end_time", description: "is not a valid timestamp" });
  if (input.startTime && input.endTime && input.endTime <= input.startTime) {
    problems.push({ field: "end_time", description: "must be after start_time" });
  }

  if (problems.length > 0) return { filter: null, problems };
  return {
    filter: {
      tenantId: input.tenantId.toLowerCase(),
      action,
      crud: input.crud === "" ? null : (input.crud as Crud),
      actorId: nullIfEmpty(input.actorId),
      targetId: nullIfEmpty(input.targetId),
      targetType: nullIfEmpty(input.targetType),
      startTime: input.startTime ?? null,
      endTime: input.endTime ?? null,
      isFailure: input.isFailure ?? null,
    },
    problems: [],
  };
}

/** A LIKE pattern matching every string that starts with `prefix`, its wildcards escaped (ESCAPE '\'). */
export function likePrefixPattern(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, "\\$&")}%`;
}

/** Keyset position: the sequence of the last event delivered. */
export type AuditCursor = { readonly sequence: bigint };

export function cursorOf(event: AuditEvent): AuditCursor {
  return { sequence: event.sequence };
}

/** A cursor decoded from a client's page token, or null when it is not one this service made. */
export function parseCursor(parts: readonly (string | number)[]): AuditCursor | null {
  const [sequence] = parts;
  if (parts.length !== 1 || typeof sequence !== "string" || !/^[1-9][0-9]{0,18}$/.test(sequence)) return null;
  // A bigint column: nineteen digits may still be past its end.
  if (BigInt(sequence) > 9_223_372_036_854_775_807n) return null;
  return { sequence: BigInt(sequence) };
}
