-- The full API surface: tenant metadata and lifecycle, grant expiry and limits,
-- IdP email-domain routing, API-key rotation, idempotency keys, and audit events
-- reported by sibling services.

ALTER TABLE tenants
  ADD COLUMN metadata          jsonb NOT NULL DEFAULT '{}',
  ADD COLUMN external_id       text,
  ADD COLUMN suspension_reason text  NOT NULL DEFAULT '';
-- Tenants suspended before reasons were recorded get one, so the check below holds.
UPDATE tenants SET suspension_reason = 'suspended before reasons were recorded' WHERE status = 'suspended';
ALTER TABLE tenants
  ADD CONSTRAINT tenants_external_id_key UNIQUE (external_id),
  ADD CONSTRAINT tenants_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
  ADD CONSTRAINT tenants_external_id_length CHECK (external_id IS NULL OR char_length(external_id) BETWEEN 1 AND 200),
  -- A suspended tenant always says why; no other status carries a reason.
  ADD CONSTRAINT tenants_suspension_reason CHECK ((status = 'suspended') = (suspension_reason <> ''));

ALTER TABLE tenant_products
  ADD COLUMN expires_at timestamptz,
  ADD COLUMN limits     jsonb NOT NULL DEFAULT '{}',
  ADD CONSTRAINT tenant_products_limits_object CHECK (jsonb_typeof(limits) = 'object');

-- Login routing: each email domain belongs to at most one tenant's IdP. A table
-- (rather than the array column) lets the database enforce that.
CREATE TABLE tenant_idp_email_domains (
  domain     text        NOT NULL,
  tenant_id  uuid        NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT tenant_idp_email_domains_pkey PRIMARY KEY (domain),
  CONSTRAINT tenant_idp_email_domains_tenant_id_fkey FOREIGN KEY (tenant_id)
    REFERENCES tenant_idp_config (tenant_id) ON DELETE CASCADE,
  CONSTRAINT tenant_idp_email_domains_domain_format
    CHECK (domain ~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$' AND char_length(domain) <= 253)
);
CREATE INDEX tenant_idp_email_domains_tenant_id_idx ON tenant_idp_email_domains (tenant_id);
ALTER TABLE tenant_idp_config DROP COLUMN email_domains;
ALTER TABLE tenant_idp_config
  ADD CONSTRAINT tenant_idp_config_issuer_url_not_blank CHECK (char_length(btrim(issuer_url)) > 0);

-- Rotation with a grace period: the previous secret verifies until previous_expires_at.
ALTER TABLE api_keys
  ADD COLUMN previous_prefix      text,
  ADD COLUMN previous_secret_hash bytea,
  ADD COLUMN previous_expires_at  timestamptz,
  ADD CONSTRAINT api_keys_previous_prefix_key UNIQUE (previous_prefix),
  ADD CONSTRAINT api_keys_previous_secret_complete CHECK (
    (previous_prefix IS NULL) = (previous_secret_hash IS NULL)
    AND (previous_prefix IS NULL) = (previous_expires_at IS NULL)
  ),
  ADD CONSTRAINT api_keys_previous_secret_hash_sha256 CHECK (previous_secret_hash IS NULL OR octet_length(previous_secret_hash) = 32);

-- Idempotent creates: the first request under a key wins; retries read its result.
CREATE TABLE idempotency_keys (
  scope        text        NOT NULL,
  key          text        NOT NULL,
  request_hash bytea       NOT NULL,
  resource_id  uuid        NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT idempotency_keys_pkey PRIMARY KEY (scope, key),
  CONSTRAINT idempotency_keys_key_length CHECK (char_length(key) BETWEEN 1 AND 200)
);

-- Events reported by sibling services carry their component and their own id;
-- (component, external_id) makes a retried batch a no-op.
ALTER TABLE audit_log
  ADD COLUMN external_id text,
  ADD COLUMN component   text NOT NULL DEFAULT 'tenant-registry',
  ADD CONSTRAINT audit_log_component_external_id_key UNIQUE (component, external_id);
