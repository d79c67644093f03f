"""One municipality's list, from partition file to announced delivery: the state machine.

    planned → encrypted → uploaded (temporary name) → [passphrase sent] → published (renamed,
    verified) → announced (SMS + e-mail receipt) → picked up | reminded → purged
    withdrawn: the passphrase could not be sent; the temporary file was removed; start again

The yearly run and a correction drive the same machine. Every step first reads where the ledger
says the delivery stands and resumes from there, so a retry or a rerun never uploads twice and
never loses a delivery (exactly once):

- the ciphertext of a pubkey delivery is kept in the run's private staging directory and its
  SHA-256 is in the ledger before the upload, so a retry after a crash re-uploads or just
  confirms the same bytes;
- a passphrase exists only in this process's memory. A retry that finds a passphrase delivery
  whose SMS was not sent cannot recover it: the temporary file is withdrawn and the list is
  encrypted again with a new passphrase. The final name never appears before its passphrase was
  sent, so no file sits in an inbox without its key having been sent (P6).
"""

from __future__ import annotations

import logging
import resource
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

import paramiko
import pyarrow as pa
import pyarrow.parquet as pq

from kbi import crypto, listfile, messages, registry, rowhash, selection, transport
from kbi.errors import KbiError, scrubbed
from kbi.ledger import AlreadyDelivered, Delivery, Ledger
from kbi.ledger.store import utcnow

log = logging.getLogger(__name__)

DONE = frozenset({"announced", "picked_up", "reminded", "purged"})
# Where a delivery's time goes, by the step its state starts (seconds in the run's summary).
STEP_OF_STATE = {
    "planned": "encrypt",
    "withdrawn": "encrypt",
    "encrypted": "upload",
    "uploaded": "publish",  # the passphrase SMS, the rename and its read-back check
    "published": "announce",
}
STEPS = ("connect", "encrypt", "upload", "publish", "announce", "total")


def cpu_now() -> tuple[float, float]:
    """CPU seconds of this process and of its children waited for (gpg: python-gnupg waits)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time(), children.ru_utime + children.ru_stime


class NotificationFailed(KbiError):
    """An SMS or e-mail could not be handed to the gateway or relay."""


class Channels(Protocol):
    """The outside world of a delivery; Airflow hooks in production, local servers in tests."""

    def sftp(self) -> AbstractContextManager[paramiko.SFTPClient]: ...

    def sms(self, phones: Sequence[str], text: str) -> None: ...

    def mail(self, to: Sequence[str], mail: messages.Mail) -> None: ...


@dataclass(frozen=True)
class Job:
    """Everything one delivery needs; XCom carries only the reference to the partition file."""

    run_id: str
    kind: str  # annual | correction
    period: str  # P3 period this annual list counts for
    recipient: registry.Recipient
    registry_dir: Path
    reference_date: date
    partition_path: Path
    workdir: Path  # private per-municipality directory inside the run's staging area
    correction_ref: str | None = None
    sftp_staging_dir: str | None = None
    retention_years: int = 5
    purge_after_days: int = 30
    p3_since: str | None = None  # P3 in rolling mode: no other annual list since then

    @property
    def delivery_id(self) -> str:
        if self.kind == "correction":
            return f"correction:{self.recipient.nis_code}:{self.correction_ref}"
        return f"annual:{self.recipient.nis_code}:{self.run_id}"

    @property
    def file_name(self) -> str:
        return listfile.file_name(
            self.recipient.nis_code, self.reference_date.isoformat(), self.correction_ref
        )

    @property
    def final_path(self) -> str:
        return f"{self.recipient.sftp.inbox}/{self.file_name}"

    @property
    def temp_path(self) -> str:
        return transport.temp_path(self.final_path, self.sftp_staging_dir)

    @property
    def ciphertext(self) -> Path:
        return self.workdir / self.file_name


def _add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def render_plaintext(job: Job) -> tuple[bytes, pa.Table]:
    """The CSV for this municipality, in memory only (it goes to gpg on its standard input),
    and the rows as delivered (the protocol's columns only)."""
    if not job.partition_path.is_file():
        raise KbiError(
            f"the staged list for {job.recipient.label} is gone ({job.partition_path.name}); the run's "
            "staging area was removed. Clear the run from its extract task to redo this delivery."
        )
    with scrubbed(f"writing the list of {job.recipient.label}"):
        # ParquetFile rather than read_table: the latter imports pandas (0.2 s in each task).
        table = pq.ParquetFile(job.partition_path).read()
        fields = job.recipient.protocol.fields
        return listfile.render(table, fields), selection.minimise(table, fields)


class DeliveryMachine:
    def __init__(
        self,
        ledger: Ledger,
        channels: Channels,
        today: date,
        on_secret: Callable[[str], None] = lambda _s: None,
    ):
        self.ledger = ledger
        self.channels = channels
        self.today = today
        self.on_secret = on_secret  # Airflow's mask_secret: a second line of defence, not the first
        # Seconds of the last ``run`` by step (connect, encrypt, upload, publish, announce, total)
        # and the CPU it used in this process (cpu, all its threads) and in its gpg processes
        # (cpu_gpg), which unlike wall time does not grow when deliveries share the cores: counts
        # of time only, for the run summary and the benchmark.
        self.last_seconds: dict[str, float] = {}

    # --- steps ------------------------------------------------------------------------------

    def _encrypt_list(self, job: Job) -> tuple[pa.Table, str | None]:
        """Write the CSV in memory and encrypt it to ``job.ciphertext``.

        Returns the rows as delivered and, in passphrase mode, the fresh passphrase (memory only).
        """
        r = job.recipient
        plaintext, delivered = render_plaintext(job)
        crypto.ensure_room(job.workdir, len(plaintext), job.file_name)
        keyring_home = job.workdir / "gnupg"
        crypto.remove_keyring(keyring_home)  # never reuse a keyring across attempts
        gpg = crypto.keyring(keyring_home)
        passphrase: str | None = None
        try:
            if r.encryption.mode == "pubkey":
                key_path = r.key_path(job.registry_dir)
                assert key_path is not None and r.encryption.fingerprint is not None
                key = crypto.check_key(gpg, key_path, r.encryption.fingerprint, self.today)
                crypto.encrypt_to_key(gpg, plaintext, key, job.ciphertext)
            else:
                passphrase = crypto.new_passphrase()
                self.on_secret(passphrase)
                crypto.encrypt_with_passphrase(gpg, plaintext, passphrase, job.ciphertext)
        finally:
            del plaintext
            crypto.remove_keyring(keyring_home)
        return delivered, passphrase

    def _encrypt(self, job: Job, d: Delivery) -> tuple[Delivery, str | None]:
        r = job.recipient
        delivered, passphrase = self._encrypt_list(job)
        rows = delivered.num_rows
        digest = transport.local_digest(job.ciphertext)
        d = d.with_(
            state="encrypted",
            mode=r.encryption.mode,
            key_fingerprint=r.encryption.fingerprint,
            file_name=job.file_name,
            inbox=r.sftp.inbox,
            row_count=rows,
            size_bytes=digest.size,
            sha256=digest.sha256,
            attempt=d.attempt + 1,
            encrypted_at=utcnow(),
            uploaded_at=None,
            passphrase_sent_at=None,
            withdrawn_at=None,
            last_error=None,
        )
        detail = {"mode": d.mode, "fingerprint": d.key_fingerprint, "rows": rows, "attempt": d.attempt}
        d = self.ledger.transition(d, "delivery_encrypted", {**detail, "sha256": d.sha256})
        if self.ledger.row_key:
            with scrubbed(f"hashing the rows of {r.label}"):
                row_hashes = rowhash.hashes(delivered, self.ledger.row_key)
            self.ledger.store_rows(d, row_hashes)
        return d, passphrase

    def _digest(self, d: Delivery) -> transport.Digest:
        assert d.size_bytes is not None and d.sha256 is not None
        return transport.Digest(d.size_bytes, d.sha256)

    def _upload(self, job: Job, d: Delivery, sftp: paramiko.SFTPClient) -> Delivery:
        transport.check_inbox(sftp, job.recipient.sftp.inbox)
        transport.upload_temp(sftp, job.ciphertext, job.temp_path, self._digest(d))
        d = d.with_(state="uploaded", uploaded_at=utcnow())
        return self.ledger.transition(d, "delivery_uploaded", {"temp_name": job.temp_path.rsplit("/", 1)[-1]})

    def _send_passphrase(self, job: Job, d: Delivery, sftp: paramiko.SFTPClient, passphrase: str) -> Delivery:
        text = messages.sms_passphrase(job.file_name, passphrase)
        try:
            self.channels.sms(job.recipient.contacts.sms, text)
        except Exception as exc:
            # P6: no file without its key: withdraw the temporary file before failing.
            transport.remove_if_present(sftp, job.temp_path)
            # A gateway may quote the request in its error: the passphrase never goes further.
            cause = f"{type(exc).__name__}: {exc}".replace(passphrase, "***")
            reason = f"passphrase SMS failed ({cause}); file withdrawn"
            self.ledger.transition(
                d.with_(state="withdrawn", withdrawn_at=utcnow(), last_error=reason),
                "delivery_withdrawn",
                {"reason": reason},
            )
            raise NotificationFailed(f"{job.recipient.label}: {reason}") from None
        d = d.with_(passphrase_sent_at=utcnow(), sms_sent_at=utcnow())
        return self.ledger.transition(d, "passphrase_sent", {"phones": len(job.recipient.contacts.sms)})

    def _publish(self, job: Job, d: Delivery, sftp: paramiko.SFTPClient) -> Delivery:
        transport.promote(sftp, job.temp_path, job.final_path, self._digest(d))
        now = utcnow()
        d = d.with_(
            state="published",
            published_at=now,
            delete_by=_add_years(self.today, job.retention_years).isoformat(),
        )
        detail = {"file_name": d.file_name, "inbox": d.inbox, "sha256": d.sha256, "size": d.size_bytes}
        return self.ledger.transition(d, "delivery_published", detail)

    def _notification_failed(self, label: str, d: Delivery, event: str, reason: str) -> NotificationFailed:
        """Record a failed SMS or e-mail (sent, failed and retried are all in the ledger)."""
        self.ledger.transition(d.with_(last_error=reason), event, {"reason": reason})
        return NotificationFailed(f"{label}: {reason}; the retry sends it again")

    def _announce(self, job: Job, d: Delivery) -> Delivery:
        r = job.recipient
        assert d.file_name and d.sha256 and d.inbox and d.delete_by and d.mode
        if d.mode == "pubkey" and not d.sms_sent_at:
            text = messages.sms_pubkey(d.file_name, d.sha256, d.key_fingerprint or "")
            try:
                self.channels.sms(r.contacts.sms, text)
            except Exception as exc:
                raise self._notification_failed(
                    r.label, d, "sms_failed", f"SMS failed ({type(exc).__name__}: {exc})"
                ) from None
            d = self.ledger.transition(
                d.with_(sms_sent_at=utcnow()), "sms_sent", {"phones": len(r.contacts.sms)}
            )
        if not d.mail_sent_at:
            mail = messages.receipt(
                municipality=r.name,
                reference_date=d.reference_date,
                file_name=d.file_name,
                inbox=d.inbox,
                rows=d.row_count or 0,
                sha256=d.sha256,
                mode=d.mode,
                fingerprint=d.key_fingerprint,
                delete_by=d.delete_by,
                correction_ref=d.correction_ref,
                purge_after_days=job.purge_after_days,
            )
            try:
                self.channels.mail(r.contacts.email, mail)
            except Exception as exc:
                raise self._notification_failed(
                    r.label, d, "mail_failed", f"e-mail receipt failed ({type(exc).__name__}: {exc})"
                ) from None
            d = self.ledger.transition(
                d.with_(mail_sent_at=utcnow()), "receipt_mailed", {"recipients": len(r.contacts.email)}
            )
        return self.ledger.transition(d.with_(state="announced", announced_at=utcnow()), "delivery_announced")

    # --- the machine ----------------------------------------------------------------------------

    def rehearse(self, job: Job) -> dict[str, object]:
        """Dry run: write and encrypt the list as for real (keys are checked), upload nothing."""
        job.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        delivered, _ = self._encrypt_list(job)
        job.ciphertext.unlink()
        mode = job.recipient.encryption.mode
        return {"outcome": "dry_run", "file_name": job.file_name, "rows": delivered.num_rows, "mode": mode}

    def run(self, job: Job) -> Delivery:
        """Drive one delivery to ``announced`` from wherever the ledger says it stands."""
        started, cpu_started = time.perf_counter(), cpu_now()
        seconds: Counter[str] = Counter()
        self.last_seconds = {}
        d = self.ledger.plan_delivery(
            job.delivery_id,
            job.run_id,
            job.recipient.nis_code,
            job.kind,
            job.period,
            job.reference_date.isoformat(),
            job.correction_ref,
            since=job.p3_since,
        )
        if d.state in DONE:
            log.info("%s: already %s (%s), nothing to do", job.recipient.label, d.state, d.file_name)
            return d
        if d.state == "failed":
            d = self.ledger.transition(d.with_(state="planned", last_error=None), "delivery_resumed")
        job.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        passphrase: str | None = None
        passphrase_mode = job.recipient.encryption.mode == "passphrase"
        try:
            opening = time.perf_counter()
            with self.channels.sftp() as sftp:
                seconds["connect"] += time.perf_counter() - opening
                while d.state not in DONE:
                    step, begun = STEP_OF_STATE.get(d.state, d.state), time.perf_counter()
                    d, passphrase = self._step(job, d, sftp, passphrase, passphrase_mode)
                    seconds[step] += time.perf_counter() - begun
        except crypto.KeyRefused as exc:
            # Nothing was uploaded: give the period back (P3) and say why on the delivery.
            self.ledger.transition(
                d.with_(state="failed", last_error=f"{exc.code}: {exc}"),
                "delivery_refused",
                {"reason": exc.code},
            )
            raise
        except (NotificationFailed, AlreadyDelivered):
            raise  # recorded where it happened; P3 is decided by the caller
        except Exception as exc:
            reason = str(exc) if isinstance(exc, KbiError) else transport.describe(exc)
            self._record_failure(job, reason)
            # The task log names the municipality and the cause; the error keeps its type.
            error_type = type(exc) if isinstance(exc, KbiError) else KbiError
            failure = error_type(f"{job.recipient.label}: {reason}")
        else:
            seconds["total"] = time.perf_counter() - started
            cpu = cpu_now()
            seconds["cpu"], seconds["cpu_gpg"] = cpu[0] - cpu_started[0], cpu[1] - cpu_started[1]
            self.last_seconds = {k: round(v, 4) for k, v in seconds.items()}
            return d
        finally:
            passphrase = None
        raise failure

    def _record_failure(self, job: Job, reason: str) -> None:
        """The ledger says why an attempt failed (causes only, never data; a retry carries on)."""
        current = self.ledger.get_delivery(job.delivery_id)
        if current is not None:
            self.ledger.transition(
                current.with_(last_error=reason), "delivery_attempt_failed", {"reason": reason}
            )

    def _step(
        self, job: Job, d: Delivery, sftp: paramiko.SFTPClient, passphrase: str | None, passphrase_mode: bool
    ) -> tuple[Delivery, str | None]:
        state = d.state
        if state in ("planned", "withdrawn"):
            if passphrase_mode:
                transport.remove_if_present(sftp, job.temp_path)
            return self._encrypt(job, d)
        if state == "encrypted":
            local_ok = job.ciphertext.is_file() and transport.local_digest(job.ciphertext) == self._digest(d)
            if (passphrase_mode and passphrase is None) or not local_ok:
                # The passphrase died with an earlier attempt, or the staged ciphertext is gone.
                return self.ledger.transition(d.with_(state="planned"), "delivery_reencrypt"), None
            return self._upload(job, d, sftp), passphrase
        if state == "uploaded":
            if passphrase_mode and not d.passphrase_sent_at:
                if passphrase is None:
                    transport.remove_if_present(sftp, job.temp_path)
                    return self.ledger.transition(d.with_(state="planned"), "delivery_reencrypt"), None
                d = self._send_passphrase(job, d, sftp, passphrase)
                passphrase = None  # sent: this process no longer needs it
            try:
                return self._publish(job, d, sftp), passphrase
            except transport.UnknownFileInInbox:
                raise
            except transport.TransportError:
                if transport.remote_digest(sftp, job.temp_path) is None:
                    # The temporary file is gone (cleaned up or lost): upload again.
                    if passphrase_mode and d.passphrase_sent_at:
                        return self.ledger.transition(d.with_(state="planned"), "delivery_reencrypt"), None
                    return self.ledger.transition(d.with_(state="encrypted"), "delivery_reupload"), passphrase
                raise
        if state == "published":
            return self._announce(job, d), passphrase
        raise KbiError(f"{job.recipient.label}: delivery {d.delivery_id} is in unknown state {state!r}")
