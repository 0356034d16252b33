"""What the Prefect UI shows: each step's task run and the flow run carry the record's verdict.

    step      task run state                      why
    ok        Completed                           done
    skipped   Completed, named Skipped            not needed (policy, dry run): nothing is missing
    blocked   Cancelled, named Blocked            not run: the step it needs (named) did not succeed;
                                                  the red one is that step, not this one
    waiting   Failed, named Waiting               a person must act (the message says what); the
                                                  response is incomplete until then
    failed    Failed (the step's error)           raised by the step, retried when retryable
    interrupted  Crashed (Prefect's own)          SIGINT/SIGTERM unwound the run

The flow run ends Completed only when the response is complete (exit code 0); otherwise Failed, with
a message naming the steps not done, and the same result (the caller reads it with ``result_of``).
"""

from __future__ import annotations

from typing import Any

from prefect.states import Cancelled, Completed, Failed, State

from cauterize import incident as records
from cauterize.logs import LOGGER


def step_state(summary: dict) -> dict | State:
    """The task run's final state for a step's public summary (``response.run_step``)."""
    text = summary.get("summary") or ""
    if summary["status"] == "skipped":
        return Completed(name="Skipped", message=text, data=summary)
    if summary["status"] == "blocked":
        return Cancelled(name="Blocked", message=text, data=summary)
    return summary


def waiting_state(step: str, message: str) -> State:
    return Failed(name="Waiting", message=f"{step} waits for a person: {message}",
                  data={"step": step, "status": "waiting", "summary": message})


def run_state(incident_dir: str, result: dict, exit_code: int | None = None) -> dict | State:
    """The flow run's final state: ``result`` itself when the response is complete, else Failed
    carrying ``result``, its message naming what is not done."""
    incident = records.load(incident_dir)
    code = incident.exit_code() if exit_code is None else exit_code
    if code == 0:
        return result
    return Failed(message=not_done(incident, code), data=result)


def not_done(incident: records.Incident, code: int) -> str:
    """``incomplete (exit 3): rotate failed, redeploy blocked`` and the like."""
    steps = [f"{name} {record.status}" for name, record in incident.steps.items()
             if record.status not in records.DONE]
    if code == 4:
        what = "the old key still answers after revocation"
        steps = [s for s in steps if not s.startswith("revoke ")]
        return f"{what} (exit 4)" + (f"; not done: {', '.join(steps)}" if steps else "")
    if not steps:
        return f"incomplete (exit {code}): the end verification could not confirm the outcome (see the record)"
    return f"incomplete (exit {code}): {', '.join(steps)}"


def result_of(state: State) -> Any:
    """What a flow run returned, Completed or Failed; the exception it raised is raised here."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    return result


def show_run_url() -> str | None:
    """Say where the flow run is in the Prefect UI (on the progress log: stderr in the CLI), when a
    server (``PREFECT_API_URL``) is in use; the URL, or None on the ephemeral server."""
    from prefect.context import FlowRunContext
    from prefect.settings import get_current_settings
    from prefect.utilities.urls import url_for

    context = FlowRunContext.get()
    if context is None or context.flow_run is None or not get_current_settings().api.url:
        return None
    url = url_for(context.flow_run)
    if url:
        LOGGER.info("flow run %s: %s", context.flow_run.name, url)
    return url
