"""The Dutch texts municipalities receive: SMS and e-mail receipts (P6, P7, P9, P10).

Templates live in include/templates/ (Jinja2; HTML autoescaped). A message carries file names,
counts, checksums, fingerprints and dates only, never a name or national number; the passphrase
appears in its own SMS and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2
from markupsafe import escape as html_escape

from kbi import settings

# P7: art. 6 of the protocol: the recipient who is not the intended one deletes the e-mail at once.
DISCLAIMER = (
    "Deze e-mail en de bijlagen zijn uitsluitend bestemd voor de geadresseerde. Bent u niet de "
    "bestemde ontvanger, verwijder deze e-mail dan onmiddellijk en breng de afzender op de hoogte. "
    "Gebruik, verspreiding of kopie van deze e-mail is niet toegestaan."
)
TEMPLATE_DIR = settings.PROJECT_ROOT / "include" / "templates"


@dataclass(frozen=True)
class Mail:
    subject: str
    text: str
    html: str


@cache
def _env(template_dir: Path = TEMPLATE_DIR) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=jinja2.StrictUndefined,  # a missing value is an error, not an empty string
        keep_trailing_newline=False,
    )


def compile_templates() -> int:
    """Compile the SMS and mail templates into the cached environment (Jinja keeps them; each
    file is re-read only when it changes). The executors call this before they fork the task
    processes: compiling them costs ~7 ms of CPU in every deliver task otherwise."""
    env = _env()
    names = env.list_templates(filter_func=lambda name: name.startswith(("sms/", "mail/")))
    for name in names:
        env.get_template(name)
    return len(names)


def _render(name: str, **values: object) -> str:
    return _env().get_template(name).render(**values).strip()


def sms_pubkey(file_name: str, sha256: str, fingerprint: str) -> str:
    """P6, pubkey mode: what lets the municipality verify the file, by another channel."""
    return _render("sms/pubkey.txt.j2", file_name=file_name, sha256=sha256, fingerprint=fingerprint)


def sms_passphrase(file_name: str, passphrase: str) -> str:
    """P6, passphrase mode: the key itself, by SMS only."""
    return _render("sms/passphrase.txt.j2", file_name=file_name, passphrase=passphrase)


def receipt(
    *,
    municipality: str,
    reference_date: str,
    file_name: str,
    inbox: str,
    rows: int,
    sha256: str,
    mode: str,
    fingerprint: str | None,
    delete_by: str,
    correction_ref: str | None = None,
    purge_after_days: int = 30,
) -> Mail:
    """The e-mail receipt of interfaces.md §3, plain text and simple HTML, with the disclaimer."""
    s = settings.load()
    values = {
        "municipality": municipality,
        "reference_date": reference_date,
        "file_name": file_name,
        "inbox": inbox,
        "rows": rows,
        "sha256": sha256,
        "mode": mode,
        "fingerprint": fingerprint or "",
        "delete_by": delete_by,
        "correction_ref": correction_ref,
        "purge_after_days": purge_after_days,
        "retention_years": s.retention_years,
        "error_report_url": s.error_report_url,
        "disclaimer": DISCLAIMER,
    }
    subject = _render("mail/receipt_subject.txt.j2", **values)
    return Mail(
        subject=subject,
        text=_render("mail/receipt.txt.j2", **values),
        html=_render("mail/receipt.html.j2", subject=subject, **values),
    )


def _plain_mail(template: str, **values: object) -> Mail:
    """A short notice (reminder, purge): plain text, and the same text as simple HTML."""
    values = {"disclaimer": DISCLAIMER, "error_report_url": settings.load().error_report_url, **values}
    subject = _render(f"mail/{template}_subject.txt.j2", **values)
    text = _render(f"mail/{template}.txt.j2", **values)
    paragraphs = "".join(f"<p>{html_escape(p)}</p>" for p in text.split("\n\n"))
    html = (
        f'<!DOCTYPE html><html lang="nl"><head><meta charset="utf-8"></head><body>{paragraphs}</body></html>'
    )
    return Mail(subject=subject, text=text, html=html)


def reminder(
    *, municipality: str, file_name: str, inbox: str, published_on: str, days: int, purge_on: str
) -> Mail:
    """P8: the file has waited too long on the transfer server."""
    return _plain_mail(
        "reminder",
        municipality=municipality,
        file_name=file_name,
        inbox=inbox,
        published_on=published_on,
        days=days,
        purge_on=purge_on,
    )


def sms_reminder(file_name: str, published_on: str, purge_on: str) -> str:
    return _render("sms/reminder.txt.j2", file_name=file_name, published_on=published_on, purge_on=purge_on)


def purged(*, municipality: str, file_name: str, published_on: str, purged_on: str) -> Mail:
    """P8: the file was removed from the transfer server because nobody picked it up."""
    return _plain_mail(
        "purged",
        municipality=municipality,
        file_name=file_name,
        published_on=published_on,
        purged_on=purged_on,
    )


def sms_purged(file_name: str) -> str:
    return _render("sms/purged.txt.j2", file_name=file_name)


def key_expiry(*, municipality: str, fingerprint: str, expires: str | None, problem: str | None) -> Mail:
    """P6: the municipality's key is about to expire (or can no longer be used): send a new one."""
    return _plain_mail(
        "key_expiry", municipality=municipality, fingerprint=fingerprint, expires=expires, problem=problem
    )


def correction_acknowledged(*, municipality: str, reference: str, reported_on: str, due_on: str) -> Mail:
    """P9: the report was received; the agency answers within two weeks."""
    return _plain_mail(
        "correction_ack",
        municipality=municipality,
        reference=reference,
        reported_on=reported_on,
        due_on=due_on,
    )


def correction_extended(
    *, municipality: str, reference: str, reported_on: str, extended_to: str, reason: str
) -> Mail:
    return _plain_mail(
        "correction_extended",
        municipality=municipality,
        reference=reference,
        reported_on=reported_on,
        extended_to=extended_to,
        reason=reason,
    )


def correction_no_error(*, municipality: str, reference: str, reported_on: str, reason: str) -> Mail:
    return _plain_mail(
        "correction_no_error",
        municipality=municipality,
        reference=reference,
        reported_on=reported_on,
        reason=reason,
    )


def correction_done(
    *,
    municipality: str,
    reference: str,
    reported_on: str,
    file_name: str,
    added: int,
    removed: int,
    changed: int,
    superseded: str | None,
) -> Mail:
    return _plain_mail(
        "correction_done",
        municipality=municipality,
        reference=reference,
        reported_on=reported_on,
        file_name=file_name,
        added=added,
        removed=removed,
        changed=changed,
        superseded=superseded,
    )
