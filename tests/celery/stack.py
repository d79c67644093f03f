"""The CI's PostgreSQL and Redis, borrowed without touching anything else on them.

``backends()`` creates a fresh database ``kbi_celery_<random>`` (never ``test``) and claims an
empty Redis database number other than 0; on exit it drops that database and flushes only that
Redis database. It skips the test, with the reason, when either server does not answer.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
CLAIM_KEY = "kbi_celery_test:claimed_by"


@dataclass(frozen=True)
class Backends:
    database: str
    redis_db: int

    @property
    def db_url(self) -> str:
        """The Airflow metadata database (and the Celery result backend, with ``db+``)."""
        return f"postgresql+psycopg2://postgres@{PG_HOST}:{PG_PORT}/{self.database}"

    @property
    def broker_url(self) -> str:
        return f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.redis_db}"

    def connection(self, **extra: object) -> dict[str, object]:
        """An Airflow connection (JSON form) to this database, for the ledger and the quarantine."""
        conn: dict[str, object] = {
            "conn_type": "postgres",
            "host": PG_HOST,
            "port": PG_PORT,
            "login": "postgres",
            "schema": self.database,
        }
        return {**conn, "extra": extra} if extra else conn


def _admin_engine():
    import sqlalchemy as sa

    return sa.create_engine(
        f"postgresql+psycopg2://postgres@{PG_HOST}:{PG_PORT}/postgres",
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 3},
    )


def _redis(db: int):
    import redis

    return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=3, socket_connect_timeout=3)


def _skip(reason: str) -> None:
    # Printed as well: -ra lists it at the end, but a CI log read from the top should show it too.
    print(f"SKIPPED: {reason}", flush=True)
    pytest.skip(reason)


def _claim_redis_db(token: str) -> int:
    """An empty database number other than 0 (the default others use), claimed with SET NX."""
    count = int(_redis(0).config_get("databases").get("databases", 16))
    candidates = list(range(1, count))
    random.shuffle(candidates)
    for n in candidates:
        client = _redis(n)
        try:
            if client.dbsize() == 0 and client.set(CLAIM_KEY, token, nx=True):
                return n
        finally:
            client.close()
    raise RuntimeError(f"no empty Redis database among 1..{count - 1}; refusing to share one")


@contextlib.contextmanager
def backends() -> Iterator[Backends]:
    import sqlalchemy as sa

    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        admin.dispose()
        _skip(f"PostgreSQL does not answer on {PG_HOST}:{PG_PORT}: {str(exc).splitlines()[0]}")
    try:
        _redis(0).ping()
    except Exception as exc:
        admin.dispose()
        _skip(f"Redis does not answer on {REDIS_HOST}:{REDIS_PORT}: {exc}")

    token = uuid.uuid4().hex[:12]
    database = f"kbi_celery_{token}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    redis_db: int | None = None
    try:
        redis_db = _claim_redis_db(token)
        yield Backends(database, redis_db)
    finally:
        try:
            if redis_db is not None:
                client = _redis(redis_db)
                client.flushdb()
                client.close()
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            admin.dispose()


def database_exists(name: str) -> bool:
    import sqlalchemy as sa

    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            found = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            return found.first() is not None
    finally:
        admin.dispose()


def redis_keys(db: int) -> int:
    client = _redis(db)
    try:
        return int(client.dbsize())
    finally:
        client.close()
