"""One key, one incident, through the CLI as a user runs it (real processes against the sandbox world):
a missing credential is exit 2 with nothing changed; a store outage is exit 3 and the rerun completes
the same incident; a second respond after success changes nothing; two responders at once open one."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from cauterize import incident as records
from cauterize.sandbox.world import build_world

pytestmark = pytest.mark.slow


def _env(world, tmp_path, **extra):
    env = {**os.environ, **world.env, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": "", **extra}
    return {name: value for name, value in env.items() if value is not None}


def _respond(world, tmp_path, *args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-c", "from cauterize.cli import entry; entry()", "respond", str(world.runbook), "--yes",
         "--json", *args],
        capture_output=True, text=True, env=env or _env(world, tmp_path), timeout=timeout, stdin=subprocess.DEVNULL,
    )


def _incidents(world):
    root = world.root / "incidents"
    return sorted(p for p in root.iterdir() if (p / records.RECORD_NAME).is_file()) if root.is_dir() else []


def _changes(world):
    return [c for c in world.emulator.requests if c.method in ("POST", "DELETE")]


@pytest.fixture
def world(tmp_path):
    built = build_world(tmp_path / "w")
    yield built
    built.close()


def test_without_the_admin_key_nothing_changes_and_the_rerun_is_one_incident(world, tmp_path):
    env = _env(world, tmp_path)
    env.pop("OPENAI_ADMIN_KEY", None)
    done = _respond(world, tmp_path, env=env)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "OPENAI_ADMIN_KEY" in done.stderr and "containment cannot run" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not _changes(world) and not _incidents(world), "nothing changed, no incident opened"
    assert world.emulator.is_live(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])

    again = _respond(world, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(_incidents(world)) == 1
    assert not world.emulator.is_live(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])
    assert "preflight: can run" in again.stderr


def test_a_second_respond_after_success_changes_nothing(world, tmp_path):
    first = _respond(world, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    incident = json.loads(first.stdout)["id"]
    before = len(_changes(world))
    second = _respond(world, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "already contained" in second.stderr and incident in second.stderr
    assert json.loads(second.stdout)["id"] == incident
    assert len(_changes(world)) == before, "no revoke, no mint, no write"
    assert [p.name for p in _incidents(world)] == [incident]


def test_a_store_outage_is_exit_3_and_the_rerun_completes_the_same_incident(world, tmp_path):
    worker = world.root / "worker/.env"
    saved = worker.read_text()
    worker.unlink()
    worker.mkdir()  # the second store cannot be written: its step fails, containment does not wait for it
    first = _respond(world, tmp_path)
    assert first.returncode == 3, first.stderr[-3000:]
    record = json.loads(first.stdout)
    assert record["steps"]["revoke"]["status"] == "ok" and record["steps"]["redeploy"]["status"] == "failed"
    assert not world.emulator.is_live(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])
    worker.rmdir()
    worker.write_text(saved)
    second = _respond(world, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads(second.stdout)
    assert again["id"] == record["id"], "the rerun completed the same incident"
    assert [p.name for p in _incidents(world)] == [record["id"]]
    assert again["verification"]["recovered"] is True


def test_two_responders_at_once_open_one_incident(world, tmp_path):
    env = _env(world, tmp_path)
    args = [sys.executable, "-c", "from cauterize.cli import entry; entry()", "respond", str(world.runbook), "--yes"]
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL) for _ in range(2)]
    started = time.monotonic()
    results = [(p, *p.communicate(timeout=300)) for p in procs]
    codes = sorted(p.returncode for p, _, _ in results)
    assert codes == [0, 0], [err[-2000:] for _, _, err in results]
    waited = [err for _, _, err in results if "being handled by process" in err]
    assert len(waited) == 1, "the second responder named the run in progress and changed nothing"
    assert len(_incidents(world)) == 1
    assert time.monotonic() - started < 240
    assert not world.emulator.is_live(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])
    deletes = [c for c in world.emulator.requests if c.method == "DELETE"]
    assert len(deletes) == 1, "one revocation"
    shutil.rmtree(tmp_path / "prefect", ignore_errors=True)


def test_a_key_source_that_now_reads_the_replacement_is_never_taken_for_the_leak(world, tmp_path):
    """The runbook reads the leaked key from the store the response rewrites (deploy/.env): after the
    response that source holds the replacement. A rerun (or a replayed alert) must not revoke it."""
    text = world.runbook.read_text().replace("source: env:CAUTERIZE_SANDBOX_LEAKED_KEY", "source: file:deploy/.env")
    world.runbook.write_text(text)
    first = _respond(world, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    record = json.loads(first.stdout)
    assert record["findings"] and record["steps"]["purge"]["status"] == "ok", \
        "locate searched for the leaked key, not for the replacement its source holds after the rotation"
    assert "this run uses the leaked key" in first.stderr
    new = (world.root / "deploy/.env").read_text()
    before = len(_changes(world))
    second = _respond(world, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "now holds the replacement" in second.stderr and record["id"] in second.stderr
    assert len(_changes(world)) == before and (world.root / "deploy/.env").read_text() == new
    stored = next(line for line in new.splitlines() if line.startswith("OPENAI_API_KEY="))
    assert world.emulator.is_live(stored.split("=", 1)[1].strip().strip('"').strip("'")), "the replacement lives"
