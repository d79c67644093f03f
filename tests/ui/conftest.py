"""One real demo stack for the status board's tests (API and browser), started once per package.

A small world like tests/e2e/test_demo_stack.py (synthetic KBI, the e2e registry with every kind
of recipient, real keys and servers), then what a board should show besides fresh deliveries:
one municipality has picked its file up (the file is gone, the pickup monitor notices), one
correction request is open and one is past its 14 days (both wait for the quality officer).
Package scope: the stack stops after the last UI test, not at the end of the whole session.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from demo import __main__ as demo_cli
from demo import environment as env
from demo.stack import Stack, running, trigger
from tests.e2e.conftest import brussels_today, key_cache, stack_world  # noqa: F401 - fixture

PICKED_UP = "11001"  # Aartselaar fetches its file before the monitor looks
OPEN_CORRECTION = ("44021", "UI-OPEN-1", 3)  # Gent reported 3 days ago: 11 days left
LATE_CORRECTION = ("12025", "UI-LATE-1", 17)  # Mechelen reported 17 days ago: 3 days late


@dataclass
class UiWorld:
    places: env.Places
    stack: Stack
    today: date
    annual_run: str
    monitor_run: str
    correction_runs: dict[str, str]  # NIS → run id

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    def client(self) -> httpx.Client:
        """A client with a fresh Bearer token from POST /auth/token (admin)."""
        return self.stack.client()

    def ledger(self, sql: str, *params: object) -> list[dict]:
        conn = sqlite3.connect(f"file:{self.places.ledger_db}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(sql, params)]
        finally:
            conn.close()


def _wait_task(client: httpx.Client, dag_id: str, run_id: str, task_id: str, timeout: float = 120) -> None:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = client.get(path).json().get("state")
        if state == "success":
            return
        assert state not in ("failed", "upstream_failed"), f"{dag_id}.{task_id} {state}"
        time.sleep(1)
    raise AssertionError(f"{dag_id}.{task_id} still {state} after {timeout:.0f} s")


def _wait_run(client: httpx.Client, dag_id: str, run_id: str, timeout: float = 120) -> None:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = client.get(path).json()["state"]
        if state in ("success", "failed"):
            break
        time.sleep(1)
    assert state == "success", f"{dag_id} run {run_id}: {state}"


@pytest.fixture(scope="package")
def ui_world(tmp_path_factory: pytest.TempPathFactory, key_cache: Path) -> Iterator[UiWorld]:  # noqa: F811
    today = brussels_today()
    places = stack_world(tmp_path_factory.mktemp("ui") / "demo", key_cache, seed=5)

    with running(places) as stack:
        annual_run, state = demo_cli.trigger_and_follow(stack, {})
        assert state == "success"
        with stack.client() as client:
            corrections = {}
            for nis, reference, days_ago in (OPEN_CORRECTION, LATE_CORRECTION):
                conf = {
                    "nis_code": nis,
                    "reported_on": (today - timedelta(days=days_ago)).isoformat(),
                    "reference": reference,
                    "description": "Een inburgeraar ontbreekt op de lijst.",
                    "reporter": "Dienst Burgerzaken",
                }
                corrections[nis] = trigger(client, "kbi_correction_request", conf, parse_timeout=120)
            # The municipality fetched (and deleted) its file; the monitor only looks at the server.
            (fetched,) = places.inbox(PICKED_UP).glob("*.csv.gpg")
            fetched.unlink()
            for run_id in corrections.values():
                _wait_task(client, "kbi_correction_request", run_id, "register")
            monitor_run = trigger(client, "kbi_pickup_monitor", {}, parse_timeout=120)
            _wait_run(client, "kbi_pickup_monitor", monitor_run)
        yield UiWorld(places, stack, today, annual_run, monitor_run, corrections)


@pytest.fixture(scope="package")
def flemish() -> set[str]:
    from kbi import reference

    return {n for n, m in reference.municipalities().items() if m.is_flemish}
