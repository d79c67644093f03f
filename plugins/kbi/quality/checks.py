"""The blocking row checks (P11): one list of rules, each a Great Expectations expectation and the
same condition as a vectorised mask.

The GX suite (``gx_suite.py``) is built from these rules and gives the verdict and the report;
the masks give, for every row, the first check it fails (CHECKS order), which decides what is
quarantined. The two read the same rule, and a test holds their counts equal on every rule.
Failing rows are never delivered and never silently dropped. A pre-2025 NIS code of a merged
municipality is mapped through the official crosswalk and counted as a warning; an unknown code
is never guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kbi import reference
from kbi.errors import scrubbed
from kbi.quality import national_number

MAX_NAME_LENGTH = 100
# Patterns that read the same in RE2 (Arrow) and Python's re, and that pandas keeps on Arrow's
# engine: literal characters instead of \s or \x{…}, and no `$` (Python's also matches before a
# trailing line break; pandas falls back to Python's re, row by row, when the data holds one).
# Blank = nothing but spaces, tabs, line breaks, no-break spaces: no character outside those.
NOT_BLANK = "[^ \t\r\n\f\v\u00a0\u2007\u202f]"
CONTROL = "[\x00-\x1f\x7f-\x9f\u2028\u2029]"
NOT_DIGIT = "[^0-9]"
NATIONAL_NUMBER_LENGTH = 11
BIS_MONTH = "^[0-9]{2}[2-5]"

# Stable names: they appear in the quarantine, the reports and the ledger counts.
CHECKS: dict[str, str] = {
    "insz_format": "national number is not exactly 11 digits",
    "insz_checksum": "national number fails the mod-97 check for both birth centuries",
    "insz_birth_date": "national number encodes an impossible or future birth date",
    "insz_duplicate": "national number occurs more than once in the extract (all its rows are held)",
    "bis_registered": "a BIS number on a person marked as registered in the Rijksregister",
    "name_missing": "family name or given names empty",
    "name_invalid": f"a name holds control characters or is longer than {MAX_NAME_LENGTH} characters",
    "nis_unknown": "residence NIS code is not a 2025 municipality nor a pre-2025 code in the crosswalk",
    "value_unparsed": "a date or the registration flag cannot be read",
    "date_in_future": "a contract, certificate or death date lies in the future",
}
WARNINGS: dict[str, str] = {
    "nis_pre_2025": "residence NIS code from before the 2025 mergers, mapped through the crosswalk",
}


@dataclass(frozen=True)
class Context:
    """What the rules need besides the rows: the run's date and the municipality reference."""

    today: date
    known: frozenset[str] = field(default_factory=lambda: frozenset(reference.municipalities()))
    old: frozenset[str] = field(default_factory=lambda: frozenset(reference.crosswalk()))


Mask = Callable[[pa.Table, Context], np.ndarray]


@dataclass(frozen=True)
class Rule:
    """One expectation of the suite and the identical condition as a mask (True = row fails)."""

    check: str
    column: str
    expectation: str  # the GX 1.x expectation class (built-in, or ours in gx_suite)
    kwargs: Callable[[Context], Mapping[str, Any]]
    mask: Mask
    condition_columns: tuple[str, ...] = ()  # columns its GX row_condition reads besides ``column``

    @property
    def label(self) -> str:
        return f"{self.check}: {self.expectation}({self.column})"


def _np(mask: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _null(column: str) -> Mask:
    return lambda t, c: _np(pc.is_null(t[column]))


def _matches(column: str, pattern: str) -> Mask:
    return lambda t, c: _np(pc.match_substring_regex(t[column], pattern))


def _not_matching(column: str, pattern: str) -> Mask:
    return lambda t, c: _np(pc.invert(pc.match_substring_regex(t[column], pattern)))


def _longer(column: str, limit: int) -> Mask:
    return lambda t, c: _np(pc.greater(pc.utf8_length(t[column]), limit))


def _length_is_not(column: str, length: int) -> Mask:
    return lambda t, c: _np(pc.not_equal(pc.utf8_length(t[column]), length))


def _after_today(column: str) -> Mask:
    return lambda t, c: _np(pc.greater(t[column], pa.scalar(c.today, pa.date32())))


def _nn(aspect: str) -> Mask:
    def mask(t: pa.Table, c: Context) -> np.ndarray:
        return getattr(national_number.check_once(t["insz"], c.today), aspect)

    return mask


def _duplicated(t: pa.Table, c: Context) -> np.ndarray:
    """Every row whose (non-null) number occurs more than once: one hashing pass, then counts."""
    col = t["insz"]
    encoded = pc.dictionary_encode(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    valid = _np(pc.is_valid(encoded))
    slots = len(encoded.dictionary)
    index = np.asarray(pc.fill_null(encoded.indices, slots).to_numpy(zero_copy_only=False), dtype=np.int64)
    counts = np.bincount(index, minlength=slots + 1)
    return (counts[index] > 1) & valid


def _bis_registered(t: pa.Table, c: Context) -> np.ndarray:
    return _np(t["ingeschreven"]) & _np(pc.match_substring_regex(t["insz"], BIS_MONTH))


def _outside(column: str, allowed: Callable[[Context], frozenset[str]]) -> Mask:
    return lambda t, c: _np(
        pc.and_(pc.is_valid(t[column]), pc.invert(pc.is_in(t[column], pa.array(sorted(allowed(c))))))
    )


def _inside(column: str, values: Callable[[Context], frozenset[str]]) -> Mask:
    return lambda t, c: _np(pc.is_in(t[column], pa.array(sorted(values(c)), pa.string())))


def _none(c: Context) -> Mapping[str, Any]:
    return {}


def _names(
    check: str, build: Callable[[str], tuple[str, Callable[[Context], Mapping[str, Any]], Mask]]
) -> list[Rule]:
    return [Rule(check, col, *build(col)) for col in ("familienaam", "voornamen")]


RULES: tuple[Rule, ...] = (
    Rule("insz_format", "insz", "ExpectColumnValuesToNotBeNull", _none, _null("insz")),
    Rule(
        "insz_format",
        "insz",
        "ExpectColumnValueLengthsToEqual",
        lambda c: {"value": NATIONAL_NUMBER_LENGTH},
        _length_is_not("insz", NATIONAL_NUMBER_LENGTH),
    ),
    Rule(
        "insz_format",
        "insz",
        "ExpectColumnValuesToNotMatchRegex",
        lambda c: {"regex": NOT_DIGIT},
        _matches("insz", NOT_DIGIT),
    ),
    Rule(
        "insz_checksum",
        "insz",
        "ExpectColumnValuesToPassTheNationalNumberChecksum",
        lambda c: {"today": c.today.isoformat()},
        _nn("bad_checksum"),
    ),
    Rule(
        "insz_birth_date",
        "insz",
        "ExpectColumnValuesToEncodeARealBirthDate",
        lambda c: {"today": c.today.isoformat()},
        _nn("bad_birth_date"),
    ),
    Rule("insz_duplicate", "insz", "ExpectColumnValuesToOccurOnce", _none, _duplicated),
    Rule(
        "bis_registered",
        "insz",
        "ExpectColumnValuesToNotMatchRegex",
        lambda c: {"regex": BIS_MONTH, "row_condition": "ingeschreven==True", "condition_parser": "pandas"},
        _bis_registered,
        condition_columns=("ingeschreven",),
    ),
    *_names("name_missing", lambda col: ("ExpectColumnValuesToNotBeNull", _none, _null(col))),
    *_names(
        "name_missing",
        lambda col: (
            "ExpectColumnValuesToMatchRegex",
            lambda c: {"regex": NOT_BLANK},
            _not_matching(col, NOT_BLANK),
        ),
    ),
    *_names(
        "name_invalid",
        lambda col: (
            "ExpectColumnValuesToNotMatchRegex",
            lambda c: {"regex": CONTROL},
            _matches(col, CONTROL),
        ),
    ),
    *_names(
        "name_invalid",
        lambda col: (
            "ExpectColumnValueLengthsToBeBetween",
            lambda c: {"max_value": MAX_NAME_LENGTH},
            _longer(col, MAX_NAME_LENGTH),
        ),
    ),
    Rule(
        "nis_unknown",
        "nis_code",
        "ExpectColumnValuesToBeInSet",
        lambda c: {"value_set": sorted(c.known | c.old)},
        _outside("nis_code", lambda c: c.known | c.old),
    ),
    Rule(
        "value_unparsed",
        "unparsed",
        "ExpectColumnValuesToBeNull",
        _none,
        lambda t, c: _np(pc.is_valid(t["unparsed"])),
    ),
    *[
        Rule(
            "date_in_future",
            col,
            "ExpectColumnDatesToBeOnOrBefore",
            lambda c: {"day": c.today.isoformat()},
            _after_today(col),
        )
        for col in ("contract_op", "attest_op", "overleden_op")
    ],
)
WARNING_RULES: tuple[Rule, ...] = (
    Rule(
        "nis_pre_2025",
        "nis_code",
        "ExpectColumnValuesToNotBeInSet",
        lambda c: {"value_set": sorted(c.old)},
        _inside("nis_code", lambda c: c.old),
    ),
)


@dataclass
class CheckResult:
    passed: pa.Table  # rows that go on, NIS codes mapped to 2025
    failed: pa.Table  # rows held back, with failed_check
    failures: dict[str, int] = field(default_factory=dict)  # rows per first failing check
    warnings: dict[str, int] = field(default_factory=dict)
    rule_counts: dict[str, int] = field(default_factory=dict)  # rows failing each rule (any order)
    by_municipality: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def rows_checked(self) -> int:
        return self.passed.num_rows + self.failed.num_rows

    @property
    def failure_rate(self) -> float:
        return self.failed.num_rows / self.rows_checked if self.rows_checked else 0.0


def _map_old_codes(nis: pa.ChunkedArray, crosswalk: Mapping[str, str]) -> pa.ChunkedArray | pa.Array:
    mapping_from = pa.array(list(crosswalk), pa.string())
    mapping_to = pa.array(list(crosswalk.values()), pa.string())
    idx = pc.index_in(nis, value_set=mapping_from)
    return pc.if_else(pc.is_valid(idx), pc.take(mapping_to, pc.fill_null(idx, 0)), nis)


def _per_municipality(nis: pa.ChunkedArray | pa.Array, failed: np.ndarray) -> dict[str, dict[str, int]]:
    """Rows passed and held per residence code (mapped; 'unknown' when NULL): counts only."""
    keys = pc.fill_null(nis, "unknown")
    table = pa.table({"nis": keys, "failed": pa.array(failed)})
    grouped = table.group_by("nis").aggregate([("failed", "count"), ("failed", "sum")])
    out = {}
    for row in grouped.to_pylist():
        held = int(row["failed_sum"] or 0)
        out[row["nis"]] = {"passed": int(row["failed_count"]) - held, "quarantined": held}
    return out


def run(extract: pa.Table, today: date) -> CheckResult:
    """Apply every blocking rule; ``today`` is the run's calendar date (for 'future')."""
    with scrubbed("checking data quality"):
        ctx = Context(today)
        masks = [(rule, rule.mask(extract, ctx)) for rule in RULES]
        names = list(CHECKS)
        # Per row the number of the first failing check in CHECKS order, 0 for none (small
        # integers: an array of check names costs a Python object per row).
        first = np.zeros(extract.num_rows, dtype=np.int8)
        for code in range(len(names), 0, -1):
            failing = np.zeros(extract.num_rows, dtype=bool)
            for rule, mask in masks:
                if rule.check == names[code - 1]:
                    failing |= mask
            first[failing] = code
        failed_mask = first != 0
        per_code = np.bincount(first, minlength=len(names) + 1)
        failures = {name: int(per_code[code]) for code, name in enumerate(names, start=1)}
        rule_counts = {rule.label: int(np.count_nonzero(mask)) for rule, mask in masks}
        for rule in WARNING_RULES:
            rule_counts[rule.label] = int(np.count_nonzero(rule.mask(extract, ctx)))

        nis = extract["nis_code"]
        is_old = _inside("nis_code", lambda c: c.old)(extract, ctx)
        mapped = _map_old_codes(nis, reference.crosswalk()) if is_old.any() else nis
        with_nis = extract.set_column(extract.schema.get_field_index("nis_code"), "nis_code", mapped)
        passed = with_nis.filter(pa.array(~failed_mask))
        failed = extract.filter(pa.array(failed_mask)).append_column(
            "failed_check", pc.take(pa.array(["", *names], pa.string()), pa.array(first[failed_mask]))
        )
        return CheckResult(
            passed=passed,
            failed=failed,
            failures={k: v for k, v in failures.items() if v},
            warnings={"nis_pre_2025": int(np.count_nonzero(is_old & ~failed_mask))},
            rule_counts=rule_counts,
            by_municipality=_per_municipality(mapped, failed_mask),
        )
