"""``make demo`` and ``make airflow``: one whole yearly distribution on synthetic data, and the UI.

python -m demo run [--rows N] [--seed S]   generate, start the stack, run kbi_distribution
python -m demo airflow [--port 8080]       the Airflow UI (and the demo servers) until Ctrl-C
python -m demo bench [--small] [--sizes …]  the benchmark (demo/bench.py)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

from demo import environment as env
from demo.stack import Stack, paged, run_state, running, trigger
from kbi import settings

DAG_ID = "kbi_distribution"
STAGES = (
    "create_staging",
    "plan",
    "extract",
    "check_quality",
    "partition",
    "deliver",
    "summarise",
    "remove_staging",
)


def say(text: str = "") -> None:
    print(text, flush=True)


def places() -> env.Places:
    return env.Places(Path(os.environ.get("KBI_DEMO_DIR", settings.PROJECT_ROOT / "var" / "demo")))


def prepare(p: env.Places, rows: int, seed: int) -> None:
    today = datetime.now(ZoneInfo(settings.TIMEZONE)).date()
    say(f"[1/4] Synthetic KBI source: {rows:,} rows (seed {seed}) → {p.kbi_db}")
    counts = env.build_source(p, rows, seed, today, today)
    defects = sum(v for k, v in counts.items() if k.startswith("defect_"))
    say(f"      {counts['doelgroep_inburgeraar']:,} inburgeraars, {defects} rows with planted defects")
    if p.registry.exists():
        say(f"[2/4] Recipients registry: reusing {p.registry} (delete it to regenerate)")
    else:
        say("[2/4] Recipients registry and the municipalities' key pairs (first run only) …")
        recipients = env.demo_recipients(today)
        env.build_registry(p, recipients, today)
        say(f"      {len(recipients)} entries → {p.registry}, keys in {p.keys}")
    from kbi import registry

    reg = registry.load(p.registry)
    env.prepare_sftp_root(p, sorted(reg.recipients))


def trigger_and_follow(stack: Stack, conf: dict) -> tuple[str, str]:
    client = stack.client()
    run_id = trigger(client, DAG_ID, conf, parse_timeout=120)
    say(f"      triggered run {run_id}")
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"
    seen: dict[tuple[str, int], str] = {}
    started = time.monotonic()
    while True:
        state = run_state(client, DAG_ID, run_id)
        tis = paged(client, f"{path}/taskInstances", "task_instances")
        mapped = [ti for ti in tis if ti["task_id"] == "deliver" and ti["map_index"] >= 0]
        newly: list[str] = []
        for ti in sorted(tis, key=lambda t: STAGES.index(t["task_id"]) if t["task_id"] in STAGES else 99):
            key = (ti["task_id"], ti["map_index"])
            if (
                ti["state"] in ("success", "failed", "skipped", "upstream_failed")
                and seen.get(key) != ti["state"]
            ):
                seen[key] = ti["state"]
                mark = {"success": "✓", "failed": "✗", "skipped": "–", "upstream_failed": "✗"}[ti["state"]]
                if ti["task_id"] == "deliver" and ti["map_index"] >= 0:
                    newly.append(f"{mark} {ti.get('rendered_map_index') or ti['map_index']}")
                elif ti["task_id"] != "deliver":
                    took = f" ({ti['duration']:.1f} s)" if ti.get("duration") else ""
                    say(f"      {mark} {ti['task_id']}: {ti['state']}{took}")
        if newly:
            done = sum(1 for ti in mapped if ti["state"] in ("success", "failed", "upstream_failed"))
            say(
                f"      deliver {done}/{len(mapped)}: "
                + ", ".join(newly[:6])
                + (" …" if len(newly) > 6 else "")
            )
        if state in ("success", "failed"):
            say(f"      run {state} after {time.monotonic() - started:.0f} s")
            return run_id, state
        time.sleep(2)


def print_summary(p: env.Places, run_id: str) -> None:
    from kbi.pipeline import safe_name

    path = p.reports / safe_name(run_id) / "summary.json"
    if not path.exists():
        say(f"No summary was written (see the failed task's log in the UI: make airflow). Expected {path}")
        return
    s = json.loads(path.read_text())
    m, rows = s["municipalities"], s["rows"]
    say("")
    say("=" * 78)
    say(f"Run {run_id}   reference date {s['reference_date']}   registry {s['registry_version']}")
    say("=" * 78)
    say(
        f"Municipalities: {m['delivered']} delivered, {m['refused']} refused, "
        f"{m['skipped']} skipped, {m['failed']} failed"
    )
    by_rule: dict[str, list[str]] = {}
    for r in s["refusals"]:
        by_rule.setdefault(r["rule"] or "-", []).append(f"{r['nis_code']} {r['name']}: {r['reason']}")
    for rule, lines in sorted(by_rule.items()):
        say(f"  refused ({rule}): {len(lines)}")
        for line in lines[:4]:
            say(f"    {line}")
        if len(lines) > 4:
            say(f"    … and {len(lines) - 4} more (all in the ledger and summary.json)")
    for reason, n in sorted(s["skipped_reasons"].items()):
        say(f"  skipped: {n} × {reason}")
    if s["failed"]:
        say(f"  FAILED: {', '.join(s['failed'])} (see their deliver tasks)")
    say("")
    say(
        f"Rows: {rows['extracted']:,} inburgeraars extracted, {rows['delivered']:,} delivered, "
        f"{rows['quarantined']} quarantined"
    )
    for outcome, n in sorted(rows["selection"].items()):
        say(f"  {outcome:<28} {n:>8,}")
    for check, n in sorted(rows["quarantined_by_check"].items()):
        say(f"  quarantined: {check:<15} {n:>8,}")
    for warning, n in sorted(rows["warnings"].items()):
        if n:
            say(f"  warning: {warning:<19} {n:>8,}")
    mails = len(list(p.mail_outbox.glob("*.eml"))) if p.mail_outbox.exists() else 0
    sms = len(list(p.sms_outbox.glob("*.json"))) if p.sms_outbox.exists() else 0
    say("")
    say("Where things are:")
    say(f"  files on the transfer server  {p.sftp_root}/<nis>/inbox/")
    say(f"  e-mail receipts ({mails:>4})      {p.mail_outbox}/")
    say(f"  SMS messages    ({sms:>4})      {p.sms_outbox}/")
    say(f"  ledger / quarantine           {p.ledger_db} / {p.quarantine_db}")
    say(f"  run summary, quality report   {path.parent}/")
    say(f"  keys (to decrypt as a municipality would)  {p.keys}/<nis>.secret.asc")
    if s["deliveries"]:
        d = next((x for x in s["deliveries"] if x["mode"] == "pubkey"), s["deliveries"][0])
        say("")
        say(f"Decrypt {d['name']}'s file as the municipality would:")
        say(f"  export GNUPGHOME=$(mktemp -d); gpg --import {p.keys}/{d['nis_code']}.secret.asc")
        say(f"  gpg --decrypt {p.inbox(d['nis_code'])}/{d['file_name']} | head")
    say("")
    say("Inspect the run, its mapped tasks and their logs in the browser: make airflow (admin / admin)")


def cmd_run(args: argparse.Namespace) -> int:
    p = places()
    prepare(p, args.rows, args.seed)
    say("[3/4] Starting the demo transfer server (SFTP), mail relay, SMS gateway and Airflow …")
    t0 = time.monotonic()
    with running(p) as stack:
        say(f"      Airflow healthy after {time.monotonic() - t0:.0f} s at {stack.base_url}")
        say(f"[4/4] Running {DAG_ID} through the scheduler (LocalExecutor) …")
        run_id, state = trigger_and_follow(stack, {})
    print_summary(p, run_id)
    return 0 if state == "success" else 1


def cmd_airflow(args: argparse.Namespace) -> int:
    p = places()
    if not p.registry.exists():
        say("Run `make demo` first: it builds the demo's source, registry and keys.")
        return 1
    with running(p, api_port=args.port) as stack:
        say(f"Airflow UI: {stack.base_url}   login: admin / {env.secrets_of(p)['admin_password']}")
        say(f"Logs of the servers and Airflow components: {p.run}/. Ctrl-C to stop.")
        stop = False

        def _stop(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, _stop)
        try:
            while not stop and all(proc.alive() for proc in stack.processes):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="one whole yearly distribution on synthetic data")
    run.add_argument("--rows", type=int, default=25_000)
    run.add_argument("--seed", type=int, default=2026)
    run.set_defaults(func=cmd_run)
    ui = sub.add_parser("airflow", help="the Airflow UI on the demo's Airflow home")
    ui.add_argument("--port", type=int, default=int(os.environ.get("KBI_DEMO_PORT", "8080")))
    ui.set_defaults(func=cmd_airflow)
    from demo import bench

    bench_cmd = sub.add_parser("bench", help="the pipeline through Airflow vs. the floor (make bench)")
    bench.add_arguments(bench_cmd)
    bench_cmd.set_defaults(func=bench.cmd_bench)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
