"""The blocking row checks (P11), vectorised over the whole extract.

Every row gets at most one ``failed_check`` (the first in CHECKS order that it fails). Failing rows
are quarantined, never delivered and never silently dropped; passing rows go on to selection.
A pre-2025 NIS code of a merged municipality is mapped through the official crosswalk and counted
as a warning; an unknown code is never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kbi import reference
from kbi.errors import scrubbed
from kbi.quality import national_number

MAX_NAME_LENGTH = 100

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


@dataclass
class CheckResult:
    passed: pa.Table  # rows that go on, NIS codes mapped to 2025
    failed: pa.Table  # rows held back, with failed_check
    failures: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)

    @property
    def rows_checked(self) -> int:
        return self.passed.num_rows + self.failed.num_rows

    @property
    def failure_rate(self) -> float:
        return self.failed.num_rows / self.rows_checked if self.rows_checked else 0.0


def _np(mask: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _blank(col: pa.ChunkedArray) -> np.ndarray:
    return _np(pc.or_(pc.is_null(col), pc.equal(pc.utf8_trim_whitespace(pc.fill_null(col, "")), "")))


def _invalid_name(col: pa.ChunkedArray) -> np.ndarray:
    control = pc.match_substring_regex(col, r"[\x00-\x1f\x7f-\x9f\x{2028}\x{2029}]")
    too_long = pc.greater(pc.utf8_length(col), MAX_NAME_LENGTH)
    return _np(pc.or_(control, too_long))


def _duplicated(col: pa.ChunkedArray) -> np.ndarray:
    counts = pc.value_counts(col)
    dupes = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    return _np(pc.is_in(col, value_set=dupes)) & _np(pc.is_valid(col))


def run(extract: pa.Table, today: date) -> CheckResult:
    """Apply every blocking check; ``today`` is the run's calendar date (for 'future')."""
    with scrubbed("checking data quality"):
        insz = extract["insz"]
        nn = national_number.check(insz, today)
        known = pa.array(sorted(reference.municipalities()), pa.string())
        crosswalk = reference.crosswalk()
        old_codes = pa.array(sorted(crosswalk), pa.string())
        nis = extract["nis_code"]
        is_old = _np(pc.is_in(nis, value_set=old_codes))
        in_reference = _np(pc.is_in(nis, value_set=known))
        today_scalar = pa.scalar(today, pa.date32())
        future = np.zeros(extract.num_rows, dtype=bool)
        for column in ("contract_op", "attest_op", "overleden_op"):
            future |= _np(pc.greater(extract[column], today_scalar))
        masks = {
            "insz_format": nn.bad_format,
            "insz_checksum": nn.bad_checksum,
            "insz_birth_date": nn.bad_birth_date,
            "insz_duplicate": _duplicated(insz),
            "bis_registered": nn.is_bis & _np(extract["ingeschreven"]),
            "name_missing": _blank(extract["familienaam"]) | _blank(extract["voornamen"]),
            "name_invalid": _invalid_name(extract["familienaam"]) | _invalid_name(extract["voornamen"]),
            "nis_unknown": _np(pc.is_valid(nis)) & ~in_reference & ~is_old,
            "value_unparsed": _np(pc.is_valid(extract["unparsed"])),
            "date_in_future": future,
        }
        first = np.full(extract.num_rows, "", dtype=object)
        for name in reversed(CHECKS):  # the first failing check in CHECKS order wins
            first = np.where(masks[name], name, first)
        failed_mask = first != ""
        failures = {name: int(np.count_nonzero(first == name)) for name in CHECKS}

        mapped = nis
        if is_old.any():
            mapping_from = pa.array(list(crosswalk), pa.string())
            mapping_to = pa.array(list(crosswalk.values()), pa.string())
            idx = pc.index_in(nis, value_set=mapping_from)
            mapped = pc.if_else(pc.is_valid(idx), pc.take(mapping_to, pc.fill_null(idx, 0)), nis)
        with_nis = extract.set_column(extract.schema.get_field_index("nis_code"), "nis_code", mapped)
        keep = pa.array(~failed_mask)
        passed = with_nis.filter(keep)
        failed = extract.filter(pa.array(failed_mask)).append_column(
            "failed_check", pa.array(first[failed_mask].tolist(), pa.string())
        )
        warnings = {"nis_pre_2025": int(np.count_nonzero(is_old & ~failed_mask))}
        return CheckResult(passed, failed, {k: v for k, v in failures.items() if v}, warnings)
