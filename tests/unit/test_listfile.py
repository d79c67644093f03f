"""kbi.listfile: the CSV a municipality receives (interfaces.md §3; P2, catalogue #10, #11).

UTF-8 with BOM, ``;``, CRLF, RFC 4180 quoting, exactly the protocol's columns in canonical order,
ja/nee flags, rows sorted by name (accent- and case-insensitive) or by number, and a leading
``'`` on any cell a spreadsheet would run as a formula.

PYTEST_DONT_REWRITE: this module handles synthetic national numbers and names, so pytest's
assertion rewriting is off here: a failure shows the assert's own message only, never the
values compared (P12).
"""

from __future__ import annotations

import csv
import io
import os
import random
import subprocess
import sys
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kbi import listfile, registry, selection, settings
from tests.helpers import HOSTILE_NAMES, PARTITION_SCHEMA, make_nn, partition_table

ALL = registry.CANONICAL_FIELDS
TEMPLATE = registry.TEMPLATE_FIELDS


def _table(rows: list[tuple[str, str | None, str | None, bool, bool]]) -> pa.Table:
    return pa.Table.from_pylist(
        [dict(zip(PARTITION_SCHEMA.names, r, strict=True)) for r in rows], schema=PARTITION_SCHEMA
    )


def _fold(text: str) -> str:
    """Accent- and case-insensitive form, spelled out here independently of the module."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()


def _parse(data: bytes) -> list[list[str]]:
    """Read the file as a municipality's CSV reader would (the BOM is checked by the tests)."""
    text = data.decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=";", quotechar='"'))


def _reference_render(table: pa.Table, fields: tuple[str, ...]) -> bytes:
    """The file written row by row in plain Python, as the first version of the module did."""
    columns = [f for f in ALL if f in fields]
    rows = table.to_pylist()
    if "naam" in columns or "voornaam" in columns:
        rows.sort(
            key=lambda r: (
                _fold(r.get("familienaam") or ""),
                _fold(r.get("voornamen") or ""),
                r.get("familienaam") or "",
                r.get("voornamen") or "",
                r["insz"],
            )
        )
    else:
        rows.sort(key=lambda r: r["insz"])
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(columns)
    for r in rows:
        cells = []
        for field in columns:
            value = r.get(listfile.SOURCE_COLUMN[field])
            if field in listfile.FLAG_FIELDS:
                cells.append("ja" if value else "nee")
            else:
                cells.append(listfile.neutralise(value or ""))
        writer.writerow(cells)
    return out.getvalue().encode("utf-8")


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(
    "fields", [ALL, TEMPLATE, ("rijksregisternummer", "naam", "attest_inburgering_behaald")], ids=str
)
def test_columnwise_render_equals_row_by_row(seed: int, fields: tuple[str, ...]) -> None:
    """The Arrow version writes byte for byte the file of the plain row-by-row one: hostile names,
    missing names and flags, the same person twice, names equal but for case and accents."""
    table = partition_table(400, seed=seed, hostile=True)
    rows = table.to_pylist()
    for i, r in enumerate(rows[:40]):
        if i % 4 == 0:
            r["familienaam"] = None
        elif i % 4 == 1:
            r["voornamen"], r["contract_ja"] = None, None
        elif i % 4 == 2:
            r["familienaam"] = r["familienaam"].upper() if r["familienaam"] else "ÖZTÜRK"
        else:
            r["attest_ja"] = None
    rows += rows[50:60]  # duplicates: a stable sort keeps their order
    random.Random(seed).shuffle(rows)
    shuffled = _table([tuple(r.values()) for r in rows])  # type: ignore[misc]
    assert listfile.render(shuffled, fields) == _reference_render(shuffled, fields), "files differ"
    if "voornaam" not in fields:  # a table minimised for the protocol (P2) sorts the same way
        minimised = selection.minimise(shuffled, fields)
        assert listfile.render(minimised, fields) == _reference_render(minimised, fields), "files differ"


def test_bom_separator_crlf_and_header() -> None:
    data = listfile.render(_table([(make_nn(85, 7, 14, 1), "Peeters", "Anna", True, False)]), ALL)
    assert data.startswith(b"\xef\xbb\xbf")
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")  # no bare LF line ends
    header = data.decode("utf-8-sig").split("\r\n")[0]
    assert (
        header
        == "rijksregisternummer;naam;voornaam;inburgeringscontract_ondertekend;attest_inburgering_behaald"
    )


def test_template_protocol_gets_exactly_three_columns() -> None:
    """P2: the template's art. 3 lists the number and the two flags only: no names leave."""
    table = _table([(make_nn(85, 7, 14, 1), "Peeters", "Anna", True, False)])
    rows = _parse(listfile.render(table, TEMPLATE))
    assert rows[0] == [
        "rijksregisternummer",
        "inburgeringscontract_ondertekend",
        "attest_inburgering_behaald",
    ]
    assert all(len(r) == 3 for r in rows)
    assert b"Peeters" not in listfile.render(table, TEMPLATE)


def test_flags_are_ja_and_nee() -> None:
    table = _table(
        [
            (make_nn(85, 7, 14, 1), "A", "A", True, True),
            (make_nn(85, 7, 14, 2), "B", "B", True, False),
            (make_nn(85, 7, 14, 3), "C", "C", False, False),
            (make_nn(85, 7, 14, 4), "D", "D", None, None),  # type: ignore[arg-type]
        ]
    )
    rows = _parse(listfile.render(table, ALL))[1:]
    assert [(r[3], r[4]) for r in rows] == [("ja", "ja"), ("ja", "nee"), ("nee", "nee"), ("nee", "nee")]


def test_sorted_by_name_accent_and_case_insensitive() -> None:
    n = [make_nn(85, 7, 14, i) for i in range(1, 9)]
    table = _table(
        [
            (n[0], "Zeeman", "Jan", True, True),
            (n[1], "Öztürk", "Ali", True, True),
            (n[2], "de Smet", "Anna", True, True),
            (n[3], "Aerts", "Zoë", True, True),
            (n[4], "Ozturk", "Ahmet", True, True),
            (n[5], "De Smet", "Anna", True, True),
            (n[6], "Aerts", "Émile", True, True),
            (n[7], "aerts", "emile", True, True),
        ]
    )
    rows = _parse(listfile.render(table, ALL))[1:]
    folded = [(_fold(r[1]), _fold(r[2])) for r in rows]
    assert folded == sorted(folded)  # non-decreasing by folded naam, then voornaam
    assert [r[1].casefold() for r in rows][:3] == ["aerts", "aerts", "aerts"]
    assert [r[1] for r in rows][-1] == "Zeeman"
    # Öztürk sits with Oz…, not after Z (a byte-wise sort would put Ö last).
    surnames = [r[1] for r in rows]
    assert surnames.index("Öztürk") < surnames.index("Zeeman")
    assert abs(surnames.index("Öztürk") - surnames.index("Ozturk")) == 1
    # "de Smet" and "De Smet" with the same first name: both adjacent, ties broken deterministically.
    assert abs(surnames.index("de Smet") - surnames.index("De Smet")) == 1


def test_order_is_total_and_independent_of_input_order() -> None:
    table = partition_table(300, seed=3)
    reversed_table = table.take(pa.array(range(table.num_rows - 1, -1, -1)))
    assert listfile.render(table, ALL) == listfile.render(reversed_table, ALL)
    assert listfile.render(table, TEMPLATE) == listfile.render(reversed_table, TEMPLATE)


def test_same_names_sorted_by_number() -> None:
    a, b = make_nn(85, 7, 14, 9), make_nn(85, 7, 14, 2)
    rows = _parse(
        listfile.render(_table([(a, "Peeters", "Anna", True, True), (b, "Peeters", "Anna", True, True)]), ALL)
    )
    assert [r[0] for r in rows[1:]] == sorted([a, b])


def test_without_names_sorted_by_number() -> None:
    numbers = [make_nn(85, 7, 14, i) for i in (5, 1, 9, 3)]
    table = _table([(x, name, "A", True, True) for x, name in zip(numbers, "DCBA", strict=True)])
    rows = _parse(listfile.render(table, TEMPLATE))[1:]
    assert [r[0] for r in rows] == sorted(numbers)


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_formula_injection_is_neutralised(start: str) -> None:
    """Catalogue #10 (OWASP ASVS): a cell starting = + - @ tab or CR gets a leading '."""
    name = f"{start}SUM(A1:A9)"
    rows = _parse(listfile.render(_table([(make_nn(85, 7, 14, 1), name, name, True, True)]), ALL))
    assert rows[1][1] == "'" + name
    assert rows[1][2] == "'" + name


def test_harmless_cells_are_left_alone() -> None:
    for name in ("Anne-Marie", "O'Brien", "'quoted", "Smith=Jones", " =leading space"):
        rows = _parse(listfile.render(_table([(make_nn(85, 7, 14, 1), name, "A", True, True)]), ALL))
        assert rows[1][1] == name


def test_rfc4180_round_trip_with_hostile_names() -> None:
    """Catalogue #11: ; , " CR LF inside a cell: quoted, and a reader gets the rows back intact."""
    table = partition_table(120, seed=5, hostile=True)
    data = listfile.render(table, ALL)
    rows = _parse(data)
    assert len(rows) == table.num_rows + 1
    got = sorted((r[0], r[1], r[2], r[3], r[4]) for r in rows[1:])
    expected = sorted(
        (
            r["insz"],
            listfile.neutralise(r["familienaam"]),
            listfile.neutralise(r["voornamen"]),
            "ja" if r["contract_ja"] else "nee",
            "ja" if r["attest_ja"] else "nee",
        )
        for r in table.to_pylist()
    )
    assert got == expected, "rows differ after a CSV round trip"
    hostile_seen = {r[1] for r in rows} & {listfile.neutralise(n) for n in HOSTILE_NAMES}
    assert len(hostile_seen) >= 5  # the sample really holds hostile names


def test_quoting_is_minimal_and_doubles_quotes() -> None:
    table = _table([(make_nn(85, 7, 14, 1), 'Quote"d', "Semi;Colon", True, False)])
    line = listfile.render(table, ALL).decode("utf-8-sig").split("\r\n")[1]
    assert line.endswith(';"Quote""d";"Semi;Colon";ja;nee')
    assert not line.startswith('"')  # the number is not quoted


def test_empty_partition_is_a_header_only_file() -> None:
    data = listfile.render(PARTITION_SCHEMA.empty_table(), TEMPLATE)
    assert (
        data
        == b"\xef\xbb\xbfrijksregisternummer;inburgeringscontract_ondertekend;attest_inburgering_behaald\r\n"
    )


def test_minimised_partition_renders() -> None:
    """The delivery feeds a table without name columns for a template protocol."""
    table = partition_table(10, seed=9).select(["insz", "contract_ja", "attest_ja"])
    rows = _parse(listfile.render(table, TEMPLATE))
    assert len(rows) == 11 and all(len(r) == 3 for r in rows)


@pytest.mark.parametrize(
    "fields",
    [
        ("naam", "rijksregisternummer"),
        ("rijksregisternummer", "adres"),
        ("rijksregisternummer", "attest_inburgering_behaald", "inburgeringscontract_ondertekend"),
    ],
    ids=["not-canonical-order", "unknown-field", "flags-swapped"],
)
def test_fields_must_be_canonical(fields: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="canonical"):
        listfile.render(partition_table(2), fields)


def test_file_names() -> None:
    assert listfile.file_name("44021", "2026-01-15") == "inburgeraars_44021_2026-01-15.csv.gpg"
    assert (
        listfile.file_name("44021", "2026-01-15", "M-2026-017")
        == "inburgeraars_44021_2026-01-15_correctie_M-2026-017.csv.gpg"
    )


def test_empty_partition_with_names_is_a_header_only_file() -> None:
    data = listfile.render(PARTITION_SCHEMA.empty_table(), ALL)
    assert data == ("\ufeff" + ";".join(ALL) + "\r\n").encode()


def test_writing_a_list_does_not_import_pandas(tmp_path: Path) -> None:
    """A deliver task is forked without pandas; importing it there costs 0.2 s of CPU and 40 MB
    in each of 285 task instances (pa.array or pa.scalar on Python values would do it)."""
    partition = tmp_path / "part.parquet"
    pq.write_table(partition_table(50, seed=2), partition)
    script = (
        "import sys\n"
        "import pyarrow.parquet as pq\n"
        "from kbi import listfile, registry, rowhash, selection\n"
        f"table = pq.ParquetFile({str(partition)!r}).read()\n"
        "for fields in (registry.CANONICAL_FIELDS, registry.TEMPLATE_FIELDS):\n"
        "    listfile.render(table, fields)\n"
        "    rowhash.hashes(selection.minimise(table, fields), b'k' * 32)\n"
        "print('pandas' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(settings.PROJECT_ROOT / "plugins")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", "writing a list imported pandas"
