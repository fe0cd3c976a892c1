-- An event's fields are bounded as stored: jsonb text, what the chain hashes and every reader
-- is sent. The request limit (4 MiB) was the only bound, so one event could be megabytes and a
-- page of 500 gigabytes for the server to hold. The service checks the same figure first and
-- names the event; this is the rule itself, for every writer. NOT VALID: rows written before
-- stay as they are (the log is append-only), and adding it does not scan the log.
ALTER TABLE audit_log
  ADD CONSTRAINT audit_log_fields_size CHECK (octet_length(fields::text) <= 65536) NOT VALID;
