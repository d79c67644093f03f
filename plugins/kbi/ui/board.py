"""The status board's data: per Flemish municipality, for one year, where its list is.

Reads the ledger (read-only queries include/sql/ledger/board_*.sql, a read-only connection) and
the recipients registry (protocol state, with ``registry.eligibility``); never KBI and never the
transfer server. Everything here is a count, a file name, a checksum, a date, a state or a rule:
the ledger holds no personal data, and the board adds none (no reporter, no contact, no key).

The same dictionaries feed the HTML page, the JSON API and the CSV export (docs/status-board.md).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from kbi import reference, registry, settings, sqlfiles
from kbi.listfile import neutralise

BRUSSELS = ZoneInfo(settings.TIMEZONE)
CORRECTION_OPEN = ("open", "extended", "reopened")

# key → (Dutch, English); the page shows both, the JSON carries the key.
STATUS: dict[str, tuple[str, str]] = {
    "picked_up": ("Opgehaald", "Picked up"),
    "waiting": ("Wacht", "Waiting"),
    "overdue": ("Te laat", "Overdue"),  # on the server beyond the reminder days, no reminder yet
    "reminded": ("Herinnerd", "Reminded"),
    "purged": ("Verwijderd", "Purged"),
    "in_progress": ("Bezig", "In progress"),
    "failed": ("Mislukt", "Failed"),
    "refused": ("Geweigerd", "Refused"),
    "none": ("Niets", "Nothing"),
}
PROTOCOL: dict[str, tuple[str, str]] = {
    "in_force": ("Van kracht", "In force"),
    "not_yet": ("Nog niet", "Not yet"),
    "ended": ("Beëindigd", "Ended"),
    "none": ("Geen", "None"),
    "unknown": ("Onbekend", "Unknown"),
}
PICKUP: dict[str, tuple[str, str]] = {
    "waiting": ("Wacht", "Waiting"),
    "reminded": ("Herinnerd", "Reminded"),
    "picked_up": ("Opgehaald", "Picked up"),
    "purged": ("Verwijderd", "Purged"),
}
# The state filter: every status, plus the views the summary counts link to.
FILTERS: dict[str, tuple[str, str]] = {
    "delivered": ("Geleverd", "Delivered"),
    "on_server": ("Op de server", "On the server"),
    **{k: v for k, v in STATUS.items() if k != "overdue"},
    "overdue": ("Te laat (ook herinnerd)", "Overdue (reminded too)"),
    "corrections": ("Correctie open", "Correction open"),
}
EVENTS: dict[str, tuple[str, str]] = {
    "decision_deliver": ("Besluit: leveren", "Decision: deliver"),
    "decision_refused": ("Besluit: geweigerd", "Decision: refused"),
    "decision_skipped": ("Besluit: overgeslagen", "Decision: skipped"),
    "delivery_planned": ("Levering gepland", "Delivery planned"),
    "rows_recorded": ("Rijen vastgelegd (hashes)", "Rows recorded (hashes)"),
    "delivery_encrypted": ("Versleuteld", "Encrypted"),
    "delivery_uploaded": ("Opgeladen", "Uploaded"),
    "passphrase_sent": ("Wachtwoord per sms", "Passphrase sent by SMS"),
    "delivery_published": ("Gepubliceerd", "Published"),
    "sms_sent": ("Sms verstuurd", "SMS sent"),
    "receipt_mailed": ("Ontvangstbewijs gemaild", "Receipt mailed"),
    "delivery_announced": ("Aangekondigd", "Announced"),
    "pickup_noticed": ("Opgehaald", "Picked up"),
    "reminder_sent": ("Herinnering verstuurd", "Reminder sent"),
    "file_purged": ("Bestand verwijderd", "File purged"),
    "purge_notified": ("Verwijdering gemeld", "Purge notified"),
    "delivery_failed": ("Levering mislukt", "Delivery failed"),
    "delivery_attempt_failed": ("Poging mislukt", "Attempt failed"),
    "delivery_withdrawn": ("Bestand teruggetrokken", "File withdrawn"),
    "delivery_resumed": ("Levering hervat", "Delivery resumed"),
    "delivery_reencrypt": ("Opnieuw versleutelen", "Re-encrypt"),
    "delivery_reupload": ("Opnieuw opladen", "Re-upload"),
    "delivery_refused": ("Levering geweigerd", "Delivery refused"),
    "sms_failed": ("Sms mislukt", "SMS failed"),
    "mail_failed": ("E-mail mislukt", "E-mail failed"),
    "file_superseded": ("Bestand vervangen", "File superseded"),
    "key_expiry_warned": ("Sleutel verloopt: gewaarschuwd", "Key expiry warned"),
    "correction_registered": ("Correctie gemeld", "Correction registered"),
    "correction_acknowledged": ("Correctie bevestigd", "Correction acknowledged"),
    "correction_decided": ("Correctie beslist", "Correction decided"),
    "correction_reminder": ("Correctie: herinnering dag 10", "Correction: day-10 reminder"),
    "correction_escalated": ("Correctie: escalatie dag 14", "Correction: day-14 escalation"),
    "correction_reopened": ("Correctie heropend", "Correction reopened"),
    "correction_round_started": ("Correctie: nieuwe ronde", "Correction: new round"),
}
# The CSV has the table's columns, nothing more (no checksum, no key, no inbox, no contact).
CSV_COLUMNS = (
    "nis_code",
    "municipality",
    "province",
    "protocol",
    "protocol_in_force_from",
    "protocol_ends_on",
    "status",
    "delivered_at",
    "file_name",
    "rows",
    "mode",
    "kind",
    "deliveries_in_year",
    "pickup",
    "days_waiting",
    "overdue",
    "picked_up_at",
    "corrections_open",
    "correction_days_left",
    "refusal_rule",
    "refusal_reason",
)
SORTS = ("nis", "name", "protocol", "status", "delivered", "rows", "pickup", "corrections", "refusal")


class BadRequest(ValueError):
    """A filter or sort the board does not know."""


@dataclass(frozen=True)
class Clock:
    """When the board is looked at: the instant (UTC) and the agency's calendar day."""

    now: datetime

    @property
    def today(self) -> date:
        return self.now.astimezone(BRUSSELS).date()

    @classmethod
    def current(cls) -> Clock:
        return cls(datetime.now(UTC))


# --- sources ----------------------------------------------------------------------------------


def ledger_engine(url: str) -> Engine | None:
    """A read-only engine on the ledger; None while there is no ledger yet (no run so far)."""
    from kbi import db

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        if not parsed.database or not path.is_file():
            return None  # never create an empty ledger file from a page view
        # mode=ro: the board cannot write the ledger, whatever a query says.
        url = f"sqlite:///file:{quote(str(path.resolve()))}?mode=ro&uri=true"
    return db.engine(url, writer=False)


def airflow_ledger_engine() -> Engine | None:
    """The ledger of the ``kbi_ledger`` Airflow connection, as the pipeline writes it."""
    from kbi import airflow_glue

    return ledger_engine(airflow_glue.db_url(settings.CONN_LEDGER))


_registry_cache: dict[tuple[Path, float], registry.Registry] = {}


def load_registry(path: Path) -> registry.Registry:
    """The registry, read and validated again only when the file changes (not on every page)."""
    key = (path, path.stat().st_mtime)
    if key not in _registry_cache:
        _registry_cache.clear()
        _registry_cache[key] = registry.load(path)
    return _registry_cache[key]


def _query(engine: Engine | None, name: str, **params: object) -> list[dict[str, Any]]:
    if engine is None:
        return []
    text = sa.text(sqlfiles.load(f"ledger/{name}", engine.dialect.name))
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(text, params).mappings()]
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
        if _no_table(exc):
            return []  # a ledger not migrated yet: nothing happened so far
        raise


def _no_table(exc: Exception) -> bool:
    text = str(exc).lower()
    return "no such table" in text or "does not exist" in text


def years(engine: Engine | None, clock: Clock) -> list[int]:
    found = {int(r["year"]) for r in _query(engine, "board_years") if str(r["year"] or "").isdigit()}
    return sorted(found | {clock.today.year}, reverse=True)


# --- formatting helpers -------------------------------------------------------------------------


def _ts(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def local_time(value: str | None) -> str:
    """A ledger timestamp (UTC) as the agency reads it: Brussels time, to the minute."""
    parsed = _ts(value)
    return parsed.astimezone(BRUSSELS).strftime("%Y-%m-%d %H:%M") if parsed else ""


def local_date(value: str | None) -> str:
    parsed = _ts(value)
    return parsed.astimezone(BRUSSELS).date().isoformat() if parsed else ""


def run_url(root: str, dag_id: str | None, run_id: str | None) -> str | None:
    """The Airflow 3 UI page of a run (``root`` is where Airflow is mounted, '' at the host root)."""
    if not dag_id or not run_id:
        return None
    return f"{root}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


# --- the board ------------------------------------------------------------------------------


def _protocol(recipient: registry.Recipient | None, on: date, reg_ok: bool) -> dict[str, Any]:
    if not reg_ok or recipient is None:
        empty = dict.fromkeys(("in_force_from", "terminated_on", "ends_on", "rule", "reason"))
        return {"state": "unknown" if not reg_ok else "none", **empty}
    proto = recipient.protocol
    end = registry.protocol_end(proto)
    verdict = registry.eligibility(recipient, on)
    if verdict.eligible:
        state = "in_force"
    elif verdict.rule == "P5" and on < proto.in_force_from:
        state = "not_yet"
    else:
        state = "ended"
    return {
        "state": state,
        "in_force_from": proto.in_force_from.isoformat(),
        "terminated_on": proto.terminated_on.isoformat() if proto.terminated_on else None,
        "ends_on": end.isoformat() if end else None,
        "rule": verdict.rule,
        "reason": verdict.reason,
    }


def _delivery(row: dict[str, Any], root: str) -> dict[str, Any]:
    return {
        "delivery_id": row["delivery_id"],
        "kind": row["kind"],
        "correction_ref": row["correction_ref"],
        "period": row["period"],
        "reference_date": row["reference_date"],
        "state": row["state"],
        "mode": row["mode"],
        "file_name": row["file_name"],
        "rows": row["row_count"],
        "size_bytes": row["size_bytes"],
        "sha256": row["sha256"],
        "attempt": row["attempt"],
        "planned_at": row["planned_at"],
        "published_at": row["published_at"],
        "announced_at": row["announced_at"],
        "withdrawn_at": row["withdrawn_at"],
        "picked_up_at": row["picked_up_at"],
        "reminded_at": row["reminded_at"],
        "purged_at": row["purged_at"],
        "delete_by": row["delete_by"],
        "run_id": row["run_id"],
        "dag_id": row["dag_id"],
        "run_url": run_url(root, row["dag_id"], row["run_id"]),
    }


def _pickup(d: dict[str, Any], clock: Clock, reminder_days: int) -> dict[str, Any]:
    published = _ts(d["published_at"])
    assert published is not None
    state = d["state"] if d["state"] in ("picked_up", "purged", "reminded") else "waiting"
    at = {"picked_up": d["picked_up_at"], "purged": d["purged_at"]}.get(state)
    days = ((_ts(at) or clock.now) - published).days  # whole days, as the pickup monitor counts them
    on_server = state in ("waiting", "reminded")
    return {
        "state": state,
        "days": days,  # on the server: so far; picked up or purged: until then
        "on_server": on_server,
        "overdue": on_server and days >= reminder_days,
        "at": at,
        "reminded_at": d["reminded_at"],
    }


def _status(last: dict[str, Any] | None, pickup: dict[str, Any] | None, refusal: dict | None) -> str:
    if last is not None and last["published_at"]:
        assert pickup is not None
        if last["state"] == "published":
            return "in_progress"  # visible on the server, not announced yet
        if pickup["state"] == "waiting":
            return "overdue" if pickup["overdue"] else "waiting"
        return pickup["state"]
    if last is not None:
        return "failed" if last["state"] == "failed" else "in_progress"
    return "refused" if refusal is not None else "none"


def _correction(row: dict[str, Any], clock: Clock, root: str) -> dict[str, Any]:
    due = date.fromisoformat(row["due_on"])
    is_open = row["state"] in CORRECTION_OPEN
    handled = date.fromisoformat(row["handled_on"]) if row["handled_on"] else None
    return {
        "reference": row["reference"],
        "round": row["round"],
        "state": row["state"],
        "open": is_open,
        "reported_on": row["reported_on"],
        "due_on": row["due_on"],
        "extended_to": row["extended_to"],
        # P9: the 14 days are the measure, an extension does not move them.
        "days_left": (due - clock.today).days if is_open else None,
        "late": (clock.today > due) if is_open else (handled is not None and handled > due),
        "decision": row["decision"],
        "handled_on": row["handled_on"],
        "delivery_id": row["delivery_id"],
        "run_id": row["run_id"],
        "run_url": run_url(root, row["dag_id"], row["run_id"]),
    }


def _by_nis(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["nis_code"], []).append(r)
    return out


def protocol_day(year: int, clock: Clock) -> date:
    """The day the protocol state is judged on: today, or the year's last (past) or first (future)."""
    if year == clock.today.year:
        return clock.today
    return date(year, 12, 31) if year < clock.today.year else date(year, 1, 1)


@dataclass(frozen=True)
class _Ledger:
    """The year's ledger rows, grouped by municipality."""

    deliveries: dict[str, list[dict[str, Any]]]
    decisions: dict[str, list[dict[str, Any]]]
    corrections: dict[str, list[dict[str, Any]]]

    @classmethod
    def read(cls, engine: Engine | None, year: int) -> _Ledger:
        params = {"year": f"{year:04d}"}
        return cls(
            _by_nis(_query(engine, "board_deliveries", **params)),
            _by_nis(_query(engine, "board_decisions", **params)),
            _by_nis(_query(engine, "board_corrections", **params)),
        )


def build(
    engine: Engine | None,
    reg: registry.Registry | None,
    year: int,
    clock: Clock,
    reminder_days: int,
    root: str = "",
    data: _Ledger | None = None,
) -> dict[str, Any]:
    """The whole board for ``year``: one row per Flemish municipality, summary, weekly chart."""
    data = data or _Ledger.read(engine, year)
    on = protocol_day(year, clock)
    rows: list[dict[str, Any]] = []
    published_all: list[dict[str, Any]] = []
    known = reference.municipalities()
    for muni in sorted((m for m in known.values() if m.is_flemish), key=lambda m: m.nis_code):
        nis = muni.nis_code
        recipient = reg.recipients.get(nis) if reg else None
        attempts = [_delivery(d, root) for d in data.deliveries.get(nis, [])]
        published = [d for d in attempts if d["published_at"]]
        published_all += published
        last = published[-1] if published else (attempts[-1] if attempts else None)
        pickup = _pickup(last, clock, reminder_days) if last and last["published_at"] else None
        decided = data.decisions.get(nis, [])
        latest = decided[-1] if decided else None
        # A refusal counts while the municipality has no list this year: once one is out, a later
        # run's P3 "already delivered" is no news (it stays in "decision" and the timeline).
        refusal = (
            {
                "rule": latest["rule"],
                "reason": latest["reason"],
                "decided_at": latest["decided_at"],
                "run_id": latest["run_id"],
                "run_url": run_url(root, latest["dag_id"], latest["run_id"]),
            }
            if latest and latest["decision"] == "refused" and not published
            else None
        )
        corr = [_correction(c, clock, root) for c in data.corrections.get(nis, [])]
        rows.append(
            {
                "nis_code": nis,
                "name": muni.name,
                "province": muni.province,
                "protocol": _protocol(recipient, on, reg is not None),
                "status": _status(last, pickup, refusal),
                "delivered": bool(published),
                "deliveries": len(attempts),
                "last_delivery": last,
                "pickup": pickup,
                "decision": (
                    {k: latest[k] for k in ("decision", "rule", "reason", "decided_at", "run_id")}
                    if latest
                    else None
                ),
                "refusal": refusal,
                "corrections": corr,
                "corrections_open": sum(c["open"] for c in corr),
            }
        )
    return {
        "year": year,
        "generated_at": clock.now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "today": clock.today.isoformat(),
        "protocol_judged_on": on.isoformat(),
        "pickup_reminder_days": reminder_days,
        "registry_version": reg.version if reg else None,
        "ledger": engine is not None,
        "summary": summary(rows),
        "weekly": weekly(published_all, year, clock),
        "municipalities": rows,
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    open_corrections = [c for r in rows for c in r["corrections"] if c["open"]]
    by_status = {k: 0 for k in STATUS}
    for r in rows:
        by_status[r["status"]] += 1
    by_protocol = {k: 0 for k in PROTOCOL}
    for r in rows:
        by_protocol[r["protocol"]["state"]] += 1
    return {
        "municipalities": len(rows),
        "delivered": sum(r["delivered"] for r in rows),
        "picked_up": by_status["picked_up"],
        "on_server": sum(bool(r["pickup"] and r["pickup"]["on_server"]) for r in rows),
        "overdue": sum(bool(r["pickup"] and r["pickup"]["overdue"]) for r in rows),
        "reminded": by_status["reminded"],
        "purged": by_status["purged"],
        "refused": by_status["refused"],
        "corrections_open": len(open_corrections),
        "corrections_late": sum(c["late"] for c in open_corrections),
        "by_status": by_status,
        "by_protocol": by_protocol,
    }


def weekly(published: list[dict[str, Any]], year: int, clock: Clock) -> list[dict[str, Any]]:
    """Files published and picked up per week (from Monday, Brussels time) of the year so far;
    every published file counts, a correction too, not only each municipality's last one."""
    first = date(year, 1, 1) - timedelta(days=date(year, 1, 1).weekday())
    last_day = min(date(year, 12, 31), max(clock.today, date(year, 1, 1)))
    weeks = (last_day - first).days // 7 + 1
    delivered = [0] * weeks
    picked = [0] * weeks

    def bucket(value: str | None, counts: list[int]) -> None:
        parsed = _ts(value)
        if parsed is None:
            return
        index = (parsed.astimezone(BRUSSELS).date() - first).days // 7
        if 0 <= index < weeks:
            counts[index] += 1

    for d in published:
        bucket(d["published_at"], delivered)
        bucket(d["picked_up_at"], picked)
    out = []
    for i in range(weeks):
        monday = first + timedelta(days=7 * i)
        iso = monday.isocalendar()
        out.append(
            {
                "week": f"{iso.year}-W{iso.week:02d}",
                "monday": monday.isoformat(),
                "delivered": delivered[i],
                "picked_up": picked[i],
            }
        )
    return out


# --- filter, sort, CSV ------------------------------------------------------------------------


def _matches(row: dict[str, Any], state: str | None, protocol: str | None, q: str | None) -> bool:
    if state:
        if state == "delivered":
            ok = row["delivered"]
        elif state == "overdue":
            ok = bool(row["pickup"] and row["pickup"]["overdue"])
        elif state == "on_server":
            ok = bool(row["pickup"] and row["pickup"]["on_server"])
        elif state == "corrections":
            ok = row["corrections_open"] > 0
        else:
            ok = row["status"] == state
        if not ok:
            return False
    if protocol and row["protocol"]["state"] != protocol:
        return False
    if q:
        needle = q.strip().casefold()
        if needle not in row["name"].casefold() and needle not in row["nis_code"]:
            return False
    return True


def _sort_key(name: str) -> Callable[[dict[str, Any]], tuple]:
    status_order = list(STATUS)
    protocol_order = list(PROTOCOL)

    def key(r: dict[str, Any]) -> tuple:
        d = r["last_delivery"] or {}
        open_days = [c["days_left"] for c in r["corrections"] if c["open"]]
        return {
            "nis": (r["nis_code"],),
            "name": (r["name"].casefold(),),
            "protocol": (protocol_order.index(r["protocol"]["state"]), r["nis_code"]),
            "status": (status_order.index(r["status"]), r["nis_code"]),
            "delivered": (d.get("published_at") or "~", r["nis_code"]),
            "rows": (-1 if d.get("rows") is None else d["rows"], r["nis_code"]),
            "pickup": (r["pickup"]["days"] if r["pickup"] else -1, r["nis_code"]),
            "corrections": (min(open_days) if open_days else 10**6, r["nis_code"]),
            "refusal": ((r["refusal"] or {}).get("rule") or "~", r["nis_code"]),
        }[name]

    return key


def select(
    board: dict[str, Any],
    state: str | None = None,
    protocol: str | None = None,
    q: str | None = None,
    sort: str = "nis",
    desc: bool = False,
) -> list[dict[str, Any]]:
    """The rows the page or the API asked for, in the asked order."""
    if state and state not in FILTERS:
        raise BadRequest(f"state must be one of {sorted(FILTERS)}")
    if protocol and protocol not in PROTOCOL:
        raise BadRequest(f"protocol must be one of {sorted(PROTOCOL)}")
    if sort not in SORTS:
        raise BadRequest(f"sort must be one of {list(SORTS)}")
    rows = [r for r in board["municipalities"] if _matches(r, state, protocol, q)]
    return sorted(rows, key=_sort_key(sort), reverse=desc)


def csv_row(r: dict[str, Any]) -> dict[str, Any]:
    d = r["last_delivery"] or {}
    p = r["pickup"] or {}
    open_days = [c["days_left"] for c in r["corrections"] if c["open"]]
    return {
        "nis_code": r["nis_code"],
        "municipality": r["name"],
        "province": r["province"],
        "protocol": r["protocol"]["state"],
        "protocol_in_force_from": r["protocol"]["in_force_from"] or "",
        "protocol_ends_on": r["protocol"]["ends_on"] or "",
        "status": r["status"],
        "delivered_at": local_time(d.get("published_at")),
        "file_name": d.get("file_name") or "",
        "rows": "" if d.get("rows") is None else d["rows"],
        "mode": d.get("mode") or "",
        "kind": d.get("kind") or "",
        "deliveries_in_year": r["deliveries"],
        "pickup": p.get("state", ""),
        "days_waiting": p["days"] if p else "",
        "overdue": ("yes" if p.get("overdue") else "no") if p else "",
        "picked_up_at": local_time(d.get("picked_up_at")),
        "corrections_open": r["corrections_open"],
        "correction_days_left": min(open_days) if open_days else "",
        "refusal_rule": (r["refusal"] or {}).get("rule") or "",
        "refusal_reason": (r["refusal"] or {}).get("reason") or "",
    }


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for r in rows:
        # a reason or a file name must not turn into a formula in the agency's spreadsheet
        writer.writerow({k: neutralise(v) if isinstance(v, str) else v for k, v in csv_row(r).items()})
    return out.getvalue()


def _event_label(event_type: str) -> dict[str, str]:
    nl, en = EVENTS.get(event_type, (event_type, event_type))
    return {"nl": nl, "en": en}


# --- one municipality ---------------------------------------------------------------------------


def municipality(
    engine: Engine | None,
    reg: registry.Registry | None,
    nis_code: str,
    year: int,
    clock: Clock,
    reminder_days: int,
    root: str = "",
) -> dict[str, Any] | None:
    """One municipality's row, every delivery, decision and correction of the year, and its
    ledger events in chain order with the Airflow run each belongs to."""
    muni = reference.municipalities().get(nis_code)
    if muni is None or not muni.is_flemish:
        return None
    data = _Ledger.read(engine, year)
    board = build(engine, reg, year, clock, reminder_days, root, data)
    row = next(r for r in board["municipalities"] if r["nis_code"] == nis_code)
    deliveries = [_delivery(d, root) for d in data.deliveries.get(nis_code, [])]
    decisions = [
        {
            **{k: d[k] for k in ("decision", "rule", "reason", "decided_at", "run_id", "dag_id")},
            "run_url": run_url(root, d["dag_id"], d["run_id"]),
        }
        for d in data.decisions.get(nis_code, [])
    ]
    events = [
        {
            "seq": e["seq"],
            "recorded_at": e["recorded_at"],
            "event_type": e["event_type"],
            "label": _event_label(e["event_type"]),
            "run_id": e["run_id"],
            "dag_id": e["dag_id"],
            "run_url": run_url(root, e["dag_id"], e["run_id"]),
            "delivery_id": e["delivery_id"],
            "detail": json.loads(e["detail"]) if e["detail"] else {},
        }
        for e in _query(engine, "board_events", nis_code=nis_code, year=f"{year:04d}")
    ]
    return {
        "year": year,
        "generated_at": board["generated_at"],
        "today": board["today"],
        "municipality": row,
        "deliveries": deliveries,
        "decisions": decisions,
        "corrections": row["corrections"],
        "events": events,
    }
