"""The postmortem flow: re-render an incident's post-mortem from its record (after editing action
items, or with newer templates), and publish it as an artifact again."""

from __future__ import annotations

from cauterize.tasks.report import render_report
from prefect import flow

from cauterize.logs import install_filter


@flow(name="postmortem", flow_run_name="postmortem", persist_result=False, log_prints=False)
def postmortem(incident_dir: str) -> dict:
    """Render ``postmortem.md`` and ``postmortem.html`` (and a drill's ``drill.md``) again."""
    install_filter("prefect", "cauterize")
    return render_report(incident_dir)
