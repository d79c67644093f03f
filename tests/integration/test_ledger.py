"""The ledger (kbi.ledger, kbi.migrations) on real SQLite and PostgreSQL (P3, P12, P13, P14).

Every test runs on both: SQLite in tmp_path, PostgreSQL in a schema of this module's own
database (created here and dropped afterwards; skipped when no server answers). Tampering is
done the way an intruder with database access would: plain SQL on the tables.

PYTEST_DONT_REWRITE: this module handles synthetic national numbers and names, so pytest's
assertion rewriting is off here: a failure shows the assert's own message only, never the
values compared (P12).
"""

from __future__ import annotations

import itertools
import secrets
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from kbi import db, migrations, settings
from kbi.ledger import AlreadyDelivered, Delivery, Ledger, chain
from kbi.ledger.chain import PersonalDataRefused
from tests.helpers import ledger_dump, make_nn, own_postgres_database, with_driver

RUN = "manual__2026-01-15T10:00:00+00:00"
PERIOD = "2026"


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    with own_postgres_database() as url:
        yield url


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("psycopg", marks=pytest.mark.postgres),
        # A deployment's URL may name the older driver: the ledger must work with both.
        pytest.param("psycopg2", marks=pytest.mark.postgres),
    ]
)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        yield db.engine(f"sqlite:///{tmp_path / 'ledger.db'}")
        return
    url = with_driver(request.getfixturevalue("pg_database"), request.param)
    schema = f"t_{secrets.token_hex(4)}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    eng = sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    yield eng
    eng.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def _ledger(engine: Engine, key: bytes | None = None) -> Ledger:
    ledger = Ledger(engine, key)
    ledger.migrate()
    ledger.start_run(RUN, "kbi_distribution", "annual", "2026-01-15", False, "sha256:0123456789abcdef")
    return ledger


def _plan(ledger: Ledger, nis: str = "44021", run: str = RUN, kind: str = "annual", ref: str | None = None):
    delivery_id = f"{kind}:{nis}:{ref or run}"
    return ledger.plan_delivery(delivery_id, run, nis, kind, PERIOD, "2026-01-15", ref)


def _busy_ledger(engine: Engine, key: bytes | None = None) -> Ledger:
    """A ledger with a handful of chained events of several kinds."""
    ledger = _ledger(engine, key)
    ledger.record_decision(RUN, "44021", "Gent", "deliver")
    ledger.record_decision(RUN, "21004", "Brussel", "skipped", "P1", "Brussels municipality")
    d = _plan(ledger)
    ledger.transition(
        d.with_(state="encrypted", sha256="ab" * 32, size_bytes=1234), "delivery_encrypted", {"rows": 3}
    )
    ledger.finish_run(RUN, "success", {"delivered": 1})
    return ledger


def _execute(engine: Engine, sql: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def _count(engine: Engine, sql: str, **params: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql), params).scalar_one())


# --- migrations -----------------------------------------------------------------------------------


def _versions(engine: Engine, component: str = "ledger") -> list[int]:
    return [m.version for m in migrations.available(component, engine.dialect.name)]


def test_migrations_apply_from_empty_and_twice_is_a_no_op(engine: Engine) -> None:
    assert migrations.apply(engine, "ledger") == _versions(engine) != []
    assert migrations.apply(engine, "ledger") == []
    assert migrations.apply(engine, "quarantine") == [1]  # a component of its own, same table
    assert migrations.apply(engine, "quarantine") == []
    tables = set(sa.inspect(engine).get_table_names())
    assert {
        "kbi_run",
        "kbi_decision",
        "kbi_delivery",
        "kbi_event",
        "kbi_schema_version",
        "kbi_chain_head",
        "kbi_quarantine",
    } <= tables
    expected = len(_versions(engine)) + len(_versions(engine, "quarantine"))
    assert _count(engine, "SELECT count(*) FROM kbi_schema_version") == expected


def test_dialect_specific_migration_files_win() -> None:
    assert migrations.available("quarantine", "postgresql")[0].path.name == "001_init.postgresql.sql"
    assert migrations.available("quarantine", "sqlite")[0].path.name == "001_init.sql"
    versions = [m.version for m in migrations.available("ledger", "postgresql")]
    assert versions == [m.version for m in migrations.available("ledger", "sqlite")]
    assert versions == list(range(1, len(versions) + 1))  # numbered without gaps


def test_a_changed_applied_migration_is_refused_and_a_new_one_applies(engine: Engine, tmp_path: Path) -> None:
    """History is not rewritten: editing 001 after it ran is an error; adding 002 is the way."""
    sql_dir = tmp_path / "sql"
    shutil.copytree(settings.load().sql_dir, sql_dir)
    assert migrations.apply(engine, "ledger", sql_dir) == _versions(engine)
    first = sql_dir / "ledger" / "migrations" / "001_init.sql"
    original = first.read_text()
    first.write_text(original + "\n-- an innocent-looking edit\n")
    with pytest.raises(migrations.MigrationError, match="001_init was changed after it was applied"):
        migrations.apply(engine, "ledger", sql_dir)
    first.write_text(original)
    (sql_dir / "ledger" / "migrations" / "999_note.sql").write_text(
        "ALTER TABLE kbi_run ADD COLUMN note TEXT;\n-- a comment\n"
    )
    assert migrations.apply(engine, "ledger", sql_dir) == [999]
    assert "note" in {c["name"] for c in sa.inspect(engine).get_columns("kbi_run")}


def test_a_failing_migration_leaves_nothing_half_applied(engine: Engine, tmp_path: Path) -> None:
    sql_dir = tmp_path / "sql"
    shutil.copytree(settings.load().sql_dir, sql_dir)
    migrations.apply(engine, "ledger", sql_dir)
    (sql_dir / "ledger" / "migrations" / "999_broken.sql").write_text(
        "CREATE TABLE kbi_half (x TEXT);\nTHIS IS NOT SQL;\n"
    )
    with pytest.raises(sa.exc.DBAPIError):
        migrations.apply(engine, "ledger", sql_dir)
    assert "kbi_half" not in sa.inspect(engine).get_table_names()  # transactional DDL on both
    assert _count(engine, "SELECT count(*) FROM kbi_schema_version WHERE version = 999") == 0


def test_concurrent_migrations_apply_once(engine: Engine) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def migrate() -> None:
        barrier.wait()
        try:
            results.append(migrations.apply(engine, "ledger"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, [type(e).__name__ for e in errors]
    # Each migration is its own transaction under the lock: the two may take turns, but every
    # version is applied exactly once, by one of them.
    assert len(results) == 2
    assert sorted(v for applied in results for v in applied) == _versions(engine)
    assert migrations.apply(engine, "ledger") == []  # and the schema is complete


# --- the event chain ----------------------------------------------------------------------------------


def test_the_chain_verifies(engine: Engine) -> None:
    ledger = _busy_ledger(engine)
    events = ledger.events()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert len(events) >= 6
    assert events[0]["prev_hash"] == chain.GENESIS
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(events))
    assert ledger.verify() is None


@pytest.mark.parametrize("column", ["detail", "event_type", "recorded_at", "nis_code"])
def test_editing_a_row_is_detected_at_that_row(engine: Engine, column: str) -> None:
    ledger = _busy_ledger(engine)
    _execute(engine, f"UPDATE kbi_event SET {column} = :v WHERE seq = 3", v='{"tampered":true}')
    broken = ledger.verify()
    assert broken is not None
    assert broken.seq == 3 and "edited" in broken.problem


def test_deleting_a_row_is_detected(engine: Engine) -> None:
    ledger = _busy_ledger(engine)
    _execute(engine, "DELETE FROM kbi_event WHERE seq = 3")
    broken = ledger.verify()
    assert broken is not None
    assert broken.seq == 4 and "expected event 3" in broken.problem


def test_deleting_the_first_row_is_detected(engine: Engine) -> None:
    ledger = _busy_ledger(engine)
    _execute(engine, "DELETE FROM kbi_event WHERE seq = 1")
    broken = ledger.verify()
    assert broken is not None and broken.seq == 2


def test_deleting_the_newest_row_is_detected(engine: Engine) -> None:
    ledger = _busy_ledger(engine)
    last = _count(engine, "SELECT max(seq) FROM kbi_event")
    _execute(engine, "DELETE FROM kbi_event WHERE seq = :s", s=last)
    assert ledger.verify() is not None


def test_reordering_rows_is_detected(engine: Engine) -> None:
    ledger = _busy_ledger(engine)
    _execute(engine, "UPDATE kbi_event SET seq = -1 WHERE seq = 2")
    _execute(engine, "UPDATE kbi_event SET seq = 2 WHERE seq = 3")
    _execute(engine, "UPDATE kbi_event SET seq = 3 WHERE seq = -1")
    broken = ledger.verify()
    assert broken is not None
    assert broken.seq == 2 and "does not link" in broken.problem


def _recompute_chain(engine: Engine, key: bytes | None) -> None:
    """What an intruder who can write the database does after an edit: rehash every event."""
    with engine.begin() as conn:
        rows = [dict(r) for r in conn.execute(sa.text("SELECT * FROM kbi_event ORDER BY seq")).mappings()]
        prev = chain.GENESIS
        for row in rows:
            new_hash = chain.link_hash(prev, chain.event_body(row), key)
            conn.execute(
                sa.text("UPDATE kbi_event SET prev_hash = :p, hash = :h WHERE seq = :s"),
                {"p": prev, "h": new_hash, "s": row["seq"]},
            )
            prev = new_hash
        last = rows[-1]
        conn.execute(  # the intruder rewrites the chain's head too
            sa.text("UPDATE kbi_chain_head SET seq = :s, hash = :h, mac = :m"),
            {"s": last["seq"], "h": prev, "m": chain.head_mac(last["seq"], prev, key)},
        )


def test_with_a_key_a_chain_rehashed_without_it_does_not_verify(engine: Engine) -> None:
    """P14: with the HMAC key kept outside the database, an edit cannot be covered up."""
    key = b"k" * 32
    ledger = _busy_ledger(engine, key)
    assert ledger.verify() is None
    assert Ledger(engine).verify() is not None  # the keyless reading does not match a keyed chain
    _execute(engine, "UPDATE kbi_event SET detail = :v WHERE seq = 3", v='{"rows":0}')
    _recompute_chain(engine, None)
    assert Ledger(engine).verify() is None  # without a key the cover-up would work ...
    broken = ledger.verify()
    assert broken is not None and broken.seq == 1  # ... with the key it is caught at once
    _recompute_chain(engine, b"wrong key" * 4)
    assert ledger.verify() is not None
    _recompute_chain(engine, key)  # control: only the key holder can make it verify again
    assert ledger.verify() is None


# --- P3: one annual list per municipality per period -----------------------------------------------


def test_second_annual_delivery_in_a_period_is_refused(engine: Engine) -> None:
    ledger = _ledger(engine)
    ledger.start_run("run-2", "kbi_distribution", "annual", "2026-02-01", False, "sha256:x")
    first = _plan(ledger)
    with pytest.raises(AlreadyDelivered) as info:
        _plan(ledger, run="run-2")
    assert info.value.existing == first
    assert "P3" in str(info.value) and "44021" in str(info.value) and PERIOD in str(info.value)
    assert _count(engine, "SELECT count(*) FROM kbi_delivery") == 1
    assert ledger.verify() is None


def test_a_retry_of_the_same_delivery_returns_it(engine: Engine) -> None:
    ledger = _ledger(engine)
    first = _plan(ledger)
    assert _plan(ledger) == first
    assert _count(engine, "SELECT count(*) FROM kbi_event WHERE event_type = 'delivery_planned'") == 1


@pytest.mark.parametrize("state", ["withdrawn", "failed"])
def test_a_withdrawn_or_failed_delivery_does_not_hold_the_period(engine: Engine, state: str) -> None:
    ledger = _ledger(engine)
    ledger.start_run("run-2", "kbi_distribution", "annual", "2026-02-01", False, "sha256:x")
    first = _plan(ledger)
    ledger.transition(first.with_(state=state), f"delivery_{state}")
    assert ledger.annual_delivery_in_period("44021", PERIOD) is None
    second = _plan(ledger, run="run-2")
    assert second.state == "planned" and second.delivery_id != first.delivery_id
    assert ledger.annual_delivery_in_period("44021", PERIOD) == second


def test_a_failed_delivery_cannot_resume_when_another_holds_the_period(engine: Engine) -> None:
    ledger = _ledger(engine)
    ledger.start_run("run-2", "kbi_distribution", "annual", "2026-02-01", False, "sha256:x")
    first = _plan(ledger)
    ledger.transition(first.with_(state="failed"), "delivery_refused")
    _plan(ledger, run="run-2")
    with pytest.raises(AlreadyDelivered):
        _plan(ledger)  # the retry of the failed one


def test_corrections_and_other_municipalities_do_not_count(engine: Engine) -> None:
    """P3: a correction (P9) is not a new list; each municipality has its own period."""
    ledger = _ledger(engine)
    _plan(ledger)
    _plan(ledger, kind="correction", ref="M-2026-001")
    _plan(ledger, kind="correction", ref="M-2026-002")
    _plan(ledger, nis="11002")
    assert _count(engine, "SELECT count(*) FROM kbi_delivery") == 4


class _BlindPrecheck(Ledger):
    """A ledger whose friendly pre-check saw nothing, as when two runs check at the same instant."""

    def __init__(self, engine: Engine):
        super().__init__(engine)
        self.calls = 0

    def _holder_in(self, conn, nis_code: str, period: str, since: str | None):  # type: ignore[override]
        self.calls += 1
        return None if self.calls == 1 else super()._holder_in(conn, nis_code, period, since)


def test_the_unique_index_decides_when_the_precheck_is_blind(engine: Engine) -> None:
    """P3: the database constraint, not the check, is what stops a second list."""
    ledger = _ledger(engine)
    ledger.start_run("run-2", "kbi_distribution", "annual", "2026-02-01", False, "sha256:x")
    first = _plan(ledger)
    blind = _BlindPrecheck(engine)
    with pytest.raises(AlreadyDelivered) as info:
        _plan(blind, run="run-2")
    assert blind.calls == 2  # the index refused the insert, then the holder was looked up
    assert info.value.existing == first
    assert _count(engine, "SELECT count(*) FROM kbi_delivery") == 1
    assert ledger.verify() is None  # the refused insert left no event behind


def test_racing_runs_plan_exactly_one_annual_delivery(engine: Engine) -> None:
    """P3: two runs planning the same municipality at the same moment: exactly one wins."""
    ledger = _ledger(engine)
    for i in range(2):
        ledger.start_run(f"race-{i}", "kbi_distribution", "annual", "2026-01-15", False, "sha256:x")
    municipalities = ["44021", "11002", "11001", "44084", "23106"]
    outcomes: dict[str, list[str]] = {nis: [] for nis in municipalities}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def contender(i: int, nis: str, barrier: threading.Barrier) -> None:
        racer = Ledger(engine)
        barrier.wait()
        try:
            racer.plan_delivery(f"annual:{nis}:race-{i}", f"race-{i}", nis, "annual", PERIOD, "2026-01-15")
            result = "planned"
        except AlreadyDelivered:
            result = "refused"
        except BaseException as exc:
            errors.append(exc)
            return
        with lock:
            outcomes[nis].append(result)

    for nis in municipalities:
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=contender, args=(i, nis, barrier)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert not errors, [f"{type(e).__name__}: {e}" for e in errors]
    assert all(sorted(o) == ["planned", "refused"] for o in outcomes.values()), outcomes
    per_nis = _count(
        engine, "SELECT max(n) FROM (SELECT count(*) AS n FROM kbi_delivery GROUP BY nis_code) x"
    )
    assert per_nis == 1
    assert ledger.verify() is None  # the writers queued: the chain is gapless


def _row_pairs(n: int, tag: str) -> list[tuple[str, str]]:
    return [(f"{tag}-person-{i:05d}", f"{tag}-content-{i:05d}") for i in range(n)]


def test_stored_rows_replace_an_earlier_attempt_and_chain_an_event(engine: Engine) -> None:
    """P13: a list's row hashes (COPY on PostgreSQL, inserts on SQLite); a re-encrypted attempt
    replaces what the earlier one stored, and each store is one chained event."""
    ledger = _ledger(engine)
    d = _plan(ledger)
    ledger.store_rows(d, _row_pairs(2500, "first"))
    ledger.store_rows(d, _row_pairs(1200, "second"))
    assert ledger.delivery_rows(d.delivery_id) == dict(_row_pairs(1200, "second"))
    ledger.store_rows(d, [])
    assert ledger.delivery_rows(d.delivery_id) == {}
    recorded = [e for e in ledger.events() if e["event_type"] == "rows_recorded"]
    assert [e["delivery_id"] for e in recorded] == [d.delivery_id] * 3
    assert ledger.verify() is None


def test_stored_rows_come_back_as_written_whatever_their_characters(engine: Engine) -> None:
    """COPY's text format escapes backslash, tab, newline and CR (psycopg2 path): hashes never
    hold them, but the ledger must not depend on that."""
    ledger = _ledger(engine)
    d = _plan(ledger)
    odd = [("a\\b", "tab\there"), ("new\nline", "cr\rlf\r\n"), ("\\N", "end\\")]
    ledger.store_rows(d, odd)
    assert ledger.delivery_rows(d.delivery_id) == dict(odd)


def test_a_failed_store_leaves_the_earlier_rows_and_no_event(engine: Engine) -> None:
    """All or nothing: a list with the same person twice breaks the key; nothing changes."""
    ledger = _ledger(engine)
    d = _plan(ledger)
    ledger.store_rows(d, _row_pairs(10, "first"))
    events = len(ledger.events())
    with pytest.raises(Exception, match=r"(?i)unique"):  # SQLAlchemy's on SQLite, psycopg's from COPY
        ledger.store_rows(d, _row_pairs(5, "second") + _row_pairs(1, "second"))
    assert ledger.delivery_rows(d.delivery_id) == dict(_row_pairs(10, "first"))
    assert len(ledger.events()) == events


def test_concurrent_row_stores_keep_the_chain_gapless(engine: Engine) -> None:
    """Ten deliveries store their rows at once (as ten deliver tasks do): every list whole, the
    chain gapless (rows go in before the writers' lock is taken, the event after)."""
    ledger = _ledger(engine)
    deliveries = [_plan(ledger, nis=f"{44000 + i:05d}") for i in range(10)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(deliveries))

    def store(d: Delivery) -> None:
        try:
            barrier.wait()
            Ledger(engine).store_rows(d, _row_pairs(800, d.nis_code))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=store, args=(d,)) for d in deliveries]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, [f"{type(e).__name__}: {e}" for e in errors]
    for d in deliveries:
        assert ledger.delivery_rows(d.delivery_id) == dict(_row_pairs(800, d.nis_code))
    assert sum(e["event_type"] == "rows_recorded" for e in ledger.events()) == len(deliveries)
    assert ledger.verify() is None


# --- no personal data in the ledger (P12) -------------------------------------------------------------


def test_canonical_refuses_a_national_number_shape() -> None:
    number = make_nn(85, 7, 30, 33)
    with pytest.raises(PersonalDataRefused) as info:
        chain.canonical({"reason": f"row {number} failed"})
    assert number not in str(info.value)
    with pytest.raises(PersonalDataRefused):
        chain.canonical({"nested": {"list": [number]}})
    with pytest.raises(PersonalDataRefused):
        chain.canonical({"count": int(number)})


def test_canonical_accepts_hashes_dates_and_counts() -> None:
    sha = "a" + "12345678901" + "b" * 52  # eleven digits inside a hex digest are not a number
    text = chain.canonical(
        {"sha256": sha, "rows": 1234567890, "at": "2026-01-15T10:00:00Z", "ts": 20260115100000}
    )
    assert sha in text


def test_canonical_refuses_a_formatted_national_number() -> None:
    with pytest.raises(PersonalDataRefused):
        chain.canonical({"reason": "row 85.07.30-033.28 failed"})


def test_the_ledger_api_refuses_personal_data_and_writes_nothing(engine: Engine) -> None:
    ledger = _ledger(engine)
    number = make_nn(85, 7, 30, 33)
    events = _count(engine, "SELECT count(*) FROM kbi_event")
    with pytest.raises(PersonalDataRefused):
        ledger.record_decision(RUN, "44021", "Gent", "refused", "P11", f"bad row {number}")
    d = _plan(ledger)
    with pytest.raises(PersonalDataRefused):
        ledger.transition(d.with_(state="encrypted", row_count=7), "delivery_encrypted", {"first": number})
    assert _count(engine, "SELECT count(*) FROM kbi_event") == events + 1  # only the planning
    assert _count(engine, "SELECT count(*) FROM kbi_decision") == 0
    assert ledger.get_delivery(d.delivery_id) == d  # the row change was rolled back with its event
    assert number not in ledger_dump(engine)
    assert ledger.verify() is None


# --- runs and decisions ------------------------------------------------------------------------------------


def test_runs_resume_and_decisions_upsert(engine: Engine) -> None:
    ledger = _ledger(engine)
    ledger.start_run(RUN, "kbi_distribution", "annual", "2026-01-15", False, "sha256:new")
    run = ledger.get_run(RUN)
    assert run is not None and run["state"] == "running" and run["registry_version"] == "sha256:new"
    ledger.record_decision(RUN, "44021", "Gent", "deliver")
    ledger.record_decision(RUN, "44021", "Gent", "refused", "P6", "key_expired: key expired")
    assert [(d["nis_code"], d["decision"], d["rule"]) for d in ledger.decisions(RUN)] == [
        ("44021", "refused", "P6")
    ]
    ledger.finish_run(RUN, "success", {"delivered": 0})
    run = ledger.get_run(RUN)
    assert run is not None and run["state"] == "success" and run["finished_at"]
    types = [e["event_type"] for e in ledger.events()]
    assert types == [
        "run_started",
        "run_resumed",
        "decision_deliver",
        "decision_refused",
        "run_success",
    ]
    assert ledger.verify() is None
    assert ledger.get_run("absent") is None
