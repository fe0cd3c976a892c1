-- Dev-only rollback of 8_audit_fields_size.sql.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_fields_size;
