"""kbi_distribution end to end with dag.test(): real gpg, real SFTP, SMTP and SMS servers.

Each municipality's file is decrypted as that municipality would (its secret key, or the
passphrase from its SMS) and compared row for row with an independent oracle of the selection
rules (P1, P2) and the blocking checks (P11). Logs, XCom, the metadata database, the ledger, the
reports and the messages are searched for the synthetic people (P12).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from demo import keys
from kbi import registry
from kbi.ledger import Ledger
from tests import pii
from tests.e2e import oracle
from tests.e2e.conftest import RECEIVING, REFUSED, World, load_dag, passphrases

pytestmark = pytest.mark.slow


def _run(world: World, conf: dict | None = None):
    dag = load_dag()
    return dag.test(run_conf=conf or {})


def _passphrase_from_sms(world: World, phone: str, file_name: str) -> str:
    found = passphrases(world.sms_to(phone))
    assert file_name in found, f"no passphrase SMS for {file_name}"
    return found[file_name]


def _decrypt(world: World, recipient: registry.Recipient, path: Path) -> bytes:
    if recipient.encryption.mode == "pubkey":
        return keys.decrypt(world.places.keys / f"{recipient.nis_code}.secret.asc", path.read_bytes())
    phone = recipient.contacts.sms[0]
    return keys.decrypt(None, path.read_bytes(), _passphrase_from_sms(world, phone, path.name))


def _ledger(world: World) -> Ledger:
    from kbi import airflow_glue

    return airflow_glue.ledger()


def _check_delivered_files(world: World) -> None:
    reg = world.registry
    fields = {nis: reg.recipients[nis].protocol.fields for nis in RECEIVING}
    expected, _ = oracle.expected_files(world.source_rows, world.today, world.today, fields)
    for nis in RECEIVING:
        recipient = reg.recipients[nis]
        files = world.inbox_files(nis)
        assert [f.name for f in files] == [f"inburgeraars_{nis}_{world.today}.csv.gpg"], (
            f"{nis}: inbox content"
        )
        header, rows = oracle.parse_csv(_decrypt(world, recipient, files[0]))
        assert tuple(header) == recipient.protocol.fields, f"{nis}: columns differ from its protocol (P2)"
        assert Counter(rows) == Counter(expected[nis]), f"{nis}: rows differ from the selection rules (P1)"
        assert rows, f"{nis}: the test data should give every receiving municipality some rows"
        if "naam" in header:
            keys_ = [(oracle.collation(r[1]), oracle.collation(r[2])) for r in rows]
        else:
            keys_ = [(r[0],) for r in rows]
        assert keys_ == sorted(keys_), f"{nis}: rows not in the agreed order"


def test_yearly_run_delivers_each_list_to_its_own_inbox_only(
    world: World, capfd: pytest.CaptureFixture, airflow_db: Path
) -> None:
    dag_run = _run(world)
    output = capfd.readouterr()
    assert dag_run.state == "success"

    _check_delivered_files(world)
    # Nothing for refused or unregistered municipalities, nothing half-uploaded anywhere (P1, P5, P6).
    delivered = {p.parent.parent.name for p in world.all_server_files()}
    assert delivered == set(RECEIVING)
    assert not [p for p in world.all_server_files() if p.name.endswith(".part")]

    ledger = _ledger(world)
    assert ledger.verify() is None
    deliveries = ledger.deliveries_of_run(dag_run.run_id)
    assert sorted(d.nis_code for d in deliveries) == sorted(RECEIVING)
    assert {d.state for d in deliveries} == {"announced"}
    for d in deliveries:
        on_server = world.places.inbox(d.nis_code) / str(d.file_name)
        assert on_server.stat().st_size == d.size_bytes
        import hashlib

        assert hashlib.sha256(on_server.read_bytes()).hexdigest() == d.sha256  # P13: the ledger is exact
    decisions = {d["nis_code"]: d for d in ledger.decisions(dag_run.run_id)}
    for nis, rule in REFUSED.items():
        assert decisions[nis]["decision"] == "refused" and decisions[nis]["rule"] == rule, nis

    # One receipt and one SMS per delivered municipality, in Dutch, with the disclaimer (P6, P7, P10).
    mails = world.mail.messages()
    assert sorted(m["To"] for m in mails) == sorted(
        world.registry.recipients[n].contacts.email[0] for n in RECEIVING
    )
    for m in mails:
        text = m.get_body(("plain",)).get_content()
        assert "onmiddellijk" in text and "bestemde ontvanger" in text  # P7
        assert "Verwijderen uiterlijk op" in text  # P10
        assert "wachtwoord" not in text.split("Versleuteling:")[1].split("\n")[0] or "per sms" in text
    sms = world.sms.messages()
    assert len(sms) == len(RECEIVING)

    # The staging area with the plaintext is gone (teardown), the quality report is there.
    assert not any(world.places.staging.iterdir()) if world.places.staging.exists() else True
    summary_files = list(world.places.reports.rglob("summary.json"))
    assert len(summary_files) == 1
    summary = json.loads(summary_files[0].read_text())
    assert summary["municipalities"]["delivered"] == len(RECEIVING)
    assert summary["municipalities"]["failed"] == 0
    # Where the delivering went, by step, summed over the deliveries (seconds only).
    steps = summary["delivery_seconds"]
    assert set(steps) == {"connect", "encrypt", "upload", "publish", "announce", "total", "cpu", "cpu_gpg"}
    assert all(v > 0 for v in steps.values()) and steps["total"] >= steps["encrypt"]

    # P12: no synthetic person anywhere outside KBI, the ciphertexts and the quarantine.
    people = pii.People.of(world.source_rows)
    assert len(people.numbers) > 1000 and len(people.names) > 50  # the search has something to find
    found = pii.leaks(
        people,
        task_logs=output.out + output.err,
        airflow_metadata=pii.sqlite_text(airflow_db),
        ledger=pii.sqlite_text(world.places.ledger_db),
        reports=pii.files_text(world.places.reports.rglob("*")),
        mail=pii.files_text(world.places.mail_outbox.glob("*")),
        sms=pii.files_text(world.places.sms_outbox.glob("*")),
    )
    assert found == {}, f"personal data found in: {found}"


def test_second_annual_run_in_the_same_year_is_refused_and_changes_nothing(world: World) -> None:
    first = _run(world)
    assert first.state == "success"
    files_before = {p: p.stat().st_mtime_ns for p in world.all_server_files()}
    mails_before, sms_before = len(world.mail.messages()), len(world.sms.messages())

    second = _run(world)
    assert second.state == "success"
    assert {p: p.stat().st_mtime_ns for p in world.all_server_files()} == files_before
    assert (len(world.mail.messages()), len(world.sms.messages())) == (mails_before, sms_before)
    decisions = {d["nis_code"]: d for d in _ledger(world).decisions(second.run_id)}
    for nis in RECEIVING:
        assert decisions[nis]["decision"] == "refused" and decisions[nis]["rule"] == "P3", nis
        assert first.run_id in decisions[nis]["reason"]
    assert _ledger(world).verify() is None


def test_dry_run_uploads_notifies_and_records_nothing(world: World) -> None:
    dag_run = _run(world, {"dry_run": True})
    assert dag_run.state == "success"
    assert world.all_server_files() == []
    assert world.mail.messages() == [] and world.sms.messages() == []
    ledger = _ledger(world)
    ledger.migrate()
    assert ledger.deliveries_of_run(dag_run.run_id) == []
    summary = json.loads(next(world.places.reports.rglob("summary.json")).read_text())
    assert summary["municipalities"]["dry_run_ok"] == len(RECEIVING)


def test_run_for_some_municipalities_only(world: World) -> None:
    dag_run = _run(world, {"municipalities": ["44021", "11001"]})
    assert dag_run.state == "success"
    assert {p.parent.parent.name for p in world.all_server_files()} == {"44021", "11001"}


@pytest.mark.postgres
def test_yearly_run_with_source_ledger_and_quarantine_on_postgresql(
    world: World, postgres_db: str, capfd: pytest.CaptureFixture
) -> None:
    from kbi import synth

    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{postgres_db}"
    table = synth.generate(3000, seed=11, reference_date=world.today, today=world.today)
    synth.write_postgres(table, url)
    conn = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": 5432,
        "login": "postgres",
        "schema": postgres_db,
    }
    world.set_env(
        AIRFLOW_CONN_KBI_SOURCE=json.dumps(conn),
        AIRFLOW_CONN_KBI_LEDGER=json.dumps({**conn, "extra": {"chain_secret": "pg-chain-secret"}}),
        AIRFLOW_CONN_KBI_QUARANTINE=json.dumps(conn),
    )
    dag_run = _run(world)
    output = capfd.readouterr()
    assert dag_run.state == "success"
    _check_delivered_files(world)
    ledger = _ledger(world)
    assert ledger.dialect == "postgresql" and ledger.verify() is None
    assert len(ledger.deliveries_of_run(dag_run.run_id)) == len(RECEIVING)
    people = pii.People.of(world.source_rows)
    assert pii.leaks(people, task_logs=output.out + output.err) == {}


def test_a_transfer_server_showing_another_host_key_gets_nothing_and_security_is_alerted(
    world: World, capfd: pytest.CaptureFixture[str]
) -> None:
    """Catalogue 28 (a changed key, or a man in the middle): every delivery stops before logging
    in, at once (no retry may try again), and the data engineers get one security alert."""
    from kbi import airflow_glue, transport

    world.pin_another_host_key()
    dag_run = _run(world, {"municipalities": ["44021", "11001"]})
    assert dag_run.state == "failed"
    tis = {(ti.task_id, ti.map_index): ti for ti in dag_run.get_task_instances()}
    for index in (0, 1):
        assert tis[("deliver", index)].state == "failed"
        assert tis[("deliver", index)].try_number == 1  # not retried
    assert tis[("remove_staging", -1)].state == "success"
    assert world.all_server_files() == []
    assert world.sms.messages() == []
    deliveries = airflow_glue.ledger().deliveries_of_run(dag_run.run_id)
    assert sorted(d.nis_code for d in deliveries) == ["11001", "44021"]
    assert all(d.last_error.startswith(transport.HostKeyMismatch.CODE) for d in deliveries)
    assert len(world.mail.messages()) == 1  # no receipt went out
    (alert,) = world.security_alerts()  # one, not one per delivery
    assert alert["To"] == "data-engineering@example.invalid"
    body = alert.get_body(("plain",)).get_content()
    assert "(11001, 44021) stopped before sending anything" in body and "kbi_distribution" in body
    assert "The transfer server presented SHA256:" in capfd.readouterr().out  # for the operator's check


def test_a_transfer_server_without_pinned_host_key_gets_nothing(world: World) -> None:
    """P12: the SFTP provider would accept any server unless told otherwise; the project refuses."""
    conn = json.loads(world.env["AIRFLOW_CONN_KBI_SFTP"])
    del conn["extra"]["host_key"]
    world.set_env(AIRFLOW_CONN_KBI_SFTP=json.dumps(conn))
    dag_run = _run(world, {"municipalities": ["44021", "11001"]})
    assert dag_run.state == "failed"
    states = {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}
    assert states[("deliver", 0)] == "failed" and states[("deliver", 1)] == "failed"
    assert states[("remove_staging", -1)] == "success"  # the plaintext staging area is gone anyway
    assert world.all_server_files() == []
    assert world.sms.messages() == [] and world.mail.messages() == []
    summary = json.loads(next(world.places.reports.rglob("summary.json")).read_text())
    assert summary["failed"] == ["11001", "44021"]
