-- Dev-only rollback of 7_audit_single_events_by_trigger.sql: the function as migration 4 wrote it.
CREATE OR REPLACE FUNCTION audit_log_chain_row() RETURNS trigger
  LANGUAGE plpgsql
AS $$
DECLARE
  head audit_chain_heads;
BEGIN
  NEW.chain_id := coalesce(NEW.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid);
  INSERT INTO audit_chain_heads (chain_id) VALUES (NEW.chain_id) ON CONFLICT (chain_id) DO NOTHING;
  SELECT * INTO head FROM audit_chain_heads WHERE chain_id = NEW.chain_id FOR UPDATE;
  NEW.seq := head.seq + 1;
  NEW.prev_hash := head.hash;
  NEW.hash := sha256(head.hash || convert_to(audit_canonical(
    NEW.chain_id, NEW.seq, NEW.id, NEW.created_at, NEW.action, NEW.crud, NEW.actor_id, NEW.actor_name,
    NEW.actor_type, NEW.actor_href, NEW.target_id, NEW.target_name, NEW.target_type, NEW.source_ip,
    NEW.description, NEW.fields, NEW.is_failure, NEW.is_anonymous, NEW.component, NEW.external_id), 'UTF8'));
  UPDATE audit_chain_heads SET seq = NEW.seq, hash = NEW.hash WHERE chain_id = NEW.chain_id;
  RETURN NEW;
END $$;
