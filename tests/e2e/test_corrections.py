"""kbi_correction_request end to end (P9): the quality officer's decision through Airflow's
human-in-the-loop REST API, the corrected list delivered and compared, the municipality told,
the 14-day clock watched; bad requests refused with nothing registered."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from collections import Counter
from datetime import timedelta

import pytest

from demo import keys as demo_keys
from kbi import airflow_glue, corrections
from tests.e2e import oracle
from tests.e2e.conftest import ROOT, World, load_dag, passphrases
from tests.e2e.hitl import Officer
from tests.helpers import make_nn

pytestmark = pytest.mark.slow

GENT = "44021"
DAG_ID = "kbi_correction_request"


def _correction_dag():
    spec = importlib.util.spec_from_file_location(
        "dag_kbi_correction_request", ROOT / "dags" / "kbi_correction_request.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.kbi_correction_request()
    for task in dag.tasks:
        task.retries = 0
    return dag


def _request(world: World, **over: object) -> dict:
    return {
        "nis_code": GENT,
        "reported_on": world.today.isoformat(),
        "reference": "M2026-001",
        "description": "Twee inburgeraars ontbreken en één vlag is fout.",
        "reporter": "Dienst Burgerzaken",
        **over,
    }


def _run(world: World, conf: dict, answers: dict | None = None):
    # The form sends every field of the decision, filled in or not.
    form = {"reden": "", "nieuwe_datum": None}
    officer = Officer(
        DAG_ID, {task: (option, {**form, **params}) for task, (option, params) in (answers or {}).items()}
    )
    officer.start()
    dag_run = _correction_dag().test(run_conf=conf)
    officer.join(timeout=10)
    assert officer.error is None, officer.error
    assert all(code == 200 for code in officer.responses), officer.responses
    return dag_run, officer


def _gent_rows(world: World, file_name: str) -> list[tuple[str, ...]]:
    phone = world.registry.recipients[GENT].contacts.sms[0]
    sent = passphrases(world.sms_to(phone))
    path = world.places.inbox(GENT) / file_name
    _, rows = oracle.parse_csv(demo_keys.decrypt(None, path.read_bytes(), sent[file_name]))
    return rows


def _change_kbi(world: World) -> tuple[str, str, str]:
    """In KBI: one of Gent's inburgeraars moved away, one was missing, one flag was wrong."""
    gone, changed = [
        r["insz"]
        for r in world.source_rows
        if r["nis_code_hoofdverblijf"] == GENT
        and r["doelgroep"] == "inburgeraar"
        and r["attest_behaald_op"] is None
    ][:2]
    new = make_nn(91, 3, 4, 801)
    con = sqlite3.connect(world.places.kbi_db)
    with con:
        con.execute("UPDATE kbi_dossier SET nis_code_hoofdverblijf = '11001' WHERE insz = ?", (gone,))
        con.execute("UPDATE kbi_dossier SET attest_behaald_op = '2024-01-02' WHERE insz = ?", (changed,))
        con.execute(
            "INSERT INTO kbi_dossier (dossier_id, insz, doelgroep, familienaam, voornamen,"
            " nis_code_hoofdverblijf, ingeschreven_rijksregister, contract_ondertekend_op, gewijzigd_op)"
            " VALUES (999999, ?, 'inburgeraar', 'Nieuw', 'Persoon', ?, 1, '2024-05-06', '2026-01-01')",
            (new, GENT),
        )
    con.close()
    world.source_rows = [
        dict(r)
        for r in __import__("tests.e2e.conftest", fromlist=["read_view"]).read_view(world.places.kbi_db)
    ]
    return gone, changed, new


def test_corrected_in_kbi_delivers_the_full_list_again(world: World) -> None:
    annual = load_dag().test(run_conf={"municipalities": [GENT]})
    assert annual.state == "success"
    (annual_file,) = world.inbox_files(GENT)
    gone, changed, new = _change_kbi(world)

    dag_run, officer = _run(world, _request(world), {"decide": (corrections.CORRECTED, {"reden": ""})})
    assert dag_run.state == "success" and officer.answered == ["decide"]
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["redeliver"] == "success" and states["close_no_error"] == "skipped"

    name = f"inburgeraars_{GENT}_{world.today}_correctie_M2026-001.csv.gpg"
    assert [p.name for p in world.inbox_files(GENT)] == [name]  # the annual file was retired
    fields = world.registry.recipients[GENT].protocol.fields
    expected, _ = oracle.expected_files(world.source_rows, world.today, world.today, {GENT: fields})
    rows = _gent_rows(world, name)
    assert Counter(rows) == Counter(expected[GENT]), "the corrected file is the full corrected list"
    numbers = {r[0] for r in rows}
    assert new in numbers and gone not in numbers and changed in numbers

    ledger = airflow_glue.ledger()
    c = ledger.get_correction("M2026-001")
    assert c.state == "corrected" and c.in_time and c.handled_on == world.today.isoformat()
    assert (c.rows_added, c.rows_removed, c.rows_changed) == (1, 1, 1)
    annual_delivery = ledger.deliveries_of_run(annual.run_id)[0]
    assert annual_delivery.state == "purged" and annual_delivery.file_name == annual_file.name
    events = [e for e in ledger.events() if e["event_type"] == "file_superseded"]
    assert len(events) == 1 and "superseded_by" in events[0]["detail"]
    assert ledger.verify() is None
    # P3: a correction is no annual list, and the annual list still holds the year.
    assert ledger.annual_delivery_in_period(GENT, str(world.today.year)) is not None

    subjects = [str(m["Subject"]).strip() for m in world.mail.messages()]
    assert any("is ontvangen" in s for s in subjects)  # the acknowledgement
    assert any("gecorrigeerde lijst bezorgd" in s for s in subjects)
    done = next(m for m in world.mail.messages() if "gecorrigeerde lijst" in str(m["Subject"]))
    assert "1 rij(en) toegevoegd, 1 verwijderd en 1 gewijzigd" in done.get_body(("plain",)).get_content()

    # The same reference again: refused, nothing delivered, until the officer reopens it.
    again, _ = _run(world, _request(world))
    assert again.state == "failed"
    assert [p.name for p in world.inbox_files(GENT)] == [name]
    corrections.reopen(ledger, "M2026-001", "kwaliteit")
    third, _ = _run(world, _request(world), {"decide": (corrections.CORRECTED, {"reden": ""})})
    assert third.state == "success"
    # Round 2 has its own name; round 1's file, still waiting, was retired by it.
    assert [p.name for p in world.inbox_files(GENT)] == [
        f"inburgeraars_{GENT}_{world.today}_correctie_M2026-001-2.csv.gpg"
    ]
    assert ledger.get_correction("M2026-001").round == 2


def test_a_transfer_server_showing_another_host_key_gets_no_correction(world: World) -> None:
    """Catalogue 28: the corrected list is not sent, the annual file stays, one security alert."""
    annual = load_dag().test(run_conf={"municipalities": [GENT]})
    assert annual.state == "success"
    (annual_file,) = world.inbox_files(GENT)
    world.pin_another_host_key()
    dag_run, _ = _run(world, _request(world), {"decide": (corrections.CORRECTED, {"reden": ""})})
    assert dag_run.state == "failed"
    (redeliver,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "redeliver"]
    assert redeliver.state == "failed"
    assert world.inbox_files(GENT) == [annual_file]
    (alert,) = world.security_alerts()
    body = alert.get_body(("plain",)).get_content()
    assert "kbi_correction_request" in body and f"({GENT}) stopped before sending anything" in body


def test_no_error_found_informs_the_municipality_and_delivers_nothing(world: World) -> None:
    reason = "De persoon woont volgens het Rijksregister niet meer in Gent."
    dag_run, _ = _run(
        world, _request(world, reference="M2026-002"), {"decide": (corrections.NO_ERROR, {"reden": reason})}
    )
    assert dag_run.state == "success"
    assert world.all_server_files() == []
    c = airflow_glue.ledger().get_correction("M2026-002")
    assert c.state == "no_error" and c.decision_reason == reason and c.in_time
    outcome = next(m for m in world.mail.messages() if "geen fout gevonden" in str(m["Subject"]))
    text = outcome.get_body(("plain",)).get_content()
    assert reason in text and "onmiddellijk" in text  # the reason, and the disclaimer (P7)


def test_more_time_then_a_final_decision(world: World) -> None:
    later = (world.today + timedelta(days=20)).isoformat()
    answers = {
        "decide": (corrections.MORE_TIME, {"reden": "Navraag bij het OCMW loopt.", "nieuwe_datum": later}),
        "decide_again": (corrections.NO_ERROR, {"reden": "Geen fout na navraag."}),
    }
    dag_run, officer = _run(world, _request(world, reference="M2026-003"), answers)
    assert dag_run.state == "success" and officer.answered == ["decide", "decide_again"]
    c = airflow_glue.ledger().get_correction("M2026-003")
    assert c.state == "no_error" and c.extended_to == later
    events = [e for e in airflow_glue.ledger().events() if e["event_type"] == "correction_extended"]
    assert json.loads(events[0]["detail"])["late"] is True  # still measured against the 14 days
    assert any("duurt langer" in str(m["Subject"]) for m in world.mail.messages())


@pytest.mark.parametrize(
    ("override", "why"),
    [
        ({"nis_code": "21004"}, "Brussels"),
        ({"nis_code": "13014"}, "not yet in force"),
        ({"reported_on": "2099-01-01"}, "in the future"),
        ({"description": "Rijksregisternummer 85.07.30-033.28 ontbreekt"}, "national number"),
    ],
)
def test_bad_requests_are_refused_and_nothing_is_registered(
    world: World, capfd, override: dict, why: str
) -> None:
    dag_run, _ = _run(world, _request(world, reference="M2026-BAD", **override))
    assert dag_run.state == "failed"
    assert why in capfd.readouterr().out
    ledger = airflow_glue.ledger()
    ledger.migrate()
    assert ledger.get_correction("M2026-BAD") is None
    assert world.mail.messages() == []


@pytest.mark.parametrize("override", [{"reference": ""}, {"nis_code": "4402"}, {"reported_on": "31/12/2026"}])
def test_malformed_requests_are_refused_at_the_trigger(world: World, override: dict) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        _correction_dag().test(run_conf=_request(world, **override))


def test_day_ten_reminder_and_day_fourteen_escalation(world: World) -> None:
    from tests.e2e.test_pickup_monitor import _monitor

    ledger = airflow_glue.ledger()
    ledger.migrate()
    for ref, days in (("M-DAY10", 10), ("M-DAY15", 15)):
        req = corrections.Request(
            GENT, world.today - timedelta(days=days), ref, "Foutieve vlag.", "Burgerzaken"
        )
        corrections.register(ledger, req, f"run-{ref}")
    assert _monitor().test().state == "success"
    assert ledger.get_correction("M-DAY10").reminded_on == world.today.isoformat()
    assert ledger.get_correction("M-DAY15").escalated_on == world.today.isoformat()
    officers = [m for m in world.mail.messages() if "correction request" in str(m["Subject"])]
    assert sorted(str(m["Subject"]).strip() for m in officers) == [
        "[KBI] correction request(s) due in 4 days",
        "[KBI] correction request(s) past the 14 days",
    ]
    assert _monitor().test().state == "success"  # once each
    assert len([m for m in world.mail.messages() if "correction request" in str(m["Subject"])]) == 2
