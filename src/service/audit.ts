import type { ServiceImpl } from "@connectrpc/connect";
import type { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { auditEventPage, insertAuditEvents, type AuditEventPage, listAuditEvents, lockExistingTenantIds } from "../db/queries/audit.js";
import { findTenantRef, type Db } from "../db/queries/tenants.js";
import { translateCheckViolations } from "../db/constraints.js";
import {
  cursorOf,
  MAX_AUDIT_BATCH,
  MAX_AUDIT_FIELDS_BYTES,
  parseAuditFilter,
  parseCursor,
  validateAuditEventInput,
  type AuditCursor,
  type AuditFilter,
  type AuditFilterInput,
  type NewAuditEvent,
} from "../domain/audit-query.js";
import { InvalidArgumentError, NotFoundError } from "../domain/errors.js";
import { isUuid } from "../domain/ids.js";
import { auditEventInputFromProto, auditEventToProto, auditFilterInputFromProto } from "../transport/convert-audit.js";
import type { ServiceDeps } from "./deps.js";
import { decodePageToken, encodePageToken, pageSize, takePage } from "./pagination.js";
import { Violations } from "./validate.js";

/**
 * Export reads this many events per query (and sends at most this many per
 * message): memory stays bounded however many match. 250, not 1,000: a page's
 * rows, events and messages live until the page is sent, long enough to be
 * promoted out of the young generation, and at 1,000 that promotion alone grew a
 * fresh server's old generation by ~100 MB during an export (make bench, export).
 */
const EXPORT_PAGE = 250;
/**
 * An export message is cut once its events reach about this many bytes, so it
 * stays far below the 4 MiB a gRPC client accepts by default however large the
 * events' fields are (one event larger than this still goes, alone).
 */
const EXPORT_MESSAGE_BYTES = 1024 * 1024;

function requireFilter(input: AuditFilterInput): AuditFilter {
  const { filter, problems } = parseAuditFilter(input);
  if (!filter) throw new InvalidArgumentError(problems);
  return filter;
}

async function requireTenant(db: Db, tenantId: string): Promise<void> {
  if (!(await findTenantRef(db, tenantId))) throw new NotFoundError("tenant", tenantId);
}

export function createAuditHandlers({ db, clock, metrics }: ServiceDeps) {
  return {
    // Not itself audited: recording events is not a change to anything a tenant owns.
    async recordAuditEvents(req) {
      if (req.events.length === 0) throw InvalidArgumentError.field("events", "at least one event is required");
      if (req.events.length > MAX_AUDIT_BATCH) {
        throw InvalidArgumentError.field("events", `at most ${MAX_AUDIT_BATCH} events per call, got ${req.events.length}`);
      }
      const now = clock();
      const violations = new Violations({ omittedField: "events" });
      const events: NewAuditEvent[] = [];
      req.events.forEach((input, i) => {
        const { event, problems } = validateAuditEventInput(auditEventInputFromProto(input), now);
        for (const p of problems) violations.add(`events[${i}].${p.field}`, p.description);
        if (event) events.push(event);
      });
      // Every well-formed tenant id, also of otherwise invalid events, so one answer names every problem.
      const tenantOf = req.events.map((e) => (isUuid(e.tenantId) ? e.tenantId.toLowerCase() : null));
      const tenantIds = [...new Set(tenantOf.filter((id) => id !== null))];

      const { recorded, duplicates } = await db.transaction(async (tx) => {
        // All or nothing: the tenants are checked (and kept from being deleted) before anything is written.
        const known = await lockExistingTenantIds(tx, tenantIds);
        tenantOf.forEach((id, i) => {
          if (id !== null && !known.has(id)) violations.add(`events[${i}].tenant_id`, "unknown tenant");
        });
        violations.throwIfAny();
        return translateCheckViolations(() => insertAuditEvents(tx, events), {
          audit_log_fields_size: () =>
            InvalidArgumentError.field("events", `an event's fields are over ${MAX_AUDIT_FIELDS_BYTES.toLocaleString("en-US")} bytes as stored`),
        });
      });
      metrics.auditEventsWritten(recorded);
      return { recorded, duplicates };
    },

    async listAuditEvents(req) {
      const filter = requireFilter(auditFilterInputFromProto(req));
      const size = pageSize(req.pageSize);
      const token = decodePageToken(req.pageToken, filter);
      const after = token && parseCursor(token);
      if (after === null) throw InvalidArgumentError.field("page_token", "is not a token this service issued");
      await requireTenant(db, filter.tenantId);
      const { page, more } = takePage(await listAuditEvents(db, filter, "newest_first", after, size + 1), size);
      const last = page.at(-1);
      return {
        events: page.map(auditEventToProto),
        nextPageToken: more && last ? encodePageToken([String(last.sequence)], filter) : "",
      };
    },

    async *exportAuditEvents(req, ctx) {
      const filter = requireFilter(auditFilterInputFromProto(req));
      await requireTenant(db, filter.tenantId);
      const readPage = (after: AuditCursor | undefined): Promise<AuditEventPage> => {
        const page = auditEventPage(db, filter, "oldest_first", after, EXPORT_PAGE);
        // Handled where it is awaited; a client gone before that must not leave an unhandled rejection.
        page.catch(() => {});
        return page;
      };
      let next = readPage(undefined);
      for (;;) {
        // Cut short (deadline, cancel, shutdown): end with the abort's error, never
        // with a clean end of stream that would pass a partial export off as complete.
        ctx.signal.throwIfAborted();
        const { events, sizes } = await next;
        const more = events.length === EXPORT_PAGE;
        // The next page is read while this one is encoded and sent (the server sat
        // idle for a third of an export waiting on each page's query), and no
        // further: the generator resumes after the client has taken this page's
        // messages, so memory stays at two pages however many events match.
        if (more) next = readPage(cursorOf(events.at(-1)!));
        // One message per batch, not per event: per-message framing, encoding
        // and writing was most of the export's CPU.
        let start = 0;
        let bytes = 0;
        for (let i = 0; i <= events.length; i++) {
          // Cut before the event that would take the message past the limit (or at the page's end).
          if (i > start && (i === events.length || bytes + sizes[i]! > EXPORT_MESSAGE_BYTES)) {
            ctx.signal.throwIfAborted();
            yield { events: events.slice(start, i).map(auditEventToProto) };
            start = i;
            bytes = 0;
          }
          if (i < events.length) bytes += sizes[i]!;
        }
        if (!more) return;
      }
    },
  } satisfies Partial<ServiceImpl<typeof TenantRegistryService>>;
}
