"""Every DAG imports cleanly, fast and without heavy imports; params reject bad input."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
EXPECTED_DAGS = {"kbi_distribution", "kbi_pickup_monitor", "kbi_correction_request"}
HEAVY = (
    "pyarrow",
    "pandas",
    "gnupg",
    "paramiko",
    "great_expectations",
    "asyncssh",
    "apprise",
    "kbi.pipeline",
)


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_every_dag_file_imports_without_error(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) >= EXPECTED_DAGS


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_dag_shape(dagbag, dag_id: str) -> None:
    from airflow.utils.dag_cycle_tester import check_cycle

    dag = dagbag.dags[dag_id]
    check_cycle(dag)  # raises on a cycle
    assert dag.doc_md, "the DAG explains itself in the UI"
    assert dag.tags
    if dag_id != "kbi_correction_request":  # its params are the officer's input: no defaults
        dag.params.validate()  # the defaults are valid


def test_distribution_wiring(dagbag) -> None:
    dag = dagbag.dags["kbi_distribution"]
    deliver = dag.get_task("deliver")
    assert "nis_code" in (deliver.map_index_template or "")  # mapped tasks are named by NIS code and name
    teardown = dag.get_task("remove_staging")
    assert teardown.is_teardown  # the plaintext staging area goes even when a task failed (P12)
    assert dag.get_task("summarise").trigger_rule == "all_done"
    # interfaces.md §4, plus accept_count_change and accept_extract_rows (README, "Contracts")
    assert set(dag.params.keys()) == {
        "municipalities",
        "reference_date",
        "dry_run",
        "accept_count_change",
        "accept_extract_rows",
    }


@pytest.mark.parametrize("dag_id", ["kbi_distribution", "kbi_correction_request", "kbi_pickup_monitor"])
def test_retries_are_bounded_and_back_off(dagbag, dag_id: str) -> None:
    """Catalogue 34: a fault that persists (an inbox that refuses writes) ends in a red task after
    a few spaced attempts, never in a retry storm against the transfer server or the relays."""
    for task in dagbag.dags[dag_id].tasks:
        assert task.retries <= 3, task.task_id
        if task.retries:
            assert task.retry_delay >= timedelta(seconds=30), task.task_id
    if dag_id == "kbi_distribution":  # 285 deliveries may fail at once when the server is away
        deliver = dagbag.dags[dag_id].get_task("deliver")
        assert deliver.retry_exponential_backoff and deliver.max_retry_delay <= timedelta(minutes=10)


def test_deliveries_at_once_stay_within_the_servers_handshake_limit(dagbag) -> None:
    """Each delivery opens its own SSH session: never more at once than the transfer server lets
    authenticate at once before it drops handshakes (the first number of MaxStartups)."""
    deliver = dagbag.dags["kbi_distribution"].get_task("deliver")
    sshd = (ROOT / "deploy" / "sftp" / "sshd_config").read_text().splitlines()
    (start_limit,) = [line.split()[1].split(":")[0] for line in sshd if line.startswith("MaxStartups ")]
    assert 1 < deliver.max_active_tis_per_dagrun <= int(start_limit)


@pytest.mark.parametrize(
    "conf",
    [
        {"municipalities": ["4402"]},
        {"municipalities": ["44021", "44021"]},
        {"municipalities": "44021"},
        {"reference_date": "2026-13-45"},
        {"reference_date": "15/01/2026"},
        {"dry_run": "yes"},
        {"accept_extract_rows": 0},
        {"accept_extract_rows": "2000000"},
    ],
)
def test_distribution_params_reject_bad_input(dagbag, conf: dict) -> None:
    """The trigger form and the REST API refuse these before a run exists (interfaces.md §4)."""
    import copy

    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dagbag.dags["kbi_distribution"].params)
    with pytest.raises(ParamValidationError):
        for key, value in conf.items():
            params[key] = value
        params.validate()


def test_distribution_params_accept_good_input(dagbag) -> None:
    import copy

    params = copy.deepcopy(dagbag.dags["kbi_distribution"].params)
    params["municipalities"] = ["44021", "11002"]
    params["reference_date"] = "2026-01-15"
    params["dry_run"] = True
    params["accept_extract_rows"] = 2_000_000
    assert params.validate() == {
        "municipalities": ["44021", "11002"],
        "reference_date": "2026-01-15",
        "dry_run": True,
        "accept_count_change": [],
        "accept_extract_rows": 2_000_000,
    }


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_fast_and_light(dag_file: Path) -> None:
    """No heavy work at DAG-file import time: the dag-processor parses these files every few
    seconds and every task process parses its DAG again."""
    probe = textwrap.dedent(
        f"""
        import sys, time, runpy
        sys.path[:0] = [{str(ROOT / "plugins")!r}, {str(ROOT)!r}]
        import airflow.sdk  # Airflow's own import is paid once per process, not per DAG file
        from airflow.sdk import dag, task, Param
        before = set(sys.modules)
        t = time.perf_counter()
        runpy.run_path({str(dag_file)!r})
        took = time.perf_counter() - t
        heavy = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in {HEAVY!r} or m in {HEAVY!r})
        print(f"{{took:.3f}}", ",".join(heavy))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    took, _, heavy = out.stdout.strip().splitlines()[-1].partition(" ")
    assert heavy == "", f"{dag_file.name} imports heavy modules at parse time: {heavy}"
    assert float(took) < 1.0, f"{dag_file.name} took {took} s to import"
