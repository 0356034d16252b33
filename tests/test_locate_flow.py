"""The flow maps locate over the runbook's sources: threads by default, a local Dask cluster on request."""

import json
import os
import subprocess
import sys

import pytest

from cauterize import incident as records
from cauterize import response
from cauterize.sandbox.world import build_world

pytestmark = pytest.mark.slow


def _respond(world, tmp_path, **extra_env):
    env = {**os.environ, **world.env, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": "", **extra_env}
    return subprocess.run(
        [sys.executable, "-c", "from cauterize.cli import entry; entry()", "respond", str(world.runbook), "--yes", "--json"],
        capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def world(tmp_path):
    built = build_world(tmp_path / "w")
    text = built.runbook.read_text().replace("  git: [app]", "  git: [app, remote.git]\n  concurrency: 2")
    built.runbook.write_text(text)
    yield built
    built.close()


@pytest.mark.parametrize("runner", ["threads", "dask"])
def test_locate_is_mapped_over_every_source(world, tmp_path, runner):
    done = _respond(world, tmp_path, CAUTERIZE_TASK_RUNNER=runner)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)
    repos = {finding["repo"] for finding in record["findings"]}
    assert repos == {str(world.clone), str(world.remote)}
    assert record["steps"]["locate"]["details"]["sources"] == [f"git {world.clone}", f"git {world.remote}"]


def test_a_source_that_cannot_be_read_fails_locate_but_keeps_the_others(world, monkeypatch):
    for name, value in world.env.items():
        monkeypatch.setenv(name, value)
    world.runbook.write_text(world.runbook.read_text().replace("[app, remote.git]", "[app, missing-repo]"))
    directory = response.open_incident(world.runbook)
    for step in ("intake", "revoke", "rotate", "redeploy"):
        response.run_step(step, directory)
    with pytest.raises(Exception, match="could not be searched"):
        response.run_step("locate", directory)
    incident = records.load(directory)
    assert incident.steps["locate"].status == "failed" and "missing-repo" in incident.steps["locate"].error
    assert incident.findings and all(f["repo"] == str(world.clone) for f in incident.findings)
