"""The Great Expectations (1.x) suite of the blocking checks, built from ``checks.RULES``.

Imported only by the quality step: Great Expectations costs about two seconds to import. Results
are read in the SUMMARY format with ``partial_unexpected_count`` 0, so no unexpected value (a
name, a national number) is ever part of a result; only counts leave this module (P12).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa

from kbi.errors import scrubbed
from kbi.quality import checks, national_number

# Before GX is imported: no analytics calls home, no chatter in the task log.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
for _name in ("great_expectations", "great_expectations._docs_decorators"):
    logging.getLogger(_name).setLevel(logging.WARNING)

import great_expectations as gx  # noqa: E402
import pandas as pd  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.execution_engine import PandasExecutionEngine  # noqa: E402
from great_expectations.expectations.expectation import ColumnMapExpectation  # noqa: E402
from great_expectations.expectations.metrics.map_metric_provider import (  # noqa: E402
    ColumnMapMetricProvider,
    column_condition_partial,
)

SUITE_NAME = "kbi_inburgeraar_extract"
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0}


def _verdicts(column: pd.Series, today: str) -> national_number.Verdicts:
    return national_number.check(pa.array(column, pa.string()), date.fromisoformat(today))


class ColumnValuesPassTheNationalNumberChecksum(ColumnMapMetricProvider):
    condition_metric_name = "column_values.kbi_national_number_checksum"
    condition_value_keys = ("today",)

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, today: str, **kwargs: Any) -> pd.Series:
        return pd.Series(~_verdicts(column, today).bad_checksum, index=column.index)


class ColumnValuesEncodeARealBirthDate(ColumnMapMetricProvider):
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


CUSTOM = {
    "ExpectColumnValuesToPassTheNationalNumberChecksum": ExpectColumnValuesToPassTheNationalNumberChecksum,
    "ExpectColumnValuesToEncodeARealBirthDate": ExpectColumnValuesToEncodeARealBirthDate,
}


def _expectation(rule: checks.Rule, ctx: checks.Context, severity: str) -> Any:
    cls = CUSTOM.get(rule.expectation) or getattr(gx.expectations, rule.expectation)
    return cls(
        column=rule.column,
        meta={"check": rule.check, "rule": rule.label, "severity": severity},
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


def validate(extract: pa.Table, ctx: checks.Context, expected_rows: int | None = None) -> SuiteResult:
    """Run the suite over the extract in an ephemeral context (nothing written to disk)."""
    with scrubbed("validating the extract with Great Expectations"):
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        batch_definition = (
            context.data_sources.add_pandas("kbi")
            .add_dataframe_asset("extract")
            .add_batch_definition_whole_dataframe("whole")
        )
        suite = context.suites.add(build_suite(ctx, expected_rows))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=SUITE_NAME, data=batch_definition, suite=suite)
        )
        frame = extract.drop_columns([c for c in ("doelgroep",) if c in extract.column_names]).to_pandas()
        result = definition.run(batch_parameters={"dataframe": frame}, result_format=RESULT_FORMAT)
        expectations = [_summary(r) for r in result.results]
    broken = [e["rule"] for e in expectations if e["raised_exception"]]
    if broken:
        # An expectation that crashed has no verdict: never read that as "passed".
        raise checks_error(f"Great Expectations could not evaluate: {', '.join(broken)}")
    blocking_ok = all(e["success"] for e in expectations if e["severity"] != "warning")
    return SuiteResult(success=blocking_ok, expectations=expectations)


def checks_error(message: str) -> Exception:
    from kbi.errors import DataError

    return DataError(message)
