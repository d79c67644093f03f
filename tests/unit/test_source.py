"""kbi.source: text in, typed columns out; the extract from SQLite and PostgreSQL (P2, P11, P12).

normalise() is tested on literal text; extract() reads a real KBI view built with kbi.synth, on a
SQLite file and on a PostgreSQL database of this module's own (created and dropped here). Both
dialects must yield the same normalised table. Assertions never print names or numbers.

PYTEST_DONT_REWRITE: this module handles synthetic national numbers and names, so pytest's
assertion rewriting is off here: a failure shows the assert's own message only, never the
values compared (P12).
"""

from __future__ import annotations

import sqlite3
import traceback
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from kbi import source, synth
from kbi.errors import DataError, Unavailable
from tests.helpers import Sealed, own_postgres_database, with_driver

# --- normalise --------------------------------------------------------------------------------


def _raw(**columns: list[str | None]) -> pa.Table:
    n = len(next(iter(columns.values())))
    base: dict[str, list[str | None]] = {name: [None] * n for name in source.COLUMNS}
    base["insz"] = ["x"] * n
    base["ingeschreven_rijksregister"] = ["1"] * n
    base.update(columns)
    return pa.table({k: pa.array(v, pa.string()) for k, v in base.items()})


def test_normalise_gives_the_extract_schema() -> None:
    out = source.normalise(_raw(insz=["1", "2"]))
    assert out.schema == source.EXTRACT_SCHEMA
    assert out.num_rows == 2
    assert out["nis_code"].to_pylist() == [None, None]  # renamed from nis_code_hoofdverblijf


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        *[(text, True) for text in ("1", "t", "TRUE", " yes ", "Y")],
        *[(text, False) for text in ("0", "f", "False", "no", "N")],
    ],
)
def test_booleans_in_every_spelling(text: str, expected: bool) -> None:
    out = source.normalise(_raw(ingeschreven_rijksregister=[text]))
    assert out["ingeschreven"].to_pylist() == [expected]
    assert out["unparsed"].to_pylist() == [None]


@pytest.mark.parametrize("text", ["maybe", "2", "", "ja"])
def test_unreadable_boolean_is_flagged_not_guessed(text: str) -> None:
    """P11: an unreadable flag becomes NULL and is named in `unparsed` (quarantined later)."""
    out = source.normalise(_raw(ingeschreven_rijksregister=[text]))
    assert out["ingeschreven"].to_pylist() == [None]
    assert out["unparsed"].to_pylist() == ["ingeschreven"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-02", date(2025, 1, 2)),
        ("2025-01-02 10:11:12", date(2025, 1, 2)),  # a timestamp's date part
        ("2025-01-02T10:11:12.123456", date(2025, 1, 2)),
        ("2024-02-29", date(2024, 2, 29)),
    ],
)
def test_dates_and_timestamps(text: str, expected: date) -> None:
    out = source.normalise(
        _raw(contract_ondertekend_op=[text], attest_behaald_op=[text], overleden_op=[text])
    )
    assert out["contract_op"].to_pylist() == [expected]
    assert out["attest_op"].to_pylist() == [expected]
    assert out["overleden_op"].to_pylist() == [expected]
    assert out["unparsed"].to_pylist() == [None]


@pytest.mark.parametrize(
    "text",
    [
        "02/01/2025",
        "2025-02-30",
        "2023-02-29",
        "2025-04-31",
        "2025-13-01",
        "garbage",
        "",
        "20250102",
    ],
)
def test_unreadable_date_is_flagged_not_read_as_no_contract(text: str) -> None:
    """P11: a garbage date must not read as 'no contract' (NULL) silently."""
    out = source.normalise(_raw(contract_ondertekend_op=[text]))
    assert out["contract_op"].to_pylist() == [None]
    assert out["unparsed"].to_pylist() == ["contract_op"]


def test_null_is_not_unparsed() -> None:
    out = source.normalise(_raw(contract_ondertekend_op=[None], ingeschreven_rijksregister=[None]))
    assert out["contract_op"].to_pylist() == [None]
    assert out["ingeschreven"].to_pylist() == [None]
    assert out["unparsed"].to_pylist() == [None]


def test_several_unparsed_columns_are_all_named_in_column_order() -> None:
    out = source.normalise(
        _raw(
            ingeschreven_rijksregister=["?", "1", "?"],
            contract_ondertekend_op=["x", "2020-01-01", None],
            attest_behaald_op=["2020-01-01", "2020-13-01", None],
            overleden_op=["y", None, "z"],
        )
    )
    assert out["unparsed"].to_pylist() == [
        "ingeschreven,contract_op,overleden_op",
        "attest_op",
        "ingeschreven,overleden_op",
    ]


def test_text_columns_pass_unchanged() -> None:
    names = ["Öztürk", "", "  spaced  ", "Semi;Colon", 'Quote"d', "Line\nBreak", None]
    out = source.normalise(_raw(familienaam=names, voornamen=list(reversed(names))))
    assert out["familienaam"].to_pylist() == names
    assert out["voornamen"].to_pylist() == list(reversed(names))


def test_empty_input() -> None:
    out = source.normalise(_raw(insz=[]))
    assert out.num_rows == 0 and out.schema == source.EXTRACT_SCHEMA


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (("a", None, "b"), ["a", None, "b"]),  # text: converted in C
        ((1, 0, None), ["1", "0", None]),  # SQLite's booleans
        ((True, False, None), ["1", "0", None]),
        ((None, None), [None, None]),
        ((date(2025, 2, 28), None), ["2025-02-28", None]),  # another driver's dates: one by one
        (("1", 1, 1.5), ["1", "1", "1.5"]),  # mixed: one by one, as before
    ],
)
def test_fetched_columns_become_text(column: tuple, expected: list) -> None:
    out = source._as_text(column)
    assert out.type == pa.string() and out.to_pylist() == expected


# --- extract: SQLite ------------------------------------------------------------------------------

ROWS = 600


@pytest.fixture(scope="module")
def sealed_dossiers() -> Sealed[pa.Table]:
    """The synthetic base table, sealed: pytest prints fixture values of a failing test."""
    return Sealed(synth.generate(ROWS, defects=True, today=date(2026, 12, 4)))


def _expected_from_dossiers(sealed_dossiers: Sealed[pa.Table]) -> pa.Table:
    """What the extract must hold, derived from the base table without kbi.source."""
    dossiers = sealed_dossiers.value
    chosen = dossiers.filter(pc.equal(dossiers["doelgroep"], "inburgeraar"))
    return pa.table(
        {
            "insz": chosen["insz"],
            "doelgroep": chosen["doelgroep"],
            "familienaam": chosen["familienaam"],
            "voornamen": chosen["voornamen"],
            "nis_code": chosen["nis_code_hoofdverblijf"],
            "ingeschreven": chosen["ingeschreven_rijksregister"],
            "contract_op": chosen["contract_ondertekend_op"],
            "attest_op": chosen["attest_behaald_op"],
            "overleden_op": chosen["overleden_op"],
            "unparsed": pa.nulls(chosen.num_rows, pa.string()),
        },
        schema=source.EXTRACT_SCHEMA,
    )


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(c, "ascending") for c in table.column_names]).combine_chunks()


def _sqlite_engine(path: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{path}", poolclass=NullPool)


@pytest.fixture
def kbi_db(tmp_path: Path, sealed_dossiers: Sealed[pa.Table]) -> Path:
    """The sealed dossiers as a SQLite KBI with its view, in the test's own directory."""
    db = tmp_path / "kbi.db"
    synth.write_sqlite(sealed_dossiers.value, db)
    return db


def test_extract_from_sqlite_reads_the_view_exactly(
    tmp_path: Path, sealed_dossiers: Sealed[pa.Table], kbi_db: Path
) -> None:
    """P2: only target group inburgeraar, only the view's columns, every value as in KBI."""
    out = tmp_path / "extract.parquet"
    rows = source.extract(_sqlite_engine(kbi_db), out).rows
    table = pq.read_table(out)
    expected = _expected_from_dossiers(sealed_dossiers)
    assert rows == table.num_rows == expected.num_rows
    assert 0 < rows < ROWS  # other target groups were left in KBI
    assert table.schema == source.EXTRACT_SCHEMA  # no birth date, nationality or address (P2)
    assert _sorted(table).equals(_sorted(expected)), "extracted rows differ from the source"
    assert not (tmp_path / "extract.tmp").exists()


def test_garbage_in_a_sqlite_date_is_flagged(tmp_path: Path, kbi_db: Path) -> None:
    with sqlite3.connect(kbi_db) as con:
        con.execute(
            "UPDATE kbi_dossier SET contract_ondertekend_op = '31/02/2024' WHERE dossier_id IN "
            "(SELECT dossier_id FROM kbi_dossier WHERE doelgroep = 'inburgeraar' LIMIT 3)"
        )
    con.close()
    out = tmp_path / "extract.parquet"
    source.extract(_sqlite_engine(kbi_db), out)
    table = pq.read_table(out)
    assert table["unparsed"].to_pylist().count("contract_op") == 3
    assert table["unparsed"].null_count == table.num_rows - 3


def test_empty_view_gives_an_empty_staged_extract(tmp_path: Path, kbi_db: Path) -> None:
    with sqlite3.connect(kbi_db) as con:
        con.execute("DELETE FROM kbi_dossier")
    con.close()
    out = tmp_path / "extract.parquet"
    assert source.extract(_sqlite_engine(kbi_db), out) == source.Extracted(0, 0)
    assert pq.read_table(out).schema == source.EXTRACT_SCHEMA


def test_a_view_above_the_limit_is_refused_before_a_row_is_read(tmp_path: Path, kbi_db: Path) -> None:
    """Catalogue #15: the view's count decides before the read; the refusal holds counts only."""
    engine = _sqlite_engine(kbi_db)
    counted = source.extract(engine, tmp_path / "whole.parquet").expected_rows
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    out = tmp_path / "extract.parquet"
    with pytest.raises(source.TooLarge) as refused:
        source.extract(engine, out, max_rows=counted - 1)
    assert (refused.value.rows, refused.value.limit) == (counted, counted - 1)
    assert str(refused.value) == f"the KBI view counts {counted:,} rows, above the limit of {counted - 1:,}"
    assert len(statements) == 1 and "count(" in statements[0].lower(), "only the count ran"
    assert not out.exists() and not out.with_suffix(".tmp").exists()
    assert source.extract(engine, out, max_rows=counted).rows == counted  # at the limit: read whole


def test_a_failed_read_leaves_the_previous_stage_untouched(tmp_path: Path) -> None:
    """Catalogue #16: no partial extract is ever consumed; the error names the stage only."""
    db = tmp_path / "no_view.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE unrelated (x TEXT)")
    con.close()
    out = tmp_path / "extract.parquet"
    out.write_bytes(b"previous stage")
    with pytest.raises(DataError, match="reading the KBI view failed"):
        source.extract(_sqlite_engine(db), out)
    assert out.read_bytes() == b"previous stage"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["extract.parquet", "no_view.db"]


def test_connection_errors_are_not_scrubbed(tmp_path: Path) -> None:
    """Connecting holds no data: the data engineer gets the driver's error whole."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'missing' / 'kbi.db'}", poolclass=NullPool)
    with pytest.raises(sa.exc.OperationalError):
        source.extract(engine, tmp_path / "extract.parquet")


def _poison_a_name(db: Path) -> str:
    """Store one family name as bytes that are not UTF-8 (a real KBI encoding accident)."""
    marker = "Vandewalle"
    with sqlite3.connect(db) as con:
        con.execute(
            "UPDATE kbi_dossier SET familienaam = CAST(? || x'ff' AS TEXT) WHERE dossier_id = "
            "(SELECT min(dossier_id) FROM kbi_dossier WHERE doelgroep = 'inburgeraar')",
            (marker,),
        )
    con.close()
    return marker


def test_a_driver_error_quoting_data_is_scrubbed_from_the_message(tmp_path: Path, kbi_db: Path) -> None:
    """P12, catalogue #48: the exception text names the stage and the type, never the value."""
    marker = _poison_a_name(kbi_db)
    with pytest.raises(DataError) as info:
        source.extract(_sqlite_engine(kbi_db), tmp_path / "extract.parquet")
    assert marker not in str(info.value)
    assert "OperationalError" in str(info.value)
    assert info.value.__cause__ is None


def test_a_driver_error_quoting_data_is_absent_from_the_rendered_traceback(
    tmp_path: Path, kbi_db: Path
) -> None:
    marker = _poison_a_name(kbi_db)
    with pytest.raises(DataError) as info:
        source.extract(_sqlite_engine(kbi_db), tmp_path / "extract.parquet")
    rendered = "".join(traceback.format_exception(info.value))
    assert marker not in rendered, "a name from the source reached the rendered traceback"


# --- extract: PostgreSQL (own database) -------------------------------------------------------------

HOSTILE_UPDATES = [
    # (family name, given names): quoting, separators, line breaks, empty string vs NULL
    ("Semi;Colon", 'Quote"d "twice"'),
    ("Line\nBreak", "Carriage\rReturn"),
    ("", None),
    ("NULL", "\\N"),
    ("Öztürk-Çelik", "Zoë"),
]


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with own_postgres_database() as url:
        yield url


def _apply_hostile(execute: object, placeholder: str) -> None:
    for i, (fam, given) in enumerate(HOSTILE_UPDATES):
        execute(  # type: ignore[operator]
            f"UPDATE kbi_dossier SET familienaam = {placeholder}, voornamen = {placeholder} "
            "WHERE dossier_id = (SELECT dossier_id FROM kbi_dossier WHERE doelgroep = 'inburgeraar' "
            f"ORDER BY dossier_id LIMIT 1 OFFSET {i})",
            (fam, given),
        )


@pytest.mark.postgres
@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_postgres_extract_equals_sqlite_extract(
    tmp_path: Path, sealed_dossiers: Sealed[pa.Table], kbi_db: Path, pg_url: str, driver: str
) -> None:
    """Same view on both databases (real types on PostgreSQL, text on SQLite): the same extract,
    through the COPY fast path with either driver, hostile names included."""
    synth.write_postgres(sealed_dossiers.value, with_driver(pg_url, "psycopg2"))
    raw = sa.create_engine(with_driver(pg_url, "psycopg2"), poolclass=NullPool).raw_connection()
    try:
        cur = raw.cursor()
        _apply_hostile(cur.execute, "%s")
        raw.commit()
    finally:
        raw.close()
    with sqlite3.connect(kbi_db) as con:
        _apply_hostile(con.execute, "?")
    con.close()

    pg_engine = sa.create_engine(with_driver(pg_url, driver), poolclass=NullPool)
    n_pg = source.extract(pg_engine, tmp_path / "pg.parquet")
    n_lite = source.extract(_sqlite_engine(kbi_db), tmp_path / "lite.parquet")
    pg_engine.dispose()
    from_pg = pq.read_table(tmp_path / "pg.parquet")
    from_lite = pq.read_table(tmp_path / "lite.parquet")
    assert n_pg == n_lite and n_pg.rows == n_pg.expected_rows > 0
    assert from_pg.schema == source.EXTRACT_SCHEMA
    assert _sorted(from_pg).equals(_sorted(from_lite)), "PostgreSQL and SQLite extracts differ"
    # The hostile names arrived intact (empty string stays empty, NULL stays NULL).
    names = list(zip(from_pg["familienaam"].to_pylist(), from_pg["voornamen"].to_pylist(), strict=True))
    assert all(pair in names for pair in HOSTILE_UPDATES)


@pytest.mark.postgres
@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_a_hung_postgres_read_is_cancelled_retryable_and_stages_nothing(
    tmp_path: Path, sealed_dossiers: Sealed[pa.Table], pg_url: str, driver: str
) -> None:
    """Catalogue #16: a source that stops answering is cancelled by the statement timeout instead
    of holding the run; the failure is Unavailable (retried, unlike DataError), names no data,
    stages nothing, and the retry reads the whole view once the source answers again."""
    schema = f"slow_{driver}"
    synth.write_postgres(sealed_dossiers.value, with_driver(pg_url, "psycopg2"), schema=schema)
    admin = sa.create_engine(
        with_driver(pg_url, "psycopg2"), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    engine = sa.create_engine(
        with_driver(pg_url, driver), poolclass=NullPool, connect_args={"options": f"-c search_path={schema}"}
    )
    view, direct = f"{schema}.kbi_inburgeraar", f"{schema}.kbi_inburgeraar_direct"
    out = tmp_path / "extract.parquet"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"ALTER VIEW {view} RENAME TO kbi_inburgeraar_direct")
            # One sleep per query, far longer than the timeout: without it the read would succeed.
            conn.exec_driver_sql(
                f"CREATE VIEW {view} AS SELECT * FROM {direct} WHERE (SELECT 1 FROM pg_sleep(30)) = 1"
            )
        with pytest.raises(Unavailable, match="reading the KBI view failed") as info:
            source.extract(engine, out, timeout_s=1)
        assert not isinstance(info.value, DataError) and "OperationalError" in str(info.value)
        assert info.value.__cause__ is None
        assert sorted(p.name for p in tmp_path.iterdir()) == []

        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {direct}")
        got = source.extract(engine, out, timeout_s=60)
        assert got.rows == got.expected_rows > 0
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
