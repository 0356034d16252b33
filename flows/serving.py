"""Prefect's side of `cauterize serve` and `cauterize webhook`: building and serving the
deployments, reading the API URL, starting a deployment run. Kept in flows/ so the core never
imports Prefect; the CLI imports this lazily."""

from __future__ import annotations

from pathlib import Path

from cauterize.errors import CauterizeError
from cauterize.logs import LOGGER


def build_deployments(specs: dict, runbook_dir: Path | None = None) -> list:
    """The deployments as Prefect ``RunnerDeployment``s (module entrypoints: the served process
    imports the installed package, whatever its working directory), plus one ``drill-<name>``
    deployment on its own schedule for every runbook of ``runbook_dir`` with a ``drill:`` section;
    ``key-watch`` then watches the runbooks of ``runbook_dir``."""
    import importlib

    from prefect.deployments.runner import EntrypointType

    deployments = []
    for name, spec in specs.items():
        flow = getattr(importlib.import_module(spec["module"]), spec["flow"])
        parameters = dict(spec["parameters"])
        if name == "key-watch" and runbook_dir is not None:
            parameters["runbook_dir"] = str(runbook_dir.resolve())  # the runbooks it watches
        deployments.append(flow.to_deployment(
            name=name, cron=spec["cron"], parameters=parameters, description=spec["description"],
            tags=["cauterize"], entrypoint_type=EntrypointType.MODULE_PATH,
        ))
    if runbook_dir is not None:
        from cauterize.flows.rotation_drill import rotation_drill

        from cauterize.runbook import load_runbook

        for path in sorted([*runbook_dir.glob("*.yaml"), *runbook_dir.glob("*.yml")]):
            try:
                runbook = load_runbook(path).runbook
            except CauterizeError as exc:
                LOGGER.warning("serve: skipped %s (%s)", path.name, exc.message)
                continue
            config = getattr(runbook, "drill", None)
            if config is not None:
                deployments.append(rotation_drill.to_deployment(
                    name=f"drill-{runbook.name}", cron=config.schedule, parameters={"runbook": str(path.resolve())},
                    description=f"Rotation drill of runbook {runbook.name}", tags=["cauterize", "drill"],
                    entrypoint_type=EntrypointType.MODULE_PATH,
                ))
    return deployments


def serve_deployments(deployments: list) -> None:
    from prefect import serve as prefect_serve

    prefect_serve(*deployments, print_starting_message=False)


def api_url() -> str | None:
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def start_deployment(name: str, runbook: Path, *, idempotency_key: str, tags: list[str]) -> str:
    """Start the deployment for ``runbook`` and return at once (idempotent per ``idempotency_key``)."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        run = run_deployment(
            name=name, parameters={"runbook": str(runbook.resolve())}, timeout=0,
            idempotency_key=idempotency_key, tags=tags, as_subflow=False,
        )
    except ObjectNotFound:
        raise CauterizeError(
            f"no deployment {name} on the Prefect server",
            remediation="Run `cauterize serve` (or `prefect deploy`) against the same server.",
        ) from None
    return f"flow run {run.id}"
