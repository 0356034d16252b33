"""The alert receiver: GitHub secret-scanning alerts start the key-compromised response.

Self-hosted Prefect has no incoming webhooks; this small HTTP server fills the gap.

    POST /github    X-Hub-Signature-256 checked against GITHUB_WEBHOOK_SECRET (HMAC-SHA256,
                    constant-time): 401 when missing or wrong, before the body is even parsed.
                    X-GitHub-Event: secret_scanning_alert, action created | reopened |
                    publicly_leaked: the alert's secret_type and repository pick a runbook in the
                    runbook directory (its ``triggers:`` section), and the response starts: 202.
                    ping: 200. Other events and actions: 200, ignored. Not JSON or not an alert: 400.

One key, one incident (DESIGN.md section 2), whatever GitHub sends:

    a delivery GUID (X-GitHub-Delivery) acted on before     200 duplicate, nothing started
      (remembered on disk for 7 days: ``cauterize.webhook_dedup``)
    the key's incident is complete and verified             200 already-contained, nothing started
    the key's incident is under way (its lock is held, the  202 in-progress, nothing started
      response runs in this process, or was started here
      and its incident is not open yet)
    the key's incident is unfinished and nobody is on it    202 started (the incident is resumed)
    no runbook answers the alert                            202 unmatched, logged, told to the default
    several runbooks answer it equally well                 202 ambiguous   notify target; none started
    the response could not be started                       503 (GitHub can redeliver it)

The key is identified by its fingerprint: the runbook's key, read from its source reference, and the
alert's ``secret`` when GitHub sends one (it is fingerprinted as the payload is parsed and dropped:
never stored, logged or passed on). An alert whose secret is not the runbook's key, and for which no
incident exists, is unmatched: starting would revoke another key. Otherwise the receiver reads only
``action``, ``alert.number``, ``alert.secret_type``, ``alert.html_url`` and ``repository.full_name``.

How the response starts is injected (``Starter``): through the Prefect client on a server, or a
background thread when none is configured; ``cauterize.cli_ops`` provides both.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cauterize.errors import CauterizeError
from cauterize.logs import LOGGER
from cauterize.secret import Secret, fingerprint_of
from cauterize.webhook_dedup import STATE_DIR_NAME, DeliveryLog, identify, latest_incident, lock_holder

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

#: A response started here but whose incident is not open yet counts as under way this long (a
#: deployment's run may wait for a worker); after it, a new alert for the key starts it again.
PENDING = timedelta(minutes=10)
#: what a delivery GUID is remembered with: the answers that decided about a response
REMEMBERED = ("started", "in-progress", "already-contained")

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
    #: the fingerprint of ``alert.secret`` when GitHub sent it (the value itself is not kept)
    fingerprint: str | None = None

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
    leaked = alert.get("secret")
    return Alert(
        action=str(payload.get("action") or ""),
        secret_type=secret_type,
        repository=name,
        number=number if isinstance(number, int) else None,
        url=url if isinstance(url, str) else None,
        delivery=delivery,
        fingerprint=fingerprint_of(leaked.strip()) if isinstance(leaked, str) and leaked.strip() else None,
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
    """The webhook's logic, without the HTTP server: ``handle(...) -> (status, JSON body)``.

    ``state_dir`` holds the delivery log (default ``<runbook_dir>/.cauterize-webhook``); ``notify``
    is the default notification target (a Slack-compatible webhook URL) told about alerts no runbook
    answers; ``running(runbook)`` says whether a response of that runbook runs in this process."""

    def __init__(self, secret: str | bytes, runbook_dir: Path, start: Starter, *, state_dir: Path | None = None,
                 notify: str | Secret | None = None, running: Callable[[Path], bool] | None = None):
        if not secret:
            raise ValueError("the webhook secret is empty")
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self.runbook_dir = Path(runbook_dir)
        self._start = start
        self._notify = notify
        self._running = running
        self.deliveries = DeliveryLog(Path(state_dir) if state_dir else self.runbook_dir / STATE_DIR_NAME)
        self._decide = threading.Lock()  # one decision at a time: two deliveries of one key start one response

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
            alert = parse_alert(json.loads(body), headers.get("x-github-delivery") or None)
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            return 400, {"error": f"not a secret_scanning_alert payload: {type(exc).__name__}"}
        if alert.action not in ACCEPTED_ACTIONS:
            return 200, {"status": "ignored", "reason": f"action {alert.action} does not start a response"}
        with self._decide:
            if alert.delivery and (seen := self.deliveries.get(alert.delivery)) is not None:
                return self._duplicate(alert, seen)
            status, reply = self._dispatch(alert)
            fingerprint = reply.pop("_fingerprint", None)
            if alert.delivery and reply.get("status") in REMEMBERED:
                self.deliveries.remember({
                    "delivery": alert.delivery, "alert": f"{alert.repository}#{alert.number}", "action": alert.action,
                    "status": reply["status"], "runbook": reply.get("runbook"), "fingerprint": fingerprint,
                    "incident": reply.get("incident"), "run": reply.get("run"),
                })
            return status, reply

    def _dispatch(self, alert: Alert) -> Reply:
        where = f"{alert.secret_type} in {alert.repository} (alert #{alert.number})"
        found = match_runbooks(self.runbook_dir, alert)
        if not found:
            return self._unmatched(alert, where, "no runbook's triggers accept it")
        if len(found) > 1:
            names = [path.name for path in found]
            LOGGER.warning("webhook: %s matches %s equally; nothing started", where, ", ".join(names))
            notified = self._tell(f"cauterize: a secret-scanning alert matches several runbooks equally "
                                  f"({', '.join(names)}); nothing was started", alert, "ambiguous")
            return 202, {"status": "ambiguous", "alert": where, "runbooks": names, "notified": notified}
        runbook = found[0]
        try:
            who = identify(runbook, alert.fingerprint)
        except CauterizeError as exc:
            LOGGER.error("webhook: %s: %s", runbook.name, exc.one_line())
            return 503, {"status": "error", "alert": where, "runbook": runbook.name, "error": exc.one_line()}
        answer: dict[str, Any] = {"alert": where, "runbook": runbook.name, "_fingerprint": who.fingerprint}
        latest = latest_incident(who)
        if latest is not None:
            directory, incident = latest
            answer["incident"] = directory.name
            if incident.complete and incident.verified:
                LOGGER.info("webhook: %s: %s is already contained (incident %s); nothing started",
                            where, who.fingerprint, directory.name)
                return 200, {"status": "already-contained", **answer}
            if self._busy(runbook, directory):
                LOGGER.info("webhook: %s: incident %s is under way; nothing started", where, directory.name)
                return 202, {"status": "in-progress", **answer}
        else:
            if alert.fingerprint and who.key and alert.fingerprint != who.key:
                return self._unmatched(alert, where, f"the key of {runbook.name} is not the alert's secret "
                                                     f"({who.key}, the alert's {alert.fingerprint})")
            known = who.fingerprints or {None}  # unknown: any response of the runbook started here counts
            pending = None if self._running else self.deliveries.recent(runbook.name, known, PENDING)
            if self._busy(runbook, None) or pending is not None:
                LOGGER.info("webhook: %s: a response of %s is under way; nothing started", where, runbook.name)
                return 202, {"status": "in-progress", **answer, "incident": None,
                             "run": pending.get("run") if pending else None}
        try:
            started = self._start(runbook, alert)
        except Exception as exc:  # noqa: BLE001  (the sender must learn it failed; GitHub can redeliver)
            detail = exc.one_line() if isinstance(exc, CauterizeError) else type(exc).__name__
            LOGGER.error("webhook: could not start the response to %s with %s: %s", where, runbook.name, detail)
            return 503, {"status": "error", "alert": where, "runbook": runbook.name, "error": detail}
        LOGGER.info("webhook: %s -> %s: %s", where, runbook.name, started)
        return 202, {"status": "started", "incident": None, **answer, "run": started}

    def _duplicate(self, alert: Alert, seen: dict[str, Any]) -> Reply:
        incident = seen.get("incident")
        if incident is None and seen.get("runbook"):
            try:
                latest = latest_incident(identify(self.runbook_dir / seen["runbook"], read_key=False),
                                         fingerprints={seen.get("fingerprint")})
            except CauterizeError:
                latest = None
            incident = latest[0].name if latest else None
        LOGGER.info("webhook: delivery %s was answered before (%s); nothing started", alert.delivery, seen.get("status"))
        return 200, {"status": "duplicate", "delivery": alert.delivery, "incident": incident,
                     "runbook": seen.get("runbook"), "first": seen.get("status")}

    def _unmatched(self, alert: Alert, where: str, reason: str) -> Reply:
        LOGGER.warning("webhook: %s: %s; nothing started", where, reason)
        notified = self._tell("cauterize: a secret-scanning alert matches no runbook; nothing was started",
                              alert, reason)
        return 202, {"status": "unmatched", "alert": where, "reason": reason, "notified": notified}

    def _tell(self, text: str, alert: Alert, reason: str) -> bool:
        """Tell the default notify target, in the background (GitHub waits 10 s for an answer)."""
        if self._notify is None:
            return False
        from cauterize.notify import notify

        fields = {"repository": alert.repository, "secret type": alert.secret_type, "alert": alert.url,
                  "action": alert.action, "reason": reason, "delivery": alert.delivery}
        threading.Thread(target=notify, args=(self._notify, text, fields), daemon=True, name="webhook-notify").start()
        return True

    def _busy(self, runbook: Path, directory: Path | None) -> bool:
        """A responder is on it: the incident's lock is held by a live process (this one counts
        only while its response of the runbook runs), or this process runs the runbook."""
        if self._running is not None and self._running(runbook):
            return True
        holder = lock_holder(directory) if directory is not None else None
        return holder is not None and holder != os.getpid()


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
                try:
                    status, reply = receiver.handle(self.command, self.path, dict(self.headers.items()), body)
                except CauterizeError as exc:  # the delivery log refused (a planted link...): say so, once
                    LOGGER.error("webhook: %s", exc.one_line())
                    status, reply = 500, {"status": "error", "error": exc.message}
                except Exception as exc:  # noqa: BLE001  (the last boundary of a request: no traceback)
                    LOGGER.error("webhook: internal error (%s)", type(exc).__name__)
                    status, reply = 500, {"status": "error", "error": f"internal error: {type(exc).__name__}"}
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
