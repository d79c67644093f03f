"""kbi_pickup_monitor end to end with a controlled clock (P8, P12): a picked-up file is noticed,
a waiting one is reminded once, and after the limit it is purged from the server and the
municipality told; all in the ledger, messages caught by the local servers, no file ever read."""

from __future__ import annotations

import importlib.util
import json
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


def _pickup_mails(world: World) -> list:
    """Mails about files (the daily key check writes about Aarschot's expired key besides)."""
    return [
        m
        for m in world.mail.messages()
        if "sleutel" not in str(m["Subject"]) and "[KBI]" not in str(m["Subject"])
    ]


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
    assert _pickup_mails(world) == [] and world.sms.messages() == []

    now = datetime.now(UTC)
    with time_machine.travel(now + timedelta(days=8), tick=True):
        assert _monitor().test().state == "success"
        assert _monitor().test().state == "success"  # a second sweep the same day repeats nothing
    assert _states() == {GENT: "reminded", AARTSELAAR: "picked_up", HASSELT: "reminded"}
    reminders = _pickup_mails(world)
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
    notices = _pickup_mails(world)
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
    # Purges are logged by the file's hash (catalogue 44) ...
    published = {d.nis_code: d.sha256 for d in ledger.deliveries_published_since("2000-01-01")}
    purges = [e for e in ledger.events() if e["event_type"] == "file_purged"]
    assert {e["nis_code"]: json.loads(e["detail"])["sha256"] for e in purges} == {
        GENT: published[GENT],
        HASSELT: published[HASSELT],
    }
    # ... and escalated to the data engineers, once, by NIS code.
    (escalation,) = [m for m in world.mail.messages() if "never picked up" in str(m["Subject"])]
    assert escalation["To"] == "data-engineering@example.invalid"
    assert f"{GENT}, {HASSELT}" in escalation.get_body(("plain",)).get_content()
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


def test_expiring_and_unusable_keys_are_announced_once_a_week(world: World, tmp_path) -> None:
    from demo import keys as demo_keys
    from kbi import keys as kbi_keys

    # Hasselt's key expires in 30 days: onboard it (as the data engineer would), then sweep.
    pair = demo_keys.make_key(tmp_path, "hasselt", "Gemeente Hasselt", "privacy@hasselt.example", "expiring")
    kbi_keys.onboard(
        world.places.registry,
        HASSELT,
        pair.public_path,
        world.today,
        confirm=pair.fingerprint,
        replace=world.registry.recipients[HASSELT].encryption.fingerprint,
    )
    assert _monitor().test().state == "success"
    mails = world.mail.messages()
    to_municipalities = sorted(str(m["To"]) for m in mails if "sleutel" in str(m["Subject"]))
    assert to_municipalities == sorted(
        world.registry.recipients[n].contacts.email[0]
        for n in ("24001", HASSELT)  # Aarschot: expired
    )
    hasselt = next(m for m in mails if str(m["To"]).startswith("privacy@hasselt"))
    assert (
        "vervalt op" in str(hasselt["Subject"])
        and "onmiddellijk" in hasselt.get_body(("plain",)).get_content()
    )
    alert = [m for m in mails if "[KBI]" in str(m["Subject"])]
    assert len(alert) == 1 and "71072 Hasselt" in alert[0].get_body(("plain",)).get_content()

    _clear_outboxes(world)
    assert _monitor().test().state == "success"
    assert world.mail.messages() == []  # not again within the week
    with time_machine.travel(datetime.now(UTC) + timedelta(days=8), tick=True):
        assert _monitor().test().state == "success"
    assert len([m for m in world.mail.messages() if "sleutel" in str(m["Subject"])]) == 2


def test_a_transfer_server_showing_another_host_key_is_not_swept(world: World) -> None:
    """Catalogue 28: the sweep stops before logging in, without retry, and says so once to the
    data engineers; a file past the purge limit stays where it is."""
    delivered = load_dag().test(run_conf={"municipalities": [GENT]})
    assert delivered.state == "success"
    (waiting,) = world.inbox_files(GENT)
    _clear_outboxes(world)
    world.pin_another_host_key()
    with time_machine.travel(datetime.now(UTC) + timedelta(days=40), tick=True):
        swept = _monitor().test()
    assert swept.state == "failed"
    (sweep,) = [ti for ti in swept.get_task_instances() if ti.task_id == "sweep_pickups"]
    assert sweep.state == "failed" and sweep.try_number == 1  # not retried
    assert world.inbox_files(GENT) == [waiting] and _states() == {GENT: "announced"}
    assert _pickup_mails(world) == [] and world.sms.messages() == []
    (alert,) = world.security_alerts()
    body = alert.get_body(("plain",)).get_content()
    assert "kbi_pickup_monitor" in body and "no file was purged" in body
