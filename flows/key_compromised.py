"""The key-compromised flow: the response steps in the runbook's order (DESIGN.md section 2).

It only orchestrates: each step is a task bound to the core, a failed step is recorded and the
steps that do not need it still run; the record decides the outcome.
"""

from __future__ import annotations

from cauterize.tasks.steps import open_incident, response_step
from prefect import flow

from cauterize import incident as records
from cauterize import response
from cauterize.logs import install_filter


@flow(name="key-compromised", flow_run_name="key-compromised-{mode}", persist_result=False, log_prints=False)
def key_compromised(
    runbook: str,
    dry_run: bool = False,
    mode: str = "respond",
    incidents_dir: str | None = None,
) -> dict:
    """Respond to a leaked key. Parameters are a runbook path and switches: never a key value."""
    install_filter("prefect", "cauterize")
    incident_dir = open_incident(runbook, mode, dry_run, incidents_dir)
    for step in response.order_of(incident_dir):
        response_step(step, incident_dir, return_state=True)
    incident = records.load(incident_dir)
    return {
        "incident": incident_dir,
        "steps": {name: incident.steps[name].status for name in records.STEPS},
        "exit_code": incident.exit_code(),
    }
