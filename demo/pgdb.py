"""A throwaway database on a shared PostgreSQL server (the CI's, or a developer's).

``fresh_database("kbi_bench")`` creates ``kbi_bench_<random>`` (never touching ``test`` or any
other database there) and drops it on exit, even after a failure. The benchmark and the Celery
suite use it for Airflow's metadata and the agency's ledger and quarantine, as in production.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

PG_HOST = os.environ.get("KBI_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("KBI_PG_PORT", "5432"))
PG_USER = os.environ.get("KBI_PG_USER", "postgres")


@dataclass(frozen=True)
class Database:
    name: str

    @property
    def url(self) -> str:
        """SQLAlchemy URL (Airflow's metadata database; with ``db+`` Celery's result backend)."""
        return f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.name}"

    def connection(self, **extra: object) -> dict[str, object]:
        """An Airflow connection (JSON form) to this database, for the ledger and the quarantine."""
        conn: dict[str, object] = {
            "conn_type": "postgres",
            "host": PG_HOST,
            "port": PG_PORT,
            "login": PG_USER,
            "schema": self.name,
        }
        return {**conn, "extra": extra} if extra else conn

    def agency_connections(self, chain_secret: str) -> dict[str, str]:
        """``AIRFLOW_CONN_*`` variables that put the ledger and the quarantine in this database."""
        return {
            "AIRFLOW_CONN_KBI_LEDGER": json.dumps(self.connection(chain_secret=chain_secret)),
            "AIRFLOW_CONN_KBI_QUARANTINE": json.dumps(self.connection()),
        }


def admin_engine() -> Any:
    import sqlalchemy as sa

    return sa.create_engine(
        f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres",
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 3},
    )


def unreachable() -> str | None:
    """Why the server cannot be used, or None when it answers."""
    import sqlalchemy as sa

    engine = admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return None
    except Exception as exc:
        return f"PostgreSQL does not answer on {PG_HOST}:{PG_PORT}: {str(exc).splitlines()[0]}"
    finally:
        engine.dispose()


@contextlib.contextmanager
def fresh_database(prefix: str) -> Iterator[Database]:
    import sqlalchemy as sa

    db = Database(f"{prefix}_{uuid.uuid4().hex[:12]}")
    admin = admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{db.name}"'))
        try:
            yield db
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def database_exists(name: str) -> bool:
    import sqlalchemy as sa

    admin = admin_engine()
    try:
        with admin.connect() as conn:
            found = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            return found.first() is not None
    finally:
        admin.dispose()
