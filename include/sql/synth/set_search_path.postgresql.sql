-- Point this transaction only (LOCAL) at the synthetic source's schema, so that the DDL of
-- create_source lands there and a pooled connection keeps its own path afterwards.
-- The placeholder is an identifier, composed with psycopg2.sql.Identifier.
SET LOCAL search_path TO {schema};
