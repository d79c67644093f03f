#!/usr/bin/env bash
# One-shot set-up of the compose deployment (service airflow-init; runs as root, then exits 0).
# `docker compose up` runs it before Airflow starts, every time, so it is idempotent:
#   1. the named volumes belong to AIRFLOW_UID with group 0 (the official image's convention);
#   2. the first admin's password file for the SimpleAuthManager, from AIRFLOW_ADMIN_PASSWORD
#      (changing the variable and running `docker compose up -d` again changes the password);
#   3. Airflow's metadata schema (`airflow db migrate`) and the ledger's (`kbi ledger migrate`),
#      as AIRFLOW_UID, not root;
#   4. the recipients registry is validated when present (a broken one stops the deployment).
set -euo pipefail

uid=${AIRFLOW_UID:-50000}
: "${AIRFLOW_ADMIN_PASSWORD:?set AIRFLOW_ADMIN_PASSWORD in .env}"
passwords=${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?}

say() { printf 'airflow-init: %s\n' "$*"; }
# HOME too: the image installs Airflow for its airflow user under /home/airflow/.local.
as_airflow() { HOME=/home/airflow setpriv --reuid="$uid" --regid=0 --clear-groups -- "$@"; }

# Top-level only: a recursive chown of a large log volume on every start is slow and pointless.
own() {
  local mode=$1 dir
  shift
  for dir in "$@"; do
    mkdir -p "$dir"
    chown "$uid:0" "$dir"
    chmod "$mode" "$dir"
  done
}
own 0775 /opt/airflow/logs /opt/kbi/reports
own 0770 /opt/kbi/staging "$(dirname "$passwords")"

# JSON-encoded by Python, so any character in the password is safe; replaced atomically.
python - "$passwords" <<'PY'
import json
import os
import sys

path = sys.argv[1]
with open(path + ".new", "w", encoding="utf-8") as f:
    json.dump({"admin": os.environ["AIRFLOW_ADMIN_PASSWORD"]}, f)
os.chmod(path + ".new", 0o600)
os.replace(path + ".new", path)
PY
chown "$uid:0" "$passwords"
say "admin password file written ($passwords)"

as_airflow airflow db migrate
say "Airflow metadata database migrated"
as_airflow python -m kbi ledger migrate
registry=${KBI_REGISTRY:-/opt/airflow/config/recipients.yaml}
if [[ -r $registry ]]; then
  as_airflow python -m kbi registry check "$registry"
else
  say "warning: no recipients registry at $registry yet (copy config/recipients.example.yaml)"
fi
as_airflow airflow version
