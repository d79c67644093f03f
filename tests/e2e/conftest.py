"""The end-to-end world: a demo directory with a synthetic KBI, a registry with every kind of
recipient, real key pairs, and the real embedded SFTP, SMTP and SMS servers, wired to the DAG
through AIRFLOW_CONN_* variables exactly as `make demo` wires them."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from demo import environment as env
from demo.environment import DemoRecipient
from demo.servers.mail import MailSink
from demo.servers.sftp import SftpServer, ensure_keys
from demo.servers.sms import SmsSink
from kbi import registry, synth

ROOT = Path(__file__).resolve().parents[2]


def e2e_recipients(today: date) -> list[DemoRecipient]:
    """Every kind of recipient once: both modes, both field sets, refusals under P1, P5 and P6."""
    return [
        DemoRecipient("11002", "Antwerpen", "pubkey", "rsa3072", with_names=True),
        DemoRecipient("44021", "Gent", "passphrase", with_names=True),
        DemoRecipient("11001", "Aartselaar", "pubkey"),
        DemoRecipient("23106", "Pajottegem", "passphrase"),  # a 2025 merger: pre-2025 codes map here
        DemoRecipient("71072", "Hasselt", "pubkey"),
        DemoRecipient("12025", "Mechelen", "passphrase"),
        DemoRecipient("24062", "Leuven", "pubkey", with_names=True),
        DemoRecipient("31005", "Brugge", "pubkey", terminated_on=date(today.year, 1, 1)),  # notice running
        DemoRecipient("13014", "Hoogstraten", "pubkey", in_force_from=date(today.year + 1, 1, 1)),  # P5
        DemoRecipient("13036", "Retie", "passphrase", terminated_on=today - timedelta(days=400)),  # P5 ended
        DemoRecipient("24001", "Aarschot", "pubkey", "expired"),  # P6
        DemoRecipient("21004", "Brussel", "pubkey"),  # P1
    ]


RECEIVING = ("11002", "44021", "11001", "23106", "71072", "12025", "24062", "31005")
REFUSED = {"13014": "P5", "13036": "P5", "24001": "P6", "21004": "P1"}


@dataclass
class World:
    places: env.Places
    today: date
    sftp: SftpServer
    mail: MailSink
    sms: SmsSink
    env: dict[str, str]
    monkeypatch: pytest.MonkeyPatch
    source_rows: list[dict] = field(default_factory=list)

    @property
    def registry(self) -> registry.Registry:
        return registry.load(self.places.registry)

    def inbox_files(self, nis: str) -> list[Path]:
        inbox = self.places.inbox(nis)
        return sorted(inbox.iterdir()) if inbox.exists() else []

    def all_server_files(self) -> list[Path]:
        return sorted(p for p in self.places.sftp_root.rglob("*") if p.is_file())

    def set_env(self, **values: str) -> None:
        for k, v in values.items():
            self.monkeypatch.setenv(k, v)
            self.env[k] = v

    def pin_another_host_key(self) -> None:
        """Pin a host key in connection kbi_sftp that the server does not have (as after the
        server's key changed, or with a man in the middle)."""
        from demo.servers.sftp import ensure_keys, public_key_line

        conn = json.loads(self.env["AIRFLOW_CONN_KBI_SFTP"])
        conn["extra"]["host_key"] = public_key_line(ensure_keys(self.places.var_dir / "other-host-key")[0])
        self.set_env(AIRFLOW_CONN_KBI_SFTP=json.dumps(conn))

    def sms_to(self, phone: str) -> list[dict]:
        """The payloads the SMS gateway received for ``phone``, oldest first."""
        return [m["payload"] for m in self.sms.messages() if m["payload"].get("to") == phone]

    def security_alerts(self) -> list:
        return [m for m in self.mail.messages() if str(m["Subject"]).startswith("[KBI] SECURITY")]


PASSPHRASE_SMS = re.compile(
    r"wachtwoord voor (?P<file>\S+\.csv\.gpg): (?P<passphrase>[a-z0-9]{4}(?:-[a-z0-9]{4}){6})\b"
)


def passphrases(payloads: list[dict]) -> dict[str, str]:
    """File name → the passphrase its SMS carried (the latest, should there be several)."""
    found = {}
    for payload in payloads:
        if match := PASSPHRASE_SMS.search(payload["message"]):
            found[match["file"]] = match["passphrase"]
    return found


def brussels_today() -> date:
    return datetime.now(ZoneInfo("Europe/Brussels")).date()


def read_view(db_path: Path) -> list[dict]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM kbi_inburgeraar")]
    finally:
        conn.close()


@pytest.fixture(scope="session")
def key_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Key pairs are made once per session (RSA-3072 takes a while) and copied into each world."""
    places = env.Places(tmp_path_factory.mktemp("keycache"))
    env.build_registry(places, e2e_recipients(brussels_today()), brussels_today())
    return places.keys


def stack_world(root: Path, key_cache: Path, seed: int, rows: int = 2000) -> env.Places:
    """The places of a test that runs the whole stack: the session's key pairs, a seeded
    synthetic KBI, the e2e registry and an SFTP root with an inbox per municipality."""
    import shutil

    today = brussels_today()
    places = env.Places(root)
    places.var_dir.mkdir(parents=True)
    shutil.copytree(key_cache, places.keys)
    synth.write_sqlite(synth.generate(rows, seed=seed, reference_date=today, today=today), places.kbi_db)
    recipients = e2e_recipients(today)
    env.build_registry(places, recipients, today)
    env.prepare_sftp_root(places, [r.nis_code for r in recipients])
    return places


@pytest.fixture
def world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: Path, key_cache: Path
) -> Iterator[World]:
    import shutil

    today = brussels_today()
    places = env.Places(tmp_path / "demo")
    places.var_dir.mkdir(parents=True)
    shutil.copytree(key_cache, places.keys)
    table = synth.generate(3000, seed=11, reference_date=today, today=today)
    synth.write_sqlite(table, places.kbi_db)
    recipients = e2e_recipients(today)
    env.build_registry(places, recipients, today)
    env.prepare_sftp_root(places, [r.nis_code for r in recipients])
    host_key, _, authorized = ensure_keys(places.ssh_keys)
    with (
        SftpServer(places.sftp_root, host_key, authorized) as sftp,
        MailSink(places.mail_outbox) as mail,
        SmsSink(places.sms_outbox) as sms,
    ):
        values = env.connection_env(places, sftp_port=sftp.port, smtp_port=mail.port, sms_port=sms.port)
        for k, v in values.items():
            monkeypatch.setenv(k, v)
        yield World(places, today, sftp, mail, sms, dict(values), monkeypatch, read_view(places.kbi_db))
        # dag.test() pointed logging at the test's captured stdout, closed by now.
        logging.getLogger("demo.servers").disabled = True
    logging.getLogger("demo.servers").disabled = False


def load_dag(dag_file: str = "kbi_distribution.py"):
    """A fresh DAG object per run (dag.test() mutates params in place)."""
    spec = importlib.util.spec_from_file_location(f"dag_{dag_file[:-3]}", ROOT / "dags" / dag_file)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.kbi_distribution()
