"""The bench's middle column: the pipeline's own code, run without Airflow.

``python -m demo.bench _direct <spec.json>``, in a process of its own, with the stack's
environment (connections, settings) but its own ledger and quarantine database, after the
Airflow run, with Airflow stopped and only the servers up.

It calls the DAG's task bodies (``kbi.airflow_tasks``) in their order: extract, check_quality,
partition, one ``deliver`` per municipality and summarise; for plan and remove_staging, which
read the run's Airflow context, what they call (``kbi.pipeline.plan`` and ``cleanup``). The
process first does what the preloading executor does for every task process
(``kbi.executor.preload``: its imports and warm-ups, then ``gc.freeze()``); what a task imports
itself (pandas and Great Expectations in check_quality) is imported inside that stage's clock,
as in the pipeline. The deliveries run on as many workers as the pipeline runs task instances
at once (``kbi.settings.DELIVERIES_AT_ONCE``), forked before the first stage; unlike a task
process, a worker keeps its ledger connection and its warm caches from one delivery to the next.

What this leaves out of the pipeline is what Airflow adds: the scheduler, the api-server, a
supervisor and a task process per task instance, the DAG parsed again in each, XCom. The
difference between the two columns is therefore Airflow's cost; the difference between this
column and the floor is the cost of what the protocol asks of each delivery.

Prints one JSON line: counts and timings only, never a name or a national number.
"""

from __future__ import annotations

import contextlib
import gc
import json
import resource
import time
from collections.abc import Iterator
from datetime import date
from multiprocessing import get_context
from pathlib import Path
from typing import Any


class Stages:
    """Wall and CPU seconds per stage (CPU: this process and the children it has reaped)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextlib.contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        from kbi.delivery import cpu_now

        t0, (own0, children0) = time.perf_counter(), cpu_now()
        yield
        own1, children1 = cpu_now()
        self.wall[stage] = time.perf_counter() - t0
        self.cpu[stage] = own1 - own0 + children1 - children0


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from kbi import executor

    t_import = time.perf_counter()
    if failed := executor.preload():  # what every task process inherits from the executor
        raise RuntimeError(f"could not import {', '.join(failed)}")
    from kbi import airflow_glue, airflow_tasks, pipeline, settings

    imports = time.perf_counter() - t_import
    s = settings.load()
    params = pipeline.RunParams(  # what airflow_tasks.run_params reads from the run's context
        run_id=spec["run_id"],
        reference_date=date.fromisoformat(spec["reference_date"]),
        today=date.fromisoformat(spec["today"]),
        accept_extract_rows=spec.get("accept_extract_rows"),
        p3_period=s.p3_period,
    )
    # As the LocalExecutor does before it forks its workers (which fork the task processes):
    # what is loaded now goes to the permanent generation, which the collector no longer walks.
    gc.freeze()
    # The workers fork now, holding what a task process inherits and nothing more: forked after
    # check_quality, they would share its Great Expectations and extract and pay for each page
    # of it they touch.
    workers = int(spec["workers"])
    pool = get_context("fork").Pool(workers)
    stages = Stages()
    try:
        with stages.timing("plan"):
            plan = pipeline.plan(airflow_glue.ledger(), s, params)
        with stages.timing("extract"):
            extracted = airflow_tasks.extract(plan)
        with stages.timing("check_quality"):
            checked = airflow_tasks.check_quality(plan, extracted)
        with stages.timing("partition"):
            items = airflow_tasks.partition(plan, checked)
        peak_before_deliver = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with stages.timing("deliver"):
            # One municipality at a time per worker, as one task instance each.
            results = pool.map(airflow_tasks.deliver, items, chunksize=1)
            pool.close()
            pool.join()  # reaped: their CPU (and their gpg's) is in this process's children's
        with stages.timing("summarise"):
            summary = airflow_tasks.summarise(plan, checked, items, results)
    finally:
        pool.terminate()
        pipeline.cleanup(s, params.run_id)  # the staged plaintext goes, as remove_staging does
    return {
        "run_id": params.run_id,
        "imports_s": imports,
        "stages": stages.wall,
        "cpu_s": stages.cpu,
        "workers": workers,
        "deliveries": len(results),
        "delivered": summary["municipalities"]["delivered"],
        "failed": summary["municipalities"]["failed"],
        "refused": summary["municipalities"]["refused"],
        "rows_delivered": summary["rows"]["delivered"],
        "delivery_seconds": summary.get("delivery_seconds", {}),
        "peak_rss_mb": peak_before_deliver,
        "workers_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def main(spec_path: Path) -> int:
    print(json.dumps(run(json.loads(spec_path.read_text()))), flush=True)
    return 0
