"""The daily pickup sweep (P8, P12): which published files are still on the transfer server.

For every announced, not yet picked-up file the inbox is checked (a ``stat``, never a download
or a decryption): a file that is gone was picked up (recorded with the time it was noticed); a
file still there after ``pickup_reminder_days`` gets one reminder by e-mail and SMS; after
``pickup_purge_days`` it is deleted from the server, the municipality is told, and the purge is
recorded. Every step is in the ledger before the next, so a rerun repeats nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import paramiko

from kbi import messages, reference, registry, transport
from kbi.delivery import Channels
from kbi.ledger import Delivery, Ledger
from kbi.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    checked: int = 0
    picked_up: list[str] = field(default_factory=list)
    reminded: list[str] = field(default_factory=list)
    purged: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # nis code → reason

    def as_dict(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "picked_up": self.picked_up,
            "reminded": self.reminded,
            "purged": self.purged,
            "waiting": self.waiting,
            "failed": self.failed,
        }

    def purge_alert(self, purge_days: int) -> tuple[str, str] | None:
        """Catalogue 44, the escalation: files purged unpicked, for the data engineers to follow up
        (NIS codes only; the municipalities were told themselves)."""
        if not self.purged:
            return None
        subject = f"[KBI] {len(self.purged)} file(s) purged, never picked up"
        text = (
            f"These municipalities did not pick up their file within {purge_days} days; it was deleted "
            f"from the transfer server and they were told: {', '.join(sorted(self.purged))}.\n\n"
            "They have not received their list. Contact them, and see the status board for the "
            "delivery and its ledger events.\n"
        )
        return subject, text


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _published(d: Delivery) -> datetime:
    assert d.published_at
    return datetime.fromisoformat(d.published_at.replace("Z", "+00:00"))


class PickupMonitor:
    def __init__(self, ledger: Ledger, channels: Channels, settings: Settings, reg: registry.Registry | None):
        self.ledger = ledger
        self.channels = channels
        self.settings = settings
        self.registry = reg

    def _name(self, nis: str) -> str:
        muni = reference.municipalities().get(nis)
        return muni.name if muni else nis

    def _contacts(self, nis: str) -> registry.Contacts | None:
        r = self.registry.recipients.get(nis) if self.registry else None
        return r.contacts if r else None

    def _notify(self, d: Delivery, mail: messages.Mail, sms: str) -> None:
        contacts = self._contacts(d.nis_code)
        if contacts is None:
            raise KeyError(f"{d.nis_code} is no longer in the registry: nobody to tell")
        self.channels.mail(contacts.email, mail)
        self.channels.sms(contacts.sms, sms)

    def _one(self, sftp: paramiko.SFTPClient, d: Delivery, now: datetime, result: SweepResult) -> None:
        path = f"{d.inbox}/{d.file_name}"
        try:
            sftp.stat(path)
            present = True
        except FileNotFoundError:
            present = False
        if not present:
            self.ledger.transition(
                d.with_(state="picked_up", picked_up_at=_iso(now)),
                "pickup_noticed",
                {"file_name": d.file_name},
            )
            result.picked_up.append(d.nis_code)
            return
        published = _published(d)
        age = (now - published).days
        published_on = published.date().isoformat()
        purge_on = (published + timedelta(days=self.settings.pickup_purge_days)).date().isoformat()
        if age >= self.settings.pickup_purge_days:
            # Delete first and record it: the file must not linger because a message failed.
            transport.remove_if_present(sftp, path)
            d = self.ledger.transition(
                d.with_(state="purged", purged_at=_iso(now)),
                "file_purged",
                {"file_name": d.file_name, "sha256": d.sha256, "days_on_server": age},
            )
            self._notify(
                d,
                messages.purged(
                    municipality=self._name(d.nis_code),
                    file_name=str(d.file_name),
                    published_on=published_on,
                    purged_on=now.date().isoformat(),
                ),
                messages.sms_purged(str(d.file_name)),
            )
            self.ledger.transition(d, "purge_notified", {"file_name": d.file_name})
            result.purged.append(d.nis_code)
        elif age >= self.settings.pickup_reminder_days and not d.reminded_at:
            self._notify(
                d,
                messages.reminder(
                    municipality=self._name(d.nis_code),
                    file_name=str(d.file_name),
                    inbox=str(d.inbox),
                    published_on=published_on,
                    days=age,
                    purge_on=purge_on,
                ),
                messages.sms_reminder(str(d.file_name), published_on, purge_on),
            )
            self.ledger.transition(
                d.with_(state="reminded", reminded_at=_iso(now)), "reminder_sent", {"days_on_server": age}
            )
            result.reminded.append(d.nis_code)
        else:
            result.waiting.append(d.nis_code)

    def sweep(self, now: datetime) -> SweepResult:
        """Check every open delivery once, over one SFTP connection; failures are per municipality."""
        result = SweepResult()
        open_ = self.ledger.open_deliveries()
        if not open_:
            return result
        with self.channels.sftp() as sftp:
            for d in open_:
                result.checked += 1
                try:
                    self._one(sftp, d, now, result)
                except Exception as exc:
                    reason = (
                        transport.describe(exc)
                        if isinstance(exc, OSError)
                        else f"{type(exc).__name__}: {exc}"
                    )
                    result.failed[d.nis_code] = reason
                    log.error("%s %s: %s", d.nis_code, d.file_name, reason)
        return result


_COLUMNS = (("NIS", 6), ("municipality", 28), ("state", 10), ("published", 11), ("days", 5))
_COLUMNS += (("picked up", 11), ("reminded", 11), ("purged", 11), ("file", 0))


def state_table(deliveries: list[Delivery], now: datetime) -> str:
    """The state of every delivery of the year, one line each, for the monitor's task log."""
    names = reference.municipalities()

    def line(cells: list[str]) -> str:
        return " ".join(cell.ljust(width) for cell, (_, width) in zip(cells, _COLUMNS, strict=True)).rstrip()

    out = [line([c for c, _ in _COLUMNS])]
    out.append("-" * len(out[0]))
    for d in deliveries:
        days = (now - _published(d)).days if d.published_at else 0
        muni = names.get(d.nis_code)
        out.append(
            line(
                [
                    d.nis_code,
                    (muni.name if muni else "")[:28],
                    d.state,
                    (d.published_at or "")[:10],
                    str(days),
                    (d.picked_up_at or "")[:10],
                    (d.reminded_at or "")[:10],
                    (d.purged_at or "")[:10],
                    d.file_name or "",
                ]
            )
        )
    return "\n".join(out)


def year_start(today: date) -> str:
    return f"{today.year}-01-01"
