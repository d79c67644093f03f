"""The distributed path for real, without Docker: CeleryExecutor on the CI's PostgreSQL and Redis.

The api-server, scheduler, dag-processor and a Celery worker run as processes (demo.stack) on a
fresh PostgreSQL database (metadata, Celery results, ledger and quarantine) and a Redis database
of their own; kbi_distribution is triggered through the REST API as an operator would, and every
delivered file is decrypted as its municipality would and compared with the selection rules.
The worker's log and Celery's result table show that the tasks ran on the worker, not in the
scheduler. Everything started is stopped, the database dropped and the Redis database flushed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date
from pathlib import Path
from urllib.parse import quote

import pytest

from demo import __main__ as demo_cli
from demo import environment as env
from demo import keys
from demo.stack import Stack, free_port, paged
from kbi import registry
from tests.celery import stack as celery_stack
from tests.e2e import conftest as e2e
from tests.e2e import oracle

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(900)]

# The session's key pairs (RSA-3072 takes a while to make), shared with the e2e tests.
key_cache = e2e.key_cache

FILE_NAME = re.compile(r"inburgeraars_(\d{5})_(\d{4}-\d{2}-\d{2})\.csv\.gpg")
DAG_TASKS = (
    "create_staging",
    "plan",
    "extract",
    "check_quality",
    "partition",
    "deliver",
    "summarise",
    "remove_staging",
)
CHAIN_SECRET = "celery-test-chain-secret"


def _sms_passphrase(places: env.Places, phone: str, file_name: str) -> str:
    for path in sorted(places.sms_outbox.glob("*.json")):
        payload = json.loads(path.read_text())["payload"]
        message = payload["message"]
        if payload.get("to") == phone and file_name in message and "wachtwoord" in message:
            return message.split(f"{file_name}: ", 1)[1].split(" ", 1)[0]
    raise AssertionError(f"no passphrase SMS for {file_name}")


def _decrypt(places: env.Places, recipient: registry.Recipient, path: Path) -> bytes:
    if recipient.encryption.mode == "pubkey":
        return keys.decrypt(places.keys / f"{recipient.nis_code}.secret.asc", path.read_bytes())
    phone = recipient.contacts.sms[0]
    return keys.decrypt(None, path.read_bytes(), _sms_passphrase(places, phone, path.name))


def _task_instances(stack: Stack, run_id: str = "~", dag_id: str = demo_cli.DAG_ID) -> list[dict]:
    """The task instances of a run; ``"~"`` for any run (and any DAG)."""
    url = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='~')}/taskInstances"
    with stack.client() as client:
        return paged(client, url, "task_instances")


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def test_celery_workers_deliver_the_yearly_lists(tmp_path: Path, key_cache: Path) -> None:
    import sqlalchemy as sa

    from kbi import db
    from kbi.ledger import Ledger

    today = e2e.brussels_today()
    places = e2e.stack_world(tmp_path / "demo", key_cache, seed=7)

    with celery_stack.backends() as backends:
        stack = Stack(places)
        try:
            ports = stack.start_servers()
            stack.start_airflow(
                ports,
                executor="CeleryExecutor",
                db_url=backends.db_url,
                broker_url=backends.broker_url,
                extra_env={
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
                    # Bound on all interfaces when enabled: never the fixed default 8974.
                    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
                    # The ledger and the quarantine on PostgreSQL, as in production: two worker
                    # processes append to the one hash chain at the same time.
                    **backends.database.agency_connections(CHAIN_SECRET),
                },
            )
            stack.wait_healthy()
            run_id, state = demo_cli.trigger_and_follow(stack, {})
            tis = _task_instances(stack, run_id)
            # Every DAG is unpaused: kbi_pickup_monitor also runs when the stack starts after its
            # daily 07:00 Brussels, on the same worker.
            all_tis = _task_instances(stack, "~", "~")
        finally:
            stack.stop()
        worker_log_path = places.run / "celery-worker.log"
        assert state == "success", f"run {state}; worker log ends:\n{_tail(worker_log_path)}"

        engine = db.engine(backends.db_url)
        try:
            ledger = Ledger(engine, CHAIN_SECRET.encode())
            assert ledger.dialect == "postgresql" and ledger.verify() is None
            assert len(ledger.deliveries_of_run(run_id)) == len(e2e.RECEIVING)
            by_status = sa.text("SELECT status, count(*) FROM celery_taskmeta GROUP BY status")
            with engine.connect() as conn:
                celery_results = Counter(dict(conn.execute(by_status).all()))
        finally:
            db.dispose_all()

    # Cleaned up: the database is gone and the Redis database is empty again.
    assert not celery_stack.database_exists(backends.database.name)
    assert celery_stack.redis_keys(backends.redis_db) == 0

    # The tasks ran on the Celery worker: it logged each workload it received, Celery recorded
    # one result per try, and every task instance went through the default queue.
    worker_log = worker_log_path.read_text(errors="replace")
    # The worker imported the task modules before its pool forked (kbi.celery_config), so its
    # task processes inherit them; the scheduler, which reads the same Celery configuration,
    # did not import them.
    assert re.search(r"Preloaded \d+ task module\(s\)", worker_log), "the worker did not preload"
    assert "Could not preload" not in worker_log
    assert "Preloaded" not in (places.run / "scheduler.log").read_text(errors="replace")
    executed = [line for line in worker_log.splitlines() if "Executing workload in Celery" in line]
    for task_id in DAG_TASKS:
        assert any(f"task_id='{task_id}'" in line for line in executed), f"{task_id} not run by the worker"
    ran = [ti for ti in tis if ti["start_date"]]
    assert {ti["task_id"] for ti in ran} == set(DAG_TASKS)
    assert len([ti for ti in ran if ti["task_id"] == "deliver"]) == len(e2e.RECEIVING)
    assert all(ti["state"] == "success" and ti["queue"] == "default" and ti["hostname"] for ti in ran)
    # One workload and one Celery result per try of any task instance, whatever its DAG.
    tries = sum(ti["try_number"] for ti in all_tis if ti["start_date"])
    assert tries >= sum(ti["try_number"] for ti in ran)
    assert len(executed) == tries
    assert celery_results == Counter({"SUCCESS": tries})

    # Every receiving municipality has exactly its own file, and nobody else has one.
    reg = registry.load(places.registry)
    server_files = sorted(p for p in places.sftp_root.rglob("*") if p.is_file())
    by_nis = {p.parent.parent.name: p for p in server_files}
    assert len(server_files) == len(by_nis) == len(e2e.RECEIVING)
    assert set(by_nis) == set(e2e.RECEIVING)
    fields = {nis: reg.recipients[nis].protocol.fields for nis in e2e.RECEIVING}
    reference_dates = set()
    for nis, path in by_nis.items():
        match = FILE_NAME.fullmatch(path.name)
        assert match and match.group(1) == nis and path.parent == places.inbox(nis), path
        reference_dates.add(match.group(2))
    assert len(reference_dates) == 1
    reference_date = date.fromisoformat(reference_dates.pop())
    expected, _ = oracle.expected_files(e2e.read_view(places.kbi_db), reference_date, today, fields)

    # Decrypted as each municipality would (secret key, or the passphrase from its SMS): the
    # protocol's columns, the rows of the selection rules.
    modes = Counter()
    for nis, path in by_nis.items():
        recipient = reg.recipients[nis]
        header, rows = oracle.parse_csv(_decrypt(places, recipient, path))
        assert tuple(header) == recipient.protocol.fields, f"{nis}: columns differ from its protocol"
        assert rows and Counter(rows) == Counter(expected[nis]), f"{nis}: rows differ from the rules"
        modes[recipient.encryption.mode] += 1
    assert modes["pubkey"] >= 1 and modes["passphrase"] >= 1
