-- Remove a synthetic source's own schema and everything in it (test clean-up; never "public").
-- The placeholder is an identifier, composed with psycopg2.sql.Identifier.
DROP SCHEMA IF EXISTS {schema} CASCADE;
