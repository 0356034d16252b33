"""Prefect tasks that tell people: the post-mortem re-rendered, notifications, notes in the record.

Bindings of ``cauterize.report``, ``cauterize.notify`` and ``cauterize.incident``; parameters are
paths and public text, never a key value.
"""

from __future__ import annotations

import json
from pathlib import Path

from cauterize.tasks.steps import publish_report
from prefect import task
from prefect.cache_policies import NO_CACHE

from cauterize import drill, notify
from cauterize import incident as records
from cauterize.report import write_reports


@task(name="render-report", cache_policy=NO_CACHE, persist_result=False)
def render_report(incident_dir: str) -> dict:
    """Re-render the post-mortem (and a drill's report) from the record; publish the artifact."""
    directory = Path(incident_dir)
    incident = records.load(directory)
    paths = write_reports(incident, directory)
    if incident.report != paths:
        records.acquire_lock(directory)  # refuses while another responder handles the incident
        incident = records.load(directory)
        incident.report = paths
        records.save(incident, directory)
    publish_report(incident_dir)
    written = dict(paths)
    result = directory / drill.RESULT
    if incident.mode == "drill" and result.is_file():
        summary = json.loads(records.read_private(result))
        previous = [e for e in drill.read_history(directory.parent, incident.runbook) if str(e.get("at", "")) < summary["at"]]
        records.write_private(directory / drill.REPORT, drill.render_markdown(summary, previous), what="the drill report")
        written["drill"] = str(directory / drill.REPORT)
    return {"incident": incident_dir, "report": written}


@task(name="announce", task_run_name="announce-{event}", cache_policy=NO_CACHE, persist_result=False)
def announce(incident_dir: str, event: str) -> bool:
    """Post the runbook's notification for ``start``, ``manual`` or ``end`` (False: none sent)."""
    return notify.announce(incident_dir, event)  # type: ignore[arg-type]


@task(name="note", cache_policy=NO_CACHE, persist_result=False)
def note(incident_dir: str, step: str, message: str, action: bool = False) -> None:
    """Add an event to the incident record (what a person did or did not do); ``action``: also an
    action item for the post-mortem."""
    directory = Path(incident_dir)
    incident = records.load(directory)
    incident.log(step, message)
    if action:
        incident.add_action(step, message)
    records.save(incident, directory)
