"""The FastAPI sub-application mounted by the ``kbi_ui`` Airflow plugin at ``/kbi``.

Behind Airflow's own authentication: every route depends on Airflow's ``get_user`` (the UI's
``_token`` cookie or a Bearer token); a plugin app would be open to anyone otherwise. It reads
the reports directory (counts only, never personal data) and, for the status board, the ledger.

    /kbi/reports/<run_id>/quality.html   the quality report of a run (also .json)
    /kbi/reports/<run_id>/summary.json   the run summary
"""

from __future__ import annotations

from typing import Annotated

from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse

from kbi import settings
from kbi.pipeline import safe_name

REPORT_FILES = {
    "quality.html": "text/html; charset=utf-8",
    "quality.json": "application/json",
    "summary.json": "application/json",
    "selection.json": "application/json",
}

app = FastAPI(title="KBI distribution", dependencies=[Depends(get_user)])


@app.get("/reports/{run_id}/{name}")
def report(run_id: str, name: str, user: Annotated[object, Depends(get_user)]) -> FileResponse:
    if name not in REPORT_FILES:
        raise HTTPException(404, "no such report")
    path = settings.load().reports_dir / safe_name(run_id) / name  # safe_name: no path traversal
    if not path.is_file():
        raise HTTPException(404, "no such report for this run")
    return FileResponse(path, media_type=REPORT_FILES[name])
