"""The CLI as a user runs it: a child process, exit codes, one-line errors, JSON on stdout."""

import json
import os
import subprocess
import sys

import pytest

from cauterize.sandbox.world import build_world


def _cauterize(*args, env=None, timeout=300, stdin=None):
    return subprocess.run(
        [sys.executable, "-c", "from cauterize.cli import entry; entry()", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout, input=stdin,
    )


@pytest.mark.slow
def test_respond_dry_run_then_for_real(tmp_path):
    world = build_world(tmp_path / "w")
    env = {**world.env, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": ""}
    try:
        dry = _cauterize("respond", str(world.runbook), "--dry-run", "--json", env=env)
        assert dry.returncode == 0, dry.stderr[-2000:]
        record = json.loads(dry.stdout)
        assert record["dry_run"] and record["steps"]["revoke"]["status"] == "skipped"
        assert world.emulator.is_live(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])

        real = _cauterize("respond", str(world.runbook), "--yes", "--json", env=env)
        assert real.returncode == 0, real.stderr[-2000:]
        record = json.loads(real.stdout)
        assert not record["dry_run"] and all(s["status"] == "ok" for s in record["steps"].values())
        assert not world.emulator.is_live(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])
    finally:
        world.close()


def test_respond_refuses_without_yes_when_not_on_a_terminal(tmp_path, make_key):
    runbook = tmp_path / "rb.yaml"
    runbook.write_text("version: 1\nname: t\nkey: {provider: openai, source: env:T_LEAK}\n")
    done = _cauterize("respond", str(runbook), env={"T_LEAK": make_key()}, stdin="")
    assert done.returncode == 2 and "--yes" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["respond", "/nonexistent/rb.yaml", "--yes"], "no such file"),
        (["locate", "--git", "."], "exactly one of --key-env"),
        (["report", "/nonexistent"], "no incident.json"),
        (["no-such-command"], "No such command"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, words):
    done = _cauterize(*args)
    assert done.returncode == 2, done.stderr
    assert words in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 3


def test_unset_key_variable_names_it(tmp_path):
    runbook = tmp_path / "rb.yaml"
    runbook.write_text("version: 1\nname: t\nkey: {provider: openai, source: env:T_UNSET_KEY}\n")
    done = _cauterize("respond", str(runbook), "--yes", env={"T_UNSET_KEY": ""})
    assert done.returncode == 2 and "T_UNSET_KEY" in done.stderr


def test_runbook_schema_prints_json():
    done = _cauterize("runbook", "schema")
    assert done.returncode == 0 and json.loads(done.stdout)["title"] == "cauterize runbook"


def test_locate_json_never_prints_the_key(tmp_path, make_key):
    key = make_key()
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "settings.py").write_text(f"KEY = '{key}'\n")
    done = _cauterize("locate", "--key-env", "T_KEY", "--path", str(tmp_path / "tree"), "--json", env={"T_KEY": key})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["findings"][0]["path"].endswith("settings.py") and result["findings"][0]["encoding"] == "raw"
    assert key not in done.stdout + done.stderr
