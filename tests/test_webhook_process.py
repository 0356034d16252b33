"""`cauterize webhook` as a real process: a response in process against the sandbox, its replays
(duplicate, already contained, across a restart), and SIGTERM stopping it and everything it started.

"Everything it started" is checked in /proc: every process of its session, and every descendant seen
while it ran (the Prefect server of Prefect's ephemeral mode among them), is gone once it exits.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cauterize.sandbox.world import build_world

SECRET = "whsec-" + secrets.token_hex(16)
pytestmark = pytest.mark.slow


def _signed(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def _alert(leaked: str, action: str = "created") -> bytes:
    return json.dumps({
        "action": action,
        "alert": {"number": 7, "secret_type": "openai_api_key", "secret": leaked,
                  "html_url": "https://github.com/acme/support-bot/security/secret-scanning/7"},
        "repository": {"full_name": "acme/support-bot"},
    }).encode()


def _post(url: str, body: bytes, delivery: str) -> httpx.Response:
    return httpx.post(f"{url}/github", content=body, timeout=10, headers={
        "X-GitHub-Event": "secret_scanning_alert", "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": _signed(body),
        "Content-Type": "application/json"})


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str | None = None) -> bool:
    """A live (not zombie) process; ``started``: only that very process (its start time), not a reuse of its pid."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z" and (started is None or fields[19] == started)


def _descendants(root: int) -> dict[int, str]:
    """pid -> start time of every live descendant of ``root``."""
    parents = {}
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat(int(entry.name))
        if fields is not None and fields[0] != "Z":
            parents[int(entry.name)] = (int(fields[1]), fields[19])
    found, frontier = {}, {root}
    while frontier:
        children = {pid for pid, (parent, _) in parents.items() if parent in frontier}
        found.update({pid: parents[pid][1] for pid in children})
        frontier = children
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _session(sid: int) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat(int(entry.name))
        if fields is not None and fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(entry.name))
    return found


class Webhook:
    """``cauterize webhook --port 0`` in a session of its own, its stderr in a file."""

    def __init__(self, world, tmp_path: Path, name: str):
        self.log = tmp_path / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(world.env, GITHUB_WEBHOOK_SECRET=SECRET, PREFECT_HOME=str(tmp_path / "prefect"),
                   PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from cauterize.cli import entry; entry()", "webhook", "--port", "0",
                 "--runbook-dir", str(world.root)],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while not (found := re.search(r"listening on (http://127\.0\.0\.1:\d+)/github", self.text())):
            assert time.monotonic() < deadline and self.process.poll() is None, self.text()
            time.sleep(0.1)
        self.url = found.group(1)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self) -> tuple[int, float, dict[int, str]]:
        """SIGTERM; (exit code, seconds to exit, the descendants it had)."""
        children = _descendants(self.process.pid)
        self.commands = [_cmdline(pid) for pid in children]
        sent = time.monotonic()
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            code = self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        return code, time.monotonic() - sent, children

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _assert_all_gone(webhook: Webhook, children: dict[int, str]) -> None:
    deadline = time.monotonic() + 2  # reparented zombies are reaped by init
    while (left := _session(webhook.process.pid) + [p for p, t in children.items() if _alive(p, t)]) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == [], f"left running: {left}\n{webhook.text()[-2000:]}"


def _incidents(world) -> list[Path]:
    root = world.root / "incidents"
    return sorted(p for p in root.iterdir() if (p / "incident.json").is_file()) if root.is_dir() else []


@pytest.fixture
def world(tmp_path):
    made = build_world(tmp_path / "world")
    with made.runbook.open("a") as handle:
        handle.write("triggers: {github_secret_types: [openai_api_key], repositories: [acme/support-bot]}\n")
    yield made
    made.close()


def test_replays_start_nothing_across_a_restart_and_sigterm_leaves_no_process(world, tmp_path):
    leaked = world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"]
    body, first = _alert(leaked), secrets.token_hex(8)
    webhook = Webhook(world, tmp_path, "first")
    try:
        answer = _post(webhook.url, body, first)
        assert (answer.status_code, answer.json()["status"]) == (202, "started"), answer.text
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            found = _incidents(world)
            if found and json.loads((found[0] / "incident.json").read_text())["steps"]["report"]["status"] == "ok":
                break
            time.sleep(0.5)
        [directory] = _incidents(world)
        record = json.loads((directory / "incident.json").read_text())
        assert record["steps"]["report"]["status"] == "ok", webhook.text()[-3000:]
        assert not world.emulator.is_live(leaked)
        time.sleep(1)  # the response thread ends after its record says report ok

        again = _post(webhook.url, body, first)
        assert again.status_code == 200 and again.json() == {
            "status": "duplicate", "delivery": first, "incident": directory.name, "runbook": "runbook.yaml",
            "first": "started"}
        replay = _post(webhook.url, _alert(leaked, "publicly_leaked"), secrets.token_hex(8))
        assert replay.status_code == 200, replay.text
        assert replay.json()["status"] == "already-contained" and replay.json()["incident"] == directory.name

        code, took, children = webhook.terminate()
        assert code == 0 and took < 5, (code, took, webhook.text()[-2000:])
        assert webhook.commands and any(b"uvicorn" in line for line in webhook.commands), \
            "the Prefect server Prefect's ephemeral mode started was its child"
        _assert_all_gone(webhook, children)
        assert webhook.text().rstrip().splitlines()[-1].startswith("cauterize: webhook stopped (SIGTERM)")

        restarted = Webhook(world, tmp_path, "second")  # only the delivery log remembers
        try:
            same = _post(restarted.url, body, first)
            assert (same.status_code, same.json()["status"], same.json()["incident"]) == (200, "duplicate", directory.name)
            other = _post(restarted.url, body, secrets.token_hex(8))
            assert (other.status_code, other.json()["status"]) == (200, "already-contained")
            code, took, children = restarted.terminate()
            assert code == 0 and took < 5, restarted.text()[-2000:]
            _assert_all_gone(restarted, children)
        finally:
            restarted.kill()
        assert _incidents(world) == [directory], "the replays opened no incident"
        deliveries = (world.root / ".cauterize-webhook" / "deliveries.jsonl").read_text()
        assert leaked not in deliveries + webhook.text() + restarted.text()
    finally:
        webhook.kill()


def test_sigterm_during_a_response_stops_it_and_its_prefect_server_within_seconds(world, tmp_path):
    leaked = world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"]
    webhook = Webhook(world, tmp_path, "webhook")
    try:
        answer = _post(webhook.url, _alert(leaked), secrets.token_hex(8))
        assert answer.status_code == 202, answer.text
        deadline = time.monotonic() + 90
        while not any(b"uvicorn" in _cmdline(pid) for pid in _descendants(webhook.process.pid)):
            assert time.monotonic() < deadline, webhook.text()[-3000:]
            time.sleep(0.05)
        code, took, children = webhook.terminate()
        text = webhook.text()
        [directory] = _incidents(world)
        record = json.loads((directory / "incident.json").read_text())
        assert code == 130 and took < 5, (code, took, text[-3000:])
        _assert_all_gone(webhook, children)
        last = text.rstrip().splitlines()[-1]
        assert last.startswith("cauterize: interrupted by SIGTERM") and "cauterize respond" in last, text[-2000:]
        assert "Traceback" not in text
        assert record["steps"]["report"]["status"] != "ok", "the response was cut short"
    finally:
        webhook.kill()


def test_an_unmatched_alert_reaches_cauterize_notify_url_and_an_idle_receiver_stops_at_once(world, tmp_path):
    from cauterize.sandbox.server import serve as serve_handler

    bodies: list[dict] = []

    def chat(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, text="ok")

    with serve_handler(chat) as sink:
        world.env["CAUTERIZE_NOTIFY_URL"] = f"{sink.url}/hooks/T0"
        webhook = Webhook(world, tmp_path, "webhook")
        try:
            body = _alert(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"]).replace(b"acme/support-bot", b"elsewhere/app")
            answer = _post(webhook.url, body, secrets.token_hex(8))
            assert (answer.status_code, answer.json()["status"], answer.json()["notified"]) == (202, "unmatched", True)
            deadline = time.monotonic() + 10
            while not bodies and time.monotonic() < deadline:
                time.sleep(0.05)
            assert bodies and "matches no runbook" in bodies[0]["text"] and "elsewhere/app" in bodies[0]["text"]
            code, took, children = webhook.terminate()
            assert code == 0 and took < 3, (code, took, webhook.text()[-2000:])
            _assert_all_gone(webhook, children)
            assert _incidents(world) == []
            assert sink.url not in webhook.text(), "the notify URL is a credential"
        finally:
            webhook.kill()
