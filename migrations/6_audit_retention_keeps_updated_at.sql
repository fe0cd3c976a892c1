-- A tenant's audit retention is an audit-log policy, not a setting of the
-- Tenant message: changing it must not move updated_at, which every cached
-- tenant answer carries (no change notice goes out for it). Only
-- SetAuditRetention writes audit_retention, so an update that moves it is
-- that, and nothing else.
DROP TRIGGER tenants_set_updated_at ON tenants;
CREATE TRIGGER tenants_set_updated_at BEFORE UPDATE ON tenants
  FOR EACH ROW WHEN (OLD.audit_retention IS NOT DISTINCT FROM NEW.audit_retention)
  EXECUTE FUNCTION set_updated_at();

-- The period the API accepts (whole seconds, 1 day to 36,500 days) is the
-- service's rule; the schema keeps what any writer must respect.
ALTER TABLE tenants ADD CONSTRAINT tenants_audit_retention_at_most_a_century
  CHECK (audit_retention IS NULL OR audit_retention <= interval '36500 days');
