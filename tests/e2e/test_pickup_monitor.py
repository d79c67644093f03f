"""kbi_pickup_monitor end to end with a controlled clock (P8, P12): a picked-up file is noticed,
a waiting one is reminded once, and after the limit it is purged from the server and the
municipality told; all in the ledger, messages caught by the local servers, no file ever read."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from kbi import airflow_glue
from tests import pii
from tests.e2e.conftest import ROOT, World, load_dag

pytestmark = pytest.mark.slow

GENT, AARTSELAAR, HASSELT = "44021", "11001", "71072"


def _monitor(retries: int | None = None):
    spec = importlib.util.spec_from_file_location(
        "dag_kbi_pickup_monitor", ROOT / "dags" / "kbi_pickup_monitor.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.kbi_pickup_monitor()
    if retries is not None:  # dag.test() would wait out the real retry delay
        for task in dag.tasks:
            task.retries = retries
    return dag


def _states() -> dict[str, str]:
    return {d.nis_code: d.state for d in airflow_glue.ledger().deliveries_published_since("2000-01-01")}


def _clear_outboxes(world: World) -> None:
    for outbox in (world.places.mail_outbox, world.places.sms_outbox):
        for message in outbox.iterdir():
            message.unlink()


def test_pickup_reminder_and_purge_over_a_month(world: World, capfd: pytest.CaptureFixture) -> None:
    delivered = load_dag().test(run_conf={"municipalities": [GENT, AARTSELAAR, HASSELT]})
    assert delivered.state == "success"
    assert _states() == {GENT: "announced", AARTSELAAR: "announced", HASSELT: "announced"}
    _clear_outboxes(world)
    world.sftp.clear_audit()

    # The same day Aartselaar takes its file and deletes it from the server, as the receipt asks.
    (aartselaar_file,) = world.inbox_files(AARTSELAAR)
    aartselaar_file.unlink()
    assert _monitor().test().state == "success"
    assert _states() == {GENT: "announced", AARTSELAAR: "picked_up", HASSELT: "announced"}
    assert world.mail.messages() == [] and world.sms.messages() == []

    now = datetime.now(UTC)
    with time_machine.travel(now + timedelta(days=8), tick=True):
        assert _monitor().test().state == "success"
        assert _monitor().test().state == "success"  # a second sweep the same day repeats nothing
    assert _states() == {GENT: "reminded", AARTSELAAR: "picked_up", HASSELT: "reminded"}
    reminders = world.mail.messages()
    assert sorted(m["To"] for m in reminders) == sorted(
        world.registry.recipients[n].contacts.email[0] for n in (GENT, HASSELT)
    )
    assert all("Herinnering" in str(m["Subject"]) for m in reminders)
    assert len(world.sms.messages()) == 2
    assert len(world.inbox_files(GENT)) == len(world.inbox_files(HASSELT)) == 1  # not touched yet

    _clear_outboxes(world)
    with time_machine.travel(now + timedelta(days=31), tick=True):
        assert _monitor().test().state == "success"
    assert _states() == {GENT: "purged", AARTSELAAR: "picked_up", HASSELT: "purged"}
    assert world.all_server_files() == []  # nothing lingers on the transfer server (P8)
    notices = world.mail.messages()
    assert len(notices) == 2 and all("verwijderd" in str(m["Subject"]) for m in notices)
    for m in notices:
        text = m.get_body(("plain",)).get_content()
        assert "onmiddellijk" in text  # the disclaimer (P7)
    assert len(world.sms.messages()) == 2

    ledger = airflow_glue.ledger()
    assert ledger.verify() is None
    events = [e["event_type"] for e in ledger.events()]
    assert events.count("pickup_noticed") == 1
    assert events.count("reminder_sent") == 2
    assert events.count("file_purged") == 2 and events.count("purge_notified") == 2
    assert world.sftp.opened_for_reading() == []  # the monitor never reads a file

    output = capfd.readouterr().out
    assert "Deliveries of" in output and "picked_up" in output and "purged" in output
    assert pii.leaks(pii.People.of(world.source_rows), monitor_logs=output) == {}


def test_an_inbox_that_cannot_be_read_fails_the_sweep_but_not_the_others(world: World) -> None:
    assert load_dag().test(run_conf={"municipalities": [GENT, AARTSELAAR]}).state == "success"
    (aartselaar_file,) = world.inbox_files(AARTSELAAR)
    aartselaar_file.unlink()
    world.registry.path.write_text("not: a registry")  # the messages cannot be addressed
    now = datetime.now(UTC)
    with time_machine.travel(now + timedelta(days=8), tick=True):
        run = _monitor(retries=0).test()
    assert run.state == "failed"
    # The pickup was recorded although Gent's reminder could not be sent; Gent is retried later.
    assert _states() == {GENT: "announced", AARTSELAAR: "picked_up"}
