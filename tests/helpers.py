"""Shared helpers of the domain-package tests: synthetic numbers, real clients, own databases.

Nothing here mocks a component: the SFTP client is paramiko against the embedded asyncssh server
(host key pinned, RejectPolicy), SMS goes through Apprise to the HTTP sink, mail through smtplib to
the aiosmtpd sink, and PostgreSQL databases are real ones created for a test module and dropped.
Synthetic national numbers are structurally valid and may coincide with real people's: helpers
never print them, and tests assert on counts, booleans or whole-object equality only.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import random
import re
import secrets
import smtplib
import socket
from collections.abc import Iterator, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Generic, TypeVar

import apprise
import paramiko
import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from demo.servers.mail import MailSink
from demo.servers.sftp import SftpServer
from demo.servers.sms import SmsSink
from kbi import messages

T = TypeVar("T")

# --- national numbers -------------------------------------------------------------------------

FICTITIOUS_PREFIXES = ("000001", "002001", "004001")
# Eleven digits not inside a hexadecimal run (SHA-256 digests and fingerprints hold digit runs).
ELEVEN_DIGITS = re.compile(r"(?<![0-9A-Fa-f])[0-9]{11}(?![0-9A-Fa-f])")


class Sealed(Generic[T]):
    """A value that never shows itself in a repr.

    On a failure pytest prints the arguments of the test and of every frame of the traceback
    (parametrized values and fixtures included): synthetic numbers and names travel sealed.
    """

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<sealed>"


def check_digits(first9: str, born_2000: bool) -> str:
    """The two check digits of stdnum.be.nn: 97 - (n mod 97), with a 2 in front for 2000+."""
    n = int(("2" if born_2000 else "") + first9)
    return f"{97 - n % 97:02d}"


def make_nn(yy: int, mm: int, dd: int, serial: int, born_2000: bool = False) -> str:
    """A structurally valid national number (``mm`` +20/+40 makes a BIS number)."""
    first9 = f"{yy:02d}{mm:02d}{dd:02d}{serial:03d}"
    return first9 + check_digits(first9, born_2000)


def synthetic_numbers(count: int, seed: int = 7) -> list[str]:
    """``count`` distinct valid Rijksregister numbers (births 1960-1999 and 2000-2005)."""
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < count:
        born_2000 = rng.random() < 0.3
        yy = rng.randint(0, 5) if born_2000 else rng.randint(60, 99)
        out.add(make_nn(yy, rng.randint(1, 12), rng.randint(1, 28), rng.randint(1, 997), born_2000))
    return sorted(out)


def has_eleven_digit_run(text: str) -> bool:
    return ELEVEN_DIGITS.search(text) is not None


# --- partitions (what the pipeline hands a delivery) ------------------------------------------

PARTITION_SCHEMA = pa.schema(
    [
        ("insz", pa.string()),
        ("familienaam", pa.string()),
        ("voornamen", pa.string()),
        ("contract_ja", pa.bool_()),
        ("attest_ja", pa.bool_()),
    ]
)

# Legal names a spreadsheet or a CSV reader would misread if not escaped (catalogue #10, #11).
HOSTILE_NAMES = ("=HYPERLINK(1)", "+Plus", "-Min", "@Sum", "Semi;Colon", 'Quote"d', "Line\r\nBreak")
PLAIN_NAMES = ("Öztürk", "Ozturk", "de Smet", "De Smet", "Peeters", "Janssens", "Aerts", "Ünal", "Zeeman")


def partition_table(count: int, seed: int = 11, hostile: bool = True) -> pa.Table:
    rng = random.Random(seed)
    numbers = synthetic_numbers(count, seed)
    pool = PLAIN_NAMES + (HOSTILE_NAMES if hostile else ())
    return pa.table(
        {
            "insz": numbers,
            "familienaam": [rng.choice(pool) for _ in numbers],
            "voornamen": [rng.choice(("Ali", "Anna Maria", "Émile", "Zoë", "Jan")) for _ in numbers],
            "contract_ja": [rng.random() < 0.85 for _ in numbers],
            "attest_ja": [rng.random() < 0.45 for _ in numbers],
        },
        schema=PARTITION_SCHEMA,
    )


# --- SFTP -------------------------------------------------------------------------------------


def host_key(line: str) -> paramiko.PKey:
    key_type, b64 = line.split()[:2]
    return paramiko.PKey.from_type_string(key_type, base64.b64decode(b64))


@contextlib.contextmanager
def pinned_sftp_to(
    host: str, port: int, username: str, host_key_line: str, client_key: Path
) -> Iterator[paramiko.SFTPClient]:
    """A paramiko SFTP session that trusts only ``host_key_line`` (RejectPolicy; P12)."""
    client = paramiko.SSHClient()  # empty HostKeys: nothing from ~/.ssh
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.get_host_keys().add(f"[{host}]:{port}", host_key_line.split()[0], host_key(host_key_line))
    try:
        client.connect(
            host,
            port,
            username=username,
            pkey=paramiko.Ed25519Key.from_private_key_file(str(client_key)),
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
            banner_timeout=10,
            auth_timeout=10,
        )
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(15)  # a server fault fails the test instead of hanging it
        yield sftp
    finally:
        client.close()


def pinned_sftp(
    server: SftpServer, client_key: Path
) -> contextlib.AbstractContextManager[paramiko.SFTPClient]:
    """An SFTP session to the embedded server, its host key pinned."""
    return pinned_sftp_to(server.host, server.port, server.username, server.host_public_key, client_key)


def server_files(server: SftpServer, inbox: str) -> list[str]:
    """Every name in an inbox on the server's disk, dot files (temporary uploads) included."""
    folder = server.root / inbox.lstrip("/")
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --- the Channels of kbi.delivery, over real local servers -------------------------------------


class LocalChannels:
    """kbi.delivery.Channels over the embedded servers, as strict as the Airflow channels."""

    def __init__(
        self,
        sftp_server: SftpServer,
        client_key: Path,
        sms_sink: SmsSink,
        mail_sink: MailSink,
        sender: str = "kbi-levering@example.invalid",
    ):
        self.sftp_server = sftp_server
        self.client_key = client_key
        self.sms_sink = sms_sink
        self.mail_sink = mail_sink
        self.sender = sender
        self.sftp_sessions = 0

    @contextlib.contextmanager
    def sftp(self) -> Iterator[paramiko.SFTPClient]:
        with pinned_sftp(self.sftp_server, self.client_key) as sftp:
            self.sftp_sessions += 1
            yield sftp

    def sms(self, phones: Sequence[str], text: str) -> None:
        # As kbi.airflow_glue does: Apprise logs whole payloads at DEBUG.
        logging.getLogger("apprise").setLevel(logging.WARNING)
        for phone in phones:
            notifier = apprise.Apprise()
            notifier.add(self.sms_sink.apprise_url(phone))
            if not notifier.notify(body=text, title=""):
                raise ConnectionError("the SMS gateway did not accept the message")

    def mail(self, to: Sequence[str], mail: messages.Mail) -> None:
        msg = EmailMessage()
        msg["Subject"] = mail.subject
        msg["From"] = self.sender
        msg["To"] = ", ".join(to)
        msg.set_content(mail.text)
        msg.add_alternative(mail.html, subtype="html")
        with smtplib.SMTP(self.mail_sink.host, self.mail_sink.port, timeout=10) as smtp:
            smtp.send_message(msg)


def sms_texts(sink: SmsSink) -> list[str]:
    return [m["payload"]["message"] for m in sink.messages()]


def mail_bodies(sink: MailSink) -> list[str]:
    """Every stored mail as decoded text (subject, plain part and HTML part)."""
    out = []
    for msg in sink.messages():
        parts = [str(msg["Subject"])]
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                parts.append(part.get_content())
        out.append("\n".join(parts))
    return out


# --- databases --------------------------------------------------------------------------------

PG_HOST = os.environ.get("KBI_TEST_POSTGRES_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("KBI_TEST_POSTGRES_PORT", "5432"))


def postgres_answers() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def own_postgres_database() -> Iterator[str]:
    """A fresh database ``kbi_t_<random>``, dropped afterwards; yields its URL without a driver.

    Skips (with the reason) when no PostgreSQL server answers; never touches another database.
    """
    if not postgres_answers():
        pytest.skip(f"no PostgreSQL server answers on {PG_HOST}:{PG_PORT}")
    name = f"kbi_t_{secrets.token_hex(5)}"
    admin = sa.create_engine(
        f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/postgres",
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
    )
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL on {PG_HOST}:{PG_PORT} refused to create a database ({type(exc).__name__})")
    try:
        yield f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def with_driver(url: str, driver: str) -> str:
    return url.replace("postgresql://", f"postgresql+{driver}://", 1)


def ledger_dump(engine: Engine) -> str:
    """Every row of every table of a database as one text (to search for what must not be there)."""
    chunks: list[str] = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            rows = conn.execute(sa.text(f'SELECT * FROM "{table}"')).all()
            chunks.append(f"{table}: {rows!r}")
    return "\n".join(chunks)
