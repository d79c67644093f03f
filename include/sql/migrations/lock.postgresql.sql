-- Serialise migrations of concurrent runs (released at commit).
SELECT pg_advisory_xact_lock(hashtext('kbi_schema_version'))
