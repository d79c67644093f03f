"""SQLAlchemy engines for the project's databases (source, ledger, quarantine).

The domain package takes a database URL as a plain value; the DAGs turn Airflow connections into
URLs (``kbi.airflow_glue``). SQLite gets the settings a shared file needs: WAL for readers during a
write, a busy timeout instead of "database is locked", foreign keys on.
"""

from __future__ import annotations

from functools import cache

import sqlalchemy as sa
from sqlalchemy.engine import Engine


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - exercised by every test
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


@cache
def engine(url: str) -> Engine:
    """One engine per URL and process (engines pool connections; creating them is not free)."""
    eng = sa.create_engine(url, future=True, pool_pre_ping=True)
    if eng.dialect.name == "sqlite":
        sa.event.listen(eng, "connect", _sqlite_pragmas)
    return eng


def dialect_of(eng: Engine) -> str:
    return eng.dialect.name
