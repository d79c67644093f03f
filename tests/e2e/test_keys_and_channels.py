"""Keys and the separate channel through the whole DAG (P6, P7, P12): unusable keys are refused
with their reason while the others are delivered; SMS gateway or SMTP relay down leaves no file
without its key sent, and a rerun completes each delivery exactly once."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from demo import keys as demo_keys
from kbi import airflow_glue
from tests import pii
from tests.e2e.conftest import World, load_dag, passphrases

pytestmark = pytest.mark.slow

GENT, AARTSELAAR, HASSELT, MECHELEN, LEUVEN, BRUGGE = "44021", "11001", "71072", "12025", "24062", "31005"


def _dag(retries: int = 0):
    dag = load_dag()
    for task in dag.tasks:
        task.retries = retries
        task.retry_delay = timedelta(seconds=0.5)
        task.retry_exponential_backoff = False
    return dag


def _set_key(world: World, nis: str, fingerprint: str, key_text: str) -> None:
    """Edit the registry as a careless hand would (the pipeline must catch it, not the editor)."""
    reg = world.registry
    old = reg.recipients[nis].encryption.fingerprint or ""
    text = world.places.registry.read_text().replace(old, fingerprint)
    world.places.registry.write_text(text)
    (world.places.keys / f"{nis}.asc").write_text(key_text)


def test_each_unusable_key_is_refused_with_its_reason_and_the_others_proceed(world: World, tmp_path) -> None:
    made = {k: demo_keys.make_key(tmp_path, k, f"G {k}", f"{k}@x.example", k) for k in ("revoked", "rsa2048")}
    other = demo_keys.make_key(tmp_path, "other", "G other", "o@x.example")
    keys_dir = world.places.keys
    # Hasselt: the key file holds another key than the pinned fingerprint (swapped file).
    (keys_dir / f"{HASSELT}.asc").write_text(other.public_path.read_text())
    # Leuven: revoked; Brugge: RSA-2048; Aartselaar: key file gone. (Aarschot: expired, in the world.)
    _set_key(world, LEUVEN, made["revoked"].fingerprint, made["revoked"].public_path.read_text())
    _set_key(world, BRUGGE, made["rsa2048"].fingerprint, made["rsa2048"].public_path.read_text())
    # Mechelen is in passphrase mode; give Antwerpen's malformed armour a turn instead.
    (keys_dir / "11002.asc").write_text(
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n-----END PGP PUBLIC KEY BLOCK-----\n"
    )
    (keys_dir / f"{AARTSELAAR}.asc").unlink()  # issue 4, catalogue 17: that one refused, not the run
    dag_run = _dag().test(run_conf={})
    assert dag_run.state == "success"  # refusals are decisions, not failures
    decisions = {d["nis_code"]: d for d in airflow_glue.ledger().decisions(dag_run.run_id)}
    expected = {
        HASSELT: "fingerprint_mismatch",
        LEUVEN: "key_revoked",
        BRUGGE: "key_weak",
        "11002": "key_malformed",
        "24001": "key_expired",
        AARTSELAAR: "key_missing",
    }
    for nis, code in expected.items():
        assert decisions[nis]["decision"] == "refused" and decisions[nis]["rule"] == "P6", nis
        assert decisions[nis]["reason"].startswith(code), (nis, decisions[nis]["reason"])
    delivered = {p.parent.parent.name for p in world.all_server_files()}
    assert delivered == {GENT, MECHELEN, "23106"}  # the others proceeded
    summary = json.loads(next(world.places.reports.rglob("summary.json")).read_text())
    assert {r["nis_code"] for r in summary["refusals"] if r["rule"] == "P6"} == set(expected)


def test_sms_gateway_down_leaves_no_file_without_its_key_and_a_rerun_delivers_once(world: World) -> None:
    world.sms.set_status(503)  # the gateway answers, but refuses every message
    first = _dag().test(run_conf={"municipalities": [GENT, AARTSELAAR]})
    assert first.state == "failed"
    # Gent (passphrase): withdrawn, nothing on the server; Aartselaar (pubkey): published, its
    # SMS carries only the checksum, the file may wait for it.
    assert not list(world.places.inbox(GENT).iterdir())
    assert [p.name for p in world.inbox_files(AARTSELAAR)] == [
        f"inburgeraars_{AARTSELAAR}_{world.today}.csv.gpg"
    ]
    ledger = airflow_glue.ledger()
    states = {d.nis_code: d.state for d in ledger.deliveries_of_run(first.run_id)}
    assert states == {GENT: "failed", AARTSELAAR: "published"}
    events = [e["event_type"] for e in ledger.events()]
    assert "delivery_withdrawn" in events and "sms_failed" in events
    # Catalogue 41: the data engineers learn which published file still owes what.
    (alert,) = [m for m in world.mail.messages() if "not announced" in str(m["Subject"])]
    assert str(alert["To"]) == "data-engineering@example.invalid"
    body = alert.get_body(("plain",)).get_content()
    assert "1 file(s) on the transfer server" in body and f"{AARTSELAAR} (SMS, e-mail receipt)" in body
    assert GENT not in body  # withdrawn: nothing of Gent's is on the server
    assert pii.People.of(world.source_rows).find(body) == {"national_numbers": 0, "names": 0}

    world.sms.set_status(None)  # the gateway is back; the data engineer clears the run
    rerun = _dag().test(
        run_conf={"municipalities": [GENT, AARTSELAAR]},
        logical_date=first.logical_date,
        run_after=first.run_after,
    )
    assert rerun.run_id == first.run_id and rerun.state == "success"
    assert len(world.inbox_files(GENT)) == len(world.inbox_files(AARTSELAAR)) == 1
    # Gent's passphrase went out once and opens the file; it is nowhere but in its SMS.
    sent = passphrases([m["payload"] for m in world.sms.messages()])
    (gent_file,) = world.inbox_files(GENT)
    assert list(sent) == [gent_file.name]  # one passphrase SMS: the failed one never arrived
    passphrase = sent[gent_file.name]
    assert demo_keys.decrypt(None, gent_file.read_bytes(), passphrase).startswith(b"\xef\xbb\xbf")
    everywhere = pii.sqlite_text(world.places.ledger_db) + pii.files_text(world.places.mail_outbox.glob("*"))
    assert passphrase not in everywhere


def test_smtp_down_keeps_the_file_and_the_rerun_sends_each_receipt_once(world: World) -> None:
    world.set_env(KBI_DATA_ENGINEERS_SMS="+32470999001")
    world.mail.set_refuse(True)
    first = _dag().test(run_conf={"municipalities": [AARTSELAAR, MECHELEN]})
    assert first.state == "failed"
    # Both files are published and their SMS (passphrase, or checksum and fingerprint) went out:
    # only the receipts are owed.
    assert {p.parent.parent.name for p in world.all_server_files()} == {AARTSELAAR, MECHELEN}
    to_municipalities = [m for m in world.sms.messages() if m["payload"].get("to") != "+32470999001"]
    assert len(to_municipalities) == 2
    # Catalogue 41: the alert that receipts are owed cannot go by e-mail either; its subject goes by
    # SMS to the data engineers (once, from the run's summary), without anything personal.
    (alert,) = [p["message"] for p in world.sms_to("+32470999001")]
    assert alert.startswith(f"[KBI] run {first.run_id[:24]}: 2 file(s) published but not announced")
    assert "E-mail failed" in alert
    assert pii.People.of(world.source_rows).find(alert) == {"national_numbers": 0, "names": 0}
    ledger = airflow_glue.ledger()
    assert {d.state for d in ledger.deliveries_of_run(first.run_id)} == {"published"}
    assert [e["event_type"] for e in ledger.events()].count("mail_failed") == 2
    files_before = {p: p.stat().st_mtime_ns for p in world.all_server_files()}

    world.mail.set_refuse(False)
    rerun = _dag().test(
        run_conf={"municipalities": [AARTSELAAR, MECHELEN]},
        logical_date=first.logical_date,
        run_after=first.run_after,
    )
    assert rerun.run_id == first.run_id and rerun.state == "success"
    assert {p: p.stat().st_mtime_ns for p in world.all_server_files()} == files_before  # not uploaded again
    receipts = [m for m in world.mail.messages() if "staat klaar" in str(m["Subject"])]
    assert sorted(str(m["To"]) for m in receipts) == sorted(
        world.registry.recipients[n].contacts.email[0] for n in (AARTSELAAR, MECHELEN)
    )
    assert len(world.sms.messages()) == 3  # no second SMS (the passphrase still opens the file) nor alert
    assert {d.state for d in ledger.deliveries_of_run(first.run_id)} == {"announced"}
    for m in receipts:
        text = m.get_body(("plain",)).get_content()
        assert "onmiddellijk" in text and "Verwijderen uiterlijk op" in text  # P7, P10
        assert pii.People.of(world.source_rows).find(text) == {"national_numbers": 0, "names": 0}
