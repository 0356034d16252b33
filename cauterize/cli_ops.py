"""Operating commands: ``cauterize drill``, ``cauterize serve``, ``cauterize webhook``.

Registered on the main typer app by ``cauterize.cli`` (``register(app)``). Prefect is imported only
inside the commands, after ``configure_prefect`` (no result persistence, no analytics).

    drill (RUNBOOK | --sandbox) [--workdir DIR] [--json]   the rotate-first path, measured
    serve [--runbook-dir DIR]                              the four deployments, from one process
    webhook [--host H] [--port P] --runbook-dir DIR [--state-dir DIR] [--notify REF]
                                                           GitHub secret-scanning alerts -> a response
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import typer

from cauterize.errors import CauterizeError, InputError
from cauterize.logs import LOGGER, progress_to_stderr

DEFAULT_DRILL_CRON = "0 3 * * 1"  # Mondays 03:00 UTC
DEFAULT_WATCH_CRON = "0 6 * * *"  # daily 06:00 UTC, the window being the last 24 hours
#: The deployments of prefect.yaml (tests check that both say the same), served by ``cauterize serve``.
DEPLOYMENTS: dict[str, dict] = {
    "key-compromised": {
        "module": "cauterize.flows.key_compromised", "flow": "key_compromised", "cron": None,
        "parameters": {"dry_run": False},
        "description": "Respond to a leaked key: parameters are a runbook path and dry_run, never a key.",
    },
    "rotation-drill": {
        "module": "cauterize.flows.rotation_drill", "flow": "rotation_drill", "cron": DEFAULT_DRILL_CRON,
        "parameters": {"sandbox": True},
        "description": "Weekly rotation drill (the sandbox by default; a runbook's drill: key when given).",
    },
    "key-watch": {
        "module": "cauterize.flows.key_watch", "flow": "key_watch", "cron": DEFAULT_WATCH_CRON, "parameters": {},
        "description": "Daily usage watch of every runbook's organisation; starts key-compromised for a runbook "
        "with watch.auto_respond whose key alerted.",
    },
    "postmortem": {
        "module": "cauterize.flows.postmortem", "flow": "postmortem", "cron": None, "parameters": {},
        "description": "Re-render the post-mortem of an incident directory from its record.",
    },
}
KEY_COMPROMISED = "key-compromised/key-compromised"


def register(app: typer.Typer) -> None:
    """Add the three commands to the main app."""
    app.command()(drill)
    app.command()(serve)
    app.command()(webhook)


# -- drill ----------------------------------------------------------------------------------------


def drill(
    runbook: Path | None = typer.Argument(None, help="A runbook with a drill: section."),
    sandbox: bool = typer.Option(False, "--sandbox", help="Drill the built-in sandbox world instead."),
    workdir: Path | None = typer.Option(None, "--workdir", help="With --sandbox: keep the world, Prefect's "
                                        "database and the drill history here (default: a new temp dir)."),
    as_json: bool = typer.Option(False, "--json", help="Print the drill summary as JSON."),
) -> None:
    """Rotate a drill key (rotate-first), confirm the new key works everywhere, and measure
    time_to_contain_s and time_to_recover_s against the earlier drills. Exit 3 if incomplete."""
    from cauterize.flows.runner import configure_prefect

    progress_to_stderr()
    if sandbox == (runbook is not None):
        raise InputError("give either a RUNBOOK (with a drill: section) or --sandbox")
    if sandbox:
        root = workdir.expanduser().resolve() if workdir else Path(tempfile.mkdtemp(prefix="cauterize-drill-"))
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        configure_prefect(home=root / ".prefect")
        params: dict = {"sandbox": True, "workdir": str(root), "incidents_dir": str(root / "incidents")}
        LOGGER.info("sandbox drill in %s", root)
    else:
        from cauterize.drill import drill_runbook
        from cauterize.runbook import load_runbook

        if workdir is not None:
            raise InputError("--workdir applies to --sandbox drills only")
        loaded = load_runbook(runbook)
        drill_runbook(loaded)  # no drill: section -> one line, exit 2, before Prefect starts
        configure_prefect()
        params = {"runbook": str(loaded.path)}
    if sys.stdin.isatty():
        from cauterize import response
        from cauterize.cli import _ask_for_key

        response.set_manual_input(_ask_for_key)
    from cauterize.flows.runner import run_drill

    summary = run_drill(**params)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    else:
        flagged = summary["regression"]["regressed"]
        typer.echo(f"drill {'ok' if summary['ok'] else 'INCOMPLETE'}: contain {summary['time_to_contain_s']} s, "
                   f"recover {summary['time_to_recover_s']} s; regression: {', '.join(flagged) or 'none'}")
        typer.echo("steps: " + ", ".join(f"{name} {sec} s" for name, sec in summary["steps"].items()))
    typer.echo(f"drill report: {Path(summary['incident']) / 'drill.md'}", err=True)
    raise typer.Exit(summary["exit_code"])


# -- serve ----------------------------------------------------------------------------------------


def build_deployments(runbook_dir: Path | None = None) -> list:
    """The deployments to serve (see ``cauterize.flows.serving.build_deployments``)."""
    from cauterize.flows.serving import build_deployments as build

    return build(DEPLOYMENTS, runbook_dir)


def serve(
    runbook_dir: Path | None = typer.Option(None, "--runbook-dir", help="Also schedule a drill for every "
                                            "runbook here with a drill: section, on its own schedule."),
) -> None:
    """Serve the key-compromised, rotation-drill, key-watch and postmortem deployments (schedules included)
    from this process, against the Prefect server in PREFECT_API_URL."""
    from cauterize.flows.runner import configure_prefect

    progress_to_stderr()
    configure_prefect()
    api = _api_url()
    if not api:
        raise InputError(
            "cauterize serve needs a Prefect server: start one with `prefect server start` and "
            "export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    from cauterize.flows.serving import serve_deployments

    deployments = build_deployments(runbook_dir)
    LOGGER.info("serving %s against %s", ", ".join(f"{d.flow_name}/{d.name}" for d in deployments), api)
    serve_deployments(deployments)


def _api_url() -> str | None:
    from cauterize.flows.serving import api_url

    return api_url()


# -- webhook --------------------------------------------------------------------------------------


def webhook(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (put a TLS proxy in front)."),
    port: int = typer.Option(8765, "--port", help="Port to listen on (0: any free port, named on stderr)."),
    runbook_dir: Path = typer.Option(..., "--runbook-dir", help="Runbooks with a triggers: section."),
    state_dir: Path | None = typer.Option(None, "--state-dir", help="Where the deliveries acted on are remembered "
                                          "for 7 days (default: RUNBOOK_DIR/.cauterize-webhook)."),
    notify: str | None = typer.Option(None, "--notify", help="Source reference of the Slack-compatible webhook told "
                                      "about alerts no runbook answers (default: env:CAUTERIZE_NOTIFY_URL when set)."),
) -> None:
    """Receive GitHub secret-scanning alerts on POST /github (signed with GITHUB_WEBHOOK_SECRET) and
    start the key-compromised response of the matching runbook: the deployment when PREFECT_API_URL
    names a server, otherwise in this process. A redelivery, or an alert for a key whose incident is
    under way or contained, starts nothing. SIGTERM or SIGINT stops the receiver and everything it
    started: exit 0, or 130 when a response in this process was interrupted (a rerun resumes it)."""
    from cauterize import interrupts
    from cauterize.flows.runner import configure_prefect
    from cauterize.secret import KeySource, Secret
    from cauterize.webhook import Receiver
    from cauterize.webhook import serve as serve_http

    progress_to_stderr()
    value = os.environ.get("GITHUB_WEBHOOK_SECRET", "")
    if not value.strip():
        raise InputError("set GITHUB_WEBHOOK_SECRET to the secret of the GitHub webhook (it signs every delivery)")
    if not runbook_dir.is_dir():
        raise InputError(f"--runbook-dir {runbook_dir}: not a directory")
    secret = Secret(value)  # registered for log redaction
    if notify is None and os.environ.get(DEFAULT_NOTIFY_ENV, "").strip():
        notify = f"env:{DEFAULT_NOTIFY_ENV}"
    notify_url = KeySource.parse(notify).load(base_dir=runbook_dir) if notify else None  # a URL is a credential
    configure_prefect()
    api = _api_url()
    start = DeploymentStarter() if api else InProcessStarter()
    receiver = Receiver(secret.reveal(), runbook_dir, start, state_dir=state_dir, notify=notify_url,
                        running=start.running if isinstance(start, InProcessStarter) else None)
    try:
        served = serve_http(receiver, host, port)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    interrupts.install(STOP_HINT)  # SIGTERM/SIGINT: Interrupted here, and every response thread's check() raises
    LOGGER.info("listening on %s/github; responses start %s; deliveries remembered in %s%s", served.url,
                f"as {KEY_COMPROMISED} runs on {api}" if api else "in this process (no PREFECT_API_URL)",
                receiver.deliveries.path,
                "" if notify_url else f"; unmatched alerts are only logged (set {DEFAULT_NOTIFY_ENV})")
    try:
        while True:
            time.sleep(0.5)
    except interrupts.Interrupted:
        pass
    served.close()
    interrupted = start.stop(timeout_s=1.5) if isinstance(start, InProcessStarter) else []
    if interrupted:  # they recorded their step 'interrupted' (or the rerun finds it running): resumable
        interrupts.say()
        interrupts.exit_now(interrupts.EXIT_CODE)
    typer.echo(f"cauterize: webhook stopped ({interrupts.signal_name(interrupts.received())}); no response was "
               "under way in this process", err=True)
    interrupts.exit_now(0)  # the Prefect server this process started, and any other child, go with it


#: the default notification target of the receiver (alerts no runbook answers)
DEFAULT_NOTIFY_ENV = "CAUTERIZE_NOTIFY_URL"
STOP_HINT = "the webhook stopped; rerun `cauterize respond RUNBOOK` to resume the response it ran"


class DeploymentStarter:
    """Start ``key-compromised/key-compromised`` on the Prefect server; returns at once."""

    def __call__(self, runbook: Path, alert) -> str:
        from cauterize.flows.serving import start_deployment

        return start_deployment(KEY_COMPROMISED, runbook, idempotency_key=alert.idempotency_key,
                                tags=["github-secret-scanning"])


class InProcessStarter:
    """Run the response in a thread of this process (Prefect's ephemeral server); one at a time
    per runbook. Containment (revoke-first) happens before Prefect starts, as in ``respond``.
    The threads are daemons: ``stop()`` names the responses still under way, which a stopping
    receiver leaves to their records (a rerun resumes them)."""

    def __init__(self) -> None:
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def __call__(self, runbook: Path, alert) -> str:
        from cauterize import interrupts, response
        from cauterize.runbook import load_runbook

        if interrupts.received() is not None:
            raise CauterizeError("the receiver is stopping", remediation="Redeliver the alert once it runs again.",
                                 retryable=True)
        path = str(runbook.resolve())
        response.Context.check_key_source(load_runbook(path))  # a bad source fails the delivery now
        with self._lock:
            if path in self._running:
                return "already running in this process"
            self._running.add(path)
        thread = threading.Thread(target=self._run, args=(path, time.monotonic()), name=f"respond-{runbook.stem}",
                                  daemon=True)
        self.threads = [*(t for t in self.threads if t.is_alive()), thread]
        thread.start()
        return f"in process ({thread.name})"

    def running(self, runbook: Path) -> bool:
        """Whether a response of this runbook runs in this process now."""
        with self._lock:
            return str(Path(runbook).resolve()) in self._running

    def stop(self, timeout_s: float = 1.5) -> list[str]:
        """After an interrupt: the runbooks whose responses were under way (file names), once their
        threads had ``timeout_s`` to record their step ``interrupted``."""
        with self._lock:
            under_way = sorted(Path(path).name for path in self._running)
        deadline = time.monotonic() + timeout_s
        for thread in list(self.threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        return under_way

    def _run(self, path: str, started: float) -> None:
        from cauterize import response
        from cauterize.flows.runner import run_flow
        from cauterize.runbook import load_runbook

        try:
            if load_runbook(path).runbook.policy.order == "revoke-first" and hasattr(response, "contain"):
                response.contain(path, started=started)
            incident, directory = run_flow(path, mode="respond")
            LOGGER.info("webhook: response %s finished, exit %s", directory.name, incident.exit_code())
        except CauterizeError as exc:
            LOGGER.error("webhook: response of %s stopped: %s", Path(path).name, exc.one_line())
        except Exception as exc:  # noqa: BLE001  (the last boundary of a background thread; the record says more)
            LOGGER.error("webhook: response of %s crashed (%s)", Path(path).name, type(exc).__name__)
        finally:
            with self._lock:
                self._running.discard(path)
