"""The file a municipality receives (interfaces.md §3), and nothing else.

UTF-8 with BOM, ``;`` separator, CRLF line ends, RFC 4180 quoting, exactly the columns of the
recipient's protocol (P2) in canonical order, flags ``ja``/``nee``, rows sorted by naam, voornaam,
rijksregisternummer (by number alone where the protocol carries no names). A cell that a
spreadsheet would read as a formula gets a leading ``'`` (OWASP CSV injection).
"""

from __future__ import annotations

import array
import csv
import functools
import io
import itertools
import unicodedata
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from kbi.registry import CANONICAL_FIELDS

BOM = "\ufeff"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# Column of the per-municipality partition table that feeds each delivered field.
SOURCE_COLUMN = {
    "rijksregisternummer": "insz",
    "naam": "familienaam",
    "voornaam": "voornamen",
    "inburgeringscontract_ondertekend": "contract_ja",
    "attest_inburgering_behaald": "attest_ja",
}
FLAG_FIELDS = {"inburgeringscontract_ondertekend", "attest_inburgering_behaald"}


def file_name(nis_code: str, reference_date: str, correction: str | None = None) -> str:
    """``inburgeraars_<nis>_<YYYY-MM-DD>.csv.gpg``; a correction adds ``_correctie_<reference>``."""
    suffix = f"_correctie_{correction}" if correction else ""
    return f"inburgeraars_{nis_code}_{reference_date}{suffix}.csv.gpg"


def neutralise(cell: str) -> str:
    """Prefix a cell that would start a spreadsheet formula."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def _collation_key(text: str) -> str:
    # Accent- and case-insensitive, so Öztürk sorts with Oz… and "de Smet" with "De Smet";
    # ties are broken by the exact text and then the number, so the order is total.
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def _strings(values: Sequence[str]) -> pa.StringArray:
    """An Arrow string array built from its buffers. ``pa.array`` and ``pa.scalar`` on Python
    values import pandas on first use (0.2 s of CPU and 40 MB in every deliver task, whose
    process is forked without it)."""
    data = [v.encode("utf-8") for v in values]
    offsets = array.array("i", [0, *itertools.accumulate(len(d) for d in data)])  # int32, native (LE)
    return pa.StringArray.from_buffers(len(data), pa.py_buffer(offsets), pa.py_buffer(b"".join(data)))


_EMPTY, _QUOTE, _JA, _NEE = _strings(["", "'", "ja", "nee"])


def _text(table: pa.Table, column: str) -> pa.ChunkedArray:
    """A text column with a missing value (or column) as the empty string, as it is written."""
    if column not in table.column_names:
        return pa.chunked_array([pa.repeat(_EMPTY, table.num_rows)])
    return pc.fill_null(table[column].cast(pa.string()), _EMPTY)


def _collated(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """``_collation_key`` of every value, computed once per distinct value (names repeat)."""
    distinct = pc.unique(values)
    keys = _strings([_collation_key(v) for v in distinct.to_pylist()])
    return keys.take(pc.index_in(values, value_set=distinct))


def _row_order(table: pa.Table, with_names: bool) -> pa.Array:
    """Indices of the rows in file order: a stable sort, as Python's on the same keys.

    Arrow compares strings byte-wise in UTF-8, which is code-point order, as Python does."""
    insz = _text(table, "insz")
    if not with_names:
        return pc.sort_indices(pa.table({"n": insz}), sort_keys=[("n", "ascending")])
    surname, given = _text(table, "familienaam"), _text(table, "voornamen")
    keys = pa.table({"a": _collated(surname), "b": _collated(given), "c": surname, "d": given, "e": insz})
    return pc.sort_indices(keys, sort_keys=[(k, "ascending") for k in keys.column_names])


def _cells(table: pa.Table, field: str) -> list[str]:
    if field in FLAG_FIELDS:  # a missing flag is written nee
        return pc.fill_null(pc.if_else(table[SOURCE_COLUMN[field]], _JA, _NEE), _NEE).to_pylist()
    text = _text(table, SOURCE_COLUMN[field])
    formula = functools.reduce(pc.or_, (pc.starts_with(text, start) for start in FORMULA_STARTS))
    return pc.if_else(formula, pc.binary_join_element_wise(_QUOTE, text, _EMPTY), text).to_pylist()


def render(table: pa.Table, fields: Sequence[str]) -> bytes:
    """The CSV bytes for one municipality. ``table`` holds that municipality's selected rows.

    Order, flags and formula escapes are computed column-wise in Arrow; Python's csv module
    writes the rows (RFC 4180 quoting as before)."""
    columns = [f for f in CANONICAL_FIELDS if f in fields]
    if list(fields) != columns:
        raise ValueError("fields must be a subset of the canonical fields, in canonical order")
    with_names = "naam" in columns or "voornaam" in columns
    ordered = table.take(_row_order(table, with_names))
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, delimiter=";", quotechar='"', lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    writer.writerows(zip(*(_cells(ordered, f) for f in columns), strict=True))
    return out.getvalue().encode("utf-8")
