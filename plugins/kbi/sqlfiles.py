"""Every SQL statement lives in a file under include/sql/ (reviewable by the DBA, greppable).

``load("ledger/insert_event", "postgresql")`` reads ``include/sql/ledger/insert_event.postgresql.sql``
when that dialect needs its own text, else ``include/sql/ledger/insert_event.sql``. Parameters are
SQLAlchemy named binds (``:name``), so one file serves SQLite and PostgreSQL where the SQL allows.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import sqlparse

from kbi import settings


@cache
def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def path_of(name: str, dialect: str | None = None, sql_dir: Path | None = None) -> Path:
    return _path_of(name, dialect, sql_dir or settings.sql_dir())


@cache
def _path_of(name: str, dialect: str | None, base: Path) -> Path:
    # Cached: the ledger asks for the same few files hundreds of times a run.
    if dialect:
        specific = base / f"{name}.{dialect}.sql"
        if specific.is_file():
            return specific
    generic = base / f"{name}.sql"
    if not generic.is_file():
        raise FileNotFoundError(f"no SQL file for {name!r} (dialect {dialect}) under {base}")
    return generic


def load(name: str, dialect: str | None = None, sql_dir: Path | None = None) -> str:
    """The text of one SQL statement file."""
    return _read(path_of(name, dialect, sql_dir))


def statements(name: str, dialect: str | None = None, sql_dir: Path | None = None) -> list[str]:
    """The statements of a script file (DDL, migrations), split by sqlparse, comments kept out."""
    return split(load(name, dialect, sql_dir))


def split(text: str) -> list[str]:
    out = []
    for stmt in sqlparse.split(text):
        body = sqlparse.format(stmt, strip_comments=True).strip().rstrip(";").strip()
        if body:
            out.append(body)
    return out
