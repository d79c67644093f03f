#!/usr/bin/env bash
# Runs once, on an empty data directory, after 01-kbi-databases.sql (the postgres image's
# docker-entrypoint-initdb.d). The ledger and the quarantine each get their own login role and
# own their database; nobody else may connect (the airflow superuser aside), so the quarantine's
# personal data is reached only through the kbi_quarantine connection.
# Passwords come from the environment (KBI_LEDGER_DB_PASSWORD, KBI_QUARANTINE_DB_PASSWORD) and
# are passed to psql as variables, never spliced into the SQL text by the shell.
set -euo pipefail

: "${KBI_LEDGER_DB_PASSWORD:?}" "${KBI_QUARANTINE_DB_PASSWORD:?}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
  -v ledger_password="$KBI_LEDGER_DB_PASSWORD" \
  -v quarantine_password="$KBI_QUARANTINE_DB_PASSWORD" <<'SQL'
CREATE ROLE kbi_ledger LOGIN PASSWORD :'ledger_password';
CREATE ROLE kbi_quarantine LOGIN PASSWORD :'quarantine_password';
ALTER DATABASE kbi_ledger OWNER TO kbi_ledger;
ALTER DATABASE kbi_quarantine OWNER TO kbi_quarantine;
REVOKE ALL ON DATABASE kbi_ledger FROM PUBLIC;
REVOKE ALL ON DATABASE kbi_quarantine FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE kbi_ledger TO kbi_ledger;
GRANT CONNECT, TEMPORARY ON DATABASE kbi_quarantine TO kbi_quarantine;
SQL
