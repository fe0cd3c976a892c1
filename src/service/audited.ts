import type { DatabaseTransactionConnection } from "slonik";
import { publishChangeNotice, type Change, type ChangeNotice } from "../cache/change-notice.js";
import { insertAuditEvent } from "../db/queries/audit.js";
import type { AuditContext, AuditEventDraft } from "../domain/audit.js";
import type { ServiceDeps } from "./deps.js";

export type AuditedChange<T> = {
  readonly result: T;
  readonly event: AuditEventDraft | null;
  /**
   * Which hot answers (cache keys) the change makes stale, or null when it
   * changes none (a project's name, a replayed create). Published as a change
   * notice in the same transaction, so every replica drops them on commit.
   */
  readonly changed: Change | null;
};

/**
 * Runs a change, its audit event and its change notice in one transaction: no
 * change without its event, no event without its change, and every replica
 * learns of the change when (and only when) it commits. `change` may return
 * event: null when it turned out to change nothing (e.g. revoking a revoked
 * key). It must have no side effects outside the database: Slonik may retry
 * the transaction.
 */
export async function audited<T>(
  { db, changes }: Pick<ServiceDeps, "db" | "changes">,
  context: AuditContext,
  change: (tx: DatabaseTransactionConnection) => Promise<AuditedChange<T>>,
): Promise<T> {
  let written = 0;
  let notice: ChangeNotice | undefined;
  const result = await db.transaction(async (tx) => {
    // A retried transaction starts over.
    written = 0;
    notice = undefined;
    const { result, event, changed } = await change(tx);
    if (event) {
      await insertAuditEvent(tx, event, context);
      written = 1;
    }
    if (changed) {
      notice = {
        tenantId: changed.tenantId,
        action: event?.action ?? "",
        keys: changed.keys,
        tenantWide: changed.tenantWide ?? false,
        at: Date.now(),
      };
      await publishChangeNotice(tx, notice);
    }
    return result;
  });
  if (written > 0) context.written?.(written);
  // This replica's own notice arrives a moment later; this makes its next read see the change already.
  if (notice) changes.committed(notice);
  return result;
}
