"""The key-watch flow (daily): usage of every key the runbooks' organisations hold, each against its
own baseline, alerts to the runbooks' webhooks; for a runbook that opted in with
``watch: {auto_respond: true}`` and whose key alerted, ``key-compromised`` is started. By default a
person decides: the alert is all that happens.

It only orchestrates (``cauterize.watchlist`` does the work). A response is started as a run of the
``key-compromised`` deployment when the Prefect server has it (``cauterize serve``), idempotent per
key and day; without that deployment it runs here as a subflow.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from cauterize.flows.key_compromised import key_compromised
from cauterize.tasks.watch import watch_task
from prefect import flow

from cauterize.errors import CauterizeError, InputError
from cauterize.logs import LOGGER, install_filter

RUNBOOK_DIR_ENV = "CAUTERIZE_RUNBOOK_DIR"


@flow(name="key-watch", flow_run_name="key-watch", persist_result=False, log_prints=False)
def key_watch(
    runbook_dir: str | None = None,
    since: str = "24h",
    bucket: str = "1h",
    baseline_days: int = 14,
    incidents_dir: str | None = None,
) -> dict:
    """Watch the runbooks of ``runbook_dir`` (else ``$CAUTERIZE_RUNBOOK_DIR``). Returns the alerts'
    count, the keys checked and the responses started; never a key value."""
    install_filter("prefect", "cauterize")
    directory = runbook_dir or os.environ.get(RUNBOOK_DIR_ENV)
    if not directory:
        raise InputError(f"key-watch needs the runbook_dir parameter or {RUNBOOK_DIR_ENV}: the runbooks it watches")
    result = watch_task(directory, since, bucket, baseline_days)
    fingerprints = {item["path"]: item["fingerprint"] for item in result["runbooks"]}
    started = [_start(Path(path), fingerprints.get(path), incidents_dir) for path in result["to_start"]]
    return {
        "alerts": len(result["alerts"]),
        "checked_keys": result["checked_keys"],
        "started": started,
        "errors": result["errors"],
    }


def _start(runbook: Path, fingerprint: str | None, incidents_dir: str | None) -> dict:
    """key-compromised for ``runbook``: the deployment's run when there is one, else a subflow here."""
    from cauterize.flows.serving import start_deployment

    from cauterize.cli_ops import KEY_COMPROMISED

    day = datetime.now(UTC).date().isoformat()
    try:
        run = start_deployment(KEY_COMPROMISED, runbook, idempotency_key=f"key-watch:{fingerprint}:{day}",
                               tags=["key-watch", "auto-respond"])
    except CauterizeError:
        LOGGER.info("key-watch: no key-compromised deployment; responding to %s in this run", runbook.name)
        outcome = key_compromised(runbook=str(runbook), mode="respond", incidents_dir=incidents_dir,
                                  return_state=True)
        result = outcome.result(raise_on_failure=False)  # Completed or Failed (incomplete): the same summary
        return {"runbook": str(runbook), "started": "subflow",
                "incident": result.get("incident") if isinstance(result, dict) else None,
                "exit_code": result.get("exit_code") if isinstance(result, dict) else 3}
    return {"runbook": str(runbook), "started": run}
