"""The KBI distribution's pages inside Airflow's UI (see plugins/kbi_ui.py)."""
