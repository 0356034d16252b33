"""`cauterize evidence` as the on-call engineer runs it: a child process against the OpenAI emulator
served on a real socket, holding 16 days of hourly office-hours usage with a 36-hour spike."""

import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from cauterize.cli_evidence import parse_when
from cauterize.errors import InputError
from cauterize.sandbox.openai import OpenAIEmulator
from cauterize.sandbox.openai_usage import PRICES
from cauterize.sandbox.server import serve

# Runs the real entry point; registers the command first if cli.py does not (yet) do it itself.
_ENTRY = """
import sys
from cauterize.cli import app, main
from cauterize.cli_evidence import evidence
if not any((c.name or getattr(c.callback, "__name__", "")) == "evidence" for c in app.registered_commands):
    app.command("evidence")(evidence)
sys.exit(main(sys.argv[1:]))
"""


def _cauterize(*args, env, timeout=120):
    return subprocess.run(
        [sys.executable, "-c", _ENTRY, *args],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=timeout, stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def org():
    """The emulator with the leaked key's usage: office hours (weekdays 08-19 UTC) with noise,
    quiet nights and weekends, and abuse for 36 hours from 6 hours into the exposure window."""
    emulator = OpenAIEmulator()
    admin = emulator.add_admin_key()
    project = emulator.add_project("support-bot")
    other_id, _ = emulator.add_user_key(project, name="colleague")
    key_id, leaked = emulator.add_user_key(project, name="laptop key")
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    start = end - timedelta(days=16)
    since = start + timedelta(days=14)
    spike = (since + timedelta(hours=6), since + timedelta(hours=42))
    rng = random.Random(7)
    seeded = {}
    hour = start
    while hour < end:
        busy = 8 <= hour.hour < 19 and hour.weekday() < 5
        tokens = int((4000 if busy else 400) * rng.uniform(0.7, 1.3))
        requests = int((20 if busy else 2) * rng.uniform(0.5, 1.5))
        if spike[0] <= hour < spike[1]:
            tokens, requests = tokens + rng.randint(40_000, 90_000), requests + rng.randint(150, 400)
        seeded[hour] = (tokens, tokens // 4, requests)
        emulator.add_usage(key_id, None, hour, hour + timedelta(hours=1), 3600, tokens, tokens // 4, requests)
        emulator.add_usage(other_id, None, hour, hour + timedelta(hours=1), 3600, 5_000_000, 1, 1)  # not ours
        hour += timedelta(hours=1)
    with serve(emulator) as app:
        env = {"OPENAI_BASE_URL": f"{app.url}/v1", "OPENAI_ADMIN_KEY": admin, "K": leaked}
        yield {"emulator": emulator, "env": env, "key_id": key_id, "seeded": seeded, "since": since, "until": end,
               "spike": spike}


def _window_sums(org, since, until):
    rows = [value for hour, value in org["seeded"].items() if since <= hour < until]
    return {"input_tokens": sum(r[0] for r in rows), "output_tokens": sum(r[1] for r in rows),
            "requests": sum(r[2] for r in rows)}


def test_hourly_totals_are_exact_and_the_spike_is_flagged(org):
    done = _cauterize("evidence", "--provider", "openai", "--key-env", "K", "--since", org["since"].isoformat(),
                      "--until", org["until"].isoformat(), "--bucket", "1h", "--json", env=org["env"])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    totals = result["totals"]
    assert {k: totals[k] for k in ("input_tokens", "output_tokens", "requests")} == _window_sums(
        org, org["since"], org["until"])
    assert len(result["buckets"]) == 48 and result["baseline"]["buckets"] == 14 * 24
    spike = [b for b in result["buckets"] if org["spike"][0] <= datetime.fromisoformat(b["start"]) < org["spike"][1]]
    others = [b for b in result["buckets"] if b not in spike]
    assert len(spike) == 36 and all(b["anomalous"] for b in spike)
    assert sum(b["anomalous"] for b in others) <= 2
    assert result["identity"]["key_id"] == org["key_id"]
    assert result["excess_tokens"] > 36 * 40_000 * 0.9 and result["excess_cost_usd"] > 0
    assert result["cost"]["source"] == "estimate" and totals["cost_usd"] > 0
    assert any("estimate" in item for item in result["limitations"])
    assert "limitation:" in done.stderr
    assert org["env"]["K"] not in done.stdout + done.stderr


def test_daily_buckets_carry_the_providers_cost(org):
    since = org["since"].replace(hour=0) + timedelta(days=1)
    until = since + timedelta(days=1)
    done = _cauterize("evidence", "--provider", "openai", "--key-env", "K", "--since", since.isoformat(),
                      "--until", until.isoformat(), "--bucket", "1d", "--json", env=org["env"])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    sums = _window_sums(org, since, until)
    assert result["totals"]["input_tokens"] == sums["input_tokens"]
    price_in, price_out = PRICES["gpt-4o-mini"]
    expected = (sums["input_tokens"] * price_in + sums["output_tokens"] * price_out) / 1e6
    assert result["cost"]["source"] == "provider"
    assert result["totals"]["cost_usd"] == pytest.approx(expected, abs=1e-4)
    assert not any("estimate" in item for item in result["limitations"])


def test_human_summary_prints_the_limitations(org):
    done = _cauterize("evidence", "--provider", "openai", "--key-env", "K", "--since", "3d", "--until", "1d",
                      env=org["env"])
    assert done.returncode == 0, done.stderr
    assert "totals:" in done.stdout and "anomalous:" in done.stdout
    assert "limitation: cost is an estimate" in done.stdout


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--since", "yesterday"], "--since"),
        (["--since", "2d", "--until", "soon"], "--until"),
        (["--since", "2d", "--bucket", "5m"], "--bucket"),
        (["--since", "2d", "--baseline-days", "-1"], "--baseline-days"),
        (["--since", "1d", "--until", "2d"], "--until"),
        (["--since", "2d", "--baseline-days", "many"], "--baseline-days"),
    ],
)
def test_bad_values_exit_2_naming_the_option(org, args, option):
    done = _cauterize("evidence", "--provider", "openai", "--key-env", "K", *args, env=org["env"])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and "Traceback" not in done.stderr


def test_parse_when():
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    assert parse_when("36h", "--since", now=now) == now - timedelta(hours=36)
    assert parse_when("7d ago", "--since", now=now) == now - timedelta(days=7)
    assert parse_when("2026-03-01", "--since", now=now) == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_when("2026-03-01T05:00:00+02:00", "--since", now=now) == datetime(2026, 3, 1, 3, tzinfo=UTC)
    assert parse_when("now", "--until", now=now) == now
    with pytest.raises(InputError, match="--until"):
        parse_when("tomorrow-ish", "--until", now=now)


def test_an_unknown_model_is_refused_before_any_call(org):
    done = _cauterize("evidence", "--provider", "openai", "--key-env", "K", "--since", "2d", "--model", "gpt-0",
                      env=org["env"])
    assert done.returncode == 2 and "--model" in done.stderr and "gpt-4o" in done.stderr
