"""The embedded servers of the demo and the tests, exercised over real sockets on 127.0.0.1.

Clients are the ones the pipeline uses: paramiko (host key pinned, RejectPolicy), smtplib and Apprise.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import apprise
import paramiko
import pytest

from demo.servers.mail import MailSink
from demo.servers.sftp import SftpServer, ensure_keys, public_key_line
from demo.servers.sms import SmsSink, apprise_url, apprise_url_template

REPO = Path(__file__).resolve().parents[2]
PHONE = "+32470123456"


# --------------------------------------------------------------------------------------- SFTP
@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return ensure_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def sftp_server(tmp_path: Path, keys: tuple[Path, Path, Path]) -> Iterator[SftpServer]:
    host_key, _client_key, authorized = keys
    root = tmp_path / "sftp"
    (root / "44021" / "inbox").mkdir(parents=True)
    with SftpServer(root, host_key, authorized) as server:
        yield server


def _host_key(line: str) -> paramiko.PKey:
    key_type, b64 = line.split()[:2]
    return paramiko.PKey.from_type_string(key_type, base64.b64decode(b64))


def _client(
    server: SftpServer | None = None,
    *,
    pkey: paramiko.PKey | None = None,
    password: str | None = None,
    username: str = "agii",
    host_key_line: str | None = None,
    port: int | None = None,
) -> paramiko.SSHClient:
    """A client as strict as the pipeline's: only the pinned host key is trusted."""
    port = port or (server.port if server else 0)
    line = host_key_line or (server.host_public_key if server else "")
    client = paramiko.SSHClient()  # starts with an empty HostKeys: nothing from ~/.ssh
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.get_host_keys().add(f"[127.0.0.1]:{port}", line.split()[0], _host_key(line))
    client.connect(
        "127.0.0.1",
        port,
        username=username,
        pkey=pkey,
        password=password,
        look_for_keys=False,
        allow_agent=False,
        timeout=5,
        banner_timeout=5,
        auth_timeout=5,
    )
    return client


@pytest.fixture
def agency_key(keys: tuple[Path, Path, Path]) -> paramiko.PKey:
    return paramiko.Ed25519Key.from_private_key_file(str(keys[1]))


@pytest.fixture
def sftp(sftp_server: SftpServer, agency_key: paramiko.PKey) -> Iterator[paramiko.SFTPClient]:
    client = _client(sftp_server, pkey=agency_key)
    session = client.open_sftp()
    session.get_channel().settimeout(10)  # a server bug must fail the test, not hang it
    yield session
    client.close()


def test_ensure_keys_is_idempotent_and_private(tmp_path: Path) -> None:
    first = ensure_keys(tmp_path)
    contents = [p.read_bytes() for p in first]
    second = ensure_keys(tmp_path)
    assert first == second
    assert [p.read_bytes() for p in second] == contents
    for private in first[:2]:
        assert private.stat().st_mode & 0o777 == 0o600
        assert private.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert first[2].read_text().count("ssh-ed25519 ") == 1


def test_sftp_upload_rename_stat_read_back(sftp_server: SftpServer, sftp: paramiko.SFTPClient) -> None:
    assert sftp_server.host_public_key.startswith("ssh-ed25519 AAAA")
    assert len(sftp_server.host_public_key.split()) == 2  # no comment: Airflow's host_key extra
    data = os.urandom(300_000)
    sftp.putfo(io.BytesIO(data), "/44021/inbox/f.csv.gpg.part", confirm=True)
    (sftp_server.root / "44021/inbox/f.csv.gpg").write_bytes(b"old")  # posix_rename overwrites
    sftp.posix_rename("/44021/inbox/f.csv.gpg.part", "/44021/inbox/f.csv.gpg")
    assert sftp.stat("/44021/inbox/f.csv.gpg").st_size == len(data)
    assert sftp.listdir("/44021/inbox") == ["f.csv.gpg"]
    with sftp.open("/44021/inbox/f.csv.gpg", "rb") as f:
        f.prefetch()
        assert f.read() == data
    assert (sftp_server.root / "44021/inbox/f.csv.gpg").read_bytes() == data
    sftp.remove("/44021/inbox/f.csv.gpg")
    assert sftp.listdir("/44021/inbox") == []


def test_sftp_wrong_host_key_expectation_is_rejected(
    sftp_server: SftpServer, agency_key: paramiko.PKey
) -> None:
    other = paramiko.Ed25519Key.from_private_key(io.StringIO(_new_ed25519_private()))
    with pytest.raises(paramiko.BadHostKeyException):
        _client(sftp_server, pkey=agency_key, host_key_line=f"ssh-ed25519 {other.get_base64()}")


def _new_ed25519_private() -> str:
    import asyncssh

    return asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh").decode()


def test_sftp_refuses_unknown_key_password_and_other_user(
    sftp_server: SftpServer, agency_key: paramiko.PKey
) -> None:
    stranger = paramiko.Ed25519Key.from_private_key(io.StringIO(_new_ed25519_private()))
    with pytest.raises(paramiko.AuthenticationException):
        _client(sftp_server, pkey=stranger)
    with pytest.raises(paramiko.AuthenticationException) as exc:  # BadAuthenticationType
        _client(sftp_server, password="agii")
    assert getattr(exc.value, "allowed_types", None) == ["publickey"]
    with pytest.raises(paramiko.AuthenticationException):
        _client(sftp_server, pkey=agency_key, username="root")


def test_sftp_no_shell_exec_or_forwarding(sftp_server: SftpServer, agency_key: paramiko.PKey) -> None:
    client = _client(sftp_server, pkey=agency_key)
    try:
        with pytest.raises(paramiko.SSHException):
            client.exec_command("id", timeout=5)
        with pytest.raises(paramiko.SSHException):
            client.invoke_shell()
        transport = client.get_transport()
        assert transport is not None
        with pytest.raises(paramiko.ChannelException):
            transport.open_channel(
                "direct-tcpip", ("127.0.0.1", sftp_server.port), ("127.0.0.1", 0), timeout=5
            )
    finally:
        client.close()


def test_sftp_chroot(sftp_server: SftpServer, sftp: paramiko.SFTPClient) -> None:
    outside = sftp_server.root.parent / "outside.txt"
    outside.write_text("secret")
    assert sftp.normalize("..") == "/"
    assert sorted(sftp.listdir("/../..")) == ["44021"]
    for path in ("../outside.txt", "/../outside.txt", "/44021/../../outside.txt", str(outside)):
        with pytest.raises(FileNotFoundError):
            sftp.stat(path)
    # writing "outside" lands inside the root
    sftp.putfo(io.BytesIO(b"x"), "/../escaped.txt")
    assert (sftp_server.root / "escaped.txt").exists()
    assert not (sftp_server.root.parent / "escaped.txt").exists()


def test_sftp_fault_connection_cut_mid_upload(sftp_server: SftpServer, sftp: paramiko.SFTPClient) -> None:
    sftp_server.set_fail_writes_after(1_000_000)
    with pytest.raises((EOFError, paramiko.SSHException, OSError)):
        sftp.putfo(io.BytesIO(os.urandom(4_000_000)), "/44021/inbox/big.csv.gpg.part", confirm=True)
    inbox = sftp_server.root / "44021/inbox"
    assert [p.name for p in inbox.iterdir()] == ["big.csv.gpg.part"]  # only the temp file
    assert (inbox / "big.csv.gpg.part").stat().st_size == 1_000_000


def test_sftp_fault_disk_full(sftp_server: SftpServer, sftp: paramiko.SFTPClient) -> None:
    sftp_server.set_disk_full("/44021", 100_000)
    # put/putfo pipeline their writes and paramiko drops the write statuses: only confirm=True's
    # size check notices (this is what Airflow's SFTPHook.store_file does).
    with pytest.raises(OSError, match="size mismatch"):
        sftp.putfo(io.BytesIO(b"a" * 300_000), "/44021/inbox/a.part", confirm=True)
    # an unpipelined write gets the server's status back
    with pytest.raises(OSError, match="No space left on device"), sftp.open("/44021/inbox/b.part", "wb") as f:
        f.write(b"b" * 300_000)
    # other paths are not affected
    sftp.putfo(io.BytesIO(b"c" * 300_000), "/c.part", confirm=True)
    sftp_server.set_disk_full(None, None)
    sftp.putfo(io.BytesIO(b"d" * 300_000), "/44021/inbox/d.part", confirm=True)


def test_sftp_fault_read_only(sftp_server: SftpServer, sftp: paramiko.SFTPClient) -> None:
    sftp.putfo(io.BytesIO(b"old"), "/44021/inbox/x.part")
    sftp_server.set_read_only("/44021/inbox")
    with pytest.raises(PermissionError):
        sftp.putfo(io.BytesIO(b"new"), "/44021/inbox/y.part")
    with pytest.raises(PermissionError):
        sftp.posix_rename("/44021/inbox/x.part", "/44021/inbox/x")
    with pytest.raises(PermissionError):
        sftp.remove("/44021/inbox/x.part")
    with pytest.raises(PermissionError):
        sftp.mkdir("/44021/inbox/sub")
    with sftp.open("/44021/inbox/x.part", "rb") as f:  # reading stays allowed
        assert f.read() == b"old"
    sftp_server.set_read_only(None)
    sftp.posix_rename("/44021/inbox/x.part", "/44021/inbox/x")


def test_sftp_stop_refuses_and_restart_reuses_port(
    sftp_server: SftpServer, agency_key: paramiko.PKey
) -> None:
    port = sftp_server.port
    sftp_server.stop()
    with pytest.raises(paramiko.ssh_exception.NoValidConnectionsError):  # ECONNREFUSED
        _client(sftp_server, pkey=agency_key)
    sftp_server.start()
    assert sftp_server.port == port
    _client(sftp_server, pkey=agency_key).close()


# --------------------------------------------------------------------------------------- mail
def _multipart() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "kbi@example.agii"
    msg["To"] = "privacy@example.gent"
    msg["Subject"] = "Lijst inburgeraars 2026 – Gent"
    msg.set_content("Platte tekst, met é.")
    msg.add_alternative("<p>HTML <b>tekst</b></p>", subtype="html")
    return msg


def test_mail_stores_multipart_message(tmp_path: Path) -> None:
    with MailSink(tmp_path / "mail") as sink, smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as smtp:
        smtp.send_message(_multipart())
        smtp.send_message(_multipart())
    files = sorted((tmp_path / "mail").iterdir())
    assert len(files) == 2 and all(p.suffix == ".eml" for p in files)
    stored = sink.messages()
    assert len(stored) == 2
    msg = stored[0]
    assert msg["Subject"] == "Lijst inburgeraars 2026 – Gent"
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and plain.get_content().strip() == "Platte tekst, met é."
    assert html is not None and "<b>tekst</b>" in html.get_content()


def test_mail_refuse_and_stop(tmp_path: Path) -> None:
    sink = MailSink(tmp_path / "mail")
    sink.start()
    try:
        sink.set_refuse(True)
        with (
            pytest.raises(smtplib.SMTPException) as exc,
            smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as smtp,
        ):
            smtp.send_message(_multipart())
        assert isinstance(exc.value, smtplib.SMTPSenderRefused) and exc.value.smtp_code == 421
        sink.set_refuse(False)
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as smtp:
            smtp.send_message(_multipart())
        assert len(sink.messages()) == 1
    finally:
        sink.stop()
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP("127.0.0.1", sink.port, timeout=5)


# --------------------------------------------------------------------------------------- SMS
@pytest.fixture
def sms_sink(tmp_path: Path) -> Iterator[SmsSink]:
    with SmsSink(tmp_path / "sms") as sink:
        yield sink


def _notify(url: str, body: str = "Uw lijst staat klaar", title: str = "KBI") -> bool:
    apobj = apprise.Apprise()
    assert apobj.add(url), url
    # apprise 2.x returns an AppriseResult (falsy on failure), not a bool
    return bool(apobj.notify(body=body, title=title))


def test_sms_apprise_json_carries_phone(sms_sink: SmsSink) -> None:
    assert _notify(sms_sink.apprise_url(PHONE), body="Wachtwoord volgt", title="Gent")
    # the template filled with the raw E.164 number works as well
    assert _notify(apprise_url_template(sms_sink.port).format(phone="+32470999999"))
    first, second = sms_sink.messages()
    assert first["path"] == "/sms"
    assert first["headers"] == {"Content-Type": "application/json", "User-Agent": "Apprise"}
    assert first["payload"]["to"] == PHONE
    assert first["payload"]["message"] == "Wachtwoord volgt"
    assert first["payload"]["title"] == "Gent"
    assert second["payload"]["to"] == "+32470999999"
    assert apprise_url(1234, PHONE) == "json://127.0.0.1:1234/sms?:to=%2B32470123456"
    assert first["received_at"] <= second["received_at"]


def test_sms_failures_make_notify_return_false(sms_sink: SmsSink) -> None:
    url = sms_sink.apprise_url(PHONE)
    sms_sink.set_status(503)
    assert _notify(url) is False
    sms_sink.set_status(None)
    assert _notify(url) is True
    sms_sink.stop()
    assert _notify(url) is False
    assert len(sms_sink.messages()) == 1


# --------------------------------------------------------------------------------------- CLI
def _wait_for_port(port_file: Path, proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_file.exists():
            return int(port_file.read_text())
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.communicate()[1].decode()}")
        time.sleep(0.05)
    raise AssertionError(f"no port file after {timeout} s")


def test_cli_servers_serve_and_stop_on_sigterm(tmp_path: Path) -> None:
    cmds = {
        "sftp": ["--root", str(tmp_path / "root"), "--keys-dir", str(tmp_path / "keys")],
        "mail": ["--outdir", str(tmp_path / "mail")],
        "sms": ["--outdir", str(tmp_path / "sms")],
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, str] = {}
    try:
        for name, extra in cmds.items():  # started together: their start-ups overlap
            procs[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "demo.servers",
                    name,
                    *extra,
                    "--port-file",
                    str(tmp_path / f"{name}.port"),
                ],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        ports = {name: _wait_for_port(tmp_path / f"{name}.port", proc) for name, proc in procs.items()}

        host_key, client_key, _ = ensure_keys(tmp_path / "keys")  # reuses what the CLI created
        client = _client(
            port=ports["sftp"],
            host_key_line=public_key_line(host_key),
            pkey=paramiko.Ed25519Key.from_private_key_file(str(client_key)),
        )
        with client.open_sftp() as s:
            s.putfo(io.BytesIO(b"hi"), "/hello.txt")
        client.close()
        assert (tmp_path / "root/hello.txt").read_bytes() == b"hi"

        with smtplib.SMTP("127.0.0.1", ports["mail"], timeout=5) as smtp:
            smtp.send_message(_multipart())
        assert len(list((tmp_path / "mail").glob("*.eml"))) == 1

        assert _notify(apprise_url(ports["sms"], PHONE))
        assert len(list((tmp_path / "sms").glob("*.json"))) == 1

        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():
            _out, err = proc.communicate(timeout=5)
            assert proc.returncode == 0, (name, err.decode())
            assert b"Traceback" not in err, err.decode()
            assert not (tmp_path / f"{name}.port").exists()
            logs[name] = err.decode()
        assert "sftp auth ok" in logs["sftp"] and "hello" not in logs["sftp"]  # no file names
        assert "mail stored" in logs["mail"]
        assert "sms POST /sms -> 200" in logs["sms"] and PHONE not in logs["sms"]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
