"""SQLAlchemy engines for the project's databases (source, ledger, quarantine).

The domain package takes a database URL as a plain value; the DAGs turn Airflow connections into
URLs (``kbi.airflow_glue``). SQLite gets what a file shared by parallel tasks needs: WAL so that
readers do not wait for a writer, a busy timeout instead of "database is locked", and, for the
databases we write, ``BEGIN IMMEDIATE`` so that two writers queue up instead of deadlocking on a
lock upgrade (the SQLAlchemy documentation's pysqlite recipe).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool


def _sqlite_connect(writer: bool):
    def on_connect(dbapi_conn, _record) -> None:
        if writer:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")
        if writer:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return on_connect


def _sqlite_begin(conn) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


_ENGINES: dict[tuple[str, bool], Engine] = {}


def engine(url: str, writer: bool = True) -> Engine:
    """One engine per URL and process (engines pool connections; creating them is not free)."""
    key = (url, writer)
    if key not in _ENGINES:
        # The source is read once per run: a fresh connection each time, so a replaced database
        # file (or a failed-over server) is never read through a stale pooled connection.
        pooling = {"pool_pre_ping": True} if writer else {"poolclass": NullPool}
        eng = sa.create_engine(url, **pooling)
        if eng.dialect.name == "sqlite":
            sa.event.listen(eng, "connect", _sqlite_connect(writer))
            if writer:
                sa.event.listen(eng, "begin", _sqlite_begin)
        _ENGINES[key] = eng
    return _ENGINES[key]


def dispose_all() -> None:
    """Close every pooled connection (tests dropping a database; a process about to fork)."""
    for eng in _ENGINES.values():
        eng.dispose()
    _ENGINES.clear()
