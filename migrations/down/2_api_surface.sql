-- Dev-only rollback of 2_api_surface.sql.
ALTER TABLE audit_log DROP CONSTRAINT IF EXISTS audit_log_component_external_id_key,
  DROP COLUMN IF EXISTS external_id, DROP COLUMN IF EXISTS component;
DROP TABLE IF EXISTS idempotency_keys;
ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_previous_secret_complete,
  DROP CONSTRAINT IF EXISTS api_keys_previous_secret_hash_sha256,
  DROP CONSTRAINT IF EXISTS api_keys_previous_prefix_key,
  DROP COLUMN IF EXISTS previous_prefix, DROP COLUMN IF EXISTS previous_secret_hash, DROP COLUMN IF EXISTS previous_expires_at;
ALTER TABLE tenant_idp_config DROP CONSTRAINT IF EXISTS tenant_idp_config_issuer_url_not_blank,
  ADD COLUMN email_domains text[] NOT NULL DEFAULT '{}';
UPDATE tenant_idp_config c
  SET email_domains = ARRAY(SELECT d.domain FROM tenant_idp_email_domains d WHERE d.tenant_id = c.tenant_id ORDER BY d.domain);
DROP TABLE IF EXISTS tenant_idp_email_domains;
ALTER TABLE tenant_products DROP CONSTRAINT IF EXISTS tenant_products_limits_object,
  DROP COLUMN IF EXISTS expires_at, DROP COLUMN IF EXISTS limits;
ALTER TABLE tenants DROP CONSTRAINT IF EXISTS tenants_suspension_reason,
  DROP CONSTRAINT IF EXISTS tenants_external_id_length,
  DROP CONSTRAINT IF EXISTS tenants_metadata_object,
  DROP CONSTRAINT IF EXISTS tenants_external_id_key,
  DROP COLUMN IF EXISTS metadata, DROP COLUMN IF EXISTS external_id, DROP COLUMN IF EXISTS suspension_reason;
