"""The LocalExecutor, with the task modules imported once in the scheduler before it forks.

Airflow 3's LocalExecutor forks its worker processes from the scheduler when it starts, and each
worker forks a fresh process per task instance: whatever the scheduler has imported by then, every
task process inherits for free (copy-on-write). Without this, each of the ~285 ``deliver`` task
instances of a yearly run imports paramiko, pyarrow, gnupg, SQLAlchemy, pydantic and the provider
hooks again: about half a second of CPU each, most of a deliver task's own cost (``make bench``).

Only what most task instances use is preloaded; pandas and Great Expectations (one task each) are
not, so that the workers stay small. A module that fails to import is logged and skipped: the task
that needs it then fails with the real error in its own log, never the scheduler.

Configured as ``AIRFLOW__CORE__EXECUTOR=kbi.executor.PreloadingLocalExecutor`` (the demo and the
benchmark do so). Celery workers preload the same modules through ``kbi.celery_config``; with any
other executor the tasks import what they need themselves.
"""

from __future__ import annotations

import importlib
import logging
import time

from airflow.executors.local_executor import LocalExecutor

log = logging.getLogger(__name__)

PRELOAD = (
    # What every task process runs before the task itself: the task runner, the DAG file's imports.
    "airflow.sdk.execution_time.task_runner",
    "airflow.providers.standard.decorators.python",
    "airflow.sdk.execution_time.cache",  # the connection lookup
    "airflow.sdk.definitions.asset.metadata",  # the callable's runner
    "jinja2.ext",  # the task's template environment (extensions)
    # The DAG files' imports, parsed again in every task process: the decorators behind
    # airflow.sdk's lazy names and the trigger timetable (6 ms each time otherwise).
    "airflow.sdk.definitions.decorators",
    "airflow.timetables.trigger",
    "kbi.airflow_tasks",
    # The deliver path: connections, ledger, registry, list, gpg, SFTP, SMS and e-mail.
    "kbi.airflow_glue",
    "kbi.pipeline",
    "kbi.delivery",
    "kbi.corrections",
    "kbi.monitor",
    "pyarrow.parquet",
    "pyarrow.compute",
    "airflow.providers.sftp.hooks.sftp",
    "airflow.providers.smtp.hooks.smtp",
    "airflow.providers.apprise.hooks.apprise",
    "apprise",
    # The ledger's and the quarantine's connection types: Connection.get_hook imports them.
    "airflow.providers.postgres.hooks.postgres",
    "airflow.providers.sqlite.hooks.sqlite",
)


def _load_apprise_plugins() -> None:
    # Apprise imports its ~130 notification plugin modules on the first URL it parses: 0.3 s of
    # CPU in every task that sends an SMS, unless done here once.
    from apprise.plugins import N_MGR

    N_MGR.load_modules()


def _compile_message_templates() -> None:
    from kbi import messages

    messages.compile_templates()


def _load_listener_plugins() -> None:
    # Every task process asks for the listener manager, which imports the plugins folder first.
    from airflow.sdk.listener import get_listener_manager

    get_listener_manager()


WARM_UPS = (_load_apprise_plugins, _compile_message_templates, _load_listener_plugins)


def preload(modules: tuple[str, ...] = PRELOAD) -> list[str]:
    """Import ``modules``; returns those that failed (logged, never raised)."""
    started = time.perf_counter()
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the scheduler must start even if a task module is broken
            log.warning("Could not preload %s for the task processes: %s: %s", name, type(exc).__name__, exc)
            failed.append(name)
    for warm_up in WARM_UPS:
        try:
            warm_up()
        except Exception as exc:
            name = warm_up.__name__
            log.warning("Could not %s for the task processes: %s: %s", name, type(exc).__name__, exc)
    took = time.perf_counter() - started
    log.info("Preloaded %d task module(s) in %.2f s", len(modules) - len(failed), took)
    return failed


class PreloadingLocalExecutor(LocalExecutor):
    def start(self) -> None:
        preload()
        super().start()
