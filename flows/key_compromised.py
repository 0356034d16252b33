"""The key-compromised flow: the response steps in the runbook's order (DESIGN.md section 2).

It only orchestrates: each step is a task bound to the core, a failed step is recorded and the
steps that do not need it still run; the record decides the outcome, and the run's state says it
(Failed, naming the steps not done, when the response is incomplete: ``tasks/states.py``).
"""

from __future__ import annotations

from cauterize.flows.key_compromised_pause import PAUSE_TIMEOUT_S, settle
from cauterize.tasks.report import announce
from cauterize.tasks.states import run_state, show_run_url
from cauterize.tasks.steps import locate_sources, open_incident, response_step, scan_source, verify_outcome
from prefect import flow, unmapped

from cauterize import incident as records
from cauterize import interrupts, response
from cauterize.logs import install_filter


@flow(name="key-compromised", flow_run_name="key-compromised-{mode}", persist_result=False, log_prints=False)
def key_compromised(
    runbook: str,
    dry_run: bool = False,
    mode: str = "respond",
    incidents_dir: str | None = None,
    pause_timeout_s: int = PAUSE_TIMEOUT_S,
) -> dict:
    """Respond to a leaked key. Parameters are a runbook path and switches: never a key value."""
    install_filter("prefect", "cauterize")
    interrupts.reclaim()  # SIGTERM stops the response as SIGINT does (Prefect took it for the run)
    show_run_url()
    incident_dir, contained = open_incident(runbook, mode, dry_run, incidents_dir)
    if contained:  # a replayed alert, a rerun: the key's incident is complete and the world agrees
        return run_state(incident_dir, _result(incident_dir))
    announce(incident_dir, "start")
    for step in response.order_of(incident_dir):
        if step == "report":
            # Verified at the end, whatever the record says: steps the world contradicts run again.
            for again in verify_outcome(incident_dir):
                response_step(again, incident_dir, return_state=True)
        if step == "locate" and response.needs_run("locate", incident_dir):
            # Sources are searched concurrently (the task runner's limit: the runbook's
            # locate.concurrency, or a Dask cluster); only the step that records them writes.
            futures = scan_source.map(unmapped(incident_dir), locate_sources(incident_dir))
            response_step(step, incident_dir, [future.result() for future in futures], return_state=True)
            continue
        response_step(step, incident_dir, return_state=True)
    # People last: containment and cleanup never wait for a pause form (new key, push approval).
    settle(incident_dir, timeout_s=pause_timeout_s)
    announce(incident_dir, "end")
    return run_state(incident_dir, _result(incident_dir))


def _result(incident_dir: str) -> dict:
    incident = records.load(incident_dir)
    return {
        "incident": incident_dir,
        "steps": {name: incident.steps[name].status for name in records.STEPS},
        "exit_code": incident.exit_code(),
    }
