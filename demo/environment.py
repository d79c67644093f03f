"""The demo's world under one directory (interfaces.md §6), also used by the end-to-end tests.

``var/demo/kbi.db`` the embedded KBI source, ``recipients.yaml`` the registry, ``keys/`` the
municipalities' key pairs (and the transfer server's SSH keys), ``sftp/<nis>/inbox/`` the
transfer server, ``outbox/mail`` and ``outbox/sms`` what was sent, ``ledger.db``,
``quarantine.db``, ``airflow/`` the Airflow home, ``staging/`` and ``reports/``.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import yaml

from demo import keys
from demo.servers import sftp as sftp_server
from demo.servers.sms import apprise_url_template
from kbi import reference, settings, synth

BRUSSELS_ENTRY = "21004"  # in the demo registry by mistake: P1 refuses it


@dataclass(frozen=True)
class Places:
    var_dir: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "var_dir", self.var_dir.resolve())

    @property
    def kbi_db(self) -> Path:
        return self.var_dir / "kbi.db"

    @property
    def ledger_db(self) -> Path:
        return self.var_dir / "ledger.db"

    @property
    def quarantine_db(self) -> Path:
        return self.var_dir / "quarantine.db"

    @property
    def registry(self) -> Path:
        return self.var_dir / "recipients.yaml"

    @property
    def keys(self) -> Path:
        return self.var_dir / "keys"

    @property
    def ssh_keys(self) -> Path:
        return self.var_dir / "keys" / "sftp"

    @property
    def sftp_root(self) -> Path:
        return self.var_dir / "sftp"

    @property
    def mail_outbox(self) -> Path:
        return self.var_dir / "outbox" / "mail"

    @property
    def sms_outbox(self) -> Path:
        return self.var_dir / "outbox" / "sms"

    @property
    def airflow_home(self) -> Path:
        return self.var_dir / "airflow"

    @property
    def staging(self) -> Path:
        return self.var_dir / "staging"

    @property
    def reports(self) -> Path:
        return self.var_dir / "reports"

    @property
    def run(self) -> Path:
        """Pid files, port files and server logs of the running demo stack."""
        return self.var_dir / "run"

    @property
    def secrets(self) -> Path:
        return self.var_dir / "secrets.json"

    def inbox(self, nis_code: str) -> Path:
        return self.sftp_root / nis_code / "inbox"


def build_source(places: Places, rows: int, seed: int, reference_date: date, today: date) -> dict[str, int]:
    places.var_dir.mkdir(parents=True, exist_ok=True)
    table = synth.generate(rows, seed=seed, reference_date=reference_date, today=today)
    synth.write_sqlite(table, places.kbi_db)
    return synth.describe(table, reference_date)


@dataclass(frozen=True)
class DemoRecipient:
    nis_code: str
    name: str
    mode: str = "pubkey"
    key_kind: str = "cv25519"
    with_names: bool = False
    in_force_from: date | None = None
    terminated_on: date | None = None


def demo_recipients(today: date, only: set[str] | None = None) -> list[DemoRecipient]:
    """The demo's protocol landscape: most on the template, some with names, a few not in force."""
    flemish = [m for m in reference.municipalities().values() if m.is_flemish]
    out: list[DemoRecipient] = []
    for i, m in enumerate(sorted(flemish, key=lambda m: m.nis_code)):
        if only is not None and m.nis_code not in only:
            continue
        if i % 71 == 70:
            continue  # no protocol signed: not in the registry
        r = DemoRecipient(m.nis_code, m.name)
        if i % 3 == 2:
            r = DemoRecipient(m.nis_code, m.name, mode="passphrase")
        if i % 10 == 4:
            r = DemoRecipient(**{**r.__dict__, "with_names": True})
        if i % 97 == 50:
            r = DemoRecipient(**{**r.__dict__, "in_force_from": today + timedelta(days=90)})  # P5: not yet
        if i % 113 == 60:
            r = DemoRecipient(**{**r.__dict__, "terminated_on": today - timedelta(days=400)})  # P5: ended
        if i % 131 == 30:
            r = DemoRecipient(**{**r.__dict__, "terminated_on": today - timedelta(days=60)})  # notice running
        if i == 100:
            r = DemoRecipient(**{**r.__dict__, "mode": "pubkey", "key_kind": "expired"})  # P6 refusal
        if i == 200:
            r = DemoRecipient(**{**r.__dict__, "mode": "pubkey", "key_kind": "rsa2048"})  # P6 refusal
        if i in (0, 150):
            r = DemoRecipient(**{**r.__dict__, "mode": "pubkey", "key_kind": "rsa3072"})
        out.append(r)
    if only is None or BRUSSELS_ENTRY in only:
        out.append(DemoRecipient(BRUSSELS_ENTRY, reference.municipalities()[BRUSSELS_ENTRY].name))
    return out


def _slug(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum()) or "gemeente"


def _phone(nis_code: str) -> str:
    return f"+32470{int(nis_code):06d}"


def build_registry(places: Places, recipients: list[DemoRecipient], today: date) -> Path:
    """Write the registry and make the key pairs it pins (reused when they already exist)."""
    entries = []
    places.keys.mkdir(parents=True, exist_ok=True)
    fingerprints_file = places.keys / "fingerprints.json"
    known = json.loads(fingerprints_file.read_text()) if fingerprints_file.exists() else {}
    for r in recipients:
        fields = ["rijksregisternummer"]
        if r.with_names:
            fields += ["naam", "voornaam"]
        fields += ["inburgeringscontract_ondertekend", "attest_inburgering_behaald"]
        encryption: dict[str, object] = {"mode": r.mode}
        if r.mode == "pubkey":
            tag = f"{r.nis_code}:{r.key_kind}"
            public = places.keys / f"{r.nis_code}.asc"
            if tag not in known or not public.exists():
                pair = keys.make_key(
                    places.keys,
                    r.nis_code,
                    f"Gemeente {r.name}",
                    f"privacy@{_slug(r.name)}.example",
                    r.key_kind,
                )
                known[tag] = pair.fingerprint
            encryption |= {"fingerprint": known[tag], "key_file": f"keys/{r.nis_code}.asc"}
        signed = (r.in_force_from or date(2024, 2, 1)) - timedelta(days=30)
        entries.append(
            {
                "nis_code": r.nis_code,
                "name": r.name,
                "protocol": {
                    "signed_on": signed,
                    "in_force_from": r.in_force_from or date(2024, 3, 1),
                    "terminated_on": r.terminated_on,
                    "fields": fields,
                },
                "contacts": {"email": [f"privacy@{_slug(r.name)}.example"], "sms": [_phone(r.nis_code)]},
                "encryption": encryption,
                "sftp": {"inbox": f"/{r.nis_code}/inbox"},
            }
        )
    fingerprints_file.write_text(json.dumps(known, indent=1, sort_keys=True))
    header = (
        "# Demo recipients registry (interfaces.md §2), generated by `make demo`.\n"
        "# In production this file is version-controlled; see the README, 'Adding a municipality'.\n"
    )
    places.registry.write_text(header + yaml.safe_dump(entries, sort_keys=False, allow_unicode=True))
    return places.registry


def prepare_sftp_root(places: Places, nis_codes: list[str]) -> None:
    for nis in nis_codes:
        places.inbox(nis).mkdir(parents=True, exist_ok=True)


def secrets_of(places: Places) -> dict[str, str]:
    """Demo-only secrets, made once: ledger chain key, Airflow JWT and Fernet keys, admin password."""
    if places.secrets.exists():
        return json.loads(places.secrets.read_text())
    from cryptography.fernet import Fernet

    values = {
        "chain_secret": secrets.token_hex(32),
        "jwt_secret": secrets.token_urlsafe(64),
        "fernet_key": Fernet.generate_key().decode(),
        "admin_password": "admin",
    }
    places.var_dir.mkdir(parents=True, exist_ok=True)
    places.secrets.write_text(json.dumps(values, indent=1))
    places.secrets.chmod(0o600)
    return values


def sqlite_agency_connections(ledger_db: Path, quarantine_db: Path, chain_secret: str) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` variables that put the ledger and the quarantine in SQLite files (as
    ``demo.pgdb.Database.agency_connections`` does in a PostgreSQL database)."""
    return {
        "AIRFLOW_CONN_KBI_LEDGER": json.dumps(
            {"conn_type": "sqlite", "host": str(ledger_db), "extra": {"chain_secret": chain_secret}}
        ),
        "AIRFLOW_CONN_KBI_QUARANTINE": json.dumps({"conn_type": "sqlite", "host": str(quarantine_db)}),
    }


def connection_env(places: Places, *, sftp_port: int, smtp_port: int, sms_port: int) -> dict[str, str]:
    """AIRFLOW_CONN_* and KBI_* variables that point the pipeline at the demo's world."""
    host_key, client_key, _ = sftp_server.ensure_keys(places.ssh_keys)
    chain_secret = secrets_of(places)["chain_secret"]

    def conn(payload: dict) -> str:
        return json.dumps(payload)

    return {
        "AIRFLOW_CONN_KBI_SOURCE": conn({"conn_type": "sqlite", "host": str(places.kbi_db)}),
        **sqlite_agency_connections(places.ledger_db, places.quarantine_db, chain_secret),
        "AIRFLOW_CONN_KBI_SFTP": conn(
            {
                "conn_type": "sftp",
                "host": "127.0.0.1",
                "port": sftp_port,
                "login": "agii",
                "extra": {
                    "key_file": str(client_key),
                    "host_key": sftp_server.public_key_line(host_key),
                    "no_host_key_check": False,
                    "look_for_keys": False,
                    "conn_timeout": 10,
                },
            }
        ),
        "AIRFLOW_CONN_KBI_SMS": conn(
            {
                "conn_type": "apprise",
                "extra": {"config": {"path": apprise_url_template(sms_port), "tag": "sms"}},
            }
        ),
        "AIRFLOW_CONN_KBI_SMTP": conn(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp_port,
                "extra": {
                    "disable_tls": True,
                    "disable_ssl": True,
                    "from_email": "kbi-levering@integratie-inburgering.example",
                    "timeout": 10,
                    "retry_limit": 1,
                },
            }
        ),
        "KBI_VAR_DIR": str(places.var_dir),
        "KBI_REGISTRY": str(places.registry),
        "KBI_STAGING_DIR": str(places.staging),
        "KBI_REPORTS_DIR": str(places.reports),
    }


def airflow_env(
    places: Places,
    *,
    api_port: int,
    log_server_port: int,
    executor: str = "kbi.executor.PreloadingLocalExecutor",
    db_url: str | None = None,
    broker_url: str | None = None,
) -> dict[str, str]:
    """The Airflow settings of the demo: its own home and SQLite database, LocalExecutor.

    ``executor``, ``db_url`` and ``broker_url`` let a test run the same stack distributed
    (CeleryExecutor on PostgreSQL and Redis); the Celery results go to the metadata database.
    """
    s = secrets_of(places)
    home = places.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({"admin": s["admin_password"]}))
    passwords.chmod(0o600)
    base = f"http://127.0.0.1:{api_port}"
    values = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": executor,
        # Executor slots for the deliveries of a run (the other tasks run one at a time).
        "AIRFLOW__CORE__PARALLELISM": str(settings.DELIVERIES_AT_ONCE),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__FERNET_KEY": s["fernet_key"],
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",  # a login, even in the demo
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url or f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": s["jwt_secret"],
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_server_port),
        "PYTHONPATH": os.pathsep.join([str(settings.PROJECT_ROOT / "plugins"), str(settings.PROJECT_ROOT)]),
    }
    if broker_url:
        if not db_url:
            raise ValueError("a Celery broker needs a shared metadata database (db_url) for its results")
        values["AIRFLOW__CELERY__BROKER_URL"] = broker_url
        values["AIRFLOW__CELERY__RESULT_BACKEND"] = f"db+{db_url}"
        # As in docker-compose.yaml: the worker imports the task modules once, before its pool forks.
        values["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] = "kbi.celery_config.CELERY_CONFIG"
    return values
