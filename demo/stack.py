"""Start and stop the demo's processes: the three embedded servers and Airflow's components.

Each process runs in its own session (process group) with its output in ``var/demo/run/*.log``,
so stopping it stops its children too (Airflow's scheduler forks executors and task supervisors).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from demo.environment import Places, airflow_env, connection_env, secrets_of

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 20) -> None:
        if not self.popen or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)
        # Children that outlived their leader (task supervisors) share its process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)


@dataclass
class Stack:
    places: Places
    processes: list[Process] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    api_port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        proc = Process(name, argv, env, self.places.run / f"{name}.log")
        proc.start()
        self.processes.append(proc)
        return proc

    def start_servers(self) -> dict[str, int]:
        """The transfer server, the mail relay and the SMS gateway of the demo."""
        run = self.places.run
        run.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd() / "plugins"), str(Path.cwd())])}
        specs = {
            "sftp": ["sftp", "--root", str(self.places.sftp_root), "--keys-dir", str(self.places.ssh_keys)],
            "mail": ["mail", "--outdir", str(self.places.mail_outbox)],
            "sms": ["sms", "--outdir", str(self.places.sms_outbox)],
        }
        ports: dict[str, int] = {}
        for name, args in specs.items():
            port_file = run / f"{name}.port"
            port_file.unlink(missing_ok=True)
            proc = self._spawn(
                name, [sys.executable, "-m", "demo.servers", *args, "--port-file", str(port_file)], env
            )
            deadline = time.monotonic() + 30
            while not port_file.exists():
                if not proc.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"the demo {name} server did not start; see {proc.log}")
                time.sleep(0.05)
            ports[name] = int(port_file.read_text().strip())
        return ports

    def start_airflow(
        self,
        ports: dict[str, int],
        api_port: int | None = None,
        *,
        executor: str = "kbi.executor.PreloadingLocalExecutor",
        db_url: str | None = None,
        broker_url: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """api-server, scheduler, dag-processor; with the CeleryExecutor also a Celery worker.

        ``extra_env`` is applied last (e.g. connections on another database, worker concurrency).
        """
        self.api_port = api_port or free_port()
        self.env = {
            **os.environ,
            **airflow_env(
                self.places,
                api_port=self.api_port,
                log_server_port=free_port(),
                executor=executor,
                db_url=db_url,
                broker_url=broker_url,
            ),
            **connection_env(
                self.places, sftp_port=ports["sftp"], smtp_port=ports["mail"], sms_port=ports["sms"]
            ),
            **(extra_env or {}),
        }
        airflow = str(BIN / "airflow")
        subprocess.run([airflow, "db", "migrate"], env=self.env, check=True, capture_output=True, timeout=300)
        self._spawn("api-server", [airflow, "api-server", "--port", str(self.api_port)], self.env)
        self._spawn("scheduler", [airflow, "scheduler"], self.env)
        self._spawn("dag-processor", [airflow, "dag-processor"], self.env)
        if executor == "CeleryExecutor":
            self._spawn("celery-worker", [airflow, "celery", "worker"], self.env)

    def wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for p in self.processes:
                if not p.alive():
                    raise RuntimeError(f"{p.name} stopped; see {p.log}")
            try:
                health = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
                states = {k: (v or {}).get("status") for k, v in health.items()}
                last = str(states)
                if all(states.get(k) == "healthy" for k in ("metadatabase", "scheduler", "dag_processor")):
                    # The workers' execution API too: its first request builds its versioned
                    # routes (~2.5 s here), paid now rather than by a run's first task, as on a
                    # long-running production api-server (docker-compose's health check does so).
                    httpx.get(f"{self.base_url}/execution/health", timeout=60).raise_for_status()
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(1)
        raise RuntimeError(f"Airflow did not become healthy in {timeout:.0f} s ({last})")

    def token(self) -> str:
        password = secrets_of(self.places)["admin_password"]
        r = httpx.post(
            f"{self.base_url}/auth/token", json={"username": "admin", "password": password}, timeout=10
        )
        r.raise_for_status()
        return r.json()["access_token"]

    def client(self) -> httpx.Client:
        """A client of the REST API, logged in as the demo's admin."""
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.token()}"}, timeout=30
        )

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()


# --- the REST API calls the demo, the benchmark and the stack tests share -----------------------------


def paged(client: httpx.Client, url: str, key: str, page: int = 100) -> list[dict[str, Any]]:
    """Every item of a paged list endpoint (``key``: the list's name in the response)."""
    items: list[dict[str, Any]] = []
    while True:
        body = client.get(url, params={"limit": page, "offset": len(items)}).json()
        items += body.get(key, [])
        if len(items) >= body.get("total_entries", 0) or not body.get(key):
            return items


def run_state(client: httpx.Client, dag_id: str, run_id: str) -> str:
    """A run's state, for a loop that polls it. Airflow's GET of one run lists the run's DAG
    versions by loading every task instance of it (in a 285-municipality run polled every two
    seconds: 4.8 s of the api-server's CPU, taken from the run it watches); its list endpoint
    fetches them in one query."""
    resp = client.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"run_id_pattern": run_id, "limit": 10})
    resp.raise_for_status()
    for run in resp.json()["dag_runs"]:
        if run["dag_run_id"] == run_id:  # the pattern is a substring search
            return run["state"]
    raise LookupError(f"no run {run_id} of {dag_id}")


def wait_for_dag(client: httpx.Client, dag_id: str, timeout: float = 180) -> None:
    """Until the dag-processor has parsed ``dag_id``; a DAG file that fails to import says why."""
    deadline = time.monotonic() + timeout
    while client.get(f"/api/v2/dags/{dag_id}").status_code != 200:
        errors = client.get("/api/v2/importErrors").json().get("import_errors", [])
        if errors:
            raise RuntimeError("the DAG files do not import:\n" + "\n".join(e["stack_trace"] for e in errors))
        if time.monotonic() > deadline:
            raise RuntimeError(f"{dag_id} was not parsed within {timeout:.0f} s; see the dag-processor's log")
        time.sleep(0.5)


def trigger(client: httpx.Client, dag_id: str, conf: dict[str, Any], parse_timeout: float = 180) -> str:
    """Trigger a run of ``dag_id`` (once it is parsed) with ``conf``; returns its run id."""
    wait_for_dag(client, dag_id, parse_timeout)
    for attempt in range(5):  # SQLite may be busy for a moment while the scheduler writes
        resp = client.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        if resp.status_code < 500:
            break
        time.sleep(2 * (attempt + 1))
    resp.raise_for_status()
    return resp.json()["dag_run_id"]


@contextlib.contextmanager
def running(
    places: Places, with_airflow: bool = True, api_port: int | None = None, **airflow_options: Any
) -> Iterator[Stack]:
    """The demo's servers and Airflow; ``airflow_options`` go to ``Stack.start_airflow``."""
    stack = Stack(places)
    try:
        ports = stack.start_servers()
        if with_airflow:
            stack.start_airflow(ports, api_port, **airflow_options)
            stack.wait_healthy()
        yield stack
    finally:
        stack.stop()
