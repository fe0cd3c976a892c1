-- Indexes for the reads whose cost grew with the data (measured at 1M rows).

-- ListTenants `query`: a case-insensitive substring of slug or name
-- (`slug ILIKE '%q%' OR name ILIKE '%q%'`, src/db/queries/tenants.ts). No btree
-- can serve a leading wildcard; trigram GIN indexes can, one per column so the
-- OR becomes a BitmapOr. At 1M tenants a rare term went from a 2.5 s sequential
-- scan to under 1 ms. pg_trgm is a trusted extension: the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX tenants_slug_trgm_idx ON tenants USING gin (slug gin_trgm_ops);
CREATE INDEX tenants_name_trgm_idx ON tenants USING gin (name gin_trgm_ops);

-- ListAuditEvents / ExportAuditEvents filters (src/db/queries/audit.ts) page a
-- tenant's chain in sequence order (chain_id = tenant, ORDER BY seq). A selective
-- filter on audit_log_chain_id_seq_key walks the tenant's whole chain: a rare
-- exact action took ~440 ms at 1M events of one tenant. Each index below puts
-- the filter's column between the chain and the sequence, so a first page is a
-- range scan already in order (read backwards for newest-first lists).
-- text_pattern_ops: `action LIKE 'prefix%'` uses the index under any collation.
CREATE INDEX audit_log_chain_id_action_idx ON audit_log (chain_id, action text_pattern_ops, seq);
CREATE INDEX audit_log_chain_id_actor_id_idx ON audit_log (chain_id, actor_id, seq);
CREATE INDEX audit_log_chain_id_target_id_idx ON audit_log (chain_id, target_id, seq);
CREATE INDEX audit_log_chain_id_target_type_idx ON audit_log (chain_id, target_type, seq);
-- Failures are rare; a partial index keeps `is_failure = true` pages cheap for little space.
CREATE INDEX audit_log_chain_id_failures_idx ON audit_log (chain_id, seq) WHERE is_failure;
