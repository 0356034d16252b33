"""The rotation-drill flow: the rotate-first path on a drill key (or the sandbox), measured.

It only orchestrates: open the drill incident (a derived runbook: the drill key and stores,
rotate-first, nothing to locate or purge), run the response steps in order (a person hands over the
key through a pause form where the provider cannot mint), verify the new key everywhere, then
record the measures, the history line and the regression flag (``cauterize.drill``). The run ends
Failed, naming the steps not done, when the drill is incomplete (``tasks/states.py``).
"""

from __future__ import annotations

from cauterize.flows.key_compromised_pause import PAUSE_TIMEOUT_S, hand_over_key
from cauterize.tasks.drill import drill_target, open_drill, record_drill, verify_drill
from cauterize.tasks.report import announce
from cauterize.tasks.states import run_state, show_run_url
from cauterize.tasks.steps import response_step
from prefect import flow

from cauterize import interrupts, response
from cauterize.logs import install_filter


@flow(name="rotation-drill", flow_run_name="rotation-drill", persist_result=False, log_prints=False)
def rotation_drill(
    runbook: str | None = None,
    sandbox: bool = False,
    incidents_dir: str | None = None,
    workdir: str | None = None,
    pause_timeout_s: int = PAUSE_TIMEOUT_S,
) -> dict:
    """Drill a runbook's ``drill:`` key, or (``sandbox``) a throwaway world built under ``workdir``.
    Parameters are paths and switches: never a key value. Returns the drill summary (seconds,
    verification, regression flag, exit code)."""
    install_filter("prefect", "cauterize")
    interrupts.reclaim()  # SIGTERM stops the drill as SIGINT does (Prefect took it for the run)
    show_run_url()
    with drill_target(runbook, sandbox, workdir, incidents_dir) as (path, is_sandbox, incidents):
        incident_dir = open_drill(path, is_sandbox, incidents)
        announce(incident_dir, "start")
        for step in response.order_of(incident_dir):
            response_step(step, incident_dir, return_state=True)
            if step == "rotate":
                hand_over_key(incident_dir, timeout_s=pause_timeout_s)
        verification = verify_drill(incident_dir)
        summary = record_drill(incident_dir, verification)
        announce(incident_dir, "end")
    return run_state(incident_dir, summary, summary["exit_code"])
