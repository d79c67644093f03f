"""The project's transport (kbi.transport) against the real server under faults (rows 30-37).

Every case: a clear TransportError (or connection error), no file under the final name unless it
is complete and verified, and a retry on a fresh connection that publishes exactly one file.
"""

from __future__ import annotations

import os
import posixpath
import re
import time
from pathlib import Path

import paramiko
import pytest

from kbi.transport import (
    Digest,
    TransportError,
    UnknownFileInInbox,
    check_inbox,
    local_digest,
    promote,
    remote_digest,
    temp_path,
    upload_temp,
)

from .harness import AGENCY, TIMEOUT, FaultProxy, SftpEnv, account

pytestmark = [pytest.mark.openssh, pytest.mark.slow]

NIS = "11002"
INBOX = f"/{NIS}/inbox"  # the registry's inbox path (sftp.inbox), as the agency account sees it
NAME = "kbi-inburgeraars-2025-11002.csv.gpg"
FINAL = f"{INBOX}/{NAME}"
MiB = 1 << 20


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, Digest]:
    """2 MiB of incompressible bytes (an encrypted file) and its digest."""
    path = tmp_path / NAME
    path.write_bytes(os.urandom(2 * MiB))
    return path, local_digest(path)


def _publish(sftp: paramiko.SFTPClient, local: Path, digest: Digest, staging: str | None = None) -> None:
    """What kbi.delivery does per municipality: check, upload to the temp name, promote."""
    check_inbox(sftp, INBOX)
    temp = temp_path(FINAL, staging)
    upload_temp(sftp, local, temp, digest)
    promote(sftp, temp, FINAL, digest)


def _on_disk(env: SftpEnv) -> list[str]:
    return sorted(os.listdir(env.inbox(NIS)))


@pytest.mark.parametrize("staging", [None, "/.staging"], ids=["temp-in-inbox", "agency-staging"])
def test_happy_path_publishes_one_verified_file(
    sftp_env: SftpEnv, payload: tuple[Path, Digest], staging: str | None
) -> None:
    local, digest = payload
    with sftp_env.sftp(AGENCY) as sftp:
        _publish(sftp, local, digest, staging)
        # a retry after a successful rename (ledger write lost) finds the same file: no duplicate
        _publish(sftp, local, digest, staging)
    assert _on_disk(sftp_env) == [NAME]
    assert os.listdir(sftp_env.staging) == []
    assert local_digest(sftp_env.inbox(NIS) / NAME) == digest
    with sftp_env.sftp(account(NIS)) as sftp:
        assert sftp.listdir("/inbox") == [NAME]
        assert remote_digest(sftp, f"/inbox/{NAME}") == digest


@pytest.mark.parametrize("staging", [None, "/.staging"], ids=["temp-in-inbox", "agency-staging"])
def test_connection_cut_mid_upload_then_retry(
    sftp_env: SftpEnv, payload: tuple[Path, Digest], staging: str | None
) -> None:
    local, digest = payload
    temp = temp_path(FINAL, staging)
    with FaultProxy(sftp_env.sshd.port, after=256 * 1024, mode="cut") as proxy:
        with sftp_env.sftp(AGENCY, sock=proxy.connect()) as sftp:
            check_inbox(sftp, INBOX)
            with pytest.raises(TransportError, match=rf"^upload of {re.escape(temp)} failed: "):
                upload_temp(sftp, local, temp, digest)
        assert proxy.tripped.is_set()
    # Nothing under the final name. Without a staging dir the municipality may see the dot-part
    # file of the broken attempt (consumers ignore .*.part); with it, the inbox stays empty.
    leftovers = set(_on_disk(sftp_env))
    assert NAME not in leftovers
    assert leftovers <= ({posixpath.basename(temp)} if staging is None else set())

    with sftp_env.sftp(AGENCY) as sftp:  # the retry, on a new connection
        _publish(sftp, local, digest, staging)
    assert _on_disk(sftp_env) == [NAME]
    assert os.listdir(sftp_env.staging) == []
    assert local_digest(sftp_env.inbox(NIS) / NAME) == digest


def test_cut_connection_is_described_as_a_lost_connection(
    sftp_env: SftpEnv, payload: tuple[Path, Digest]
) -> None:
    local, digest = payload
    with (
        FaultProxy(sftp_env.sshd.port, after=256 * 1024, mode="cut") as proxy,
        sftp_env.sftp(AGENCY, sock=proxy.connect()) as sftp,
        pytest.raises(TransportError) as failed,
    ):
        upload_temp(sftp, local, temp_path(FINAL), digest)
    message = str(failed.value)
    assert NAME not in _on_disk(sftp_env)
    # Observed for the same cut: "connection lost or refused (EOFError: )", "... (SSHException:
    # Server connection dropped: )" and, about one time in four, just "Socket is closed".
    assert "connection lost" in message, message
    assert ": )" not in message, message


def test_stalled_connection_fails_within_the_channel_timeout(
    sftp_env: SftpEnv, payload: tuple[Path, Digest]
) -> None:
    local, digest = payload
    with FaultProxy(sftp_env.sshd.port, after=256 * 1024, mode="stall") as proxy:
        with sftp_env.sftp(AGENCY, sock=proxy.connect()) as sftp:
            started = time.monotonic()
            with pytest.raises(TransportError, match="connection lost"):
                upload_temp(sftp, local, temp_path(FINAL), digest)
            elapsed = time.monotonic() - started
        assert proxy.tripped.is_set()
    # bounded by the channel timeout: it fires for the stalled write and for closing the file;
    # nothing more is tried on a connection known to be dead
    assert TIMEOUT <= elapsed < 3 * TIMEOUT
    assert NAME not in _on_disk(sftp_env)


def test_disk_full_is_a_clear_error_and_leaves_nothing(
    sftp_env: SftpEnv, full_inbox: str, payload: tuple[Path, Digest]
) -> None:
    assert full_inbox == NIS
    fs = os.statvfs(sftp_env.inbox(NIS))
    assert fs.f_blocks * fs.f_frsize <= MiB  # the fault is real: 1 MiB for a 2 MiB upload
    local, digest = payload
    with (
        sftp_env.sftp(AGENCY) as sftp,
        pytest.raises(TransportError, match="incomplete write, the server's disk may be full"),
    ):
        upload_temp(sftp, local, temp_path(FINAL), digest)
    assert _on_disk(sftp_env) == []  # the truncated temp file was removed, nothing published


def test_a_foreign_file_under_the_final_name_is_not_overwritten(
    sftp_env: SftpEnv, payload: tuple[Path, Digest]
) -> None:
    local, digest = payload
    foreign = sftp_env.inbox(NIS) / NAME
    foreign.write_bytes(b"not ours")
    with sftp_env.sftp(AGENCY) as sftp:
        upload_temp(sftp, local, temp_path(FINAL), digest)
        with pytest.raises(UnknownFileInInbox, match="not overwritten"):
            promote(sftp, temp_path(FINAL), FINAL, digest)
    assert foreign.read_bytes() == b"not ours"


def test_rename_across_filesystems_is_not_reported_as_disk_full(
    sftp_env: SftpEnv, full_inbox: str, tmp_path: Path
) -> None:
    # The inbox is a separate filesystem (here the tmpfs, in production e.g. a quota volume)
    # while KBI_SFTP_STAGING_DIR is on another: posix-rename fails with EXDEV, which internal-sftp
    # reports as the generic SSH_FX_FAILURE "Failure". The file is small and the disk not full.
    small = tmp_path / "small.gpg"
    small.write_bytes(b"x" * 1000)
    digest = local_digest(small)
    temp = temp_path(FINAL, "/.staging")
    with sftp_env.sftp(AGENCY) as sftp:
        upload_temp(sftp, small, temp, digest)
        with pytest.raises(TransportError) as failed:
            promote(sftp, temp, FINAL, digest)
    assert _on_disk(sftp_env) == []
    assert os.statvfs(sftp_env.inbox(full_inbox)).f_bfree > 0  # the disk is not full
    assert "disk may be full" not in str(failed.value), str(failed.value)


def test_permission_denied_names_the_cause(sftp_env: SftpEnv, payload: tuple[Path, Digest]) -> None:
    local, digest = payload
    inbox = sftp_env.inbox(NIS)
    inbox.chmod(0o2750)  # the agency group loses write access
    try:
        with sftp_env.sftp(AGENCY) as sftp:
            check_inbox(sftp, INBOX)  # still visible, just not writable
            with pytest.raises(TransportError, match="permission denied"):
                upload_temp(sftp, local, temp_path(FINAL), digest)
    finally:
        inbox.chmod(0o2770)
    assert _on_disk(sftp_env) == []


@pytest.mark.parametrize("missing", ["moved-away", "never-created"])
def test_missing_inbox_is_named(sftp_env: SftpEnv, missing: str) -> None:
    nis = "71016" if missing == "moved-away" else "99999"
    inbox = sftp_env.inbox("71016")
    away = inbox.with_name("inbox.away")
    if missing == "moved-away":
        inbox.rename(away)
    try:
        with (
            sftp_env.sftp(AGENCY) as sftp,
            pytest.raises(TransportError, match=rf"^inbox /{nis}/inbox: no such file or directory$"),
        ):
            check_inbox(sftp, f"/{nis}/inbox")
    finally:
        if away.exists():
            away.rename(inbox)


def test_server_down_is_a_fast_connection_error(sftp_env: SftpEnv) -> None:
    sshd = sftp_env.sshd
    with sftp_env.sftp(AGENCY) as established:
        sshd.stop_listener()
        try:
            # sessions live in their own processes: a restart of sshd does not cut them
            assert NIS in established.listdir("/")
            started = time.monotonic()
            with pytest.raises(paramiko.ssh_exception.NoValidConnectionsError) as refused:
                sftp_env.client(AGENCY)
            assert time.monotonic() - started < 1.0
            assert isinstance(refused.value, OSError)
        finally:
            sshd.start()
    with sftp_env.sftp(AGENCY) as sftp:  # and back
        check_inbox(sftp, INBOX)
