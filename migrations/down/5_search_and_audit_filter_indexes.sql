-- Dev-only rollback of 5_search_and_audit_filter_indexes.sql.
DROP INDEX audit_log_chain_id_failures_idx;
DROP INDEX audit_log_chain_id_target_type_idx;
DROP INDEX audit_log_chain_id_target_id_idx;
DROP INDEX audit_log_chain_id_actor_id_idx;
DROP INDEX audit_log_chain_id_action_idx;
DROP INDEX tenants_name_trgm_idx;
DROP INDEX tenants_slug_trgm_idx;
-- Without CASCADE: if anything else came to use pg_trgm, this fails instead of dropping it.
DROP EXTENSION IF EXISTS pg_trgm;
