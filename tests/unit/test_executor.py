"""kbi.executor: what the scheduler imports once so that every forked task process has it."""

from __future__ import annotations

import logging
import sys

import pytest

from kbi import executor


def test_preloads_the_task_modules_and_apprise_plugins() -> None:
    assert executor.preload() == []
    for name in executor.PRELOAD:
        assert name in sys.modules
    # Apprise's notification plugins (the SMS gateway's json:// among them) are imported too.
    plugins = [m for m in sys.modules if m.startswith("apprise.plugins.")]
    assert len(plugins) > 50 and "apprise.plugins.custom_json" in sys.modules


def test_warm_ups_leave_the_message_templates_compiled_and_the_plugins_loaded() -> None:
    from airflow.sdk.listener import get_listener_manager

    from kbi import messages

    env = messages._env()
    assert env.cache is not None
    env.cache.clear()  # whatever other tests compiled
    executor.preload()
    compiled = {name for _loader, name in env.cache}
    templates = set(env.list_templates(filter_func=lambda n: n.startswith(("sms/", "mail/"))))
    assert {"sms/passphrase.txt.j2", "mail/receipt.html.j2"} <= templates <= compiled
    assert get_listener_manager.cache_info().currsize == 1  # the task processes inherit it


def test_a_warm_up_that_fails_never_stops_the_scheduler(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("template syntax error")

    monkeypatch.setattr(executor, "WARM_UPS", (broken,))
    with caplog.at_level(logging.WARNING, logger="kbi.executor"):
        assert executor.preload(("kbi.settings",)) == []
    assert "Could not broken for the task processes: RuntimeError: template syntax error" in caplog.text


def test_a_module_that_cannot_be_imported_never_stops_the_scheduler(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kbi.executor"):
        failed = executor.preload(("kbi.no_such_module", "kbi.settings"))
    assert failed == ["kbi.no_such_module"]
    assert "Could not preload kbi.no_such_module" in caplog.text


def test_it_is_the_local_executor() -> None:
    from airflow.executors.local_executor import LocalExecutor

    assert issubclass(executor.PreloadingLocalExecutor, LocalExecutor)
