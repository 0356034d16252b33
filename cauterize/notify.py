"""Notifications to a Slack-compatible incoming webhook: at start, at each manual step, at the end.

The message names fingerprints, redacted forms and step statuses: never a key value (it is checked
with ``assert_clean`` before it leaves). The webhook URL is itself a credential, so it comes from a
source reference (the runbook's ``notify.url``: ``env:SLACK_WEBHOOK_URL``...) and never reaches a
log line or an error message.

A notification must never stop a response: ``notify`` makes one attempt and at most one retry
(connection error or 5xx), with a short timeout, and reports failure by returning False and
logging one line; the incident record stays the source of truth.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import httpx

from cauterize import incident as records
from cauterize.errors import CauterizeError
from cauterize.http import USER_AGENT
from cauterize.logs import LOGGER
from cauterize.secret import KeySource, Secret, assert_clean

TIMEOUT_S = 5.0
RETRY_WAIT_S = 1.0

Event = Literal["start", "manual", "end"]


def notify(
    url: str | Secret,
    text: str,
    fields: dict[str, object] | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
) -> bool:
    """POST ``{"text": ...}`` (fields as ``name: value`` lines) to the webhook; True when it took it."""
    lines = [text] + [f"{name}: {value}" for name, value in (fields or {}).items() if value not in (None, "")]
    body = "\n".join(lines)
    assert_clean(body, "a notification")
    target = url.reveal() if isinstance(url, Secret) else url
    with httpx.Client(timeout=httpx.Timeout(TIMEOUT_S), transport=transport, follow_redirects=False,
                      headers={"User-Agent": USER_AGENT}) as client:
        for attempt in (1, 2):
            try:
                response = client.post(target, json={"text": body})
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            else:
                if response.status_code < 300:
                    return True
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500:
                    break  # a 4xx will not get better with a retry
            if attempt == 1:
                time.sleep(RETRY_WAIT_S)
    LOGGER.warning("notification not delivered (%s); the incident record has the details", problem)
    return False


def announce(incident_dir: str | Path, event: Event, *, transport: httpx.BaseTransport | None = None) -> bool:
    """Tell the runbook's ``notify`` webhook about an incident event; False when there is none or
    it failed (never raises: a notification must not stop a response). The message is built from
    the record alone (fingerprints and statuses)."""
    from cauterize.runbook import load_runbook

    try:
        incident = records.load(Path(incident_dir))
        loaded = load_runbook(incident.runbook_path)
        config = getattr(loaded.runbook, "notify", None)
        if config is None:
            return False
        url = KeySource.parse(config.url).load(base_dir=loaded.base_dir)
        text, fields = message(incident, event)
        return notify(url, text, fields, transport=transport)
    except CauterizeError as exc:
        LOGGER.warning("notification not sent: %s", exc.message)
        return False


def message(incident: records.Incident, event: Event) -> tuple[str, dict[str, object]]:
    """The text and fields of one notification: public identities and statuses only."""
    what = {"respond": "incident response", "drill": "rotation drill", "demo": "demo"}[incident.mode]
    key = f"{incident.old_key.redacted} ({incident.old_key.fingerprint})"
    fields: dict[str, object] = {"incident": incident.id, "provider": incident.provider, "key": key}
    if event == "start":
        return f"cauterize: {what} started for runbook '{incident.runbook}'", fields
    if event == "manual":
        waiting = {name: rec for name, rec in incident.steps.items() if rec.status == "waiting"}
        for name, rec in waiting.items():
            fields[f"waiting: {name}"] = rec.error or "a person must act"
        return f"cauterize: runbook '{incident.runbook}' waits for a person", fields
    statuses = ", ".join(f"{name} {rec.status}" for name, rec in incident.steps.items())
    fields["steps"] = statuses
    if incident.new_key is not None:
        fields["new key"] = f"{incident.new_key.redacted} ({incident.new_key.fingerprint})"
    for name, value in sorted(incident.metrics.items()):
        fields[name] = value
    outcome = "done" if incident.complete else f"incomplete (exit {incident.exit_code()})"
    return f"cauterize: {what} for runbook '{incident.runbook}' {outcome}", fields
