"""Correction requests (P9): a municipality reports wrong, inaccurate, incomplete, missing,
outdated or superfluous data; the agency investigates and acts within two weeks, and tells it.

Each request is a row in the ledger with its due date (reported on + 14 days). The quality
officer decides in Airflow (human in the loop): corrected in KBI → the municipality's full list
is extracted, checked and delivered again as ``…_correctie_<reference>.csv.gpg`` through the same
delivery machine as the yearly run (a correction is not a new annual list: P3); no error found →
the municipality is told why; more time needed → a new date, still measured against the 14 days.
The daily monitor reminds the quality officers on day 10 and escalates on day 14.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pyarrow.parquet as pq

from kbi import messages, reference, registry, rowhash, selection, source, transport
from kbi.delivery import Channels, DeliveryMachine, Job
from kbi.errors import KbiError, scrubbed
from kbi.ledger import Correction, Ledger, chain
from kbi.ledger.store import utcnow
from kbi.quality import checks
from kbi.quality.quarantine import Quarantine
from kbi.settings import Settings

log = logging.getLogger(__name__)

DUE_DAYS = 14
REMIND_ON_DAY = 10
REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
MAX_DESCRIPTION = 2000

CORRECTED = "gecorrigeerd in KBI, opnieuw leveren"
NO_ERROR = "geen fout gevonden"
MORE_TIME = "meer tijd nodig"


class CorrectionRefused(KbiError):
    """The request cannot be registered or handled as asked; the message says why."""


@dataclass(frozen=True)
class Request:
    nis_code: str
    reported_on: date
    reference: str
    description: str
    reporter: str

    @property
    def due_on(self) -> date:
        return self.reported_on + timedelta(days=DUE_DAYS)


def validate(req: Request, reg: registry.Registry, today: date) -> registry.Recipient:
    """Refuse a request that cannot be right, before anything is registered."""
    if not REFERENCE.match(req.reference or ""):
        raise CorrectionRefused(
            "reference must be 1-40 letters, digits, '-' or '_' (it becomes part of the file name)"
        )
    muni = reference.municipalities().get(req.nis_code)
    if muni is None:
        raise CorrectionRefused(f"{req.nis_code} is not a municipality of the 2025 reference list")
    if not muni.is_flemish:
        raise CorrectionRefused(
            f"{req.nis_code} {muni.name} is a Brussels municipality: it receives no list (P1)"
        )
    recipient = reg.recipients.get(req.nis_code)
    if recipient is None:
        raise CorrectionRefused(f"{req.nis_code} {muni.name} has no protocol in the recipients registry")
    ok = registry.eligibility(recipient, today)
    if not ok.eligible:
        raise CorrectionRefused(f"{recipient.label}: {ok.reason} ({ok.rule})")
    if req.reported_on > today:
        raise CorrectionRefused(f"reported_on {req.reported_on} lies in the future")
    for name, text in (("description", req.description), ("reporter", req.reporter)):
        if chain.contains_national_number(text or ""):
            raise CorrectionRefused(
                f"the {name} seems to hold a national number: personal data does not belong in a "
                "request (the agency finds the rows itself); remove it and submit again"
            )
    if len(req.description or "") > MAX_DESCRIPTION:
        raise CorrectionRefused(f"the description is longer than {MAX_DESCRIPTION} characters")
    return recipient


def register(ledger: Ledger, req: Request, run_id: str) -> Correction:
    """Record the request (idempotent for its own run); a handled one needs reopening first."""
    existing = ledger.get_correction(req.reference)
    description = req.description or ""
    base = {
        "nis_code": req.nis_code,
        "reported_on": req.reported_on.isoformat(),
        "due_on": req.due_on.isoformat(),
        "reporter": req.reporter,
        "description_sha256": hashlib.sha256(description.encode()).hexdigest(),
        "description_length": len(description),
        "run_id": run_id,
    }
    if existing is None:
        return ledger.insert_correction(
            Correction(reference=req.reference, round=1, state="open", registered_at=utcnow(), **base)
        )
    if existing.run_id == run_id:
        return existing  # a retried task
    if existing.nis_code != req.nis_code:
        raise CorrectionRefused(
            f"reference {req.reference} belongs to {existing.nis_code}, not {req.nis_code}"
        )
    if existing.state != "reopened":
        raise CorrectionRefused(
            f"correction {req.reference} is already {existing.state} (run {existing.run_id}); a second "
            f"correction for the same reference needs the quality officer to reopen it: "
            f"kbi corrections reopen {req.reference}"
        )
    reopened = existing.with_(
        **base,
        round=existing.round + 1,
        state="open",
        extended_to=None,
        decision=None,
        decision_reason=None,
        decided_by=None,
        handled_on=None,
        delivery_id=None,
        rows_added=None,
        rows_removed=None,
        rows_changed=None,
        reminded_on=None,
        escalated_on=None,
        acknowledged_at=None,
    )
    return ledger.update_correction(reopened, "correction_round_started", {"round": reopened.round})


def reopen(ledger: Ledger, ref: str, by: str) -> Correction:
    c = ledger.get_correction(ref)
    if c is None:
        raise CorrectionRefused(f"no correction request {ref}")
    if c.state not in ("corrected", "no_error"):
        raise CorrectionRefused(f"correction {ref} is {c.state}: only a handled request can be reopened")
    return ledger.update_correction(c.with_(state="reopened"), "correction_reopened", {"by": by})


def _municipality(nis: str) -> str:
    muni = reference.municipalities().get(nis)
    return muni.name if muni else nis


def acknowledge(
    ledger: Ledger, channels: Channels, recipient: registry.Recipient, c: Correction
) -> Correction:
    """Tell the municipality its report arrived and by when it is handled (once per round)."""
    if c.acknowledged_at:
        return c
    channels.mail(
        recipient.contacts.email,
        messages.correction_acknowledged(
            municipality=recipient.name, reference=c.reference, reported_on=c.reported_on, due_on=c.due_on
        ),
    )
    return ledger.update_correction(c.with_(acknowledged_at=utcnow()), "correction_acknowledged")


def decision(hitl_results: list[dict[str, Any] | None]) -> tuple[str, str, str, str | None]:
    """(option, reason, who, new date) from the human-in-the-loop answers, latest first."""
    for answer in hitl_results:
        if answer and answer.get("chosen_options"):
            params = answer.get("params_input") or {}
            who = (answer.get("responded_by_user") or {}).get("name") or "unknown"
            return (
                answer["chosen_options"][0],
                str(params.get("reden") or ""),
                who,
                params.get("nieuwe_datum"),
            )
    raise CorrectionRefused("no decision of the quality officer was found")


def extend(
    ledger: Ledger,
    channels: Channels,
    recipient: registry.Recipient,
    ref: str,
    new_date: str | None,
    reason: str,
    by: str,
) -> Correction:
    c = _open(ledger, ref)
    if not new_date:
        raise CorrectionRefused("'meer tijd nodig' needs a new date (nieuwe_datum)")
    c = ledger.update_correction(
        c.with_(
            state="extended",
            extended_to=str(new_date),
            decision=MORE_TIME,
            decision_reason=reason,
            decided_by=by,
        ),
        "correction_extended",
        {"extended_to": str(new_date), "late": str(new_date) > c.due_on},
    )
    channels.mail(
        recipient.contacts.email,
        messages.correction_extended(
            municipality=recipient.name,
            reference=ref,
            reported_on=c.reported_on,
            extended_to=str(new_date),
            reason=reason,
        ),
    )
    return c


def _open(ledger: Ledger, ref: str) -> Correction:
    c = ledger.get_correction(ref)
    if c is None:
        raise CorrectionRefused(f"no correction request {ref}")
    if c.state not in ("open", "extended"):
        raise CorrectionRefused(f"correction {ref} is {c.state}, not open")
    return c


def close_no_error(
    ledger: Ledger,
    channels: Channels,
    recipient: registry.Recipient,
    ref: str,
    reason: str,
    by: str,
    today: date,
) -> Correction:
    if not reason.strip():
        raise CorrectionRefused("'geen fout gevonden' needs a reason for the municipality (reden)")
    if chain.contains_national_number(reason):
        raise CorrectionRefused(
            "the reason seems to hold a national number; it goes to the municipality by e-mail"
        )
    c = _open(ledger, ref)
    channels.mail(
        recipient.contacts.email,
        messages.correction_no_error(
            municipality=recipient.name, reference=ref, reported_on=c.reported_on, reason=reason
        ),
    )
    return ledger.update_correction(
        c.with_(
            state="no_error",
            decision=NO_ERROR,
            decision_reason=reason,
            decided_by=by,
            handled_on=today.isoformat(),
        ),
        "correction_closed",
        {"outcome": "no_error", "in_time": today.isoformat() <= c.due_on},
    )


def file_suffix(c: Correction) -> str:
    """The file's correction reference: a reopened request gets a new name (``REF-2``)."""
    return c.reference if c.round == 1 else f"{c.reference}-{c.round}"


@dataclass
class Redelivery:
    correction: Correction
    file_name: str
    rows: int
    difference: rowhash.Difference | None
    superseded: str | None
    quarantined: int


def redeliver(
    *,
    ledger: Ledger,
    quarantine: Quarantine | None,
    channels: Channels,
    settings: Settings,
    reg: registry.Registry,
    source_engine: Any,
    ref: str,
    by: str,
    reason: str,
    run_id: str,
    today: date,
    on_secret: Any = None,
) -> Redelivery:
    """Extract and check the municipality alone, deliver its full corrected list, compare it with
    the previous list by keyed hashes, and retire the previous file if it is still on the server."""
    from kbi.pipeline import run_dir

    c = ledger.get_correction(ref)
    if c is None:
        raise CorrectionRefused(f"no correction request {ref}")
    recipient = reg.recipients[c.nis_code]
    directory = run_dir(settings, run_id)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        # Idempotent: a retry after the delivery was made only finishes the bookkeeping.
        if c.state not in ("corrected",):
            if c.state not in ("open", "extended"):
                raise CorrectionRefused(f"correction {ref} is {c.state}, not open")
            c = ledger.update_correction(
                c.with_(decision=CORRECTED, decision_reason=reason, decided_by=by), "correction_decided"
            )
        codes = [c.nis_code] + [old for old, new in reference.crosswalk().items() if new == c.nis_code]
        extracted = source.extract(
            source_engine, directory / "extract.parquet", nis_codes=codes, timeout_s=settings.source_timeout_s
        )
        table = pq.read_table(directory / "extract.parquet")
        if table.num_rows != extracted.expected_rows:
            raise KbiError(
                f"the extract for {recipient.label} was cut off "
                f"({table.num_rows} of {extracted.expected_rows} rows)"
            )
        result = checks.run(table, today)
        if quarantine is not None:
            quarantine.migrate()
            quarantine.store(run_id, result.failed, today)
        with scrubbed(f"selecting the list of {recipient.label}"):
            classified = selection.classify(result.passed, today, [c.nis_code])
            part = selection.partitions(classified).get(c.nis_code, selection.empty_partition())
            partition_path = directory / f"{c.nis_code}.parquet"
            pq.write_table(part, partition_path)
        previous = ledger.last_published_delivery(
            c.nis_code, exclude=f"correction:{c.nis_code}:{file_suffix(c)}"
        )
        job = Job(
            run_id=run_id,
            kind="correction",
            period=str(today.year),
            recipient=recipient,
            registry_dir=reg.directory,
            reference_date=today,
            partition_path=partition_path,
            workdir=directory / "work" / c.nis_code,
            correction_ref=file_suffix(c),
            sftp_staging_dir=settings.sftp_staging_dir,
            retention_years=settings.retention_years,
            purge_after_days=settings.pickup_purge_days,
        )
        machine = DeliveryMachine(ledger, channels, today, **({"on_secret": on_secret} if on_secret else {}))
        delivered = machine.run(job)
        difference = None
        if previous is not None and ledger.row_key:
            difference = rowhash.compare(
                ledger.delivery_rows(previous.delivery_id),
                ledger.delivery_rows(delivered.delivery_id).items(),
            )
        superseded = _retire(ledger, channels, previous, delivered.delivery_id)
        if c.state != "corrected":
            changes = difference.as_dict() if difference else {}
            c = ledger.update_correction(
                c.with_(
                    state="corrected",
                    handled_on=today.isoformat(),
                    delivery_id=delivered.delivery_id,
                    rows_added=changes.get("added"),
                    rows_removed=changes.get("removed"),
                    rows_changed=changes.get("changed"),
                ),
                "correction_closed",
                {
                    "outcome": "corrected",
                    "in_time": today.isoformat() <= c.due_on,
                    "delivery_id": delivered.delivery_id,
                    "supersedes": previous.delivery_id if previous else None,
                    **changes,
                },
            )
            channels.mail(
                recipient.contacts.email,
                messages.correction_done(
                    municipality=recipient.name,
                    reference=ref,
                    reported_on=c.reported_on,
                    file_name=str(delivered.file_name),
                    added=changes.get("added", 0),
                    removed=changes.get("removed", 0),
                    changed=changes.get("changed", 0),
                    superseded=superseded,
                ),
            )
        return Redelivery(
            c,
            str(delivered.file_name),
            delivered.row_count or 0,
            difference,
            superseded,
            result.failed.num_rows,
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)  # the plaintext goes, whatever happened (P12)


def _retire(ledger: Ledger, channels: Channels, previous: Any, new_delivery_id: str) -> str | None:
    """The corrected list replaces the previous one: a previous file still waiting on the server
    is removed and recorded as superseded (the ledger links the two)."""
    if previous is None or previous.state not in ("announced", "reminded"):
        return None
    with channels.sftp() as sftp:
        transport.remove_if_present(sftp, f"{previous.inbox}/{previous.file_name}")
    ledger.transition(
        previous.with_(state="purged", purged_at=utcnow()),
        "file_superseded",
        {"file_name": previous.file_name, "superseded_by": new_delivery_id},
    )
    return previous.file_name


# --- the 14-day clock -------------------------------------------------------------------------------


@dataclass
class DeadlineNotice:
    correction: Correction
    kind: str  # reminder | escalation
    days: int

    def line(self) -> str:
        c = self.correction
        return (
            f"{c.reference} ({c.nis_code} {_municipality(c.nis_code)}), reported {c.reported_on}, "
            f"due {c.due_on}: day {self.days}, {c.state}{' until ' + c.extended_to if c.extended_to else ''}"
        )


def deadlines(ledger: Ledger, today: date) -> list[DeadlineNotice]:
    """Day 10: remind the quality officers; day 14 (and later): escalate, each once per request."""
    notices = []
    for c in ledger.open_corrections():
        days = (today - date.fromisoformat(c.reported_on)).days
        if days >= DUE_DAYS and not c.escalated_on:
            ledger.update_correction(
                c.with_(escalated_on=today.isoformat()), "correction_escalated", {"day": days}
            )
            notices.append(DeadlineNotice(c, "escalation", days))
        elif REMIND_ON_DAY <= days < DUE_DAYS and not c.reminded_on:
            ledger.update_correction(
                c.with_(reminded_on=today.isoformat()), "correction_reminder", {"day": days}
            )
            notices.append(DeadlineNotice(c, "reminder", days))
    return notices
