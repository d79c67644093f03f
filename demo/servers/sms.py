"""Local HTTP endpoint standing in for the SMS gateway; receives Apprise ``json://`` notifications.

Apprise's ``json://`` plugin (apprise 2.3.0, ``apprise/plugins/custom_json.py``) adds every URL
query argument written ``:key=value`` to the JSON body it POSTs ("payload extras"; ``+key=value``
would become an HTTP header, ``-key=value`` a GET parameter). So one URL per recipient carries the
phone number in the body::

    json://127.0.0.1:PORT/sms?:to=%2B32470123456

POSTs ``/sms`` with ``{"version": "1.0", "title": ..., "message": ..., "attachments": [],
"type": "info", "to": "+32470123456"}``; this sink stores it as
``{"received_at", "path", "headers", "payload"}`` so the number is ``stored["payload"]["to"]``.
A literal ``+`` also survives (apprise does not turn ``+`` into a space in query values), but
``%2B`` is the unambiguous form; :func:`apprise_url` and :meth:`SmsSink.apprise_url` encode it.
:func:`apprise_url_template` returns the URL with a ``{phone}`` placeholder for ``str.format``.

Failures do not raise: when the sink answers a non-2xx status (``set_status(503)``) or is stopped
(connection refused), ``Apprise.notify()`` returns a *falsy* ``AppriseResult`` (apprise 2.x returns
that object, not a bool: test it with ``if not result``; ``result is False`` is never true). The
tests pin both. Airflow's ``AppriseHook.notify()`` (provider 2.4.1) discards that result and returns
None, so code that must detect a failed SMS has to call ``apprise.Apprise`` itself.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from demo.servers import Running, store_numbered

log = logging.getLogger(__name__)

SMS_PATH = "/sms"
_KEPT_HEADERS = ("Content-Type", "User-Agent")
_MAX_BODY = 1 << 20  # an SMS notification is tiny; refuse anything absurd


def apprise_url_template(port: int, host: str = "127.0.0.1") -> str:
    """Apprise URL for this sink with a ``{phone}`` placeholder (fill it URL-encoded, e.g. %2B32...)."""
    return f"json://{host}:{port}{SMS_PATH}?:to={{phone}}"


def apprise_url(port: int, phone: str, host: str = "127.0.0.1") -> str:
    """Apprise URL that sends one SMS to ``phone`` (E.164, e.g. "+32470123456") via this sink."""
    return apprise_url_template(port, host).format(phone=quote(phone, safe=""))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "kbi-demo-sms-gateway/1"

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        sink = self.server.sink
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._reply(413, {"status": "error", "error": "body too large"})
            return
        body = self.rfile.read(length)  # read even when failing, so the client sees the status
        forced = sink._status
        if forced is not None:
            self._reply(forced, {"status": "error", "error": "gateway unavailable (fault hook)"})
            return
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            self._reply(400, {"status": "error", "error": "body is not JSON"})
            return
        record = {
            "received_at": datetime.now(UTC).isoformat(),
            "path": self.path,
            "headers": {h: self.headers[h] for h in _KEPT_HEADERS if h in self.headers},
            "payload": payload,
        }
        name = sink._store(record)
        self._reply(200, {"status": "queued", "id": name})

    def do_GET(self) -> None:
        self._reply(405, {"status": "error", "error": "POST only"})

    def log_message(self, format: str, *args: Any) -> None:
        pass  # log_request below logs one line without the query (it holds the phone number)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.info("sms %s %s -> %s", self.command, urlsplit(self.path).path, code)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sink: SmsSink) -> None:
        self.sink = sink
        super().__init__(address, _Handler)


class SmsSink(Running):
    """HTTP SMS-gateway sink on its own thread; ``stop()`` closes the port, ``start()`` re-binds it."""

    def __init__(self, outdir: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.outdir = Path(outdir)
        self.host = host
        self._port = port
        self._status: int | None = None
        self._lock = threading.Lock()
        self._counter = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._port

    def apprise_url(self, phone: str) -> str:
        return apprise_url(self._port, phone, self.host)

    def set_status(self, code: int | None) -> None:
        """Answer every request with ``code`` (e.g. 503: gateway down) and store nothing; None: off."""
        self._status = code

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("SMS sink already running")
        self.outdir.mkdir(parents=True, exist_ok=True)
        self._counter = len(list(self.outdir.glob("*.json")))
        server = _Server((self.host, self._port), self)
        self._port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, args=(0.1,), name="demo-sms", daemon=True)
        thread.start()
        self._server, self._thread = server, thread
        log.info("sms sink listening on %s:%d, storing in %s", self.host, self._port, self.outdir)

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None
        log.info("sms sink on port %d stopped", self._port)

    def _store(self, record: dict[str, Any]) -> str:
        data = json.dumps(record, ensure_ascii=False, indent=2).encode()
        with self._lock:
            self._counter += 1
            return store_numbered(self.outdir, ".json", data, self._counter).name

    def message_paths(self) -> list[Path]:
        return sorted(self.outdir.glob("*.json"))

    def messages(self) -> list[dict[str, Any]]:
        """All stored requests, oldest first."""
        return [json.loads(p.read_text()) for p in self.message_paths()]
