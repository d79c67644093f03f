SELECT version, name, checksum FROM kbi_schema_version WHERE component = :component ORDER BY version
