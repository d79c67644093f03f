"""The Great Expectations suite (P11): built from the same rules as the quarantine masks, it
agrees with them to the row on every rule, and its results hold counts only (P12).

PYTEST_DONT_REWRITE: synthetic national numbers and names live here; failures show messages only.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from kbi import source, synth
from kbi.quality import checks
from tests import pii

TODAY = date(2026, 12, 4)


@pytest.fixture(scope="module")
def gx_suite():
    from kbi.quality import gx_suite

    return gx_suite


def _extract(rows: int, seed: int) -> tuple[pa.Table, list[dict]]:
    table = synth.generate(rows, seed=seed, reference_date=date(2026, 1, 15), today=TODAY)
    raw = table.filter(pc.equal(table["doelgroep"], "inburgeraar"))
    text = pa.table(
        {
            col: pc.if_else(raw[col], "1", "0")
            if col == "ingeschreven_rijksregister"
            else raw[col].cast(pa.string())
            for col in source.COLUMNS
        }
    )
    return source.normalise(text), raw.to_pylist()


EDGE_NAMES = [
    "\u00a0",
    " \t ",
    "Ann\u2028a",
    "A" * 101,
    "Zoë",
    "N'Diaye",
    "Ça",
    "\x7f",
    "José\u0085",
    "\n",
    "Jan\n",
]
# Python's `$` also matches before a final line break, RE2's does not; full-width digits are
# digits to Python's \d. Each must fail the format check in both engines.
EDGE_NUMBERS = ["85073003328\n", "8507300332", "850730033281", " 85073003328", "８５０７３００３３２８", ""]


def _with_edge_rows(extract: pa.Table) -> pa.Table:
    """Names and numbers that regex engines disagree on unless the patterns are written with care."""
    rows = extract.slice(0, len(EDGE_NAMES) + len(EDGE_NUMBERS)).to_pylist()
    for row, name in zip(rows, EDGE_NAMES, strict=False):
        row["familienaam"] = name
    for row, number in zip(rows[len(EDGE_NAMES) :], EDGE_NUMBERS, strict=True):
        row["insz"] = number
    # A registration flag that could not be read (NULL) on a BIS number: not "registered", for
    # the masks and for the suite's row condition alike.
    rows[0]["insz"], rows[0]["ingeschreven"] = "85270300187", None
    return pa.concat_tables([extract, pa.Table.from_pylist(rows, schema=extract.schema)])


def test_suite_and_masks_agree_on_every_rule(gx_suite) -> None:
    extract, _ = _extract(20_000, seed=4)
    extract = _with_edge_rows(extract)
    masks = checks.run(extract, TODAY)
    result = gx_suite.validate(extract, checks.Context(TODAY), expected_rows=extract.num_rows)
    by_rule = {e["rule"]: e for e in result.expectations}
    assert set(by_rule) >= {r.label for r in (*checks.RULES, *checks.WARNING_RULES)}
    for rule in (*checks.RULES, *checks.WARNING_RULES):
        assert by_rule[rule.label]["unexpected_count"] == masks.rule_counts[rule.label], rule.label
    assert not result.success  # the synthetic defects fail blocking checks ...
    failing = {e["check"] for e in result.expectations if not e["success"] and e["severity"] == "blocking"}
    assert failing == set(masks.failures)  # ... exactly the checks that quarantined rows
    assert result.run_level_failures() == []
    edge = extract.slice(extract.num_rows - len(EDGE_NUMBERS))
    assert pc.all(pc.equal(checks.run(edge, TODAY).failed["failed_check"], "insz_format")).as_py()


def test_threads_change_nothing(gx_suite) -> None:
    """The batches validated on two threads give exactly what one thread gives, batch by batch
    in the suite's order; and a batch of GX's built-ins and one of ours per text column."""
    extract = _with_edge_rows(_extract(5_000, seed=7)[0])
    one = gx_suite.validate(extract, checks.Context(TODAY), expected_rows=extract.num_rows, workers=1)
    two = gx_suite.validate(extract, checks.Context(TODAY), expected_rows=extract.num_rows, workers=2)
    assert one == two
    assert any(e["unexpected_count"] for e in one.expectations)
    groups = gx_suite.batches(gx_suite.build_suite(checks.Context(TODAY)), extract.schema)
    assert list(groups)[:3] == ["insz", "insz.ours", "familienaam"]
    assert {type(e).__name__ for e in groups["insz.ours"]} <= set(gx_suite.CUSTOM)


def test_run_level_expectations(gx_suite) -> None:
    extract, _ = _extract(300, seed=5)
    short = gx_suite.validate(extract, checks.Context(TODAY), expected_rows=extract.num_rows + 7)
    assert short.run_level_failures() == ["extract_complete"]
    empty = gx_suite.validate(extract.slice(0, 0), checks.Context(TODAY), expected_rows=0)
    assert empty.run_level_failures() == ["extract_not_empty"]


def test_results_hold_counts_only(gx_suite, monkeypatch: pytest.MonkeyPatch) -> None:
    extract, rows = _extract(5_000, seed=6)
    raw: list[dict] = []  # what GX itself returned, before the summary keeps the counts
    summary = gx_suite._summary
    monkeypatch.setattr(gx_suite, "_summary", lambda r: raw.append(r.to_json_dict()) or summary(r))
    result = gx_suite.validate(extract, checks.Context(TODAY))
    people = pii.People.of(rows)
    text = json.dumps(dataclasses.asdict(result), default=str)
    assert people.find(text) == {"national_numbers": 0, "names": 0}
    # GX never rendered an unexpected value: BASIC with partial_unexpected_count 0 holds counts.
    assert gx_suite.RESULT_FORMAT == {"result_format": "BASIC", "partial_unexpected_count": 0}
    assert people.find(json.dumps(raw, default=str)) == {"national_numbers": 0, "names": 0}
    failing = [r for r in raw if r["result"].get("unexpected_count")]
    assert failing, "the synthetic defects must fail some expectations"
    for r in failing:
        assert r["result"].get("partial_unexpected_list", []) == []
        assert "partial_unexpected_counts" not in r["result"]
        assert "unexpected_list" not in r["result"]
    for e in result.expectations:
        assert set(e) == {
            "check", "rule", "severity", "expectation", "column", "success", "element_count",
            "unexpected_count", "unexpected_percent", "observed_value", "raised_exception",
        }  # fmt: skip


def test_the_suite_is_code_in_the_repository(gx_suite) -> None:
    suite = gx_suite.build_suite(checks.Context(TODAY), expected_rows=10)
    types = [e.expectation_type for e in suite.expectations]
    assert "expect_column_values_to_pass_the_national_number_checksum" in types
    assert "expect_column_values_to_encode_a_real_birth_date" in types
    assert "expect_column_values_to_occur_once" in types
    assert len(types) == len(checks.RULES) + len(checks.WARNING_RULES) + 2
