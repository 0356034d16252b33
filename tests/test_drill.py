"""Rotation drills: `cauterize drill --sandbox --json`, the drill of a runbook's drill: section
(core, without Prefect), and the history with its regression flag."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from datetime import timedelta

import pytest

from cauterize import drill, response
from cauterize import incident as records
from cauterize.errors import InputError
from cauterize.providers.base import CONFIRM_WINDOWS_S
from cauterize.incident import Incident, KeyRecord, utcnow
from cauterize.runbook import load_runbook
from cauterize.sandbox.openai import new_key_value
from cauterize.sandbox.world import build_world
from cauterize.secret import Secret
from cauterize.stores.dotenv import DotenvStore

KEY_SHAPE = re.compile(rb"sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,}")


@pytest.mark.slow
def test_cauterize_drill_sandbox_json_reports_contain_and_recover(tmp_path):
    leaked = new_key_value()  # a canary of the real shape, made at run time
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OPENAI_"))}
    env["CAUTERIZE_SANDBOX_LEAKED_KEY"] = leaked
    done = subprocess.run(
        [sys.executable, "-c", "from cauterize.cli import entry; entry()", "drill", "--sandbox",
         "--workdir", str(tmp_path), "--json"],
        capture_output=True, text=True, env=env, timeout=240, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["ok"] is True and summary["exit_code"] == 0
    contain, recover = summary["time_to_contain_s"], summary["time_to_recover_s"]
    assert 0 < recover < contain < 60, "rotate-first: the new key is everywhere before the old one dies"
    assert {"intake", "rotate", "redeploy", "revoke"} <= set(summary["steps"])
    assert summary["verification"]["new_key"] == "live" and summary["verification"]["old_key"] == "dead"
    assert all(store["holds_new_key"] for store in summary["verification"]["stores"])
    assert summary["regression"]["regressed"] == []
    assert 0 <= summary["revoke_confirm_s"] < contain, "the drill tracks how long the revocation took to confirm"
    history = drill.read_history(tmp_path / "incidents")
    assert [entry["incident"] for entry in history] == [summary["incident"]]
    assert "Traceback" not in done.stderr
    for path in [*(tmp_path / "incidents").rglob("*"), *(tmp_path / ".prefect").rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert leaked.encode() not in data and not KEY_SHAPE.search(data), f"key-shaped string in {path}"


# -- the core, without Prefect --------------------------------------------------------------------


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setitem(CONFIRM_WINDOWS_S, "openai", 1.0)  # a failed confirmation gives up after 1 s
    built = build_world(tmp_path / "world")
    for name, value in built.env.items():
        monkeypatch.setenv(name, value)
    yield built
    built.close()


def _drill_by_hand(directory):
    for step in response.order_of(directory):
        try:
            response.run_step(step, directory)
        except Exception:
            pass
    return drill.finish(directory, drill.verify(directory))


@pytest.mark.slow
def test_a_drill_section_rotates_only_the_drill_stores_and_refuses_a_dead_key(world, tmp_path, monkeypatch):
    _, drill_key = world.emulator.add_user_key(
        next(iter(world.emulator.projects)), name="drill key")  # a key that exists for drills
    monkeypatch.setenv("DRILL_KEY", drill_key)
    (world.root / "drill").mkdir()
    (world.root / "drill" / ".env").write_text(f"OPENAI_API_KEY={drill_key}\n")
    with world.runbook.open("a") as handle:
        handle.write("drill: {key: env:DRILL_KEY, stores: [{type: dotenv, path: drill/.env, variable: OPENAI_API_KEY}]}\n")
    production = DotenvStore(world.root / "deploy/.env", "OPENAI_API_KEY").read()

    directory = drill.open_drill(world.runbook, incidents_dir=tmp_path / "incidents")
    incident = records.load(directory)
    assert incident.mode == "drill" and incident.order == "rotate-first" and incident.runbook == "sandbox-drill"
    assert {name: incident.steps[name].status for name in drill.NOT_DRILLED} == dict.fromkeys(drill.NOT_DRILLED, "skipped")
    derived = load_runbook(incident.runbook_path).runbook
    assert [store.path for store in derived.stores] == [str(world.root / "drill/.env")] and not derived.locate.git

    summary = _drill_by_hand(directory)
    assert summary["ok"], summary
    assert not world.emulator.is_live(drill_key) and world.emulator.is_live(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])
    assert DotenvStore(world.root / "deploy/.env", "OPENAI_API_KEY").read() == production, "production untouched"
    new = DotenvStore(world.root / "drill/.env", "OPENAI_API_KEY").read()
    assert new.fingerprint == summary["new_key"] and world.emulator.is_live(new.reveal())
    assert records.load(directory).metrics["time_to_recover_s"] == summary["time_to_recover_s"]
    assert (directory / drill.REPORT).read_text().startswith("# Rotation drill: sandbox-drill")

    with pytest.raises(InputError, match="drill key .* is dead"):  # DRILL_KEY still names the old key
        drill.open_drill(world.runbook, incidents_dir=tmp_path / "incidents")
    monkeypatch.setenv("DRILL_KEY", new.reveal())  # pointing drill.key at the drill store is the fix
    assert drill.open_drill(world.runbook, incidents_dir=tmp_path / "incidents") != directory


def test_a_runbook_without_a_drill_section_is_refused(tmp_path):
    path = tmp_path / "rb.yaml"
    path.write_text("version: 1\nname: prod\nkey: {provider: openai, source: env:K}\n")
    with pytest.raises(InputError, match="no drill: section"):
        drill.drill_runbook(load_runbook(path))


# -- history and regression -----------------------------------------------------------------------


def _finished_incident(root, contain: float, recover: float):
    """A drill incident whose step timestamps give these measures (no provider involved)."""
    start = utcnow()
    secret = Secret("sk-test-" + secrets.token_urlsafe(24))
    incident = Incident(id=f"drill-{secrets.token_hex(4)}", runbook="prod-drill", runbook_path=str(root / "rb.yaml"),
                        mode="drill", created_at=start, updated_at=start, provider="openai", order="rotate-first",
                        old_key=KeyRecord(fingerprint=secret.fingerprint, redacted=secret.redacted))
    for name, (began, ended) in {"intake": (0, 0.1), "rotate": (0.1, recover / 2), "redeploy": (recover / 2, recover),
                                 "revoke": (recover, contain)}.items():
        step = incident.steps[name]
        step.status, step.started_at, step.ended_at = "ok", start + timedelta(seconds=began), start + timedelta(seconds=ended)
    for name in ("locate", "purge", "evidence", "report"):
        incident.steps[name].status = "skipped"
    incident.revoked_at = start + timedelta(seconds=contain)
    return records.IncidentStore(root).create(incident)


def test_history_is_kept_beside_the_incidents_and_a_slow_drill_is_flagged(tmp_path):
    verified = {"ok": True, "stores": [], "new_key": "live", "old_key": "dead"}
    first = drill.finish(_finished_incident(tmp_path, 2.0, 1.0), verified)
    assert first["regression"]["regressed"] == [] and "at least 3" in first["regression"]["note"]
    for _ in range(4):
        drill.finish(_finished_incident(tmp_path, 2.2, 1.1), verified)
    assert drill.finish(_finished_incident(tmp_path, 2.4, 1.2), verified)["regression"]["regressed"] == []
    slow = drill.finish(_finished_incident(tmp_path, 5.0, 1.3), verified)
    assert slow["regression"]["regressed"] == ["time_to_contain_s"]
    assert slow["regression"]["medians"]["time_to_contain_s"] == pytest.approx(2.2)
    history = drill.read_history(tmp_path, "prod-drill")
    assert len(history) == 7 and history[-1]["time_to_contain_s"] == pytest.approx(5.0)
    assert oct((tmp_path / drill.HISTORY).stat().st_mode & 0o777) == "0o600"
    report = (tmp_path / slow["incident"].split("/")[-1] / drill.REPORT).read_text()
    assert "Regression: time_to_contain_s" in report and report.count("| yes |") == 7


def test_regression_ignores_failed_drills_and_sub_second_noise():
    good = [{"ok": True, "time_to_contain_s": 0.2, "time_to_recover_s": 0.1}] * 5
    failed = [{"ok": False, "time_to_contain_s": 60.0, "time_to_recover_s": 60.0}] * 5
    assert drill.regression({"time_to_contain_s": 0.5, "time_to_recover_s": 0.1}, good)["regressed"] == []
    flagged = drill.regression({"time_to_contain_s": 0.8, "time_to_recover_s": 0.1}, good + failed)
    assert flagged["regressed"] == ["time_to_contain_s"] and flagged["baseline_drills"] == 5
