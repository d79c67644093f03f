INSERT INTO kbi_schema_version (component, version, name, checksum, applied_at)
VALUES (:component, :version, :name, :checksum, :applied_at)
