"""Who can reach what on the real transfer server (catalogue rows 27, 28, 38, 39, 40).

Everything runs against deploy/sftp as shipped: the setup script built the accounts and the tree,
sshd runs the shipped sshd_config with test paths (see harness.py).
"""

from __future__ import annotations

import contextlib
import grp
import io
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from .harness import (
    AGENCY,
    MUNICIPALITIES,
    SETUP_SCRIPT,
    SSHD_CONFIG,
    TIMEOUT,
    SftpEnv,
    account,
    host_key_from_pub,
    open_sftp,
    run,
)

pytestmark = [pytest.mark.openssh, pytest.mark.slow]

A, B = "11002", "44021"  # municipality A must never reach municipality B
FORCED_SFTP = "internal-sftp -l INFO -f AUTH -P symlink,hardlink"


def _secret_in(env: SftpEnv, nis: str, name: str = "secret.csv") -> Path:
    """A file in a municipality's inbox as the agency would leave it (agii:agency 0644)."""
    path = env.inbox(nis) / name
    path.write_bytes(b"rijksregisternummer\n85073003328\n")
    os.chown(path, pwd.getpwnam(AGENCY).pw_uid, grp.getgrnam("agency").gr_gid)
    path.chmod(0o644)
    return path


def _mode(path: Path) -> tuple[str, str, str]:
    st = path.lstat()
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, f"{stat.S_IMODE(st.st_mode):o}"


# ------------------------------------------------------------------ the deployed layout itself
def test_setup_builds_the_documented_layout(sftp_env: SftpEnv) -> None:
    assert _mode(sftp_env.root) == ("root", "root", "755")
    assert _mode(sftp_env.staging) == (AGENCY, "agency", "700")
    assert _mode(sftp_env.keys_dir) == ("root", "root", "755")
    for nis in MUNICIPALITIES:
        user = account(nis)
        assert _mode(sftp_env.chroot(nis)) == ("root", "root", "755")
        assert _mode(sftp_env.inbox(nis)) == (user, "agency", "2770")
        assert os.readlink(sftp_env.root / nis) == user  # the registry's /<NIS>/inbox for agii
        assert _mode(sftp_env.keys_dir / user) == ("root", "root", "644")
        entry = pwd.getpwnam(user)
        assert entry.pw_shell == "/usr/sbin/nologin"
        assert grp.getgrgid(entry.pw_gid).gr_name == "municipalities"
    for user in (AGENCY, *(account(n) for n in MUNICIPALITIES)):
        # '*': no password and not locked ('!' is refused by sshd with UsePAM no)
        shadow = run(["getent", "shadow", user]).stdout.split(":")
        assert shadow[1] == "*", user


def test_shipped_config_passes_sshd_check_as_is() -> None:
    # the file operators install, with its production paths (needs the package's host key)
    if not Path("/etc/ssh/ssh_host_ed25519_key").exists():
        pytest.skip("no /etc/ssh/ssh_host_ed25519_key (openssh-server generates it on install)")
    proc = subprocess.run(
        ["/usr/sbin/sshd", "-t", "-f", str(SSHD_CONFIG)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_setup_script_is_idempotent(sftp_env: SftpEnv) -> None:
    def snapshot() -> list[tuple[str, tuple[str, str, str]]]:
        paths = [sftp_env.root, *sftp_env.root.rglob("*"), sftp_env.keys_dir, *sftp_env.keys_dir.iterdir()]
        return [(str(p), _mode(p)) for p in sorted(paths)]

    before = snapshot()
    out = run(sftp_env.setup_command(*sftp_env.setup_args)).stdout
    assert out.strip() == "setup-sftp-accounts: nothing to change"
    assert snapshot() == before


def test_key_rotation_replaces_the_old_key(sftp_env: SftpEnv, tmp_path: Path) -> None:
    user = account("71016")
    old_key = sftp_env.client_keys[user]
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "new")])
    new_key = paramiko.Ed25519Key.from_private_key_file(str(tmp_path / "new"))
    try:
        out = run(sftp_env.setup_command("--key", f"{user}={tmp_path / 'new.pub'}", "71016")).stdout
        assert f"run: mv -f {sftp_env.keys_dir / user}.new {sftp_env.keys_dir / user}" in out
        assert _mode(sftp_env.keys_dir / user) == ("root", "root", "644")
        with pytest.raises(paramiko.AuthenticationException):
            sftp_env.client(user, pkey=old_key)
        with open_sftp(sftp_env.client(user, pkey=new_key)) as sftp:
            assert sftp.listdir("/") == ["inbox"]
    finally:  # the other tests log in with the original key
        run(sftp_env.setup_command(*sftp_env.setup_args))
    sftp_env.client(user, pkey=old_key).close()


def test_setup_script_dry_run_changes_nothing(sftp_env: SftpEnv, tmp_path: Path) -> None:
    registry = tmp_path / "recipients.yaml"
    registry.write_text(
        "- nis_code: '11002'\n  name: Antwerpen\n  sftp:\n    inbox: /11002/inbox\n"
        "- nis_code: '23002'\n  name: Asse\n  sftp:\n    inbox: /23002/inbox\n"
    )
    out = run(sftp_env.setup_command("--dry-run", "--registry", str(registry))).stdout
    assert re.search(r"^would run: useradd .* m23002$", out, re.MULTILINE)
    assert f"would run: mkdir -m 2770 {sftp_env.inbox('23002')}" in out
    assert "m11002" not in out  # exists already: nothing to do for it
    assert out.rstrip().endswith("change(s) would be made (dry run)")
    with pytest.raises(KeyError):
        pwd.getpwnam("m23002")
    assert not sftp_env.chroot("23002").exists()


def test_setup_script_refuses_non_root(sftp_env: SftpEnv) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is missing")
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *sftp_env.setup_command("23002")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 1
    assert "must run as root" in proc.stderr
    assert not sftp_env.chroot("23002").exists()


def test_setup_script_refuses_a_root_under_tmp(sftp_env: SftpEnv, tmp_path: Path) -> None:
    # /tmp is 1777: sshd would refuse every chroot and key file below it at login time
    target = tmp_path / "sftp"
    cmd = ["bash", str(SETUP_SCRIPT), "--root", str(target), "23002"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 1
    assert "must be root-owned and not group/other-writable" in proc.stderr
    assert not target.exists()
    with pytest.raises(KeyError):
        pwd.getpwnam("m23002")


def test_setup_script_warns_when_an_inbox_is_on_another_filesystem(
    sftp_env: SftpEnv, full_inbox: str
) -> None:
    # posix-rename from the agency's staging dir into that inbox would fail with EXDEV
    proc = run(sftp_env.setup_command(*sftp_env.setup_args))
    assert proc.stdout.strip() == "setup-sftp-accounts: nothing to change"  # the mount kept owner/mode
    assert f"warning: {sftp_env.inbox(full_inbox)} is on another filesystem" in proc.stderr


@pytest.mark.parametrize("user", [AGENCY, account(A)])
def test_effective_sshd_settings(sftp_env: SftpEnv, user: str) -> None:
    cfg = sftp_env.sshd.effective(user)
    chroot = str(sftp_env.root) if user == AGENCY else f"{sftp_env.root}/%u"
    assert cfg["chrootdirectory"] == chroot
    assert cfg["forcecommand"] == FORCED_SFTP
    for key in ("permittty", "allowtcpforwarding", "allowagentforwarding", "x11forwarding"):
        assert cfg[key] == "no", key
    assert cfg["allowstreamlocalforwarding"] == "no"
    assert cfg["permittunnel"] == "no"
    assert cfg["disableforwarding"] == "yes"
    assert cfg["passwordauthentication"] == "no"
    assert cfg["kbdinteractiveauthentication"] == "no"
    assert cfg["authenticationmethods"] == "publickey"
    assert cfg["permitrootlogin"] == "no"
    assert cfg["allowgroups"] == "municipalities agency"
    assert cfg["strictmodes"] == "yes"


# --------------------------------------------------------------------------- municipalities
def test_municipality_sees_only_its_inbox(sftp_env: SftpEnv) -> None:
    _secret_in(sftp_env, B)
    with sftp_env.sftp(account(A)) as sftp:
        assert sftp.listdir("/") == ["inbox"]
        assert sftp.listdir("/..") == ["inbox"]  # the chroot's root is its own parent
        assert sftp.normalize(".") == "/inbox"  # home /inbox: clients start in the inbox
        assert sftp.listdir("/inbox") == []


@pytest.mark.parametrize(
    "path",
    [
        "../m44021",
        "../m44021/inbox",
        "/../m44021/inbox",
        "../../m44021/inbox",
        "/44021/inbox",
        "/m44021/inbox",
        "{root}/m44021/inbox",  # the real path on the host
        "{root}",
        "/etc",
        "/srv",
    ],
)
def test_municipality_cannot_list_outside_its_chroot(sftp_env: SftpEnv, path: str) -> None:
    _secret_in(sftp_env, B)
    path = path.format(root=sftp_env.root)
    with sftp_env.sftp(account(A)) as sftp:
        with pytest.raises(FileNotFoundError):
            sftp.listdir(path)
        with pytest.raises(FileNotFoundError):
            sftp.stat(path)


@pytest.mark.parametrize(
    "path",
    [
        "../m44021/inbox/secret.csv",
        "/../m44021/inbox/secret.csv",
        "{root}/m44021/inbox/secret.csv",
        "/etc/passwd",
    ],
)
def test_municipality_cannot_read_or_write_elsewhere(sftp_env: SftpEnv, path: str) -> None:
    secret = _secret_in(sftp_env, B)
    path = path.format(root=sftp_env.root)
    with sftp_env.sftp(account(A)) as sftp:
        with pytest.raises(FileNotFoundError):
            sftp.open(path, "rb")
        with pytest.raises(FileNotFoundError):
            sftp.putfo(io.BytesIO(b"overwritten"), path, confirm=False)
        with pytest.raises(FileNotFoundError):
            sftp.remove(path)
    assert secret.read_bytes().startswith(b"rijksregisternummer")


def test_municipality_cannot_write_its_chroot_root(sftp_env: SftpEnv) -> None:
    with sftp_env.sftp(account(A)) as sftp:
        with pytest.raises(PermissionError):
            sftp.putfo(io.BytesIO(b"x"), "/planted.csv", confirm=False)
        with pytest.raises(PermissionError):
            sftp.mkdir("/dev")  # e.g. a fake /dev/log to forge the audit trail
        with pytest.raises(PermissionError):
            sftp.rename("/inbox", "/elsewhere")
    assert sorted(os.listdir(sftp_env.chroot(A))) == ["inbox"]


def test_municipality_reads_and_deletes_a_file_in_its_inbox(sftp_env: SftpEnv) -> None:
    secret = _secret_in(sftp_env, A, "kbi-2025.csv.gpg")
    with sftp_env.sftp(account(A)) as sftp:
        assert sftp.listdir("/inbox") == ["kbi-2025.csv.gpg"]
        with sftp.open("/inbox/kbi-2025.csv.gpg", "rb") as fh:
            assert fh.read() == secret.read_bytes()
        sftp.remove("/inbox/kbi-2025.csv.gpg")
        assert sftp.listdir("/inbox") == []
    assert not secret.exists()


@pytest.mark.parametrize("user", [AGENCY, account(A)])
def test_links_are_refused(sftp_env: SftpEnv, user: str) -> None:
    # -P symlink,hardlink: nobody plants a link in an inbox
    _secret_in(sftp_env, A)
    base = "/m11002/inbox" if user == AGENCY else "/inbox"
    with sftp_env.sftp(user) as sftp, pytest.raises(PermissionError):
        sftp.symlink(f"{base}/secret.csv", f"{base}/link.csv")
    assert sorted(os.listdir(sftp_env.inbox(A))) == ["secret.csv"]


# ---------------------------------------------------------------------------------- agency
def test_agency_writes_and_renames_in_every_inbox(sftp_env: SftpEnv) -> None:
    with sftp_env.sftp(AGENCY) as sftp:
        top = sftp.listdir("/")
        for nis in MUNICIPALITIES:
            assert account(nis) in top and nis in top
            sftp.putfo(io.BytesIO(nis.encode()), f"/{nis}/inbox/.f.csv.part")
            sftp.posix_rename(f"/{nis}/inbox/.f.csv.part", f"/{nis}/inbox/f.csv")
            assert sftp.listdir(f"/{account(nis)}/inbox") == ["f.csv"]
    for nis in MUNICIPALITIES:
        published = sftp_env.inbox(nis) / "f.csv"
        assert published.read_bytes() == nis.encode()
        # group agency through the inbox's setgid bit; the municipality reads it as "other"
        assert _mode(published) == (AGENCY, "agency", "644")
        with sftp_env.sftp(account(nis)) as sftp:
            assert sftp.listdir("/inbox") == ["f.csv"]


@pytest.mark.parametrize("path", ["/etc", "/etc/passwd", "/srv", "/../../etc", "{keys}", "{keys}/agii"])
def test_agency_cannot_read_the_host(sftp_env: SftpEnv, path: str) -> None:
    path = path.format(keys=sftp_env.keys_dir)
    with sftp_env.sftp(AGENCY) as sftp:
        with pytest.raises(FileNotFoundError):
            sftp.stat(path)
        with pytest.raises(FileNotFoundError):
            sftp.open(path, "rb")
        assert "etc" not in sftp.listdir("/")
        assert sftp.listdir("/../..") == sftp.listdir("/")


# -------------------------------------------------------------------- no shell, no tunnels
@pytest.fixture(params=[AGENCY, account(A)])
def ssh_client(request: pytest.FixtureRequest, sftp_env: SftpEnv) -> Iterator[paramiko.SSHClient]:
    client = sftp_env.client(request.param)
    try:
        yield client
    finally:
        client.close()


def _session(client: paramiko.SSHClient) -> paramiko.Channel:
    transport = client.get_transport()
    assert transport is not None
    channel = transport.open_session(timeout=TIMEOUT)
    channel.settimeout(TIMEOUT)
    return channel


def _all_output(channel: paramiko.Channel) -> bytes:
    out = b""
    while chunk := channel.recv(4096):
        out += chunk
    return out


@pytest.mark.parametrize("command", ["id", "cat /etc/passwd", "internal-sftp"])
def test_exec_is_refused(ssh_client: paramiko.SSHClient, command: str) -> None:
    channel = _session(ssh_client)
    channel.exec_command(command)
    assert _all_output(channel) == b"This service allows sftp connections only.\n"
    assert channel.recv_exit_status() == 1


def test_shell_and_tty_are_refused(ssh_client: paramiko.SSHClient) -> None:
    shell = _session(ssh_client)
    shell.invoke_shell()
    assert _all_output(shell) == b"This service allows sftp connections only.\n"
    assert shell.recv_exit_status() == 1
    with pytest.raises(paramiko.SSHException):
        _session(ssh_client).get_pty()


def test_port_forwarding_is_refused(sftp_env: SftpEnv, ssh_client: paramiko.SSHClient) -> None:
    transport = ssh_client.get_transport()
    assert transport is not None
    with pytest.raises(paramiko.ChannelException) as local:
        transport.open_channel(
            "direct-tcpip", ("127.0.0.1", sftp_env.sshd.port), ("127.0.0.1", 0), timeout=TIMEOUT
        )
    assert local.value.code == paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
    with pytest.raises(paramiko.SSHException, match="TCP forwarding request denied"):
        transport.request_port_forward("127.0.0.1", 0)
    assert "refused local port forward" in sftp_env.sshd.log_text()


# ---------------------------------------------------------------------------- authentication
def test_a_wrong_client_key_is_refused(sftp_env: SftpEnv, tmp_path: Path) -> None:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")])
    stranger = paramiko.Ed25519Key.from_private_key_file(str(tmp_path / "stranger"))
    with pytest.raises(paramiko.AuthenticationException):
        sftp_env.client(account(A), pkey=stranger)
    # a key is bound to its account: the agency's key does not open a municipality's inbox
    with pytest.raises(paramiko.AuthenticationException):
        sftp_env.client(account(A), pkey=sftp_env.client_keys[AGENCY])
    with pytest.raises(paramiko.AuthenticationException):
        sftp_env.client(account(B), pkey=sftp_env.client_keys[account(A)])


@pytest.mark.parametrize("user", [AGENCY, account(A)])
def test_password_authentication_is_refused(sftp_env: SftpEnv, user: str) -> None:
    with pytest.raises(paramiko.BadAuthenticationType) as refused:
        sftp_env.client(user, password="correct horse battery staple")
    assert refused.value.allowed_types == ["publickey"]


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_accounts_outside_the_sftp_groups_are_refused(sftp_env: SftpEnv, user: str) -> None:
    # even with a valid key in the keys dir: PermitRootLogin no and AllowGroups
    shutil.copy(sftp_env.keys_dir / AGENCY, sftp_env.keys_dir / user)
    with pytest.raises(paramiko.AuthenticationException):
        sftp_env.client(user, pkey=sftp_env.client_keys[AGENCY])
    assert (
        f"User {user} from 127.0.0.1 not allowed because none of user's groups are listed in AllowGroups"
        in sftp_env.sshd.log_text()
    )


def _log_lines_for(
    env: SftpEnv, offset: int, client_port: int, until: str, timeout: float = 3.0
) -> list[str]:
    """sshd's log lines about one client connection, once ``until`` shows up (sshd logs async)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in env.sshd.log_since(offset).splitlines() if f"port {client_port}" in line]
        if any(until in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def test_a_changed_host_key_stops_before_authentication(sftp_env: SftpEnv, tmp_path: Path) -> None:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "impostor")])
    pinned_elsewhere = host_key_from_pub((tmp_path / "impostor.pub").read_text())
    offset = sftp_env.sshd.log_size()
    sock = socket.create_connection(("127.0.0.1", sftp_env.sshd.port), timeout=TIMEOUT)
    client_port = sock.getsockname()[1]
    with pytest.raises(paramiko.BadHostKeyException) as bad:
        sftp_env.client(AGENCY, host_key=pinned_elsewhere, sock=sock)
    assert bad.value.key == sftp_env.sshd.host_key
    lines = _log_lines_for(sftp_env, offset, client_port, until="[preauth]")
    assert any("Connection from" in line for line in lines)
    assert any("[preauth]" in line for line in lines), lines  # gone before authentication
    for marker in ("Accepted", "Failed", "Postponed", "authenticating user", "Invalid user", "publickey"):
        assert not any(marker in line for line in lines), lines


def test_an_unknown_host_key_is_rejected(sftp_env: SftpEnv) -> None:
    with paramiko.SSHClient() as client:  # nothing pinned, nothing loaded from ~/.ssh
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
            client.connect(
                "127.0.0.1",
                sftp_env.sshd.port,
                username=AGENCY,
                pkey=sftp_env.client_keys[AGENCY],
                look_for_keys=False,
                allow_agent=False,
                timeout=TIMEOUT,
                banner_timeout=TIMEOUT,
                auth_timeout=TIMEOUT,
                channel_timeout=TIMEOUT,
            )


def test_a_group_writable_chroot_is_refused_by_sshd_and_setup_repairs_it(sftp_env: SftpEnv) -> None:
    # catalogue row 40: a chroot an account could write to would let it replace the jail
    sftp_env.chroot("71016").chmod(0o775)  # the autouse fixture restores 0755
    with (
        pytest.raises((ConnectionError, EOFError, paramiko.SSHException)),
        open_sftp(sftp_env.client("m71016")) as sftp,
    ):
        sftp.listdir("/")
    assert (
        f'bad ownership or modes for chroot directory "{sftp_env.chroot("71016")}"'
        in sftp_env.sshd.log_text()
    )
    # the setup script is the repair: it puts the mode back, and the account logs in again
    out = run(sftp_env.setup_command(*sftp_env.setup_args)).stdout
    assert f"run: chmod 755 {sftp_env.chroot('71016')}" in out
    assert _mode(sftp_env.chroot("71016")) == ("root", "root", "755")
    with open_sftp(sftp_env.client("m71016")) as sftp:
        assert sftp.listdir("/") == ["inbox"]


# ------------------------------------------------------------------------ audit (pickup proof)
@contextlib.contextmanager
def _dev_log(chroot: Path) -> Iterator[socket.socket]:
    """A syslog socket at <chroot>/dev/log, as rsyslog's per-chroot listen socket would be."""
    dev = chroot / "dev"
    dev.mkdir(mode=0o755)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(dev / "log"))
        (dev / "log").chmod(0o666)
        sock.settimeout(0.2)
        yield sock
    finally:
        sock.close()
        shutil.rmtree(dev)


def _datagrams(sock: socket.socket, until: str, timeout: float = 3.0) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any(until in line for line in lines):
        with contextlib.suppress(TimeoutError):
            lines.append(sock.recv(4096).decode(errors="replace"))
    return lines


def test_per_file_audit_lines_reach_dev_log_in_each_chroot(sftp_env: SftpEnv) -> None:
    with _dev_log(sftp_env.root) as agency_log, _dev_log(sftp_env.chroot(A)) as muni_log:
        with sftp_env.sftp(AGENCY) as sftp:
            sftp.putfo(io.BytesIO(b"x" * 1000), "/11002/inbox/.r.csv.part")
            sftp.posix_rename("/11002/inbox/.r.csv.part", "/11002/inbox/r.csv")
        with sftp_env.sftp(account(A)) as sftp:
            with sftp.open("/inbox/r.csv", "rb") as fh:
                assert len(fh.read()) == 1000
            sftp.remove("/inbox/r.csv")
        agency = _datagrams(agency_log, until="session closed")
        municipality = _datagrams(muni_log, until="session closed")
    assert any('posix-rename old "/11002/inbox/.r.csv.part" new "/11002/inbox/r.csv"' in x for x in agency)
    assert any("session opened for local user agii" in x for x in agency)
    assert any('open "/inbox/r.csv" flags READ' in x for x in municipality)
    assert any('close "/inbox/r.csv" bytes read 1000 written 0' in x for x in municipality)
    assert any('remove name "/inbox/r.csv"' in x for x in municipality)
    assert all(x.startswith("<38>") for x in agency + municipality)  # facility AUTH, level INFO
