"""The GitHub secret-scanning receiver over real HTTP, and `cauterize webhook` starting a response.

Signatures are computed with the test's own HMAC; the alert payload carries a generated canary in
``alert.secret`` that must never come back out (responses, logs, what the starter is given).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cauterize.sandbox.openai import new_key_value
from cauterize.sandbox.world import build_world
from cauterize.webhook import Alert, Receiver, serve

SECRET = "whsec-" + secrets.token_hex(16)


def _signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _alert(repo: str = "acme/support-bot", secret_type: str = "openai_api_key", action: str = "created",
           leaked: str | None = None) -> bytes:
    return json.dumps({
        "action": action,
        "alert": {"number": 7, "secret_type": secret_type, "secret_type_display_name": "OpenAI API Key",
                  "html_url": f"https://github.com/{repo}/security/secret-scanning/7", "validity": "active",
                  "secret": leaked or "sk-proj-" + secrets.token_urlsafe(32)},
        "repository": {"full_name": repo},
    }).encode()


def _runbook(directory: Path, name: str, provider: str = "openai", triggers: str | None = None) -> Path:
    path = directory / f"{name}.yaml"
    text = f"version: 1\nname: {name}\nkey: {{provider: {provider}, source: env:LEAKED_{name.upper().replace('-', '_')}}}\n"
    path.write_text(text + (f"triggers: {triggers}\n" if triggers is not None else ""))
    return path


@pytest.fixture
def receiver(tmp_path):
    started: list[tuple[Path, Alert]] = []
    _runbook(tmp_path, "support-bot", triggers="{repositories: [acme/support-bot]}")
    _runbook(tmp_path, "acme-any", triggers="{repositories: ['acme/*']}")
    _runbook(tmp_path, "claude", provider="anthropic", triggers="{}")
    _runbook(tmp_path, "untriggered")
    (tmp_path / "broken.yaml").write_text("version: 1\nname: [\n")

    def start(runbook: Path, alert: Alert) -> str:
        started.append((runbook, alert))
        return "flow run test"

    with_server = serve(Receiver(SECRET, tmp_path, start))
    yield with_server.url, started
    with_server.close()


def _post(url: str, body: bytes, *, event: str = "secret_scanning_alert", signature: str | None = None) -> httpx.Response:
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": secrets.token_hex(8), "Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return httpx.post(f"{url}/github", content=body, headers=headers, timeout=10)


def test_a_bad_or_missing_signature_is_401_and_starts_nothing(receiver):
    url, started = receiver
    body = _alert()
    assert _post(url, body).status_code == 401
    assert _post(url, body, signature=_signed(body, "not-the-secret")).status_code == 401
    assert _post(url, body, signature=_signed(body)[:-2] + "00").status_code == 401
    assert _post(url, body + b" ", signature=_signed(body)).status_code == 401, "the signature covers the raw body"
    assert started == []


def test_a_signed_alert_is_accepted_and_starts_the_matching_runbook_without_the_secret(receiver, caplog):
    url, started = receiver
    canary = "sk-proj-" + secrets.token_urlsafe(40)
    body = _alert(leaked=canary)
    with caplog.at_level(logging.INFO, logger="cauterize"):
        answer = _post(url, body, signature=_signed(body))
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "started" and answer.json()["runbook"] == "support-bot.yaml"
    [(runbook, alert)] = started
    assert runbook.name == "support-bot.yaml", "an exact repository beats a pattern"
    assert (alert.repository, alert.secret_type, alert.number, alert.action) == ("acme/support-bot", "openai_api_key", 7, "created")
    assert canary not in repr(alert) + answer.text + caplog.text


def test_routing_patterns_other_events_and_actions(receiver):
    url, started = receiver
    for body, event, status in [
        (_alert(repo="acme/other"), "secret_scanning_alert", 202),  # the acme/* pattern
        (_alert(repo="acme/x", secret_type="anthropic_api_key"), "secret_scanning_alert", 202),  # any repository
        (_alert(repo="elsewhere/app"), "secret_scanning_alert", 202),  # no runbook answers it: unmatched
        (_alert(secret_type="github_personal_access_token"), "secret_scanning_alert", 202),
        (_alert(action="resolved"), "secret_scanning_alert", 200),  # ignored
        (b'{"zen": "Keep it logically awesome."}', "ping", 200),
        (_alert(), "push", 200),  # ignored
        (b"not json", "secret_scanning_alert", 400),
    ]:
        answer = _post(url, body, event=event, signature=_signed(body))
        assert answer.status_code == status, (event, body[:80], answer.text)
    assert [path.name for path, _ in started] == ["acme-any.yaml", "claude.yaml"]


def test_equally_specific_runbooks_are_ambiguous_and_start_nothing(tmp_path):
    started = []
    for name in ("one", "two"):
        _runbook(tmp_path, name, triggers="{repositories: [acme/app]}")
    body = _alert("acme/app")
    headers = {"X-GitHub-Event": "secret_scanning_alert", "X-Hub-Signature-256": _signed(body)}
    status, reply = Receiver(SECRET, tmp_path, lambda *a: started.append(a) or "x").handle("POST", "/github", headers, body)
    assert (status, reply["status"]) == (202, "ambiguous") and reply["runbooks"] == ["one.yaml", "two.yaml"]
    assert started == []


# -- the command, with the response in process (no Prefect server configured) ---------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_cauterize_webhook_starts_the_flow_in_process_for_the_sandbox_runbook(tmp_path):
    world = build_world(tmp_path / "world")
    with world.runbook.open("a") as handle:
        handle.write("triggers: {github_secret_types: [openai_api_key], repositories: [acme/support-bot]}\n")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(world.env, GITHUB_WEBHOOK_SECRET=SECRET, PREFECT_HOME=str(tmp_path / "prefect"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false")
    with open(tmp_path / "webhook.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", "from cauterize.cli import entry; entry()", "webhook", "--port", str(port),
             "--runbook-dir", str(world.root)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and process.poll() is None, (tmp_path / "webhook.log").read_text()
                time.sleep(0.1)
        leaked = world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"]
        body = _alert(leaked=leaked)
        assert _post(url, body, signature=_signed(body, "wrong")).status_code == 401
        answer = _post(url, body, signature=_signed(body))
        assert answer.status_code == 202, answer.text
        incidents = world.root / "incidents"
        deadline = time.monotonic() + 150
        record = None
        while time.monotonic() < deadline:
            found = [p / "incident.json" for p in incidents.glob("*") if (p / "incident.json").is_file()] if incidents.is_dir() else []
            if found:
                record = json.loads(found[0].read_text())
                if record["steps"]["report"]["status"] == "ok":
                    break
            time.sleep(0.5)
        log_text = (tmp_path / "webhook.log").read_text()
        assert record is not None and record["steps"]["report"]["status"] == "ok", log_text[-3000:]
        assert not world.emulator.is_live(leaked), "the response revoked the leaked key"
        assert record["steps"]["revoke"]["status"] == "ok" and record["steps"]["redeploy"]["status"] == "ok"
        assert leaked not in log_text
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
        world.close()


# -- notifications --------------------------------------------------------------------------------


class _Chat:
    """A Slack-compatible incoming webhook on a socket: records the bodies, fails on demand."""

    def __init__(self, fail: int = 0):
        self.bodies: list[dict] = []
        self.fail = fail

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        if self.fail:
            self.fail -= 1
            return httpx.Response(503)
        return httpx.Response(200, text="ok")


def test_notify_posts_text_retries_once_and_never_raises(monkeypatch):
    from cauterize import notify
    from cauterize.sandbox.server import serve as serve_handler

    monkeypatch.setattr(notify, "RETRY_WAIT_S", 0.01)
    chat = _Chat(fail=1)
    with serve_handler(chat) as app:
        assert notify.notify(f"{app.url}/hooks/T0", "cauterize: started", {"key": "sk-proj-…abcd (sha256:0123)"})
        assert len(chat.bodies) == 2 and chat.bodies[-1] == {"text": "cauterize: started\nkey: sk-proj-…abcd (sha256:0123)"}
        chat.fail = 5
        assert notify.notify(f"{app.url}/hooks/T0", "cauterize: done") is False
        assert len(chat.bodies) == 4, "one attempt and one retry, no more"
    assert notify.notify("http://127.0.0.1:9/unreachable", "cauterize: done") is False


def test_announce_sends_fingerprints_from_the_runbook_notify_section(tmp_path, monkeypatch):
    from cauterize import notify, response
    from cauterize.sandbox.server import serve as serve_handler

    leaked = new_key_value()
    chat = _Chat()
    with serve_handler(chat) as app:
        monkeypatch.setenv("LEAKED_NOTIFIED", leaked)
        monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin-" + secrets.token_urlsafe(32))  # the preflight asks for one
        monkeypatch.setenv("CHAT_WEBHOOK_URL", f"{app.url}/hooks/T0")
        runbook = _runbook(tmp_path, "notified")
        with runbook.open("a") as handle:
            handle.write("notify: {url: env:CHAT_WEBHOOK_URL}\nreport: {dir: incidents}\n")
        directory = response.open_incident(runbook)
        assert notify.announce(directory, "start") and notify.announce(directory, "end")
    start, end = (body["text"] for body in chat.bodies)
    assert "incident response started for runbook 'notified'" in start and "sha256:" in start
    assert "incomplete (exit 3)" in end and "intake pending" in end
    assert leaked not in start + end and app.url not in start + end
