"""The bodies of the DAG tasks: read the Airflow context, build the resources, call the pipeline.

Imported by the DAG files, so it imports nothing heavy at module level (the dag-processor parses
them every few seconds, and every task process parses its DAG again): the domain modules are
imported inside the functions that need them.

DAG files stay wiring only (one line per task); this module turns the domain's "no" into the
right Airflow outcome: a refusal that no retry can change fails at once (AirflowFailException),
a passing fault (server down, SMTP refused) fails and is retried with backoff.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

from kbi import settings

if TYPE_CHECKING:
    from kbi import pipeline

log = logging.getLogger(__name__)
DAG_CORRECTION = "kbi_correction_request"
DAG_MONITOR = "kbi_pickup_monitor"
P = ParamSpec("P")
R = TypeVar("R")


def permanent_errors() -> tuple[type[Exception], ...]:
    """Retrying cannot change these: fail the task at once, with the reason as its last log line."""
    from kbi import corrections, crypto, pipeline
    from kbi.errors import ConfigurationError, DataError
    from kbi.registry import RegistryError
    from kbi.transport import UnknownFileInInbox

    return (
        corrections.CorrectionRefused,
        crypto.KeyRefused,
        pipeline.RunRefused,
        pipeline.RunIncomplete,
        pipeline.QualityGateFailed,
        RegistryError,
        ConfigurationError,
        UnknownFileInInbox,
        DataError,
    )


def _permanent(exc: Exception) -> Exception:
    """The AirflowFailException (no retry) that carries ``exc``'s type and reason."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(f"{type(exc).__name__}: {exc}")


def fail_fast(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a permanent refusal into AirflowFailException (raised outside the except block, so
    the log shows the reason without a chained traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except permanent_errors() as exc:
            failure = _permanent(exc)
        raise failure

    return wrapper


def _context() -> dict[str, Any]:
    from airflow.sdk import get_current_context

    return get_current_context()


def _local_date(moment: datetime | None) -> date | None:
    return moment.astimezone(ZoneInfo(settings.TIMEZONE)).date() if moment else None


def run_params() -> pipeline.RunParams:
    from kbi import pipeline

    ctx = _context()
    params = ctx["params"]
    today = datetime.now(ZoneInfo(settings.TIMEZONE)).date()
    raw_ref = params.get("reference_date")
    if raw_ref:
        reference_date = date.fromisoformat(str(raw_ref))
    else:
        # The yearly schedule: the run's logical date; a manual run without one: today.
        reference_date = _local_date(ctx.get("logical_date")) or today
    return pipeline.RunParams(
        run_id=ctx["run_id"],
        reference_date=reference_date,
        today=today,
        municipalities=tuple(params.get("municipalities") or ()),
        dry_run=bool(params.get("dry_run")),
        accept_count_change=tuple(params.get("accept_count_change") or ()),
        accept_extract_rows=params.get("accept_extract_rows") or None,
        p3_period=settings.load().p3_period,
    )


def report_url(run_id: str, name: str = "quality.html") -> str:
    """Where the kbi_ui plugin serves a run's report (behind Airflow's login)."""
    from urllib.parse import quote

    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="") or ""
    return f"{base.rstrip('/')}/kbi/reports/{quote(run_id, safe='')}/{name}"


def create_staging() -> str:
    from kbi import pipeline

    ctx = _context()
    directory = pipeline.run_dir(settings.load(), ctx["run_id"])
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return str(directory)


@fail_fast
def plan() -> dict[str, Any]:
    from kbi import airflow_glue, pipeline

    return pipeline.plan(airflow_glue.ledger(), settings.load(), run_params())


@fail_fast
def extract(plan_: dict[str, Any]) -> dict[str, Any]:
    from kbi import airflow_glue, pipeline

    return pipeline.extract(
        airflow_glue.source_engine(),
        settings.load(),
        plan_,
        ledger=airflow_glue.ledger(),
        alert=airflow_glue.alert_data_engineers,
    )


@fail_fast
def check_quality(plan_: dict[str, Any], extracted: dict[str, Any]) -> dict[str, Any]:
    from kbi import airflow_glue, pipeline

    quarantine = None if plan_["dry_run"] else airflow_glue.quarantine()
    return pipeline.check_quality(
        quarantine,
        airflow_glue.ledger(),
        settings.load(),
        plan_,
        extracted,
        alert=airflow_glue.alert_data_engineers,
    )


@fail_fast
def partition(plan_: dict[str, Any], checked: dict[str, Any]) -> list[dict[str, Any]]:
    from kbi import airflow_glue, pipeline

    return pipeline.partition(
        settings.load(), plan_, checked, ledger=airflow_glue.ledger(), alert=airflow_glue.alert_data_engineers
    )


@fail_fast
def deliver(item: dict[str, Any]) -> dict[str, Any]:
    from kbi import airflow_glue, pipeline

    return pipeline.deliver(
        airflow_glue.ledger(),
        airflow_glue.AirflowChannels(),
        settings.load(),
        item,
        on_secret=airflow_glue.mask,
    )


def summarise(
    plan_: dict[str, Any] | None,
    checked: dict[str, Any] | None,
    selected: list[dict[str, Any]] | None,
    results: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowFailException

    from kbi import airflow_glue, pipeline

    if plan_ is None:
        # Failing (not skipping) keeps the run red: a skipped last task would make it green.
        raise AirflowFailException("the run stopped before its plan was made (see the plan task)")
    ledger = airflow_glue.ledger()
    run = None if plan_["dry_run"] else ledger.get_run(plan_["run_id"])
    if checked is None or selected is None:
        reason = "the run stopped before its lists were ready (see the failed task)"
        if run is not None and run["state"] == "running":
            ledger.finish_run(plan_["run_id"], "failed", {"reason": reason})
        raise AirflowFailException(reason)
    # A slice is one request for all 285 results; iterating asks the API server once per item.
    every = list(results[:]) if results is not None else []
    return fail_fast(pipeline.summarise)(
        ledger, settings.load(), plan_, checked, every, alert=airflow_glue.alert_data_engineers
    )


def remove_staging() -> bool:
    from kbi import pipeline

    ctx = _context()
    removed = pipeline.cleanup(settings.load(), ctx["run_id"])
    log.info("Staging area of run %s %s", ctx["run_id"], "removed" if removed else "was already gone")
    return removed


# --- kbi_pickup_monitor -------------------------------------------------------------------------


def _now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


def sweep_pickups() -> dict[str, Any]:
    """P8: pickups, reminders and purges of published files; a failure for one municipality
    does not stop the others, but fails the task (so it is retried and seen) at the end."""
    from airflow.sdk.exceptions import AirflowException

    from kbi import airflow_glue, monitor, pipeline, registry, transport

    s = settings.load()
    ledger = airflow_glue.ledger()
    ledger.migrate()
    try:
        reg: registry.Registry | None = registry.load(s.registry_path)
    except registry.RegistryError as exc:
        # Pickups and purges need no registry; only the messages do (they fail per municipality).
        log.error("The recipients registry cannot be read; reminders cannot be sent: %s", exc)
        reg = None
    try:
        result = monitor.PickupMonitor(ledger, airflow_glue.AirflowChannels(), s, reg).sweep(_now())
    except transport.HostKeyMismatch as exc:
        run_id = _context()["run_id"]
        stopped = "the sweep stopped before looking at any inbox: no file was purged"
        pipeline.send_host_key_alert(airflow_glue.alert_data_engineers, DAG_MONITOR, run_id, stopped)
        raise _permanent(exc) from None  # no retry (catalogue 28)
    log.info(
        "Checked %d file(s): %d picked up, %d reminded, %d purged, %d still waiting",
        result.checked,
        len(result.picked_up),
        len(result.reminded),
        len(result.purged),
        len(result.waiting),
    )
    if escalation := result.purge_alert(s.pickup_purge_days):
        pipeline.send_alert(airflow_glue.alert_data_engineers, *escalation)
    if result.failed:
        failures = "; ".join(f"{nis}: {why}" for nis, why in sorted(result.failed.items()))
        raise AirflowException(f"{len(result.failed)} inbox(es) could not be handled: {failures}")
    return result.as_dict()


def report_deliveries(swept: dict[str, Any] | None) -> int:
    """The state of every delivery of the current year, as one table in the task log.

    Runs also when the sweep failed (the table is most needed then) and then fails itself, so the
    run shows red instead of green."""
    from airflow.sdk.exceptions import AirflowFailException

    from kbi import airflow_glue, monitor

    now = _now()
    deliveries = airflow_glue.ledger().deliveries_published_since(monitor.year_start(now.date()))
    log.info("Deliveries of %d (%d):\n%s", now.year, len(deliveries), monitor.state_table(deliveries, now))
    if swept is None:
        raise AirflowFailException("the sweep did not complete; see sweep_pickups")
    return len(deliveries)


def warn_expiring_keys() -> dict[str, Any]:
    """P6: keys that expire soon (or can no longer be used), to the municipality at most once a
    week and to the data engineers."""
    from kbi import airflow_glue, keywatch, registry

    s = settings.load()
    ledger = airflow_glue.ledger()
    ledger.migrate()
    reg = registry.load(s.registry_path)
    found, sent = keywatch.warn(
        reg, ledger, airflow_glue.AirflowChannels(), _now(), s.key_expiry_warning_days
    )
    for notice in found:
        log.warning("Key needs renewing: %s", notice.line())
    if sent:
        lines = "\n".join(f"- {n.line()}" for n in sent)
        airflow_glue.alert_data_engineers(
            f"[KBI] {len(sent)} municipality key(s) to renew",
            f"These municipalities were asked for a new key today:\n{lines}\n\n"
            "Onboard the new key with `kbi keys onboard` after confirming its fingerprint by phone.\n",
        )
    return {"needing_renewal": [n.nis_code for n in found], "notified": [n.nis_code for n in sent]}


# --- kbi_correction_request ---------------------------------------------------------------------


def _correction_request():
    from kbi import corrections

    params = _context()["params"]
    return corrections.Request(
        nis_code=str(params.get("nis_code") or ""),
        reported_on=date.fromisoformat(str(params.get("reported_on"))),
        reference=str(params.get("reference") or ""),
        description=str(params.get("description") or ""),
        reporter=str(params.get("reporter") or ""),
    )


def _today() -> date:
    return datetime.now(ZoneInfo(settings.TIMEZONE)).date()


@fail_fast
def register_correction() -> dict[str, Any]:
    """P9: check the request, record it with its 14-day due date, acknowledge it."""
    from kbi import airflow_glue, corrections, registry

    s = settings.load()
    req = _correction_request()
    reg = registry.load(s.registry_path)
    recipient = corrections.validate(req, reg, _today())
    ledger = airflow_glue.ledger()
    ledger.migrate()
    run_id = _context()["run_id"]
    ledger.start_run(run_id, DAG_CORRECTION, "correction", _today().isoformat(), False, reg.version)
    c = corrections.register(ledger, req, run_id)
    corrections.acknowledge(ledger, airflow_glue.AirflowChannels(), recipient, c)
    last = ledger.last_published_delivery(c.nis_code)
    days_left = (date.fromisoformat(c.due_on) - _today()).days
    log.info(
        "Correction %s of %s registered, due %s (%d days left)",
        c.reference,
        recipient.label,
        c.due_on,
        days_left,
    )
    return {
        "reference": c.reference,
        "round": c.round,
        "nis_code": c.nis_code,
        "municipality": recipient.name,
        "reported_on": c.reported_on,
        "due_on": c.due_on,
        "days_left": days_left,
        "last_file": last.file_name if last else None,
        "last_published": (last.published_at or "")[:10] if last else None,
        "last_rows": last.row_count if last else None,
    }


@fail_fast
def extend_correction() -> dict[str, Any]:
    from kbi import airflow_glue, corrections, registry

    _, reason, who, new_date = corrections.decision([_context()["ti"].xcom_pull(task_ids="decide")])
    req = _correction_request()
    recipient = registry.load(settings.load().registry_path).recipients[req.nis_code]
    c = corrections.extend(
        airflow_glue.ledger(), airflow_glue.AirflowChannels(), recipient, req.reference, new_date, reason, who
    )
    return {"reference": c.reference, "extended_to": c.extended_to, "late": (c.extended_to or "") > c.due_on}


def _decisions() -> list[dict[str, Any] | None]:
    """The officer's answers, the final decision first (after "meer tijd nodig")."""
    ti = _context()["ti"]
    return [ti.xcom_pull(task_ids="decide_again"), ti.xcom_pull(task_ids="decide")]


@fail_fast
def redeliver_correction() -> dict[str, Any]:
    from kbi import airflow_glue, corrections, pipeline, registry, transport

    _, reason, who, _ = corrections.decision(_decisions())
    s = settings.load()
    req = _correction_request()
    run_id = _context()["run_id"]
    try:
        done = corrections.redeliver(
            ledger=airflow_glue.ledger(),
            quarantine=airflow_glue.quarantine(),
            channels=airflow_glue.AirflowChannels(),
            settings=s,
            reg=registry.load(s.registry_path),
            source_engine=airflow_glue.source_engine(),
            ref=req.reference,
            by=who,
            reason=reason,
            run_id=run_id,
            today=_today(),
            on_secret=airflow_glue.mask,
        )
    except transport.HostKeyMismatch:
        # One delivery per correction run, and no retry: the alert goes out once (catalogue 28).
        stopped = pipeline.deliveries_stopped([req.nis_code])
        pipeline.send_host_key_alert(airflow_glue.alert_data_engineers, DAG_CORRECTION, run_id, stopped)
        raise
    diff = done.difference.as_dict() if done.difference else None
    airflow_glue.ledger().finish_run(
        run_id,
        "success",
        {"reference": req.reference, "outcome": "corrected", "rows": done.rows},
    )
    log.info(
        "Correction %s delivered as %s (%d rows; compared with the last list: %s)",
        req.reference,
        done.file_name,
        done.rows,
        diff,
    )
    return {
        "reference": req.reference,
        "file_name": done.file_name,
        "rows": done.rows,
        "difference": diff,
        "superseded": done.superseded,
        "in_time": done.correction.in_time,
    }


@fail_fast
def close_correction() -> dict[str, Any]:
    from kbi import airflow_glue, corrections, registry

    _, reason, who, _ = corrections.decision(_decisions())
    req = _correction_request()
    recipient = registry.load(settings.load().registry_path).recipients[req.nis_code]
    ledger = airflow_glue.ledger()
    c = corrections.close_no_error(
        ledger, airflow_glue.AirflowChannels(), recipient, req.reference, reason, who, _today()
    )
    ledger.finish_run(_context()["run_id"], "success", {"reference": req.reference, "outcome": "no_error"})
    return {"reference": c.reference, "outcome": "no_error", "in_time": c.in_time}


def check_correction_deadlines() -> dict[str, Any]:
    """P9: day 10 a reminder to the quality officers, day 14 an escalation (each once)."""
    from kbi import airflow_glue, corrections

    s = settings.load()
    ledger = airflow_glue.ledger()
    ledger.migrate()
    notices = corrections.deadlines(ledger, _today())
    for kind, subject, to in (
        ("reminder", "[KBI] correction request(s) due in 4 days", [s.quality_officers_email]),
        (
            "escalation",
            "[KBI] correction request(s) past the 14 days",
            [s.quality_officers_email, s.data_engineers_email],
        ),
    ):
        due = [n for n in notices if n.kind == kind]
        if due:
            lines = "\n".join(f"- {n.line()}" for n in due)
            airflow_glue.alert(
                to, subject, f"Protocol art. 7: measures within two weeks of the report.\n{lines}\n"
            )
            log.warning("%s:\n%s", subject, lines)
    return {
        "reminded": [n.correction.reference for n in notices if n.kind == "reminder"],
        "escalated": [n.correction.reference for n in notices if n.kind == "escalation"],
    }
