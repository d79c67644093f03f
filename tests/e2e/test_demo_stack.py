"""`make demo`'s path for real: scheduler, dag-processor and api-server (LocalExecutor), the run
triggered through the REST API, the embedded servers as processes. The worker's task log files
are searched for the synthetic people (P12): under a real executor, unlike dag.test(), Airflow
writes them to disk where the UI shows them."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest

from demo import __main__ as demo_cli
from demo.stack import running
from tests import pii
from tests.e2e.conftest import RECEIVING, brussels_today, e2e_recipients, passphrases, read_view, stack_world

pytestmark = pytest.mark.slow


def test_demo_stack_runs_the_distribution_through_the_scheduler(tmp_path, key_cache, capsys) -> None:
    places = stack_world(tmp_path / "demo", key_cache, seed=5)
    recipients = e2e_recipients(brussels_today())

    with running(places) as stack:
        run_id, state = demo_cli.trigger_and_follow(stack, {})
        # The quality report is served inside Airflow, behind its login (kbi_ui plugin).
        url = f"{stack.base_url}/kbi/reports/{quote(run_id, safe='')}/quality.html"
        assert httpx.get(url, timeout=10).status_code == 401
        served = httpx.get(url, headers={"Authorization": f"Bearer {stack.token()}"}, timeout=10)
        assert served.status_code == 200 and "Quality report" in served.text
        bogus = f"{stack.base_url}/kbi/reports/{quote(run_id, safe='')}/..%2F..%2Fsecrets.json"
        assert (
            httpx.get(bogus, headers={"Authorization": f"Bearer {stack.token()}"}, timeout=10).status_code
            == 404
        )
    assert state == "success"
    progress = capsys.readouterr().out
    assert "✓ plan" in progress and "deliver" in progress  # the data engineer sees it move

    delivered = {p.parent.parent.name for p in places.sftp_root.rglob("*.csv.gpg")}
    assert delivered == set(RECEIVING)
    summary = json.loads(next(places.reports.rglob("summary.json")).read_text())
    assert summary["municipalities"]["delivered"] == len(RECEIVING)

    logs = sorted((places.airflow_home / "logs").rglob("*.log"))
    assert len(logs) >= len(RECEIVING) + 6  # one per task instance, mapped ones included
    people = pii.People.of(read_view(places.kbi_db))
    found = pii.leaks(
        people,
        worker_logs=pii.files_text(logs),
        component_logs=pii.files_text(places.run.glob("*.log")),
        airflow_metadata=pii.sqlite_text(places.airflow_home / "airflow.db"),
        ledger=pii.sqlite_text(places.ledger_db),
    )
    assert found == {}, f"personal data found in: {found}"
    # The passphrases of this run went out by SMS only: masked wherever else they could surface.
    sent = passphrases(
        [json.loads(p.read_text())["payload"] for p in sorted(places.sms_outbox.glob("*.json"))]
    )
    modes = {r.nis_code: r.mode for r in recipients}
    assert len(sent) == sum(1 for nis in RECEIVING if modes[nis] == "passphrase")
    everything = (
        pii.files_text(logs)
        + pii.sqlite_text(places.airflow_home / "airflow.db")
        + pii.sqlite_text(places.ledger_db)
    )
    assert not [p for p in sent.values() if p in everything]
