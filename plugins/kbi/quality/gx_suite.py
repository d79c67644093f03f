"""The Great Expectations (1.x) suite of the blocking checks, built from ``checks.RULES``.

Imported only by the quality step: Great Expectations costs about two seconds to import. Results
are read in the BASIC format with ``partial_unexpected_count`` 0, so no unexpected value (a
name, a national number) is ever part of a result; only counts leave this module (P12).

Speed: GX's pandas engine copies the whole batch for every metric of an expectation (it drops
the rows where the expectation's column is null), so the suite runs as small batches holding
only the columns their expectations read (``batches``: per checked string column, GX's built-in
expectations and ours apart; one batch for the rest: dates, flags). Text stays in Arrow-backed
columns and the patterns (``checks``) keep pandas on Arrow's regex engine. The batches are
independent and spend most of their time in Arrow, which runs outside Python's lock, so two
threads validate them at once, each through its own ephemeral context (its own datasource and
execution engine: nothing GX holds per batch is shared). At 1,000,000 rows this takes the suite
from ~6 s to ~0.5 s (``make bench``).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kbi.errors import scrubbed
from kbi.quality import checks, national_number

# Before GX is imported: no analytics calls home, no chatter in the task log.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
for _name in ("great_expectations", "great_expectations._docs_decorators"):
    logging.getLogger(_name).setLevel(logging.WARNING)

import great_expectations as gx  # noqa: E402
import pandas as pd  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.execution_engine import PandasExecutionEngine, pandas_execution_engine  # noqa: E402
from great_expectations.expectations.expectation import ColumnMapExpectation  # noqa: E402
from great_expectations.expectations.metrics.map_metric_provider import (  # noqa: E402
    ColumnMapMetricProvider,
    column_condition_partial,
)

# GX fingerprints every pandas batch below this size by hashing all of it (an MD5 over
# pandas' row hashes, element by element for Arrow-backed columns): a batch marker this pipeline
# never reads, ~2 s at 1,000,000 rows. Zero turns it off; GX reads the constant at each batch.
pandas_execution_engine.HASH_THRESHOLD = 0

SUITE_NAME = "kbi_inburgeraar_extract"
RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}


def _verdicts(column: pd.Series, today: str) -> national_number.Verdicts:
    """The checksum and the birth-date expectations read the verdicts the quarantine's masks
    computed for the same column (``national_number.check_once``)."""
    return national_number.check_once(pa.array(column, pa.string()), date.fromisoformat(today))


class ColumnValuesPassTheNationalNumberChecksum(ColumnMapMetricProvider):
    filter_column_isnull = False  # the whole column, as the masks saw it (a null is not a number: passes)
    condition_metric_name = "column_values.kbi_national_number_checksum"
    condition_value_keys = ("today",)

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, today: str, **kwargs: Any) -> pd.Series:
        return pd.Series(~_verdicts(column, today).bad_checksum, index=column.index)


class ColumnValuesEncodeARealBirthDate(ColumnMapMetricProvider):
    filter_column_isnull = False  # the whole column, as the masks saw it (a null is not a number: passes)
    condition_metric_name = "column_values.kbi_national_number_birth_date"
    condition_value_keys = ("today",)

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, today: str, **kwargs: Any) -> pd.Series:
        return pd.Series(~_verdicts(column, today).bad_birth_date, index=column.index)


class ExpectColumnValuesToPassTheNationalNumberChecksum(ColumnMapExpectation):
    """Eleven-digit national or BIS numbers pass mod-97, for people born before or after 2000.

    Vectorised equivalent of python-stdnum's ``stdnum.be.nn``/``stdnum.be.bis`` checksum (tested
    against it); malformed values are left to the format expectation.
    """

    today: str
    map_metric = "column_values.kbi_national_number_checksum"
    success_keys = ("today", "mostly")


class ExpectColumnValuesToEncodeARealBirthDate(ColumnMapExpectation):
    """The birth date in a national or BIS number exists and is not in the future (stdnum takes
    31 February as 'day unknown'; the register cannot hand out such a number)."""

    today: str
    map_metric = "column_values.kbi_national_number_birth_date"
    success_keys = ("today", "mostly")


class ColumnValuesOccurOnce(ColumnMapMetricProvider):
    filter_column_isnull = False  # a missing number is the format check's, never a duplicate
    condition_metric_name = "column_values.kbi_occur_once"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        # pandas' hashing, as in the built-in; the quarantine's masks count through Arrow instead.
        return ~(column.duplicated(keep=False) & column.notna())


class ExpectColumnValuesToOccurOnce(ColumnMapExpectation):
    """No value occurs twice in the column; missing values are not counted. The verdict of the
    built-in ExpectColumnValuesToBeUnique without its copies of the batch (GX drops the null
    rows for each of its metrics): 0.15 → 0.07 s at 700,000 national numbers."""

    map_metric = "column_values.kbi_occur_once"
    success_keys = ("mostly",)


class ColumnDatesOnOrBefore(ColumnMapMetricProvider):
    condition_metric_name = "column_values.kbi_date_on_or_before"
    condition_value_keys = ("day",)

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, day: str, **kwargs: Any) -> pd.Series:
        # Vectorised on the Arrow dates (the built-in "between" compares Python dates one by one).
        within = pc.less_equal(pa.array(column, pa.date32()), pa.scalar(date.fromisoformat(day), pa.date32()))
        return pd.Series(within.to_numpy(zero_copy_only=False), index=column.index, dtype=bool)


class ExpectColumnDatesToBeOnOrBefore(ColumnMapExpectation):
    """Dates lie on or before ``day`` (ISO date): a contract, certificate or death date cannot
    lie in the future of the run."""

    day: str
    map_metric = "column_values.kbi_date_on_or_before"
    success_keys = ("day", "mostly")


CUSTOM = {
    "ExpectColumnValuesToPassTheNationalNumberChecksum": ExpectColumnValuesToPassTheNationalNumberChecksum,
    "ExpectColumnValuesToEncodeARealBirthDate": ExpectColumnValuesToEncodeARealBirthDate,
    "ExpectColumnValuesToOccurOnce": ExpectColumnValuesToOccurOnce,
    "ExpectColumnDatesToBeOnOrBefore": ExpectColumnDatesToBeOnOrBefore,
}


def _expectation(rule: checks.Rule, ctx: checks.Context, severity: str) -> Any:
    cls = CUSTOM.get(rule.expectation) or getattr(gx.expectations, rule.expectation)
    return cls(
        column=rule.column,
        meta={
            "check": rule.check,
            "rule": rule.label,
            "severity": severity,
            "reads": [rule.column, *rule.condition_columns],
        },
        **rule.kwargs(ctx),
    )


def build_suite(ctx: checks.Context, expected_rows: int | None = None) -> gx.ExpectationSuite:
    """The suite as code: run-level expectations, blocking rules, warnings."""
    suite = gx.ExpectationSuite(name=SUITE_NAME)
    suite.add_expectation(
        gx.expectations.ExpectTableRowCountToBeBetween(
            min_value=1, meta={"check": "extract_not_empty", "rule": "extract_not_empty", "severity": "run"}
        )
    )
    if expected_rows is not None:
        suite.add_expectation(
            gx.expectations.ExpectTableRowCountToEqual(
                value=expected_rows,
                meta={"check": "extract_complete", "rule": "extract_complete", "severity": "run"},
            )
        )
    for rule in checks.RULES:
        suite.add_expectation(_expectation(rule, ctx, "blocking"))
    for rule in checks.WARNING_RULES:
        suite.add_expectation(_expectation(rule, ctx, "warning"))
    return suite


@dataclass
class SuiteResult:
    """What the report may show: per expectation its verdict and counts, nothing else."""

    success: bool
    expectations: list[dict[str, Any]] = field(default_factory=list)
    gx_version: str = gx.__version__

    def run_level_failures(self) -> list[str]:
        return [e["rule"] for e in self.expectations if e["severity"] == "run" and not e["success"]]


def _summary(result: Any) -> dict[str, Any]:
    config = result.expectation_config
    meta = config.meta or {}
    counts = result.result or {}
    return {
        "check": meta.get("check"),
        "rule": meta.get("rule"),
        "severity": meta.get("severity"),
        "expectation": config.type,
        "column": config.kwargs.get("column"),
        "success": bool(result.success),
        "element_count": counts.get("element_count"),
        "unexpected_count": counts.get("unexpected_count"),
        "unexpected_percent": counts.get("unexpected_percent"),
        "observed_value": counts.get("observed_value") if meta.get("severity") == "run" else None,
        "raised_exception": bool((result.exception_info or {}).get("raised_exception")),
    }


def batches(suite: gx.ExpectationSuite, schema: pa.Schema) -> dict[str, list[Any]]:
    """The suite's expectations per batch: per checked string column one batch for GX's built-in
    expectations and one for ours (which read the whole column once; for the national number,
    half of the work, so the two threads share it), one batch for the other columns;
    table-level expectations (row counts) go with the first."""
    out: dict[str, list[Any]] = {}
    for expectation in suite.expectations:
        reads = (expectation.meta or {}).get("reads") or []
        text = reads and pa.types.is_string(schema.field(reads[0]).type)
        key = reads[0] if text else ("other" if reads else "")
        if text and type(expectation).__name__ in CUSTOM:
            key += ".ours"
        out.setdefault(key, []).append(expectation)
    table_level = out.pop("", [])
    if table_level:
        first = next(iter(out), "other")
        out[first] = table_level + out.get(first, [])
    return out


# Text, flags and dates as pandas' ArrowDtype columns: GX's null filter copies them at Arrow's
# speed (half the time of pandas' own "str" dtype), a row condition on the registration flag
# compares in Arrow (numpy bool: twice as slow; with a missing value, Python objects), and so
# does the date expectation.
_ARROW_BACKED = {t: pd.ArrowDtype(t) for t in (pa.string(), pa.bool_(), pa.date32())}


def _frame(extract: pa.Table, expectations: list[Any]) -> pd.DataFrame:
    columns = sorted({c for e in expectations for c in (e.meta or {}).get("reads", [])})
    part = extract.select(columns) if columns else extract.select(extract.column_names[:1])
    return part.to_pandas(types_mapper=_ARROW_BACKED.get)


WORKERS = 2  # threads validating batches at once: two cores here; three or four were no faster


def _batch_definition(worker: int) -> Any:
    """A whole-dataframe batch definition in an ephemeral context of its own (nothing on disk)."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas(f"kbi-{worker}")
    return source.add_dataframe_asset("extract").add_batch_definition_whole_dataframe("whole")


def validate(
    extract: pa.Table, ctx: checks.Context, expected_rows: int | None = None, workers: int = WORKERS
) -> SuiteResult:
    """Run the suite over the extract, batch by batch, on ``workers`` threads."""
    with scrubbed("validating the extract with Great Expectations"):
        # Made here, not in the threads, and before any suite: GX keeps the current context in
        # process-wide state, and a suite needs one.
        free = [_batch_definition(i) for i in range(max(1, workers))]
        suite = build_suite(ctx, expected_rows)
        order = {e.meta["rule"]: i for i, e in enumerate(suite.expectations)}
        groups = batches(suite, extract.schema)
        parts = [
            gx.ExpectationSuite(name=f"{SUITE_NAME}.{name}", expectations=members)
            for name, members in groups.items()
        ]

        def run(part: gx.ExpectationSuite) -> list[dict[str, Any]]:
            definition = free.pop()  # list.pop is atomic: each thread holds one context at a time
            try:
                batch = definition.get_batch(
                    batch_parameters={"dataframe": _frame(extract, part.expectations)}
                )
                result = batch.validate(part, result_format=RESULT_FORMAT)
                return [_summary(r) for r in result.results]
            finally:
                free.append(definition)

        try:
            with ThreadPoolExecutor(len(free), thread_name_prefix="gx") as pool:
                expectations = [e for done in pool.map(run, parts) for e in done]
        finally:
            national_number.forget()  # no column of national numbers outlives the validation
        expectations.sort(key=lambda e: order[e["rule"]])
    broken = [e["rule"] for e in expectations if e["raised_exception"]]
    if broken:
        # An expectation that crashed has no verdict: never read that as "passed".
        raise checks_error(f"Great Expectations could not evaluate: {', '.join(broken)}")
    blocking_ok = all(e["success"] for e in expectations if e["severity"] != "warning")
    return SuiteResult(success=blocking_ok, expectations=expectations)


def checks_error(message: str) -> Exception:
    from kbi.errors import DataError

    return DataError(message)
