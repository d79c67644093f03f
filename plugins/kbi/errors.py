"""Exceptions that are safe to log: their messages never carry personal data (P12).

Airflow logs a failed task's exception text and traceback. A library error raised while handling
rows may quote the row (a parse error shows the value), so data handling runs inside
``scrubbed(...)``, which keeps the stage and the exception type and drops the message and the
chained cause.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class KbiError(Exception):
    """Base of the project's errors; messages name municipalities, files and counts only."""


class DataError(KbiError):
    """Processing the data failed; the message says where, never what value."""


class ConfigurationError(KbiError):
    """A connection, setting or registry entry is missing or unsafe."""


class Unavailable(KbiError):
    """A system went away or timed out mid-way (a dropped or cancelled query): a retry may
    succeed. Scrubbed like DataError, but not permanent."""


@contextmanager
def scrubbed(stage: str, transient: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Errors inside become DataError (permanent), or Unavailable (retried) for ``transient``
    types; either way only the stage and the exception's type are kept."""
    failed: str | None = None
    error: type[KbiError] = DataError
    try:
        yield
    except KbiError:
        raise
    except Exception as exc:
        failed = type(exc).__name__
        error = Unavailable if isinstance(exc, transient) else DataError
    if failed:
        # contextmanager's __exit__ still runs while the original exception is being handled, so
        # it becomes __context__; "from None" marks it suppressed and no traceback renders it.
        raise error(f"{stage} failed ({failed}); the data involved is not shown") from None
