"""
### kbi_correction_request: a municipality's error report, handled within two weeks (P9)

Started by a quality officer from the trigger form below, or by the agency's web form through the
REST API (README, "Correction requests"). The municipality reported wrong, inaccurate,
incomplete, missing, outdated or superfluous data.

1. `register`: checks the request (a known Flemish municipality with a protocol in force, a date
   not in the future, a reference, no national number in the text), records it in the ledger with
   its due date (reported on + 14 days) and acknowledges it to the municipality by e-mail.
2. `decide`: **the quality officer's decision** (Required actions / human in the loop):
   *gecorrigeerd in KBI, opnieuw leveren* · *geen fout gevonden* (with a reason) ·
   *meer tijd nodig* (with a new date, still measured against the 14 days).
3. `redeliver`: the municipality's list is extracted and checked again on its own, delivered in
   full as `…_correctie_<reference>.csv.gpg` through the yearly run's delivery path, compared with
   the previous list by counts (rows added, removed, changed); a previous file still waiting on
   the server is removed. Or `close_no_error`: the municipality is told why nothing changes.

The daily `kbi_pickup_monitor` reminds the quality officers on day 10 and escalates on day 14.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Param, dag, task

from kbi import airflow_tasks as t

CORRECTED = "gecorrigeerd in KBI, opnieuw leveren"
NO_ERROR = "geen fout gevonden"
MORE_TIME = "meer tijd nodig"

# Jinja, rendered by Airflow when the decision is asked (the option names are joined in as text).
DECISION_BODY = (
    """{% set r = ti.xcom_pull(task_ids='register') %}
**Melding / report** `{{ params.reference }}` van/of **{{ r['municipality'] }}** ({{ params.nis_code }}),
gemeld op/reported on {{ params.reported_on }} door/by {{ params.reporter }}.

**Uiterlijk af te handelen op / due on: {{ r['due_on'] }}** ({{ r['days_left'] }} dagen/days left).

> {{ params.description }}

Laatste levering / last delivery: `{{ r['last_file'] }}` ({{ r['last_rows'] }} rijen/rows,
{{ r['last_published'] }}).

"""
    f"- *{CORRECTED}*: de gegevens zijn in KBI verbeterd; de volledige lijst wordt opnieuw bezorgd.\n"
    f"- *{NO_ERROR}*: vul de **reden** in; de gemeente krijgt ze per e-mail (geen persoonsgegevens).\n"
    f"- *{MORE_TIME}*: vul een **nieuwe datum** in; de gemeente wordt verwittigd.\n"
)

DECISION_PARAMS = {
    "reden": Param(
        "",
        type="string",
        maxLength=1000,
        title="Reden / Reason",
        description="Verplicht bij 'geen fout gevonden'; gaat naar de gemeente. Geen persoonsgegevens. "
        "Required for 'geen fout gevonden'; sent to the municipality. No personal data.",
    ),
    "nieuwe_datum": Param(
        None,
        type=["null", "string"],
        format="date",
        title="Nieuwe datum / New date",
        description="Bij 'meer tijd nodig' / with 'meer tijd nodig' (JJJJ-MM-DD).",
    ),
}


@dag(
    dag_id="kbi_correction_request",
    description="A municipality's error report, handled within two weeks (protocol art. 7)",
    schedule=None,
    catchup=False,
    doc_md=__doc__,
    tags=["kbi", "corrections"],
    default_args={"owner": "quality", "retries": 2, "retry_delay": timedelta(minutes=1)},
    params={
        "nis_code": Param(
            type="string",
            pattern="^[0-9]{5}$",
            title="NIS-code gemeente / Municipality NIS code",
            description="De gemeente die de fout meldt (5 cijfers). The reporting municipality (5 digits).",
        ),
        "reported_on": Param(
            type="string",
            format="date",
            title="Gemeld op / Reported on",
            description="Datum van de melding (JJJJ-MM-DD); de termijn van 14 dagen loopt vanaf dan. "
            "Date of the report (YYYY-MM-DD); the 14 days run from then.",
        ),
        "reference": Param(
            type="string",
            pattern="^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$",
            title="Referentie / Reference",
            description="Het nummer van de melding (letters, cijfers, - en _); komt in de bestandsnaam. "
            "The report's id (letters, digits, - and _); becomes part of the file name.",
        ),
        "description": Param(
            type="string",
            minLength=1,
            maxLength=2000,
            title="Omschrijving / Description",
            description="Wat is er fout? Zonder rijksregisternummers of namen. "
            "What is wrong? Without national numbers or names.",
        ),
        "reporter": Param(
            type="string",
            minLength=1,
            maxLength=200,
            title="Gemeld door / Reported by",
            description="Dienst of functie bij de gemeente. Department or role at the municipality.",
        ),
    },
)
def kbi_correction_request():
    @task(multiple_outputs=False)
    def register() -> dict:
        return t.register_correction()

    # The officer's answer (option, reason, new date, who) is the HITL task's XCom; a branch task
    # after it routes the run (a HITL branch operator would keep only the route).
    decide = HITLOperator(
        task_id="decide",
        subject="Correctiemelding {{ params.reference }} ({{ params.nis_code }}): beslissing / decision",
        body=DECISION_BODY,
        options=[CORRECTED, NO_ERROR, MORE_TIME],
        params=DECISION_PARAMS,
    )

    @task.branch
    def route(answer: dict) -> str:
        return {CORRECTED: "corrected", NO_ERROR: "no_error", MORE_TIME: "extend"}[
            answer["chosen_options"][0]
        ]

    @task(multiple_outputs=False)
    def extend() -> dict:
        return t.extend_correction()

    decide_again = HITLOperator(
        task_id="decide_again",
        subject="Correctiemelding {{ params.reference }} ({{ params.nis_code }}): eindbeslissing / final",
        body=DECISION_BODY,
        options=[CORRECTED, NO_ERROR],
        params=DECISION_PARAMS,
    )

    @task.branch
    def route_again(answer: dict) -> str:
        return {CORRECTED: "corrected_later", NO_ERROR: "no_error_later"}[answer["chosen_options"][0]]

    # A branch skips the paths it did not choose at once; the empty tasks in between keep a later
    # decision (after "meer tijd nodig") able to start the delivery or the closing.
    corrected, corrected_later = EmptyOperator(task_id="corrected"), EmptyOperator(task_id="corrected_later")
    no_error, no_error_later = EmptyOperator(task_id="no_error"), EmptyOperator(task_id="no_error_later")

    # The decisions are read from XCom inside: passing decide.output would make these direct
    # downstream tasks of the branch, which would skip them at once when it chose "meer tijd".
    @task(trigger_rule="none_failed_min_one_success", multiple_outputs=False)
    def redeliver() -> dict:
        return t.redeliver_correction()

    @task(trigger_rule="none_failed_min_one_success", multiple_outputs=False)
    def close_no_error() -> dict:
        return t.close_correction()

    registered = register()
    registered >> decide
    routed = route(decide.output)
    extended = extend()
    routed >> [corrected, no_error, extended]
    extended >> decide_again
    route_again(decide_again.output) >> [corrected_later, no_error_later]
    delivered = redeliver()
    closed = close_no_error()
    [corrected, corrected_later] >> delivered
    [no_error, no_error_later] >> closed


kbi_correction_request()
