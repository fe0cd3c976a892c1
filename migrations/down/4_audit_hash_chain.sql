-- Dev-only rollback of 4_audit_hash_chain.sql.
DROP FUNCTION IF EXISTS audit_apply_retention(uuid, bigint, bytea, timestamptz, text, bytea);
DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log;
DROP TRIGGER IF EXISTS audit_log_chain_unsequenced ON audit_log;
DROP FUNCTION IF EXISTS audit_log_chain_row();
DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log;
DROP FUNCTION IF EXISTS audit_log_refuse_changes();
DROP FUNCTION IF EXISTS audit_append(jsonb);
DROP TABLE IF EXISTS audit_retention_cuts;
DROP TABLE IF EXISTS audit_checkpoints;
DROP FUNCTION IF EXISTS audit_refuse_changes();
CREATE INDEX IF NOT EXISTS audit_log_tenant_id_created_at_idx ON audit_log (tenant_id, created_at DESC, id DESC);
ALTER TABLE audit_log DROP CONSTRAINT IF EXISTS audit_log_chain_of_tenant,
  DROP COLUMN IF EXISTS chain_id, DROP COLUMN IF EXISTS seq,
  DROP COLUMN IF EXISTS prev_hash, DROP COLUMN IF EXISTS hash;
DROP FUNCTION IF EXISTS audit_canonical(uuid, bigint, uuid, timestamptz, text, text, text, text, text, text, text, text, text, inet, text, jsonb, boolean, boolean, text, text);
DROP FUNCTION IF EXISTS audit_canonical_value(text);
ALTER TABLE tenants DROP CONSTRAINT IF EXISTS tenants_audit_retention_positive, DROP COLUMN IF EXISTS audit_retention;
DROP TABLE IF EXISTS audit_chain_heads;
