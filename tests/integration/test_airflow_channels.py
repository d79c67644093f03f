"""kbi.airflow_glue.AirflowChannels.sftp over the provider's SFTP hook, against the embedded server.

The e2e suites drive the channel through DAG runs; this checks what a run cannot see from outside:
the session it opens pins the host key, sends without Nagle's delay and without zlib (ciphertext
does not compress), and refuses a connection that would accept any server (P12).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.servers.sftp import SftpServer, ensure_keys
from kbi.airflow_glue import AirflowChannels
from kbi.errors import ConfigurationError


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[SftpServer, Path]]:
    host_key, client_key, authorized = ensure_keys(tmp_path / "ssh")
    (tmp_path / "root" / "44021" / "inbox").mkdir(parents=True)
    with SftpServer(tmp_path / "root", host_key, authorized) as srv:
        yield srv, client_key


def _connection(monkeypatch: pytest.MonkeyPatch, srv: SftpServer, client_key: Path, **extra: object) -> None:
    payload = {
        "conn_type": "sftp",
        "host": srv.host,
        "port": srv.port,
        "login": srv.username,
        "extra": {
            "key_file": str(client_key),
            "host_key": srv.host_public_key,
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
    with AirflowChannels(conn_retry_attempts=1).sftp() as sftp:
        transport = sftp.get_channel().get_transport()
        assert (transport.local_compression, transport.remote_compression) == ("none", "none")
        assert transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert transport.get_remote_server_key().get_base64() == srv.host_public_key.split()[1]
        assert sftp.listdir("/44021") == ["inbox"]


def test_a_connection_that_accepts_any_server_is_refused(
    server: tuple[SftpServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, client_key = server
    _connection(monkeypatch, srv, client_key, no_host_key_check=True)
    with pytest.raises(ConfigurationError, match="no_host_key_check"), AirflowChannels().sftp():
        pass
