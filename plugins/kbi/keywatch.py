"""Keys about to expire (or no longer usable), found before a delivery fails on them (P6).

Run by the daily ``kbi_pickup_monitor``: every pinned key in the registry is checked as the
delivery would check it; a key expiring within ``key_expiry_warning_days`` (or expired, revoked,
weakened) is announced to its municipality, at most once a week, and to the data engineers.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from kbi import crypto, messages, registry
from kbi.delivery import Channels
from kbi.ledger import Ledger

WARNED = "key_expiry_warned"
EVERY = timedelta(days=7)


@dataclass(frozen=True)
class KeyNotice:
    nis_code: str
    name: str
    fingerprint: str
    expires: date | None
    problem: str | None  # None: still valid, but expiring soon

    def line(self) -> str:
        what = self.problem or f"expires on {self.expires}"
        return f"{self.nis_code} {self.name}: key {self.fingerprint} {what}"


def notices(reg: registry.Registry, today: date, within_days: int) -> list[KeyNotice]:
    found = []
    for r in sorted(reg.recipients.values(), key=lambda r: r.nis_code):
        if r.encryption.mode != "pubkey":
            continue
        key_path = r.key_path(reg.directory)
        assert key_path is not None and r.encryption.fingerprint is not None
        home = Path(tempfile.mkdtemp(prefix="kbi-keywatch-"))
        try:
            key = crypto.check_key(crypto.keyring(home / "k"), key_path, r.encryption.fingerprint, today)
        except crypto.KeyRefused as exc:
            found.append(KeyNotice(r.nis_code, r.name, r.encryption.fingerprint, None, f"{exc.code}: {exc}"))
            continue
        finally:
            crypto.remove_keyring(home / "k")
            shutil.rmtree(home, ignore_errors=True)
        if key.expires_within(today, within_days):
            found.append(KeyNotice(r.nis_code, r.name, key.fingerprint, key.expires, None))
    return found


def warn(
    reg: registry.Registry, ledger: Ledger, channels: Channels, now: datetime, within_days: int
) -> tuple[list[KeyNotice], list[KeyNotice]]:
    """Tell each municipality whose key needs renewing, at most once a week.

    Returns (every notice, the ones sent now)."""
    found = notices(reg, now.date(), within_days)
    sent = []
    for notice in found:
        last = ledger.last_event_for(WARNED, notice.nis_code)
        if last and now - datetime.fromisoformat(last.replace("Z", "+00:00")) < EVERY:
            continue
        recipient = reg.recipients[notice.nis_code]
        channels.mail(
            recipient.contacts.email,
            messages.key_expiry(
                municipality=notice.name,
                fingerprint=notice.fingerprint,
                expires=notice.expires.isoformat() if notice.expires else None,
                problem=notice.problem,
            ),
        )
        detail = {"fingerprint": notice.fingerprint, "expires": notice.expires, "problem": notice.problem}
        ledger.record(WARNED, detail, nis_code=notice.nis_code)
        sent.append(notice)
    return found, sent
