"""The protocol guards through the whole DAG (P3, P4) and the audit export (P13, P14).

PYTEST_DONT_REWRITE: synthetic people are searched for here; failures show messages only.
"""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import date, timedelta

import pytest

from kbi import airflow_glue, audit, cli, registry
from tests import pii
from tests.e2e.conftest import RECEIVING, REFUSED, World, load_dag

pytestmark = pytest.mark.slow

GENT, AARTSELAAR = "44021", "11001"


def _run(conf: dict | None = None):
    return load_dag().test(run_conf=conf or {})


def test_after_the_magda_sunset_nothing_is_sent(world: World) -> None:
    # P4: the list service went live two years ago today: from today no files at all.
    world.set_env(KBI_MAGDA_GO_LIVE=registry.add_months(world.today, -24).isoformat())
    dag_run = _run()
    assert dag_run.state == "success"
    assert world.all_server_files() == [] and world.sms.messages() == [] and world.mail.messages() == []
    decisions = airflow_glue.ledger().decisions(dag_run.run_id)
    sunset = [d for d in decisions if d["rule"] == "P4"]
    assert {d["nis_code"] for d in sunset} == set(world.registry.recipients)  # all in the registry
    assert all("MAGDA" in d["reason"] for d in sunset)


def test_months_before_the_sunset_the_run_warns(world: World) -> None:
    world.set_env(KBI_MAGDA_GO_LIVE=(registry.add_months(world.today, -24) + timedelta(days=60)).isoformat())
    dag_run = _run({"municipalities": [GENT]})
    assert dag_run.state == "success"
    assert [p.parent.parent.name for p in world.all_server_files()] == [GENT]
    summary = json.loads(next(world.places.reports.rglob("summary.json")).read_text())
    assert len(summary["warnings"]) == 1 and summary["warnings"][0].startswith("P4:")


def test_a_rolling_period_refuses_a_list_within_365_days(world: World) -> None:
    first = _run({"municipalities": [GENT]})
    assert first.state == "success"
    # That list went out 200 days ago, last calendar year (and was picked up since).
    earlier = (world.today - timedelta(days=200)).isoformat()
    with airflow_glue.ledger().engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE kbi_delivery SET planned_at = ?, published_at = ?, period = ?, state = 'picked_up'",
            (earlier + "T08:00:00Z", earlier + "T08:05:00Z", str(world.today.year - 1)),
        )
    for path in world.all_server_files():
        path.unlink()

    world.set_env(KBI_P3_PERIOD="rolling")
    rolling = _run({"municipalities": [GENT]})
    decision = {d["nis_code"]: d for d in airflow_glue.ledger().decisions(rolling.run_id)}[GENT]
    assert decision["decision"] == "refused" and decision["rule"] == "P3"
    assert world.all_server_files() == []

    world.set_env(KBI_P3_PERIOD="calendar")  # another calendar year: the default allows it
    calendar = _run({"municipalities": [GENT]})
    assert calendar.state == "success"
    assert [p.parent.parent.name for p in world.all_server_files()] == [GENT]


def test_the_audit_export_accounts_for_everything_and_holds_nobody(world: World, capsys) -> None:
    dag_run = _run()
    assert dag_run.state == "success"
    out = world.places.var_dir / "audit"
    assert cli.main(["audit", "export", "--out", str(out)]) == 0
    result = {p.name: p.read_text() for p in out.iterdir()}
    assert set(result) == {"deliveries.csv", "refusals.csv", "corrections.csv", "runs.csv", "audit.md"}

    deliveries = list(csv.DictReader(result["deliveries.csv"].splitlines()))
    assert sorted(d["nis_code"] for d in deliveries) == sorted(RECEIVING)
    for d in deliveries:  # P13: which file, with which checksum, to which inbox, for which key
        on_server = world.places.sftp_root / d["inbox"].lstrip("/") / d["file_name"]
        assert hashlib.sha256(on_server.read_bytes()).hexdigest() == d["sha256"]
        assert d["published_at"] and d["mail_sent_at"] and d["sms_sent_at"]
        assert (d["mode"] == "pubkey") == bool(d["key_fingerprint"])
    refusals = {r["nis_code"]: r["rule"] for r in csv.DictReader(result["refusals.csv"].splitlines())}
    assert refusals == REFUSED
    assert "Ledger chain verification: intact" in result["audit.md"]

    people = pii.People.of(world.source_rows)
    found = pii.leaks(
        people,
        ledger_dump=pii.sqlite_text(world.places.ledger_db),
        audit_export="\n".join(result.values()),
    )
    assert found == {}, f"personal data found in: {found}"

    # An edited event: the export says so, and the command fails.
    with airflow_glue.ledger().engine.begin() as conn:
        conn.exec_driver_sql("UPDATE kbi_event SET detail = '{}' WHERE seq = 5")
    assert cli.main(["audit", "export", "--out", str(out)]) == 1
    assert "BROKEN at event 5" in (out / "audit.md").read_text()


def test_the_export_of_one_municipality(world: World) -> None:
    assert _run().state == "success"
    result = audit.export(airflow_glue.ledger(), world.places.var_dir / "one", date.today().year, GENT)
    deliveries = list(csv.DictReader((result.directory / "deliveries.csv").read_text().splitlines()))
    assert [d["nis_code"] for d in deliveries] == [GENT]
