"""The alert receiver: GitHub secret-scanning alerts start the key-compromised response.

Self-hosted Prefect has no incoming webhooks; this small HTTP server fills the gap.

    POST /github    X-Hub-Signature-256 checked against GITHUB_WEBHOOK_SECRET (HMAC-SHA256,
                    constant-time): 401 when missing or wrong, before the body is even parsed.
                    X-GitHub-Event: secret_scanning_alert, action created | reopened |
                    publicly_leaked: the alert's secret_type and repository pick a runbook in the
                    runbook directory (its ``triggers:`` section), and the response starts: 202.
                    ping: 200. Other events and actions: 200, ignored.
                    No runbook matches: 422; several match equally well: 409 (none is started);
                    the response could not be started: 503.

The leaked key never comes from the payload: the runbook's source reference supplies it. The
receiver reads only ``action``, ``alert.number``, ``alert.secret_type``, ``alert.html_url`` and
``repository.full_name``; anything else in the payload (``alert.secret`` included, if GitHub ever
sends it) is neither read, logged nor passed on.

How the response starts is injected (``Starter``): through the Prefect client on a server, or a
background thread when none is configured; ``cauterize.cli_ops`` provides both.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cauterize.errors import CauterizeError
from cauterize.logs import LOGGER

MAX_BODY = 1 << 20  # GitHub caps webhook payloads at 25 MB; an alert is a few KB
ACCEPTED_ACTIONS = ("created", "reopened", "publicly_leaked")
#: GitHub's documented secret types per provider (docs: "Supported secret scanning patterns"),
#: used when a runbook's ``triggers`` names repositories but no ``github_secret_types``.
GITHUB_SECRET_TYPES: dict[str, tuple[str, ...]] = {
    "openai": ("openai_api_key",),
    "anthropic": ("anthropic_api_key", "anthropic_admin_api_key"),
    "google": ("google_api_key", "google_gemini_api_key"),
    "azure-openai": ("azure_openai_key",),
    "cohere": ("cohere_api_key",),
}

Reply = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class Alert:
    """What the receiver keeps of an alert: public metadata only."""

    action: str
    secret_type: str
    repository: str
    number: int | None = None
    url: str | None = None
    delivery: str | None = None

    @property
    def idempotency_key(self) -> str:
        """One response per delivery (GitHub redelivers with the same ``X-GitHub-Delivery``)."""
        return f"github:{self.repository}#{self.number}:{self.action}:{self.delivery or ''}"


#: Starts the response for a runbook; returns a one-line description (a flow run id...).
Starter = Callable[[Path, Alert], str]


class NoRunbook(CauterizeError):
    exit_code = 2


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    """``X-Hub-Signature-256: sha256=<hex HMAC of the raw body>``, compared in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode())


def parse_alert(payload: Mapping[str, Any], delivery: str | None = None) -> Alert:
    """The alert's public fields; TypeError when the payload is not a secret-scanning alert."""
    if not isinstance(payload, Mapping):
        raise TypeError("the payload is not a JSON object")
    alert, repository = payload.get("alert"), payload.get("repository")
    if not isinstance(alert, Mapping) or not isinstance(repository, Mapping):
        raise TypeError("the payload has no alert or repository object")
    secret_type, name = alert.get("secret_type"), repository.get("full_name")
    if not isinstance(secret_type, str) or not isinstance(name, str) or "/" not in name:
        raise TypeError("alert.secret_type or repository.full_name is missing")
    number = alert.get("number")
    url = alert.get("html_url")
    return Alert(
        action=str(payload.get("action") or ""),
        secret_type=secret_type,
        repository=name,
        number=number if isinstance(number, int) else None,
        url=url if isinstance(url, str) else None,
        delivery=delivery,
    )


def match_runbooks(directory: Path, alert: Alert) -> list[Path]:
    """The runbooks of ``directory`` whose ``triggers`` accept the alert, most specific first
    (a repository named exactly > a pattern > any repository). Only the most specific level is
    returned: one path is a match, several are ambiguous. Invalid runbooks are skipped (logged)."""
    from cauterize.runbook import load_runbook

    levels: dict[int, list[Path]] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            runbook = load_runbook(path).runbook
        except CauterizeError as exc:
            LOGGER.warning("webhook: skipped %s (%s)", path.name, exc.message)
            continue
        level = _specificity(runbook, alert)
        if level is not None:
            levels.setdefault(level, []).append(path)
    return levels[max(levels)] if levels else []


def _specificity(runbook: Any, alert: Alert) -> int | None:
    triggers = getattr(runbook, "triggers", None)
    if triggers is None:
        return None  # a runbook answers alerts only when it says so
    types = triggers.github_secret_types or GITHUB_SECRET_TYPES.get(runbook.key.provider, ())
    if alert.secret_type not in types:
        return None
    if not triggers.repositories:
        return 0
    repo = alert.repository.lower()
    levels = [2 if pattern.lower() == repo else 1 for pattern in triggers.repositories
              if fnmatch.fnmatchcase(repo, pattern.lower())]
    return max(levels) if levels else None


class Receiver:
    """The webhook's logic, without the HTTP server: ``handle(...) -> (status, JSON body)``."""

    def __init__(self, secret: str | bytes, runbook_dir: Path, start: Starter):
        if not secret:
            raise ValueError("the webhook secret is empty")
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self.runbook_dir = Path(runbook_dir)
        self._start = start

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        headers = {name.lower(): value for name, value in headers.items()}
        if path.split("?", 1)[0].rstrip("/") != "/github":
            return 404, {"error": "not found"}
        if method != "POST":
            return 405, {"error": "POST only"}
        if len(body) > MAX_BODY:
            return 413, {"error": "payload too large"}
        if not signature_ok(self._secret, body, headers.get("x-hub-signature-256")):
            return 401, {"error": "bad or missing X-Hub-Signature-256"}
        event = headers.get("x-github-event", "")
        if event == "ping":
            return 200, {"status": "pong"}
        if event != "secret_scanning_alert":
            return 200, {"status": "ignored", "reason": f"event {event or '(none)'} is not handled"}
        try:
            alert = parse_alert(json.loads(body), headers.get("x-github-delivery"))
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            return 400, {"error": f"not a secret_scanning_alert payload: {type(exc).__name__}"}
        if alert.action not in ACCEPTED_ACTIONS:
            return 200, {"status": "ignored", "reason": f"action {alert.action} does not start a response"}
        return self._dispatch(alert)

    def _dispatch(self, alert: Alert) -> Reply:
        where = f"{alert.secret_type} in {alert.repository} (alert #{alert.number})"
        found = match_runbooks(self.runbook_dir, alert)
        if not found:
            LOGGER.warning("webhook: no runbook answers %s", where)
            return 422, {"status": "no-runbook", "alert": where}
        if len(found) > 1:
            names = [path.name for path in found]
            LOGGER.warning("webhook: %s matches %s equally; nothing started", where, ", ".join(names))
            return 409, {"status": "ambiguous", "alert": where, "runbooks": names}
        try:
            started = self._start(found[0], alert)
        except Exception as exc:  # noqa: BLE001  (the sender must learn it failed; GitHub can redeliver)
            detail = exc.one_line() if isinstance(exc, CauterizeError) else type(exc).__name__
            LOGGER.error("webhook: could not start the response to %s with %s: %s", where, found[0].name, detail)
            return 503, {"status": "error", "alert": where, "runbook": found[0].name, "error": detail}
        LOGGER.info("webhook: %s -> %s: %s", where, found[0].name, started)
        return 202, {"status": "started", "alert": where, "runbook": found[0].name, "run": started}


@dataclass
class ServedReceiver:
    url: str
    server: ThreadingHTTPServer
    thread: threading.Thread | None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)


def serve(receiver: Receiver, host: str = "127.0.0.1", port: int = 0, *, background: bool = True) -> ServedReceiver:
    """Serve the receiver over HTTP. ``background``: in a daemon thread (tests); otherwise the
    caller runs ``served.server.serve_forever()`` in the foreground (the CLI)."""
    server = ThreadingHTTPServer((host, port), _handler(receiver))
    server.daemon_threads = True
    url = f"http://{host}:{server.server_address[1]}"
    if not background:
        return ServedReceiver(url, server, None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                              name=f"webhook-{server.server_address[1]}")
    thread.start()
    return ServedReceiver(url, server, thread)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "cauterize-webhook"
        sys_version = ""

        def _handle(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                status, reply = 413, {"error": "payload too large or no length"}
                self.close_connection = True
            else:
                body = self.rfile.read(length) if length else b""
                status, reply = receiver.handle(self.command, self.path, dict(self.headers.items()), body)
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        def log_message(self, format: str, *args: object) -> None:
            return  # one line per delivery is logged by the receiver, never the request line

    return Handler
