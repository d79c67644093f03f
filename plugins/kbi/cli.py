"""``kbi``: the command line for data engineers and quality officers.

    kbi registry check [PATH]           validate the recipients registry (errors name entry and field)
    kbi ledger verify                   check the ledger's hash chain; exit 1 at the first broken link
    kbi ledger migrate                  apply the ledger's migrations (a no-op when up to date)
    kbi audit export [--year Y] [--nis N] [--out DIR]
                                        CSV files and a Markdown report for the DPO (P13, P14)
    kbi keys check KEYFILE              is this key fit for a municipality? (strength, expiry, …)
    kbi keys onboard NIS KEYFILE [--confirm FPR] [--replace OLD_FPR]
                                        pin a municipality's key after a phone confirmation
    kbi quarantine list [--run R] [--nis N] [--check C] [--all] [--csv]
                                        the rows held back, for the quality officer (personal data!)
    kbi quarantine resolve ID --note T  mark a row handled (e.g. "gecorrigeerd in KBI")
    kbi quarantine purge [--days D]     delete rows older than the retention period
    kbi corrections list [--since DATE]  correction requests, their 14-day clock and outcome (P9)
    kbi corrections reopen REF          allow a second correction for the same reference
    kbi synth --rows N --sqlite PATH    the synthetic KBI source (counts only on the screen)

Connections are Airflow's (``AIRFLOW_CONN_KBI_*`` or the metadata database), as in the DAGs.
Nothing here prints a name or a national number, except ``kbi quarantine list``: the quarantine is
the one place besides KBI that holds such rows, and its connection is granted to the quality
officers only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kbi import settings


def _registry_check(args: argparse.Namespace) -> int:
    from kbi import registry

    path = Path(args.path) if args.path else settings.load().registry_path
    try:
        reg = registry.load(path)
    except registry.RegistryError as exc:
        print(exc, file=sys.stderr)
        return 1
    missing = registry.missing_key_files(reg)
    if missing:  # a run would refuse these municipalities (P6)
        print(f"{path}: {len(missing)} key file(s) missing:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    modes: dict[str, int] = {}
    for r in reg.recipients.values():
        modes[r.encryption.mode] = modes.get(r.encryption.mode, 0) + 1
    print(f"{path}: {len(reg.recipients)} recipients valid ({reg.version}); modes {modes}")
    return 0


def _ledger(args: argparse.Namespace):
    from kbi import airflow_glue

    return airflow_glue.ledger()


def _ledger_verify(args: argparse.Namespace) -> int:
    ledger = _ledger(args)
    events = ledger.events()
    broken = ledger.verify()
    if broken:
        print(f"BROKEN at event {broken.seq}: {broken.problem}", file=sys.stderr)
        return 1
    print(f"ledger chain intact: {len(events)} events")
    return 0


def _ledger_migrate(args: argparse.Namespace) -> int:
    applied = _ledger(args).migrate()
    print(f"applied migrations: {applied or 'none (up to date)'}")
    return 0


def _quarantine():
    from kbi import airflow_glue

    q = airflow_glue.quarantine()
    q.migrate()
    return q


def _today():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(settings.TIMEZONE)).date()


QUARANTINE_COLUMNS = (
    "id", "detected_on", "run_id", "check_name", "nis_code", "insz", "familienaam", "voornamen",
    "ingeschreven", "contract_op", "attest_op", "overleden_op", "resolved_on", "resolution",
)  # fmt: skip


def _quarantine_list(args: argparse.Namespace) -> int:
    import csv

    rows = _quarantine().rows(args.run, args.nis, args.check, include_resolved=args.all)
    if args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=QUARANTINE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return 0
    if not rows:
        print("no quarantined rows match", file=sys.stderr)
        return 0
    shown = ("id", "detected_on", "check_name", "nis_code", "insz", "familienaam", "voornamen", "resolution")
    widths = {c: max(len(c), *(len(str(r[c] or "")) for r in rows)) for c in shown}
    print("  ".join(c.ljust(widths[c]) for c in shown))
    for r in rows:
        print("  ".join(str(r[c] or "").ljust(widths[c]) for c in shown))
    print(f"{len(rows)} row(s)", file=sys.stderr)
    return 0


def _quarantine_resolve(args: argparse.Namespace) -> int:
    if _quarantine().resolve(args.id, args.note, _today()):
        print(f"row {args.id} resolved")
        return 0
    print(f"row {args.id}: no open quarantined row with that id", file=sys.stderr)
    return 1


def _quarantine_purge(args: argparse.Namespace) -> int:
    days = args.days if args.days is not None else settings.load().quarantine_retention_days
    print(f"purged {_quarantine().purge(days, _today())} row(s) detected more than {days} days ago")
    return 0


def _audit_export(args: argparse.Namespace) -> int:
    from kbi import audit

    year = args.year or _today().year
    out = (
        Path(args.out)
        if args.out
        else settings.load().reports_dir / "audit" / f"{year}{'-' + args.nis if args.nis else ''}"
    )
    ledger = _ledger(args)
    ledger.migrate()
    result = audit.export(ledger, out, year, args.nis)
    print(f"audit of {year} written to {result.directory} ({', '.join(p.name for p in result.files)})")
    if not result.chain_intact:
        print("THE LEDGER CHAIN IS BROKEN: see audit.md", file=sys.stderr)
        return 1
    return 0


def _keys_check(args: argparse.Namespace) -> int:
    from kbi import keys

    try:
        report = keys.inspect(Path(args.key_file), _today())
    except keys.OnboardingError as exc:
        print(exc, file=sys.stderr)
        return 1
    k = report.key
    print(
        f"{k.algorithm}-{k.bits}, expires {k.expires or 'never'}, fingerprint {keys.grouped(k.fingerprint)}"
    )
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _keys_onboard(args: argparse.Namespace) -> int:
    from kbi import keys, registry

    path = Path(args.registry) if args.registry else settings.load().registry_path
    try:
        outcome = keys.onboard(path, args.nis, Path(args.key_file), _today(), args.confirm, args.replace)
    except (keys.OnboardingError, registry.RegistryError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(outcome.message)
    return 0 if outcome.written else 2


def _corrections_list(args: argparse.Namespace) -> int:
    from datetime import date

    ledger = _ledger(args)
    ledger.migrate()
    today = _today()
    since = args.since or f"{today.year}-01-01"
    rows = ledger.corrections_reported_since(since)
    header = ("reference", 16), ("NIS", 6), ("reported", 11), ("due", 11), ("state", 10), ("handled", 11)
    print(" ".join(name.ljust(width) for name, width in header) + " in time  rows +/-/~")
    for c in rows:
        in_time = {
            True: "yes",
            False: "LATE",
            None: "open" if date.fromisoformat(c.due_on) >= today else "OVERDUE",
        }[c.in_time]
        changes = "" if c.rows_added is None else f"{c.rows_added}/{c.rows_removed}/{c.rows_changed}"
        print(
            f"{c.reference:<16} {c.nis_code:<6} {c.reported_on:<11} {c.due_on:<11} {c.state:<10} "
            f"{(c.handled_on or ''):<11} {in_time:<8} {changes}"
        )
    print(f"{len(rows)} request(s) reported since {since}", file=sys.stderr)
    return 0


def _corrections_reopen(args: argparse.Namespace) -> int:
    import getpass

    from kbi import corrections

    try:
        c = corrections.reopen(_ledger(args), args.reference, getpass.getuser())
    except corrections.CorrectionRefused as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{c.reference} reopened: trigger kbi_correction_request again with the same reference")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kbi", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    reg = sub.add_parser("registry", help="the recipients registry").add_subparsers(
        dest="action", required=True
    )
    check = reg.add_parser("check", help="validate the registry")
    check.add_argument("path", nargs="?")
    check.set_defaults(func=_registry_check)

    led = sub.add_parser("ledger", help="the ledger").add_subparsers(dest="action", required=True)
    led.add_parser("verify", help="check the hash chain").set_defaults(func=_ledger_verify)
    led.add_parser("migrate", help="apply migrations").set_defaults(func=_ledger_migrate)

    aud = sub.add_parser("audit", help="the audit export").add_subparsers(dest="action", required=True)
    ae = aud.add_parser("export", help="CSV files and a Markdown report of a year")
    ae.add_argument("--year", type=int)
    ae.add_argument("--nis", help="one municipality only")
    ae.add_argument("--out", help="directory (default: <reports>/audit/<year>)")
    ae.set_defaults(func=_audit_export)

    kys = sub.add_parser("keys", help="municipalities' OpenPGP keys").add_subparsers(
        dest="action", required=True
    )
    kc = kys.add_parser("check", help="check a key file")
    kc.add_argument("key_file")
    kc.set_defaults(func=_keys_check)
    ko = kys.add_parser("onboard", help="pin (or rotate) a municipality's key in the registry")
    ko.add_argument("nis")
    ko.add_argument("key_file")
    ko.add_argument("--confirm", help="the fingerprint the municipality confirmed by phone")
    ko.add_argument("--replace", help="the fingerprint pinned now, when rotating to another key")
    ko.add_argument("--registry", help="the registry file (default: KBI_REGISTRY)")
    ko.set_defaults(func=_keys_onboard)

    qua = sub.add_parser("quarantine", help="rows held back by the quality checks (P11)").add_subparsers(
        dest="action", required=True
    )
    ls = qua.add_parser("list", help="list open quarantined rows (personal data: quality officers only)")
    ls.add_argument("--run", help="a run id")
    ls.add_argument("--nis", help="a municipality's NIS code")
    ls.add_argument("--check", help="a check name, e.g. insz_checksum")
    ls.add_argument("--all", action="store_true", help="include resolved rows")
    ls.add_argument("--csv", action="store_true", help="CSV on standard output")
    ls.set_defaults(func=_quarantine_list)
    res = qua.add_parser("resolve", help="mark a row handled")
    res.add_argument("id", type=int)
    res.add_argument("--note", required=True, help="what was done, without personal data")
    res.set_defaults(func=_quarantine_resolve)
    pur = qua.add_parser("purge", help="delete rows older than the retention period")
    pur.add_argument("--days", type=int)
    pur.set_defaults(func=_quarantine_purge)

    cor = sub.add_parser("corrections", help="correction requests (P9)").add_subparsers(
        dest="action", required=True
    )
    cl = cor.add_parser("list", help="requests and their 14-day clock")
    cl.add_argument("--since", help="reported on or after (YYYY-MM-DD; default: this year)")
    cl.set_defaults(func=_corrections_list)
    co = cor.add_parser("reopen", help="allow a second correction for a handled reference")
    co.add_argument("reference")
    co.set_defaults(func=_corrections_reopen)

    sub.add_parser("synth", help="generate the synthetic KBI source (kbi synth --help)", add_help=False)

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["synth"]:  # its own parser, options and all
        from kbi import synth

        return synth.main(argv[1:])
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
