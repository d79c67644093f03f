"""Airflow plugin: the KBI distribution's pages in the Airflow UI (the app is kbi/ui/app.py).

Every task process loads the plugins folder; the FastAPI app is therefore built only when the
api-server asks for it, and the tasks never pay for importing FastAPI, Airflow's API or the ledger.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin


class _FastApiApps:
    def __get__(self, instance: object, owner: type) -> list[dict[str, Any]]:
        from kbi.ui import app

        return [{"app": app.app, "url_prefix": "/kbi", "name": "KBI distribution"}]


class KbiUiPlugin(AirflowPlugin):
    name = "kbi_ui"
    fastapi_apps = _FastApiApps()
    # With url_route the UI shows the page in an iframe inside its own shell, at /plugin/kbi-status,
    # in the Browse menu. The page itself is behind Airflow's login like the rest of the app.
    external_views = [  # noqa: RUF012 - the plugin contract is a plain class attribute
        {
            "name": "KBI status",
            "href": "/kbi/board",
            "destination": "nav",
            "category": "browse",
            "url_route": "kbi-status",
        }
    ]
