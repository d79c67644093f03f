"""The file a municipality receives (interfaces.md §3), and nothing else.

UTF-8 with BOM, ``;`` separator, CRLF line ends, RFC 4180 quoting, exactly the columns of the
recipient's protocol (P2) in canonical order, flags ``ja``/``nee``, rows sorted by naam, voornaam,
rijksregisternummer (by number alone where the protocol carries no names). A cell that a
spreadsheet would read as a formula gets a leading ``'`` (OWASP CSV injection).
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Sequence

import pyarrow as pa

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


def _sorted_rows(table: pa.Table, with_names: bool) -> list[dict]:
    rows = table.to_pylist()
    if with_names:
        rows.sort(
            key=lambda r: (
                _collation_key(r.get("familienaam") or ""),
                _collation_key(r.get("voornamen") or ""),
                r.get("familienaam") or "",
                r.get("voornamen") or "",
                r["insz"],
            )
        )
    else:
        rows.sort(key=lambda r: r["insz"])
    return rows


def render(table: pa.Table, fields: Sequence[str]) -> bytes:
    """The CSV bytes for one municipality. ``table`` holds that municipality's selected rows."""
    columns = [f for f in CANONICAL_FIELDS if f in fields]
    if list(fields) != columns:
        raise ValueError("fields must be a subset of the canonical fields, in canonical order")
    with_names = "naam" in columns or "voornaam" in columns
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, delimiter=";", quotechar='"', lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in _sorted_rows(table, with_names):
        cells = []
        for field in columns:
            value = row[SOURCE_COLUMN[field]]
            if field in FLAG_FIELDS:
                cells.append("ja" if value else "nee")
            else:
                cells.append(neutralise(value or ""))
        writer.writerow(cells)
    return out.getvalue().encode("utf-8")
