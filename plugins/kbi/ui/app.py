"""The FastAPI sub-application mounted by the ``kbi_ui`` Airflow plugin at ``/kbi``.

Behind Airflow's own authentication: every route depends on Airflow's ``get_user`` (the UI's
``_token`` cookie or a Bearer token); a plugin app would be open to anyone otherwise. It reads
the reports directory (counts only, never personal data) and, for the status board, the ledger
(read-only) and the recipients registry; never KBI and never the transfer server.

    /kbi/reports/<run_id>/quality.html   the quality report of a run (also .json)
    /kbi/reports/<run_id>/summary.json   the run summary
    /kbi/board                           the status board (the "KBI status" page in Airflow)
    /kbi/board/<nis>                     one municipality: deliveries, corrections, ledger events
    /kbi/board.csv                       the board's table as CSV
    /kbi/api/board, /kbi/api/board/<nis> the same as JSON (docs/status-board.md)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from typing import Annotated, Any, Literal

import jinja2
from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from markupsafe import Markup

from kbi import settings
from kbi.pipeline import safe_name
from kbi.ui import board

REPORT_FILES = {
    "quality.html": "text/html; charset=utf-8",
    "quality.json": "application/json",
    "summary.json": "application/json",
    "selection.json": "application/json",
}
MOUNT = "/kbi"  # the url_prefix in plugins/kbi_ui.py

app = FastAPI(title="KBI distribution", dependencies=[Depends(get_user)])


@app.get("/reports/{run_id}/{name}")
def report(run_id: str, name: str, user: Annotated[object, Depends(get_user)]) -> FileResponse:
    if name not in REPORT_FILES:
        raise HTTPException(404, "no such report")
    path = settings.load().reports_dir / safe_name(run_id) / name  # safe_name: no path traversal
    if not path.is_file():
        raise HTTPException(404, "no such report for this run")
    return FileResponse(path, media_type=REPORT_FILES[name])


# --- the status board ---------------------------------------------------------------------------

Year = Annotated[int | None, Query(ge=2000, le=2100, description="default: the current year")]
State = Annotated[str | None, Query(description="status filter, see docs/status-board.md")]
Protocol = Annotated[str | None, Query(description="in_force, not_yet, ended, none")]
Search = Annotated[str | None, Query(max_length=60, description="part of the name or NIS code")]
Sort = Annotated[str, Query(description="column to sort by")]
Order = Annotated[Literal["asc", "desc"], Query()]


class _Context:
    """What one request of the board needs: ledger, registry, clock and where things are mounted."""

    def __init__(self, request: Request):
        s = settings.load()
        self.clock = board.Clock.current()
        self.reminder_days = s.pickup_reminder_days
        self.base = request.scope.get("root_path", "").rstrip("/")  # this app: …/kbi
        self.airflow = self.base.removesuffix(MOUNT)  # Airflow's own pages: …/dags/…
        try:
            self.engine = board.airflow_ledger_engine()
        except Exception as exc:  # a missing or broken kbi_ledger connection
            raise HTTPException(503, f"the ledger is not reachable: {type(exc).__name__}: {exc}") from None
        self.registry_error: str | None = None
        try:
            self.registry = board.load_registry(s.registry_path)
        except (OSError, ValueError) as exc:  # the board still shows the ledger's side
            self.registry, self.registry_error = None, str(exc).splitlines()[0]

    def year(self, year: int | None) -> int:
        return year or self.clock.today.year

    def board(self, year: int) -> dict[str, Any]:
        return board.build(self.engine, self.registry, year, self.clock, self.reminder_days, self.airflow)

    def municipality(self, nis: str, year: int) -> dict[str, Any]:
        found = board.municipality(
            self.engine, self.registry, nis, year, self.clock, self.reminder_days, self.airflow
        )
        if found is None:
            raise HTTPException(404, f"{nis} is not a Flemish municipality of the 2025 reference list")
        return found


@dataclass(frozen=True)
class _Filter:
    """The board's query string; the page, its CSV and its JSON read the same one."""

    year: int | None
    state: str | None
    protocol: str | None
    q: str | None
    sort: str
    order: str

    def rows(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            return board.select(
                data,
                self.state or None,
                self.protocol or None,
                self.q or None,
                self.sort,
                self.order == "desc",
            )
        except board.BadRequest as exc:
            raise HTTPException(400, str(exc)) from None


def _filter(
    year: Year = None,
    state: State = None,
    protocol: Protocol = None,
    q: Search = None,
    sort: Sort = "nis",
    order: Order = "asc",
) -> _Filter:
    return _Filter(year, state, protocol, q, sort, order)


BoardQuery = Annotated[_Filter, Depends(_filter)]


def _board(request: Request, f: _Filter) -> tuple[_Context, dict[str, Any], list[dict[str, Any]]]:
    ctx = _Context(request)
    data = ctx.board(ctx.year(f.year))
    return ctx, data, f.rows(data)


@cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(settings.PROJECT_ROOT / "include" / "templates" / "ui")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["local_time"] = board.local_time
    env.filters["local_date"] = board.local_date
    env.globals.update(
        STATUS=board.STATUS,
        PROTOCOL=board.PROTOCOL,
        PICKUP=board.PICKUP,
        FILTERS=board.FILTERS,
        chart=lambda weeks: Markup(chart_svg(weeks)),  # noqa: S704 - numbers and fixed text only
    )
    return env


def _html(template: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(_templates().get_template(template).render(**context))


@app.get("/board", response_class=HTMLResponse)
def board_page(request: Request, f: BoardQuery) -> HTMLResponse:
    ctx, data, rows = _board(request, f)
    return _html(
        "board.html.j2",
        data=data,
        rows=rows,
        years=board.years(ctx.engine, ctx.clock),
        base=ctx.base,
        registry_error=ctx.registry_error,
        args={"year": data["year"], "state": f.state or "", "protocol": f.protocol or "", "q": f.q or ""},
        sort=f.sort,
        order=f.order,
    )


@app.get("/board.csv")
def board_csv(request: Request, f: BoardQuery) -> Response:
    _, data, rows = _board(request, f)
    return Response(
        board.to_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="kbi-status-{data["year"]}.csv"'},
    )


@app.get("/board/{nis}", response_class=HTMLResponse)
def municipality_page(request: Request, nis: str, year: Year = None) -> HTMLResponse:
    ctx = _Context(request)
    data = ctx.municipality(nis, ctx.year(year))
    return _html(
        "municipality.html.j2",
        data=data,
        row=data["municipality"],
        base=ctx.base,
        registry_error=ctx.registry_error,
        reminder_days=ctx.reminder_days,
    )


@app.get("/api/board")
def board_api(request: Request, f: BoardQuery) -> dict[str, Any]:
    """Every Flemish municipality's row (or the filtered ones), the summary and the weekly chart."""
    ctx, data, rows = _board(request, f)
    return {**data, "registry_error": ctx.registry_error, "shown": len(rows), "municipalities": rows}


@app.get("/api/board/{nis}")
def municipality_api(request: Request, nis: str, year: Year = None) -> dict[str, Any]:
    """One municipality: its row, deliveries, decisions, corrections and ledger events."""
    ctx = _Context(request)
    return ctx.municipality(nis, ctx.year(year))


# --- the chart ----------------------------------------------------------------------------------

MONTHS = ("jan", "feb", "mrt", "apr", "mei", "jun", "jul", "aug", "sep", "okt", "nov", "dec")


def chart_svg(weeks: list[dict[str, Any]], width: int = 380, height: int = 84) -> str:
    """Files published and picked up per week, as an inline SVG drawn here (no script, no CDN)."""
    top, bottom, left = 12, 16, 22
    plot_h = height - top - bottom
    n = max(len(weeks), 1)
    slot = (width - left - 12) / n  # room for the last month label
    peak = max([1, *(w["delivered"] for w in weeks), *(w["picked_up"] for w in weeks)])
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Leveringen en ophalingen per week / deliveries and pickups per week">',
        f'<text x="{left - 4}" y="{top + 4}" class="ax" text-anchor="end">{peak}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" class="ax" text-anchor="end">0</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width}" y2="{top + plot_h}" class="base"/>',
    ]
    bar = max(slot / 2 - 0.5, 0.8)
    last_month = None
    for i, w in enumerate(weeks):
        x = left + i * slot
        for j, (key, cls) in enumerate((("delivered", "d"), ("picked_up", "p"))):
            if w[key]:
                h = max(w[key] / peak * plot_h, 1.5)
                parts.append(
                    f'<rect class="{cls}" x="{x + j * bar:.1f}" y="{top + plot_h - h:.1f}" '
                    f'width="{bar:.1f}" height="{h:.1f}"><title>{w["week"]} ({w["monday"]}): '
                    f"{w['delivered']} geleverd / delivered, {w['picked_up']} opgehaald / picked up"
                    "</title></rect>"
                )
        month = (date.fromisoformat(w["monday"]) + timedelta(days=3)).month  # an ISO week's month
        if month != last_month:
            parts.append(f'<text x="{x:.1f}" y="{height - 3}" class="ax">{MONTHS[month - 1]}</text>')
        last_month = month
    parts.append("</svg>")
    return "".join(parts)
