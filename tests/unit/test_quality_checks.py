"""kbi.quality.checks: the blocking checks (P11) and the NIS crosswalk, on literal extracts.

Every failing row is held back with exactly one stable check name (the first that applies),
never dropped; a pre-2025 NIS code is mapped and counted as a warning; an unknown code is
quarantined and never guessed. Assertions compare counts and booleans only.

PYTEST_DONT_REWRITE: this module handles synthetic national numbers and names, so pytest's
assertion rewriting is off here: a failure shows the assert's own message only, never the
values compared (P12).
"""

from __future__ import annotations

from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from kbi import reference
from kbi.errors import DataError
from kbi.quality import checks
from kbi.source import EXTRACT_SCHEMA
from tests.helpers import Sealed, make_nn

TODAY = date(2026, 12, 4)


def _row(serial: int, **over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "insz": make_nn(85, 7, 14, serial),
        "doelgroep": "inburgeraar",
        "familienaam": "Peeters",
        "voornamen": "Anna",
        "nis_code": "44021",
        "ingeschreven": True,
        "contract_op": date(2024, 5, 1),
        "attest_op": None,
        "overleden_op": None,
        "unparsed": None,
    }
    row.update(over)
    return row


def _wrong_checksum(number: str) -> str:
    return number[:-2] + f"{(int(number[-2:]) + 1) % 100:02d}"


def _table(rows: list[dict[str, object]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=EXTRACT_SCHEMA)


def _single(case: Sealed[dict[str, object]] | None = None, **plain: object) -> str | None:
    """The check a single row (plus a clean neighbour) fails, or None when it passes.

    Overrides holding a synthetic number come sealed, so a failure never prints them.
    """
    over = {**(case.value if case else {}), **plain}
    result = checks.run(_table([_row(1, **over), _row(2)]), TODAY)
    held = result.failed.num_rows
    assert result.rows_checked == 2, "a row went missing"
    assert result.passed.num_rows + held == 2, "a row was dropped (P11)"
    assert held <= 1, "the clean neighbour was held too"
    return result.failed["failed_check"][0].as_py() if held else None


def test_a_clean_row_passes() -> None:
    assert _single() is None


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (Sealed({"insz": "1234567890"}), "insz_format"),
        (Sealed({"insz": None}), "insz_format"),
        (Sealed({"insz": "8507140010X"}), "insz_format"),
        (Sealed({"insz": _wrong_checksum(make_nn(85, 7, 14, 1))}), "insz_checksum"),
        (Sealed({"insz": make_nn(85, 2, 30, 7)}), "insz_birth_date"),
        (Sealed({"insz": make_nn(26, 12, 31, 7, born_2000=True)}), "insz_birth_date"),
        (Sealed({"insz": make_nn(85, 27, 14, 9), "ingeschreven": True}), "bis_registered"),
        (Sealed({"familienaam": ""}), "name_missing"),
        (Sealed({"voornamen": "   "}), "name_missing"),
        (Sealed({"familienaam": None}), "name_missing"),
        (Sealed({"familienaam": "Pee\x07ters"}), "name_invalid"),
        (Sealed({"voornamen": "An\nna"}), "name_invalid"),
        (Sealed({"voornamen": "An\x00na"}), "name_invalid"),
        (Sealed({"familienaam": "Pee\u2028ters"}), "name_invalid"),
        (Sealed({"familienaam": "x" * 101}), "name_invalid"),
        (Sealed({"nis_code": "99999"}), "nis_unknown"),
        (Sealed({"nis_code": "00000"}), "nis_unknown"),
        (Sealed({"unparsed": "contract_op"}), "value_unparsed"),
        (Sealed({"contract_op": TODAY + timedelta(days=1)}), "date_in_future"),
        (Sealed({"attest_op": TODAY + timedelta(days=30)}), "date_in_future"),
        (Sealed({"overleden_op": TODAY + timedelta(days=1)}), "date_in_future"),
    ],
    ids=[
        "10-digits",
        "null",
        "letter",
        "checksum",
        "30-february",
        "born-after-today",
        "bis-registered",
        "empty-family-name",
        "blank-given-names",
        "null-family-name",
        "bell-char",
        "newline",
        "nul",
        "line-separator",
        "101-chars",
        "unknown-nis",
        "zero-nis",
        "unparsed",
        "future-contract",
        "future-attest",
        "future-death",
    ],
)
def test_each_blocking_check(case: Sealed[dict[str, object]], expected: str) -> None:
    """P11, catalogue #1, #4, #6, #9: the row is held with the stable name of its check."""
    assert expected in checks.CHECKS
    assert _single(case) == expected, "held under another check, or not held"


def test_boundaries_that_pass() -> None:
    assert _single(familienaam="x" * 100) is None  # exactly the maximum length
    assert _single(contract_op=TODAY, attest_op=TODAY) is None  # today is not the future
    assert _single(nis_code=None) is None  # no residence: selection excludes it, not quality
    assert _single(Sealed({"insz": make_nn(85, 27, 14, 9)}), ingeschreven=False) is None  # BIS, unregistered
    assert _single(familienaam="Öztürk-Çelik", voornamen="Zoë Anne-Marie") is None


def test_first_failing_check_wins() -> None:
    """A row failing several checks is counted once, under the first in CHECKS order."""
    bad_checksum = Sealed({"insz": _wrong_checksum(make_nn(85, 7, 14, 1))})
    assert _single(bad_checksum, familienaam="", nis_code="99999") == "insz_checksum"
    assert _single(familienaam="", nis_code="99999", unparsed="attest_op") == "name_missing"
    assert _single(nis_code="99999", unparsed="attest_op") == "nis_unknown"


def test_missing_numbers_are_not_duplicates_of_each_other() -> None:
    rows = [_row(1, insz=None), _row(2, insz=None), _row(3)]
    result = checks.run(_table(rows), TODAY)
    assert result.failures == {"insz_format": 2}
    assert result.rule_counts["insz_duplicate: ExpectColumnValuesToOccurOnce(insz)"] == 0


def test_duplicates_hold_every_copy() -> None:
    """Catalogue #7: the same number twice: all its rows are held, counted, none delivered."""
    dup = make_nn(85, 7, 14, 50)
    rows = [_row(1, insz=dup), _row(2), _row(3, insz=dup, familienaam="Janssens"), _row(4)]
    result = checks.run(_table(rows), TODAY)
    assert result.failures == {"insz_duplicate": 2}
    assert result.passed.num_rows == 2
    assert not pc.any(pc.equal(result.passed["insz"], dup)).as_py()


def test_pre_2025_nis_code_is_mapped_with_a_warning() -> None:
    """A merged municipality's old code goes through the official crosswalk (a warning, not an error)."""
    crosswalk = reference.crosswalk()
    old, new = "11007", crosswalk["11007"]
    assert old not in reference.municipalities() and new in reference.municipalities()
    rows = [_row(1, nis_code=old), _row(2, nis_code="44021"), _row(3, nis_code="44012")]
    result = checks.run(_table(rows), TODAY)
    assert result.failed.num_rows == 0
    assert result.warnings == {"nis_pre_2025": 2}
    assert result.passed["nis_code"].to_pylist() == [new, "44021", crosswalk["44012"]]


def test_unknown_nis_code_is_never_guessed() -> None:
    """Catalogue #9: a code close to a real one is not corrected; the row is quarantined."""
    assert "44022" not in reference.municipalities() and "44022" not in reference.crosswalk()
    result = checks.run(_table([_row(1, nis_code="44022"), _row(2)]), TODAY)
    assert result.failures == {"nis_unknown": 1}
    assert result.failed["nis_code"].to_pylist() == ["44022"]  # as found, not mapped
    assert result.passed["nis_code"].to_pylist() == ["44021"]


def test_an_old_code_on_a_failing_row_is_not_a_warning() -> None:
    result = checks.run(_table([_row(1, nis_code="11007", familienaam=""), _row(2)]), TODAY)
    assert result.failures == {"name_missing": 1}
    assert result.warnings == {"nis_pre_2025": 0}
    assert result.failed["nis_code"].to_pylist() == ["11007"]  # the quarantine shows it as found


def test_counts_rate_and_shape() -> None:
    rows = [_row(i) for i in range(1, 96)] + [_row(200 + i, familienaam="") for i in range(5)]
    result = checks.run(_table(rows), TODAY)
    assert result.rows_checked == 100
    assert result.failures == {"name_missing": 5}
    assert result.failure_rate == pytest.approx(0.05)
    assert result.failed.schema.names == [*EXTRACT_SCHEMA.names, "failed_check"]
    assert result.passed.schema == EXTRACT_SCHEMA
    assert set(result.failures) <= set(checks.CHECKS)


def test_empty_extract() -> None:
    result = checks.run(EXTRACT_SCHEMA.empty_table(), TODAY)
    assert result.rows_checked == 0 and result.failure_rate == 0.0 and result.failures == {}


def test_multi_chunk_extract_gives_the_same_result() -> None:
    """The extract arrives in batches: chunk boundaries must not change any verdict."""
    rows = [_row(i, nis_code="11007" if i % 3 == 0 else "44021") for i in range(1, 61)]
    rows[10]["familienaam"] = ""
    rows[40]["insz"] = rows[41]["insz"]
    whole = checks.run(_table(rows), TODAY)
    chunked = pa.concat_tables([_table(rows[:25]), _table(rows[25:50]), _table(rows[50:])])
    assert chunked["insz"].num_chunks == 3
    parts = checks.run(chunked, TODAY)
    assert parts.failures == whole.failures == {"insz_duplicate": 2, "name_missing": 1}
    assert parts.warnings == whole.warnings
    assert parts.passed.combine_chunks().equals(whole.passed.combine_chunks()), "passed rows differ"


def test_errors_carry_no_data() -> None:
    """P12, catalogue #48: a failure inside the checks names the stage and the type, not a value."""
    secret = make_nn(85, 7, 14, 77)
    broken = _table([_row(1, insz=secret)]).drop_columns(["unparsed"])
    with pytest.raises(DataError) as info:
        checks.run(broken, TODAY)
    assert secret not in str(info.value)
    assert "checking data quality" in str(info.value)
    assert info.value.__cause__ is None
