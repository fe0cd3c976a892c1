-- A tamper-evident audit log. Every event belongs to a chain (its tenant's, or
-- the platform chain for events with no tenant), carries a gapless per-chain
-- sequence number, and hash = SHA-256(previous hash || canonical(event)).
-- The canonical form is audit_canonical() below and is documented in the
-- README ("Audit log integrity"); src/domain/audit-chain.ts recomputes it
-- outside the database for verification.

-- The platform chain (events with no tenant) is keyed by the nil UUID.
-- The genesis "previous hash" of every chain is 32 zero bytes.

-- One row per chain: its newest sequence and hash (the head), and the base the
-- chain starts from (0 and zero bytes, or the last event removed by retention).
-- Writers of one chain serialise on its row, held from the insert to commit, so
-- sequence order is commit order; writers of different chains never meet.
-- No foreign key: a chain outlives its tenant.
CREATE TABLE audit_chain_heads (
  chain_id  uuid   NOT NULL,
  seq       bigint NOT NULL DEFAULT 0,
  hash      bytea  NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000',
  base_seq  bigint NOT NULL DEFAULT 0,
  base_hash bytea  NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000',
  CONSTRAINT audit_chain_heads_pkey PRIMARY KEY (chain_id),
  CONSTRAINT audit_chain_heads_hash_length CHECK (octet_length(hash) = 32 AND octet_length(base_hash) = 32),
  CONSTRAINT audit_chain_heads_base_before_head CHECK (0 <= base_seq AND base_seq <= seq)
);

-- Signed chain heads: written periodically and on demand. A copy kept outside
-- the database proves nothing up to it was removed or changed.
CREATE TABLE audit_checkpoints (
  chain_id  uuid        NOT NULL,
  seq       bigint      NOT NULL,
  hash      bytea       NOT NULL,
  signed_at timestamptz NOT NULL,
  key_id    text        NOT NULL,
  signature bytea       NOT NULL,
  CONSTRAINT audit_checkpoints_pkey PRIMARY KEY (chain_id, seq, signed_at)
);

-- What retention cut: events up to base_seq of the chain are gone, the last of
-- them had base_hash; signed like a checkpoint, so the base cannot be moved silently.
CREATE TABLE audit_retention_cuts (
  chain_id      uuid        NOT NULL,
  base_seq      bigint      NOT NULL,
  base_hash     bytea       NOT NULL,
  removed       bigint      NOT NULL,
  signed_at     timestamptz NOT NULL,
  key_id        text        NOT NULL,
  signature     bytea       NOT NULL,
  CONSTRAINT audit_retention_cuts_pkey PRIMARY KEY (chain_id, base_seq)
);

-- Per-tenant retention; NULL falls back to AUDIT_RETENTION.
ALTER TABLE tenants ADD COLUMN audit_retention interval,
  ADD CONSTRAINT tenants_audit_retention_positive CHECK (audit_retention IS NULL OR audit_retention > interval '0');

-- One value of the canonical form: its UTF-8 byte length, ':', the text, a
-- newline; NULL is '-' and a newline.
CREATE FUNCTION audit_canonical_value(v text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN CASE WHEN v IS NULL THEN E'-\n' ELSE octet_length(v)::text || ':' || v || E'\n' END;

-- The canonical form of an event (version 1), as text; hash over its UTF-8 bytes.
CREATE FUNCTION audit_canonical(
  chain_id uuid, seq bigint, id uuid, created_at timestamptz, action text, crud text,
  actor_id text, actor_name text, actor_type text, actor_href text,
  target_id text, target_name text, target_type text, source_ip inet, description text,
  fields jsonb, is_failure boolean, is_anonymous boolean, component text, external_id text
) RETURNS text
  LANGUAGE sql STABLE PARALLEL SAFE
  RETURN E'tenant-registry-audit-v1\n'
    || audit_canonical_value(chain_id::text)
    || audit_canonical_value(seq::text)
    || audit_canonical_value(id::text)
    || audit_canonical_value(to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
    || audit_canonical_value(action)
    || audit_canonical_value(crud)
    || audit_canonical_value(actor_id)
    || audit_canonical_value(actor_name)
    || audit_canonical_value(actor_type)
    || audit_canonical_value(actor_href)
    || audit_canonical_value(target_id)
    || audit_canonical_value(target_name)
    || audit_canonical_value(target_type)
    || audit_canonical_value(host(source_ip))
    || audit_canonical_value(description)
    || audit_canonical_value(fields::text)
    || audit_canonical_value(is_failure::text)
    || audit_canonical_value(is_anonymous::text)
    || audit_canonical_value(component)
    || audit_canonical_value(external_id);

ALTER TABLE audit_log
  ADD COLUMN chain_id  uuid,
  ADD COLUMN seq       bigint,
  ADD COLUMN prev_hash bytea,
  ADD COLUMN hash      bytea;

-- Existing events, chained in their current order (created_at, then id). Events
-- of tenants deleted before this migration have lost their tenant: they join
-- the platform chain.
DO $$
DECLARE
  e record;
  current_chain uuid;
  n bigint;
  prev bytea;
  next_hash bytea;
BEGIN
  FOR e IN
    SELECT a.*, coalesce(a.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid) AS chain
    FROM audit_log a
    ORDER BY chain, a.created_at, a.id
  LOOP
    IF current_chain IS DISTINCT FROM e.chain THEN
      IF current_chain IS NOT NULL THEN
        INSERT INTO audit_chain_heads (chain_id, seq, hash) VALUES (current_chain, n, prev);
      END IF;
      current_chain := e.chain;
      n := 0;
      prev := '\x0000000000000000000000000000000000000000000000000000000000000000';
    END IF;
    n := n + 1;
    next_hash := sha256(prev || convert_to(audit_canonical(
      e.chain, n, e.id, e.created_at, e.action, e.crud, e.actor_id, e.actor_name, e.actor_type, e.actor_href,
      e.target_id, e.target_name, e.target_type, e.source_ip, e.description, e.fields, e.is_failure,
      e.is_anonymous, e.component, e.external_id), 'UTF8'));
    UPDATE audit_log SET chain_id = e.chain, seq = n, prev_hash = prev, hash = next_hash WHERE id = e.id;
    prev := next_hash;
  END LOOP;
  IF current_chain IS NOT NULL THEN
    INSERT INTO audit_chain_heads (chain_id, seq, hash) VALUES (current_chain, n, prev);
  END IF;
END $$;

ALTER TABLE audit_log
  ALTER COLUMN chain_id SET NOT NULL,
  ALTER COLUMN seq SET NOT NULL,
  ALTER COLUMN prev_hash SET NOT NULL,
  ALTER COLUMN hash SET NOT NULL,
  ADD CONSTRAINT audit_log_chain_id_seq_key UNIQUE (chain_id, seq),
  ADD CONSTRAINT audit_log_seq_positive CHECK (seq > 0),
  ADD CONSTRAINT audit_log_hash_length CHECK (octet_length(hash) = 32 AND octet_length(prev_hash) = 32),
  -- An event stays in the chain it was written to; its tenant_id may only become NULL (tenant deleted).
  ADD CONSTRAINT audit_log_chain_of_tenant CHECK (tenant_id IS NULL OR tenant_id = chain_id);

-- Lists and exports walk a chain in sequence order (audit_log_chain_id_seq_key);
-- the created_at index no longer orders anything.
DROP INDEX audit_log_tenant_id_created_at_idx;

-- Appends events (a JSON array of audit_log column values; created_at
-- defaults to the transaction's time) to their chains: the one writer of the
-- log. An event whose (component, external_id) is already stored, or appears
-- earlier in the batch, is skipped and takes no sequence number. Returns how
-- many were stored.
CREATE FUNCTION audit_append(events jsonb) RETURNS integer
  LANGUAGE plpgsql
AS $$
DECLARE
  nil constant uuid := '00000000-0000-0000-0000-000000000000';
  rows audit_log[];
  canon text[];
  chains uuid[];
  head_hash bytea[];
  hashes bytea[];
  link record;
  prevs bytea[];
  current_chain uuid;
  prev bytea;
  total integer;
BEGIN
  -- Every chain of the batch, created if new, then locked in chain order (two
  -- batches over the same tenants cannot deadlock) until this transaction ends.
  INSERT INTO audit_chain_heads (chain_id)
  SELECT DISTINCT coalesce((e->>'tenant_id')::uuid, nil) FROM jsonb_array_elements(events) AS e
  ON CONFLICT (chain_id) DO NOTHING;
  PERFORM 1 FROM audit_chain_heads h
  WHERE h.chain_id IN (SELECT DISTINCT coalesce((e->>'tenant_id')::uuid, nil) FROM jsonb_array_elements(events) AS e)
  ORDER BY h.chain_id
  FOR UPDATE;

  -- Read after the locks: earlier writers of these chains have committed and are visible.
  WITH batch AS (
    SELECT x.*, coalesce(x.tenant_id, nil) AS chain, b.n
    FROM jsonb_array_elements(events) WITH ORDINALITY AS b(value, n)
    CROSS JOIN LATERAL jsonb_to_record(b.value) AS x(
      tenant_id uuid, action text, crud text, actor_id text, actor_name text, actor_type text, actor_href text,
      target_id text, target_name text, target_type text, source_ip inet, description text, fields jsonb,
      is_failure boolean, is_anonymous boolean, created_at timestamptz, external_id text, component text
    )
  ), firsts AS (
    SELECT b.*, row_number() OVER (PARTITION BY b.component, b.external_id ORDER BY b.n) AS nth FROM batch b
  ), fresh AS (
    SELECT f.* FROM firsts f
    WHERE f.external_id IS NULL
       OR (f.nth = 1 AND NOT EXISTS (
             SELECT 1 FROM audit_log a WHERE a.component = coalesce(f.component, 'tenant-registry') AND a.external_id = f.external_id))
  ), numbered AS (
    SELECT f.*, gen_random_uuid() AS id, coalesce(f.created_at, now()) AS at,
           coalesce(f.component, 'tenant-registry') AS comp, coalesce(f.description, '') AS descr,
           coalesce(f.fields, '{}') AS flds, coalesce(f.is_failure, false) AS failure,
           coalesce(f.is_anonymous, false) AS anonymous,
           h.seq + row_number() OVER (PARTITION BY f.chain ORDER BY f.n) AS next_seq, h.hash AS head
    FROM fresh f JOIN audit_chain_heads h ON h.chain_id = f.chain
  )
  SELECT
    array_agg(ROW(
      n.id, n.tenant_id, n.action, n.crud, n.actor_id, n.actor_name, n.actor_type, n.actor_href,
      n.target_id, n.target_name, n.target_type, n.source_ip, n.descr, n.flds, n.failure, n.anonymous, n.at,
      n.external_id, n.comp, n.chain, n.next_seq, NULL, NULL
    )::audit_log),
    array_agg(audit_canonical(
      n.chain, n.next_seq, n.id, n.at, n.action, n.crud, n.actor_id, n.actor_name, n.actor_type, n.actor_href,
      n.target_id, n.target_name, n.target_type, n.source_ip, n.descr, n.flds, n.failure, n.anonymous,
      n.comp, n.external_id
    )),
    array_agg(n.chain),
    array_agg(n.head)
  INTO rows, canon, chains, head_hash
  -- Sorted once; the aggregates keep the subquery's order.
  FROM (SELECT * FROM numbered ORDER BY chain, next_seq) n;

  total := coalesce(cardinality(rows), 0);
  IF total = 0 THEN RETURN 0; END IF;
  hashes := array_fill(NULL::bytea, ARRAY[total]);
  prevs := array_fill(NULL::bytea, ARRAY[total]);
  -- One pass in order (indexing the arrays would walk them from the start each time).
  FOR link IN SELECT * FROM unnest(canon, chains, head_hash) WITH ORDINALITY AS u(canonical, chain, head, i) LOOP
    IF current_chain IS DISTINCT FROM link.chain THEN
      current_chain := link.chain;
      prev := link.head;
    END IF;
    prevs[link.i] := prev;
    prev := sha256(prev || convert_to(link.canonical, 'UTF8'));
    hashes[link.i] := prev;
  END LOOP;

  WITH inserted AS (
    INSERT INTO audit_log (
      id, tenant_id, action, crud, actor_id, actor_name, actor_type, actor_href,
      target_id, target_name, target_type, source_ip, description, fields, is_failure, is_anonymous,
      created_at, external_id, component, chain_id, seq, prev_hash, hash
    )
    SELECT u.id, u.tenant_id, u.action, u.crud, u.actor_id, u.actor_name, u.actor_type, u.actor_href,
           u.target_id, u.target_name, u.target_type, u.source_ip, u.description, u.fields, u.is_failure,
           u.is_anonymous, u.created_at, u.external_id, u.component, u.chain_id, u.seq, u.new_prev, u.new_hash
    -- Several arrays: one row per index, the composite expanded to its columns.
    FROM unnest(rows, prevs, hashes) AS u(
      id, tenant_id, action, crud, actor_id, actor_name, actor_type, actor_href,
      target_id, target_name, target_type, source_ip, description, fields, is_failure, is_anonymous,
      created_at, external_id, component, chain_id, seq, no_prev, no_hash, new_prev, new_hash)
    RETURNING chain_id, seq, hash
  )
  UPDATE audit_chain_heads c SET seq = t.seq, hash = t.hash
  FROM (SELECT DISTINCT ON (i.chain_id) i.chain_id, i.seq, i.hash FROM inserted i ORDER BY i.chain_id, i.seq DESC) t
  WHERE c.chain_id = t.chain_id;
  RETURN total;
END $$;

-- A row inserted without a sequence (by hand, or by code that does not call
-- audit_append) is chained too, one row at a time: nothing reaches the table
-- unchained. audit_append supplies the sequence, so this never fires for it.
CREATE FUNCTION audit_log_chain_row() RETURNS trigger
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

CREATE TRIGGER audit_log_chain_unsequenced BEFORE INSERT ON audit_log
  FOR EACH ROW WHEN (NEW.seq IS NULL) EXECUTE FUNCTION audit_log_chain_row();

-- Append-only for real. The only UPDATE allowed is the foreign key's SET NULL
-- when a tenant is deleted (its events stay in its chain); the only DELETE is
-- retention's, through audit_apply_retention() below. Production should also
-- withhold UPDATE, DELETE and TRUNCATE from the service's role (see README).
CREATE FUNCTION audit_log_refuse_changes() RETURNS trigger
  LANGUAGE plpgsql
AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('tenant_registry.audit_retention', true) = 'on' THEN
    RETURN OLD;
  END IF;
  IF TG_OP = 'UPDATE' AND OLD.tenant_id IS NOT NULL AND NEW.tenant_id IS NULL
     AND (to_jsonb(NEW) - 'tenant_id') = (to_jsonb(OLD) - 'tenant_id')
     AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = OLD.tenant_id) THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_changes();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_changes();

-- Signed records are append-only too.
CREATE FUNCTION audit_refuse_changes() RETURNS trigger
  LANGUAGE plpgsql
AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_changes();
CREATE TRIGGER audit_retention_cuts_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_retention_cuts
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_changes();

-- The one deleting path: removes the events of one chain up to and including
-- sequence `through` (a prefix from the current base), makes the last of them
-- the chain's base, and records the signed cut. The caller signs
-- (chain, through, hash of event `through`). SECURITY DEFINER, so the
-- service's role needs EXECUTE on this function but no DELETE on the table.
CREATE FUNCTION audit_apply_retention(
  p_chain uuid, p_through bigint, p_hash bytea, p_signed_at timestamptz, p_key_id text, p_signature bytea
) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
  head audit_chain_heads;
  last_hash bytea;
  removed bigint;
BEGIN
  SELECT * INTO head FROM audit_chain_heads WHERE chain_id = p_chain FOR UPDATE;
  IF NOT FOUND OR p_through <= head.base_seq OR p_through > head.seq THEN
    RAISE EXCEPTION 'retention cut % outside the chain', p_through USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT hash INTO last_hash FROM audit_log WHERE chain_id = p_chain AND seq = p_through;
  IF last_hash IS DISTINCT FROM p_hash THEN
    RAISE EXCEPTION 'retention cut % does not match the stored event', p_through USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM set_config('tenant_registry.audit_retention', 'on', true);
  DELETE FROM audit_log WHERE chain_id = p_chain AND seq > head.base_seq AND seq <= p_through;
  GET DIAGNOSTICS removed = ROW_COUNT;
  PERFORM set_config('tenant_registry.audit_retention', '', true);
  UPDATE audit_chain_heads SET base_seq = p_through, base_hash = p_hash WHERE chain_id = p_chain;
  INSERT INTO audit_retention_cuts (chain_id, base_seq, base_hash, removed, signed_at, key_id, signature)
  VALUES (p_chain, p_through, p_hash, removed, p_signed_at, p_key_id, p_signature);
  RETURN removed;
END $$;
