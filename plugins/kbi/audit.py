"""The audit export (P13, P14): what the data protection officer hands over on request.

For a year (and optionally one municipality): every delivery with its file, checksum, key
fingerprint or passphrase mode, inbox and every timestamp; every refusal with its rule and
reason; every correction request with its handling time against the 14 days; every run; and the
result of the ledger's chain verification. CSV files for further work and one Markdown report to
read. Built from the ledger only, so it holds no name and no national number, and it checks that
once more before it is written.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from kbi import reference
from kbi.errors import KbiError
from kbi.ledger import Ledger, chain

DELIVERY_COLUMNS = (
    "nis_code", "municipality", "kind", "correction_ref", "file_name", "row_count", "size_bytes", "sha256",
    "mode", "key_fingerprint", "inbox", "reference_date", "state", "planned_at", "published_at",
    "sms_sent_at", "mail_sent_at", "picked_up_at", "reminded_at", "purged_at", "delete_by", "run_id",
    "last_error",
)  # fmt: skip


@dataclass(frozen=True)
class Export:
    directory: Path
    report: Path
    files: tuple[Path, ...]
    chain_intact: bool


def _csv(rows: list[dict], columns: tuple[str, ...] | None = None) -> str:
    out = io.StringIO()
    names = columns or (tuple(rows[0]) if rows else ())
    writer = csv.DictWriter(out, fieldnames=names, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _days(start: str, end: str | None) -> int | None:
    return (date.fromisoformat(end[:10]) - date.fromisoformat(start[:10])).days if end else None


def _md_table(rows: list[dict], columns: list[tuple[str, str]]) -> list[str]:
    if not rows:
        return ["_none_", ""]
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append(
            "| " + " | ".join("" if r.get(key) is None else str(r.get(key)) for key, _ in columns) + " |"
        )
    return [*lines, ""]


def export(ledger: Ledger, out_dir: Path, year: int, nis_code: str | None = None) -> Export:
    since, until = f"{year}-01-01", f"{year + 1}-01-01"
    names = {m.nis_code: m.name for m in reference.municipalities().values()}
    runs = ledger.audit("runs", since, until)
    deliveries = ledger.audit("deliveries", since, until, nis_code)
    for d in deliveries:
        d["municipality"] = names.get(d["nis_code"], "")
    refusals = ledger.audit("refusals", since, until, nis_code)
    corrections = ledger.audit("corrections", since, until, nis_code)
    today = datetime.now(UTC).date().isoformat()
    for c in corrections:
        c["days_taken"] = _days(c["reported_on"], c["handled_on"])
        c["in_time"] = (
            ("yes" if c["handled_on"] <= c["due_on"] else "NO")
            if c["handled_on"]
            else ("open" if today <= c["due_on"] else "OVERDUE")
        )
    events = ledger.events()
    broken = ledger.verify()
    head = ledger.head()
    verdict = (
        f"intact: {len(events)} events, head #{head['seq']} {head['hash']}"
        if broken is None and head
        else "empty"
        if broken is None
        else f"BROKEN at event {broken.seq}: {broken.problem}"
    )
    scope = f"{year}" + (f", municipality {nis_code} {names.get(nis_code, '')}" if nis_code else "")
    published = [d for d in deliveries if d["published_at"]]
    versions = ", ".join(sorted({r["registry_version"] or "?" for r in runs})) or "-"
    in_time = sum(c["in_time"] == "yes" for c in corrections)
    kinds = {k: sum(d["kind"] == k for d in published) for k in ("annual", "correction")}
    picked = sum(1 for d in published if d["picked_up_at"])
    purged = sum(1 for d in published if d["purged_at"])
    lines = [
        f"# Audit of the KBI distribution: {scope}",
        "",
        f"Generated {datetime.now(UTC).isoformat(timespec='seconds')} from the ledger. No names or national "
        "numbers: the ledger never holds them.",
        "",
        f"**Ledger chain verification: {verdict}**",
        "",
        f"- runs: {len(runs)}; registry versions used: {versions}",
        f"- lists published: {len(published)} (annual {kinds['annual']}, corrections {kinds['correction']}); "
        f"picked up {picked}, purged {purged}",
        f"- refusals: {len(refusals)}; correction requests: {len(corrections)} ({in_time} handled in time)",
        "",
        "## Deliveries",
        "",
        *_md_table(
            deliveries,
            [
                ("nis_code", "NIS"),
                ("municipality", "municipality"),
                ("kind", "kind"),
                ("file_name", "file"),
                ("row_count", "rows"),
                ("sha256", "SHA-256"),
                ("mode", "mode"),
                ("key_fingerprint", "key fingerprint"),
                ("inbox", "inbox"),
                ("published_at", "published"),
                ("sms_sent_at", "SMS"),
                ("mail_sent_at", "receipt"),
                ("picked_up_at", "picked up"),
                ("reminded_at", "reminded"),
                ("purged_at", "purged"),
                ("delete_by", "delete by"),
                ("state", "state"),
            ],
        ),
        "## Refusals",
        "",
        *_md_table(
            refusals,
            [
                ("nis_code", "NIS"),
                ("municipality", "municipality"),
                ("rule", "rule"),
                ("reason", "reason"),
                ("decided_at", "when"),
                ("run_id", "run"),
            ],
        ),
        "## Correction requests (14 days, P9)",
        "",
        *_md_table(
            corrections,
            [
                ("reference", "reference"),
                ("nis_code", "NIS"),
                ("reported_on", "reported"),
                ("due_on", "due"),
                ("state", "outcome"),
                ("handled_on", "handled"),
                ("days_taken", "days"),
                ("in_time", "in time"),
                ("rows_added", "+"),
                ("rows_removed", "-"),
                ("rows_changed", "~"),
                ("delivery_id", "delivery"),
            ],
        ),
        "## Runs",
        "",
        *_md_table(
            runs,
            [
                ("run_id", "run"),
                ("dag_id", "DAG"),
                ("kind", "kind"),
                ("reference_date", "reference date"),
                ("state", "state"),
                ("started_at", "started"),
                ("finished_at", "finished"),
                ("registry_version", "registry"),
            ],
        ),
    ]
    texts = {
        "deliveries.csv": _csv(deliveries, DELIVERY_COLUMNS),
        "refusals.csv": _csv(refusals),
        "corrections.csv": _csv(corrections),
        "runs.csv": _csv(runs),
        "audit.md": "\n".join(lines) + "\n",
    }
    for name, text in texts.items():
        if chain.contains_national_number(text):  # the ledger should make this impossible
            raise KbiError(f"the audit export's {name} would contain a national number; not written")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name, text in texts.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        files.append(path)
    return Export(out_dir, out_dir / "audit.md", tuple(files), broken is None)
