"""Airflow connections → the plain values and clients the domain package takes.

The only module besides the DAG files and the UI plugin that imports Airflow. Connections come
from Airflow (``AIRFLOW_CONN_KBI_*``, the metadata database or a secrets backend):

- ``kbi_source``, ``kbi_ledger``, ``kbi_quarantine``: any database with an Airflow SQL hook
  (SQLite embedded, PostgreSQL in production). ``kbi_ledger`` may carry ``chain_secret`` in its
  extra: the HMAC key of the ledger's event chain, kept outside the ledger database (and
  ``row_secret``, the key of the rows' keyed hashes; derived from the chain secret if absent).
- ``kbi_sftp``: the transfer server; refused unless its host key is pinned (``host_key`` extra)
  and authentication is by key (P12).
- ``kbi_sms``: Apprise; its URL holds ``{phone}`` where the recipient's number goes.
- ``kbi_smtp``: the SMTP relay.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import quote

import paramiko
from sqlalchemy.engine import make_url

from kbi import db, rowhash, settings, transport
from kbi.errors import ConfigurationError
from kbi.ledger import Ledger
from kbi.messages import Mail
from kbi.quality.quarantine import Quarantine

log = logging.getLogger(__name__)

SFTP_CHANNEL_TIMEOUT_S = 60


def _connection(conn_id: str):
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


def _url(conn) -> str:
    url = make_url(conn.get_hook().get_uri())
    if url.get_backend_name() == "sqlite":
        # The SQLite hook appends every extra as a query argument: the chain secret must not
        # travel inside a database URL (drivers and warnings print URLs).
        url = url.set(query={})
    return url.render_as_string(hide_password=False)


def db_url(conn_id: str) -> str:
    return _url(_connection(conn_id))


def source_engine():
    return db.engine(db_url(settings.CONN_SOURCE), writer=False)


def ledger() -> Ledger:
    conn = _connection(settings.CONN_LEDGER)
    extra = conn.extra_dejson
    secret = extra.get("chain_secret")
    row_secret = extra.get("row_secret")
    row_key = rowhash.derive((row_secret or secret).encode()) if (row_secret or secret) else None
    return Ledger(db.engine(_url(conn)), secret.encode() if secret else None, row_key)


def quarantine() -> Quarantine:
    return Quarantine(db.engine(db_url(settings.CONN_QUARANTINE)))


def mask(secret: str) -> None:
    """Airflow's log masking: a second line of defence for a passphrase, never the first."""
    from airflow.sdk.log import mask_secret

    mask_secret(secret)


def check_sftp_connection(extra: dict, password: str | None) -> None:
    """P12: never deliver over a connection that would accept any server or a password."""
    if not extra.get("host_key"):
        raise ConfigurationError(
            "connection kbi_sftp has no pinned host key (extra 'host_key': 'ssh-ed25519 AAAA…'); "
            "refusing to deliver to a server whose identity is not verified"
        )
    for flag in ("no_host_key_check", "allow_host_key_change"):
        if str(extra.get(flag, "false")).lower() == "true":
            raise ConfigurationError(f"connection kbi_sftp sets {flag}=true; refusing to deliver (P12)")
    if not (extra.get("private_key") or extra.get("key_file")):
        raise ConfigurationError(
            "connection kbi_sftp must authenticate with a key (extra private_key or key_file)"
        )
    if password:
        raise ConfigurationError("connection kbi_sftp carries a password; key authentication only (P12)")


def alert(to: Sequence[str], subject: str, text: str) -> None:
    """An internal alert (English, counts and reasons only, never a person) by e-mail."""
    html = "<pre>" + text.replace("&", "&amp;").replace("<", "&lt;") + "</pre>"
    AirflowChannels().mail(to, Mail(subject, text, html), language="en")


def alert_data_engineers(subject: str, text: str) -> None:
    """By e-mail; when that fails (the relay is down), the subject by SMS to the numbers in
    KBI_DATA_ENGINEERS_SMS, so that an alert about a mail outage is not lost in it (catalogue 41)."""
    s = settings.load()
    try:
        alert([s.data_engineers_email], subject, text)
    except Exception as exc:
        if not s.data_engineers_sms:
            raise
        log.error("The e-mail alert could not be sent (%s); sending its subject by SMS", type(exc).__name__)
        AirflowChannels().sms(s.data_engineers_sms, f"{subject}. E-mail failed; the details are in Airflow.")


def _host_key_mismatch(presented: paramiko.PKey, pinned: paramiko.PKey) -> transport.HostKeyMismatch:
    # The fingerprints go to the task log only (for the operator's check), not into the ledger.
    log.error(
        "The transfer server presented %s, not the pinned %s", presented.fingerprint, pinned.fingerprint
    )
    return transport.HostKeyMismatch(transport.HostKeyMismatch.REASON)


class AirflowChannels:
    """SFTP, SMS and e-mail through Airflow's provider hooks."""

    def __init__(self, sftp_conn_id: str = settings.CONN_SFTP, conn_retry_attempts: int = 2):
        self.sftp_conn_id = sftp_conn_id
        self.conn_retry_attempts = conn_retry_attempts

    @contextlib.contextmanager
    def sftp(self) -> Iterator[paramiko.SFTPClient]:
        from airflow.providers.sftp.hooks.sftp import SFTPHook

        conn = _connection(self.sftp_conn_id)
        check_sftp_connection(conn.extra_dejson, conn.password)
        hook = SFTPHook(ssh_conn_id=self.sftp_conn_id, conn_retry_attempts=self.conn_retry_attempts)
        # The hook asks for zlib unless the connection says otherwise; ciphertext does not
        # compress, so it would only cost CPU on both ends of every upload.
        hook.compress = False
        pinned = hook.host_key  # the connection's host_key extra, parsed by the hook
        assert pinned is not None, "check_sftp_connection requires a pinned host key"
        known_hosts = transport.system_known_hosts()
        others = transport.other_known_host_keys(known_hosts, hook.remote_host, hook.port, pinned)
        if others:
            log.error(
                "%s holds host key(s) %s for the transfer server besides the pinned %s",
                known_hosts,
                ", ".join(k.fingerprint for k in others),
                pinned.fingerprint,
            )
            raise ConfigurationError(
                f"{known_hosts} holds another host key for the transfer server than the pinned one, and "
                "Airflow's SSH hook would trust it first; remove the server's entry from that file "
                "(ssh-keygen -R) and keep the pin in connection kbi_sftp only (P12)"
            )
        try:
            if not hook.host_proxy_cmd:  # a ProxyCommand (~/.ssh/config) makes its own way there
                self._open_session(hook)
            with hook.get_managed_conn() as client:  # the session opened above, or the hook's own
                channel = client.get_channel()
                # A second line of defence: whatever the hook trusted, only the pinned key counts.
                presented = channel.get_transport().get_remote_server_key()
                if presented != pinned:
                    raise _host_key_mismatch(presented, pinned)
                channel.settimeout(SFTP_CHANNEL_TIMEOUT_S)  # a stalled server fails instead of hanging
                yield client
        except paramiko.BadHostKeyException as exc:
            # Raised before authentication: the server got no login and no file.
            raise _host_key_mismatch(exc.key, pinned) from None

    def _open_session(self, hook) -> None:
        """The hook's SSH session over a socket that has TCP_NODELAY before its first byte: with
        Nagle and delayed ACK every round trip of the handshake stalls (a session took ~90 ms to
        open on one host, ~6 ms without). Retried like the hook's own connect, each attempt on a
        fresh socket; a wrong host key or a refused login is not retried."""
        import tenacity
        from airflow.providers.ssh.hooks.ssh import SSHHook

        hook.conn_retry_attempts = 1  # the hook would retry on the socket of the failed attempt
        final = (paramiko.BadHostKeyException, paramiko.AuthenticationException)
        for attempt in tenacity.Retrying(
            reraise=True,
            wait=tenacity.wait_fixed(3) + tenacity.wait_random(0, 2),
            stop=tenacity.stop_after_attempt(self.conn_retry_attempts),
            retry=tenacity.retry_if_not_exception_type(final),
        ):
            with attempt:
                sock = socket.create_connection(
                    (hook.remote_host, hook.port), timeout=hook.conn_timeout or SFTP_CHANNEL_TIMEOUT_S
                )
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                hook.host_proxy = sock  # the hook hands paramiko this socket instead of its own
                try:
                    SSHHook.get_conn(hook)  # the SSH session only; get_managed_conn opens SFTP on it
                except BaseException:
                    sock.close()
                    raise

    def sms(self, phones: Sequence[str], text: str) -> None:
        import apprise
        from airflow.providers.apprise.hooks.apprise import AppriseHook

        # Apprise logs whole payloads at DEBUG; a passphrase must not get there.
        logging.getLogger("apprise").setLevel(logging.WARNING)
        hook = AppriseHook(apprise_conn_id=settings.CONN_SMS)
        config = hook.get_config_from_conn(hook.get_connection(settings.CONN_SMS))
        entries = config if isinstance(config, list) else [config]
        for phone in phones:
            notifier = apprise.Apprise()
            for entry in entries:
                path = entry["path"]
                if "{phone}" not in path:
                    raise ConfigurationError("connection kbi_sms: the Apprise URL must contain {phone}")
                notifier.add(path.replace("{phone}", quote(phone, safe="")), tag=entry.get("tag"))
            # The Airflow hook's notify() drops Apprise's result; a lost SMS must not pass unseen.
            if not notifier.notify(body=text, title="", tag="all"):
                raise ConnectionError(f"the SMS gateway did not accept the message for {phone[:-4]}****")

    def mail(self, to: Sequence[str], mail: Mail, language: str = "nl-BE") -> None:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook(smtp_conn_id=settings.CONN_SMTP) as hook:
            sender = hook.from_email or settings.load().mail_from
            msg = EmailMessage()
            msg["Subject"] = mail.subject
            msg["From"] = sender
            msg["To"] = ", ".join(to)
            msg["Date"] = formatdate(localtime=True)
            msg["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1])
            msg["Content-Language"] = language
            msg.set_content(mail.text)
            msg.add_alternative(mail.html, subtype="html")
            # The hook's send_email_smtp() sends HTML only; its logged-in client sends both parts.
            hook._smtp_client.send_message(msg)
