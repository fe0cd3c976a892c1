-- Recording that a key was used is not an update of the key: updated_at keeps
-- meaning "the key's settings last changed". Only the usage flush writes
-- last_used_at, so an update that moves it is a usage record.
DROP TRIGGER api_keys_set_updated_at ON api_keys;
CREATE TRIGGER api_keys_set_updated_at BEFORE UPDATE ON api_keys
  FOR EACH ROW WHEN (OLD.last_used_at IS NOT DISTINCT FROM NEW.last_used_at)
  EXECUTE FUNCTION set_updated_at();
