"""kbi.selection: who is on a municipality's list (P1) and which columns it gets (P2).

Every row gets an outcome: ``selected`` or the first reason it is excluded, so a run accounts for
every row (P11). Flags are ja when the date is set and not after the reference date.

PYTEST_DONT_REWRITE: this module handles synthetic national numbers and names, so pytest's
assertion rewriting is off here: a failure shows the assert's own message only, never the
values compared (P12).
"""

from __future__ import annotations

from datetime import date, timedelta

import pyarrow as pa
import pytest

from kbi import reference, selection
from kbi.source import EXTRACT_SCHEMA
from tests.helpers import Sealed, make_nn

D = date(2026, 1, 15)
RECEIVING = ("44021", "11002")
BRUSSELS = next(m.nis_code for m in reference.municipalities().values() if not m.is_flemish)


def _row(serial: int, **over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "insz": make_nn(85, 7, 14, serial),
        "doelgroep": "inburgeraar",
        "familienaam": "Peeters",
        "voornamen": "Anna",
        "nis_code": "44021",
        "ingeschreven": True,
        "contract_op": None,
        "attest_op": None,
        "overleden_op": None,
        "unparsed": None,
    }
    row.update(over)
    return row


def _classify(rows: list[dict[str, object]], receiving: tuple[str, ...] = RECEIVING) -> pa.Table:
    return selection.classify(pa.Table.from_pylist(rows, schema=EXTRACT_SCHEMA), D, receiving)


def _outcome(case: Sealed[dict[str, object]] | None = None, **plain: object) -> str:
    """The outcome of one row; overrides holding a synthetic number come sealed."""
    return _classify([_row(1, **{**(case.value if case else {}), **plain})])["outcome"][0].as_py()


def test_selected() -> None:
    assert _outcome() == selection.SELECTED


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        (Sealed({"doelgroep": "anderstalige"}), selection.OTHER_TARGET_GROUP),  # P2: only inburgeraars
        (Sealed({"doelgroep": "minderjarige_nieuwkomer"}), selection.OTHER_TARGET_GROUP),
        (Sealed({"doelgroep": "anderstalige_kleuter"}), selection.OTHER_TARGET_GROUP),
        (Sealed({"doelgroep": None}), selection.OTHER_TARGET_GROUP),
        (Sealed({"ingeschreven": False}), selection.NOT_REGISTERED),
        (Sealed({"ingeschreven": None}), selection.NOT_REGISTERED),
        (Sealed({"insz": make_nn(85, 27, 14, 1)}), selection.BIS_NUMBER),
        (Sealed({"insz": make_nn(85, 47, 14, 1)}), selection.BIS_NUMBER),
        (Sealed({"overleden_op": D}), selection.DECEASED),
        (Sealed({"overleden_op": D - timedelta(days=400)}), selection.DECEASED),
        (Sealed({"nis_code": None}), selection.NO_RESIDENCE),
        (Sealed({"nis_code": BRUSSELS}), selection.BRUSSELS),
        (Sealed({"nis_code": "21004"}), selection.BRUSSELS),
        (Sealed({"nis_code": "44084"}), selection.NO_RECIPIENT),
    ],
)
def test_every_exclusion_reason(case: Sealed[dict[str, object]], reason: str) -> None:
    """P1: registered in the Rijksregister, not BIS, alive on d, resident in a receiving municipality."""
    assert _outcome(case) == reason, "another outcome"


def test_died_after_the_reference_date_is_still_on_the_list() -> None:
    assert _outcome(overleden_op=D + timedelta(days=1)) == selection.SELECTED


def test_brussels_never_receives_even_when_asked() -> None:
    """P1: a Brussels code in the receiving set still delivers nobody."""
    table = _classify([_row(1, nis_code="21004")], receiving=("21004",))
    assert table["outcome"].to_pylist() == [selection.BRUSSELS]
    assert selection.partitions(table) == {}


def test_first_reason_wins() -> None:
    assert (
        _outcome(doelgroep="anderstalige", ingeschreven=False, nis_code=None) == selection.OTHER_TARGET_GROUP
    )
    assert _outcome(Sealed({"insz": make_nn(85, 27, 14, 1)}), ingeschreven=False) == selection.NOT_REGISTERED
    assert _outcome(overleden_op=D, nis_code="21004") == selection.DECEASED


@pytest.mark.parametrize(
    ("when", "flag"),
    [(None, False), (D - timedelta(days=1), True), (D, True), (D + timedelta(days=1), False)],
    ids=["null", "before", "on-d", "after"],
)
def test_flags_are_ja_when_set_and_not_after_d(when: date | None, flag: bool) -> None:
    table = _classify([_row(1, contract_op=when, attest_op=when)])
    assert table["contract_ja"].to_pylist() == [flag]
    assert table["attest_ja"].to_pylist() == [flag]


def test_flags_are_independent() -> None:
    table = _classify([_row(1, contract_op=D - timedelta(days=3), attest_op=None)])
    assert table["contract_ja"].to_pylist() == [True]
    assert table["attest_ja"].to_pylist() == [False]


def test_outcome_counts_account_for_every_row() -> None:
    rows = [_row(i) for i in range(1, 6)] + [_row(10 + i, nis_code=None) for i in range(3)]
    rows += [_row(20, doelgroep="anderstalige"), _row(21, nis_code="11002")]
    counts = selection.outcome_counts(_classify(rows))
    assert counts == {selection.SELECTED: 6, selection.NO_RESIDENCE: 3, selection.OTHER_TARGET_GROUP: 1}
    assert sum(counts.values()) == len(rows)


def test_partitions_hold_only_selected_rows_and_file_columns() -> None:
    rows = [_row(i, nis_code="44021" if i % 2 else "11002") for i in range(1, 11)]
    rows += [_row(30, ingeschreven=False), _row(31, nis_code="21004")]
    parts = selection.partitions(_classify(rows))
    assert sorted(parts) == ["11002", "44021"]
    assert parts["44021"].num_rows == 5 and parts["11002"].num_rows == 5
    for table in parts.values():
        assert table.column_names == list(selection.PARTITION_COLUMNS)  # no nis, dates, doelgroep
    # Each municipality gets exactly its own residents (a misdirected row is the worst failure).
    own = {r["insz"] for r in rows if r["nis_code"] == "44021" and r["ingeschreven"]}
    assert set(parts["44021"]["insz"].to_pylist()) == own


def test_partitions_over_several_chunks() -> None:
    rows = [_row(i, nis_code=("44021", "11002", "11001")[i % 3]) for i in range(1, 61)]
    one = selection.partitions(_classify(rows, receiving=("44021", "11002", "11001")))
    table = pa.concat_tables(
        [
            pa.Table.from_pylist(rows[:17], schema=EXTRACT_SCHEMA),
            pa.Table.from_pylist(rows[17:], schema=EXTRACT_SCHEMA),
        ]
    )
    many = selection.partitions(selection.classify(table, D, ("44021", "11002", "11001")))
    assert sorted(one) == sorted(many) == ["11001", "11002", "44021"]
    for code in one:
        key = [("insz", "ascending")]
        assert one[code].sort_by(key).equals(many[code].sort_by(key)), "partitions differ"


def test_no_selected_rows_means_no_partitions() -> None:
    assert selection.partitions(_classify([_row(1, ingeschreven=False)])) == {}


def test_empty_partition_is_a_typed_empty_table() -> None:
    table = selection.empty_partition()
    assert table.num_rows == 0
    assert table.schema == selection.PARTITION_SCHEMA
    assert table.column_names == list(selection.PARTITION_COLUMNS)


@pytest.mark.parametrize(
    ("fields", "columns"),
    [
        (
            ("rijksregisternummer", "inburgeringscontract_ondertekend", "attest_inburgering_behaald"),
            ["insz", "contract_ja", "attest_ja"],
        ),
        (
            ("rijksregisternummer", "naam", "inburgeringscontract_ondertekend", "attest_inburgering_behaald"),
            ["insz", "familienaam", "contract_ja", "attest_ja"],
        ),
        (
            (
                "rijksregisternummer",
                "voornaam",
                "inburgeringscontract_ondertekend",
                "attest_inburgering_behaald",
            ),
            ["insz", "voornamen", "contract_ja", "attest_ja"],
        ),
        (
            (
                "rijksregisternummer",
                "naam",
                "voornaam",
                "inburgeringscontract_ondertekend",
                "attest_inburgering_behaald",
            ),
            ["insz", "familienaam", "voornamen", "contract_ja", "attest_ja"],
        ),
    ],
    ids=["template", "naam-only", "voornaam-only", "all"],
)
def test_minimise_drops_names_the_protocol_does_not_list(fields: tuple[str, ...], columns: list[str]) -> None:
    """P2: names leave the agency only for a municipality whose protocol's art. 3 adds them."""
    rows = [_row(1), _row(2)]
    part = selection.partitions(_classify(rows))["44021"]
    minimal = selection.minimise(part, fields)
    assert minimal.column_names == columns
    assert minimal.num_rows == 2
