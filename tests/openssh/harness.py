"""A real OpenSSH transfer server for the tests, built from deploy/sftp exactly as operators do.

``SftpEnv.create()`` runs deploy/sftp/setup-sftp-accounts.sh against a private root under
/srv (never /tmp: sshd wants every chroot and key-file path component root-owned and not
group/other-writable), generates client keys, renders deploy/sftp/sshd_config with test paths and
a free loopback port, checks it with ``sshd -t`` and starts ``/usr/sbin/sshd -D``.
``SftpEnv.destroy()`` stops the listener and every per-connection child, unmounts fault mounts,
removes the tree and the accounts and groups this run created (and nothing else).

Also here: a strict paramiko client (pinned host key only), a TCP proxy that cuts or stalls a
connection, and a tmpfs "disk full" mount. See /work/shared/docs/openssh-sftp-notes.md.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import os
import pwd
import re
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "sftp"
SETUP_SCRIPT = DEPLOY / "setup-sftp-accounts.sh"
SSHD_CONFIG = DEPLOY / "sshd_config"
SSHD = Path("/usr/sbin/sshd")  # absolute: sshd refuses to re-exec itself from a relative path
PRODUCTION_ROOT = "/srv/sftp"
HOST = "127.0.0.1"

MUNICIPALITIES = ("11002", "44021", "71016")
AGENCY = "agii"
GROUPS = ("municipalities", "agency")
TIMEOUT = 3.0  # every paramiko timeout; the stalled-connection test relies on it


def account(nis: str) -> str:
    return f"m{nis}"


ACCOUNTS = (AGENCY, *(account(n) for n in MUNICIPALITIES))


def skip_reason() -> str | None:
    """Why this machine cannot run the real-sshd tests, or None."""
    if os.geteuid() != 0:
        return "the OpenSSH tests need root (accounts, chroot, mounts); CI runs them as root"
    if not SSHD.is_file():
        return f"{SSHD} is missing (apt-get install openssh-server; .ci/run does)"
    for tool in ("ssh-keygen", "useradd", "userdel", "groupdel", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def run(cmd: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command, failing with its output (not just its exit code) when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc


def render_config(
    template: str, *, port: int, host_key: Path, pid_file: Path, keys_dir: Path, root: Path
) -> str:
    """The shipped sshd_config with only the paths and the port replaced."""
    replacements = [
        (r"^Port .*$", f"Port {port}"),
        (r"^#?ListenAddress .*$", f"ListenAddress {HOST}"),
        (r"^HostKey .*$", f"HostKey {host_key}"),
        (r"^PidFile .*$", f"PidFile {pid_file}"),
        (r"^AuthorizedKeysFile .*$", f"AuthorizedKeysFile {keys_dir}/%u"),
        (rf"^(\s*ChrootDirectory ){re.escape(PRODUCTION_ROOT)}(?=/|$)", rf"\g<1>{root}"),
    ]
    text = template
    for pattern, value in replacements:
        text, count = re.subn(pattern, value, text, flags=re.MULTILINE)
        if count == 0:
            raise AssertionError(f"deploy/sftp/sshd_config has no line matching {pattern!r}")
    live = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    leftover = [line for line in live if PRODUCTION_ROOT in line]
    assert not leftover, f"production paths left in the test config: {leftover}"
    return text


# ----------------------------------------------------------------------------------- processes
def _proc_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, comm, state) for every process, read from /proc."""
    table: dict[int, tuple[int, str, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        state, ppid = raw[raw.rindex(")") + 2 :].split()[:2]
        table[int(entry)] = (int(ppid), comm, state)
    return table


def descendants(pid: int) -> list[int]:
    table = _proc_table()
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, _comm, _state) in table.items():
            if ppid == parent and child not in found:
                found.append(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """Running, i.e. not gone and not a zombie (PID 1 of a container may never reap it)."""
    info = _proc_table().get(pid)
    return info is not None and info[2] != "Z"


def _kill_all(pids: list[int], timeout: float = 3.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.01)
        if not any(_alive(p) for p in pids):
            return


@dataclass
class Sshd:
    """``sshd -D`` on a loopback port. Per-connection children call setsid(), so signalling the
    listener's process group would miss them: they are found through /proc instead."""

    config: Path
    log: Path
    pid_file: Path
    port: int
    host_key: paramiko.PKey
    proc: subprocess.Popen[bytes] | None = None
    _orphans: set[int] = field(default_factory=set)  # sessions that outlived a stopped listener

    def check(self) -> None:
        run([str(SSHD), "-t", "-f", str(self.config)])

    def effective(self, user: str) -> dict[str, str]:
        """``sshd -T`` for a user: the settings after the Match blocks, lower-case keywords."""
        spec = f"user={user},host=localhost,addr={HOST},laddr={HOST},lport={self.port}"
        out = run([str(SSHD), "-T", "-f", str(self.config), "-C", spec]).stdout
        settings: dict[str, str] = {}
        for line in out.splitlines():
            key, _, value = line.partition(" ")
            # list keywords (allowgroups, ...) come one value per line
            settings[key] = f"{settings[key]} {value}" if key in settings else value
        return settings

    def start(self, timeout: float = 10.0) -> None:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
        self.check()
        self.pid_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [str(SSHD), "-D", "-f", str(self.config), "-E", str(self.log)],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not self.pid_file.exists():  # written once the listening socket is bound
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}:\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd did not write {self.pid_file} in {timeout} s:\n{self.log_text()}")
            time.sleep(0.005)

    def sessions(self) -> list[int]:
        """Per-connection children of the running listener plus orphans of an earlier one."""
        live = descendants(self.proc.pid) if self.proc and self.proc.poll() is None else []
        return live + [p for p in self._orphans if _alive(p) and p not in live]

    def stop_listener(self) -> None:
        """Stop accepting connections; established sessions go on (like a restart of sshd)."""
        if self.proc is None:
            return
        self._orphans.update(self.sessions())
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None
        self.pid_file.unlink(missing_ok=True)

    def stop(self) -> None:
        sessions = self.sessions()
        self.stop_listener()
        _kill_all(sessions)
        self._orphans.clear()

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"

    def log_size(self) -> int:
        try:
            return self.log.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int) -> str:
        with self.log.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")


# -------------------------------------------------------------------------------------- client
def host_key_from_pub(line: str) -> paramiko.PKey:
    key_type, b64 = line.split()[:2]
    return paramiko.PKey.from_type_string(key_type, base64.b64decode(b64))


def connect(
    port: int,
    user: str,
    pkey: paramiko.PKey | None,
    host_key: paramiko.PKey,
    *,
    sock: socket.socket | None = None,
    password: str | None = None,
    timeout: float = TIMEOUT,
) -> paramiko.SSHClient:
    """A client as strict as the pipeline's: only ``host_key`` is trusted for [127.0.0.1]:port.

    With ``sock`` (a proxy), ``port`` is still sshd's: paramiko looks the host key up by it.
    """
    client = paramiko.SSHClient()  # empty HostKeys; never load_system_host_keys()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.get_host_keys().add(f"[{HOST}]:{port}", host_key.get_name(), host_key)
    try:
        client.connect(
            HOST,
            port,
            username=user,
            pkey=pkey,
            password=password,
            sock=sock,
            look_for_keys=False,
            allow_agent=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
        )
    except BaseException:
        client.close()
        raise
    return client


@contextlib.contextmanager
def open_sftp(client: paramiko.SSHClient, timeout: float = TIMEOUT) -> Iterator[paramiko.SFTPClient]:
    try:
        sftp = client.open_sftp()
        # without it a stalled server makes every read/write wait forever
        channel = sftp.get_channel()
        assert channel is not None
        channel.settimeout(timeout)
        yield sftp
    finally:
        client.close()


# --------------------------------------------------------------------------------------- proxy
class FaultProxy:
    """A loopback TCP proxy to sshd that misbehaves after ``after`` client->server bytes.

    mode "cut": reset both sockets (RST, like a dropped connection); mode "stall": forward
    nothing more in either direction but keep both sockets open (a hung network path).
    """

    def __init__(self, target_port: int, *, after: int, mode: str = "cut") -> None:
        if mode not in ("cut", "stall"):
            raise ValueError(mode)
        self.target_port = target_port
        self.after = after
        self.mode = mode
        self.forwarded = 0  # client -> server bytes
        self.tripped = threading.Event()
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self.port = 0

    def __enter__(self) -> FaultProxy:
        self._listener.bind((HOST, 0))
        self._listener.listen(8)
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in sendall()
                s.close()
        self._listener.close()
        for t in self._threads:
            t.join(5)

    def connect(self) -> socket.socket:
        return socket.create_connection((HOST, self.port), timeout=TIMEOUT)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection((HOST, self.target_port), timeout=TIMEOUT)
            for s in (client, upstream):
                # blocking: a send timeout would silently end forwarding under back-pressure;
                # _pump polls with select() so it still notices when to stop
                s.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream, True)
            self._spawn(self._pump, upstream, client, False)

    def _cut(self, *socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                # linger 0: close() sends RST, as a middlebox or crashed peer would
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        while not self._closing.is_set():
            if self.tripped.is_set():
                if self.mode == "cut":
                    self._cut(src, dst)
                    return
                self._closing.wait(0.1)  # stalled: hold the sockets, move nothing
                continue
            try:
                if not select.select([src], [], [], 0.1)[0]:
                    continue
                data = src.recv(65536)
            except (OSError, ValueError):  # closed by the other pump or by __exit__
                return
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            if upstream:
                with self._lock:
                    room = self.after - self.forwarded
                    if len(data) >= room:
                        data = data[: max(room, 0)]
                        self.tripped.set()
                    self.forwarded += len(data)
            try:
                dst.sendall(data)
            except OSError:
                return


# ------------------------------------------------------------------------------------- mounts
def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path``, deepest first (the order to unmount them in)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")  # \040 for a space
        if point == str(path) or point.startswith(f"{path}/"):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount(point: Path) -> None:
    for _ in range(50):  # a session child closing its file may still hold the mount busy
        if subprocess.run(["umount", str(point)], capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.02)
    run(["umount", "--lazy", str(point)])


class MountNotPermitted(RuntimeError):
    pass


@contextlib.contextmanager
def tmpfs_over(directory: Path, *, size: str, mode: int = 0o2770) -> Iterator[Path]:
    """Mount a small tmpfs over ``directory`` with its owner, group and mode, so the accounts
    keep their access and only the space changes; unmounted afterwards."""
    st = directory.stat()
    opts = f"size={size},uid={st.st_uid},gid={st.st_gid},mode={mode:o}"
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "kbi-test-full", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise MountNotPermitted(f"mount -t tmpfs failed (needs CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield directory
    finally:
        unmount(directory)


# -------------------------------------------------------------------------------- environment
@dataclass
class SftpEnv:
    """The transfer server of the tests: accounts, chroot tree, keys and a running sshd."""

    base: Path  # /srv/kbi-sftp-test-<random>, root-owned 0755
    root: Path  # the chroot tree (production: /srv/sftp)
    keys_dir: Path  # authorized keys (production: /etc/ssh/authorized_keys)
    client_keys: dict[str, paramiko.PKey]
    client_key_files: dict[str, Path]
    created_users: list[str]
    created_groups: list[str]
    setup_args: list[str] = field(default_factory=list)
    _sshd: Sshd | None = None

    @property
    def sshd(self) -> Sshd:
        assert self._sshd is not None, "sshd was not started"
        return self._sshd

    @classmethod
    def create(cls, key_dir: Path) -> SftpEnv:
        """Build and start everything; on any failure, undo what was done and re-raise."""
        existing_users = {u for u in ACCOUNTS if _exists(pwd.getpwnam, u)}
        existing_groups = {g for g in GROUPS if _exists(grp.getgrnam, g)}
        os.makedirs("/srv", mode=0o755, exist_ok=True)
        base = Path(f"/srv/kbi-sftp-test-{secrets.token_hex(4)}")
        base.mkdir(mode=0o755)
        env = cls(
            base=base,
            root=base / "sftp",
            keys_dir=base / "authorized_keys",
            client_keys={},
            client_key_files={},
            created_users=[u for u in ACCOUNTS if u not in existing_users],
            created_groups=[g for g in GROUPS if g not in existing_groups],
        )
        try:
            env._build(key_dir)
        except BaseException:
            env.destroy()
            raise
        return env

    def _build(self, key_dir: Path) -> None:
        key_args: list[str] = []
        for user in ACCOUNTS:
            private = key_dir / user
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"test-{user}", "-f", str(private)])
            self.client_key_files[user] = private
            self.client_keys[user] = paramiko.Ed25519Key.from_private_key_file(str(private))
            key_args += ["--key", f"{user}={private}.pub"]
        self.setup_args = [*key_args, *MUNICIPALITIES]
        run(self.setup_command(*self.setup_args))
        run_dir = self.base / "run"
        run_dir.mkdir(mode=0o700)  # host key 0600 in a 0700 dir, or sshd refuses to load it
        host_key = run_dir / "ssh_host_ed25519_key"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kbi-test-host", "-f", str(host_key)])
        port = free_port()
        config = run_dir / "sshd_config"
        config.write_text(
            render_config(
                SSHD_CONFIG.read_text(),
                port=port,
                host_key=host_key,
                pid_file=run_dir / "sshd.pid",
                keys_dir=self.keys_dir,
                root=self.root,
            )
        )
        self._sshd = Sshd(
            config=config,
            log=run_dir / "sshd.log",
            pid_file=run_dir / "sshd.pid",
            port=port,
            host_key=host_key_from_pub(Path(f"{host_key}.pub").read_text()),
        )
        self._sshd.start()

    def setup_command(self, *args: str) -> list[str]:
        """deploy/sftp/setup-sftp-accounts.sh on this environment's root and keys dir."""
        return [
            "bash",
            str(SETUP_SCRIPT),
            "--root",
            str(self.root),
            "--keys-dir",
            str(self.keys_dir),
            "--staging",
            *args,
        ]

    def destroy(self) -> None:
        """Undo everything, continuing past failures; raise the first one at the end."""
        errors: list[BaseException] = []

        def attempt(action: Callable[..., object], *args: object) -> None:
            try:
                action(*args)
            except Exception as exc:
                errors.append(exc)

        if self._sshd is not None:
            attempt(self._sshd.stop)
        for point in mounts_under(self.base):
            attempt(unmount, point)
        attempt(shutil.rmtree, self.base)
        for user in self.created_users:
            if _exists(pwd.getpwnam, user):
                attempt(run, ["userdel", user])
        for group in self.created_groups:
            if _exists(grp.getgrnam, group):
                attempt(run, ["groupdel", group])
        if errors:
            raise errors[0]

    # --- paths and clients ---
    def chroot(self, nis: str) -> Path:
        return self.root / account(nis)

    def inbox(self, nis: str) -> Path:
        return self.chroot(nis) / "inbox"

    @property
    def staging(self) -> Path:
        return self.root / ".staging"

    def client(
        self,
        user: str,
        *,
        pkey: paramiko.PKey | None = None,
        host_key: paramiko.PKey | None = None,
        sock: socket.socket | None = None,
        password: str | None = None,
    ) -> paramiko.SSHClient:
        return connect(
            self.sshd.port,
            user,
            pkey if pkey is not None or password is not None else self.client_keys[user],
            host_key or self.sshd.host_key,
            sock=sock,
            password=password,
        )

    @contextlib.contextmanager
    def sftp(self, user: str, *, sock: socket.socket | None = None) -> Iterator[paramiko.SFTPClient]:
        with open_sftp(self.client(user, sock=sock)) as sftp:
            yield sftp

    def reset(self) -> None:
        """Between tests: no fault mounts, inboxes empty with their modes, no extra keys."""
        for point in mounts_under(self.root):
            unmount(point)
        agency_gid = grp.getgrnam("agency").gr_gid
        for nis in MUNICIPALITIES:
            inbox = self.inbox(nis)
            inbox.mkdir(mode=0o2770, exist_ok=True)
            os.chown(inbox, pwd.getpwnam(account(nis)).pw_uid, agency_gid)
            inbox.chmod(0o2770)  # a test may have changed it
            self.chroot(nis).chmod(0o755)
            _empty(inbox)
        _empty(self.staging)
        for extra in set(os.listdir(self.keys_dir)) - set(ACCOUNTS):
            (self.keys_dir / extra).unlink()


def _exists(lookup: Callable[[str], object], name: str) -> bool:
    try:
        lookup(name)
    except KeyError:
        return False
    return True


def _empty(directory: Path) -> None:
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
