"""Prefect tasks of the rotation drill: thin bindings of ``cauterize.drill``.

Parameters and results are paths, fingerprints and seconds: never a key value. The drill report is
published as a Markdown artifact (``drill-<runbook>``), rendered from the record and the history.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from cauterize import drill
from cauterize import incident as records
from cauterize.errors import InputError


@task(name="open-drill", cache_policy=NO_CACHE, persist_result=False)
def open_drill(runbook: str, sandbox: bool, incidents_dir: str | None) -> str:
    return str(drill.open_drill(runbook, sandbox=sandbox, incidents_dir=incidents_dir))


@task(name="verify-drill", cache_policy=NO_CACHE, persist_result=False)
def verify_drill(incident_dir: str) -> dict:
    """Every store holds the new key, the new key answers, the old one does not."""
    return drill.verify(incident_dir)


@task(name="record-drill", cache_policy=NO_CACHE, persist_result=False)
def record_drill(incident_dir: str, verification: dict) -> dict:
    """Measures, history line, regression flag, ``drill.md`` and its artifact."""
    summary = drill.finish(incident_dir, verification)
    create_markdown_artifact(
        markdown=records.read_private(Path(incident_dir) / drill.REPORT).decode("utf-8"),
        key=artifact_key("drill", summary["runbook"]),
        description=f"Rotation drill {Path(incident_dir).name}",
    )
    return summary


def artifact_key(prefix: str, name: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return f"{prefix}-{name}".replace("_", "-").replace(".", "-").lower()


@contextmanager
def drill_target(runbook: str | None, sandbox: bool, workdir: str | None,
                 incidents_dir: str | None) -> Iterator[tuple[str, bool, str | None]]:
    """What the drill runs on: ``(runbook path, sandbox?, incidents dir)``. For ``sandbox``, a
    throwaway world is built under ``workdir`` (default: a new temp dir) for the duration, and
    its drills are kept in ``workdir/incidents`` unless ``incidents_dir`` says otherwise."""
    if sandbox == (runbook is not None):
        raise InputError("give either a runbook with a drill: section or sandbox=True")
    if runbook is not None:
        yield runbook, False, incidents_dir
        return
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="cauterize-drill-"))
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with drill.sandbox_world(root) as world_runbook:
        yield str(world_runbook), True, incidents_dir or str(root / "incidents")
