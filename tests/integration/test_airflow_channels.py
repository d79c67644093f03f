"""kbi.airflow_glue.AirflowChannels.sftp over the provider's SFTP hook, against the embedded server.

The e2e suites drive the channel through DAG runs; this checks what a run cannot see from outside:
the session it opens pins the host key, sends without Nagle's delay and without zlib (ciphertext
does not compress), and refuses a connection that would accept any server (P12). Only the pinned
key counts: a server showing another one gets no login, and the worker's ~/.ssh/known_hosts, which
the provider's hook reads and paramiko trusts before the pin, cannot let another key in
(reliability catalogue 27, 28).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from demo.servers.sftp import SftpServer, ensure_keys, public_key_line
from kbi import airflow_glue, transport
from kbi.airflow_glue import AirflowChannels
from kbi.errors import ConfigurationError

SERVER_LOG = "demo.servers.sftp"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[SftpServer, Path]]:
    host_key, client_key, authorized = ensure_keys(tmp_path / "ssh")
    (tmp_path / "root" / "44021" / "inbox").mkdir(parents=True)
    with SftpServer(tmp_path / "root", host_key, authorized) as srv:
        yield srv, client_key


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home of the test's own: the machine's ~/.ssh/known_hosts must not decide a test."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / ".ssh").mkdir(parents=True)
    return tmp_path / "home"


@pytest.fixture
def other_key(tmp_path: Path) -> str:
    """A host key line that is not the server's (what a pin looks like after the server changed)."""
    return public_key_line(ensure_keys(tmp_path / "other")[0])


def _known_hosts(home: Path, srv: SftpServer, key_line: str) -> None:
    (home / ".ssh" / "known_hosts").write_text(f"[{srv.host}]:{srv.port} {key_line}\n")


def _server_said(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(r.name == SERVER_LOG and text in r.getMessage() for r in caplog.records)


def _connection(
    monkeypatch: pytest.MonkeyPatch,
    srv: SftpServer,
    client_key: Path,
    port: int | None = None,
    **extra: object,
) -> None:
    payload = {
        "conn_type": "sftp",
        "host": srv.host,
        "port": port or srv.port,
        "login": srv.username,
        "extra": {
            "key_file": str(client_key),
            "host_key": extra.pop("host_key", srv.host_public_key),
            "look_for_keys": False,
            "conn_timeout": 10,
            **extra,
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_KBI_SFTP", json.dumps(payload))


def test_the_session_pins_the_host_key_without_zlib_or_nagle(
    server: tuple[SftpServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, client_key = server
    _connection(monkeypatch, srv, client_key)  # no "compress" extra: the hook's default is zlib
    nagle_off_at_handshake: list[bool] = []
    transport_init = paramiko.Transport.__init__

    def spy(self: paramiko.Transport, sock: socket.socket, *args: object, **kwargs: object) -> None:
        nagle_off_at_handshake.append(bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
        transport_init(self, sock, *args, **kwargs)

    monkeypatch.setattr(paramiko.Transport, "__init__", spy)
    with AirflowChannels(conn_retry_attempts=1).sftp() as sftp:
        transport = sftp.get_channel().get_transport()
        assert (transport.local_compression, transport.remote_compression) == ("none", "none")
        # Off before the handshake's first byte: each of its round trips would stall otherwise.
        assert nagle_off_at_handshake == [True]
        assert transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert transport.get_remote_server_key().get_base64() == srv.host_public_key.split()[1]
        assert sftp.listdir("/44021") == ["inbox"]


def test_a_dropped_handshake_is_retried_on_a_fresh_socket(
    server: tuple[SftpServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The channel opens the session over a socket of its own (TCP_NODELAY before the first byte of
    the handshake), so its retry must open a new one: the hook's own retry would reuse the dead
    socket. The first connection is reset before the server's banner; the second gets through."""
    from tests.openssh.harness import FaultProxy

    srv, client_key = server
    with FaultProxy(srv.port, after=0, mode="cut") as proxy:

        def let_the_next_one_through() -> None:
            if proxy.tripped.wait(30):
                time.sleep(0.5)  # the first connection's pumps have cut it by now
                proxy.after = 1 << 40
                proxy.tripped.clear()

        threading.Thread(target=let_the_next_one_through, daemon=True).start()
        _connection(monkeypatch, srv, client_key, port=proxy.port)
        with AirflowChannels(conn_retry_attempts=2).sftp() as sftp:
            assert sftp.listdir("/44021") == ["inbox"]
            assert sftp.get_channel().get_transport().sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert proxy.forwarded > 0


@pytest.mark.parametrize("flag", ["no_host_key_check", "allow_host_key_change"])
def test_a_connection_that_accepts_any_server_is_refused(
    server: tuple[SftpServer, Path], monkeypatch: pytest.MonkeyPatch, flag: str
) -> None:
    srv, client_key = server
    _connection(monkeypatch, srv, client_key, **{flag: True})
    with pytest.raises(ConfigurationError, match=flag), AirflowChannels().sftp():
        pass


def test_a_server_showing_another_key_gets_no_login(
    server: tuple[SftpServer, Path],
    monkeypatch: pytest.MonkeyPatch,
    other_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Catalogue 28: the key changed (or a man in the middle): refused before authentication,
    as a permanent error (no retry may try again), the keys' fingerprints in the log only."""
    srv, client_key = server
    caplog.set_level(logging.INFO)
    _connection(monkeypatch, srv, client_key, host_key=other_key)
    with pytest.raises(transport.HostKeyMismatch) as refused, AirflowChannels(conn_retry_attempts=1).sftp():
        pytest.fail("the channel opened")
    assert str(refused.value).startswith(transport.HostKeyMismatch.CODE)
    assert isinstance(refused.value, ConfigurationError)  # permanent: kbi.airflow_tasks fails at once
    assert "SHA256:" not in str(refused.value)  # the ledger gets the cause, the log the fingerprints
    assert any("SHA256:" in r.getMessage() for r in caplog.records if r.name == "kbi.airflow_glue")
    assert _server_said(caplog, "sftp connection from")  # it did connect ...
    assert not _server_said(caplog, "sftp auth ok")  # ... and never logged in


@pytest.fixture
def known_hosts_trust_the_unpinned_server(
    server: tuple[SftpServer, Path],
    monkeypatch: pytest.MonkeyPatch,
    home: Path,
    other_key: str,
    caplog: pytest.LogCaptureFixture,
) -> SftpServer:
    """The pin names another key than the server's, and ~/.ssh/known_hosts holds the server's."""
    srv, client_key = server
    caplog.set_level(logging.INFO)
    _known_hosts(home, srv, srv.host_public_key)
    _connection(monkeypatch, srv, client_key, host_key=other_key)
    return srv


def test_known_hosts_cannot_let_another_key_in(
    known_hosts_trust_the_unpinned_server: SftpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The provider's hook loads ~/.ssh/known_hosts and paramiko trusts it before the pin: an entry
    holding the server's (unpinned) key would have logged in. Refused before connecting."""
    with (
        pytest.raises(ConfigurationError, match="known_hosts"),
        AirflowChannels(conn_retry_attempts=1).sftp(),
    ):
        pytest.fail("the channel opened")
    assert not _server_said(caplog, "sftp connection from")


def test_known_hosts_holding_the_pinned_key_is_harmless(
    server: tuple[SftpServer, Path], monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    srv, client_key = server
    _known_hosts(home, srv, srv.host_public_key)
    _connection(monkeypatch, srv, client_key)
    with AirflowChannels(conn_retry_attempts=1).sftp() as sftp:
        assert sftp.listdir("/44021") == ["inbox"]


def test_the_pin_is_checked_again_whatever_the_hook_trusted(
    known_hosts_trust_the_unpinned_server: SftpServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The second line of defence: were the hook to trust another key (here: the known_hosts
    check switched off), the session is refused before any SFTP operation."""
    srv = known_hosts_trust_the_unpinned_server
    monkeypatch.setattr(transport, "other_known_host_keys", lambda *args: [])
    with pytest.raises(transport.HostKeyMismatch), AirflowChannels(conn_retry_attempts=1).sftp():
        pytest.fail("the channel opened")
    assert _server_said(caplog, "sftp auth ok")  # the hook did log in (what the first check prevents)
    assert srv.opened_for_reading() == []
    assert sorted(p.name for p in (srv.root / "44021").rglob("*")) == ["inbox"]


def test_a_stalled_server_fails_within_the_channel_timeout(
    server: tuple[SftpServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catalogue 31: the network path hangs mid-upload (packets stop, sockets stay open); the
    timeout the channel sets ends the wait (1 s here instead of 60) with an error the delivery
    treats as a lost connection, retried, instead of holding the task forever."""
    from tests.openssh.harness import FaultProxy

    srv, client_key = server
    monkeypatch.setattr(airflow_glue, "SFTP_CHANNEL_TIMEOUT_S", 1)
    failures: list[BaseException] = []

    def upload() -> None:
        try:
            with (
                AirflowChannels(conn_retry_attempts=1).sftp() as sftp,
                sftp.open("/44021/inbox/.x.part", "wb") as fh,
            ):
                fh.write(os.urandom(1 << 20))
        except Exception as exc:
            failures.append(exc)

    with FaultProxy(srv.port, after=128 * 1024, mode="stall") as proxy:
        _connection(monkeypatch, srv, client_key, port=proxy.port)
        worker = threading.Thread(target=upload, daemon=True)
        worker.start()
        worker.join(timeout=30)  # a bound on a hang, far above the timeout: not a speed check
        assert not worker.is_alive(), "the upload still hangs: the channel has no timeout"
        assert proxy.tripped.is_set()
    (failure,) = failures
    assert transport.connection_lost(failure), type(failure).__name__
