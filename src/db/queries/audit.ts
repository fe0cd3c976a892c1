import { sql } from "slonik";
import type { AuditContext, AuditEventDraft } from "../../domain/audit.js";
import type { Db } from "./tenants.js";

/**
 * Appends one event. Takes the connection of the change it records, so both
 * commit together or not at all.
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
