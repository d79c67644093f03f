"""The status board in a real browser: Debian's chromium, driven by Playwright, logs into the
running Airflow, opens "KBI status" inside Airflow's own shell, checks the table against the
ledger on a laptop-sized screen, follows a municipality to its timeline and a run link back
into Airflow, and saves screenshots under var/ui/ (the README shows status-board.png)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from demo.environment import secrets_of
from tests.e2e.conftest import RECEIVING
from tests.ui.conftest import PICKED_UP, UiWorld

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# Offline machines: no first-run, component, sync or QUIC traffic; no sandbox as root in CI.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "ui"
LAPTOP = {"width": 1366, "height": 768}
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        why = "no /usr/bin/chromium: apt-get install chromium (Debian's package; no `playwright install`)"
        if os.environ.get("CI"):
            pytest.fail(why)  # .ci/run installs it: CI must not pass by skipping the browser
        pytest.skip(why)
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, ui_world: UiWorld):
    """A logged-in page, as the agency's operator: through Airflow's own login form."""
    context = browser.new_context(viewport=LAPTOP, locale="nl-BE")
    outside: list[str] = []
    # Anything not served by this api-server would be a request an offline machine cannot make.
    context.on("request", lambda r: None if r.url.startswith(ui_world.base_url) else outside.append(r.url))
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{ui_world.base_url}/plugin/kbi-status")
    page.get_by_label(re.compile("username", re.I)).fill("admin")
    page.get_by_label(re.compile("password", re.I)).fill(secrets_of(ui_world.places)["admin_password"])
    page.get_by_role("button", name=re.compile("sign in|log in|login", re.I)).click()
    page.wait_for_url(re.compile(r"/plugin/kbi-status"))
    assert any(c["name"] == "_token" for c in context.cookies())
    yield page
    context.close()
    assert [u for u in outside if not u.startswith(("data:", "blob:", "about:"))] == []


def test_status_board_inside_airflow(page, ui_world: UiWorld) -> None:
    frame = page.frame_locator("iframe[title='KBI status']")
    rows = frame.locator("#board tbody tr[data-nis]")
    rows.first.wait_for()
    assert rows.count() == 285

    # The table says what the ledger says.
    delivered = ui_world.ledger(
        "SELECT nis_code, file_name, row_count FROM kbi_delivery WHERE published_at IS NOT NULL"
    )
    assert {d["nis_code"] for d in delivered} == set(RECEIVING)
    assert frame.locator("#board [data-field=file_name]").count() == len(delivered)
    gent = next(d for d in delivered if d["nis_code"] == "44021")
    row = frame.locator("#board tr[data-nis='44021']")
    assert row.locator("[data-field=file_name]").inner_text() == gent["file_name"]
    assert row.locator("[data-field=rows]").inner_text() == str(gent["row_count"])
    assert "nog 11 d" in row.inner_text()  # the open correction's days left of the 14
    assert frame.locator("[data-count=delivered] b").inner_text() == f"{len(delivered)}/285"
    assert frame.locator("#board tr[data-status=refused]").count() == 3
    assert "Opgehaald / Picked up" in frame.locator(f"#board tr[data-nis='{PICKED_UP}']").inner_text()
    assert frame.locator("svg.chart rect").count() >= 2  # deliveries and a pickup this week

    # Sorted by state, the municipalities that have news come first: that is the screenshot.
    frame.locator("#board thead a", has_text="Toestand").click()
    page.wait_for_url(re.compile(r"/plugin/kbi-status/kbi/board\?.*sort=status"))  # the shell follows
    rows.first.wait_for()
    statuses = [rows.nth(i).get_attribute("data-status") for i in range(11)]
    assert statuses == ["picked_up"] + ["waiting"] * (len(RECEIVING) - 1) + ["refused"] * 3
    assert rows.first.get_attribute("data-nis") == PICKED_UP

    # A 1366×768 laptop: no horizontal scrolling, neither in Airflow's shell nor in the page.
    inner = next(f for f in page.frames if f != page.main_frame and "/kbi/board" in f.url)
    for where in (page, inner):
        width, visible = where.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert width <= visible, f"horizontal scrolling in {where.url}: {width} > {visible}"
    assert inner.evaluate("document.documentElement.clientWidth") < LAPTOP["width"]  # inside the shell

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "status-board.png"))

    # Filtering by state (the page reloads inside the shell, the shell's URL follows).
    frame.locator("select[name=state]").select_option("refused")
    page.wait_for_url(re.compile(r"state=refused"))
    rows.first.wait_for()
    assert rows.count() == 3 and frame.locator("#shown").inner_text().startswith("3 van / of 285")

    # A row opens the municipality's timeline; its run link opens the run in Airflow itself.
    frame.locator("select[name=state]").select_option("picked_up")
    page.wait_for_url(re.compile(r"state=picked_up"))
    frame.locator(f"#board tr[data-nis='{PICKED_UP}'] td").first.click()
    page.wait_for_url(re.compile(rf"/plugin/kbi-status/kbi/board/{PICKED_UP}"))  # a deep link
    timeline = frame.locator("#timeline tbody tr")
    timeline.first.wait_for()
    events = ui_world.ledger("SELECT event_type FROM kbi_event WHERE nis_code = ? ORDER BY seq", PICKED_UP)
    assert timeline.count() == len(events)
    assert frame.locator("#timeline tr[data-event=pickup_noticed]").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "status-board-municipality.png"))
    frame.locator("#timeline tr[data-event=pickup_noticed] a[data-airflow]").click()
    run_path = f"/dags/kbi_distribution/runs/{quote(ui_world.annual_run, safe='')}"
    page.wait_for_url(lambda url: run_path in url or ui_world.annual_run in url)
    assert "/plugin/" not in page.url
