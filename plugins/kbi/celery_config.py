"""Airflow's Celery configuration, with the task modules imported once per Celery worker.

A Celery worker (prefork pool) forks its pool processes when it starts, and each of them forks a
fresh process per task instance (Airflow's supervisor): what the worker has imported before its
pool starts, every task process inherits, as with ``kbi.executor.PreloadingLocalExecutor``.
Without it each of a yearly run's ~285 ``deliver`` task instances imports paramiko, pyarrow,
gnupg, the provider hooks and Apprise's plugins again.

Configured as ``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=kbi.celery_config.CELERY_CONFIG``
(docker-compose.yaml does). The scheduler and the api-server read this module too, but the
imports run only in a worker: on Celery's ``worker_init`` signal, before its pool starts.
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init

# Airflow's own settings, unchanged: this module exists for the signal below.
CELERY_CONFIG = DEFAULT_CELERY_CONFIG


@worker_init.connect
def _preload_task_modules(**_: object) -> None:
    from kbi.executor import preload

    preload()
