"""Read the KBI view through ``kbi_source`` into one normalised Arrow table (staged as Parquet).

The view's types differ per database (SQLite has text dates and 0/1 booleans, PostgreSQL real
types), so every column is first read as text and then normalised here, once. A value that
cannot be parsed becomes NULL and its column is named in ``unparsed``: the quality checks
quarantine such rows (P11) instead of letting a garbage date read as "no contract".

Errors raised here never carry a value from the data (P12): conversions are wrapped.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from kbi import sqlfiles
from kbi.errors import KbiError, scrubbed

# Source column → normalised column.
COLUMNS = {
    "insz": "insz",
    "doelgroep": "doelgroep",
    "familienaam": "familienaam",
    "voornamen": "voornamen",
    "nis_code_hoofdverblijf": "nis_code",
    "ingeschreven_rijksregister": "ingeschreven",
    "contract_ondertekend_op": "contract_op",
    "attest_behaald_op": "attest_op",
    "overleden_op": "overleden_op",
}
DATE_COLUMNS = ("contract_op", "attest_op", "overleden_op")
EXTRACT_SCHEMA = pa.schema(
    [
        ("insz", pa.string()),
        ("doelgroep", pa.string()),
        ("familienaam", pa.string()),
        ("voornamen", pa.string()),
        ("nis_code", pa.string()),
        ("ingeschreven", pa.bool_()),
        ("contract_op", pa.date32()),
        ("attest_op", pa.date32()),
        ("overleden_op", pa.date32()),
        ("unparsed", pa.string()),  # comma-separated names of columns that did not parse
    ]
)
# Plain tuples: building Arrow arrays at import time would import pandas into every task.
_TRUE = ("1", "t", "true", "y", "yes")
_FALSE = ("0", "f", "false", "n", "no")
_BATCH = 50_000
# YYYY-MM-DD, optionally followed by an ISO time part (a timestamp column read as text).
_DATE_SHAPE = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?)?$"
)


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _as_text(col: tuple) -> pa.Array:
    """One fetched column as text: in C when the driver gave str, int or bool (SQLite always does),
    value by value (``_text``) for anything else, e.g. dates from another driver."""
    try:
        arr = pa.array(col)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed Python types
        arr = None
    if arr is not None and (
        pa.types.is_string(arr.type) or pa.types.is_integer(arr.type) or pa.types.is_null(arr.type)
    ):
        return arr.cast(pa.string())
    if arr is not None and pa.types.is_boolean(arr.type):
        return pc.if_else(arr, "1", "0")
    return pa.array([_text(v) for v in col], pa.string())


def _read_generic(conn: Connection, sql: str) -> pa.Table:
    """Any SQLAlchemy database: fetch in batches, every value as text."""
    names = list(COLUMNS)
    batches: list[pa.RecordBatch] = []
    result = conn.exec_driver_sql(sql)
    while rows := result.fetchmany(_BATCH):
        cols = list(zip(*rows, strict=True))
        arrays = [_as_text(col) for col in cols]
        batches.append(pa.RecordBatch.from_arrays(arrays, names=names))
    if not batches:
        return pa.table({n: pa.array([], pa.string()) for n in names})
    return pa.Table.from_batches(batches)


def _read_postgres(conn: Connection, sql: str) -> pa.Table:
    """PostgreSQL: COPY … TO STDOUT as CSV straight into Arrow's CSV reader (the fast path)."""
    copy_sql = f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)"
    buf = io.BytesIO()
    driver = conn.connection.driver_connection
    with driver.cursor() as cur:
        if hasattr(cur, "copy"):  # psycopg 3
            with cur.copy(copy_sql) as copy:
                for block in copy:
                    buf.write(block)
        else:  # psycopg2
            cur.copy_expert(copy_sql, buf)
    buf.seek(0)
    names = list(COLUMNS)
    return pacsv.read_csv(
        buf,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            strings_can_be_null=True,  # unquoted empty field = NULL ...
            quoted_strings_can_be_null=False,  # ... "" = empty string
            null_values=[""],
        ),
    )


def _normalise_bool(col: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(col))
    value = pc.if_else(pc.is_in(lowered, value_set=pa.array(_TRUE, pa.string())), True, None)
    value = pc.if_else(pc.is_in(lowered, value_set=pa.array(_FALSE, pa.string())), False, value)
    bad = pc.and_(pc.is_valid(col), pc.is_null(value))
    return value.cast(pa.bool_()), bad


def _normalise_date(col: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """ISO dates, or the date part of an ISO timestamp; anything else is flagged, never guessed."""
    trimmed = pc.utf8_trim_whitespace(col)
    shaped = pc.match_substring_regex(trimmed, _DATE_SHAPE)
    head = pc.utf8_slice_codeunits(trimmed, 0, 10)
    parsed = pc.strptime(pc.if_else(shaped, head, None), format="%Y-%m-%d", unit="s", error_is_null=True)
    value = parsed.cast(pa.date32())
    # strptime rolls an impossible day over (2025-02-30 → 2025-03-02): only a date that reads back
    # as the same text is real.
    same = pc.equal(pc.strftime(parsed, format="%Y-%m-%d"), head)
    value = pc.if_else(pc.fill_null(same, False), value, pa.scalar(None, pa.date32()))
    bad = pc.and_(pc.is_valid(col), pc.is_null(value))
    return value, bad


def normalise(raw: pa.Table) -> pa.Table:
    """Text columns in, typed columns out (EXTRACT_SCHEMA)."""
    with scrubbed("normalising the extract"):
        out: dict[str, pa.ChunkedArray | pa.Array] = {}
        unparsed_parts: list[tuple[str, pa.ChunkedArray]] = []
        for src, dst in COLUMNS.items():
            col = raw[src]
            if dst == "ingeschreven":
                out[dst], bad = _normalise_bool(col)
                unparsed_parts.append((dst, bad))
            elif dst in DATE_COLUMNS:
                out[dst], bad = _normalise_date(col)
                unparsed_parts.append((dst, bad))
            else:
                out[dst] = col
        unparsed = pa.array([None] * raw.num_rows, pa.string())
        for name, bad in unparsed_parts:
            tagged = pc.if_else(bad, name, None)
            unparsed = pc.coalesce(
                pc.if_else(
                    pc.and_(pc.is_valid(unparsed), pc.is_valid(tagged)),
                    pc.binary_join_element_wise(unparsed, tagged, ","),
                    None,
                ),
                unparsed,
                tagged,
            )
        out["unparsed"] = unparsed
        return pa.table(out, schema=EXTRACT_SCHEMA)


_NIS = re.compile(r"^[0-9]{5}$")


def _strip(sql: str) -> str:
    """One statement without the comment lines and the final semicolon (COPY wraps it)."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return "\n".join(lines).strip().rstrip(";")


class TooLarge(KbiError):
    """The view counts more rows than the run may hold (catalogue 15); nothing was read."""

    def __init__(self, rows: int, limit: int):
        super().__init__(f"the KBI view counts {rows:,} rows, above the limit of {limit:,}")
        self.rows, self.limit = rows, limit


@dataclass(frozen=True)
class Extracted:
    rows: int  # rows staged
    expected_rows: int  # rows the view said it holds, in the same transaction


def _codes(nis_codes: list[str]) -> str:
    if not nis_codes or not all(_NIS.match(c) for c in nis_codes):
        raise ValueError("NIS codes are five digits")
    return ", ".join(f"'{c}'" for c in sorted(set(nis_codes)))


def extract(
    engine: Engine,
    out_path: Path,
    nis_codes: list[str] | None = None,
    timeout_s: int | None = None,
    max_rows: int | None = None,
) -> Extracted:
    """Run the extract SQL through ``engine`` and stage it as Parquet, with the view's own count.

    ``nis_codes`` limits it to residents of those municipalities (a correction, P9). On
    PostgreSQL each statement may run ``timeout_s`` at most; a read that is cancelled or loses
    its connection half-way fails as Unavailable (retried), with nothing staged. A view that
    counts more than ``max_rows`` raises TooLarge before a row is read: the year is held in
    memory, and a source that suddenly holds far more than a year is a fault to look at first."""
    dialect = engine.dialect.name
    sql = _strip(sqlfiles.load("source/extract_inburgeraars", dialect))
    count_sql = _strip(sqlfiles.load("source/count_inburgeraars", dialect))
    if nis_codes is not None:
        where = _strip(sqlfiles.load("source/filter_municipalities", dialect)).replace(
            "{codes}", _codes(nis_codes)
        )
        sql, count_sql = f"{sql}\n{where}", f"{count_sql}\n{where}"
    reader = _read_postgres if dialect == "postgresql" else _read_generic
    # Connecting is outside the scrub: its errors (server down, bad credentials) hold no data
    # and the data engineer needs them whole. PostgreSQL reads both in one snapshot.
    options = {"isolation_level": "REPEATABLE READ"} if dialect == "postgresql" else {}
    # SQLite reports a missing view as an OperationalError too: only a server's is transient.
    transient = (sa.exc.OperationalError,) if dialect != "sqlite" else ()
    with (
        engine.connect().execution_options(**options) as conn,
        scrubbed("reading the KBI view", transient),
        conn.begin(),
    ):
        if timeout_s is not None and dialect == "postgresql":
            timeout = sa.text(sqlfiles.load("source/statement_timeout", dialect))
            conn.execute(timeout, {"timeout_ms": str(int(timeout_s * 1000))})
        expected = int(conn.exec_driver_sql(count_sql).scalar_one())
        if max_rows is not None and expected > max_rows:
            raise TooLarge(expected, max_rows)
        raw = reader(conn, sql)
    table = normalise(raw)
    tmp = out_path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(out_path)  # a half-written extract is never seen by the next task
    return Extracted(table.num_rows, expected)
