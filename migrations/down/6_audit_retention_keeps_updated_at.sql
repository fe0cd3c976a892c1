-- Dev-only rollback of 6_audit_retention_keeps_updated_at.sql.
ALTER TABLE tenants DROP CONSTRAINT tenants_audit_retention_at_most_a_century;
DROP TRIGGER tenants_set_updated_at ON tenants;
CREATE TRIGGER tenants_set_updated_at BEFORE UPDATE ON tenants
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
