"""Embedded servers for the demo and the tests: SFTP (asyncssh), SMTP sink (aiosmtpd), SMS sink (HTTP).

Real servers on 127.0.0.1, talked to by the pipeline with real paramiko, smtplib and HTTP. Each one
runs on its own thread (``start()``/``stop()``/context manager) or as a process
(``python -m demo.servers sftp|mail|sms ...``).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self


def utc_stamp() -> str:
    """Fixed-width UTC timestamp, so file names sort chronologically."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def write_atomically(path: Path, data: bytes) -> Path:
    """Write via a temp file + rename: a reader polling the directory never sees half a file.

    The temp name ends in ``.tmp``, so globbing for the final suffix skips it.
    """
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def store_numbered(outdir: Path, suffix: str, data: bytes, counter: int) -> Path:
    """Store ``data`` as ``outdir/<UTC timestamp>-<counter><suffix>``, atomically."""
    return write_atomically(outdir / f"{utc_stamp()}-{counter:06d}{suffix}", data)


class Running:
    """``with Server(...) as s:`` starts it and stops it, whatever happens inside."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
