"""Revocation confirmed over a window sized to the provider's propagation (providers/base.py
``confirm_liveness``), and through the CLI as the on-call engineer runs it: exit 0 when the key dies
within the window, exit 4 only after the whole window, exit 3 when nobody could say."""

import json
import os
import subprocess
import sys
import time

import pytest

from cauterize.providers.base import (
    CONFIRM_WINDOWS_S,
    Liveness,
    Verdict,
    confirm_liveness,
    confirm_window,
)
from cauterize.sandbox.openai import OpenAIEmulator
from cauterize.sandbox.server import serve


class FakeTime:
    """A clock that moves only when slept on."""

    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _answers(*verdicts):
    sequence = list(verdicts)
    return lambda: sequence.pop(0) if len(sequence) > 1 else sequence[0]


def test_every_provider_waits_at_least_a_minute_by_default():
    for provider in ("openai", "anthropic", "google", "azure-openai", "cohere"):
        assert confirm_window(provider) >= 60, provider
    assert confirm_window("openai", 5.0) == 5.0, "the runbook's confirm_timeout wins"


def test_confirmed_as_soon_as_the_provider_answers_dead_with_backoff_between_checks():
    fake, lines = FakeTime(), []
    live, dead = Verdict.live("200"), Verdict.dead("401 invalid_api_key", 401)
    result = confirm_liveness(_answers(live, live, live, live, dead), want=Liveness.DEAD, window_s=90,
                              progress=lines.append, clock=fake.clock, sleep=fake.sleep)
    assert result.confirmed and result.verdict.reason == "401 invalid_api_key"
    assert fake.sleeps == [0.5, 1.0, 2.0, 3.0], "backoff doubles, capped at 3 s: a late death is seen within 3 s"
    assert result.attempts == 5 and result.seconds == pytest.approx(6.5)
    assert len(lines) == 4 and "live" in lines[0] and "90 s" in lines[0]


def test_still_live_is_only_said_after_the_whole_window():
    fake = FakeTime()
    result = confirm_liveness(lambda: Verdict.live("200"), want=Liveness.DEAD, window_s=60,
                              clock=fake.clock, sleep=fake.sleep)
    assert not result.confirmed and result.verdict.state is Liveness.LIVE
    assert result.seconds == pytest.approx(60), "the last check happens at the end of the window"
    assert max(fake.sleeps) <= 3.0, "waits are capped, so the key is checked often near the end too"
    assert result.to_dict()["window_s"] == 60


def test_an_unknown_answer_is_never_a_confirmation():
    fake = FakeTime()
    result = confirm_liveness(lambda: Verdict.unknown("503 after 4 attempts"), want=Liveness.DEAD, window_s=10,
                              clock=fake.clock, sleep=fake.sleep)
    assert not result.confirmed and result.verdict.state is Liveness.UNKNOWN and result.seconds >= 10


# -- through the CLI, against the emulator on a socket -----------------------------------------------


def _cauterize(*args, env, timeout=180):
    return subprocess.run(
        [sys.executable, "-c", "from cauterize.cli import entry; entry()", *args],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=timeout, stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def org():
    emulator = OpenAIEmulator()
    admin = emulator.add_admin_key()
    project = emulator.add_project("web")
    _, leaked = emulator.add_user_key(project, name="leaked")
    with serve(emulator) as app:
        yield emulator, {"OPENAI_BASE_URL": f"{app.url}/v1", "OPENAI_ADMIN_KEY": admin, "LEAKED": leaked}


@pytest.mark.slow
def test_an_eight_second_propagation_ends_with_exit_0(org):
    emulator, env = org
    emulator.revocation_delay_s = 8.0
    started = time.monotonic()
    done = _cauterize("revoke", "--provider", "openai", "--key-env", "LEAKED", "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["liveness"] == "dead" and result["action"] == "deleted-key"
    assert 8.0 <= result["confirmation"]["seconds"] < 30 and result["confirmation"]["attempts"] > 2
    assert time.monotonic() - started >= 8.0
    assert "not dead yet" in done.stderr, "progress is printed while it waits"
    assert not emulator.is_live(env["LEAKED"])
    assert env["LEAKED"] not in done.stdout + done.stderr


@pytest.mark.slow
def test_a_key_that_never_dies_is_exit_4_after_the_whole_window(org):
    emulator, env = org
    emulator.revocation_delay_s = 3600.0
    started = time.monotonic()
    done = _cauterize("revoke", "--provider", "openai", "--key-env", "LEAKED", "--yes", "--confirm-timeout", "4s",
                      env=env)
    elapsed = time.monotonic() - started
    assert done.returncode == 4, done.stderr[-2000:]
    assert elapsed >= 4.0, "exit 4 only after the whole window"
    assert "4 s confirmation window" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_provider_that_cannot_say_is_exit_3_and_never_dead(org):
    emulator, env = org
    emulator.revocation_delay_s = 3600.0
    emulator.fail_next("GET", "/models", 503, count=1000)
    done = _cauterize("revoke", "--provider", "openai", "--key-env", "LEAKED", "--yes", "--confirm-timeout", "3s",
                      "--json", env=env)
    assert done.returncode == 3, done.stderr[-2000:]
    assert json.loads(done.stdout)["liveness"] == "unknown"
    assert "could not be confirmed" in done.stderr


def test_the_runbook_sets_the_window(tmp_path):
    from cauterize.errors import RunbookError
    from cauterize.runbook import load_runbook

    text = (
        "version: 1\nname: t\nkey: {provider: openai, source: env:LEAKED}\n"
        "providers:\n  openai: {confirm_timeout: %s}\nstores:\n  - {type: dotenv, path: .env, variable: K}\n"
    )
    path = tmp_path / "rb.yaml"
    path.write_text(text % "2m")
    assert load_runbook(path).runbook.providers["openai"].confirm_timeout == "2m"
    for bad in ("soon", "-5s", "3h"):
        path.write_text(text % bad)
        with pytest.raises(RunbookError) as raised:
            load_runbook(path)
        assert "confirm_timeout" in raised.value.message
    assert CONFIRM_WINDOWS_S["openai"] >= 60
