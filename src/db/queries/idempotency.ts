import { sql } from "slonik";
import { z } from "zod";
import type { Db } from "./tenants.js";

export type IdempotencyClaim =
  | { readonly claimed: true }
  | { readonly claimed: false; readonly resourceId: string; readonly sameRequest: boolean };

const claimRow = z.object({ request_hash: z.instanceof(Buffer), resource_id: z.guid() });

/**
 * Claims (scope, key) for a create that will make `resourceId`, inside the
 * create's own transaction. A concurrent request with the same key blocks on
 * the primary key until the first commits, then finds its claim: exactly one
 * resource is ever made. If the create fails, the claim rolls back with it.
 */
export async function claimIdempotencyKey(
  tx: Db,
  claim: { scope: string; key: string; requestHash: Buffer; resourceId: string },
): Promise<IdempotencyClaim> {
  const inserted = await tx.maybeOne(sql.type(z.object({ resource_id: z.guid() }))`
    INSERT INTO idempotency_keys (scope, key, request_hash, resource_id)
    VALUES (${claim.scope}, ${claim.key}, ${sql.binary(claim.requestHash)}, ${claim.resourceId})
    ON CONFLICT (scope, key) DO NOTHING
    RETURNING resource_id`);
  if (inserted) return { claimed: true };
  const existing = await tx.one(sql.type(claimRow)`
    SELECT request_hash, resource_id FROM idempotency_keys WHERE scope = ${claim.scope} AND key = ${claim.key}`);
  return { claimed: false, resourceId: existing.resource_id, sameRequest: existing.request_hash.equals(claim.requestHash) };
}

/** Forgets keys older than `cutoff`: a retry after that is a new request. Returns how many went. */
export async function deleteIdempotencyKeysBefore(db: Db, cutoff: Date): Promise<number> {
  const result = await db.query(sql.unsafe`DELETE FROM idempotency_keys WHERE created_at < ${sql.timestamp(cutoff)}`);
  return result.rowCount;
}
