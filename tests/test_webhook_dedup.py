"""One key, one incident at the webhook: deliveries deduplicated by GUID (on disk, across restarts) and
by incident identity (runbook + key fingerprint), unmatched alerts answered 202 and notified.

Real HTTP requests with the test's own HMAC signatures; incident records written as a response
writes them; a second process holds an incident's lock for "in progress". The alerts carry a
generated key in ``alert.secret`` that must appear nowhere the receiver writes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from cauterize import incident as records
from cauterize.errors import InputError
from cauterize.incident import Incident, IncidentStore, KeyRecord, utcnow
from cauterize.sandbox.openai import new_key_value
from cauterize.sandbox.server import serve as serve_handler
from cauterize.secret import encoded_forms, fingerprint_of, redact
from cauterize.webhook import Alert, Receiver, serve
from cauterize.webhook_dedup import FILE_NAME, STATE_DIR_NAME, DeliveryLog

SECRET = "whsec-" + secrets.token_hex(16)
RUNBOOK = "support-bot"


def _signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _alert(leaked: str | None, repo: str = "acme/support-bot", action: str = "created") -> bytes:
    alert = {"number": 7, "secret_type": "openai_api_key", "html_url": f"https://github.com/{repo}/security/secret-scanning/7"}
    if leaked is not None:
        alert["secret"] = leaked
    return json.dumps({"action": action, "alert": alert, "repository": {"full_name": repo}}).encode()


class Sink:
    """A Slack-compatible incoming webhook on a socket: records the bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        return httpx.Response(200, text="ok")

    def wait(self, count: int = 1, timeout: float = 10) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.bodies) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.bodies


class Harness:
    """A runbook directory with the support-bot runbook, its key in the environment, a receiver
    over HTTP whose starter only records what it was asked to start."""

    def __init__(self, root: Path, monkeypatch, notify: str | None = None, running=None):
        self.root = root
        self.key = new_key_value()
        monkeypatch.setenv("LEAKED_SUPPORT_BOT", self.key)
        (root / f"{RUNBOOK}.yaml").write_text(
            f"version: 1\nname: {RUNBOOK}\nkey: {{provider: openai, source: env:LEAKED_SUPPORT_BOT}}\n"
            "triggers: {repositories: [acme/support-bot]}\n"
        )
        self.started: list[tuple[Path, Alert]] = []
        self.notify, self.running = notify, running
        self.served = None
        self.start_receiver()

    def start(self, runbook: Path, alert: Alert) -> str:
        self.started.append((runbook, alert))
        return f"flow run {len(self.started)}"

    def start_receiver(self) -> None:
        if self.served is not None:
            self.served.close()
        self.served = serve(Receiver(SECRET, self.root, self.start, notify=self.notify, running=self.running))

    def post(self, body: bytes, delivery: str | None = None, signature: str | None = None) -> httpx.Response:
        headers = {"X-GitHub-Event": "secret_scanning_alert", "Content-Type": "application/json",
                   "X-Hub-Signature-256": signature or _signed(body)}
        if delivery:
            headers["X-GitHub-Delivery"] = delivery
        return httpx.post(f"{self.served.url}/github", content=body, headers=headers, timeout=10)

    def incident(self, *, complete: bool, fingerprint: str | None = None) -> Path:
        """An incident record of the runbook's key, as a response leaves it (complete and verified, or
        with intake done and the rest pending)."""
        store = IncidentStore(self.root / "incidents")
        now = utcnow()
        fingerprint = fingerprint or fingerprint_of(self.key)
        incident = Incident(
            id=store.new_id(RUNBOOK, fingerprint, now), runbook=RUNBOOK, runbook_path=str(self.root / f"{RUNBOOK}.yaml"),
            created_at=now, updated_at=now, provider="openai", order="revoke-first",
            old_key=KeyRecord(fingerprint=fingerprint, redacted=redact(self.key), source="env:LEAKED_SUPPORT_BOT"),
        )
        for name, step in incident.steps.items():
            step.status = "ok" if complete or name == "intake" else "pending"
        if complete:
            incident.verification = {"contained": True, "recovered": True, "reopened": []}
        return store.create(incident)

    @property
    def log_file(self) -> Path:
        return self.root / STATE_DIR_NAME / FILE_NAME

    def close(self) -> None:
        self.served.close()


@pytest.fixture
def harness(tmp_path, monkeypatch):
    made = Harness(tmp_path, monkeypatch)
    yield made
    made.close()


def _guid() -> str:
    return f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-11f0-{secrets.token_hex(2)}-{secrets.token_hex(6)}"


def test_the_same_delivery_twice_starts_one_response(harness):
    body, guid = _alert(harness.key), _guid()
    first = harness.post(body, guid)
    assert (first.status_code, first.json()["status"]) == (202, "started"), first.text
    directory = harness.incident(complete=False)  # what the started response opens
    again = harness.post(body, guid)
    assert again.status_code == 200, again.text
    assert again.json() == {"status": "duplicate", "delivery": guid, "incident": directory.name,
                            "runbook": f"{RUNBOOK}.yaml", "first": "started"}
    assert len(harness.started) == 1


def test_a_new_delivery_after_the_response_completed_is_already_contained(harness):
    directory = harness.incident(complete=True)
    answer = harness.post(_alert(harness.key), _guid())
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "already-contained" and answer.json()["incident"] == directory.name
    assert harness.started == []
    assert sorted(p.name for p in (harness.root / "incidents").iterdir() if not p.name.startswith(".")) == [directory.name]
    # without alert.secret the runbook's own key identifies the incident
    assert harness.post(_alert(None), _guid()).json()["status"] == "already-contained"
    assert harness.started == []


def test_an_incident_whose_lock_another_process_holds_is_in_progress(harness):
    directory = harness.incident(complete=False)
    hold = ("import sys; from pathlib import Path; from cauterize.incident import acquire_lock; "
            "acquire_lock(Path(sys.argv[1])); print('locked', flush=True); sys.stdin.read()")
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(directory)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        answer = harness.post(_alert(harness.key), _guid())
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "in-progress" and answer.json()["incident"] == directory.name
        assert harness.started == []
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    # the responder is gone and the incident unfinished: the next alert resumes it
    resumed = harness.post(_alert(harness.key), _guid())
    assert (resumed.status_code, resumed.json()["status"], resumed.json()["incident"]) == (202, "started", directory.name)
    assert len(harness.started) == 1


def test_a_response_started_whose_incident_is_not_open_yet_is_in_progress(harness):
    first = harness.post(_alert(harness.key, action="created"), _guid())
    assert first.json()["status"] == "started"
    # GitHub sends publicly_leaked for the same alert moments later, with its own delivery id
    second = harness.post(_alert(harness.key, action="publicly_leaked"), _guid())
    assert second.status_code == 202, second.text
    assert second.json()["status"] == "in-progress" and second.json()["run"] == "flow run 1"
    assert len(harness.started) == 1


def test_a_response_running_in_this_process_is_in_progress(tmp_path, monkeypatch):
    running: set[str] = set()
    made = Harness(tmp_path, monkeypatch, running=lambda runbook: runbook.name in running)
    try:
        assert made.post(_alert(made.key), _guid()).json()["status"] == "started"
        running.add(f"{RUNBOOK}.yaml")
        directory = made.incident(complete=False)
        records.acquire_lock(directory)  # the in-process response holds it, as this process
        answer = made.post(_alert(made.key), _guid())
        assert (answer.status_code, answer.json()["status"], answer.json()["incident"]) == (202, "in-progress", directory.name)
        running.clear()  # it ended unfinished: this process's own lock no longer means anyone is on it
        assert made.post(_alert(made.key), _guid()).json()["status"] == "started"
        assert len(made.started) == 2
    finally:
        records.release_lock(tmp_path / "incidents" / directory.name)
        made.close()


def test_an_unmatched_alert_is_202_and_told_to_the_default_notify_target(tmp_path, monkeypatch, caplog):
    sink = Sink()
    with serve_handler(sink) as chat:
        made = Harness(tmp_path, monkeypatch, notify=f"{chat.url}/hooks/T0")
        try:
            canary = new_key_value()
            with caplog.at_level(logging.INFO, logger="cauterize"):
                answer = made.post(_alert(canary, repo="elsewhere/app"), _guid())
            assert answer.status_code == 202, answer.text
            assert answer.json()["status"] == "unmatched" and answer.json()["notified"] is True
            [told] = sink.wait()
            assert "matches no runbook" in told["text"] and "elsewhere/app" in told["text"]
            assert "no runbook's triggers accept it" in caplog.text
            # the runbook matches but holds another key than the alert's: starting would revoke the wrong key
            other = made.post(_alert(canary), _guid())
            assert (other.status_code, other.json()["status"]) == (202, "unmatched"), other.text
            assert "is not the alert's secret" in other.json()["reason"]
            assert len(sink.wait(2)) == 2 and made.started == []
            assert canary not in json.dumps(sink.bodies) + answer.text + other.text + caplog.text
        finally:
            made.close()


def test_a_bad_signature_is_401_and_only_a_bad_payload_is_400(harness):
    body = _alert(harness.key)
    assert harness.post(body, _guid(), signature=_signed(body, "not-the-secret")).status_code == 401
    assert harness.post(b"{not json", _guid(), signature=_signed(b"{not json")).status_code == 400
    assert harness.post(b'{"alert": 1}', _guid(), signature=_signed(b'{"alert": 1}')).status_code == 400
    assert harness.started == [] and not harness.log_file.exists()


def test_a_delivery_is_still_a_duplicate_after_the_receiver_restarts(harness):
    body, guid = _alert(harness.key), _guid()
    assert harness.post(body, guid).json()["status"] == "started"
    harness.start_receiver()  # a new Receiver: only the file remembers
    again = harness.post(body, guid)
    assert (again.status_code, again.json()["status"], again.json()["delivery"]) == (200, "duplicate", guid)
    assert len(harness.started) == 1


def test_the_delivery_log_is_private_and_never_holds_the_alert_secret(harness):
    canary = harness.key  # the alert's secret is the runbook's key: every answer names its incident
    for guid, complete in ((_guid(), None), (_guid(), False), (_guid(), True)):
        if complete is not None:
            harness.incident(complete=complete)
        harness.post(_alert(canary), guid)
        harness.post(_alert(canary), guid)  # and its duplicate
    data = harness.log_file.read_bytes()
    entries = [json.loads(line) for line in data.splitlines()]
    assert [entry["status"] for entry in entries] == ["started", "started", "already-contained"]
    assert {entry["fingerprint"] for entry in entries} == {fingerprint_of(canary)}
    for forms in encoded_forms(canary).values():
        for form in forms:
            assert form not in data
    assert harness.log_file.stat().st_mode & 0o777 == 0o600
    assert harness.log_file.parent.stat().st_mode & 0o777 == 0o700


def test_deliveries_are_kept_7_days_and_pruned_after(tmp_path):
    log = DeliveryLog(tmp_path / "state")
    old, recent = utcnow() - timedelta(days=8), utcnow() - timedelta(days=4)  # GitHub redelivers 3 days back
    with log.path.open("a") as handle:
        handle.write(json.dumps({"delivery": "old", "at": old.isoformat(), "status": "started"}) + "\n")
        handle.write(json.dumps({"delivery": "recent", "at": recent.isoformat(), "status": "started"}) + "\n")
        handle.write('{"delivery": "torn", "at": \n')
    again = DeliveryLog(tmp_path / "state")
    assert again.get("recent") is not None and again.get("old") is None
    assert [json.loads(line)["delivery"] for line in again.path.read_text().splitlines()] == ["recent"]


def test_a_state_dir_others_can_write_or_a_planted_link_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(InputError, match="writable by others"):
        DeliveryLog(shared)
    private = tmp_path / "private"
    log = DeliveryLog(private)
    (tmp_path / "elsewhere").write_text("")
    os.symlink(tmp_path / "elsewhere", log.path)
    with pytest.raises(InputError):
        log.get("anything")
    with pytest.raises(InputError):
        log.remember({"delivery": "x", "status": "started"})
    assert (tmp_path / "elsewhere").read_text() == ""
