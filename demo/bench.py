"""``make bench``: kbi_distribution through Airflow, side by side with the floor of this machine.

python -m demo.bench [--sizes 25000,1000000] [--small] [--out var/bench] [--seed 2026]
(also ``python -m demo bench …``)

Per size, in a fresh ``<out>/<size>/``: a seeded synthetic KBI (SQLite), a registry with every
Flemish municipality eligible (pubkey:passphrase about 2:1), the demo stack (embedded SFTP, mail
and SMS servers; api-server, scheduler and dag-processor on the LocalExecutor), one run of
``kbi_distribution`` triggered through the REST API. Measured:

- the run: trigger → success from the dag run's ``queued_at``/``end_date``; every task instance
  (mapped ones included) from the REST API: queued, start, end, duration; from each task's log
  file the time spent in Airflow's pre-execute (DAG parse), execute and post-execute (XCom);
- memory: a thread polls ``/proc`` every 0.2 s. LocalExecutor titles its processes
  ``airflow worker -- LocalExecutor: <ti id>`` (the supervisor) and ``airflow worker -- <ti id>``
  (the forked task process, titled at task start), so each process maps to its task instance by
  the id the REST API returns. Peak RSS = max(VmRSS samples, last VmHWM read) of the task process;
  its private memory (USS, from smaps_rollup) is recorded too;
- scheduling overhead: the part of the run's wall time in which no task instance was running
  (the gaps between task instances), per task instance the latency ready → queued → started,
  and for a mapped stage its span minus the ideal parallel work (sum of durations / concurrency);
- the floor, after the run with Airflow stopped and only the servers up, in a separate process:
  one SQLite query into Arrow, the same checks vectorised (pandas on Arrow + numpy), pyarrow
  sort + slice + CSV bytes per municipality, gpg CLI (2 workers, ``--no-autostart``) with the
  same keys, one reused SFTP connection (TCP_NODELAY) to the same server, temp name + rename;
- the same code without Airflow (``demo.bench_direct``), after the floor, in a process of its
  own: the task bodies of kbi.airflow_tasks in their order, the deliveries ten at once on
  forked workers, on the same servers with a ledger of its own (the pipeline's files set aside
  in each inbox's ``../pipeline/``): its difference from the run is what Airflow adds;
- Great Expectations (``kbi.quality.gx_suite.validate``) against the same checks as plain
  vectorised pandas, each in its own process (time, import time, peak RSS).

Results: ``<out>/results.json`` and ``<out>/results.md``; the last lines printed are one
``BENCH rows=… municipalities=… pipeline_s=… floor_s=… ratio=… peak_rss_mb=…`` per size.
Only counts and timings are printed or written: never a name or a national number.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import resource
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from kbi import settings

if TYPE_CHECKING:  # imported where used: the floor and quality processes must start light
    from demo import environment as env

DAG_ID = "kbi_distribution"
DEFAULT_SIZES = (25_000, 1_000_000)
SMALL_ROWS = 3_000
SMALL_MUNICIPALITIES = 20
SAMPLE_INTERVAL_S = 0.2
POLL_S = 2.0
GPG_WORKERS = 2
RUN_TIMEOUT_S = 3 * 3600
TITLE = re.compile(r"^airflow worker -- (LocalExecutor[^:]*: )?([0-9a-f]{8}-[0-9a-f-]{27})")
PAGE = 100


def say(text: str = "") -> None:
    print(text, flush=True)


def _ts(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


# --- the world of one size ------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    label: str
    rows: int
    municipalities: int | None  # None: all 285 Flemish municipalities


def bench_recipients(limit: int | None) -> list[env.DemoRecipient]:
    """Every Flemish municipality (or an even spread of ``limit``), all eligible, no refusals.

    pubkey : passphrase ≈ 2 : 1; among the keys one in eight RSA-3072, the rest cv25519; one in
    four protocols lists the names (their files are larger and sorted by name). Decided by the
    municipality's place among all 285, so a smoke run and a full run pin the same key pairs."""
    from demo import environment as env
    from kbi import reference

    flemish = sorted(
        (m for m in reference.municipalities().values() if m.is_flemish), key=lambda m: m.nis_code
    )
    out = []
    for i, m in enumerate(flemish):
        mode = "passphrase" if i % 3 == 2 else "pubkey"
        kind = "rsa3072" if mode == "pubkey" and i % 8 == 0 else "cv25519"
        out.append(env.DemoRecipient(m.nis_code, m.name, mode=mode, key_kind=kind, with_names=i % 4 == 1))
    if limit is not None and limit < len(out):
        step = len(out) / limit
        out = [out[int(i * step)] for i in range(limit)]
    return out


def brussels_today() -> date:
    return datetime.now(ZoneInfo(settings.TIMEZONE)).date()


def prepare(out: Path, size: Size, seed: int, today: date) -> tuple[env.Places, list[env.DemoRecipient]]:
    """A fresh directory with source, registry and inboxes; key pairs made once in ``out/keys``."""
    from demo import environment as env

    recipients = bench_recipients(size.municipalities)
    # Places(out).keys is out/keys: the key pairs are made there once and copied into each size.
    env.build_registry(env.Places(out), recipients, today)
    places = env.Places(out / size.label)
    if places.var_dir.exists():
        shutil.rmtree(places.var_dir)
    places.var_dir.mkdir(parents=True)
    shutil.copytree(out / "keys", places.keys, ignore=shutil.ignore_patterns("sftp"))
    t0 = time.monotonic()
    # In a child process: a million generated rows would otherwise stay in this process's
    # memory for the whole run, and every process it starts would inherit that high-water mark.
    counts = _child(["_source", str(places.var_dir), str(size.rows), str(seed), today.isoformat()])
    say(
        f"      source: {size.rows:,} rows ({counts['doelgroep_inburgeraar']:,} inburgeraars) "
        f"in {time.monotonic() - t0:.1f} s"
    )
    env.build_registry(places, recipients, today)
    codes = [r.nis_code for r in recipients]
    env.prepare_sftp_root(places, codes)
    for nis in codes:  # the floor uploads beside the pipeline's inbox, never over its files
        (places.sftp_root / nis / "floor").mkdir(parents=True, exist_ok=True)
    return places, recipients


# --- memory: /proc sampler ------------------------------------------------------------------------


@dataclass
class ProcRecord:
    pid: int
    kind: str  # task | supervisor | component
    key: str  # ti id, or the component's name
    first_seen: float
    last_seen: float
    rss_kb: int = 0
    hwm_kb: int = 0
    uss_kb: int = 0
    cpu_s: float = 0.0  # user + system CPU at the last sample
    cpu_first: float | None = None  # ... at the first (long-lived processes count the difference)
    children_cpu_s: float = 0.0  # of waited-for children: gpg under a task, tasks under a worker
    children_cpu_first: float | None = None


def _status_kb(pid: int) -> tuple[int, int]:
    rss = hwm = 0
    with open(f"/proc/{pid}/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith(b"VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def _uss_kb(pid: int) -> int:
    total = 0
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
        for line in fh:
            if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
                total += int(line.split()[1])
    return total


def _cpu_s(pid: int) -> tuple[float, float]:
    """(own, waited-for children's) user + system CPU seconds of a process."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def _postgres_cpu() -> tuple[float, dict[int, float]] | None:
    """CPU seconds of a PostgreSQL server on this machine (the metadata, the ledger and the
    quarantine of the run): its postmasters' own and that of the children they have reaped, and
    each live child's own. None if no server runs here. Backends come and go with connections
    (each task process opens its own), so only the two together account for all of them."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                if not fh.read(10).startswith(b"postgres: "):  # a backend's or helper's title
                    continue
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                parents[int(entry.name)] = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    postmasters = set(parents.values())
    if not postmasters:
        return None
    reaped = 0.0
    for pid in postmasters:
        with contextlib.suppress(OSError):
            reaped += sum(_cpu_s(pid))
    live = {}
    for pid in parents:
        with contextlib.suppress(OSError):
            live[pid] = _cpu_s(pid)[0]
    return reaped, live


def _postgres_cpu_between(
    start: tuple[float, dict[int, float]] | None, end: tuple[float, dict[int, float]] | None
) -> float | None:
    """Reaped between the two, plus what the children alive at the end used since the start."""
    if start is None or end is None:
        return None
    return end[0] - start[0] + sum(end[1].values()) - sum(start[1].values())


def _cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, for the average utilisation of the run."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class Sampler(threading.Thread):
    """Polls /proc; task processes are found by their process title (see the module docstring)."""

    def __init__(self, components: dict[int, str], interval: float = SAMPLE_INTERVAL_S):
        super().__init__(daemon=True, name="rss-sampler")
        self.components = components
        self.interval = interval
        self.records: dict[tuple[int, str], ProcRecord] = {}
        self._halt = threading.Event()
        self.samples = 0
        self.own_cpu_s = 0.0
        self._postgres_start: tuple[float, dict[int, float]] | None = None
        self.postgres_cpu_s: float | None = None

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)
        self.own_cpu_s = time.thread_time()  # what the measuring itself cost

    def start(self) -> None:
        self._postgres_start = _postgres_cpu()
        super().start()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
        self.sample()
        self.postgres_cpu_s = _postgres_cpu_between(self._postgres_start, _postgres_cpu())

    def sample(self) -> None:
        now = time.time()
        self.samples += 1
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    title = fh.read(200).replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            m = TITLE.match(title)
            if m:
                kind, key = ("supervisor" if m.group(1) else "task"), m.group(2)
            elif pid in self.components:
                kind, key = "component", self.components[pid]
            else:
                continue
            try:
                rss, hwm = _status_kb(pid)
                cpu, children_cpu = _cpu_s(pid)
                uss = _uss_kb(pid) if kind == "task" else 0
            except (OSError, IndexError, ValueError):
                continue  # the process ended between listing and reading
            rec = self.records.get((pid, key))
            if rec is None:
                rec = self.records[(pid, key)] = ProcRecord(pid, kind, key, now, now)
            if kind == "task":
                rec.kind = "task"  # a forked child carries its supervisor's title until it starts
            rec.last_seen = now
            rec.rss_kb = max(rec.rss_kb, rss)
            rec.hwm_kb = max(rec.hwm_kb, hwm)
            rec.uss_kb = max(rec.uss_kb, uss)
            rec.cpu_s = max(rec.cpu_s, cpu)
            rec.cpu_first = cpu if rec.cpu_first is None else rec.cpu_first
            rec.children_cpu_s = max(rec.children_cpu_s, children_cpu)
            if rec.children_cpu_first is None:
                rec.children_cpu_first = children_cpu

    def by_ti(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for rec in self.records.values():
            if rec.kind not in ("task", "supervisor"):
                continue
            d = out.setdefault(rec.key, {})
            if rec.kind == "task":
                # The task process is forked per task instance: its high-water mark is its own.
                d["task_peak_rss_mb"] = max(d.get("task_peak_rss_mb", 0), max(rec.rss_kb, rec.hwm_kb) / 1024)
                d["task_uss_mb"] = max(d.get("task_uss_mb", 0), rec.uss_kb / 1024)
                d["task_cpu_s"] = d.get("task_cpu_s", 0) + rec.cpu_s
                d["task_children_cpu_s"] = d.get("task_children_cpu_s", 0) + rec.children_cpu_s
                d["proc_first_seen"] = min(d.get("proc_first_seen", rec.first_seen), rec.first_seen)
                d["proc_last_seen"] = max(d.get("proc_last_seen", rec.last_seen), rec.last_seen)
            else:
                # The LocalExecutor worker lives on across tasks: only its samples count, not VmHWM.
                d["supervisor_rss_mb"] = max(d.get("supervisor_rss_mb", 0), rec.rss_kb / 1024)
                d["supervisor_cpu_s"] = d.get("supervisor_cpu_s", 0) + rec.cpu_s - (rec.cpu_first or 0)
        return out

    def cpu_by_kind(self) -> dict[str, float]:
        """CPU seconds spent during the run per kind of process (components by name).

        A task process's CPU after its last sample would be lost (up to 0.2 s of its life), but its
        LocalExecutor worker waits for it: the CPU a worker reaped during the run is all of its task
        processes' and their gpg's. That is the figure for the task processes when it is larger."""
        out: dict[str, float] = {}
        reaped: dict[int, tuple[float, float]] = {}  # worker pid → (children CPU first, last)
        for rec in self.records.values():
            if rec.kind == "task":
                out["task processes"] = out.get("task processes", 0) + rec.cpu_s
                out["their children (gpg)"] = out.get("their children (gpg)", 0) + rec.children_cpu_s
            else:
                name = "supervisors" if rec.kind == "supervisor" else rec.key
                out[name] = out.get(name, 0) + rec.cpu_s - (rec.cpu_first or 0)
            if rec.kind == "supervisor":
                first, last = reaped.get(rec.pid, (rec.children_cpu_first or 0.0, 0.0))
                reaped[rec.pid] = (min(first, rec.children_cpu_first or 0.0), max(last, rec.children_cpu_s))
        with_gpg = sum(last - first for first, last in reaped.values())
        sampled = out.get("task processes", 0) + out.get("their children (gpg)", 0)
        if with_gpg > sampled:
            out["task processes"] = with_gpg - out.get("their children (gpg)", 0)
        if self.postgres_cpu_s is not None:
            out["postgresql"] = self.postgres_cpu_s
        return {k: round(v, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}

    def components_peak(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for rec in self.records.values():
            if rec.kind == "component":
                out[rec.key] = round(max(out.get(rec.key, 0), rec.rss_kb / 1024), 1)
        return out


# --- the run through Airflow --------------------------------------------------------------------


def run_conf(reference_date: date, rows: int) -> dict[str, Any]:
    """The run's params, for the pipeline and the run without Airflow alike."""
    params: dict[str, Any] = {"reference_date": reference_date.isoformat()}
    if rows > settings.load().max_extract_rows:  # a size chosen by whoever runs the bench
        params["accept_extract_rows"] = rows
    return params


def trigger_and_wait(client: Any, conf: dict[str, Any], timeout: float = RUN_TIMEOUT_S) -> dict[str, Any]:
    """Trigger through the REST API and poll the run quietly (progress as counts only)."""
    from demo.stack import paged, run_state, trigger

    run_id = trigger(client, DAG_ID, conf)
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"
    started = time.monotonic()
    last_print = started
    while True:
        if run_state(client, DAG_ID, run_id) in ("success", "failed"):
            run = client.get(path).json()
            run["client_wall_s"] = time.monotonic() - started
            say(f"      run {run['state']} after {run['client_wall_s']:.1f} s")
            return run
        now = time.monotonic()
        if now - last_print >= 15:
            last_print = now
            tis = paged(client, f"{path}/taskInstances", "task_instances", PAGE)
            states: dict[str, int] = {}
            for ti in tis:
                states[ti["state"] or "none"] = states.get(ti["state"] or "none", 0) + 1
            running = sorted({ti["task_id"] for ti in tis if ti["state"] == "running"})
            say(
                f"      {now - started:5.0f} s: "
                + ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
                + (f" (running: {', '.join(running)})" if running else "")
            )
        if now - started > timeout:
            raise RuntimeError(f"the run did not finish within {timeout:.0f} s")
        # The wall time is read from the run's own timestamps, so a slow poll loses nothing and
        # keeps the observer's load on the api-server (which runs the tasks' API too) small.
        time.sleep(POLL_S)


def task_log_phases(logs: Path, run_id: str, ti: dict[str, Any]) -> dict[str, float] | None:
    """Pre-execute (DAG parse), execute and post-execute (XCom) of one try, from its log file.

    Only timestamps and Airflow's own fixed markers are read: never a message of the task."""
    folder = logs / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={ti['task_id']}"
    if ti["map_index"] >= 0:
        folder = folder / f"map_index={ti['map_index']}"
    path = folder / f"attempt={ti.get('try_number') or 1}.log"
    if not path.is_file():
        return None
    first = pre_end = exec_end = last = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
            at = _ts(rec["timestamp"])
        except (ValueError, KeyError, TypeError):
            continue
        event = rec.get("event")
        first = at if first is None else first
        last = at
        if event == "::endgroup::" and pre_end is None:
            pre_end = at
        elif event == "::group::Post Execute" and exec_end is None:
            exec_end = at
    if first is None or pre_end is None or last is None:
        return None
    exec_end = exec_end or last
    return {
        "log_first": first,
        "pre_execute_s": pre_end - first,
        "execute_s": exec_end - pre_end,
        "post_execute_s": last - exec_end,
        "log_last": last,
    }


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None and cur_s is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None and cur_s is not None:
        total += cur_e - cur_s
    return total


def _max_concurrency(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = cur = 0
    for _, step in events:
        cur += step
        best = max(best, cur)
    return best


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "median": None, "max": None}
    return {
        "mean": _r(statistics.fmean(values)),
        "median": _r(statistics.median(values)),
        "max": _r(max(values)),
    }


def analyse_run(
    run: dict[str, Any], tis: list[dict[str, Any]], tasks: list[dict[str, Any]], per_ti: dict[str, dict]
) -> dict[str, Any]:
    """Stages, latencies and overheads of one run from its task instances."""
    upstream: dict[str, set[str]] = {t["task_id"]: set() for t in tasks}
    for t in tasks:
        for down in t.get("downstream_task_ids") or []:
            upstream.setdefault(down, set()).add(t["task_id"])
    queued_at = _ts(run.get("queued_at")) or _ts(run["start_date"])
    run_start = _ts(run["start_date"])
    run_end = _ts(run["end_date"])
    assert queued_at is not None and run_end is not None and run_start is not None
    done = [ti for ti in tis if ti.get("start_date") and ti.get("end_date")]
    by_task: dict[str, list[dict[str, Any]]] = {}
    for ti in done:
        by_task.setdefault(ti["task_id"], []).append(ti)
    end_of = {k: max(_ts(t["end_date"]) or 0 for t in v) for k, v in by_task.items()}

    enriched = []
    for ti in done:
        start, end = _ts(ti["start_date"]), _ts(ti["end_date"])
        assert start is not None and end is not None
        ups = [end_of[u] for u in upstream.get(ti["task_id"], ()) if u in end_of]
        ready = max(ups) if ups else run_start
        queued = _ts(ti.get("queued_when")) or start
        mem = per_ti.get(ti["id"], {})
        phases = ti.get("_phases") or {}
        proc_start = mem.get("proc_first_seen")
        enriched.append(
            {
                "task_id": ti["task_id"],
                "map_index": ti["map_index"],
                "state": ti["state"],
                "try_number": ti.get("try_number"),
                "start": start,
                "end": end,
                "duration_s": end - start,
                "ready_to_queued_s": max(0.0, queued - ready),
                "queued_to_start_s": max(0.0, start - queued),
                "start_to_process_s": (proc_start - start) if proc_start else None,
                "pre_execute_s": phases.get("pre_execute_s"),
                "execute_s": phases.get("execute_s"),
                "post_execute_s": phases.get("post_execute_s"),
                "after_log_s": (end - phases["log_last"]) if phases.get("log_last") else None,
                "before_log_s": (phases["log_first"] - start) if phases.get("log_first") else None,
                "peak_rss_mb": mem.get("task_peak_rss_mb"),
                "uss_mb": mem.get("task_uss_mb"),
                "cpu_s": mem.get("task_cpu_s"),
                "children_cpu_s": mem.get("task_children_cpu_s"),
                "supervisor_cpu_s": mem.get("supervisor_cpu_s"),
                "supervisor_rss_mb": mem.get("supervisor_rss_mb"),
            }
        )

    stages = []
    order = sorted(by_task, key=lambda k: min(_ts(t["start_date"]) or 0 for t in by_task[k]))
    for name in order:
        rows = [e for e in enriched if e["task_id"] == name]
        intervals = [(e["start"], e["end"]) for e in rows]
        first, last = min(s for s, _ in intervals), max(e for _, e in intervals)
        ups = [end_of[u] for u in upstream.get(name, ()) if u in end_of]
        ready = max(ups) if ups else run_start
        durations = [e["duration_s"] for e in rows]
        busy = _union_length(intervals)
        conc = _max_concurrency(intervals)
        work = sum(durations)
        execute = [e["execute_s"] for e in rows if e["execute_s"] is not None]
        overhead_per_ti = [
            e["duration_s"] - e["execute_s"] for e in rows if e["execute_s"] is not None
        ]  # process start, DAG parse, XCom, supervisor: Airflow's own cost inside a task instance
        peaks = [e["peak_rss_mb"] for e in rows if e["peak_rss_mb"]]
        uss = [e["uss_mb"] for e in rows if e["uss_mb"]]
        stages.append(
            {
                "stage": name,
                "task_instances": len(rows),
                "wall_s": _r(last - first),
                "sum_duration_s": _r(work),
                "sum_execute_s": _r(sum(execute)) if execute else None,
                "sum_task_overhead_s": _r(sum(overhead_per_ti)) if overhead_per_ti else None,
                "gap_before_s": _r(first - ready),
                "max_concurrency": conc,
                # For a mapped stage: what its span costs beyond the work spread over its slots.
                "span_minus_ideal_s": _r((last - first) - work / max(conc, 1)),
                "idle_within_s": _r((last - first) - busy),
                "duration": _stats(durations),
                "execute": _stats(execute),
                "ready_to_queued": _stats([e["ready_to_queued_s"] for e in rows]),
                "queued_to_start": _stats([e["queued_to_start_s"] for e in rows]),
                "peak_rss_mb": _r(max(peaks), 1) if peaks else None,
                "peak_uss_mb": _r(max(uss), 1) if uss else None,
                "cpu_s": _r(sum(e["cpu_s"] or 0 for e in rows), 2),
                "children_cpu_s": _r(sum(e["children_cpu_s"] or 0 for e in rows), 2),
            }
        )
    wall = run_end - queued_at
    busy_all = _union_length([(e["start"], e["end"]) for e in enriched])
    largest = max(enriched, key=lambda e: e["peak_rss_mb"] or 0, default=None)
    all_overheads = [e["duration_s"] - e["execute_s"] for e in enriched if e["execute_s"] is not None]
    return {
        "run_id": run["dag_run_id"],
        "state": run["state"],
        "wall_s": _r(wall),
        "client_wall_s": _r(run.get("client_wall_s")),
        "queued_to_run_start_s": _r(run_start - queued_at),
        "first_task_start_s": _r(min((e["start"] for e in enriched), default=run_start) - queued_at),
        "last_task_end_to_success_s": _r(run_end - max((e["end"] for e in enriched), default=run_end)),
        # Time of the run in which no task instance was running: Airflow between task instances.
        "idle_between_tasks_s": _r(wall - busy_all),
        "task_overhead_sum_s": _r(sum(all_overheads)) if all_overheads else None,
        "task_instances": len(enriched),
        "largest_task": (
            {k: largest[k] for k in ("task_id", "map_index", "peak_rss_mb", "uss_mb")} if largest else None
        ),
        "peak_rss_mb": _r(largest["peak_rss_mb"], 1) if largest and largest["peak_rss_mb"] else None,
        "stages": stages,
        "task_instance_detail": [
            {k: (_r(v) if isinstance(v, float) else v) for k, v in e.items() if k not in ("start", "end")}
            for e in enriched
        ],
    }


def run_pipeline(
    places: env.Places, stack: Any, reference_date: date, sampler: Sampler, rows: int
) -> dict[str, Any]:
    from demo.stack import paged, wait_for_dag

    client = stack.client()
    wait_for_dag(client, DAG_ID)
    conf = run_conf(reference_date, rows)
    busy0, total0 = _cpu_busy()
    sampler.start()
    try:
        run = trigger_and_wait(client, conf)
    finally:
        sampler.stop()
    busy1, total1 = _cpu_busy()
    run_id = run["dag_run_id"]
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"
    run = client.get(path).json() | {"client_wall_s": run["client_wall_s"]}
    tis = paged(client, f"{path}/taskInstances", "task_instances", PAGE)
    tasks = client.get(f"/api/v2/dags/{DAG_ID}/tasks").json().get("tasks", [])
    logs = places.airflow_home / "logs"
    for ti in tis:
        ti["_phases"] = task_log_phases(logs, run_id, ti)
    result = analyse_run(run, tis, tasks, sampler.by_ti())
    result["cpu_utilisation"] = _r((busy1 - busy0) / max(total1 - total0, 1), 2)
    # Jiffies of all CPUs together: the machine's CPU seconds during the run, to set beside the kinds.
    result["cpu_s_machine"] = _r((busy1 - busy0) / os.sysconf("SC_CLK_TCK"), 1)
    result["cpu_s_by_process"] = sampler.cpu_by_kind()
    result["components_peak_rss_mb"] = sampler.components_peak()
    result["sampler_samples"] = sampler.samples
    result["sampler_cpu_s"] = _r(sampler.own_cpu_s, 2)
    from kbi.pipeline import safe_name

    summary_path = places.reports / safe_name(run_id) / "summary.json"
    if summary_path.exists():
        s = json.loads(summary_path.read_text())
        result["summary"] = {
            "municipalities": s["municipalities"],
            "rows_extracted": s["rows"]["extracted"],
            "rows_quarantined": s["rows"]["quarantined"],
            "rows_delivered": s["rows"]["delivered"],
            "delivery_seconds": s.get("delivery_seconds", {}),
        }
    return result


# --- the floor: the same stages without Airflow (run in its own process: python -m demo.bench _floor)


FLOOR_SQL = (
    "SELECT insz, doelgroep, familienaam, voornamen, nis_code_hoofdverblijf, ingeschreven_rijksregister, "
    "contract_ondertekend_op, attest_behaald_op, overleden_op FROM kbi_inburgeraar "
    "WHERE doelgroep = 'inburgeraar'"
)
DATE_COLS = ("contract_op", "attest_op", "overleden_op")
CHECK_ORDER = (
    "insz_format",
    "insz_checksum",
    "insz_birth_date",
    "insz_duplicate",
    "bis_registered",
    "name_missing",
    "name_invalid",
    "nis_unknown",
    "value_unparsed",
    "date_in_future",
)
# The rules' patterns (literal characters, so RE2 and Python's re read them alike).
BLANK = "^[ \t\r\n\f\v\u00a0\u2007\u202f]*$"
CONTROL = "[\x00-\x1f\x7f-\x9f\u2028\u2029]"
BIS_MONTH = "^[0-9]{2}[2-5]"
FICTITIOUS_PREFIXES = (1, 2001, 4001)  # 000001, 002001, 004001: birth date wholly unknown
DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
HEADER_NAMES = "rijksregisternummer;naam;voornaam;inburgeringscontract_ondertekend;attest_inburgering_behaald"
HEADER_PLAIN = "rijksregisternummer;inburgeringscontract_ondertekend;attest_inburgering_behaald"
BOM = "\ufeff".encode()
PASSPHRASE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # noqa: S105 - an alphabet, not a secret


def floor_extract(db: Path) -> Any:
    """One query; columns transposed once; types normalised like the pipeline (bad value → NULL)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute(FLOOR_SQL).fetchall()
    finally:
        con.close()
    cols = list(zip(*rows, strict=True)) if rows else [()] * 9
    del rows
    text = [pa.array(c, pa.string()) for c in (cols[0], cols[1], cols[2], cols[3], cols[4])]
    unparsed = pa.nulls(len(text[0]), pa.string())
    try:
        flag = pa.array(cols[5], pa.int64())
        bad_flag = pc.fill_null(pc.invert(pc.is_in(flag, pa.array([0, 1]))), False)
        ingeschreven = pc.if_else(bad_flag, None, pc.equal(flag, 1))
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not 0/1 integers: read as text
        raw = pc.utf8_lower(pa.array([None if v is None else str(v) for v in cols[5]], pa.string()))
        ingeschreven = pc.if_else(
            pc.is_in(raw, pa.array(["1", "t", "true"])),
            True,
            pc.if_else(pc.is_in(raw, pa.array(["0", "f"])), False, None),
        )
        bad_flag = pc.and_(pc.is_valid(raw), pc.is_null(ingeschreven))
    unparsed = pc.if_else(bad_flag, "ingeschreven", unparsed)
    dates = []
    for name, values in zip(DATE_COLS, cols[6:9], strict=True):
        raw = pa.array(values, pa.string())
        try:
            parsed = raw.cast(pa.date32())  # strict: an impossible day fails the whole cast
        except pa.ArrowInvalid:
            stamp = pc.strptime(
                pc.utf8_slice_codeunits(raw, 0, 10), format="%Y-%m-%d", unit="s", error_is_null=True
            )
            same = pc.equal(pc.strftime(stamp, format="%Y-%m-%d"), pc.utf8_slice_codeunits(raw, 0, 10))
            parsed = pc.if_else(pc.fill_null(same, False), stamp.cast(pa.date32()), None)
        bad = pc.and_(pc.is_valid(raw), pc.is_null(parsed))
        unparsed = pc.if_else(
            bad, pc.coalesce(pc.binary_join_element_wise(unparsed, name, ","), name), unparsed
        )
        dates.append(parsed)
    return pa.table(
        {
            "insz": text[0],
            "doelgroep": text[1],
            "familienaam": text[2],
            "voornamen": text[3],
            "nis_code": text[4],
            "ingeschreven": ingeschreven.cast(pa.bool_()),
            "contract_op": dates[0],
            "attest_op": dates[1],
            "overleden_op": dates[2],
            "unparsed": unparsed,
        }
    )


def plain_checks(table: Any, today: date, known: frozenset[str], old: frozenset[str]) -> dict[str, Any]:
    """The blocking checks of kbi.quality.checks, written plainly: pandas on Arrow + numpy.

    Returns the mask of rows that fail any check and the rows per first failing check."""
    import numpy as np
    import pandas as pd

    df = table.to_pandas(types_mapper=pd.ArrowDtype)

    def b(series: Any) -> Any:
        return series.fillna(False).to_numpy(dtype=bool)

    insz = df["insz"]
    well = b(insz.str.contains("^[0-9]{11}$", regex=True))
    v = insz.where(pd.Series(well, index=insz.index), "00000000000").astype("int64[pyarrow]").to_numpy()
    first9, check = v // 100, v % 100
    yy, mm_raw, dd = first9 // 10_000_000, first9 // 100_000 % 100, first9 // 1000 % 100
    old_ok = (97 - first9 % 97) == check
    new_ok = (yy + 2000 <= today.year) & ((97 - (2_000_000_000 + first9) % 97) == check)
    checksum_ok = (old_ok | new_ok) & well
    mm = mm_raw % 20
    year = np.where(new_ok, 2000, 1900) + yy
    valid_month = (mm >= 1) & (mm <= 12)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    dim = np.asarray(DAYS_IN_MONTH)[np.clip(mm, 0, 12)] + (leap & (mm == 2))
    born = year * 10000 + np.where(valid_month, mm, 1) * 100 + np.where(valid_month & (dd >= 1), dd, 1)
    future = born > today.year * 10000 + today.month * 100 + today.day
    fictitious = np.isin(first9 // 1000, FICTITIOUS_PREFIXES)
    impossible = (mm > 12) | (mm_raw > 52) | (valid_month & (dd > dim)) | future
    fam, voor = df["familienaam"], df["voornamen"]
    today_ts = pd.Timestamp(today).date()
    masks = {
        "insz_format": ~well,
        "insz_checksum": well & ~checksum_ok,
        "insz_birth_date": checksum_ok & ~fictitious & impossible,
        "insz_duplicate": insz.duplicated(keep=False).to_numpy(dtype=bool) & insz.notna().to_numpy(),
        "bis_registered": b(df["ingeschreven"]) & b(insz.str.contains(BIS_MONTH, regex=True)),
        "name_missing": (
            fam.isna().to_numpy()
            | voor.isna().to_numpy()
            | b(fam.str.contains(BLANK, regex=True))
            | b(voor.str.contains(BLANK, regex=True))
        ),
        "name_invalid": (
            b(fam.str.contains(CONTROL, regex=True))
            | b(voor.str.contains(CONTROL, regex=True))
            | b(fam.str.len() > 100)
            | b(voor.str.len() > 100)
        ),
        "nis_unknown": df["nis_code"].notna().to_numpy() & ~b(df["nis_code"].isin(sorted(known | old))),
        "value_unparsed": df["unparsed"].notna().to_numpy(),
        "date_in_future": b(df["contract_op"] > today_ts)
        | b(df["attest_op"] > today_ts)
        | b(df["overleden_op"] > today_ts),
    }
    # The warning the suite also evaluates: a pre-2025 code, mapped through the crosswalk.
    pre_2025 = int(b(df["nis_code"].isin(sorted(old))).sum())
    failed = np.zeros(len(df), dtype=bool)
    first: dict[str, int] = {}
    for name in CHECK_ORDER:
        newly = masks[name] & ~failed
        first[name] = int(newly.sum())
        failed |= masks[name]
    return {
        "failed": failed,
        "first_failing": {k: v for k, v in first.items() if v},
        "nis_pre_2025": pre_2025,
    }


def floor_validate(table: Any, today: date) -> tuple[Any, dict[str, int]]:
    import pyarrow as pa
    import pyarrow.compute as pc

    from kbi import reference  # reference data only

    crosswalk = reference.crosswalk()
    result = plain_checks(table, today, frozenset(reference.municipalities()), frozenset(crosswalk))
    passed = table.filter(pa.array(~result["failed"]))
    idx = pc.index_in(passed["nis_code"], value_set=pa.array(list(crosswalk), pa.string()))
    mapped = pc.if_else(
        pc.is_valid(idx),
        pc.take(pa.array(list(crosswalk.values()), pa.string()), pc.fill_null(idx, 0)),
        passed["nis_code"],
    )
    return passed.set_column(passed.schema.get_field_index("nis_code"), "nis_code", mapped), result[
        "first_failing"
    ]


def _cell(col: Any) -> Any:
    """RFC 4180 minimal quoting and the formula guard of the delivered file, vectorised."""
    import pyarrow.compute as pc

    col = pc.fill_null(col, "")
    col = pc.if_else(
        pc.match_substring_regex(col, "^[=+\\-@\t\r]"), pc.binary_join_element_wise("'", col, ""), col
    )
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(col, '"', '""'), '"', "")
    return pc.if_else(pc.match_substring_regex(col, '[;"\r\n]'), quoted, col)


def floor_partition(
    passed: Any, reference_date: date, recipients: dict[str, dict[str, Any]]
) -> tuple[dict[str, bytes], int]:
    """Selection rules, one sort per file layout, contiguous slices of one CSV buffer per file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    ref = pa.scalar(reference_date, pa.date32())
    keep = pc.and_(
        pc.and_(
            pc.fill_null(passed["ingeschreven"], False),
            pc.invert(pc.match_substring_regex(passed["insz"], BIS_MONTH)),
        ),
        pc.and_(
            pc.invert(pc.fill_null(pc.less_equal(passed["overleden_op"], ref), False)),
            pc.fill_null(pc.is_in(passed["nis_code"], pa.array(sorted(recipients), pa.string())), False),
        ),
    )
    sel = passed.filter(keep)

    def flag(column: str) -> Any:
        return pc.if_else(pc.fill_null(pc.less_equal(sel[column], ref), False), "ja", "nee")

    contract, attest = flag("contract_op"), flag("attest_op")
    sel = sel.select(["nis_code", "insz", "familienaam", "voornamen"])
    sel = sel.append_column("contract", contract).append_column("attest", attest)
    files: dict[str, bytes] = {}
    rows = 0
    for with_names in (True, False):
        codes = sorted(n for n, r in recipients.items() if r["with_names"] == with_names)
        if not codes:
            continue
        part = sel.filter(pc.is_in(sel["nis_code"], pa.array(codes, pa.string())))
        if with_names:
            part = part.append_column("k1", pc.utf8_lower(part["familienaam"])).append_column(
                "k2", pc.utf8_lower(part["voornamen"])
            )
            keys = ["nis_code", "k1", "k2", "familienaam", "voornamen", "insz"]
            header = HEADER_NAMES
        else:
            keys = ["nis_code", "insz"]
            header = HEADER_PLAIN
        part = part.sort_by([(k, "ascending") for k in keys])
        cells = [_cell(part["insz"])]
        if with_names:
            cells += [_cell(part["familienaam"]), _cell(part["voornamen"])]
        cells += [part["contract"], part["attest"]]
        lines = pc.binary_join_element_wise(pc.binary_join_element_wise(*cells, ";"), "\r\n", "")
        lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
        head = BOM + (header + "\r\n").encode()
        if len(lines) == 0:
            for nis in codes:
                files[nis] = head
            continue
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[
            lines.offset : lines.offset + len(lines) + 1
        ]
        data = memoryview(lines.buffers()[2])
        runs = pc.run_end_encode(part["nis_code"].combine_chunks())
        start = 0
        for nis, end in zip(runs.values.to_pylist(), runs.run_ends.to_pylist(), strict=True):
            files[nis] = head + data[offsets[start] : offsets[end]].tobytes()
            start = end
        rows += len(lines)
        for nis in codes:  # a municipality with nobody on its list still gets its (empty) file
            files.setdefault(nis, head)
    return files, rows


def _gpg_base(home: Path) -> list[str]:
    # One keyring that nobody writes to during the run: no locks, no random-seed file.
    return [
        "gpg",
        "--homedir",
        str(home),
        "--batch",
        "--no-tty",
        "--no-autostart",
        "--no-random-seed-file",
        "--lock-never",
    ]


def floor_encrypt(
    files: dict[str, bytes], recipients: dict[str, dict[str, Any]], home: Path
) -> dict[str, bytes]:
    """gpg CLI, two at a time: pubkey to the pinned key, else AES-256 with a fresh passphrase."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_files = [r["key_file"] for r in recipients.values() if r["mode"] == "pubkey"]
    if key_files:
        subprocess.run([*_gpg_base(home), "--quiet", "--import", *key_files], check=True, capture_output=True)

    def one(nis: str) -> tuple[str, bytes]:
        r = recipients[nis]
        if r["mode"] == "pubkey":
            argv = [*_gpg_base(home), "--trust-model", "always", "--recipient", r["fingerprint"], "--encrypt"]
            p = subprocess.run(argv, input=files[nis], capture_output=True, check=False)
        else:
            passphrase = "-".join(
                "".join(secrets.choice(PASSPHRASE_ALPHABET) for _ in range(4)) for _ in range(7)
            )
            rfd, wfd = os.pipe()  # the passphrase goes over a pipe, never on the command line
            os.write(wfd, passphrase.encode() + b"\n")
            os.close(wfd)
            argv = [
                *_gpg_base(home),
                "--pinentry-mode",
                "loopback",
                "--passphrase-fd",
                str(rfd),
                "--symmetric",
                "--cipher-algo",
                "AES256",
                "--s2k-mode",
                "3",
                "--s2k-digest-algo",
                "SHA256",
                "--s2k-count",
                "65536",
            ]
            try:
                p = subprocess.run(argv, input=files[nis], capture_output=True, pass_fds=(rfd,), check=False)
            finally:
                os.close(rfd)
        if p.returncode != 0:
            raise RuntimeError(f"gpg failed for {nis}: {p.stderr.decode(errors='replace')[-200:]}")
        return nis, p.stdout

    with ThreadPoolExecutor(GPG_WORKERS) as pool:
        return dict(pool.map(one, sorted(files)))


def floor_upload(cipher: dict[str, bytes], spec: dict[str, Any]) -> int:
    """One SFTP connection (TCP_NODELAY, pinned host key), temp name, confirm, rename."""
    import base64

    import paramiko

    algo, b64 = spec["host_key"].split()[:2]
    host_key = paramiko.PKey.from_type_string(algo, base64.b64decode(b64))
    sock = socket.create_connection(("127.0.0.1", spec["sftp_port"]), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock)
    try:
        transport.connect(
            hostkey=host_key,
            username="agii",
            pkey=paramiko.Ed25519Key.from_private_key_file(spec["client_key"]),
        )
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        sent = 0
        for nis, data in sorted(cipher.items()):
            final = f"/{nis}/floor/inburgeraars_{nis}_{spec['reference_date']}.csv.gpg"
            temp = f"/{nis}/floor/.inburgeraars_{nis}_{spec['reference_date']}.csv.gpg.part"
            sftp.putfo(io.BytesIO(data), temp, file_size=len(data), confirm=True)
            sftp.rename(temp, final)
            sent += len(data)
        sftp.close()
        return sent
    finally:
        transport.close()


def _peak_rss_mb() -> float:
    """This process's own peak: VmHWM (ru_maxrss would carry the parent's over fork + exec)."""
    return _status_kb(os.getpid())[1] / 1024


def _own_cpu_s() -> float:
    """CPU seconds of this process and of the children it waited for (gpg)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _rss_mb() -> float:
    return _status_kb(os.getpid())[0] / 1024


def source_main(var_dir: str, rows: int, seed: int, today_text: str) -> int:
    from demo import environment as env

    today = date.fromisoformat(today_text)
    counts = env.build_source(env.Places(Path(var_dir)), rows, seed, today, today)
    print(json.dumps(counts), flush=True)
    return 0


def floor_main(spec_path: Path) -> int:
    """The floor in this process; prints one JSON line (counts and timings only)."""
    t_import = time.perf_counter()
    # Imported before the clock of the first stage: counted as imports, not as stage work.
    import pandas  # noqa: F401
    import pyarrow.compute  # noqa: F401
    import pyarrow.parquet as pq

    spec = json.loads(spec_path.read_text())
    imports = time.perf_counter() - t_import
    today = date.fromisoformat(spec["today"])
    ref = date.fromisoformat(spec["reference_date"])
    recipients = spec["recipients"]
    stages: dict[str, float] = {}
    t = time.perf_counter()
    table = floor_extract(Path(spec["kbi_db"]))
    stages["extract"] = time.perf_counter() - t
    t = time.perf_counter()
    passed, failing = floor_validate(table, today)
    stages["check_quality"] = time.perf_counter() - t
    t = time.perf_counter()
    files, rows = floor_partition(passed, ref, recipients)
    stages["partition"] = time.perf_counter() - t
    cpu: dict[str, float] = {}  # CPU of the transfer stages, this process and its gpg processes
    with tempfile.TemporaryDirectory(prefix="kbi-bench-gpg-") as home:
        t, c = time.perf_counter(), _own_cpu_s()
        cipher = floor_encrypt(files, recipients, Path(home))
        stages["encrypt"], cpu["encrypt"] = time.perf_counter() - t, _own_cpu_s() - c
    t, c = time.perf_counter(), _own_cpu_s()
    sent = floor_upload(cipher, spec)
    stages["upload"], cpu["upload"] = time.perf_counter() - t, _own_cpu_s() - c
    peak = _peak_rss_mb()
    # Staged for the quality comparison; outside the timings.
    pq.write_table(table, spec["extract_out"])
    print(
        json.dumps(
            {
                "imports_s": imports,
                "stages": stages,
                "cpu_s": cpu,
                "rows_extracted": table.num_rows,
                "rows_quarantined": table.num_rows - passed.num_rows,
                "first_failing": failing,
                "rows_delivered": rows,
                "files": len(cipher),
                "plaintext_bytes": sum(len(b) for b in files.values()),
                "ciphertext_bytes": sent,
                "peak_rss_mb": peak,
            }
        ),
        flush=True,
    )
    return 0


def quality_main(engine: str, extract: Path, today_text: str) -> int:
    """One quality engine on the staged extract, in a fresh process (its imports and memory)."""
    t0 = time.perf_counter()
    import pyarrow.parquet as pq

    base_imports = time.perf_counter() - t0
    table = pq.read_table(extract)
    loaded_rss = _rss_mb()
    today = date.fromisoformat(today_text)
    t1 = time.perf_counter()
    if engine == "gx":
        from kbi.quality import checks, gx_suite

        imported = time.perf_counter()
        result = gx_suite.validate(table, checks.Context(today), expected_rows=table.num_rows)
        failing = {"expectations_failed": sum(1 for e in result.expectations if not e["success"])}
    elif engine == "plain":
        import pandas  # noqa: F401

        from kbi import reference  # reference data only

        imported = time.perf_counter()
        out = plain_checks(
            table, today, frozenset(reference.municipalities()), frozenset(reference.crosswalk())
        )
        failing = {"rows_failed": int(out["failed"].sum())}
    else:
        from kbi.quality import checks

        imported = time.perf_counter()
        failing = {"rows_failed": checks.run(table, today).failed.num_rows}
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "engine": engine,
                "rows": table.num_rows,
                "import_s": imported - t1 + base_imports,
                "validate_s": done - imported,
                "total_s": done - t1 + base_imports,
                "peak_rss_mb": _peak_rss_mb(),
                "rss_after_load_mb": loaded_rss,
                **failing,
            }
        ),
        flush=True,
    )
    return 0


def _child(args: list[str], environment: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m demo.bench <args>`` and read its last JSON line."""
    envp = {
        **(environment or os.environ),
        "PYTHONPATH": os.pathsep.join([str(settings.PROJECT_ROOT / "plugins"), str(settings.PROJECT_ROOT)]),
    }
    envp["GX_ANALYTICS_ENABLED"] = "False"
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "demo.bench", *args],
        capture_output=True,
        text=True,
        env=envp,
        cwd=settings.PROJECT_ROOT,
        check=False,
        timeout=3600,
    )
    wall = time.perf_counter() - t
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"{args[0]} failed (exit {p.returncode}): {p.stderr[-800:]}")
    return json.loads(lines[-1]) | {"process_wall_s": wall}


def run_floor(
    places: env.Places, stack: Any, recipients: list[env.DemoRecipient], today: date
) -> dict[str, Any]:
    from demo.servers import sftp as sftp_server

    fingerprints = json.loads((places.keys / "fingerprints.json").read_text())
    spec = {
        "kbi_db": str(places.kbi_db),
        "today": today.isoformat(),
        "reference_date": today.isoformat(),
        "sftp_port": int((places.run / "sftp.port").read_text().strip()),
        "host_key": sftp_server.public_key_line(places.ssh_keys / sftp_server.HOST_KEY_NAME),
        "client_key": str(places.ssh_keys / sftp_server.CLIENT_KEY_NAME),
        "extract_out": str(places.var_dir / "floor-extract.parquet"),
        "recipients": {
            r.nis_code: {
                "mode": r.mode,
                "with_names": r.with_names,
                "fingerprint": fingerprints.get(f"{r.nis_code}:{r.key_kind}") if r.mode == "pubkey" else None,
                "key_file": str(places.keys / f"{r.nis_code}.asc") if r.mode == "pubkey" else None,
            }
            for r in recipients
        },
    }
    spec_path = places.var_dir / "floor-spec.json"
    spec_path.write_text(json.dumps(spec))
    return _child(["_floor", str(spec_path)])


def set_inboxes_aside(places: env.Places) -> int:
    """Move the pipeline's delivered files out of the inboxes (to ``<nis>/pipeline/``), so that
    the run without Airflow finds the inboxes as the pipeline did; returns how many moved."""
    moved = 0
    for inbox in sorted(places.sftp_root.glob("*/inbox")):
        aside = inbox.parent / "pipeline"
        for f in sorted(inbox.iterdir()):
            if f.is_file():
                aside.mkdir(exist_ok=True)
                f.rename(aside / f.name)
                moved += 1
    return moved


@contextlib.contextmanager
def direct_databases(places: env.Places, metadata: str) -> Iterator[dict[str, str]]:
    """A ledger and a quarantine of its own for the run without Airflow: the pipeline's ledger
    already holds this year's list for every municipality (P3 would refuse a second one)."""
    from demo import environment as env
    from demo import pgdb

    chain_secret = env.secrets_of(places)["chain_secret"]
    if metadata == "postgres":
        with pgdb.fresh_database("kbi_bench_direct") as database:
            yield database.agency_connections(chain_secret)
        return
    here = places.var_dir / "direct"
    here.mkdir(exist_ok=True)
    yield env.sqlite_agency_connections(here / "ledger.db", here / "quarantine.db", chain_secret)


def run_direct(places: env.Places, stack: Any, today: date, rows: int, metadata: str) -> dict[str, Any]:
    """The pipeline's own code without Airflow (``demo.bench_direct``), on the same servers."""
    set_inboxes_aside(places)
    spec = {
        "run_id": f"bench_direct__{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}",
        "today": today.isoformat(),
        "workers": settings.DELIVERIES_AT_ONCE,
        **run_conf(today, rows),
    }
    spec_path = places.var_dir / "direct-spec.json"
    spec_path.write_text(json.dumps(spec))
    with direct_databases(places, metadata) as connections:
        return _child(["_direct", str(spec_path)], {**stack.env, **connections})


QUALITY_ROUNDS = 5  # fresh processes per engine, interleaved; the median round counts


def compare_quality(places: env.Places, today: date, rounds: int = QUALITY_ROUNDS) -> dict[str, Any]:
    """Each engine ``rounds`` times, in turns (a slow spell of the machine hits all engines alike);
    per engine the round with the median validation time, and every round's time beside it."""
    extract = places.var_dir / "floor-extract.parquet"
    engines = ("gx", "plain", "pipeline_masks")
    runs: dict[str, list[dict[str, Any]]] = {engine: [] for engine in engines}
    try:
        for _ in range(rounds):
            for engine in engines:
                runs[engine].append(_child(["_quality", engine, str(extract), today.isoformat()]))
    finally:
        extract.unlink(missing_ok=True)  # plaintext rows: not kept after the comparison
    out: dict[str, Any] = {}
    for engine, done in runs.items():
        ordered = sorted(done, key=lambda r: r["validate_s"])
        out[engine] = ordered[len(ordered) // 2] | {"validate_s_rounds": [_r(r["validate_s"]) for r in done]}
    gx, plain = out["gx"], out["plain"]
    out["rounds"] = rounds
    out["ratio_validate"] = _r(gx["validate_s"] / max(plain["validate_s"], 1e-9), 2)
    out["ratio_with_imports"] = _r(gx["total_s"] / max(plain["total_s"], 1e-9), 2)
    out["ratio_peak_rss"] = _r(gx["peak_rss_mb"] / max(plain["peak_rss_mb"], 1e-9), 2)
    return out


# --- one size end to end ----------------------------------------------------------------------------


FLOOR_OF_STAGE = {"extract": ("extract",), "check_quality": ("check_quality",), "partition": ("partition",)}
FLOOR_OF_STAGE["deliver"] = ("encrypt", "upload")
# A delivery's steps (kbi.delivery.STEP_OF_STATE) that do what the floor's encrypt + upload do.
DELIVERY_STEPS_IN_FLOOR = ("connect", "encrypt", "upload", "publish")


def code_version() -> str:
    """The commit measured; '+changes' when dags/, plugins/ or include/ differ from it."""
    root = settings.PROJECT_ROOT
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "dags", "plugins", "include"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (head or "unknown") + ("+changes" if dirty else "")


def combine(
    size: Size,
    pipeline: dict[str, Any],
    floor: dict[str, Any],
    quality: dict[str, Any],
    direct: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Per stage and in total: pipeline vs the same code without Airflow vs floor, overheads,
    memory, throughput."""
    files = pipeline.get("summary", {}).get("municipalities", {}).get("delivered") or floor["files"]
    floor_total = sum(floor["stages"].values())
    direct_stages = (direct or {}).get("stages", {})
    rows = []
    for st in pipeline["stages"]:
        parts = FLOOR_OF_STAGE.get(st["stage"])
        f = sum(floor["stages"][p] for p in parts) if parts else None
        d = direct_stages.get(st["stage"])
        rows.append(
            st
            | {
                "floor_s": _r(f),
                "ratio": _r(st["wall_s"] / f, 1) if f else None,
                # The stage's own work (Airflow's per-task cost left out) against the floor.
                "work_ratio": _r(st["sum_execute_s"] / f, 1) if f and st["sum_execute_s"] else None,
                # The same code without Airflow: its wall time, and that against the floor.
                "direct_s": _r(d),
                "direct_cpu_s": _r((direct or {}).get("cpu_s", {}).get(st["stage"])),
                "direct_ratio": _r(d / f, 1) if d and f else None,
            }
        )
    deliver = next((s for s in pipeline["stages"] if s["stage"] == "deliver"), None)
    wall = pipeline["wall_s"]
    steps = pipeline.get("summary", {}).get("delivery_seconds", {})
    # What the floor does of a delivery (encrypt, upload, rename), timed inside the deliveries.
    transfer = sum(steps.get(k, 0.0) for k in DELIVERY_STEPS_IN_FLOOR) if steps else None
    floor_transfer = sum(floor["stages"][p] for p in FLOOR_OF_STAGE["deliver"])
    # CPU does not grow when deliveries share the cores, as their wall time does: the deliveries'
    # own (the whole machine run: SFTP session to receipt and ledger) against the floor's transfer.
    cpu = steps.get("cpu", 0.0) + steps.get("cpu_gpg", 0.0) if "cpu" in steps else None
    floor_cpu = sum(floor.get("cpu_s", {}).values()) or None
    return {
        "label": size.label,
        "rows": size.rows,
        "municipalities": files,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": pipeline.get("code"),
        "pipeline": pipeline,
        "floor": floor | {"total_s": _r(floor_total)},
        "quality_engines": quality,
        "stages": rows,
        "delivery_steps": {
            "seconds": steps,
            "encrypt_upload_publish_s": _r(transfer),
            "floor_encrypt_upload_s": _r(floor_transfer),
            "ratio": _r(transfer / floor_transfer, 1) if transfer and floor_transfer else None,
            "cpu_s": _r(steps.get("cpu")),
            "cpu_gpg_s": _r(steps.get("cpu_gpg")),
            "floor_cpu_s": _r(floor_cpu),
            "cpu_ratio": _r(cpu / floor_cpu, 1) if cpu and floor_cpu else None,
        },
        "direct": _direct_summary(direct, wall) if direct else None,
        "total": {
            "pipeline_s": wall,
            "floor_s": _r(floor_total),
            "ratio": _r(wall / floor_total, 1) if floor_total else None,
            "idle_between_tasks_s": pipeline["idle_between_tasks_s"],
            "task_overhead_sum_s": pipeline["task_overhead_sum_s"],
            "deliver_span_minus_ideal_s": deliver["span_minus_ideal_s"] if deliver else None,
            "peak_rss_mb": pipeline["peak_rss_mb"],
            "largest_task": pipeline["largest_task"],
            "files_per_s": _r(files / wall, 2),
            "rows_per_s": _r(size.rows / wall, 0),
            "floor_files_per_s": _r(floor["files"] / floor_total, 1) if floor_total else None,
            "floor_rows_per_s": _r(size.rows / floor_total, 0) if floor_total else None,
        },
    }


def _direct_summary(direct: dict[str, Any], pipeline_wall: float) -> dict[str, Any]:
    """The run without Airflow in total, and what Airflow added to the same work."""
    total = sum(direct["stages"].values())
    cpu = direct["cpu_s"].get("deliver")
    return direct | {
        "total_s": _r(total),
        "airflow_s": _r(pipeline_wall - total),
        "pipeline_ratio": _r(pipeline_wall / total, 1) if total else None,
        # A delivery's CPU without Airflow: its worker's share and its gpg, set-up included.
        "deliver_cpu_ms_each": _r(1000 * cpu / max(1, direct["delivered"]), 0) if cpu else None,
    }


@contextlib.contextmanager
def metadata_options(places: env.Places, metadata: str) -> Iterator[dict[str, Any]]:
    """How the stack reaches its databases: production's PostgreSQL, or the demo's SQLite files.

    SQLite serialises every write: four deliver tasks, the scheduler and the api-server queue on
    one file lock, which is why Airflow supports only PostgreSQL or MySQL for a LocalExecutor."""
    from demo import environment as env
    from demo import pgdb

    if metadata == "sqlite":
        yield {}
        return
    why = pgdb.unreachable()
    if why:
        raise RuntimeError(f"{why}; start it, point KBI_PG_HOST/KBI_PG_PORT at one, or use --metadata sqlite")
    chain_secret = env.secrets_of(places)["chain_secret"]
    with pgdb.fresh_database("kbi_bench") as database:
        yield {"db_url": database.url, "extra_env": database.agency_connections(chain_secret)}


def bench_size(out: Path, size: Size, seed: int, metadata: str = "postgres") -> dict[str, Any]:
    from demo.stack import running

    today = brussels_today()
    say(f"== {size.label}: {size.rows:,} rows, {size.municipalities or 285} municipalities ==")
    say("[1/4] world: synthetic KBI, registry, key pairs (made once in the keys folder) …")
    places, recipients = prepare(out, size, seed, today)
    code = code_version()  # the task processes import the tree as it is now
    say(f"[2/4] stack: embedded servers + Airflow (LocalExecutor, {metadata} metadata) …")
    t0 = time.monotonic()
    with metadata_options(places, metadata) as options, running(places, **options) as stack:
        say(f"      healthy after {time.monotonic() - t0:.0f} s")
        say(f"[3/4] {DAG_ID} through the scheduler …")
        components = {p.popen.pid: p.name for p in stack.processes if p.popen is not None}
        pipeline = run_pipeline(places, stack, today, Sampler(components), size.rows)
        pipeline["parallelism"] = int(stack.env.get("AIRFLOW__CORE__PARALLELISM", "32"))
        pipeline["code"] = code
        pipeline["metadata"] = metadata
        if pipeline["state"] != "success":
            raise RuntimeError(f"the run ended {pipeline['state']}; see {places.airflow_home / 'logs'}")
        refused = pipeline.get("summary", {}).get("municipalities", {}).get("refused")
        if refused:  # the floor delivers to all: a refusal would make the two incomparable
            raise RuntimeError(f"{refused} municipalities were refused; see the run's summary.json")
        # The floor runs on a quiet machine: Airflow stopped, only the servers it talks to up.
        for proc in [p for p in stack.processes if p.name not in ("sftp", "mail", "sms")]:
            proc.stop()
        say("[4/4] floor: the same stages without Airflow; GX vs plain checks …")
        floor = run_floor(places, stack, recipients, today)
        say("      the pipeline's own code without Airflow, on the same servers …")
        direct = run_direct(places, stack, today, size.rows, metadata)
    quality = compare_quality(places, today)
    return combine(size, pipeline, floor, quality, direct)


# --- report ------------------------------------------------------------------------------------------


def _f(x: Any, nd: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(results: dict[str, Any]) -> str:
    sizes = sorted(results["sizes"].values(), key=lambda s: s["rows"])
    lines = [
        "# kbi_distribution benchmark",
        "",
        f"Machine: {results['machine']['cpus']} CPUs, {results['machine']['memory_gb']} GB, "
        f"Airflow {results['machine']['airflow']}, {results['machine']['gpg']}; LocalExecutor "
        f"(parallelism {', '.join(sorted({str(s['pipeline'].get('parallelism')) for s in sizes}))}).",
        "",
        "## Totals",
        "",
        "| size | rows | files | pipeline s | floor s | ratio | idle between tasks s | per-task overhead Σ s "
        "| peak RSS (USS) MB, task | files/s | rows/s | floor files/s | floor rows/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sizes:
        t = s["total"]
        largest = t["largest_task"] or {}
        lines.append(
            _row(
                s["label"],
                _f(s["rows"]),
                _f(s["municipalities"]),
                _f(t["pipeline_s"], 1),
                _f(t["floor_s"]),
                _f(t["ratio"], 1),
                _f(t["idle_between_tasks_s"], 1),
                _f(t["task_overhead_sum_s"], 1),
                f"{_f(t['peak_rss_mb'], 0)} ({_f(largest.get('uss_mb'), 0)}) {largest.get('task_id', '–')}",
                _f(t["files_per_s"]),
                _f(t["rows_per_s"], 0),
                _f(t["floor_files_per_s"], 1),
                _f(t["floor_rows_per_s"], 0),
            )
        )
    for s in sizes:
        lines += [
            "",
            f"## {s['label']}: per stage (code {s.get('code') or '?'}, measured {s['measured_at']})",
            "",
            "| stage | TIs | wall s | Σ duration s | Σ execute s | Σ Airflow in-task s | gap before s "
            "| span − ideal s | queued→start median s | floor s | ratio (wall/floor) | Σ execute/floor "
            "| without Airflow s | without Airflow/floor | peak RSS (USS) MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for st in s["stages"]:
            lines.append(
                _row(
                    st["stage"],
                    _f(st["task_instances"]),
                    _f(st["wall_s"]),
                    _f(st["sum_duration_s"]),
                    _f(st["sum_execute_s"]),
                    _f(st["sum_task_overhead_s"]),
                    _f(st["gap_before_s"]),
                    _f(st["span_minus_ideal_s"]),
                    _f(st["queued_to_start"]["median"]),
                    _f(st["floor_s"]),
                    _f(st["ratio"], 1),
                    _f(st.get("work_ratio"), 1),
                    _f(st.get("direct_s")),
                    _f(st.get("direct_ratio"), 1),
                    f"{_f(st['peak_rss_mb'], 0)} ({_f(st.get('peak_uss_mb'), 0)})",
                )
            )
        lines += direct_lines(s)
        ds = s.get("delivery_steps") or {}
        if ds.get("seconds"):
            from kbi.delivery import STEPS  # here: the floor's processes import this module light

            lines += [
                "",
                "Deliveries by step (Σ of wall seconds inside the deliver tasks, waits for a core "
                "included): "
                + ", ".join(f"{k} {ds['seconds'][k]:.1f}" for k in STEPS if k in ds["seconds"])
                + f". Connect + encrypt + upload + publish {_f(ds['encrypt_upload_publish_s'], 1)} s "
                f"against the floor's encrypt + upload {_f(ds['floor_encrypt_upload_s'])} s "
                f"(×{_f(ds['ratio'], 1)}).",
            ]
            if ds.get("cpu_ratio"):
                per = (ds["cpu_s"] + ds["cpu_gpg_s"]) / max(1, s["municipalities"])
                lines += [
                    "",
                    f"Deliveries' CPU (does not grow with sharing the cores): {_f(ds['cpu_s'], 1)} s in the "
                    f"task processes and {_f(ds['cpu_gpg_s'], 1)} s in their gpg, {per * 1000:.0f} ms a "
                    "delivery (the whole machine: session, list, gpg, upload, rename, SMS, receipt, ledger), "
                    f"against the floor's encrypt + upload {_f(ds['floor_cpu_s'])} s "
                    f"(×{_f(ds['cpu_ratio'], 1)}).",
                ]
        pl = s["pipeline"]
        if pl.get("cpu_s_by_process"):
            lines += [
                "",
                f"CPU during the run: {_f(pl['cpu_s_machine'], 1)} s of the machine "
                f"({_f(pl['cpu_utilisation'])} of all cores), by process: "
                + ", ".join(f"{k} {v:.1f}" for k, v in pl["cpu_s_by_process"].items())
                + ".",
            ]
        fl = s["floor"]
        lines += [
            "",
            "Floor stages (s): "
            + ", ".join(f"{k} {v:.3f}" for k, v in fl["stages"].items())
            + f"; imports {fl['imports_s']:.2f}; peak RSS {fl['peak_rss_mb']:.0f} MB; "
            f"rows delivered: pipeline {s['pipeline'].get('summary', {}).get('rows_delivered', '–')}, "
            f"floor {fl['rows_delivered']}.",
        ]
        q = s["quality_engines"]
        lines += [
            "",
            "| quality engine | import s | validate s (median) | validate s (each round) | total s "
            "| peak RSS MB |",
            "|---|---:|---:|---|---:|---:|",
        ]
        for name in ("gx", "plain", "pipeline_masks"):
            e = q[name]
            each = ", ".join(_f(v) for v in e.get("validate_s_rounds", [e["validate_s"]]))
            lines.append(
                f"| {name} | {_f(e['import_s'])} | {_f(e['validate_s'])} | {each} | {_f(e['total_s'])} | "
                f"{_f(e['peak_rss_mb'], 0)} |"
            )
        lines.append(
            f"\nGX / plain (medians of {q.get('rounds', 1)} rounds): validate ×{_f(q['ratio_validate'])}, "
            f"with imports ×{_f(q['ratio_with_imports'])}, peak RSS ×{_f(q['ratio_peak_rss'])}."
        )
    return "\n".join(lines) + "\n"


def direct_lines(s: dict[str, Any]) -> list[str]:
    """The paragraph on the run without Airflow: what the same work takes, what Airflow adds."""
    d = s.get("direct")
    if not d:
        return []
    by_stage = ", ".join(f"{k} {v:.2f}" for k, v in d["stages"].items())
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in d["cpu_s"].items())
    pipeline_rows = s["pipeline"].get("summary", {}).get("rows_delivered", "–")
    return [
        "",
        f"The same code without Airflow (`demo.bench_direct`: the task bodies in one process, "
        f"{d['workers']} deliveries at once on forked workers, the same servers, a ledger of its own): "
        f"{_f(d['total_s'], 1)} s in all against the pipeline's {_f(s['total']['pipeline_s'], 1)} s "
        f"(×{_f(d['pipeline_ratio'], 1)}; Airflow's part {_f(d['airflow_s'], 1)} s). Wall s by stage: "
        f"{by_stage}; CPU s (the process, its workers and their gpg): {cpu}. "
        f"A delivery's CPU: {_f(d['deliver_cpu_ms_each'], 0)} ms. Delivered {d['delivered']} files, "
        f"{d['rows_delivered']} rows (pipeline: {pipeline_rows}).",
    ]


def bench_line(s: dict[str, Any]) -> str:
    t = s["total"]
    return (
        f"BENCH rows={s['rows']} municipalities={s['municipalities']} pipeline_s={t['pipeline_s']:.2f} "
        f"floor_s={t['floor_s']:.3f} ratio={t['pipeline_s'] / t['floor_s']:.1f} "
        f"peak_rss_mb={t['peak_rss_mb']:.0f}"
    )


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    gpg = subprocess.run(["gpg", "--version"], capture_output=True, text=True, check=False).stdout.split(
        "\n"
    )[0]
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "airflow": version("apache-airflow"),
        "gpg": gpg,
    }


def write_results(out: Path, done: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge into results.json by size label (a smoke run keeps the full run's results)."""
    path = out / "results.json"
    results: dict[str, Any] = {"sizes": {}}
    if path.exists():
        with contextlib.suppress(ValueError):
            results = json.loads(path.read_text())
    results["machine"] = machine()
    results.setdefault("sizes", {})
    for s in done:
        results["sizes"][s["label"]] = s
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "results.md").write_text(markdown(results))
    return results


# --- command line ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES), help="rows per size")
    parser.add_argument(
        "--small",
        action="store_true",
        help=f"smoke run: {SMALL_ROWS:,} rows, {SMALL_MUNICIPALITIES} municipalities",
    )
    parser.add_argument("--out", type=Path, default=settings.PROJECT_ROOT / "var" / "bench")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--metadata",
        choices=("postgres", "sqlite"),
        default="postgres",
        help="Airflow's metadata database and the ledger/quarantine: a fresh PostgreSQL database on "
        "KBI_PG_HOST:KBI_PG_PORT (127.0.0.1:5432, dropped afterwards), as in production; or the "
        "demo's SQLite files",
    )


def cmd_bench(args: argparse.Namespace) -> int:
    if args.small:
        sizes = [Size("small", SMALL_ROWS, SMALL_MUNICIPALITIES)]
    else:
        sizes = [Size(str(int(s)), int(s), None) for s in str(args.sizes).split(",") if s.strip()]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for size in sizes:
        done.append(bench_size(out, size, args.seed, args.metadata))
        write_results(out, done)  # each size is kept even if a later one fails
    results = write_results(out, done)
    say("")
    say(markdown({**results, "sizes": {s["label"]: s for s in done}}))
    say(f"Results: {out / 'results.json'}, {out / 'results.md'}")
    for s in done:
        say(bench_line(s))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Internal entry points: the floor and each quality engine run in a process of their own.
    if argv[:1] == ["_floor"]:
        return floor_main(Path(argv[1]))
    if argv[:1] == ["_source"]:
        return source_main(argv[1], int(argv[2]), int(argv[3]), argv[4])
    if argv[:1] == ["_direct"]:
        from demo import bench_direct

        return bench_direct.main(Path(argv[1]))
    if argv[:1] == ["_quality"]:
        return quality_main(argv[1], Path(argv[2]), argv[3])
    parser = argparse.ArgumentParser(prog="python -m demo.bench", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return cmd_bench(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
