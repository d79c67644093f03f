"""kbi.delivery.DeliveryMachine end to end on real servers: exactly once, nothing lost, nothing leaked.

Real gpg keys (demo.keys), the embedded asyncssh SFTP server reached by paramiko with a pinned
host key, SMS through Apprise to the HTTP sink, mail through smtplib to the aiosmtpd sink, and a
real ledger on SQLite. Faults are injected in the servers (cut connection, gateway 503, relay
refusing) or, for a crash, by a ledger that dies at a chosen transition. Municipalities decrypt
as they would: with their secret key or the passphrase from the SMS (P6).

PYTEST_DONT_REWRITE: this module handles synthetic national numbers and names, so pytest's
assertion rewriting is off here: a failure shows the assert's own message only, never the
values compared (P12).
"""

from __future__ import annotations

import csv
import io
import logging
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from demo import keys
from demo.servers.mail import MailSink
from demo.servers.sftp import SftpServer, ensure_keys
from demo.servers.sms import SmsSink
from kbi import crypto, db, listfile, registry, transport
from kbi.delivery import DeliveryMachine, Job, NotificationFailed
from kbi.errors import KbiError
from kbi.ledger import AlreadyDelivered, Delivery, Ledger
from tests.helpers import (
    LocalChannels,
    Sealed,
    has_eleven_digit_run,
    ledger_dump,
    mail_bodies,
    partition_table,
    server_files,
    sms_texts,
)

REFERENCE = date(2026, 1, 15)
TODAY = date.today()
RUN = "manual__2026-01-15T06:00:00+00:00"
PASSPHRASE_IN_SMS = re.compile(r"wachtwoord voor (\S+): ([a-z2-9]{4}(?:-[a-z2-9]{4}){6})\b")
GENT, ANTWERPEN, MECHELEN = "44021", "11002", "12025"

REGISTRY = """
- nis_code: "44021"
  name: Gent
  protocol:
    signed_on: 2024-02-01
    in_force_from: 2024-03-01
    fields:
      [rijksregisternummer, naam, voornaam, inburgeringscontract_ondertekend, attest_inburgering_behaald]
  contacts: {{email: [privacy@example.gent], sms: ["+32470123456"]}}
  encryption: {{mode: pubkey, fingerprint: "{gent_fpr}", key_file: keys/44021.asc}}
  sftp: {{inbox: /44021/inbox}}
- nis_code: "11002"
  name: Antwerpen
  protocol:
    signed_on: 2024-01-10
    in_force_from: 2024-02-01
    fields: [rijksregisternummer, inburgeringscontract_ondertekend, attest_inburgering_behaald]
  contacts: {{email: [dpo@example.antwerpen], sms: ["+32470000001"]}}
  encryption: {{mode: passphrase}}
  sftp: {{inbox: /11002/inbox}}
- nis_code: "12025"
  name: Mechelen
  protocol:
    signed_on: 2024-01-10
    in_force_from: 2024-02-01
    fields: [rijksregisternummer, inburgeringscontract_ondertekend, attest_inburgering_behaald]
  contacts: {{email: [dpo@example.mechelen], sms: ["+32470000002"]}}
  encryption: {{mode: pubkey, fingerprint: "{expired_fpr}", key_file: keys/12025.asc}}
  sftp: {{inbox: /12025/inbox}}
"""


# --- the world: servers, keys, registry, ledger --------------------------------------------------------


@pytest.fixture(scope="module")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return ensure_keys(tmp_path_factory.mktemp("ssh"))


@pytest.fixture(scope="module")
def gpg_pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, keys.KeyPair]:
    out = tmp_path_factory.mktemp("gpg")
    return {
        GENT: keys.make_key(out, GENT, "Stad Gent", "privacy@example.gent", "cv25519"),
        MECHELEN: keys.make_key(out, MECHELEN, "Stad Mechelen", "dpo@example.mechelen", "expired"),
    }


@dataclass
class World:
    tmp: Path
    sftp: SftpServer
    sms: SmsSink
    mail: MailSink
    channels: LocalChannels
    engine: Engine
    ledger: Ledger
    registry: registry.Registry
    pairs: dict[str, keys.KeyPair]
    table: pa.Table

    def __repr__(self) -> str:  # never the table: a failing assertion must not print its rows
        return f"World({self.tmp.name})"

    def job(self, nis: str, run_id: str = RUN, table: pa.Table | None = None) -> Job:
        partition = self.tmp / "staging" / f"{nis}.parquet"
        partition.parent.mkdir(exist_ok=True)
        pq.write_table(self.table if table is None else table, partition)
        return Job(
            run_id=run_id,
            kind="annual",
            period=str(REFERENCE.year),
            recipient=self.registry.recipients[nis],
            registry_dir=self.registry.directory,
            reference_date=REFERENCE,
            partition_path=partition,
            workdir=self.tmp / "staging" / "work" / nis,
        )

    def machine(
        self, secrets: list[str] | None = None, ledger: Ledger | None = None, channels: object = None
    ) -> DeliveryMachine:
        kwargs = {"on_secret": secrets.append} if secrets is not None else {}
        return DeliveryMachine(ledger or self.ledger, channels or self.channels, TODAY, **kwargs)  # type: ignore[arg-type]

    def inbox(self, nis: str) -> list[str]:
        return server_files(self.sftp, self.registry.recipients[nis].sftp.inbox)

    def remote(self, job: Job) -> Path:
        return self.sftp.root / job.final_path.lstrip("/")

    def events(self, event_type: str) -> int:
        return sum(e["event_type"] == event_type for e in self.ledger.events())

    def expected_csv(self, nis: str) -> bytes:
        return listfile.render(self.table, self.registry.recipients[nis].protocol.fields)


@pytest.fixture
def world(
    tmp_path: Path, ssh_keys: tuple[Path, Path, Path], gpg_pairs: dict[str, keys.KeyPair]
) -> Iterator[World]:
    reg_dir = tmp_path / "config"
    (reg_dir / "keys").mkdir(parents=True)
    for nis, pair in gpg_pairs.items():
        shutil.copy(pair.public_path, reg_dir / "keys" / f"{nis}.asc")
    (reg_dir / "recipients.yaml").write_text(
        REGISTRY.format(gent_fpr=gpg_pairs[GENT].fingerprint, expired_fpr=gpg_pairs[MECHELEN].fingerprint)
    )
    reg = registry.load(reg_dir / "recipients.yaml")
    root = tmp_path / "sftp"
    for nis in (GENT, ANTWERPEN, MECHELEN):
        (root / nis / "inbox").mkdir(parents=True)
    engine = db.engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger(engine)
    ledger.migrate()
    ledger.start_run(RUN, "kbi_distribution", "annual", REFERENCE.isoformat(), False, reg.version)
    host_key, client_key, authorized = ssh_keys
    with (
        SftpServer(root, host_key, authorized) as sftp,
        SmsSink(tmp_path / "outbox" / "sms") as sms,
        MailSink(tmp_path / "outbox" / "mail") as mail,
    ):
        channels = LocalChannels(sftp, client_key, sms, mail)
        yield World(tmp_path, sftp, sms, mail, channels, engine, ledger, reg, gpg_pairs, partition_table(250))
    engine.dispose()


def _passphrase_from_sms(world: World, file_name: str) -> str:
    found = [m.groups() for t in sms_texts(world.sms) if (m := PASSPHRASE_IN_SMS.search(t))]
    assert len(found) == 1, "expected exactly one passphrase SMS"
    assert found[0][0] == file_name
    return found[0][1]


def _assert_no_personal_data(world: World, texts: Sealed[list[str]]) -> None:
    """Catalogue #43, P12: no national number or family name in any message or ledger row."""
    numbers = set(world.table["insz"].to_pylist())
    surnames = {n for n in world.table["familienaam"].to_pylist() if len(n) >= 5}
    for text in (*texts.value, ledger_dump(world.engine)):
        assert not has_eleven_digit_run(text), "a national-number shape left the agency"
        assert not any(n in text for n in numbers), "a national number left the agency"
        assert not any(s in text for s in surnames), "a family name left the agency"


# --- the happy paths ------------------------------------------------------------------------------------


def test_pubkey_round_trip(world: World) -> None:
    """P6, P13: the municipality decrypts with its own key and gets exactly the rendered list."""
    job = world.job(GENT)
    d = world.machine().run(job)
    assert d.state == "announced"
    assert world.inbox(GENT) == [job.file_name]
    data = world.remote(job).read_bytes()
    plaintext = keys.decrypt(world.pairs[GENT].secret_path, data)
    assert plaintext == world.expected_csv(GENT), "decrypted list differs from the rendered list"
    assert plaintext.startswith(b"\xef\xbb\xbfrijksregisternummer;naam;voornaam;")
    rows = list(csv.reader(io.StringIO(plaintext.decode("utf-8-sig"), newline=""), delimiter=";"))
    assert len(rows) == world.table.num_rows + 1, "row count differs"
    digest = transport.local_digest(world.remote(job))
    # The ledger can say which file, with which checksum, went where, for which key (P13).
    assert (d.sha256, d.size_bytes, d.row_count) == (digest.sha256, digest.size, world.table.num_rows)
    assert (d.file_name, d.inbox, d.key_fingerprint, d.mode) == (
        job.file_name,
        "/44021/inbox",
        world.pairs[GENT].fingerprint,
        "pubkey",
    )
    assert d.delete_by == TODAY.replace(year=TODAY.year + 5).isoformat()  # P10
    # The separate channel carries what lets the municipality verify the file (P6).
    [sms] = sms_texts(world.sms)
    assert job.file_name in sms and digest.sha256 in sms and world.pairs[GENT].fingerprint in sms
    [mail] = mail_bodies(world.mail)
    assert digest.sha256 in mail and job.file_name in mail and str(world.table.num_rows) in mail
    assert "verwijder deze e-mail dan onmiddellijk" in mail  # P7
    assert d.delete_by in mail  # P10
    [stored] = world.sms.messages()
    assert stored["payload"]["to"] == "+32470123456"
    assert world.mail.messages()[0]["To"] == "privacy@example.gent"
    _assert_no_personal_data(world, Sealed([sms, mail]))
    assert world.ledger.verify() is None
    # No plaintext and no keyring left in the work directory: only the ciphertext.
    assert sorted(p.name for p in job.workdir.iterdir()) == [job.file_name]


def test_passphrase_round_trip_and_the_passphrase_goes_by_sms_only(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """P6: the passphrase is in the SMS and nowhere else: not in mail, ledger, logs or files."""
    caplog.set_level(logging.DEBUG)
    job = world.job(ANTWERPEN)
    d = world.machine().run(job)
    assert d.state == "announced" and d.mode == "passphrase" and d.key_fingerprint is None
    passphrase = _passphrase_from_sms(world, job.file_name)
    data = world.remote(job).read_bytes()
    plaintext = keys.decrypt(None, data, passphrase)
    assert plaintext == world.expected_csv(ANTWERPEN), "decrypted list differs from the rendered list"
    # P2: a template protocol gets the number and the two flags, no names.
    assert (
        plaintext.splitlines()[0]
        == b"\xef\xbb\xbfrijksregisternummer;inburgeringscontract_ondertekend;attest_inburgering_behaald"
    )
    [mail] = mail_bodies(world.mail)
    assert passphrase not in mail and "per sms" in mail
    assert not any(passphrase.encode() in p.read_bytes() for p in world.mail.message_paths())
    assert passphrase not in ledger_dump(world.engine)
    assert passphrase not in caplog.text
    assert not any(passphrase in r.getMessage() for r in caplog.records)
    # Nothing on disk holds it, except what the municipality's phone received.
    sms_dir = world.sms.outdir
    files = [p for p in world.tmp.rglob("*") if p.is_file() and sms_dir not in p.parents]
    assert files and not any(passphrase.encode() in p.read_bytes() for p in files)
    _assert_no_personal_data(world, Sealed([mail, *sms_texts(world.sms)]))
    assert world.ledger.verify() is None


def test_a_delivery_reports_where_its_time_went(world: World) -> None:
    """The run summary and the benchmark get each delivery's seconds by step (times only)."""
    machine = world.machine()
    machine.run(world.job(ANTWERPEN))
    steps = machine.last_seconds
    assert set(steps) == {"connect", "encrypt", "upload", "publish", "announce", "total", "cpu", "cpu_gpg"}
    assert all(v > 0 for v in steps.values())
    assert steps["total"] >= sum(steps[k] for k in ("connect", "encrypt", "upload", "publish", "announce"))
    # gpg's CPU is counted apart from this process's own (a pubkey delivery runs gpg five times).
    assert 0 < steps["cpu_gpg"] < steps["total"]
    machine.run(world.job(ANTWERPEN))  # already announced: nothing done, nothing timed
    assert machine.last_seconds == {}


def test_a_full_staging_disk_fails_before_gpg_and_the_retry_delivers(world: World) -> None:
    """Catalogue 26: no room for the keyring and the ciphertext: the delivery stops before gpg
    runs (a half-written keyring would read as an unusable key, a permanent refusal), with a
    passing error, nothing left in its directory and nothing sent; once space is freed, the
    retry delivers."""
    from tests.openssh.harness import MountNotPermitted, tmpfs_over

    job = world.job(GENT)
    job.workdir.mkdir(parents=True, mode=0o700)
    machine = world.machine()
    try:
        # 12 KiB: gpg cannot even import the key; before the room check that was refused as
        # "no readable OpenPGP public key" (P6), blaming the municipality's key, for good.
        with tmpfs_over(job.workdir, size="12k", mode=0o700):
            with pytest.raises(crypto.StagingFull, match="free space and retry"):
                machine.run(job)
            assert list(job.workdir.iterdir()) == []
    except MountNotPermitted as exc:
        pytest.skip(str(exc))
    assert world.inbox(GENT) == [] and world.sms.messages() == [] and world.mail.messages() == []
    failed = world.ledger.get_delivery(job.delivery_id)
    assert failed is not None and failed.state == "planned" and "staging area" in (failed.last_error or "")
    assert world.events("delivery_refused") == 0  # not mistaken for an unusable key
    assert machine.run(job).state == "announced"
    assert world.inbox(GENT) == [job.file_name]


def test_running_the_same_job_twice_delivers_once(world: World) -> None:
    """Exactly once: a rerun finds the delivery announced and does nothing."""
    job = world.job(GENT)
    first = world.machine().run(job)
    second = world.machine().run(job)
    assert second == first and second.state == "announced"
    assert world.inbox(GENT) == [job.file_name]
    assert len(world.sms.messages()) == 1 and len(world.mail.messages()) == 1
    assert world.events("delivery_uploaded") == 1


def test_empty_list_is_delivered_as_a_header_only_file(world: World) -> None:
    job = world.job(GENT, table=partition_table(1).slice(0, 0))
    d = world.machine().run(job)
    assert d.row_count == 0 and d.state == "announced"
    plaintext = keys.decrypt(world.pairs[GENT].secret_path, world.remote(job).read_bytes())
    assert plaintext.count(b"\r\n") == 1


def test_a_correction_is_not_a_new_annual_list(world: World) -> None:
    """P3, P9: a correction after the annual list is delivered under its own name, and says so."""
    world.machine().run(world.job(GENT))
    correction = replace(world.job(GENT), kind="correction", correction_ref="M-2026-017")
    d = world.machine().run(correction)
    assert d.state == "announced" and d.kind == "correction"
    assert correction.file_name == "inburgeraars_44021_2026-01-15_correctie_M-2026-017.csv.gpg"
    assert sorted(world.inbox(GENT)) == sorted([world.job(GENT).file_name, correction.file_name])
    assert "correctie M-2026-017" in mail_bodies(world.mail)[1]


def test_delete_by_is_five_years_after_delivery_even_from_29_february(world: World) -> None:
    """P10: delivered on 29 February 2028, to be deleted by 28 February 2033 (stated in the mail)."""
    d = DeliveryMachine(world.ledger, world.channels, date(2028, 2, 29)).run(world.job(GENT))
    assert d.delete_by == "2033-02-28"
    assert "2033-02-28" in mail_bodies(world.mail)[0]


def test_a_missing_inbox_is_a_clear_error_and_nothing_is_sent(world: World) -> None:
    job = world.job(GENT)
    (world.sftp.root / GENT / "inbox").rmdir()
    with pytest.raises(transport.TransportError, match="inbox /44021/inbox: no such file"):
        world.machine().run(job)
    assert world.sms.messages() == [] and world.mail.messages() == []
    assert server_files(world.sftp, "/44021") == []


# --- P3 and refusals ------------------------------------------------------------------------------------


def test_a_second_run_in_the_same_period_is_refused(world: World) -> None:
    """P3: at most one list per municipality per year, even from another run."""
    world.machine().run(world.job(GENT))
    world.ledger.start_run("manual__2026-02-01", "kbi_distribution", "annual", "2026-02-01", False, "v")
    other = replace(world.job(GENT, run_id="manual__2026-02-01"), reference_date=date(2026, 2, 1))
    with pytest.raises(AlreadyDelivered):
        world.machine().run(other)
    assert world.inbox(GENT) == [world.job(GENT).file_name]
    assert len(world.sms.messages()) == 1 and len(world.mail.messages()) == 1


def test_an_expired_key_is_refused_and_nothing_is_uploaded(world: World) -> None:
    """Catalogue #18: KeyRefused, no file produced or uploaded, the delivery failed (period free)."""
    job = world.job(MECHELEN)
    with pytest.raises(crypto.KeyRefused) as info:
        world.machine().run(job)
    assert info.value.code == "key_expired"
    assert world.inbox(MECHELEN) == []
    assert world.sms.messages() == [] and world.mail.messages() == []
    d = world.ledger.get_delivery(job.delivery_id)
    assert d is not None and d.state == "failed" and str(d.last_error).startswith("key_expired")
    assert world.ledger.annual_delivery_in_period(MECHELEN, "2026") is None  # P3: not held
    assert not job.ciphertext.exists()
    assert world.ledger.verify() is None


def test_a_dry_run_checks_and_encrypts_but_sends_nothing(world: World) -> None:
    job = world.job(GENT)
    outcome = world.machine().rehearse(job)
    assert outcome == {
        "outcome": "dry_run",
        "file_name": job.file_name,
        "rows": world.table.num_rows,
        "mode": "pubkey",
    }
    assert world.inbox(GENT) == [] and world.sms.messages() == [] and world.mail.messages() == []
    assert world.ledger.get_delivery(job.delivery_id) is None
    assert not job.ciphertext.exists()
    with pytest.raises(crypto.KeyRefused):
        world.machine().rehearse(world.job(MECHELEN))


def test_a_missing_partition_is_a_clear_error(world: World) -> None:
    job = world.job(GENT)
    job.partition_path.unlink()
    with pytest.raises(KbiError, match="staged list for 44021 Gent is gone"):
        world.machine().run(job)
    assert world.inbox(GENT) == []


# --- notification faults --------------------------------------------------------------------------------


def test_sms_gateway_down_withdraws_the_file_then_a_rerun_uses_a_new_passphrase(world: World) -> None:
    """Catalogue #42, P6: no file without its key. The passphrase died with the failed attempt,
    so the rerun encrypts again with a fresh one and delivers exactly once."""
    job = world.job(ANTWERPEN)
    secrets: list[str] = []
    world.sms.set_status(503)
    with pytest.raises(NotificationFailed) as info:
        world.machine(secrets).run(job)
    assert world.inbox(ANTWERPEN) == []  # neither the final name nor the temporary file
    d = world.ledger.get_delivery(job.delivery_id)
    assert d is not None and d.state == "withdrawn" and d.published_at is None
    assert world.sms.messages() == [] and world.mail.messages() == []
    assert len(secrets) == 1 and secrets[0] not in str(info.value)
    assert secrets[0] not in ledger_dump(world.engine)

    world.sms.set_status(None)
    d = world.machine(secrets).run(job)
    assert d.state == "announced"
    assert world.inbox(ANTWERPEN) == [job.file_name]
    assert len(secrets) == 2 and secrets[0] != secrets[1]
    passphrase = _passphrase_from_sms(world, job.file_name)
    assert passphrase == secrets[1]
    data = world.remote(job).read_bytes()
    assert keys.decrypt(None, data, passphrase) == world.expected_csv(ANTWERPEN)
    with pytest.raises(RuntimeError):
        keys.decrypt(None, data, secrets[0])  # the withdrawn passphrase opens nothing
    assert len(world.mail.messages()) == 1
    assert world.ledger.verify() is None


class _EchoingGateway(LocalChannels):
    """An SMS gateway client whose error quotes the request, as many HTTP APIs do."""

    def sms(self, phones: Sequence[str], text: str) -> None:
        raise RuntimeError(f"gateway answered 400 Bad Request for body {text!r}")


def test_a_gateway_error_quoting_the_sms_does_not_leak_the_passphrase(world: World) -> None:
    job = world.job(ANTWERPEN)
    secrets: list[str] = []
    c = world.channels
    echoing = _EchoingGateway(c.sftp_server, c.client_key, c.sms_sink, c.mail_sink)
    with pytest.raises(NotificationFailed) as info:
        world.machine(secrets, channels=echoing).run(job)
    assert world.inbox(ANTWERPEN) == []
    leaked = secrets[0] in ledger_dump(world.engine) or secrets[0] in str(info.value)
    assert not leaked, "the passphrase reached the ledger or the exception text"


def test_smtp_down_keeps_the_file_published_and_the_rerun_sends_only_the_mail(world: World) -> None:
    """Catalogue #41: the upload stays published; on recovery exactly one mail, no second SMS."""
    job = world.job(GENT)
    world.mail.set_refuse(True)
    with pytest.raises(NotificationFailed, match="e-mail receipt failed"):
        world.machine().run(job)
    assert world.inbox(GENT) == [job.file_name]
    d = world.ledger.get_delivery(job.delivery_id)
    assert d is not None and d.state == "published" and d.sms_sent_at and not d.mail_sent_at
    assert len(world.sms.messages()) == 1 and world.mail.messages() == []

    world.mail.set_refuse(False)
    d = world.machine().run(job)
    assert d.state == "announced"
    assert len(world.sms.messages()) == 1 and len(world.mail.messages()) == 1
    assert world.inbox(GENT) == [job.file_name]
    assert world.events("delivery_uploaded") == 1


def test_sms_down_in_pubkey_mode_keeps_the_file_and_retries_the_sms(world: World) -> None:
    job = world.job(GENT)
    world.sms.set_status(503)
    with pytest.raises(NotificationFailed, match="SMS failed"):
        world.machine().run(job)
    assert world.inbox(GENT) == [job.file_name]
    world.sms.set_status(None)
    assert world.machine().run(job).state == "announced"
    assert len(world.sms.messages()) == 1 and len(world.mail.messages()) == 1


# --- transfer faults and crashes ------------------------------------------------------------------------


def test_connection_cut_mid_upload_then_retry(world: World) -> None:
    """Catalogue #30/#32: the failed attempt leaves no final file; the retry publishes once."""
    job = world.job(GENT)
    world.sftp.set_fail_writes_after(1024)
    with pytest.raises(transport.TransportError, match="connection lost"):
        world.machine().run(job)
    d = world.ledger.get_delivery(job.delivery_id)
    assert d is not None and d.state == "encrypted" and (d.size_bytes or 0) > 1024  # cut mid-file
    assert job.file_name not in world.inbox(GENT)
    assert world.sms.messages() == [] and world.mail.messages() == []

    world.sftp.set_fail_writes_after(None)
    d = world.machine().run(job)
    assert d.state == "announced"
    assert world.inbox(GENT) == [job.file_name]  # no temporary file left either
    assert keys.decrypt(world.pairs[GENT].secret_path, world.remote(job).read_bytes()) == world.expected_csv(
        GENT
    )
    assert world.events("delivery_encrypted") == 1  # the staged ciphertext was reused
    assert len(world.sms.messages()) == 1 and len(world.mail.messages()) == 1


def test_sftp_server_down_then_back(world: World) -> None:
    """The transfer server refuses connections: a clear error naming the municipality, nothing
    sent, and a plain retry delivers once the server is back."""
    job = world.job(GENT)
    world.sftp.stop()
    with pytest.raises(KbiError) as info:
        world.machine().run(job)
    message = str(info.value)  # names the municipality and the cause, never data
    assert "44021 Gent" in message and re.search("refused|Unable to connect", message), message
    d = world.ledger.get_delivery(job.delivery_id)
    assert d is not None and d.state == "planned"
    assert world.sms.messages() == [] and world.mail.messages() == []
    world.sftp.start()
    assert world.machine().run(job).state == "announced"
    assert world.inbox(GENT) == [job.file_name]


def test_a_foreign_file_under_the_final_name_is_never_overwritten(world: World) -> None:
    job = world.job(GENT)
    world.remote(job).write_bytes(b"somebody else's file")
    with pytest.raises(transport.UnknownFileInInbox):
        world.machine().run(job)
    assert world.remote(job).read_bytes() == b"somebody else's file"
    assert world.inbox(GENT) == [job.file_name]  # and our temporary file was cleaned up
    assert world.sms.messages() == [] and world.mail.messages() == []


class _SimulatedCrash(BaseException):
    """The worker dies (OOM kill, node lost): not an Exception, nothing in the machine catches it."""


class _CrashingLedger(Ledger):
    """A real ledger that dies just before recording ``crash_on``: the step itself already happened."""

    def __init__(self, engine: Engine, crash_on: str):
        super().__init__(engine)
        self.crash_on = crash_on

    def transition(self, delivery: Delivery, event_type: str, detail: object = None) -> Delivery:
        if event_type == self.crash_on:
            raise _SimulatedCrash(event_type)
        return super().transition(delivery, event_type, detail)  # type: ignore[arg-type]


@pytest.mark.parametrize("nis", [GENT, ANTWERPEN], ids=["pubkey", "passphrase"])
def test_crash_after_publish_before_the_ledger_knew(world: World, nis: str) -> None:
    """Catalogue #35: the retry finds its own bytes under the final name, marks the delivery
    published without a second upload, and announces it once."""
    job = world.job(nis)
    with pytest.raises(_SimulatedCrash):
        world.machine(ledger=_CrashingLedger(world.engine, "delivery_published")).run(job)
    assert world.inbox(nis) == [job.file_name]  # the rename happened ...
    d = world.ledger.get_delivery(job.delivery_id)
    assert d is not None and d.state == "uploaded"  # ... the ledger did not see it
    inode = world.remote(job).stat().st_ino
    sms_before = len(world.sms.messages())

    d = world.machine().run(job)
    assert d.state == "announced"
    assert world.inbox(nis) == [job.file_name]
    assert world.remote(job).stat().st_ino == inode  # the very same file, not a second upload
    assert world.events("delivery_uploaded") == 1 and world.events("delivery_encrypted") == 1
    assert sms_before == (1 if nis == ANTWERPEN else 0)  # the passphrase SMS precedes the rename
    assert len(world.sms.messages()) == 1 and len(world.mail.messages()) == 1
    if nis == ANTWERPEN:
        passphrase = _passphrase_from_sms(world, job.file_name)
        assert keys.decrypt(None, world.remote(job).read_bytes(), passphrase) == world.expected_csv(nis)
    assert world.ledger.verify() is None


def test_crash_after_upload_before_the_ledger_knew(world: World) -> None:
    """The temporary file is there but the ledger says encrypted: the retry uploads it again
    (replacing the stale part) and publishes once."""
    job = world.job(GENT)
    with pytest.raises(_SimulatedCrash):
        world.machine(ledger=_CrashingLedger(world.engine, "delivery_uploaded")).run(job)
    assert world.inbox(GENT) == ["." + job.file_name + ".part"]  # only the hidden temporary file
    d = world.machine().run(job)
    assert d.state == "announced"
    assert world.inbox(GENT) == [job.file_name]
    assert len(world.sms.messages()) == 1 and len(world.mail.messages()) == 1


def test_ledger_of_a_fault_filled_day_still_verifies_and_holds_no_secrets(world: World) -> None:
    secrets: list[str] = []
    world.sms.set_status(503)
    with pytest.raises(NotificationFailed):
        world.machine(secrets).run(world.job(ANTWERPEN))
    world.sms.set_status(None)
    world.machine(secrets).run(world.job(ANTWERPEN))
    world.machine(secrets).run(world.job(GENT))
    with pytest.raises(crypto.KeyRefused):
        world.machine(secrets).run(world.job(MECHELEN))
    dump = ledger_dump(world.engine)
    assert secrets and not any(s in dump for s in secrets)
    _assert_no_personal_data(world, Sealed([*sms_texts(world.sms), *mail_bodies(world.mail)]))
    assert world.ledger.verify() is None
    with world.engine.connect() as conn:
        states = dict(conn.execute(sa.text("SELECT nis_code, state FROM kbi_delivery")).all())
    assert states == {ANTWERPEN: "announced", GENT: "announced", MECHELEN: "failed"}
