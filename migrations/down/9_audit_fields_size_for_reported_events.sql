-- Dev-only rollback of 9_audit_fields_size_for_reported_events.sql: the CHECK as migration 8 wrote it.
ALTER TABLE audit_log
  DROP CONSTRAINT audit_log_fields_size,
  ADD CONSTRAINT audit_log_fields_size CHECK (octet_length(fields::text) <= 65536) NOT VALID;
