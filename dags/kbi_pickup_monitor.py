"""
### kbi_pickup_monitor: daily, which published files are still on the transfer server (P8)

For every delivered file that has not been picked up, the municipality's inbox is checked (a
`stat` over SFTP: the monitor never downloads or decrypts a file):

| the file is … | then |
|---|---|
| gone | recorded as picked up, with the time it was noticed |
| still there after `KBI_PICKUP_REMINDER_DAYS` (7) days | one reminder by e-mail and SMS (Dutch) |
| there after `KBI_PICKUP_PURGE_DAYS` (30) days | deleted from the server, municipality told, purge recorded |

`report_deliveries` logs one table with the state of every delivery of the current year.
`check_correction_deadlines` reminds the quality officers of a correction request on day 10 and
escalates on day 14 (P9). `warn_expiring_keys` asks a municipality whose key expires within
`KBI_KEY_EXPIRY_WARNING_DAYS` (60) days, or can no longer be used, for a new key (at most once a
week) and tells the data engineers (P6).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task
from airflow.timetables.trigger import CronTriggerTimetable

from kbi import airflow_tasks as t


@dag(
    dag_id="kbi_pickup_monitor",
    description="Daily: pickups, reminders and purges of delivered files (P8)",
    schedule=CronTriggerTimetable("0 7 * * *", timezone="Europe/Brussels"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["kbi", "monitoring"],
    default_args={
        "owner": "data-engineering",
        "retries": 3,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
    },
)
def kbi_pickup_monitor():
    @task(multiple_outputs=False)
    def sweep_pickups() -> dict:
        return t.sweep_pickups()

    @task(trigger_rule="all_done", retries=0)
    def report_deliveries(swept: dict | None) -> int:
        return t.report_deliveries(swept)

    @task(multiple_outputs=False)
    def warn_expiring_keys() -> dict:
        return t.warn_expiring_keys()

    @task(multiple_outputs=False)
    def check_correction_deadlines() -> dict:
        return t.check_correction_deadlines()

    report_deliveries(sweep_pickups())
    warn_expiring_keys()
    check_correction_deadlines()


kbi_pickup_monitor()
