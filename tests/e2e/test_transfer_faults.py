"""Transfer faults through the whole DAG (P12, P13): a full disk or a refused inbox fails that
municipality's task with its name and the cause while the others are delivered; a connection
cut mid-upload leaves no file under the final name and the retry delivers exactly once."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from kbi import airflow_glue
from tests.e2e.conftest import World, load_dag

pytestmark = pytest.mark.slow

GENT, AARTSELAAR, HASSELT, ANTWERPEN = "44021", "11001", "71072", "11002"


def _dag(retries: int, retry_delay_s: float = 0.5):
    dag = load_dag()
    for task in dag.tasks:  # dag.test() waits out the real retry delay
        task.retries = retries
        task.retry_delay = timedelta(seconds=retry_delay_s)
        task.retry_exponential_backoff = False
    return dag


def _deliver_states(dag_run) -> dict[str, str]:
    return {
        ti.rendered_map_index.split()[0]: ti.state
        for ti in dag_run.get_task_instances()
        if ti.task_id == "deliver"
    }


def test_disk_full_and_permission_denied_fail_only_their_municipality(world: World, capfd) -> None:
    world.sftp.set_disk_full(f"/{GENT}", 200)  # smaller than Gent's file
    world.sftp.set_read_only(f"/{AARTSELAAR}")
    dag_run = _dag(retries=0).test(run_conf={"municipalities": [GENT, AARTSELAAR, HASSELT]})
    output = capfd.readouterr().out
    assert dag_run.state == "failed"
    assert _deliver_states(dag_run) == {AARTSELAAR: "failed", GENT: "failed", HASSELT: "success"}
    assert "44021 Gent: upload of" in output and "disk may be full" in output
    assert "11001 Aartselaar" in output and "permission denied" in output
    assert {p.parent.parent.name for p in world.all_server_files()} == {HASSELT}  # nothing else, no .part
    summary = json.loads(next(world.places.reports.rglob("summary.json")).read_text())
    assert summary["failed"] == [AARTSELAAR, GENT] and summary["municipalities"]["delivered"] == 1
    ledger = airflow_glue.ledger()
    states = {d.nis_code: (d.state, d.last_error) for d in ledger.deliveries_of_run(dag_run.run_id)}
    assert states[HASSELT][0] == "announced"
    assert states[GENT][0] == "failed" and "disk may be full" in states[GENT][1]  # the ledger says why
    assert states[AARTSELAAR][0] == "failed" and "permission denied" in states[AARTSELAAR][1]

    # Space freed, rights fixed: a new run delivers the two that failed, Hasselt is not sent twice.
    world.sftp.set_disk_full(None, None)
    world.sftp.set_read_only(None)
    again = _dag(retries=0).test(run_conf={"municipalities": [GENT, AARTSELAAR, HASSELT]})
    assert again.state == "success"
    assert {p.parent.parent.name for p in world.all_server_files()} == {GENT, AARTSELAAR, HASSELT}
    decisions = {d["nis_code"]: d for d in ledger.decisions(again.run_id)}
    assert decisions[HASSELT]["rule"] == "P3"


def test_an_inbox_that_keeps_refusing_ends_after_the_bounded_retries(world: World) -> None:
    """Catalogue 34: each attempt is recorded with its cause, and the third is the last."""
    world.sftp.set_read_only(f"/{AARTSELAAR}")
    dag_run = _dag(retries=2).test(run_conf={"municipalities": [AARTSELAAR]})
    assert dag_run.state == "failed"
    (ti,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "deliver"]
    assert (ti.state, ti.try_number) == ("failed", 3)
    events = [e for e in airflow_glue.ledger().events() if e["nis_code"] == AARTSELAAR]
    failures = [
        json.loads(e["detail"])["reason"] for e in events if e["event_type"] == "delivery_attempt_failed"
    ]
    assert len(failures) == 3 and all(
        "permission denied" in f and f"/{AARTSELAAR}/inbox" in f for f in failures
    )
    assert world.all_server_files() == [] and world.sms.messages() == [] and len(world.mail.messages()) == 0


def test_a_cut_connection_is_retried_and_delivers_exactly_once(world: World) -> None:
    world.sftp.set_fail_writes_after(4096, times=1)  # the first upload bigger than 4 KiB is cut
    dag_run = _dag(retries=2).test(run_conf={"municipalities": [ANTWERPEN]})
    assert dag_run.state == "success"
    (ti,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "deliver"]
    assert ti.try_number == 2  # the first attempt was cut, the retry delivered
    files = world.all_server_files()
    assert [p.name for p in files] == [f"inburgeraars_{ANTWERPEN}_{world.today}.csv.gpg"]
    deliveries = airflow_glue.ledger().deliveries_of_run(dag_run.run_id)
    assert len(deliveries) == 1 and deliveries[0].state == "announced"
    events = [e["event_type"] for e in airflow_glue.ledger().events() if e["nis_code"] == ANTWERPEN]
    assert events.count("delivery_published") == 1 and events.count("delivery_attempt_failed") == 1
    assert len(world.mail.messages()) == 1 and len(world.sms.messages()) == 1
