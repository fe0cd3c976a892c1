import type { DatabaseTransactionConnection } from "slonik";
import { insertAuditEvent } from "../db/queries/audit.js";
import type { Db } from "../db/queries/tenants.js";
import type { AuditContext, AuditEventDraft } from "../domain/audit.js";

export type AuditedChange<T> = { readonly result: T; readonly event: AuditEventDraft | null };

/**
 * Runs a change and its audit event in one transaction: no change without its
 * event, no event without its change. `change` may return event: null when it
 * turned out to change nothing (e.g. revoking a revoked key). It must have no
 * side effects outside the database: Slonik may retry the transaction.
 */
export async function audited<T>(
  db: Db,
  context: AuditContext,
  change: (tx: DatabaseTransactionConnection) => Promise<AuditedChange<T>>,
): Promise<T> {
  let written = 0;
  const result = await db.transaction(async (tx) => {
    written = 0; // a retried transaction starts over
    const { result, event } = await change(tx);
    if (event) {
      await insertAuditEvent(tx, event, context);
      written = 1;
    }
    return result;
  });
  if (written > 0) context.written?.(written);
  return result;
}
