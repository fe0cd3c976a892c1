-- tenant-registry: the initial schema.
-- The API validates the same rules with friendlier messages; these constraints are
-- the last line of defence and hold for every writer, not just this service.

CREATE TYPE tenant_status AS ENUM ('provisioning', 'active', 'suspended', 'archived');
CREATE TYPE tenant_plan AS ENUM ('free', 'starter', 'professional', 'enterprise');
CREATE TYPE product_code AS ENUM ('certifai', 'compliance');
CREATE TYPE idp_protocol AS ENUM ('oidc', 'saml');

-- updated_at is kept by the database so no writer can forget it.
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END;
$$;

CREATE TABLE tenants (
  id          uuid          NOT NULL DEFAULT gen_random_uuid(),
  slug        text          NOT NULL,
  name        text          NOT NULL,
  status      tenant_status NOT NULL DEFAULT 'active',
  plan        tenant_plan   NOT NULL DEFAULT 'free',
  created_at  timestamptz   NOT NULL DEFAULT now(),
  updated_at  timestamptz   NOT NULL DEFAULT now(),
  CONSTRAINT tenants_pkey PRIMARY KEY (id),
  CONSTRAINT tenants_slug_key UNIQUE (slug),
  -- 3-63 of [a-z0-9-], starting and ending with a letter or digit (a DNS label).
  CONSTRAINT tenants_slug_format CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$'),
  CONSTRAINT tenants_name_length CHECK (char_length(btrim(name)) BETWEEN 1 AND 200)
);

CREATE TABLE tenant_projects (
  id          uuid        NOT NULL DEFAULT gen_random_uuid(),
  tenant_id   uuid        NOT NULL,
  slug        text        NOT NULL,
  name        text        NOT NULL,
  description text        NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT tenant_projects_pkey PRIMARY KEY (id),
  CONSTRAINT tenant_projects_tenant_id_fkey FOREIGN KEY (tenant_id)
    REFERENCES tenants (id) ON DELETE CASCADE,
  CONSTRAINT tenant_projects_tenant_id_slug_key UNIQUE (tenant_id, slug),
  -- Target of api_keys' composite key: a key's project must belong to the key's tenant.
  CONSTRAINT tenant_projects_tenant_id_id_key UNIQUE (tenant_id, id),
  CONSTRAINT tenant_projects_slug_format CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$'),
  CONSTRAINT tenant_projects_name_length CHECK (char_length(btrim(name)) BETWEEN 1 AND 200)
);

-- One row per (tenant, product): the product entitlements.
CREATE TABLE tenant_products (
  id          uuid         NOT NULL DEFAULT gen_random_uuid(),
  tenant_id   uuid         NOT NULL,
  product     product_code NOT NULL,
  created_at  timestamptz  NOT NULL DEFAULT now(),
  updated_at  timestamptz  NOT NULL DEFAULT now(),
  CONSTRAINT tenant_products_pkey PRIMARY KEY (id),
  CONSTRAINT tenant_products_tenant_id_fkey FOREIGN KEY (tenant_id)
    REFERENCES tenants (id) ON DELETE CASCADE,
  CONSTRAINT tenant_products_tenant_id_product_key UNIQUE (tenant_id, product)
);

-- One identity-provider configuration per tenant. Secrets are never stored here,
-- only a reference to where the client secret lives.
CREATE TABLE tenant_idp_config (
  id                uuid         NOT NULL DEFAULT gen_random_uuid(),
  tenant_id         uuid         NOT NULL,
  protocol          idp_protocol NOT NULL,
  issuer_url        text         NOT NULL,
  client_id         text         NOT NULL DEFAULT '',
  client_secret_ref text         NOT NULL DEFAULT '',
  keycloak_realm    text         NOT NULL DEFAULT '',
  email_domains     text[]       NOT NULL DEFAULT '{}',
  enabled           boolean      NOT NULL DEFAULT true,
  created_at        timestamptz  NOT NULL DEFAULT now(),
  updated_at        timestamptz  NOT NULL DEFAULT now(),
  CONSTRAINT tenant_idp_config_pkey PRIMARY KEY (id),
  CONSTRAINT tenant_idp_config_tenant_id_fkey FOREIGN KEY (tenant_id)
    REFERENCES tenants (id) ON DELETE CASCADE,
  CONSTRAINT tenant_idp_config_tenant_id_key UNIQUE (tenant_id)
);

-- API keys: only a short public prefix (the lookup handle) and the SHA-256 of the
-- whole token are stored. The secret itself is shown once and never kept.
CREATE TABLE api_keys (
  id           uuid        NOT NULL DEFAULT gen_random_uuid(),
  tenant_id    uuid        NOT NULL,
  project_id   uuid,
  name         text        NOT NULL,
  prefix       text        NOT NULL,
  secret_hash  bytea       NOT NULL,
  scopes       text[]      NOT NULL DEFAULT '{}',
  expires_at   timestamptz,
  revoked_at   timestamptz,
  last_used_at timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT api_keys_pkey PRIMARY KEY (id),
  CONSTRAINT api_keys_tenant_id_fkey FOREIGN KEY (tenant_id)
    REFERENCES tenants (id) ON DELETE CASCADE,
  CONSTRAINT api_keys_project_fkey FOREIGN KEY (tenant_id, project_id)
    REFERENCES tenant_projects (tenant_id, id) ON DELETE CASCADE,
  CONSTRAINT api_keys_prefix_key UNIQUE (prefix),
  CONSTRAINT api_keys_secret_hash_sha256 CHECK (octet_length(secret_hash) = 32),
  CONSTRAINT api_keys_name_length CHECK (char_length(btrim(name)) BETWEEN 1 AND 200)
);

CREATE INDEX api_keys_tenant_id_idx ON api_keys (tenant_id, created_at DESC, id DESC);

-- Append-only audit trail in the Retraced event shape. The tenant is the event's
-- group; events outlive their tenant (tenant_id becomes NULL, the target keeps
-- naming what was changed).
CREATE TABLE audit_log (
  id           uuid        NOT NULL DEFAULT gen_random_uuid(),
  tenant_id    uuid,
  action       text        NOT NULL,
  crud         char(1)     NOT NULL,
  actor_id     text,
  actor_name   text,
  actor_type   text,
  actor_href   text,
  target_id    text,
  target_name  text,
  target_type  text,
  source_ip    inet,
  description  text        NOT NULL DEFAULT '',
  fields       jsonb       NOT NULL DEFAULT '{}',
  is_failure   boolean     NOT NULL DEFAULT false,
  is_anonymous boolean     NOT NULL DEFAULT false,
  created_at   timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT audit_log_pkey PRIMARY KEY (id),
  CONSTRAINT audit_log_tenant_id_fkey FOREIGN KEY (tenant_id)
    REFERENCES tenants (id) ON DELETE SET NULL,
  CONSTRAINT audit_log_action_not_blank CHECK (char_length(btrim(action)) > 0),
  CONSTRAINT audit_log_crud_valid CHECK (crud IN ('c', 'r', 'u', 'd')),
  -- Retraced: an event without an actor must say it is anonymous.
  CONSTRAINT audit_log_actor_or_anonymous CHECK (actor_id IS NOT NULL OR is_anonymous),
  CONSTRAINT audit_log_fields_object CHECK (jsonb_typeof(fields) = 'object')
);

-- "Newest events of a tenant", with id as the keyset tie-breaker.
CREATE INDEX audit_log_tenant_id_created_at_idx ON audit_log (tenant_id, created_at DESC, id DESC);

CREATE TRIGGER tenants_set_updated_at BEFORE UPDATE ON tenants
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER tenant_projects_set_updated_at BEFORE UPDATE ON tenant_projects
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER tenant_products_set_updated_at BEFORE UPDATE ON tenant_products
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER tenant_idp_config_set_updated_at BEFORE UPDATE ON tenant_idp_config
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER api_keys_set_updated_at BEFORE UPDATE ON api_keys
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
