"""kbi.airflow_tasks.fail_fast: which of the domain's errors a retry may change."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from kbi import airflow_tasks, transport
from kbi.errors import ConfigurationError, DataError, KbiError, Unavailable


def _raising(exc: Exception):
    @airflow_tasks.fail_fast
    def task() -> None:
        raise exc

    return task


@pytest.mark.parametrize(
    "exc",
    [
        DataError("reading the KBI view failed (ValueError); the data involved is not shown"),
        ConfigurationError("connection kbi_sftp has no pinned host key"),
        transport.HostKeyMismatch(transport.HostKeyMismatch.REASON),  # catalogue 28: never retried
    ],
    ids=type,
)
def test_permanent_refusals_fail_at_once(exc: Exception) -> None:
    with pytest.raises(AirflowFailException, match=type(exc).__name__):
        _raising(exc)()


@pytest.mark.parametrize(
    "exc",
    [
        Unavailable("reading the KBI view failed (OperationalError); the data involved is not shown"),
        KbiError("44021 Gent: connection lost or refused"),
    ],
    ids=type,
)
def test_passing_faults_are_left_to_airflows_retries(exc: Exception) -> None:
    """Catalogue 16, 30: a dropped or cancelled source read, a lost connection: retried."""
    with pytest.raises(type(exc)):
        _raising(exc)()
