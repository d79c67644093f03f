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

from demo import pgdb

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
CLAIM_KEY = "kbi_celery_test:claimed_by"


@dataclass(frozen=True)
class Backends:
    database: pgdb.Database
    redis_db: int

    @property
    def db_url(self) -> str:
        """The Airflow metadata database (and the Celery result backend, with ``db+``)."""
        return self.database.url

    @property
    def broker_url(self) -> str:
        return f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.redis_db}"


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
    why = pgdb.unreachable()
    if why:
        _skip(why)
    try:
        _redis(0).ping()
    except Exception as exc:
        _skip(f"Redis does not answer on {REDIS_HOST}:{REDIS_PORT}: {exc}")

    token = uuid.uuid4().hex[:12]
    with pgdb.fresh_database("kbi_celery") as database:
        redis_db: int | None = None
        try:
            redis_db = _claim_redis_db(token)
            yield Backends(database, redis_db)
        finally:
            if redis_db is not None:
                client = _redis(redis_db)
                client.flushdb()
                client.close()


database_exists = pgdb.database_exists


def redis_keys(db: int) -> int:
    client = _redis(db)
    try:
        return int(client.dbsize())
    finally:
        client.close()
