"""The quality report of a run: ``quality.json`` and ``quality.html`` under the reports directory.

Counts, rates, check names and municipality codes only: the report is built from the masks'
counts and the Great Expectations summary, never from rows, so it cannot show a person (P12).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from kbi import reference, settings
from kbi.quality import checks


def build(
    *,
    run_id: str,
    today: str,
    result: checks.CheckResult,
    suite: dict[str, Any],
    threshold: float,
    halt_reason: str | None,
) -> dict[str, Any]:
    names = {m.nis_code: m.name for m in reference.municipalities().values()}
    expectations = suite.get("expectations", [])
    by_check: dict[str, list[dict[str, Any]]] = {}
    for e in expectations:
        by_check.setdefault(e["check"], []).append(
            {k: e[k] for k in ("expectation", "column", "success", "unexpected_count", "unexpected_percent")}
        )
    return {
        "run_id": run_id,
        "today": today,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "suite": suite.get("name"),
        "gx_version": suite.get("gx_version"),
        "verdict": "halted" if halt_reason else "passed",
        "halt_reason": halt_reason,
        "rows_checked": result.rows_checked,
        "rows_passed": result.passed.num_rows,
        "rows_quarantined": result.failed.num_rows,
        "failure_rate": round(result.failure_rate, 6),
        "threshold": threshold,
        "run_level": [
            {k: e[k] for k in ("rule", "success", "observed_value")}
            for e in expectations
            if e["severity"] == "run"
        ],
        "checks": [
            {
                "check": name,
                "description": description,
                "rows_quarantined": result.failures.get(name, 0),
                "expectations": by_check.get(name, []),
            }
            for name, description in checks.CHECKS.items()
        ],
        "warnings": [
            {
                "check": name,
                "description": description,
                "rows": result.warnings.get(name, 0),
                "expectations": by_check.get(name, []),
            }
            for name, description in checks.WARNINGS.items()
        ],
        "municipalities": [
            {"nis_code": nis, "name": names.get(nis, "(unknown or abroad)"), **counts}
            for nis, counts in sorted(result.by_municipality.items())
        ],
    }


def write(directory: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "quality.json"
    html_path = directory / "quality.html"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(settings.PROJECT_ROOT / "include" / "templates" / "reports")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    html = env.get_template("quality.html.j2").render(r=report)
    for path, text in ((json_path, json.dumps(report, indent=2, sort_keys=True)), (html_path, html)):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        tmp.replace(path)
    return json_path, html_path
