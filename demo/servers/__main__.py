"""Run one embedded server in the foreground: ``python -m demo.servers sftp|mail|sms ...``.

The chosen port is written to ``--port-file`` only once the server accepts connections, so a
parent process can wait for that file. SIGTERM or SIGINT stops the server; the exit code is 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Protocol

from demo.servers import write_atomically


class _Server(Protocol):
    @property
    def port(self) -> int: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m demo.servers", description=__doc__)
    sub = parser.add_subparsers(dest="server", required=True)

    sftp = sub.add_parser("sftp", help="SFTP server (key-only login, chrooted to --root)")
    sftp.add_argument("--root", type=Path, required=True, help="directory the account sees as /")
    sftp.add_argument("--keys-dir", type=Path, required=True, help="host/client keys (created once)")
    sftp.add_argument("--username", default="agii", help="the only account allowed in")

    mail = sub.add_parser("mail", help="SMTP sink storing each message as .eml")
    mail.add_argument("--outdir", type=Path, required=True)

    sms = sub.add_parser("sms", help="HTTP sink for Apprise json:// SMS notifications")
    sms.add_argument("--outdir", type=Path, required=True)

    for p in (sftp, mail, sms):
        p.add_argument("--port-file", type=Path, required=True, help="written once listening")
        p.add_argument("--port", type=int, default=0, help="0 (default): any free port")
        p.add_argument("--host", default="127.0.0.1")
    return parser


def _build(args: argparse.Namespace) -> _Server:
    # Imported lazily: each server pulls in its own library only.
    if args.server == "sftp":
        from demo.servers.sftp import SftpServer, ensure_keys

        host_key, _client_key, authorized = ensure_keys(args.keys_dir)
        return SftpServer(
            args.root, host_key, authorized, host=args.host, port=args.port, username=args.username
        )
    if args.server == "mail":
        from demo.servers.mail import MailSink

        return MailSink(args.outdir, host=args.host, port=args.port)
    from demo.servers.sms import SmsSink

    return SmsSink(args.outdir, host=args.host, port=args.port)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    # The libraries' own INFO lines are chatty; ours say one line per connection/message.
    for noisy in ("asyncssh", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    # Installed before starting so an early SIGTERM still gets a clean stop.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    server = _build(args)
    server.start()
    port_file: Path = args.port_file
    try:
        port_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(port_file, f"{server.port}\n".encode())
        print(f"{args.server} listening on {args.host}:{server.port} (pid {os.getpid()})", file=sys.stderr)
        while not stop.wait(0.5):  # short waits keep the main thread responsive to signals
            pass
    finally:
        server.stop()
        port_file.unlink(missing_ok=True)  # a stale port file would point a parent at nothing
    return 0


if __name__ == "__main__":
    sys.exit(main())
