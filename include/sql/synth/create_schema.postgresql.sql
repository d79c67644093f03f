-- The schema that holds a synthetic source (tests use their own, never touching other data).
-- The placeholder is an identifier, composed with psycopg2.sql.Identifier, never a bound value.
CREATE SCHEMA IF NOT EXISTS {schema};
