"""Prefect tasks: thin bindings of ``cauterize.response``.

Every task passes the incident directory (a path) and returns the step's public summary: no key
value is a parameter or a result. Secret-bearing work happens inside the core step, so the tasks
use no cache and no result persistence. A step's task run ends in its step's state (``states.py``).
"""

from __future__ import annotations

from cauterize.tasks.states import step_state, waiting_state
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from cauterize import incident as records
from cauterize import response
from cauterize.errors import CauterizeError, ManualStepRequired


def _retry_when_retryable(task, task_run, state) -> bool:
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, CauterizeError) and exc.retryable


@task(name="open-incident", cache_policy=NO_CACHE, persist_result=False)
def open_incident(runbook: str, mode: str, dry_run: bool, incidents_dir: str | None) -> tuple[str, bool]:
    """The incident directory, and whether the key was already contained (nothing left to do)."""
    try:
        return str(response.open_incident(runbook, mode=mode, dry_run=dry_run, incidents_dir=incidents_dir)), False
    except records.AlreadyContained as done:
        return str(done.incident_dir), True


@task(
    name="response-step",
    task_run_name="{step}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_retry_when_retryable,
)
def response_step(step: str, incident_dir: str, results: list[dict] | None = None,
                  push_approved: bool | None = None):
    inputs: dict = {"results": results} if results is not None else {}
    if push_approved is not None:
        inputs["push_approved"] = push_approved
    try:
        summary = response.run_step(step, incident_dir, **inputs)
    except ManualStepRequired as exc:
        return waiting_state(step, exc.message)
    if step == "report" and summary["status"] == "ok":
        publish_report(incident_dir)
    return step_state(summary)


@task(name="verify-outcome", cache_policy=NO_CACHE, persist_result=False)
def verify_outcome(incident_dir: str) -> list[str]:
    """Ask the world (provider, stores) whether the record is true; the steps it contradicts, to run again."""
    return response.verify_outcome(incident_dir)


@task(name="locate-sources", cache_policy=NO_CACHE, persist_result=False)
def locate_sources(incident_dir: str) -> list[dict]:
    return response.locate_sources(incident_dir)


@task(name="scan-source", task_run_name="scan-{source[kind]}", cache_policy=NO_CACHE, persist_result=False)
def scan_source(incident_dir: str, source: dict) -> dict:
    """One source's findings: locations and fingerprints only, never the key."""
    return response.scan_source(incident_dir, source)


def publish_report(incident_dir: str) -> None:
    """The post-mortem as a Prefect Markdown artifact (rendered from the record, so key-free)."""
    incident = records.load(incident_dir)
    path = incident.report.get("md")
    if path:
        create_markdown_artifact(
            markdown=records.read_private(path).decode("utf-8"),  # never through a link planted there
            key=f"postmortem-{incident.runbook}".replace("_", "-").replace(".", "-").lower(),
            description=f"Post-mortem of incident {incident.id}",
        )
