"""``kbi``: the command line for data engineers and quality officers.

    kbi registry check [PATH]           validate the recipients registry (errors name entry and field)
    kbi ledger verify                   check the ledger's hash chain; exit 1 at the first broken link
    kbi ledger migrate                  apply the ledger's migrations (a no-op when up to date)
    kbi synth --rows N --sqlite PATH    the synthetic KBI source (counts only on the screen)

Connections are Airflow's (``AIRFLOW_CONN_KBI_*`` or the metadata database), as in the DAGs.
Nothing here prints a name or a national number.
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

    sub.add_parser("synth", help="generate the synthetic KBI source (kbi synth --help)", add_help=False)

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["synth"]:  # its own parser, options and all
        from kbi import synth

        return synth.main(argv[1:])
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
