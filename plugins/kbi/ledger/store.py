"""The ledger's store: one SQLAlchemy engine, SQL from include/sql/ledger, one writer at a time.

Every state change of a delivery is written together with its event, in one transaction, so the
row and the chained log never disagree.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from kbi import migrations, sqlfiles
from kbi.ledger import chain

COMPONENT = "ledger"


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class AlreadyDelivered(Exception):
    """P3: this municipality's annual list for the period is already out (or on its way)."""

    def __init__(self, existing: Delivery):
        self.existing = existing
        when = existing.published_at or existing.planned_at
        super().__init__(
            f"P3: {existing.nis_code} already has its annual list for {existing.period} "
            f"({existing.file_name or 'in progress'}, {existing.state} since {when}, run {existing.run_id})"
        )


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    run_id: str
    nis_code: str
    kind: str
    period: str
    correction_ref: str | None
    reference_date: str
    state: str
    planned_at: str
    mode: str | None = None
    key_fingerprint: str | None = None
    file_name: str | None = None
    inbox: str | None = None
    row_count: int | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    attempt: int = 0
    encrypted_at: str | None = None
    uploaded_at: str | None = None
    passphrase_sent_at: str | None = None
    published_at: str | None = None
    sms_sent_at: str | None = None
    mail_sent_at: str | None = None
    announced_at: str | None = None
    withdrawn_at: str | None = None
    picked_up_at: str | None = None
    reminded_at: str | None = None
    purged_at: str | None = None
    delete_by: str | None = None
    last_error: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> Delivery:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})

    def with_(self, **changes: object) -> Delivery:
        return replace(self, **changes)


@dataclass(frozen=True)
class Correction:
    reference: str
    nis_code: str
    reported_on: str
    due_on: str
    reporter: str | None
    description_sha256: str
    description_length: int
    run_id: str
    round: int
    state: str
    registered_at: str
    extended_to: str | None = None
    decision: str | None = None
    decision_reason: str | None = None
    decided_by: str | None = None
    handled_on: str | None = None
    delivery_id: str | None = None
    rows_added: int | None = None
    rows_removed: int | None = None
    rows_changed: int | None = None
    reminded_on: str | None = None
    escalated_on: str | None = None
    acknowledged_at: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> Correction:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})

    def with_(self, **changes: object) -> Correction:
        return replace(self, **changes)

    @property
    def in_time(self) -> bool | None:
        """Handled within the 14 days (P9); None while still open."""
        return None if self.handled_on is None else self.handled_on <= self.due_on


def _copy_text(value: str) -> str:
    """One value in COPY's text format: backslash, tab, newline and carriage return escaped."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class Ledger:
    def __init__(self, engine: Engine, chain_key: bytes | None = None, row_key: bytes | None = None):
        self.engine = engine
        self.dialect = engine.dialect.name
        self._key = chain_key
        self.row_key = row_key
        self._statements: dict[str, sa.TextClause] = {}

    # --- plumbing ---------------------------------------------------------------------------

    def _sql(self, name: str) -> sa.TextClause:
        # A delivery runs some forty statements; each file is read and parsed once per ledger.
        if name not in self._statements:
            self._statements[name] = sa.text(sqlfiles.load(f"ledger/{name}", self.dialect))
        return self._statements[name]

    def _lock_writers(self, conn: Connection) -> None:
        if self.dialect == "postgresql":
            conn.execute(self._sql("lock_writers"))

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            self._lock_writers(conn)
            yield conn

    def _copy_rows(self, conn: Connection, delivery_id: str, rows: list[tuple[str, str]]) -> None:
        """PostgreSQL's COPY: a list's thousands of rows in one stream, inside the transaction."""
        statement = self._sql("copy_delivery_rows").text
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor:
            if hasattr(cursor, "copy"):  # psycopg 3
                with cursor.copy(statement) as copy:
                    for person, content in rows:
                        copy.write_row((delivery_id, person, content))
            else:  # psycopg2: COPY's text format, escaped as PostgreSQL reads it
                lines = ("\t".join(_copy_text(v) for v in (delivery_id, *row)) + "\n" for row in rows)
                cursor.copy_expert(statement, io.StringIO("".join(lines)))

    def _append(
        self,
        conn: Connection,
        event_type: str,
        detail: Mapping[str, object],
        *,
        run_id: str | None = None,
        nis_code: str | None = None,
        delivery_id: str | None = None,
    ) -> None:
        last = conn.execute(self._sql("last_event")).first()
        seq, prev = (last.seq + 1, last.hash) if last else (1, chain.GENESIS)
        event = {
            "seq": seq,
            "recorded_at": utcnow(),
            "event_type": event_type,
            "run_id": run_id,
            "nis_code": nis_code,
            "delivery_id": delivery_id,
            "detail": chain.canonical(detail),
        }
        link = chain.link_hash(prev, chain.event_body(event), self._key)
        conn.execute(self._sql("insert_event"), {**event, "prev_hash": prev, "hash": link})
        conn.execute(
            self._sql("upsert_head"),
            {
                "seq": seq,
                "hash": link,
                "recorded_at": event["recorded_at"],
                "mac": chain.head_mac(seq, link, self._key),
            },
        )

    def migrate(self) -> list[int]:
        applied = migrations.apply(self.engine, COMPONENT)
        head = self.head() if 2 in applied else None
        if head is not None and self._key and not head["mac"]:
            # Migration 002 recorded the head of an existing chain; seal it once the chain checks out.
            events = self.events()
            if chain.verify(
                events, self._key, {**head, "mac": chain.head_mac(head["seq"], head["hash"], self._key)}
            ):
                raise RuntimeError("the ledger chain is broken; not sealing its head (run kbi ledger verify)")
            with self._writing() as conn:
                conn.execute(
                    self._sql("upsert_head"),
                    {**head, "mac": chain.head_mac(head["seq"], head["hash"], self._key)},
                )
        return applied

    # --- runs and decisions -----------------------------------------------------------------

    def start_run(
        self, run_id: str, dag_id: str, kind: str, reference_date: str, dry_run: bool, registry_version: str
    ) -> None:
        """Register the run; a retried or cleared run continues its own row."""
        with self._writing() as conn:
            existing = conn.execute(self._sql("get_run"), {"run_id": run_id}).first()
            if existing is None:
                conn.execute(
                    self._sql("insert_run"),
                    {
                        "run_id": run_id,
                        "dag_id": dag_id,
                        "kind": kind,
                        "reference_date": reference_date,
                        "dry_run": int(dry_run),
                        "registry_version": registry_version,
                        "started_at": utcnow(),
                    },
                )
                event = "run_started"
            else:
                conn.execute(
                    self._sql("restart_run"), {"run_id": run_id, "registry_version": registry_version}
                )
                event = "run_resumed"
            self._append(
                conn,
                event,
                {
                    "dag_id": dag_id,
                    "kind": kind,
                    "reference_date": reference_date,
                    "dry_run": dry_run,
                    "registry_version": registry_version,
                },
                run_id=run_id,
            )

    def finish_run(self, run_id: str, state: str, summary: Mapping[str, object]) -> None:
        body = chain.canonical(summary)
        with self._writing() as conn:
            conn.execute(
                self._sql("finish_run"),
                {"run_id": run_id, "state": state, "finished_at": utcnow(), "summary": body},
            )
            self._append(conn, f"run_{state}", {"summary": summary}, run_id=run_id)

    def get_run(self, run_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._sql("get_run"), {"run_id": run_id}).mappings().first()
        return dict(row) if row else None

    def record_decision(
        self,
        run_id: str,
        nis_code: str,
        municipality: str,
        decision: str,
        rule: str | None = None,
        reason: str | None = None,
    ) -> None:
        one = {"nis_code": nis_code, "name": municipality, "decision": decision}
        self.record_decisions(run_id, [one | {"rule": rule, "reason": reason}])

    def record_decisions(self, run_id: str, decisions: Sequence[Mapping[str, Any]]) -> None:
        """A run's decisions (``nis_code``, ``name``, ``decision``, ``rule``, ``reason``), in one
        transaction: all of them or none."""
        with self._writing() as conn:
            for d in decisions:
                rule, reason = d.get("rule"), d.get("reason")
                conn.execute(
                    self._sql("upsert_decision"),
                    {
                        "run_id": run_id,
                        "nis_code": d["nis_code"],
                        "municipality": d["name"],
                        "decision": d["decision"],
                        "rule": rule,
                        "reason": reason,
                        "decided_at": utcnow(),
                    },
                )
                self._append(
                    conn,
                    f"decision_{d['decision']}",
                    {"municipality": d["name"], "rule": rule, "reason": reason},
                    run_id=run_id,
                    nis_code=d["nis_code"],
                )

    def decisions(self, run_id: str) -> list[dict]:
        with self.engine.connect() as conn:
            return [
                dict(r) for r in conn.execute(self._sql("decisions_of_run"), {"run_id": run_id}).mappings()
            ]

    # --- deliveries ---------------------------------------------------------------------------

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._sql("get_delivery"), {"delivery_id": delivery_id}).mappings().first()
        return Delivery.from_row(row) if row else None

    def annual_delivery_in_period(self, nis_code: str, period: str) -> Delivery | None:
        return self.annual_holder(nis_code, period)

    def last_delivered_counts(self) -> dict[str, int]:
        """Rows in each municipality's most recent published list."""
        with self.engine.connect() as conn:
            rows = conn.execute(self._sql("last_delivered_counts")).mappings().all()
        return {r["nis_code"]: int(r["row_count"] or 0) for r in rows}

    def open_deliveries(self) -> list[Delivery]:
        """Published lists that, as far as the ledger knows, are still on the transfer server."""
        with self.engine.connect() as conn:
            rows = conn.execute(self._sql("open_deliveries")).mappings().all()
        return [Delivery.from_row(r) for r in rows]

    def deliveries_published_since(self, since: str) -> list[Delivery]:
        with self.engine.connect() as conn:
            rows = conn.execute(self._sql("deliveries_published_since"), {"since": since}).mappings().all()
        return [Delivery.from_row(r) for r in rows]

    def _holder_in(self, conn: Connection, nis_code: str, period: str, since: str | None) -> Delivery | None:
        name, params = (
            ("annual_delivery_since", {"nis_code": nis_code, "since": since})
            if since is not None
            else ("annual_delivery_in_period", {"nis_code": nis_code, "period": period})
        )
        row = conn.execute(self._sql(name), params).mappings().first()
        return Delivery.from_row(row) if row else None

    def annual_holder(self, nis_code: str, period: str, since: str | None = None) -> Delivery | None:
        """P3: the annual list that stands in the way, by calendar period or since a moment."""
        with self.engine.connect() as conn:
            return self._holder_in(conn, nis_code, period, since)

    def audit(self, name: str, since: str, until: str, nis_code: str | None = None) -> list[dict]:
        """Rows of one audit query (include/sql/ledger/audit_<name>.sql) for [since, until)."""
        params = {"since": since, "until": until, "nis_code": nis_code}
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(self._sql(f"audit_{name}"), params).mappings()]

    def deliveries_of_run(self, run_id: str) -> list[Delivery]:
        with self.engine.connect() as conn:
            rows = conn.execute(self._sql("deliveries_of_run"), {"run_id": run_id}).mappings().all()
        return [Delivery.from_row(r) for r in rows]

    def plan_delivery(
        self,
        delivery_id: str,
        run_id: str,
        nis_code: str,
        kind: str,
        period: str,
        reference_date: str,
        correction_ref: str | None = None,
        since: str | None = None,
    ) -> Delivery:
        """Create the delivery, or return it when a retry finds it already planned.

        P3: an annual delivery reserves its municipality's period (the calendar year, or with
        ``since`` a rolling period). The check runs inside the one-writer transaction, so two
        runs cannot both pass it; the unique index on (municipality, year) stands behind it.
        """
        existing = self.get_delivery(delivery_id)
        if existing is not None:
            if existing.state == "failed" and kind == "annual":
                holder = self.annual_holder(nis_code, period, since)
                if holder is not None and holder.delivery_id != delivery_id:
                    raise AlreadyDelivered(holder)
            return existing
        try:
            with self._writing() as conn:
                if kind == "annual" and (holder := self._holder_in(conn, nis_code, period, since)):
                    raise AlreadyDelivered(holder)
                conn.execute(
                    self._sql("insert_delivery"),
                    {
                        "delivery_id": delivery_id,
                        "run_id": run_id,
                        "nis_code": nis_code,
                        "kind": kind,
                        "period": period,
                        "correction_ref": correction_ref,
                        "reference_date": reference_date,
                        "planned_at": utcnow(),
                    },
                )
                self._append(
                    conn,
                    "delivery_planned",
                    {"kind": kind, "period": period, "correction_ref": correction_ref},
                    run_id=run_id,
                    nis_code=nis_code,
                    delivery_id=delivery_id,
                )
        except IntegrityError:
            holder = self.annual_holder(nis_code, period, since) if kind == "annual" else None
            if holder is not None and holder.delivery_id != delivery_id:
                raise AlreadyDelivered(holder) from None
            raise
        delivery = self.get_delivery(delivery_id)
        assert delivery is not None
        return delivery

    def transition(
        self, delivery: Delivery, event_type: str, detail: Mapping[str, object] | None = None
    ) -> Delivery:
        """Write the changed delivery row and its event in one transaction."""
        row = asdict(delivery)
        with self._writing() as conn:
            conn.execute(self._sql("update_delivery"), row)
            self._append(
                conn,
                event_type,
                {"state": delivery.state, **(detail or {})},
                run_id=delivery.run_id,
                nis_code=delivery.nis_code,
                delivery_id=delivery.delivery_id,
            )
        return delivery

    def last_event_for(self, event_type: str, nis_code: str) -> str | None:
        with self.engine.connect() as conn:
            params = {"event_type": event_type, "nis_code": nis_code}
            return conn.execute(self._sql("last_event_for"), params).scalar()

    def record(self, event_type: str, detail: Mapping[str, object], *, nis_code: str | None = None) -> None:
        """An event that belongs to no run or delivery (a key warning, a sweep)."""
        with self._writing() as conn:
            self._append(conn, event_type, detail, nis_code=nis_code)

    # --- rows of a delivered list, as keyed hashes ------------------------------------------

    def store_rows(self, delivery: Delivery, rows: list[tuple[str, str]]) -> None:
        with self.engine.begin() as conn:
            # The rows first, outside the writers' lock: they touch this delivery alone, and
            # the other deliveries' ledger writes need not wait for a few thousand of them.
            conn.execute(self._sql("delete_delivery_rows"), {"delivery_id": delivery.delivery_id})
            if rows and self.dialect == "postgresql":
                self._copy_rows(conn, delivery.delivery_id, rows)
            elif rows:
                conn.execute(
                    self._sql("insert_delivery_row"),
                    [{"delivery_id": delivery.delivery_id, "person": p, "content": c} for p, c in rows],
                )
            self._lock_writers(conn)
            self._append(
                conn,
                "rows_recorded",
                {"rows": len(rows)},
                run_id=delivery.run_id,
                nis_code=delivery.nis_code,
                delivery_id=delivery.delivery_id,
            )

    def delivery_rows(self, delivery_id: str) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {
                r.person: r.content
                for r in conn.execute(self._sql("delivery_rows"), {"delivery_id": delivery_id})
            }

    def last_published_delivery(self, nis_code: str, exclude: str = "") -> Delivery | None:
        with self.engine.connect() as conn:
            params = {"nis_code": nis_code, "exclude": exclude}
            row = conn.execute(self._sql("last_published_delivery"), params).mappings().first()
        return Delivery.from_row(row) if row else None

    # --- correction requests (P9) --------------------------------------------------------------

    def get_correction(self, reference: str) -> Correction | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._sql("get_correction"), {"reference": reference}).mappings().first()
        return Correction.from_row(row) if row else None

    def insert_correction(self, correction: Correction) -> Correction:
        with self._writing() as conn:
            conn.execute(self._sql("insert_correction"), asdict(correction))
            self._append(
                conn,
                "correction_registered",
                {
                    "reference": correction.reference,
                    "reported_on": correction.reported_on,
                    "due_on": correction.due_on,
                    "round": correction.round,
                },
                run_id=correction.run_id,
                nis_code=correction.nis_code,
            )
        return correction

    def update_correction(
        self, correction: Correction, event_type: str, detail: Mapping[str, object] | None = None
    ) -> Correction:
        with self._writing() as conn:
            conn.execute(self._sql("update_correction"), asdict(correction))
            self._append(
                conn,
                event_type,
                {"reference": correction.reference, "state": correction.state, **(detail or {})},
                run_id=correction.run_id,
                nis_code=correction.nis_code,
            )
        return correction

    def open_corrections(self) -> list[Correction]:
        with self.engine.connect() as conn:
            return [Correction.from_row(r) for r in conn.execute(self._sql("open_corrections")).mappings()]

    def corrections_reported_since(self, since: str) -> list[Correction]:
        with self.engine.connect() as conn:
            rows = conn.execute(self._sql("corrections_reported_since"), {"since": since}).mappings()
            return [Correction.from_row(r) for r in rows]

    # --- the chain ----------------------------------------------------------------------------

    def events(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(self._sql("all_events")).mappings()]

    def head(self) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._sql("get_head")).mappings().first()
        return dict(row) if row else None

    def verify(self) -> chain.ChainBreak | None:
        with self.engine.connect() as conn:  # one snapshot of events and head
            events = [dict(r) for r in conn.execute(self._sql("all_events")).mappings()]
            head = conn.execute(self._sql("get_head")).mappings().first()
        return chain.verify(events, self._key, dict(head) if head else None)
