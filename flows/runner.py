"""Run the key-compromised flow in this process (Prefect's ephemeral server unless
``PREFECT_API_URL`` points at one), with Prefect configured so that no secret can persist."""

from __future__ import annotations

import os
from pathlib import Path

#: Set before Prefect is imported: no result persistence, no analytics, quiet console.
PREFECT_DEFAULTS = {
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}


def configure_prefect(home: Path | None = None) -> None:
    """Apply the defaults (an explicit setting in the environment wins), and a private
    ``PREFECT_HOME`` when given. Must run before the first ``import prefect``."""
    os.umask(0o077)  # every file this run creates (Prefect's database included) is private
    if not os.environ.get("PREFECT_API_URL", "x").strip():
        del os.environ["PREFECT_API_URL"]  # set but empty: no server (Prefect's event client fails on "")
    for name, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if home is not None:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.environ["PREFECT_HOME"] = str(home)
        os.environ.pop("PREFECT_API_URL", None)


def task_runner(concurrency: int):
    """Threads, at most ``concurrency`` tasks at once (locate sources are mostly git and network
    I/O). ``CAUTERIZE_TASK_RUNNER=dask`` runs them on a local Dask cluster instead, and
    ``CAUTERIZE_DASK_ADDRESS`` on an existing one, for organisations with thousands of repositories
    (needs the ``dask`` extra: prefect-dask)."""
    mode = os.environ.get("CAUTERIZE_TASK_RUNNER", "threads")
    address = os.environ.get("CAUTERIZE_DASK_ADDRESS")
    if mode == "dask" or address:
        from prefect_dask import DaskTaskRunner

        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": min(concurrency, os.cpu_count() or 1),
                                              "threads_per_worker": 2, "processes": True,
                                              "dashboard_address": ":0"})
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=concurrency)


def start_ephemeral_server() -> None:
    """Without ``PREFECT_API_URL``, start Prefect's ephemeral server now (it would start at the first
    API call) with SIGINT blocked in it: a terminal's Ctrl-C then reaches this process only, which
    stops cleanly and kills the server at the end (``interrupts``). Left to itself the server would
    shut down too, logging a screenful of errors as its services stop. The same server object is
    the one Prefect's client uses afterwards (one per process)."""
    import signal

    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # inherited by the child
    try:
        SubprocessASGIServer().start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def run_flow(runbook: str, *, dry_run: bool = False, mode: str = "respond", incidents_dir: str | None = None,
             prefect_home: Path | None = None):
    """Run ``key-compromised`` and return (incident, incident_dir), read from the record: the flow run
    ends Failed when the response is incomplete, and its result is the same either way."""
    configure_prefect(prefect_home)
    start_ephemeral_server()
    from cauterize.flows.key_compromised import key_compromised
    from cauterize.tasks.states import result_of

    from cauterize import incident as records

    state = key_compromised(runbook=runbook, dry_run=dry_run, mode=mode, incidents_dir=incidents_dir,
                            return_state=True)
    directory = Path(result_of(state)["incident"])
    return records.load(directory), directory


def run_drill(**parameters) -> dict:
    """Run ``rotation-drill`` and return its summary (Completed or Failed: the same summary)."""
    start_ephemeral_server()
    from cauterize.flows.rotation_drill import rotation_drill
    from cauterize.tasks.states import result_of

    return result_of(rotation_drill(**parameters, return_state=True))
