"""
### kbi_distribution: the yearly list of inburgeraars, one encrypted file per municipality

Once a year (and by hand for some municipalities) this DAG reads the KBI view `kbi_inburgeraar`,
checks every row, splits the list per municipality, and for each municipality whose protocol is in
force writes the file agreed in its protocol, encrypts it for that municipality alone, delivers it
by SFTP under a temporary name, renames and verifies it, and announces it by SMS and e-mail.

| task | what it does | protocol rules |
|---|---|---|
| `create_staging` | private staging directory of this run (setup) | P12 |
| `plan` | registry → who receives, who is refused and why | P1, P3, P4, P5, P6 |
| `extract` | one read of the KBI view into staging; a view too large stops the run | P2, P11 |
| `check_quality` | blocking checks, quarantine, run-level gates | P11 |
| `partition` | selection rules, one staged list per municipality | P1, P2 |
| `deliver` | per municipality (`NIS name`): CSV → gpg → SFTP → verify → SMS + mail | P6-P8, P10, P12, P13 |
| `summarise` | counts and reasons to the ledger and `reports/<run>/summary.json` | P13, P14 |
| `remove_staging` | deletes the plaintext staging area, also when a task failed (teardown) | P12 |

**Params**: `municipalities` (NIS codes; empty = every eligible municipality), `reference_date`
(empty = the run's logical date), `dry_run` (everything but upload, notify and record),
`accept_count_change` (NIS codes whose list may have moved more than the configured share since
its last delivery: the run stops otherwise), `accept_extract_rows` (how many rows the KBI view may
count in this run above `KBI_MAX_EXTRACT_ROWS`, 1,000,000 by default: the run stops otherwise).

**Quality report**: `check_quality` writes `quality.html` and `quality.json` (counts only) to the
reports directory of the run; the task's extra link "Quality report" opens it.
A second annual run in the same calendar year is refused per municipality (P3); a correction goes
through `kbi_correction_request`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, setup, task, teardown
from airflow.timetables.trigger import CronTriggerTimetable

from kbi import airflow_tasks as t
from kbi.settings import DELIVERIES_AT_ONCE


@dag(
    dag_id="kbi_distribution",
    description="Yearly encrypted list of inburgeraars per municipality (protocol AgII-gemeente)",
    # 15 January, 06:00 Brussels time. A trigger timetable without start_date: unpausing the DAG
    # (or deploying it in December) waits for the next 15 January instead of delivering at once
    # for the one just past, as a cron string with catchup=False would.
    schedule=CronTriggerTimetable("0 6 15 1 *", timezone="Europe/Brussels"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["kbi", "distribution"],
    default_args={
        "owner": "data-engineering",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    },
    params={
        "municipalities": Param(
            [],
            type="array",
            items={"type": "string", "pattern": "^[0-9]{5}$"},
            uniqueItems=True,
            title="Gemeenten / Municipalities",
            description="NIS-codes (5 cijfers); leeg = alle gemeenten met een protocol in werking. "
            "NIS codes (5 digits); empty = every municipality whose protocol is in force.",
        ),
        "reference_date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Peildatum / Reference date",
            description="Toestand van KBI op deze datum (JJJJ-MM-DD); leeg = logische datum van de run. "
            "State of KBI on this date (YYYY-MM-DD); empty = the run's logical date.",
        ),
        "accept_count_change": Param(
            [],
            type="array",
            items={"type": "string", "pattern": "^[0-9]{5}$"},
            uniqueItems=True,
            title="Aanvaarde grote wijzigingen / Accepted count changes",
            description="NIS-codes waarvan de lijst sterk mag afwijken van de vorige levering (na controle). "
            "NIS codes whose list may differ strongly from its last delivery (checked by a person).",
        ),
        "accept_extract_rows": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Aanvaard aantal rijen / Accepted extract size",
            description="Enkel na controle: zoveel rijen mag de KBI-view tellen in deze run, boven "
            "KBI_MAX_EXTRACT_ROWS. Only after checking: the KBI view may count this many rows in this "
            "run, above KBI_MAX_EXTRACT_ROWS.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Proefdraaien / Dry run",
            description="Alles behalve uploaden, verwittigen en registreren. "
            "Everything but upload, notify and record in the ledger.",
        ),
    },
)
def kbi_distribution():
    @setup
    @task
    def create_staging() -> str:
        return t.create_staging()

    @task(multiple_outputs=False)
    def plan() -> dict:
        return t.plan()

    @task(multiple_outputs=False)
    def extract(plan_: dict) -> dict:
        return t.extract(plan_)

    @task(multiple_outputs=False)
    def check_quality(plan_: dict, extracted: dict) -> dict:
        return t.check_quality(plan_, extracted)

    @task
    def partition(plan_: dict, checked: dict) -> list:
        return t.partition(plan_, checked)

    @task(
        map_index_template="{{ task.op_kwargs['item']['nis_code'] }} {{ task.op_kwargs['item']['name'] }}",
        max_active_tis_per_dagrun=DELIVERIES_AT_ONCE,  # why ten: kbi.settings
        multiple_outputs=False,
    )
    def deliver(item: dict) -> dict:
        return t.deliver(item)

    @task(trigger_rule="all_done", retries=0, multiple_outputs=False)
    def summarise(
        plan_: dict | None, checked: dict | None, selected: dict | None, results: list | None
    ) -> dict:
        return t.summarise(plan_, checked, selected, results)

    @teardown
    @task
    def remove_staging() -> bool:
        return t.remove_staging()

    staging = create_staging()
    planned = plan()
    extracted = extract(planned)
    checked = check_quality(planned, extracted)
    parts = partition(planned, checked)
    delivered = deliver.expand(item=parts)
    summary = summarise(planned, checked, parts, delivered)
    staging >> planned
    summary >> remove_staging().as_teardown(setups=staging)


kbi_distribution()
