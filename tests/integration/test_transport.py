"""kbi.transport against the embedded asyncssh SFTP server, with a strict paramiko client.

Temporary name, verify, atomic rename, verify again (P8, P12, P13). Faults are injected in the
real server (cut connection, full disk, read-only inbox); the expectation is always the same:
a clear error, and nothing but a complete file ever under the final name (catalogue #30-#37).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from demo.servers.sftp import SftpServer, ensure_keys
from kbi import transport
from tests.helpers import pinned_sftp, pinned_sftp_to, server_files

INBOX = "/44021/inbox"
FINAL = f"{INBOX}/inburgeraars_44021_2026-01-15.csv.gpg"
TEMP = transport.temp_path(FINAL)


@pytest.fixture(scope="module")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return ensure_keys(tmp_path_factory.mktemp("ssh"))


@pytest.fixture
def server(tmp_path: Path, ssh_keys: tuple[Path, Path, Path]) -> Iterator[SftpServer]:
    host_key, _client, authorized = ssh_keys
    root = tmp_path / "sftp"
    (root / INBOX.lstrip("/")).mkdir(parents=True)
    with SftpServer(root, host_key, authorized) as srv:
        yield srv


@pytest.fixture
def sftp(server: SftpServer, ssh_keys: tuple[Path, Path, Path]) -> Iterator[paramiko.SFTPClient]:
    with pinned_sftp(server, ssh_keys[1]) as client:
        yield client


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, transport.Digest]:
    path = tmp_path / "local.csv.gpg"
    path.write_bytes(os.urandom(300_000))
    return path, transport.local_digest(path)


def _on_disk(server: SftpServer, remote: str) -> Path:
    return server.root / remote.lstrip("/")


def test_temp_name_is_hidden_beside_the_final_name_or_in_staging() -> None:
    assert f"{INBOX}/.inburgeraars_44021_2026-01-15.csv.gpg.part" == TEMP
    assert transport.temp_path(FINAL, "/staging") == "/staging/.inburgeraars_44021_2026-01-15.csv.gpg.part"


def test_local_digest(payload: tuple[Path, transport.Digest]) -> None:
    path, digest = payload
    assert digest == transport.Digest(300_000, hashlib.sha256(path.read_bytes()).hexdigest())


def test_upload_and_promote(
    server: SftpServer, sftp: paramiko.SFTPClient, payload: tuple[Path, transport.Digest]
) -> None:
    """Happy path: the final file holds exactly the bytes, the temporary name is gone."""
    path, digest = payload
    transport.check_inbox(sftp, INBOX)
    transport.upload_temp(sftp, path, TEMP, digest)
    assert server_files(server, INBOX) == [TEMP.rsplit("/", 1)[1]]  # only the hidden temp so far
    transport.promote(sftp, TEMP, FINAL, digest)
    assert server_files(server, INBOX) == [FINAL.rsplit("/", 1)[1]]
    assert _on_disk(server, FINAL).read_bytes() == path.read_bytes()
    assert transport.remote_digest(sftp, FINAL) == digest
    assert transport.remote_digest(sftp, TEMP) is None


def test_upload_via_a_staging_directory(
    server: SftpServer, sftp: paramiko.SFTPClient, payload: tuple[Path, transport.Digest]
) -> None:
    path, digest = payload
    (server.root / "staging").mkdir()
    temp = transport.temp_path(FINAL, "/staging")
    transport.upload_temp(sftp, path, temp, digest)
    assert server_files(server, INBOX) == []  # nothing at all in the inbox before the rename
    transport.promote(sftp, temp, FINAL, digest)
    assert server_files(server, INBOX) == [FINAL.rsplit("/", 1)[1]]
    assert server_files(server, "/staging") == []


def test_a_stale_part_is_replaced(
    server: SftpServer, sftp: paramiko.SFTPClient, payload: tuple[Path, transport.Digest]
) -> None:
    path, digest = payload
    _on_disk(server, TEMP).write_bytes(b"half of an earlier attempt")
    transport.upload_temp(sftp, path, TEMP, digest)
    assert transport.remote_digest(sftp, TEMP) == digest


def test_promote_is_idempotent_when_the_final_file_is_already_ours(
    server: SftpServer, sftp: paramiko.SFTPClient, payload: tuple[Path, transport.Digest]
) -> None:
    """Catalogue #35: a retry after the rename finds its own bytes: no error, no duplicate."""
    path, digest = payload
    transport.upload_temp(sftp, path, TEMP, digest)
    transport.promote(sftp, TEMP, FINAL, digest)
    inode = _on_disk(server, FINAL).stat().st_ino
    # Retry with the temp gone (crash after the rename) ...
    transport.promote(sftp, TEMP, FINAL, digest)
    # ... and with a fresh temp uploaded again (crash before the ledger saw the upload).
    transport.upload_temp(sftp, path, TEMP, digest)
    transport.promote(sftp, TEMP, FINAL, digest)
    assert server_files(server, INBOX) == [FINAL.rsplit("/", 1)[1]]
    assert _on_disk(server, FINAL).stat().st_ino == inode  # never replaced


def test_a_foreign_file_under_the_final_name_is_never_overwritten(
    server: SftpServer, sftp: paramiko.SFTPClient, payload: tuple[Path, transport.Digest]
) -> None:
    """Reliability promise 2: no overwrite without intent."""
    path, digest = payload
    _on_disk(server, FINAL).write_bytes(b"a file this delivery did not upload")
    transport.upload_temp(sftp, path, TEMP, digest)
    with pytest.raises(transport.UnknownFileInInbox) as info:
        transport.promote(sftp, TEMP, FINAL, digest)
    assert isinstance(info.value, transport.TransportError)
    assert FINAL in str(info.value)
    assert _on_disk(server, FINAL).read_bytes() == b"a file this delivery did not upload"
    assert server_files(server, INBOX) == [FINAL.rsplit("/", 1)[1]]  # the temp is cleaned up


def test_connection_cut_mid_upload(
    server: SftpServer,
    ssh_keys: tuple[Path, Path, Path],
    payload: tuple[Path, transport.Digest],
) -> None:
    """Catalogue #30/#32: TransportError, no final file; a retry re-uploads and publishes once."""
    path, digest = payload
    server.set_fail_writes_after(100_000)
    with pinned_sftp(server, ssh_keys[1]) as sftp, pytest.raises(transport.TransportError) as info:
        transport.upload_temp(sftp, path, TEMP, digest)
    assert "connection lost" in str(info.value)
    assert FINAL.rsplit("/", 1)[1] not in server_files(server, INBOX)
    partial = _on_disk(server, TEMP)
    assert not partial.exists() or partial.stat().st_size < digest.size  # only a hidden partial
    server.set_fail_writes_after(None)
    with pinned_sftp(server, ssh_keys[1]) as sftp:
        transport.upload_temp(sftp, path, TEMP, digest)
        transport.promote(sftp, TEMP, FINAL, digest)
    assert server_files(server, INBOX) == [FINAL.rsplit("/", 1)[1]]
    assert _on_disk(server, FINAL).read_bytes() == path.read_bytes()


def test_disk_full(
    server: SftpServer, sftp: paramiko.SFTPClient, payload: tuple[Path, transport.Digest]
) -> None:
    """Catalogue #33/#37: an incomplete write is caught, the temp removed, nothing published."""
    path, digest = payload
    server.set_disk_full(INBOX, 120_000)
    with pytest.raises(transport.TransportError) as info:
        transport.upload_temp(sftp, path, TEMP, digest)
    assert "incomplete write" in str(info.value)
    assert server_files(server, INBOX) == []
    # After space is freed a retry succeeds on the same connection.
    server.set_disk_full(None, None)
    transport.upload_temp(sftp, path, TEMP, digest)
    transport.promote(sftp, TEMP, FINAL, digest)
    assert transport.remote_digest(sftp, FINAL) == digest


def test_read_only_inbox(
    server: SftpServer, sftp: paramiko.SFTPClient, payload: tuple[Path, transport.Digest]
) -> None:
    """Catalogue #34: permission denied is said plainly, naming the file; nothing left behind."""
    path, digest = payload
    server.set_read_only(INBOX)
    with pytest.raises(transport.TransportError) as info:
        transport.upload_temp(sftp, path, TEMP, digest)
    assert "permission denied" in str(info.value)
    assert TEMP.rsplit("/", 1)[1] in str(info.value)
    assert server_files(server, INBOX) == []


def test_read_only_at_rename_time(
    server: SftpServer, sftp: paramiko.SFTPClient, payload: tuple[Path, transport.Digest]
) -> None:
    path, digest = payload
    transport.upload_temp(sftp, path, TEMP, digest)
    server.set_read_only(INBOX)
    with pytest.raises(transport.TransportError, match="permission denied"):
        transport.promote(sftp, TEMP, FINAL, digest)
    assert FINAL.rsplit("/", 1)[1] not in server_files(server, INBOX)


def test_check_inbox(server: SftpServer, sftp: paramiko.SFTPClient) -> None:
    transport.check_inbox(sftp, INBOX)
    with pytest.raises(transport.TransportError) as info:
        transport.check_inbox(sftp, "/11002/inbox")
    assert "/11002/inbox" in str(info.value) and "no such file" in str(info.value)
    _on_disk(server, "/44021/afile").write_bytes(b"x")
    with pytest.raises(transport.TransportError, match="not a directory"):
        transport.check_inbox(sftp, "/44021/afile")


def test_a_digest_that_does_not_match_is_refused_and_removed(
    server: SftpServer, sftp: paramiko.SFTPClient, payload: tuple[Path, transport.Digest]
) -> None:
    """The read-back check: bytes that are not the expected ones never reach the rename."""
    path, digest = payload
    wrong = transport.Digest(digest.size, "0" * 64)
    with pytest.raises(transport.TransportError, match="removed"):
        transport.upload_temp(sftp, path, TEMP, wrong)
    assert server_files(server, INBOX) == []


def test_remove_if_present(server: SftpServer, sftp: paramiko.SFTPClient) -> None:
    _on_disk(server, TEMP).write_bytes(b"x")
    assert transport.remove_if_present(sftp, TEMP) is True
    assert transport.remove_if_present(sftp, TEMP) is False


def test_an_unknown_host_key_is_refused(
    server: SftpServer, ssh_keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Catalogue #27/#28: a server presenting another host key than the pinned one is refused."""
    impostor_host_key = ensure_keys(tmp_path / "impostor")[0]
    with SftpServer(server.root, impostor_host_key, ssh_keys[2]) as impostor:
        pinned = pinned_sftp_to(impostor.host, impostor.port, "agii", server.host_public_key, ssh_keys[1])
        with pytest.raises(paramiko.BadHostKeyException), pinned:
            pass  # pragma: no cover - never reached
