"""Embedded SMTP sink (aiosmtpd) standing in for the agency's mail relay.

Every accepted message is stored verbatim as ``outdir/<UTC timestamp>-<counter>.eml``. Plain SMTP
without STARTTLS or AUTH: an Airflow ``smtp`` connection pointing here needs the extras
``{"disable_tls": true, "disable_ssl": true}`` and no login.
"""

from __future__ import annotations

import email
import email.policy
import logging
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from demo.servers import Running, store_numbered

log = logging.getLogger(__name__)

# 421 makes smtplib drop the connection (as a relay shutting down would); 451 is the per-command
# "try again later" for a transaction already under way when the fault is switched on.
REFUSE_MAIL = "421 4.3.2 Service not available, closing transmission channel"
REFUSE_LATER = "451 4.3.0 Requested action aborted: local error in processing"


class _PortZeroController(Controller):
    """aiosmtpd's Controller pings its own host:port after binding, which fails for port 0;
    learn the real port from the bound socket first."""

    async def _create_server(self) -> Any:  # type: ignore[override]
        server = await super()._create_server()
        self.port = server.sockets[0].getsockname()[1]
        return server


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self._sink = sink

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if self._sink._refuse:
            return REFUSE_MAIL
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self._sink._refuse:
            return REFUSE_LATER
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._sink._refuse:
            return REFUSE_LATER
        raw: bytes = envelope.original_content or b""
        path = self._sink._store(raw)
        log.info("mail stored %s (%d bytes, %d recipients)", path.name, len(raw), len(envelope.rcpt_tos))
        return "250 2.0.0 Message accepted for delivery"


class MailSink(Running):
    """SMTP sink on its own thread; ``stop()`` closes the port, ``start()`` re-binds the same port."""

    def __init__(self, outdir: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.outdir = Path(outdir)
        self.host = host
        self._port = port
        self._refuse = False
        self._lock = threading.Lock()
        self._counter = 0
        self._controller: Controller | None = None

    @property
    def port(self) -> int:
        return self._port

    def set_refuse(self, refuse: bool) -> None:
        """Answer 421/451 to every transaction while keeping the port open (relay in trouble)."""
        self._refuse = refuse

    def start(self) -> None:
        if self._controller is not None:
            raise RuntimeError("mail sink already running")
        self.outdir.mkdir(parents=True, exist_ok=True)
        # Continue numbering after files from an earlier run so the names keep sorting in order.
        self._counter = len(list(self.outdir.glob("*.eml")))
        controller = _PortZeroController(
            _Handler(self),
            hostname=self.host,
            port=self._port,
            # A fixed name: the default socket.getfqdn() can stall on hosts with slow DNS.
            server_hostname="smtp.kbi-demo.invalid",
            ready_timeout=10,
        )
        controller.start()
        self._controller = controller
        self._port = controller.port
        log.info("mail sink listening on %s:%d, storing in %s", self.host, self._port, self.outdir)

    def stop(self) -> None:
        if self._controller is None:
            return
        self._controller.stop()
        self._controller = None
        log.info("mail sink on port %d stopped", self._port)

    def _store(self, raw: bytes) -> Path:
        with self._lock:
            self._counter += 1
            return store_numbered(self.outdir, ".eml", raw, self._counter)

    def message_paths(self) -> list[Path]:
        return sorted(self.outdir.glob("*.eml"))

    def messages(self) -> list[EmailMessage]:
        """All stored messages, oldest first, parsed with the modern email API."""
        result: list[EmailMessage] = []
        for path in self.message_paths():
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            result.append(msg)
        return result
