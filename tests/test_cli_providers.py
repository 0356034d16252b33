"""`cauterize verify` and `cauterize revoke` as the on-call engineer runs them: a child process
against a provider served on a real socket."""

import json
import os
import subprocess
import sys
import time

import pytest

from cauterize.sandbox.openai import OpenAIEmulator
from cauterize.sandbox.server import serve


def _cauterize(*args, env, timeout=120):
    return subprocess.run(
        [sys.executable, "-c", "from cauterize.cli import entry; entry()", *args],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=timeout, stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def openai_org():
    emulator = OpenAIEmulator()
    admin = emulator.add_admin_key()
    project = emulator.add_project("web")
    emulator.add_project("batch")
    for index in range(130):  # more than one page of 100
        emulator.add_user_key(project, name=f"k{index}")
    key_id, leaked = emulator.add_user_key(project, name="hidden", owner_project_access="inactive")
    with serve(emulator) as app:
        env = {"OPENAI_BASE_URL": f"{app.url}/v1", "OPENAI_ADMIN_KEY": admin, "LEAKED": leaked}
        yield emulator, env, key_id


def test_revoke_finds_the_hidden_key_on_a_later_page_and_honours_retry_after(openai_org):
    emulator, env, key_id = openai_org
    emulator.fail_next("DELETE", "*/api_keys/*", status=429, retry_after=1)
    started = time.monotonic()
    done = _cauterize("revoke", "--provider", "openai", "--key-env", "LEAKED", "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["identity"]["key_id"] == key_id and result["liveness"] == "dead"
    deletes = emulator.calls("DELETE", "*/api_keys/*")
    assert [c.path.rsplit("/", 1)[-1] for c in deletes] == [key_id, key_id], "one 429, then exactly one delete"
    assert time.monotonic() - started >= 1.0, "waited as Retry-After said"
    listing = [c for c in emulator.calls("GET", "*/api_keys") if c.params.get("owner_project_access") == "any"]
    assert listing, "keys are listed with owner_project_access=any"
    assert env["LEAKED"] not in done.stdout + done.stderr

    verified = _cauterize("verify", "--provider", "openai", "--key-env", "LEAKED", env=env)
    assert verified.returncode == 0 and verified.stdout.splitlines()[0] == "dead"


def test_verify_reports_live_with_identity(openai_org):
    _, env, key_id = openai_org
    done = _cauterize("verify", "--provider", "openai", "--key-env", "LEAKED", "--json", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["liveness"] == "live" and result["identity"]["key_id"] == key_id


def test_wrong_admin_key_is_one_line_non_zero(openai_org, make_key):
    emulator, env, _ = openai_org
    done = _cauterize("revoke", "--provider", "openai", "--key-env", "LEAKED", "--yes",
                      env={**env, "OPENAI_ADMIN_KEY": make_key("sk-admin-")})
    assert done.returncode not in (0, 1)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "admin key" in lines[0] and "Traceback" not in done.stderr
    assert env["LEAKED"] not in done.stderr and not emulator.calls("DELETE")


def test_revoke_needs_yes_off_a_terminal(openai_org):
    emulator, env, _ = openai_org
    done = _cauterize("revoke", "--provider", "openai", "--key-env", "LEAKED", env=env)
    assert done.returncode == 2 and "--yes" in done.stderr and not emulator.calls("DELETE")


def test_unknown_provider_is_input_error(openai_org):
    _, env, _ = openai_org
    done = _cauterize("verify", "--provider", "acme", "--key-env", "LEAKED", env=env)
    assert done.returncode == 2 and "unknown provider 'acme'" in done.stderr


def test_anthropic_revoke_sets_inactive_after_a_429_and_verify_says_dead():
    from cauterize.sandbox.anthropic import AnthropicEmulator

    emulator = AnthropicEmulator()
    admin = emulator.add_admin_key()
    for index in range(25):
        emulator.add_key(name=f"k{index}")
    key_id, leaked = emulator.add_key(name="leaked")
    emulator.fail_next("POST", f"*/api_keys/{key_id}", status=429, retry_after=1)
    with serve(emulator) as app:
        env = {"ANTHROPIC_BASE_URL": app.url, "ANTHROPIC_ADMIN_KEY": admin, "LEAKED": leaked}
        done = _cauterize("revoke", "--provider", "anthropic", "--key-env", "LEAKED", "--yes", "--json", env=env)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["identity"]["key_id"] == key_id and result["liveness"] == "dead"
        assert emulator.keys[key_id].status == "inactive"
        assert [u["status"] for u in emulator.updates if u["api_key_id"] == key_id] == ["inactive"], "updated once"
        assert len(emulator.calls("POST", f"*/api_keys/{key_id}")) == 2, "one 429, then the update"
        verified = _cauterize("verify", "--provider", "anthropic", "--key-env", "LEAKED", env=env)
        assert verified.returncode == 0 and verified.stdout.splitlines()[0] == "dead"
        assert all(c.headers.get("anthropic-version") for c in emulator.requests)


def test_cohere_verify_and_revoke_is_a_manual_step():
    from cauterize.sandbox.cohere import CohereEmulator

    emulator = CohereEmulator()
    key = emulator.add_key()
    with serve(emulator) as app:
        env = {"COHERE_BASE_URL": app.url, "LEAKED": key}
        verified = _cauterize("verify", "--provider", "cohere", "--key-env", "LEAKED", "--json", env=env)
        assert verified.returncode == 0, verified.stderr
        assert json.loads(verified.stdout)["liveness"] == "live"
        revoked = _cauterize("revoke", "--provider", "cohere", "--key-env", "LEAKED", "--yes", env=env)
        assert revoked.returncode == 3 and "dashboard" in revoked.stderr.lower()
        assert len(revoked.stderr.strip().splitlines()) == 1 and key not in revoked.stderr
