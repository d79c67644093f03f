"""The `kbi` command line: the quality officer's quarantine view, registry check, ledger verify.

PYTEST_DONT_REWRITE: the quarantine holds (synthetic) people; failures show messages only.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from kbi import cli, db
from kbi.ledger import Ledger
from kbi.quality.quarantine import Quarantine
from tests.helpers import make_nn


@pytest.fixture
def quarantine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Quarantine:
    path = tmp_path / "quarantine.db"
    monkeypatch.setenv("AIRFLOW_CONN_KBI_QUARANTINE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    q = Quarantine(db.engine(f"sqlite:///{path}"))
    q.migrate()
    failed = pa.Table.from_pylist(
        [
            {"insz": make_nn(85, 7, 14, 3), "familienaam": "Janssens", "voornamen": "An", "nis_code": "44021",
             "ingeschreven": True, "contract_op": date(2024, 1, 2), "attest_op": None, "overleden_op": None,
             "failed_check": "insz_duplicate"},
            {"insz": "123", "familienaam": "Peeters", "voornamen": "Bo", "nis_code": "11002",
             "ingeschreven": True, "contract_op": None, "attest_op": None, "overleden_op": None,
             "failed_check": "insz_format"},
        ]
    )  # fmt: skip
    q.store("run-1", failed, date(2026, 12, 1))
    return q


def test_quarantine_list_filters_and_shows_what_the_officer_needs(quarantine: Quarantine, capsys) -> None:
    assert cli.main(["quarantine", "list", "--nis", "44021"]) == 0
    out = capsys.readouterr().out
    assert "insz_duplicate" in out and "Janssens" in out and "Peeters" not in out
    assert cli.main(["quarantine", "list", "--run", "run-1", "--csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("id,detected_on,run_id,check_name,nis_code,insz") and len(lines) == 3


def test_quarantine_resolve_and_purge(quarantine: Quarantine, capsys) -> None:
    row = next(r for r in quarantine.rows() if r["check_name"] == "insz_format")
    assert cli.main(["quarantine", "resolve", str(row["id"]), "--note", "gecorrigeerd in KBI"]) == 0
    assert cli.main(["quarantine", "resolve", str(row["id"]), "--note", "twice"]) == 1
    assert [r["check_name"] for r in quarantine.rows()] == ["insz_duplicate"]  # open rows only
    assert len(quarantine.rows(include_resolved=True)) == 2
    assert cli.main(["quarantine", "purge", "--days", "100000"]) == 0
    assert len(quarantine.rows(include_resolved=True)) == 2
    assert cli.main(["quarantine", "purge", "--days", "0"]) == 0
    assert "purged 2 row(s)" in capsys.readouterr().out
    assert quarantine.rows(include_resolved=True) == []


def test_registry_check_reports_problems(tmp_path: Path, capsys) -> None:
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "registry"
    assert cli.main(["registry", "check", str(fixtures / "nis_code_unknown.yaml")]) == 1
    assert "nis_code" in capsys.readouterr().err


def test_registry_check_reports_a_missing_key_file(tmp_path: Path, capsys) -> None:
    """A run would refuse the municipality (P6); onboarding is told before the run is."""
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "registry"
    assert cli.main(["registry", "check", str(fixtures / "key_file_missing.yaml")]) == 1
    err = capsys.readouterr().err
    assert "1 key file(s) missing" in err and "keys/missing.asc does not exist" in err


def test_ledger_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    path = tmp_path / "ledger.db"
    monkeypatch.setenv(
        "AIRFLOW_CONN_KBI_LEDGER",
        json.dumps({"conn_type": "sqlite", "host": str(path), "extra": {"chain_secret": "s"}}),
    )
    ledger = Ledger(db.engine(f"sqlite:///{path}"), b"s")
    ledger.migrate()
    ledger.start_run("r", "kbi_distribution", "annual", "2026-01-15", False, "v")
    assert cli.main(["ledger", "verify"]) == 0
    assert "intact" in capsys.readouterr().out
    with ledger.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE kbi_event SET detail = '{}' WHERE seq = 1")
    assert cli.main(["ledger", "verify"]) == 1
    assert "BROKEN at event 1" in capsys.readouterr().err
