"""Answering Airflow's human-in-the-loop questions from a test, as a quality officer's click would:
through the REST API (in process), while dag.test() waits for the answer in the main thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote


def _prepare_orm() -> None:
    # dag.test() imports these lazily; importing them first (and configuring the mappers) avoids an
    # import-lock deadlock between this thread's queries and the main thread (Airflow 3.3 notes).
    import sqlalchemy.orm

    sqlalchemy.orm.configure_mappers()


class Officer(threading.Thread):
    """Answers each awaited task in ``answers`` (task id → (option, form input)) once."""

    def __init__(self, dag_id: str, answers: Mapping[str, tuple[str, dict[str, Any]]], timeout: float = 180):
        super().__init__(daemon=True)
        _prepare_orm()
        self.dag_id = dag_id
        self.answers = dict(answers)
        self.timeout = timeout
        self.answered: list[str] = []
        self.responses: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._answer_all()
        except BaseException as exc:
            self.error = exc

    def _answer_all(self) -> None:
        from airflow.api_fastapi.app import create_app
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from fastapi.testclient import TestClient
        from sqlalchemy import select

        client = TestClient(create_app(apps="core"))
        deadline = time.monotonic() + self.timeout
        while len(self.answered) < len(self.answers) and time.monotonic() < deadline:
            with create_session() as session:
                waiting = session.execute(
                    select(TaskInstance.task_id, TaskInstance.run_id).where(
                        TaskInstance.dag_id == self.dag_id,
                        TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                    )
                ).all()
            for task_id, run_id in waiting:
                if task_id in self.answers and task_id not in self.answered:
                    option, params = self.answers[task_id]
                    url = (
                        f"/api/v2/dags/{self.dag_id}/dagRuns/{quote(run_id, safe='')}"
                        f"/taskInstances/{task_id}/-1/hitlDetails"
                    )
                    response = client.patch(url, json={"chosen_options": [option], "params_input": params})
                    self.responses.append(response.status_code)
                    self.answered.append(task_id)
            time.sleep(0.3)
