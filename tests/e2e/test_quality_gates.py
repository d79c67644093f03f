"""P11 end to end: blocking checks quarantine exactly the bad rows, run-level checks stop the run
before anything is encrypted or sent, and the reports and alerts show counts, never people.

Hand-made national numbers and names live here; failures show messages only.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from demo import keys
from kbi import airflow_glue, synth
from kbi.quality.quarantine import Quarantine
from tests import pii
from tests.e2e import handmade, oracle
from tests.e2e.conftest import World, load_dag, passphrases
from tests.helpers import make_nn

pytestmark = pytest.mark.slow

GENT = "44021"  # passphrase mode, protocol with names
ANTWERPEN = "11002"  # pubkey mode, with names


def _run(conf: dict | None = None):
    return load_dag().test(run_conf=conf or {})


def _states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances() if ti.map_index < 0}


def _gent_file(world: World) -> list[tuple[str, ...]]:
    (path,) = world.inbox_files(GENT)
    phone = world.registry.recipients[GENT].contacts.sms[0]
    passphrase = passphrases(world.sms_to(phone))[path.name]
    header, rows = oracle.parse_csv(keys.decrypt(None, path.read_bytes(), passphrase))
    assert header == [
        "rijksregisternummer",
        "naam",
        "voornaam",
        "inburgeringscontract_ondertekend",
        "attest_inburgering_behaald",
    ]
    return rows


def _halted(world: World, dag_run, failed_task: str, reason: str, output: str) -> None:
    """A run-level check stopped the run: failed task, ledger, alert, and nothing anywhere."""
    assert dag_run.state == "failed"
    states = _states(dag_run)
    assert states[failed_task] == "failed"
    assert states.get("deliver") in (None, "upstream_failed"), states
    assert states["remove_staging"] == "success"
    assert reason in output, "the failed task's log says why"
    run = airflow_glue.ledger().get_run(dag_run.run_id)
    assert run["state"] == "halted" and reason in run["summary"]
    assert world.all_server_files() == []
    assert world.sms.messages() == []
    alerts = world.mail.messages()
    assert [m["To"] for m in alerts] == ["data-engineering@example.invalid"]
    subject = str(alerts[0]["Subject"]).strip()
    assert subject.startswith("[KBI] run") and subject.endswith("halted")
    assert reason in alerts[0].get_body(("plain",)).get_content()


def test_each_blocking_check_holds_back_exactly_its_rows(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = world.today
    good = [
        {
            "insz": make_nn(85, 7, 14, 2 * i + 1),
            "familienaam": f"Goed{chr(97 + i)}",
            "voornamen": "Anna",
            "nis_code_hoofdverblijf": GENT,
        }
        for i in range(6)
    ]
    dup = make_nn(90, 1, 2, 11)
    bad = {
        "insz_format": {"insz": "8507140331"},
        "insz_checksum": {"insz": make_nn(85, 7, 14, 41)[:9] + "00"},
        "insz_birth_date": {"insz": make_nn(85, 2, 31, 43)},
        "insz_duplicate": {"insz": dup},
        "bis_registered": {"insz": make_nn(85, 47, 14, 45)},
        "name_missing": {"insz": make_nn(85, 7, 14, 47), "familienaam": "   "},
        "name_invalid": {"insz": make_nn(85, 7, 14, 49), "voornamen": "Ann\x07a"},
        "nis_unknown": {"insz": make_nn(85, 7, 14, 51), "nis_code_hoofdverblijf": "99999"},
        "value_unparsed": {"insz": make_nn(85, 7, 14, 53), "contract_ondertekend_op": "2025-02-30"},
        "date_in_future": {
            "insz": make_nn(85, 7, 14, 55),
            "attest_behaald_op": (today + timedelta(days=30)).isoformat(),
        },
    }
    rows = [*good]
    for check, values in bad.items():
        rows.append({"familienaam": "Fout", "voornamen": check, "nis_code_hoofdverblijf": GENT, **values})
    rows.append({"insz": dup, "familienaam": "Tweeling", "voornamen": "Bo", "nis_code_hoofdverblijf": GENT})
    # A pre-2025 code (Borsbeek) is mapped to Antwerpen and delivered there, with a warning.
    rows.append(
        {
            "insz": make_nn(70, 3, 3, 57),
            "familienaam": "Borsbeek",
            "voornamen": "Jan",
            "nis_code_hoofdverblijf": "11007",
        }
    )
    handmade.write(world.places.kbi_db, rows)
    monkeypatch.setenv("KBI_MAX_BLOCKING_FAILURE_RATE", "0.9")

    dag_run = _run({"municipalities": [GENT, ANTWERPEN]})
    assert dag_run.state == "success"
    delivered = {r[0] for r in _gent_file(world)}
    assert delivered == {r["insz"] for r in good}, "Gent gets its good rows and none of the bad ones"

    held = Quarantine(airflow_glue.quarantine().engine).rows(run_id=dag_run.run_id)
    reasons: dict[str, list[str]] = {}
    for r in held:
        reasons.setdefault(r["check_name"], []).append(r["insz"])
    assert set(reasons) == set(bad)
    assert sorted(reasons["insz_duplicate"]) == [dup, dup], "every copy of a duplicated number is held"
    for check, values in bad.items():
        if check != "insz_duplicate":
            assert reasons[check] == [values["insz"]], f"{check}: the wrong row was held"

    report = json.loads(next(world.places.reports.rglob("quality.json")).read_text())
    assert report["verdict"] == "passed"
    assert {c["check"]: c["rows_quarantined"] for c in report["checks"] if c["rows_quarantined"]} == {
        k: len(v) for k, v in reasons.items()
    }
    assert {w["check"]: w["rows"] for w in report["warnings"]} == {"nis_pre_2025": 1}
    assert {m["nis_code"]: m["quarantined"] for m in report["municipalities"]}[GENT] == len(held) - 1
    html = next(world.places.reports.rglob("quality.html")).read_text()
    assert all(r["insz"] not in html and r["insz"] not in json.dumps(report) for r in rows if r.get("insz"))
    assert not [n for n in ("Tweeling", "Borsbeek", "Goeda") if n in html]


def test_an_empty_extract_stops_the_run(world: World, capfd: pytest.CaptureFixture) -> None:
    handmade.write(world.places.kbi_db, [])
    dag_run = _run()
    _halted(world, dag_run, "check_quality", "the extract is empty", capfd.readouterr().out)


def test_a_cut_off_extract_stops_the_run(world: World, capfd: pytest.CaptureFixture, tmp_path: Path) -> None:
    # The same SQL files, but the extract reads only part of the view, as a dropped connection
    # or a driver's row limit would.
    sql_dir = tmp_path / "sql"
    shutil.copytree(Path(__file__).resolve().parents[2] / "include" / "sql", sql_dir)
    extract = sql_dir / "source" / "extract_inburgeraars.sql"
    extract.write_text(extract.read_text().rstrip() + "\nLIMIT 100\n")
    world.set_env(KBI_SQL_DIR=str(sql_dir))
    dag_run = _run()
    _halted(world, dag_run, "check_quality", "it was cut off on the way", capfd.readouterr().out)


def test_too_many_failing_rows_stop_the_run(world: World, capfd: pytest.CaptureFixture) -> None:
    world.set_env(KBI_MAX_BLOCKING_FAILURE_RATE="0.001")  # the synthetic defects are ~0.4 %
    dag_run = _run()
    _halted(world, dag_run, "check_quality", "above the 0.10% threshold", capfd.readouterr().out)
    held = Quarantine(airflow_glue.quarantine().engine).rows(run_id=dag_run.run_id)
    assert held, "the failing rows are in the quarantine, not lost"


def test_a_list_that_moved_too_much_stops_the_run_until_accepted(
    world: World, capfd: pytest.CaptureFixture
) -> None:
    first = _run({"municipalities": [GENT, ANTWERPEN]})
    assert first.state == "success"
    # A year later: last year's lists no longer hold the period (P3), and KBI grew threefold.
    ledger = airflow_glue.ledger()
    with ledger.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE kbi_delivery SET period = '2000'")
    for path in world.all_server_files():
        path.unlink()
    synth.write_sqlite(
        synth.generate(9000, seed=11, reference_date=world.today, today=world.today), world.places.kbi_db
    )
    for outbox in (world.places.mail_outbox, world.places.sms_outbox):  # not what this test counts
        for message in outbox.iterdir():
            message.unlink()

    second = _run({"municipalities": [GENT, ANTWERPEN]})
    output = capfd.readouterr().out
    _halted(world, second, "partition", "moved more than 50% since their last delivery", output)
    assert f"{GENT} Gent" in output and f"{ANTWERPEN} Antwerpen" in output

    third = _run({"municipalities": [GENT, ANTWERPEN], "accept_count_change": [GENT, ANTWERPEN]})
    assert third.state == "success"
    assert {p.parent.parent.name for p in world.all_server_files()} == {GENT, ANTWERPEN}


def test_a_view_far_larger_than_a_year_stops_the_run_until_accepted(
    world: World, capfd: pytest.CaptureFixture
) -> None:
    """Catalogue 15: counted before a row is read; a person accepts the size for one run."""
    counted = sum(r["doelgroep"] == "inburgeraar" for r in world.source_rows)
    world.set_env(KBI_MAX_EXTRACT_ROWS=str(counted - 1))
    first = _run({"municipalities": [GENT]})
    output = capfd.readouterr().out
    reason = f"the KBI view counts {counted:,} rows, above the limit of {counted - 1:,}"
    _halted(world, first, "extract", reason, output)
    assert f"accept_extract_rows {counted}" in output
    assert _states(first)["check_quality"] == "upstream_failed"
    halted = json.loads(airflow_glue.ledger().get_run(first.run_id)["summary"])
    assert (halted["rows_counted"], halted["limit"]) == (counted, counted - 1)
    alert = world.mail.messages()[0].get_body(("plain",)).get_content()
    assert pii.People.of(world.source_rows).find(output + alert) == {"national_numbers": 0, "names": 0}

    for message in world.places.mail_outbox.iterdir():
        message.unlink()
    second = _run({"municipalities": [GENT], "accept_extract_rows": counted})
    assert second.state == "success"
    assert [p.parent.parent.name for p in world.all_server_files()] == [GENT]


def test_quarantine_is_purged_after_its_retention(world: World) -> None:
    world.set_env(KBI_MAX_BLOCKING_FAILURE_RATE="0.5")
    first = _run({"municipalities": [GENT]})
    assert first.state == "success"
    quarantine = airflow_glue.quarantine()
    assert quarantine.rows(run_id=first.run_id)
    db = Path(json.loads(world.env["AIRFLOW_CONN_KBI_QUARANTINE"])["host"])
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE kbi_quarantine SET detected_on = '2000-01-01'")
    world.set_env(KBI_QUARANTINE_RETENTION_DAYS="30")
    with airflow_glue.ledger().engine.begin() as conn:  # let the second run deliver again
        conn.exec_driver_sql("UPDATE kbi_delivery SET period = '2000'")
    for path in world.all_server_files():  # picked up long ago
        path.unlink()
    second = _run({"municipalities": [GENT], "dry_run": False})
    assert second.state == "success"
    assert quarantine.rows(run_id=first.run_id) == []
    assert quarantine.rows(run_id=second.run_id)
