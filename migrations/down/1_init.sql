-- Dev-only rollback of 1_init.sql: leaves no table, function or enum behind.
DROP TABLE IF EXISTS audit_log, api_keys, tenant_idp_config, tenant_products, tenant_projects, tenants;
DROP FUNCTION IF EXISTS set_updated_at();
DROP TYPE IF EXISTS idp_protocol, product_code, tenant_plan, tenant_status;
