"""The status board's endpoints over HTTP on a real api-server, against the ledger a real run wrote:
no token no data; the JSON, the CSV and the timeline say what the ledger and the registry say."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from urllib.parse import quote

import httpx
import pytest

from kbi.ui import board
from tests import pii
from tests.e2e.conftest import RECEIVING, REFUSED, ROOT, read_view
from tests.helpers import ELEVEN_DIGITS
from tests.ui.conftest import LATE_CORRECTION, OPEN_CORRECTION, PICKED_UP, UiWorld

pytestmark = pytest.mark.slow

ENDPOINTS = ("/kbi/api/board", "/kbi/api/board/44021", "/kbi/board.csv", "/kbi/board", "/kbi/board/44021")


def _run_url(dag_id: str, run_id: str) -> str:
    return f"/dags/{dag_id}/runs/{quote(run_id, safe='')}"


@pytest.fixture(scope="module")
def api(ui_world: UiWorld) -> httpx.Client:
    with ui_world.client() as client:
        yield client


@pytest.fixture(scope="module")
def data(api: httpx.Client, ui_world: UiWorld) -> dict:
    r = api.get("/kbi/api/board", params={"year": ui_world.today.year})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def people(ui_world: UiWorld) -> pii.People:
    people = pii.People.of(read_view(ui_world.places.kbi_db))
    assert len(people.numbers) > 1000 and people.names  # a search for nobody would find nothing
    return people


# A national number as it is written, plain (not a digit run inside a fingerprint a refusal
# reason quotes: one random fingerprint in ~15 holds eleven digits in a row) or with its dots.
NATIONAL_NUMBER_SHAPES = (ELEVEN_DIGITS, re.compile(r"[0-9]{2}\.[0-9]{2}\.[0-9]{2}-[0-9]{3}\.[0-9]{2}"))


def _rows(data: dict) -> dict[str, dict]:
    return {r["nis_code"]: r for r in data["municipalities"]}


@pytest.mark.parametrize("path", ENDPOINTS)
def test_no_token_no_data(ui_world: UiWorld, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        r = httpx.get(f"{ui_world.base_url}{path}", headers=headers, timeout=10)
        assert r.status_code == (401 if not headers else 403), (path, headers, r.status_code)
        assert "inburgeraars_" not in r.text and "Gent" not in r.text and "44021" not in r.text


def test_the_plugin_adds_the_page_to_airflows_browse_menu(api: httpx.Client) -> None:
    plugins = api.get("/api/v2/plugins").json()["plugins"]
    (kbi,) = [p for p in plugins if p["name"] == "kbi_ui"]
    (view,) = kbi["external_views"]
    assert (view["name"], view["href"], view["url_route"], view["category"]) == (
        "KBI status",
        "/kbi/board",
        "kbi-status",
        "browse",
    )


def test_loading_the_plugin_imports_nothing_else() -> None:
    """Every task process loads the plugins folder: the app, FastAPI and the ledger stay out."""
    code = (
        "import sys, airflow.plugins_manager; before = set(sys.modules); import kbi_ui; "
        "print(sorted(set(sys.modules) - before))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['kbi_ui']"


def test_every_flemish_municipality_once_and_the_counts_add_up(data: dict, flemish: set[str]) -> None:
    rows = _rows(data)
    assert len(data["municipalities"]) == len(rows) == 285 and set(rows) == flemish
    assert "21004" not in rows  # Brussels: in the registry by mistake, never on the board (P1)
    s = data["summary"]
    assert s["municipalities"] == 285 and sum(s["by_status"].values()) == 285
    assert sum(s["by_protocol"].values()) == 285
    assert s["delivered"] == len(RECEIVING)
    assert s["picked_up"] == s["by_status"]["picked_up"] == 1
    assert s["on_server"] == len(RECEIVING) - 1 == s["by_status"]["waiting"]
    assert s["overdue"] == s["reminded"] == s["purged"] == 0  # everything is days old at most
    assert s["refused"] == len(REFUSED) - 1  # the Brussels refusal is not a Flemish municipality's
    assert s["by_status"]["none"] == 285 - len(RECEIVING) - s["refused"]
    assert (s["corrections_open"], s["corrections_late"]) == (2, 1)
    # The chart counts the same files.
    assert sum(w["delivered"] for w in data["weekly"]) == len(RECEIVING)
    assert sum(w["picked_up"] for w in data["weekly"]) == 1
    assert data["weekly"][-1]["monday"] <= data["today"]


def test_deliveries_are_the_ledgers(data: dict, ui_world: UiWorld) -> None:
    ledger = {
        d["nis_code"]: d
        for d in ui_world.ledger(
            "SELECT d.*, r.dag_id FROM kbi_delivery d JOIN kbi_run r USING (run_id) "
            "WHERE d.published_at IS NOT NULL"
        )
    }
    assert set(ledger) == set(RECEIVING)
    rows = _rows(data)
    assert {n for n, r in rows.items() if r["delivered"]} == set(RECEIVING)
    for nis, d in ledger.items():
        shown = rows[nis]["last_delivery"]
        assert (shown["file_name"], shown["sha256"], shown["rows"], shown["mode"]) == (
            d["file_name"],
            d["sha256"],
            d["row_count"],
            d["mode"],
        )
        assert shown["file_name"] == f"inburgeraars_{nis}_{ui_world.today.isoformat()}.csv.gpg"
        assert shown["published_at"] == d["published_at"] and shown["state"] == d["state"]
        assert shown["run_url"] == _run_url("kbi_distribution", ui_world.annual_run)
    assert rows[PICKED_UP]["status"] == "picked_up" and ledger[PICKED_UP]["state"] == "picked_up"
    assert rows[PICKED_UP]["pickup"]["at"] == ledger[PICKED_UP]["picked_up_at"]
    waiting = [n for n in RECEIVING if n != PICKED_UP]
    assert {rows[n]["status"] for n in waiting} == {"waiting"}
    assert all(rows[n]["pickup"]["days"] == 0 and rows[n]["pickup"]["on_server"] for n in waiting)
    # Every one of them is really on the transfer server, the picked-up one is not (the board
    # never looks there; the test does, to know the ledger told the truth).
    assert {n for n in RECEIVING if any(ui_world.places.inbox(n).glob("*.gpg"))} == set(waiting)


def test_refusals_with_their_rule_and_reason(data: dict, ui_world: UiWorld) -> None:
    rows = _rows(data)
    ledger = {
        d["nis_code"]: d for d in ui_world.ledger("SELECT * FROM kbi_decision WHERE decision = 'refused'")
    }
    assert {n: d["rule"] for n, d in ledger.items()} == REFUSED
    refused = {n for n, r in rows.items() if r["status"] == "refused"}
    assert refused == set(REFUSED) - {"21004"}
    for nis in refused:
        assert rows[nis]["refusal"]["rule"] == ledger[nis]["rule"]
        assert rows[nis]["refusal"]["reason"] == ledger[nis]["reason"]
        assert rows[nis]["last_delivery"] is None
    assert "expired" in rows["24001"]["refusal"]["reason"]
    # Municipalities without a protocol were skipped, not refused.
    assert rows["11004"]["status"] == "none" and rows["11004"]["decision"]["decision"] == "skipped"


def test_protocol_state_comes_from_the_registry(data: dict) -> None:
    protocol = {n: r["protocol"] for n, r in _rows(data).items()}
    assert protocol["13014"]["state"] == "not_yet"  # in force from next year
    assert protocol["13036"]["state"] == "ended"  # notice given 400 days ago
    assert protocol["31005"]["state"] == "in_force" and protocol["31005"]["ends_on"]  # notice running
    assert protocol["24001"]["state"] == "in_force"  # in force; its key is what is refused
    in_force = {n for n, p in protocol.items() if p["state"] == "in_force"}
    assert in_force == set(RECEIVING) | {"24001"}
    assert sum(p["state"] == "none" for p in protocol.values()) == 285 - 11
    assert data["summary"]["by_protocol"] == {
        "in_force": 9,
        "not_yet": 1,
        "ended": 1,
        "none": 274,
        "unknown": 0,
    }


def test_corrections_with_days_left_of_the_14(data: dict, ui_world: UiWorld) -> None:
    rows = _rows(data)
    for nis, reference, days_ago in (OPEN_CORRECTION, LATE_CORRECTION):
        (c,) = rows[nis]["corrections"]
        (stored,) = ui_world.ledger("SELECT * FROM kbi_correction WHERE reference = ?", reference)
        assert (c["reference"], c["due_on"], c["state"]) == (reference, stored["due_on"], stored["state"])
        assert c["open"] and c["days_left"] == 14 - days_ago
        assert c["late"] == (days_ago > 14)
        assert c["run_url"] == _run_url("kbi_correction_request", ui_world.correction_runs[nis])
        assert "reporter" not in c and "decided_by" not in c  # people's names stay out
    assert rows[OPEN_CORRECTION[0]]["corrections_open"] == 1


def test_filters_and_sort(api: httpx.Client, ui_world: UiWorld) -> None:
    def get(**params: object) -> dict:
        r = api.get("/kbi/api/board", params={"year": ui_world.today.year, **params})
        assert r.status_code == 200, r.text
        return r.json()

    refused = get(state="refused")
    assert {r["nis_code"] for r in refused["municipalities"]} == set(REFUSED) - {"21004"}
    assert refused["shown"] == 3 and refused["summary"]["municipalities"] == 285  # summary stays whole
    assert [r["nis_code"] for r in get(q="44021")["municipalities"]] == ["44021"]
    assert "44021" in {r["nis_code"] for r in get(q="GENT")["municipalities"]}
    assert {r["nis_code"] for r in get(state="corrections")["municipalities"]} == {"44021", "12025"}
    assert {r["nis_code"] for r in get(protocol="not_yet")["municipalities"]} == {"13014"}
    by_rows = [r for r in get(state="delivered", sort="rows", order="desc")["municipalities"]]
    counts = [r["last_delivery"]["rows"] for r in by_rows]
    assert len(counts) == len(RECEIVING) and counts == sorted(counts, reverse=True)
    names = [r["name"] for r in get(sort="name")["municipalities"]]
    assert names == sorted(names, key=str.casefold)
    for bad in ({"state": "lost"}, {"sort": "sha256"}, {"year": "1999"}, {"protocol": "x"}):
        assert api.get("/kbi/api/board", params=bad).status_code in (400, 422)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_no_endpoint_shows_a_person(
    api: httpx.Client, ui_world: UiWorld, people: pii.People, path: str
) -> None:  # P12: the board shows deliveries, never the people in them
    r = api.get(path, params={"year": ui_world.today.year})
    assert r.status_code == 200, (path, r.status_code)
    assert pii.leaks(people, **{path: r.text}) == {}
    assert not [shape.pattern for shape in NATIONAL_NUMBER_SHAPES if shape.search(r.text)]


def test_csv_export_one_row_per_municipality_and_nothing_personal(
    api: httpx.Client, data: dict, flemish: set[str], people: pii.People
) -> None:
    r = api.get("/kbi/board.csv", params={"year": data["year"]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert f'filename="kbi-status-{data["year"]}.csv"' in r.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert tuple(table[0]) == board.CSV_COLUMNS
    assert len(table) == 285 and {row["nis_code"] for row in table} == flemish
    assert pii.leaks(people, csv=r.text) == {}  # P12
    assert not [shape.pattern for shape in NATIONAL_NUMBER_SHAPES if shape.search(r.text)]
    rows = _rows(data)
    for row in table:
        shown = rows[row["nis_code"]]
        assert row["status"] == shown["status"] and row["protocol"] == shown["protocol"]["state"]
        assert row["file_name"] == ((shown["last_delivery"] or {}).get("file_name") or "")
    assert sum(row["status"] == "refused" for row in table) == 3


def test_timeline_lists_the_ledgers_events_with_run_links(api: httpx.Client, ui_world: UiWorld) -> None:
    r = api.get(f"/kbi/api/board/{PICKED_UP}", params={"year": ui_world.today.year})
    assert r.status_code == 200, r.text
    detail = r.json()
    events = detail["events"]
    stored = ui_world.ledger(
        "SELECT seq, event_type FROM kbi_event WHERE nis_code = ? ORDER BY seq", PICKED_UP
    )
    assert [(e["seq"], e["event_type"]) for e in events] == [(s["seq"], s["event_type"]) for s in stored]
    types = [e["event_type"] for e in events]
    for expected in ("decision_deliver", "delivery_planned", "delivery_published", "delivery_announced"):
        assert expected in types
    assert types[-1] == "pickup_noticed" and types.index("decision_deliver") < types.index("pickup_noticed")
    annual = _run_url("kbi_distribution", ui_world.annual_run)
    assert {e["run_url"] for e in events} == {annual}  # the monitor acts on the delivering run's row
    assert events[-1]["label"] == {"nl": "Opgehaald", "en": "Picked up"}
    (d,) = detail["deliveries"]
    assert d["state"] == "picked_up" and d["run_url"] == annual
    # The link leads to a run Airflow knows.
    run = api.get(f"/api/v2/dags/kbi_distribution/dagRuns/{quote(ui_world.annual_run, safe='')}")
    assert run.status_code == 200 and run.json()["state"] == "success"
    page = api.get(f"/kbi/board/{PICKED_UP}", params={"year": ui_world.today.year})
    assert page.status_code == 200 and d["file_name"] in page.text and f'href="{annual}"' in page.text
    gent = api.get(f"/kbi/api/board/{OPEN_CORRECTION[0]}").json()
    correction_run = _run_url("kbi_correction_request", ui_world.correction_runs[OPEN_CORRECTION[0]])
    assert "correction_registered" in [e["event_type"] for e in gent["events"]]
    assert correction_run in {e["run_url"] for e in gent["events"]}
    assert api.get("/kbi/api/board/21004").status_code == 404  # Brussels: not on the board


def test_the_page_is_served_with_a_token(api: httpx.Client, ui_world: UiWorld) -> None:
    r = api.get("/kbi/board")
    assert r.status_code == 200 and r.text.count("data-nis=") == 285
    assert "Geleverd / Delivered" in r.text and "<script src" not in r.text and "http" not in r.text.lower()
