"""Embedded SFTP server (asyncssh) standing in for the agency's transfer server.

Key-only login for one account, SFTP subsystem only, chrooted to ``root`` so the account sees
``/44021/inbox/...`` as ``root/44021/inbox/...`` - the same view the agency's account has on the
real server. The fault hooks let tests cut a connection mid-upload, fill the disk or make a
directory read-only without touching the pipeline code.
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import threading
from pathlib import Path
from typing import Any

import asyncssh

from demo.servers import Running

log = logging.getLogger(__name__)

HOST_KEY_NAME = "ssh_host_ed25519_key"
CLIENT_KEY_NAME = "agency_ed25519"
AUTHORIZED_KEYS_NAME = "authorized_keys"

# pflags (SFTP v3) that mean the client intends to modify the file
_WRITE_PFLAGS = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC | asyncssh.FXF_APPEND


def _write_private_key(path: Path, key: asyncssh.SSHKey) -> None:
    # Created 0600 from the start (not chmod afterwards) so the key is never world-readable.
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key("openssh"))
    os.replace(tmp, path)


def _public_line(key: asyncssh.SSHKey) -> str:
    """'ssh-ed25519 AAAA...' without the comment (what Airflow's SFTP "host_key" extra wants)."""
    algo, b64 = key.export_public_key("openssh").decode().split()[:2]
    return f"{algo} {b64}"


def public_key_line(private_key_path: Path) -> str:
    """The "ssh-ed25519 AAAA..." line of a private key file, e.g. for a server run as a process."""
    return _public_line(asyncssh.read_private_key(private_key_path))


def ensure_keys(dir: Path) -> tuple[Path, Path, Path]:
    """Create (once) the host key, the agency's client key pair and authorized_keys in ``dir``.

    Returns (host_key_path, client_private_key_path, authorized_keys_path). Existing keys are
    reused so a demo re-run keeps the host key its Airflow connection already trusts.
    """
    dir.mkdir(parents=True, exist_ok=True)
    host_key = dir / HOST_KEY_NAME
    client_key = dir / CLIENT_KEY_NAME
    authorized = dir / AUTHORIZED_KEYS_NAME
    for path, comment in ((host_key, "kbi-demo-sftp-host"), (client_key, "kbi-demo-agency")):
        if not path.exists():
            key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
            _write_private_key(path, key)
            Path(f"{path}.pub").write_text(key.export_public_key("openssh").decode())
        os.chmod(path, 0o600)
    client_line = public_key_line(client_key)
    existing = authorized.read_text() if authorized.exists() else ""
    if client_line not in existing:
        with authorized.open("a") as f:
            f.write(f"{client_line} kbi-demo-agency\n")
    return host_key, client_key, authorized


def _vpath(path: bytes) -> str:
    """The chroot-relative path the client means, normalised like asyncssh's map_path does."""
    return posixpath.normpath(posixpath.join(b"/", path)).decode("utf-8", "surrogateescape")


def _under(vpath: str, prefix: str | None) -> bool:
    if prefix is None:
        return False
    prefix = "/" + prefix.strip("/")
    return prefix == "/" or vpath == prefix or vpath.startswith(prefix + "/")


class _Faults:
    """Fault settings shared by all sessions; set from the test thread, read on the loop thread."""

    def __init__(self) -> None:
        self.fail_writes_after: int | None = None
        self.cuts_left: int | None = None  # None: cut every session that writes enough
        self.disk_full_prefix: str | None = None
        self.disk_full_max_bytes: int | None = None
        self.read_only_prefix: str | None = None
        # Like internal-sftp's per-file log: which paths were opened for reading (audit).
        self.opened_for_reading: list[str] = []


class _SFTPSession(asyncssh.SFTPServer):
    """One SFTP session: the stock chrooted asyncssh server plus the fault hooks."""

    def __init__(self, chan: asyncssh.SSHServerChannel, root: Path, faults: _Faults) -> None:
        super().__init__(chan, chroot=os.fsencode(root))
        self._faults = faults
        self._session_written = 0
        self._cut = False
        self._files: dict[object, list[Any]] = {}  # file_obj -> [vpath, bytes written to it]

    def _deny_if_read_only(self, *paths: bytes) -> None:
        for path in paths:
            if _under(_vpath(path), self._faults.read_only_prefix):
                raise asyncssh.SFTPPermissionDenied("Permission denied")

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        if pflags & _WRITE_PFLAGS:
            self._deny_if_read_only(path)
        else:
            self._faults.opened_for_reading.append(_vpath(path))
        file_obj = super().open(path, pflags, attrs)
        self._files[file_obj] = [_vpath(path), 0]
        return file_obj

    def close(self, file_obj: object) -> None:
        self._files.pop(file_obj, None)
        super().close(file_obj)

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        vpath, written = self._files.get(file_obj, ["", 0])
        faults = self._faults
        if _under(vpath, faults.read_only_prefix):
            raise asyncssh.SFTPPermissionDenied("Permission denied")

        if self._cut:  # writes the client pipelined before it noticed the cut
            raise asyncssh.SFTPConnectionLost("Connection cut by fault hook")
        cut_after = faults.fail_writes_after
        if cut_after is not None and self._session_written + len(data) > cut_after:
            # Store what "arrived" before the cut, then drop the TCP connection without a goodbye,
            # as a network failure would; the client sees EOF/socket errors, not an SFTP status.
            keep = max(0, cut_after - self._session_written)
            if keep:
                super().write(file_obj, offset, data[:keep])
            self._session_written += keep
            self._cut = True
            if faults.cuts_left is not None:
                faults.cuts_left -= 1
                if faults.cuts_left <= 0:
                    faults.fail_writes_after = None  # a passing fault: the retry goes through
            log.info("fault: cutting connection after %d bytes written", self._session_written)
            self.connection.abort()
            raise asyncssh.SFTPConnectionLost("Connection cut by fault hook")

        max_bytes = faults.disk_full_max_bytes
        if (
            max_bytes is not None
            and _under(vpath, faults.disk_full_prefix)
            and written + len(data) > max_bytes
        ):
            # Like ENOSPC: the part that fits is written, the rest is refused (SFTP v3 has no
            # dedicated status code, OpenSSH also answers SSH_FX_FAILURE).
            keep = max(0, max_bytes - written)
            if keep:
                super().write(file_obj, offset, data[:keep])
                self._files[file_obj][1] = written + keep
                self._session_written += keep
            raise asyncssh.SFTPFailure("No space left on device")

        n = super().write(file_obj, offset, data)
        self._session_written += n
        if file_obj in self._files:
            self._files[file_obj][1] = written + n
        return n

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._deny_if_read_only(oldpath, newpath)
        super().rename(oldpath, newpath)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._deny_if_read_only(oldpath, newpath)
        super().posix_rename(oldpath, newpath)

    def remove(self, path: bytes) -> None:
        self._deny_if_read_only(path)
        super().remove(path)

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._deny_if_read_only(path)
        super().mkdir(path, attrs)

    def rmdir(self, path: bytes) -> None:
        self._deny_if_read_only(path)
        super().rmdir(path)

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._deny_if_read_only(path)
        super().setstat(path, attrs)

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        self._deny_if_read_only(newpath)
        super().symlink(oldpath, newpath)

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        self._deny_if_read_only(newpath)
        super().link(oldpath, newpath)


class _SSHServer(asyncssh.SSHServer):
    """Per-connection policy: one user, public key only, logging without file details."""

    def __init__(self, owner: SftpServer) -> None:
        self._owner = owner
        self._conn: asyncssh.SSHServerConnection | None = None
        self._peer = "?"
        self._user: str | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        peer = conn.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self._owner._connections.add(conn)
        log.info("sftp connection from %s", self._peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._owner._connections.discard(self._conn)
        state = f"user {self._user}" if self._user else "not authenticated"
        log.info("sftp connection from %s closed (%s)%s", self._peer, state, f": {exc}" if exc else "")

    def begin_auth(self, username: str) -> bool:
        assert self._conn is not None
        if username == self._owner.username:
            # Re-read on every login so keys added to the file take effect without a restart.
            self._conn.set_authorized_keys(str(self._owner.authorized_keys_path))
        else:
            log.info("sftp auth from %s: unknown user %r (no keys will match)", self._peer, username)
        return True

    # Offered even for unknown users so they fail the same way (no user enumeration).
    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return False

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def auth_completed(self) -> None:
        assert self._conn is not None
        self._user = self._conn.get_extra_info("username")
        log.info("sftp auth ok from %s as %s (publickey)", self._peer, self._user)


class SftpServer(Running):
    """asyncssh SFTP server on its own event loop thread.

    ``stop()`` closes the listener and aborts live sessions, so clients see "connection refused"
    afterwards; ``start()`` again re-binds the same port (the demo's connection stays valid).
    """

    def __init__(
        self,
        root: Path,
        host_key_path: Path,
        authorized_keys_path: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = "agii",
    ) -> None:
        self.root = Path(root).resolve()
        self.host_key_path = Path(host_key_path)
        self.authorized_keys_path = Path(authorized_keys_path)
        self.host = host
        self.username = username
        self._port = port
        self._faults = _Faults()
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._host_public_key = public_key_line(self.host_key_path)

    # -- fault hooks ---------------------------------------------------------------------------
    def set_fail_writes_after(self, n_bytes: int | None, times: int | None = None) -> None:
        """Abort the connection once a session has written more than ``n_bytes`` (None: off)."""
        self._faults.fail_writes_after = n_bytes
        self._faults.cuts_left = times

    def set_disk_full(self, path_prefix: str | None, max_bytes: int | None) -> None:
        """Writes past ``max_bytes`` per file under ``path_prefix`` fail (SFTP failure, ENOSPC-like)."""
        self._faults.disk_full_prefix = path_prefix
        self._faults.disk_full_max_bytes = max_bytes if path_prefix is not None else None

    def opened_for_reading(self) -> list[str]:
        """Paths opened for reading since start or the last ``clear_audit`` (the audit log)."""
        return list(self._faults.opened_for_reading)

    def clear_audit(self) -> None:
        self._faults.opened_for_reading.clear()

    def set_read_only(self, path_prefix: str | None) -> None:
        """Writes, renames, removes and mkdirs under ``path_prefix`` get "permission denied"."""
        self._faults.read_only_prefix = path_prefix

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def host_public_key(self) -> str:
        return self._host_public_key

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("SFTP server already running")
        self.root.mkdir(parents=True, exist_ok=True)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="demo-sftp", daemon=True)
        thread.start()
        try:
            self._acceptor = asyncio.run_coroutine_threadsafe(self._listen(), loop).result(timeout=30)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            raise
        self._loop, self._thread = loop, thread
        self._port = self._acceptor.get_port()
        log.info("sftp listening on %s:%d, root %s", self.host, self._port, self.root)

    async def _listen(self) -> asyncssh.SSHAcceptor:
        root, faults = self.root, self._faults
        return await asyncssh.listen(
            self.host,
            self._port,
            server_factory=lambda: _SSHServer(self),
            server_host_keys=[str(self.host_key_path)],
            sftp_factory=lambda chan: _SFTPSession(chan, root, faults),
            allow_scp=False,
            allow_pty=False,
            agent_forwarding=False,
            x11_forwarding=False,
            reuse_address=True,
            login_timeout=30,
        )

    async def _shutdown(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
        # The listener's close leaves accepted connections alive; a stopped server must not.
        conns = list(self._connections)
        for conn in conns:
            conn.abort()
        if conns:
            await asyncio.wait([asyncio.ensure_future(c.wait_closed()) for c in conns], timeout=5)
        # Leave nothing pending, or closing the loop warns "Task was destroyed but it is pending".
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        loop, thread = self._loop, self._thread
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
            self._loop = self._thread = self._acceptor = None
            log.info("sftp server on port %d stopped", self._port)
