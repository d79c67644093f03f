"""Fixtures for the tests against a real OpenSSH sshd (see harness.py).

The whole directory is skipped, with the reason, when not root or /usr/sbin/sshd is missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import MountNotPermitted, SftpEnv, skip_reason, tmpfs_over

FULL_NIS = "11002"  # the municipality whose inbox the disk-full fixture shrinks


@pytest.fixture(scope="session")
def sftp_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SftpEnv]:
    """Accounts, chroot tree and a running sshd built from deploy/sftp; all removed afterwards."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    # Private client keys may live under /tmp; the authorized keys go to a root-owned dir in /srv.
    env = SftpEnv.create(tmp_path_factory.mktemp("ssh-client-keys"))
    try:
        yield env
    finally:
        env.destroy()


@pytest.fixture(autouse=True)
def clean_server(sftp_env: SftpEnv) -> Iterator[None]:
    """Each test starts with a listening sshd, empty inboxes with their modes and no mounts."""
    if sftp_env.sshd.proc is None:
        sftp_env.sshd.start()
    yield
    sftp_env.reset()
    if sftp_env.sshd.proc is None:  # a test stopped the listener and failed before restarting
        sftp_env.sshd.start()


@pytest.fixture
def full_inbox(sftp_env: SftpEnv) -> Iterator[str]:
    """A 1 MiB tmpfs over one inbox (same owner, group and mode); the NIS code of that inbox."""
    try:
        with tmpfs_over(sftp_env.inbox(FULL_NIS), size="1m"):
            yield FULL_NIS
    except MountNotPermitted as exc:
        pytest.skip(str(exc))
