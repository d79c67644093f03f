"""One place that reads the environment: paths, connection ids, limits.

Every setting has an embedded default that works for the demo. Production overrides them with
environment variables (``KBI_*``); connections come from Airflow (``AIRFLOW_CONN_KBI_*`` or the
secrets backend), never from this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Airflow connection ids: the outside contract of interfaces.md §1-§5.
CONN_SOURCE = "kbi_source"
CONN_LEDGER = "kbi_ledger"
CONN_QUARANTINE = "kbi_quarantine"
CONN_SFTP = "kbi_sftp"
CONN_SMS = "kbi_sms"
CONN_SMTP = "kbi_smtp"

TIMEZONE = "Europe/Brussels"

# Deliveries of one run at a time. Each mostly waits (Airflow starting it, SFTP, gpg, SMS, mail
# round trips), so more than the cores keep them busy: ten took a 25k run from 81 to 63 s on two
# cores (make bench). Not more: each opens its own SSH session, and OpenSSH starts dropping
# handshakes beyond ten unauthenticated at once (MaxStartups 10:30:100, deploy/sftp/sshd_config).
DELIVERIES_AT_ONCE = 10


def _path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def sql_dir() -> Path:
    """Where the SQL files are (KBI_SQL_DIR): asked for every statement the ledger runs, so it
    does not load (and resolve) every other setting each time."""
    return _path("KBI_SQL_DIR", PROJECT_ROOT / "include" / "sql")


def _float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _choice(name: str, allowed: tuple[str, ...], default: str) -> str:
    value = os.environ.get(name) or default
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, not {value!r}")
    return value


def _date(name: str) -> date | None:
    value = os.environ.get(name)
    return date.fromisoformat(value) if value else None


@dataclass(frozen=True)
class Settings:
    """What the pipeline needs to know about its surroundings, besides connections."""

    var_dir: Path
    registry_path: Path
    staging_dir: Path
    reports_dir: Path
    sql_dir: Path
    reference_dir: Path
    # P11: the run stops when more than this share of extracted rows fails a blocking check.
    max_blocking_failure_rate: float
    # P11: the run stops when a municipality's list moved more than this share since its last
    # delivery, and by at least min_count_change_rows rows (small lists move by a few people).
    max_count_change: float
    min_count_change_rows: int
    # The longest a read of the KBI view may take on PostgreSQL (statement_timeout); a hung
    # source then fails the extract, which is retried, instead of holding the run forever.
    source_timeout_s: int
    # P11, catalogue 15: a view counting more rows than this stops the run before a row is read
    # (the extract and its checks hold the whole year in memory: 1M rows ≈ 0.9 GB in the largest
    # task), unless the run's accept_extract_rows allows that many.
    max_extract_rows: int
    # Quarantined rows older than this are purged (the quality officer resolves them before).
    quarantine_retention_days: int
    # P8: a file still on the transfer server after this many days gets one reminder; after
    # purge_after_days it is deleted from the server.
    pickup_reminder_days: int
    pickup_purge_days: int
    # P6: keys expiring within this many days are announced to the municipality (weekly).
    key_expiry_warning_days: int
    # P10: a municipality keeps the data at most this many years; stated on every receipt.
    retention_years: int
    # P4: go-live date of the MAGDA list web service; none configured means no sunset yet. The
    # runs warn this many months before the last day files may be sent.
    magda_go_live: date | None
    sunset_warning_months: int
    # P3: "calendar" (one annual list per calendar year) or "rolling" (none within 365 days).
    p3_period: str
    # Where temporary upload names live on the transfer server (None: beside the final name).
    sftp_staging_dir: str | None
    # P9: the contact point a municipality uses to report an error.
    error_report_url: str
    mail_from: str
    data_engineers_email: str
    # Catalogue 41: when the SMTP relay is down an e-mail alert cannot go either; then the alert's
    # subject goes by SMS (kbi_sms) to these numbers, if any.
    data_engineers_sms: tuple[str, ...]
    # P9: who handles correction requests (day-10 reminders, day-14 escalations).
    quality_officers_email: str


def load() -> Settings:
    var_dir = _path("KBI_VAR_DIR", PROJECT_ROOT / "var" / "demo")
    return Settings(
        var_dir=var_dir,
        registry_path=_path("KBI_REGISTRY", PROJECT_ROOT / "config" / "recipients.yaml"),
        staging_dir=_path("KBI_STAGING_DIR", var_dir / "staging"),
        reports_dir=_path("KBI_REPORTS_DIR", var_dir / "reports"),
        sql_dir=sql_dir(),
        reference_dir=_path("KBI_REFERENCE_DIR", PROJECT_ROOT / "include" / "reference"),
        max_blocking_failure_rate=_float("KBI_MAX_BLOCKING_FAILURE_RATE", 0.01),
        max_count_change=_float("KBI_MAX_COUNT_CHANGE", 0.5),
        min_count_change_rows=_int("KBI_MIN_COUNT_CHANGE_ROWS", 20),
        source_timeout_s=_int("KBI_SOURCE_TIMEOUT_S", 900),
        max_extract_rows=_int("KBI_MAX_EXTRACT_ROWS", 1_000_000),
        quarantine_retention_days=_int("KBI_QUARANTINE_RETENTION_DAYS", 180),
        pickup_reminder_days=_int("KBI_PICKUP_REMINDER_DAYS", 7),
        pickup_purge_days=_int("KBI_PICKUP_PURGE_DAYS", 30),
        key_expiry_warning_days=_int("KBI_KEY_EXPIRY_WARNING_DAYS", 60),
        retention_years=_int("KBI_RETENTION_YEARS", 5),
        magda_go_live=_date("KBI_MAGDA_GO_LIVE"),
        sunset_warning_months=_int("KBI_SUNSET_WARNING_MONTHS", 6),
        p3_period=_choice("KBI_P3_PERIOD", ("calendar", "rolling"), "calendar"),
        sftp_staging_dir=os.environ.get("KBI_SFTP_STAGING_DIR") or None,
        error_report_url=os.environ.get(
            "KBI_ERROR_REPORT_URL", "https://www.integratie-inburgering.be/contact"
        ),
        mail_from=os.environ.get("KBI_MAIL_FROM", "kbi-levering@integratie-inburgering.be"),
        data_engineers_email=os.environ.get("KBI_DATA_ENGINEERS_EMAIL", "data-engineering@example.invalid"),
        data_engineers_sms=tuple(
            n.strip() for n in os.environ.get("KBI_DATA_ENGINEERS_SMS", "").split(",") if n.strip()
        ),
        quality_officers_email=os.environ.get("KBI_QUALITY_OFFICERS_EMAIL", "kwaliteit@example.invalid"),
    )
