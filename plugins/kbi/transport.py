"""SFTP to the transfer server: temporary name, verify, atomic rename, verify again (P8, P12, P13).

Works on a connected ``paramiko.SFTPClient``; ``kbi.airflow_glue`` opens it through Airflow's SFTP
hook with a pinned host key. A municipality never sees a partial file: the upload goes to a dot
name ending in ``.part`` (or to an agency-only staging directory on the same filesystem), its
size and SHA-256 are checked by reading it back through the same connection, and only then is it
renamed (``posix-rename``, atomic) to the final name and checked once more.

Paramiko may swallow a write error of a pipelined upload (a full disk), so a size check before
the rename is not optional: ``putfo(confirm=True)`` plus the read-back digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path

import paramiko
from paramiko.ssh_exception import NoValidConnectionsError

from kbi.errors import ConfigurationError, KbiError

_CHUNK = 1 << 20
_NETWORK_ERRORS = (OSError, EOFError, paramiko.SSHException)


class TransportError(KbiError):
    """Talking to the transfer server failed; the message names the path and the cause."""


class UnknownFileInInbox(TransportError):
    """The final name is taken by a file this delivery did not upload: never overwrite it."""


class HostKeyMismatch(ConfigurationError):
    """The transfer server did not show the pinned host key (P12). Nothing was sent, and no retry
    may try again: a changed key is checked with the server's operator, out of band, before the
    pin in connection kbi_sftp changes (reliability catalogue 28). Permanent; the reason a
    delivery records starts with ``CODE``, so that the run's summary raises the alert once."""

    CODE = "host_key_mismatch"
    REASON = (
        f"{CODE}: the transfer server's host key is not the pinned key; nothing was sent. Verify "
        "the server's key with its operator before changing the host_key of connection kbi_sftp"
    )


def system_known_hosts() -> Path:
    """The file paramiko's ``load_system_host_keys()`` reads, as Airflow's SSH hook calls it."""
    return Path(os.path.expanduser("~/.ssh/known_hosts"))


def other_known_host_keys(
    known_hosts: Path, host: str, port: int, pinned: paramiko.PKey
) -> list[paramiko.PKey]:
    """Keys ``known_hosts`` holds for the server besides the pinned one.

    Airflow's SSH hook loads the worker's known_hosts, and paramiko looks a server up there
    before the connection's pinned key: another key for the transfer server in that file would
    be trusted instead of the pin (or turn the pinned server away)."""
    if not known_hosts.is_file():
        return []
    name = host if port == 22 else f"[{host}]:{port}"
    entries = paramiko.HostKeys(str(known_hosts)).lookup(name)
    return [key for key in (entries or {}).values() if key != pinned]


@dataclass(frozen=True)
class Digest:
    size: int
    sha256: str


def local_digest(path: Path) -> Digest:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return Digest(size, h.hexdigest())


def remote_digest(sftp: paramiko.SFTPClient, path: str) -> Digest | None:
    """Size and SHA-256 of a remote file by reading it back (the server has no hash extension)."""
    try:
        attrs = sftp.stat(path)
    except FileNotFoundError:
        return None
    h = hashlib.sha256()
    with sftp.open(path, "rb") as fh:
        fh.prefetch(attrs.st_size)
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return Digest(int(attrs.st_size or 0), h.hexdigest())


def temp_path(final: str, staging_dir: str | None = None) -> str:
    folder = staging_dir or posixpath.dirname(final)
    return posixpath.join(folder, f".{posixpath.basename(final)}.part")


_LOST_MESSAGES = ("Socket is closed", "Server connection dropped", "Connection reset", "Broken pipe")


def connection_lost(exc: BaseException) -> bool:
    """Whether the connection itself is gone (so nothing more can be done on it)."""
    if isinstance(
        exc, EOFError | ConnectionError | TimeoutError | paramiko.SSHException | NoValidConnectionsError
    ):
        return True
    return isinstance(exc, OSError) and any(m in str(exc) for m in _LOST_MESSAGES)


def describe(exc: BaseException, operation: str = "write") -> str:
    """A short, data-free description of a transport failure for logs and the ledger.

    ``operation`` says what was being done: SFTP v3 answers most refusals with the one generic
    status "Failure", whose likely cause depends on it (a full disk for a write, a move across
    filesystems for a rename).
    """
    text = str(exc).strip()
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if isinstance(exc, paramiko.BadHostKeyException):
        return "the server's host key does not match the pinned key; nothing was sent (P12)"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "no such file or directory"
    if connection_lost(exc):
        return f"connection lost or refused ({detail})"
    if isinstance(exc, OSError):
        if "size mismatch" in text or "No space" in text:
            return f"incomplete write, the server's disk may be full ({text})"
        if text == "Failure":
            if operation == "rename":
                return (
                    "the server refused the rename (SFTP 'Failure'; are the temporary and the final "
                    "name on different filesystems?)"
                )
            return f"incomplete write, the server's disk may be full ({text})"
        return text or type(exc).__name__
    return detail


def check_inbox(sftp: paramiko.SFTPClient, inbox: str) -> None:
    try:
        attrs = sftp.stat(inbox)
    except OSError as exc:
        raise TransportError(f"inbox {inbox}: {describe(exc)}") from None
    if not stat.S_ISDIR(attrs.st_mode or 0):
        raise TransportError(f"inbox {inbox} is not a directory")


def remove_if_present(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        sftp.remove(path)
    except FileNotFoundError:
        return False
    return True


def upload_temp(sftp: paramiko.SFTPClient, local: Path, temp: str, expected: Digest) -> None:
    """Upload to the temporary name and prove it arrived whole, or leave nothing behind."""
    try:
        remove_if_present(sftp, temp)  # a stale part of an interrupted attempt
        with local.open("rb") as fh:
            sftp.putfo(fh, temp, file_size=expected.size, confirm=True)
        arrived = remote_digest(sftp, temp)
    except _NETWORK_ERRORS as exc:
        if not connection_lost(exc):  # on a dead connection the next attempt removes it first
            _try_remove(sftp, temp)
        failure = describe(exc)
    else:
        failure = None
    if failure:
        raise TransportError(f"upload of {temp} failed: {failure}")  # the path names the inbox
    if arrived != expected:
        _try_remove(sftp, temp)
        raise TransportError(f"upload of {temp} arrived as {arrived} instead of {expected}; removed")


def _try_remove(sftp: paramiko.SFTPClient, path: str) -> None:
    # Best effort on an already failing connection; the next attempt removes a stale part first.
    with contextlib.suppress(Exception):
        remove_if_present(sftp, path)


def promote(sftp: paramiko.SFTPClient, temp: str, final: str, expected: Digest) -> None:
    """Rename the verified temporary file to its final name, then verify the final file.

    The rename is SFTP's plain one, which refuses to replace an existing file (unlike
    posix-rename): a file that appeared under the final name in the meantime is never overwritten.
    """
    failure: str | None = None
    try:
        current = remote_digest(sftp, final)
        if current is None:
            try:
                sftp.rename(temp, final)
            except OSError:
                current = remote_digest(sftp, final)  # someone was faster, or an earlier attempt
                if current is None:
                    raise
        if current is not None:
            if current != expected:
                _try_remove(sftp, temp)
                raise UnknownFileInInbox(
                    f"{final} already exists and is not the file this delivery uploaded; not overwritten"
                )
            remove_if_present(sftp, temp)  # published by an earlier attempt already
        arrived = remote_digest(sftp, final)
    except KbiError:
        raise
    except _NETWORK_ERRORS as exc:
        failure = f"publishing {final} failed: {describe(exc, 'rename')}"
    if failure:
        raise TransportError(failure)
    if arrived != expected:
        raise TransportError(f"{final} reads back as {arrived}, expected {expected}")
