"""`make bench SIZE=small` as CI's smoke test: the benchmark runs end to end and reports.

No timing is asserted (a shared CI machine says nothing about speed): only that the run
succeeded, the result files exist and every number in the machine-readable line is positive.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from kbi import settings

pytestmark = pytest.mark.slow

BENCH_LINE = re.compile(
    r"^BENCH rows=(\d+) municipalities=(\d+) pipeline_s=([0-9.]+) floor_s=([0-9.]+) "
    r"ratio=([0-9.]+) peak_rss_mb=([0-9.]+)$"
)


def test_small_benchmark_runs_end_to_end(tmp_path) -> None:
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "demo", "bench", "--small", "--out", str(out)],
        cwd=settings.PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(settings.PROJECT_ROOT / "plugins"), "."])},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    last = proc.stdout.strip().splitlines()[-1]
    m = BENCH_LINE.match(last)
    assert m, f"last line is not a BENCH line: {last!r}"
    rows, municipalities, *measured = m.groups()
    assert int(rows) > 0 and int(municipalities) > 0
    assert all(float(x) > 0 for x in measured)

    results = json.loads((out / "results.json").read_text())
    small = results["sizes"]["small"]
    assert small["pipeline"]["state"] == "success"
    assert small["municipalities"] == int(municipalities)
    # The floor did the same work as the pipeline: the same rows reached the files.
    assert small["floor"]["rows_delivered"] == small["pipeline"]["summary"]["rows_delivered"]
    # Where the delivering went, by step, from the run's summary; set against the floor.
    steps = small["delivery_steps"]
    assert set(steps["seconds"]) >= {"connect", "encrypt", "upload", "publish", "announce", "total"}
    assert steps["encrypt_upload_publish_s"] > 0 and steps["ratio"] > 0
    assert "Deliveries by step" in (out / "results.md").read_text()
    # Their CPU, in the task processes and in gpg, beside the floor's CPU for the same transfer.
    assert steps["cpu_s"] > 0 and steps["cpu_gpg_s"] > 0 and steps["floor_cpu_s"] > 0, steps
    ratio = (steps["cpu_s"] + steps["cpu_gpg_s"]) / steps["floor_cpu_s"]
    assert abs(steps["cpu_ratio"] - ratio) <= 0.1 * max(1.0, ratio), steps
    assert "Deliveries' CPU" in (out / "results.md").read_text()
    # The CPU of the run by process includes the local PostgreSQL server (metadata and ledger).
    cpu = small["pipeline"]["cpu_s_by_process"]
    assert cpu["task processes"] > 0 and cpu["api-server"] > 0 and cpu["postgresql"] > 0, cpu
    stages = {s["stage"] for s in small["stages"]}
    assert {"extract", "check_quality", "deliver"} <= stages
    # The same code without Airflow delivered the same lists again, on a ledger of its own, and
    # each stage has its figure beside the pipeline's and the floor's.
    direct = small["direct"]
    assert direct["failed"] == 0 and direct["refused"] == 0, direct
    assert direct["delivered"] == small["pipeline"]["summary"]["municipalities"]["delivered"]
    assert direct["rows_delivered"] == small["pipeline"]["summary"]["rows_delivered"]
    by_stage = {s["stage"]: s for s in small["stages"]}
    for stage in ("plan", "extract", "check_quality", "partition", "deliver"):
        assert by_stage[stage]["direct_s"] > 0 and direct["cpu_s"][stage] > 0, stage
    assert direct["total_s"] > 0 and direct["deliver_cpu_ms_each"] > 0
    # What Airflow added: the run's wall time less this one's (each rounded to the millisecond).
    assert abs(direct["airflow_s"] - (small["total"]["pipeline_s"] - direct["total_s"])) <= 0.002
    assert "The same code without Airflow" in (out / "results.md").read_text()
    # Its files went to the inboxes after the pipeline's were set aside: one each, not the same.
    sftp = out / "small" / "sftp"
    for inbox in sftp.glob("*/inbox"):
        ours, theirs = list(inbox.iterdir()), list((inbox.parent / "pipeline").iterdir())
        assert len(ours) == len(theirs) == 1 and ours[0].name == theirs[0].name, inbox
        assert ours[0].read_bytes() != theirs[0].read_bytes(), inbox
    assert len(list(sftp.glob("*/inbox"))) == direct["delivered"]
    assert "| small |" in (out / "results.md").read_text()
    # Counts and timings only: the plaintext extract used for the quality comparison is gone.
    assert not list(out.rglob("floor-extract.parquet"))
    assert not list(out.rglob("*.parquet")), "a run's staged partitions were left behind"
