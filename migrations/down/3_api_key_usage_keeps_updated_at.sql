-- Dev-only rollback of 3_api_key_usage_keeps_updated_at.sql.
DROP TRIGGER api_keys_set_updated_at ON api_keys;
CREATE TRIGGER api_keys_set_updated_at BEFORE UPDATE ON api_keys
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
