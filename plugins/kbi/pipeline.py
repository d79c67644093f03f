"""The steps of a distribution run, as plain functions the DAG tasks call in one line each.

Between steps only references travel (paths into the run's private staging directory, NIS codes,
counts, checksums): never rows, names or numbers (P12). Each step can be repeated: it reads what
the ledger and the staging area already hold and produces the same result.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from kbi import crypto, reference, registry, transport
from kbi.delivery import Channels, DeliveryMachine, Job
from kbi.errors import DataError, KbiError, scrubbed
from kbi.ledger import AlreadyDelivered, Delivery, Ledger
from kbi.settings import Settings

if TYPE_CHECKING:
    from kbi.quality.quarantine import Quarantine

# The extract, quality and partition steps import pyarrow's compute and parquet modules inside
# their functions: the 285 deliver tasks import this module too and need none of it.

log = logging.getLogger(__name__)

DAG_ANNUAL = "kbi_distribution"


class QualityGateFailed(KbiError):
    """A run-level check stopped the run before anything was encrypted or sent (P11)."""


class RunIncomplete(KbiError):
    """Some municipality's list was not delivered; the summary names it."""


class RunRefused(KbiError):
    """The run's parameters cannot be honoured (unknown municipality, date in the future)."""


def safe_name(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)


def run_dir(settings: Settings, run_id: str) -> Path:
    return settings.staging_dir / safe_name(run_id)


def reports_dir(settings: Settings, run_id: str) -> Path:
    return settings.reports_dir / safe_name(run_id)


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _write_json(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


Alert = Callable[[str, str], None]

# --- 1. plan: who receives in this run ----------------------------------------------------------


@dataclass(frozen=True)
class RunParams:
    run_id: str
    reference_date: date
    today: date
    municipalities: tuple[str, ...] = ()
    dry_run: bool = False
    accept_count_change: tuple[str, ...] = ()
    # Catalogue 15: a person's approval, for this run, of a view larger than max_extract_rows.
    accept_extract_rows: int | None = None
    p3_period: str = "calendar"

    @property
    def period(self) -> str:
        # P3: one annual list per municipality per calendar year of delivery; in rolling mode the
        # period is the day (the unique index then only stops two lists on one day) ...
        return str(self.today.year) if self.p3_period == "calendar" else self.today.isoformat()

    @property
    def since(self) -> str | None:
        # ... and the check looks back 365 days.
        return None if self.p3_period == "calendar" else (self.today - timedelta(days=365)).isoformat()


def plan(ledger: Ledger, settings: Settings, params: RunParams) -> dict[str, Any]:
    """Load the registry, decide per municipality (P1, P3, P4, P5), stage the run directory."""
    if params.reference_date > params.today:
        raise RunRefused(f"reference_date {params.reference_date} lies after today ({params.today})")
    known = reference.municipalities()
    unknown = sorted(set(params.municipalities) - set(known))
    if unknown:
        raise RunRefused(f"unknown NIS code(s) requested: {', '.join(unknown)}")
    reg = registry.load(settings.registry_path)
    ledger.migrate()
    if not params.dry_run:
        ledger.start_run(
            params.run_id, DAG_ANNUAL, "annual", params.reference_date.isoformat(), False, reg.version
        )
    sunset = None
    warnings: list[str] = []
    if settings.magda_go_live is not None:
        sunset = registry.add_months(settings.magda_go_live, 24)
        if registry.add_months(params.today, settings.sunset_warning_months) >= sunset > params.today:
            warnings.append(
                f"P4: the MAGDA list service went live on {settings.magda_go_live}; no files can be sent "
                f"from {sunset} on. Municipalities must use the web service by then."
            )
    requested = set(params.municipalities)
    directory = _private_dir(run_dir(settings, params.run_id))
    registry.write_snapshot(reg, directory / REGISTRY_SNAPSHOT)
    key_check_dir = directory / "keycheck"
    decisions: list[dict[str, Any]] = []
    needs_key: dict[str, registry.Recipient] = {}
    for nis, muni in sorted(known.items()):
        recipient = reg.recipients.get(nis)
        decision: dict[str, Any] = {"nis_code": nis, "name": muni.name, "decision": "deliver"}
        if requested and nis not in requested:
            decision |= {"decision": "skipped", "rule": None, "reason": "not requested in this run"}
        elif recipient is None:
            rule = "P1" if not muni.is_flemish else "P5"
            why = "Brussels municipality" if not muni.is_flemish else "no protocol in the recipients registry"
            decision |= {"decision": "skipped", "rule": rule, "reason": why}
        elif sunset is not None and params.today >= sunset:
            decision |= {
                "decision": "refused",
                "rule": "P4",
                "reason": f"MAGDA list service live since {settings.magda_go_live}: no files from {sunset}",
            }
        else:
            ok = registry.eligibility(recipient, params.today)
            if not ok.eligible:
                decision |= {"decision": "refused", "rule": ok.rule, "reason": ok.reason}
            else:
                holder = ledger.annual_holder(nis, params.period, params.since)
                if holder is not None and holder.run_id != params.run_id:
                    decision |= {"decision": "refused", "rule": "P3", "reason": str(AlreadyDelivered(holder))}
                else:
                    needs_key[nis] = recipient
        decisions.append(decision)
    problems = _key_problems(needs_key, reg.directory, params.today, key_check_dir)
    for decision in decisions:
        if problem := problems.get(decision["nis_code"]):
            decision |= {"decision": "refused", "rule": "P6", "reason": problem}
    # Municipalities outside the registry are recorded too: the ledger says why each got nothing.
    if not params.dry_run:
        ledger.record_decisions(
            params.run_id, [d for d in decisions if not (requested and d["nis_code"] not in requested)]
        )
    receiving = [
        {"nis_code": d["nis_code"], "name": d["name"]} for d in decisions if d["decision"] == "deliver"
    ]
    log.info(
        "Run %s: %d municipalities receive, %d refused, %d skipped (registry %s)",
        params.run_id,
        len(receiving),
        sum(d["decision"] == "refused" for d in decisions),
        sum(d["decision"] == "skipped" for d in decisions),
        reg.version,
    )
    for d in decisions:
        if d["decision"] == "refused":
            log.warning("%s %s refused (%s): %s", d["nis_code"], d["name"], d["rule"], d["reason"])
    for warning in warnings:
        log.warning(warning)
    return {
        "run_id": params.run_id,
        "run_dir": str(directory),
        "reference_date": params.reference_date.isoformat(),
        "today": params.today.isoformat(),
        "period": params.period,
        "dry_run": params.dry_run,
        "p3_since": params.since,
        "warnings": warnings,
        "accept_count_change": list(params.accept_count_change),
        "accept_extract_rows": params.accept_extract_rows,
        "registry_version": reg.version,
        "receiving": receiving,
        "decisions": decisions,
    }


def _key_problem(recipient: registry.Recipient, registry_dir: Path, today: date, home: Path) -> str | None:
    """P6: a pubkey recipient whose key cannot be used is refused before any data is read."""
    if recipient.encryption.mode != "pubkey":
        return None
    key_path = recipient.key_path(registry_dir)
    assert key_path is not None and recipient.encryption.fingerprint is not None
    try:
        crypto.check_key(crypto.keyring(home), key_path, recipient.encryption.fingerprint, today)
    except crypto.KeyRefused as exc:
        return f"{exc.code}: {exc}"
    finally:
        crypto.remove_keyring(home)
    return None


KEY_CHECK_WORKERS = 4  # gpg runs in its own processes: threads overlap their start-up


def _key_problems(
    recipients: dict[str, registry.Recipient], registry_dir: Path, today: date, home: Path
) -> dict[str, str]:
    """``_key_problem`` for each recipient, each in a keyring of its own; the refused ones."""
    from concurrent.futures import ThreadPoolExecutor

    try:
        with ThreadPoolExecutor(KEY_CHECK_WORKERS) as pool:
            found = pool.map(
                lambda item: (item[0], _key_problem(item[1], registry_dir, today, home / item[0])),
                recipients.items(),
            )
            return {nis: problem for nis, problem in found if problem}
    finally:
        shutil.rmtree(home, ignore_errors=True)


# --- 2. extract ---------------------------------------------------------------------------------


def extract(
    engine: Any,
    settings: Settings,
    plan_: dict[str, Any],
    ledger: Ledger | None = None,
    alert: Alert | None = None,
) -> dict[str, Any]:
    """Stage the KBI view; a view far larger than a year stops the run before a row is read
    (catalogue 15, P11) unless the run's ``accept_extract_rows`` allows that many."""
    from kbi import source

    path = Path(plan_["run_dir"]) / "extract.parquet"
    limit = max(settings.max_extract_rows, plan_.get("accept_extract_rows") or 0)
    try:
        got = source.extract(engine, path, timeout_s=settings.source_timeout_s, max_rows=limit)
    except source.TooLarge as exc:
        reason = (
            f"{exc} (KBI_MAX_EXTRACT_ROWS): check the source; if the size is right, trigger again "
            f"with accept_extract_rows {exc.rows} (the largest task needs about 0.9 GB per million rows)"
        )
        _halt(ledger, plan_, reason, {"rows_counted": exc.rows, "limit": exc.limit}, alert)
    log.info(
        "Extracted %d rows of target group inburgeraar (the view counts %d)", got.rows, got.expected_rows
    )
    return {"path": str(path), "rows": got.rows, "expected_rows": got.expected_rows}


# --- 3. quality ---------------------------------------------------------------------------------


def _halt(
    ledger: Ledger | None, plan_: dict[str, Any], reason: str, details: dict[str, Any], alert: Alert | None
) -> NoReturn:
    """Stop the run before anything is encrypted or sent: ledger, alert, then a clear failure."""
    run_id = plan_["run_id"]
    if ledger is not None and not plan_["dry_run"]:
        ledger.finish_run(run_id, "halted", {"reason": reason, **details})
    if alert is not None:
        report = f"Quality report: {details['report']}\n" if details.get("report") else ""
        text = (
            f"Run {run_id} of kbi_distribution was stopped before anything was encrypted or sent.\n\n"
            f"Reason: {reason}\n\n{report}"
            "Nothing reached any municipality. Fix the cause (or accept the change, see the README) "
            "and trigger the run again.\n"
        )
        send_alert(alert, f"[KBI] run {run_id[:24]} halted", text)
    raise QualityGateFailed(f"Run stopped before anything was encrypted or sent: {reason}")


def check_quality(
    quarantine: Quarantine | None,
    ledger: Ledger,
    settings: Settings,
    plan_: dict[str, Any],
    extracted: dict[str, Any],
    alert: Alert | None = None,
) -> dict[str, Any]:
    """The Great Expectations suite and the blocking checks; failing rows to the quarantine;
    run-level gates stop the run (P11)."""
    import pyarrow.parquet as pq

    from kbi.quality import checks, gx_suite, report

    run_id = plan_["run_id"]
    today = date.fromisoformat(plan_["today"])
    table = pq.read_table(extracted["path"])
    result = checks.run(table, today)
    suite = gx_suite.validate(table, checks.Context(today), expected_rows=extracted.get("expected_rows"))
    del table
    # The report (GX) and the quarantine (masks) read the same rules; they must agree to the row.
    disagree = [
        e["rule"]
        for e in suite.expectations
        if e["severity"] != "run" and e["unexpected_count"] != result.rule_counts[e["rule"]]
    ]
    if disagree:
        raise DataError(
            f"the suite and the quarantine disagree on {', '.join(disagree)}; nothing was delivered"
        )
    reason = None
    failed_run_level = suite.run_level_failures()
    if "extract_not_empty" in failed_run_level:
        reason = "the extract is empty: refusing to deliver empty lists"
    elif "extract_complete" in failed_run_level:
        reason = (
            f"the extract holds {extracted['rows']} rows but the view counted {extracted['expected_rows']}: "
            "it was cut off on the way"
        )
    elif result.failure_rate > settings.max_blocking_failure_rate:
        reason = (
            f"{result.failed.num_rows} of {result.rows_checked} rows ({result.failure_rate:.2%}) "
            f"fail a blocking check, above the {settings.max_blocking_failure_rate:.2%} threshold"
        )
    if quarantine is not None and not plan_["dry_run"]:
        quarantine.migrate()
        quarantine.store(run_id, result.failed, today)
        purged = quarantine.purge(settings.quarantine_retention_days, today)
        if purged:
            log.info(
                "Purged %d quarantined row(s) older than %d days", purged, settings.quarantine_retention_days
            )
    passed_path = Path(plan_["run_dir"]) / "checked.parquet"
    with scrubbed("staging the checked rows"):
        pq.write_table(result.passed, passed_path)
    suite_dict = {
        "name": gx_suite.SUITE_NAME,
        "gx_version": suite.gx_version,
        "expectations": suite.expectations,
    }
    content = report.build(
        run_id=run_id,
        today=plan_["today"],
        result=result,
        suite=suite_dict,
        threshold=settings.max_blocking_failure_rate,
        halt_reason=reason,
    )
    _, html = report.write(reports_dir(settings, run_id), content)
    log.info("Quality report: %s", html)
    for name, count in result.failures.items():
        log.warning("Quarantined %d row(s): %s (%s)", count, name, checks.CHECKS[name])
    summary = {
        "rows_checked": result.rows_checked,
        "rows_passed": result.passed.num_rows,
        "rows_quarantined": result.failed.num_rows,
        "failure_rate": round(result.failure_rate, 6),
        "failures": result.failures,
        "warnings": result.warnings,
        "report": str(html),
    }
    if reason:
        _halt(ledger, plan_, reason, {k: v for k, v in summary.items()}, alert)
    return summary | {"path": str(passed_path)}


# --- 4. partition ---------------------------------------------------------------------------------


def _moved(previous: int, now: int, settings: Settings) -> bool:
    return abs(now - previous) > max(settings.max_count_change * previous, settings.min_count_change_rows)


def partition(
    settings: Settings,
    plan_: dict[str, Any],
    checked: dict[str, Any],
    ledger: Ledger | None = None,
    alert: Alert | None = None,
) -> list[dict[str, Any]]:
    """Select per municipality (P1) and stage one file per receiving municipality (P2).

    Returns the list the deliver task is mapped over; the row counts per selection outcome go to
    the run's reports (``selection.json``) for the summary. A list that moved more than the
    configured share since the municipality's last delivery stops the run (P11), unless the
    run's ``accept_count_change`` names that municipality.
    """
    import pyarrow.parquet as pq

    from kbi import selection

    receiving = {r["nis_code"]: r["name"] for r in plan_["receiving"]}
    reference_date = date.fromisoformat(plan_["reference_date"])
    with scrubbed("selecting and partitioning"):
        table = pq.read_table(checked["path"])
        classified = selection.classify(table, reference_date, receiving)
        counts = selection.outcome_counts(classified)
        parts = selection.partitions(classified)
        del table, classified
    sizes = {nis: (parts[nis].num_rows if nis in parts else 0) for nis in receiving}
    if ledger is not None:
        accepted = set(plan_.get("accept_count_change") or ())
        previous = ledger.last_delivered_counts()
        moved = [
            f"{nis} {receiving[nis]} {previous[nis]} → {sizes[nis]}"
            for nis in sorted(receiving)
            if nis in previous and nis not in accepted and _moved(previous[nis], sizes[nis], settings)
        ]
        if moved:
            shown = "; ".join(moved[:10]) + ("; …" if len(moved) > 10 else "")
            reason = (
                f"{len(moved)} list(s) moved more than {settings.max_count_change:.0%} since their last "
                f"delivery ({shown}). If expected, trigger again with accept_count_change listing them"
            )
            _halt(ledger, plan_, reason, {"moved": moved}, alert)
    # What a deliver task needs of the plan, in its own item: no mapped task pulls the whole plan.
    run = {k: plan_.get(k) for k in DELIVER_NEEDS}
    with scrubbed("staging the partitions"):
        out_dir = _private_dir(Path(plan_["run_dir"]) / "partitions")
        items = []
        for nis, name in sorted(receiving.items()):
            part = parts.get(nis)
            if part is None:
                part = selection.empty_partition()
            path = out_dir / f"{nis}.parquet"
            pq.write_table(part, path)
            items.append(
                {"nis_code": nis, "name": name, "rows": part.num_rows, "partition": str(path), "run": run}
            )
    log.info("Selection: %s", json.dumps(counts, sort_keys=True))
    _write_json(reports_dir(settings, plan_["run_id"]) / "selection.json", counts)
    return items


# --- 5. deliver (one municipality) ----------------------------------------------------------------


REGISTRY_SNAPSHOT = "registry.json"
DELIVER_NEEDS = (
    "run_id",
    "run_dir",
    "registry_version",
    "period",
    "reference_date",
    "today",
    "dry_run",
    "p3_since",
)


def deliver(
    ledger: Ledger,
    channels: Channels,
    settings: Settings,
    item: dict[str, Any],
    on_secret: Any = None,
) -> dict[str, Any]:
    """One municipality's delivery; ``item`` is one entry of ``partition``'s list."""
    plan_ = item["run"]
    version = plan_["registry_version"]
    if changed := registry.changed_since(settings.registry_path, version):
        raise RunRefused(
            f"the recipients registry changed during the run ({version} → {changed}); "
            "start a new run so that every municipality is decided on the same registry"
        )
    directory = Path(plan_["run_dir"])
    snapshot = directory / REGISTRY_SNAPSHOT
    if not snapshot.is_file():
        raise RunRefused("the plan's registry snapshot is gone from the run's staging area; start a new run")
    recipient = registry.planned_recipient(snapshot, item["nis_code"], version)
    job = Job(
        run_id=plan_["run_id"],
        kind="annual",
        period=plan_["period"],
        recipient=recipient,
        registry_dir=settings.registry_path.parent,
        reference_date=date.fromisoformat(plan_["reference_date"]),
        partition_path=Path(item["partition"]),
        workdir=directory / "work" / item["nis_code"],
        sftp_staging_dir=settings.sftp_staging_dir,
        retention_years=settings.retention_years,
        purge_after_days=settings.pickup_purge_days,
        p3_since=plan_.get("p3_since"),
    )
    today = date.fromisoformat(plan_["today"])
    machine = DeliveryMachine(ledger, channels, today, **({"on_secret": on_secret} if on_secret else {}))
    base = {"nis_code": recipient.nis_code, "name": recipient.name, "rows": item["rows"]}
    if plan_["dry_run"]:
        return base | machine.rehearse(job)
    try:
        d = machine.run(job)
    except AlreadyDelivered as exc:  # P3, decided by the database when two runs race
        ledger.record_decision(plan_["run_id"], recipient.nis_code, recipient.name, "refused", "P3", str(exc))
        log.warning("%s: %s", recipient.label, exc)
        return base | {"outcome": "refused", "rule": "P3", "reason": str(exc)}
    except crypto.KeyRefused as exc:  # P6: the key changed state since the plan
        reason = f"{exc.code}: {exc}"
        ledger.record_decision(plan_["run_id"], recipient.nis_code, recipient.name, "refused", "P6", reason)
        raise
    log.info(
        "%s: %s %s (%d rows, %s, sha256 %s)",
        recipient.label,
        d.state,
        d.file_name,
        d.row_count or 0,
        d.mode,
        d.sha256,
    )
    return base | {
        "outcome": "delivered",
        "state": d.state,
        "file_name": d.file_name,
        "inbox": d.inbox,
        "rows": d.row_count,
        "sha256": d.sha256,
        "mode": d.mode,
        "seconds": machine.last_seconds,  # where this delivery's time went, by step
    }


# --- 6. summary and clean-up ----------------------------------------------------------------------


def summarise(
    ledger: Ledger,
    settings: Settings,
    plan_: dict[str, Any],
    checked: dict[str, Any] | None,
    results: list[dict[str, Any]] | None,
    alert: Alert | None = None,
) -> dict[str, Any]:
    """The run summary (counts and reasons, no personal data), to the ledger and the reports."""
    run_id = plan_["run_id"]
    selection_file = reports_dir(settings, run_id) / "selection.json"
    selected = json.loads(selection_file.read_text()) if selection_file.exists() else {}
    results = [r for r in (results or []) if r]
    decisions = plan_["decisions"]
    if not plan_["dry_run"]:
        # The ledger also knows the refusals decided while delivering (a race for P3, a key).
        recorded = {d["nis_code"]: d for d in ledger.decisions(run_id)}
        decisions = [
            d | {k: recorded[d["nis_code"]][k] for k in ("decision", "rule", "reason")}
            if d["nis_code"] in recorded
            else d
            for d in decisions
        ]
    outcomes = Counter(r.get("outcome", "unknown") for r in results)
    delivered_nis = {r["nis_code"] for r in results if r.get("outcome") == "delivered"}
    refused_nis = {d["nis_code"] for d in decisions if d["decision"] == "refused"}
    expected = {r["nis_code"] for r in plan_["receiving"]}
    done = delivered_nis | {r["nis_code"] for r in results if r.get("outcome") == "dry_run"}
    failed = sorted(expected - done - refused_nis)
    summary = {
        "run_id": run_id,
        "reference_date": plan_["reference_date"],
        "dry_run": plan_["dry_run"],
        "registry_version": plan_["registry_version"],
        "warnings": plan_.get("warnings", []),
        "municipalities": {
            "delivered": len(delivered_nis),
            "dry_run_ok": outcomes.get("dry_run", 0),
            "refused": len(refused_nis),
            "skipped": sum(d["decision"] == "skipped" for d in decisions),
            "failed": len(failed),
        },
        "refusals": [
            {k: d.get(k) for k in ("nis_code", "name", "rule", "reason")}
            for d in decisions
            if d["decision"] == "refused"
        ],
        "skipped_reasons": dict(Counter(d["reason"] for d in decisions if d["decision"] == "skipped")),
        "failed": failed,
        "rows": {
            "extracted": (checked or {}).get("rows_checked", 0),
            "quarantined": (checked or {}).get("rows_quarantined", 0),
            "quarantined_by_check": (checked or {}).get("failures", {}),
            "warnings": (checked or {}).get("warnings", {}),
            "selection": selected,
            "delivered": sum(r.get("rows") or 0 for r in results if r.get("outcome") == "delivered"),
        },
        "deliveries": [
            {k: r.get(k) for k in ("nis_code", "name", "file_name", "rows", "mode", "sha256", "state")}
            for r in results
            if r.get("outcome") in ("delivered", "dry_run")
        ],
        "delivery_seconds": _seconds_by_step(results),
    }
    _write_json(reports_dir(settings, run_id) / "summary.json", summary)
    if not plan_["dry_run"]:
        _release_unfinished(ledger, run_id)
        state = "failed" if failed else "success"
        ledger.finish_run(run_id, state, {k: summary[k] for k in ("municipalities", "rows")})
    if failed and alert is not None:
        stopped = [d for d in ledger.deliveries_of_run(run_id) if d.nis_code in failed]
        _alert_host_key_mismatch(stopped, run_id, alert)
        _alert_announcements_owed(stopped, run_id, alert)
    if failed:
        # The summary is written; now make the run red so nobody mistakes it for a complete one.
        raise RunIncomplete(
            f"{len(failed)} municipality(ies) not delivered: {', '.join(failed)}; see their tasks"
        )
    return summary


def _alert_host_key_mismatch(failed: list[Delivery], run_id: str, alert: Alert) -> None:
    """Catalogue 28: the transfer server showed another host key than the pinned one, a possible
    interception. One security alert per run, however many deliveries it stopped."""
    stopped = sorted(
        d.nis_code for d in failed if (d.last_error or "").startswith(transport.HostKeyMismatch.CODE)
    )
    if stopped:
        send_host_key_alert(alert, DAG_ANNUAL, run_id, deliveries_stopped(stopped))


def _alert_announcements_owed(failed: list[Delivery], run_id: str, alert: Alert) -> None:
    """Catalogue 41: files on the transfer server whose SMS or e-mail receipt could not be sent.
    They are complete and encrypted, but the municipality has not been told: somebody must clear
    the tasks once the gateway or relay works again (the rerun sends only what is owed, once)."""
    owed = []
    for d in failed:
        missing = (["SMS"] if d.mode == "pubkey" and not d.sms_sent_at else []) + (
            ["e-mail receipt"] if not d.mail_sent_at else []
        )
        # Both sent but not yet marked announced (stopped in between): nothing is owed to anyone.
        if d.state == "published" and missing:
            owed.append(f"{d.nis_code} ({', '.join(missing)})")
    if not owed:
        return
    text = (
        f"Run {run_id} of kbi_distribution published {len(owed)} file(s) on the transfer server whose "
        f"announcement could not be sent: {'; '.join(sorted(owed))}.\n\n"
        "The files are complete and encrypted, but these municipalities have not been told. Once the "
        "SMS gateway (kbi_sms) or the SMTP relay (kbi_smtp) works again, clear the failed deliver "
        "tasks of this run: the rerun sends only what is still owed, once. The task logs and the "
        "ledger show each error.\n"
    )
    send_alert(alert, f"[KBI] run {run_id[:24]}: {len(owed)} file(s) published but not announced", text)


def deliveries_stopped(nis_codes: list[str]) -> str:
    return (
        f"{len(nis_codes)} delivery(ies) ({', '.join(nis_codes)}) stopped before sending anything: no file, "
        "no passphrase SMS and no receipt went out"
    )


def send_host_key_alert(alert: Alert, dag_id: str, run_id: str, stopped: str) -> None:
    """The security alert when the transfer server did not show the pinned host key; ``stopped``
    says what did not happen (NIS codes and counts only)."""
    text = (
        f"The transfer server did not show the host key pinned in connection kbi_sftp to run "
        f"{run_id} of {dag_id}: {stopped}.\n\n"
        "This may be an interception (man in the middle) or a new key of the server. Do not change "
        "the pin until the server's operator has confirmed the new key's fingerprint by another "
        "channel (the task logs show the key the server presented), then run again.\n"
    )
    send_alert(alert, f"[KBI] SECURITY: transfer server host key mismatch, run {run_id[:24]}", text)


def send_alert(alert: Alert, subject: str, text: str) -> None:
    """An alert to the data engineers that never fails what it reports on (logged if it cannot go)."""
    try:
        alert(subject, text)
    except Exception as exc:  # the halt or failure stands even when the alert cannot be sent
        log.error("The alert to the data engineers could not be sent: %s", type(exc).__name__)


def _seconds_by_step(results: list[dict[str, Any]]) -> dict[str, float]:
    """The deliveries' own time, summed by step: where a run's delivering went."""
    total: Counter[str] = Counter()
    for r in results:
        if r.get("outcome") == "delivered":
            total.update(r.get("seconds") or {})
    return {k: round(v, 3) for k, v in total.items()}


UNFINISHED = ("planned", "encrypted", "uploaded", "withdrawn")


def _release_unfinished(ledger: Ledger, run_id: str) -> None:
    """Deliveries of this run that never reached their final name are failed: nothing of them is
    visible on the server, so their P3 period is free for a new run (a cleared task resumes)."""
    for d in ledger.deliveries_of_run(run_id):
        if d.state in UNFINISHED:
            reason = d.last_error or "the run ended before this list was published"
            failed = d.with_(state="failed", last_error=reason)
            ledger.transition(failed, "delivery_failed", {"reason": reason})


def cleanup(settings: Settings, run_id: str) -> bool:
    """Remove the run's private staging area (plaintext extract, partitions, ciphertexts)."""
    directory = run_dir(settings, run_id)
    if not directory.exists():
        return False
    shutil.rmtree(directory)
    return True
