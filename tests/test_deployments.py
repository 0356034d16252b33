"""The deployments: prefect.yaml, and `cauterize serve` against a real Prefect server on loopback.

The server fixture is shared with test_pause.py (one server per test session: its start-up is the
slow part). Its database lives in a temporary PREFECT_HOME, analytics and the UI are off.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SERVER_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_UI_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    # Services the tests do not need: a faster start, less load.
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_REPOSSESSOR_ENABLED": "false",
}


@dataclass
class PrefectServer:
    home: Path
    api_url: str
    process: subprocess.Popen

    def env(self, **extra: str) -> dict[str, str]:
        """An environment for a child process that talks to this server."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        return {**env, **SERVER_ENV, "PREFECT_HOME": str(self.home), "PREFECT_API_URL": self.api_url, **extra}

    @property
    def database(self) -> Path:
        return self.home / "prefect.db"

    def stop(self) -> None:
        _stop_group(self.process)


_SERVER: dict[str, PrefectServer] = {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _wait_for(check, timeout: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {process.returncode}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory, request) -> PrefectServer:
    return shared_server(tmp_path_factory, request)


def shared_server(tmp_path_factory, request) -> PrefectServer:
    """`prefect server start` on a free loopback port, once per session (test_pause.py uses it too)."""
    if "server" not in _SERVER:
        home = tmp_path_factory.mktemp("prefect-server")
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(SERVER_ENV, PREFECT_HOME=str(home))
        log = open(home / "server.log", "wb")  # noqa: SIM115  (closed with the process)
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        server = PrefectServer(home, f"http://127.0.0.1:{port}/api", process)
        request.session.config.add_cleanup(server.stop)
        request.session.config.add_cleanup(log.close)

        def healthy() -> bool:
            try:
                return httpx.get(f"{server.api_url}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        _wait_for(healthy, 90, "the Prefect server", process)
        _SERVER["server"] = server
    return _SERVER["server"]


def prefect_client(server: PrefectServer):
    """A sync Prefect client of this server, whatever the test process's own settings."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class _Client:
        def __enter__(self):
            self._settings = temporary_settings({PREFECT_API_URL: server.api_url})
            self._settings.__enter__()
            self._client = get_client(sync_client=True)
            return self._client.__enter__()

        def __exit__(self, *exc):
            self._client.__exit__(*exc)
            self._settings.__exit__(*exc)

    return _Client()


# -- prefect.yaml ---------------------------------------------------------------------------------


def test_prefect_yaml_declares_the_four_deployments():
    from cauterize.cli_ops import DEPLOYMENTS

    document = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {item["name"]: item for item in document["deployments"]}
    assert set(deployments) == {"key-compromised", "rotation-drill", "key-watch", "postmortem"} == set(DEPLOYMENTS)
    for name, item in deployments.items():
        path, function = item["entrypoint"].split(":")
        spec = DEPLOYMENTS[name]
        assert (ROOT / path).is_file() and path == f"flows/{spec['module'].rsplit('.', 1)[1]}.py"
        assert function == spec["flow"]
        assert item["parameters"] == spec["parameters"], "serve and prefect.yaml pass the same parameters"
    assert set(deployments["key-compromised"]["parameters"]) <= {"runbook", "dry_run"}
    [schedule] = deployments["rotation-drill"]["schedules"]
    assert schedule["cron"] == DEPLOYMENTS["rotation-drill"]["cron"] == "0 3 * * 1"
    assert not deployments["key-compromised"]["schedules"] and not deployments["postmortem"]["schedules"]
    [watch] = deployments["key-watch"]["schedules"]
    assert watch["cron"] == DEPLOYMENTS["key-watch"]["cron"] == "0 6 * * *", "the key watch runs daily"


def test_prefect_yaml_entrypoints_load_as_the_named_flows():
    from prefect.flows import load_flow_from_entrypoint

    document = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for item in document["deployments"]:
        path, function = item["entrypoint"].split(":")
        flow = load_flow_from_entrypoint(f"{ROOT / path}:{function}")
        assert flow.name == item["name"]


def test_serve_adds_a_drill_per_runbook_on_its_own_schedule(tmp_path):
    from cauterize.cli_ops import build_deployments

    (tmp_path / "drilled.yaml").write_text(
        "version: 1\nname: drilled\nkey: {provider: openai, source: env:K}\n"
        "drill: {key: 'vault:secret/drill#KEY', stores: production, schedule: '0 4 * * 2'}\n")
    (tmp_path / "plain.yaml").write_text("version: 1\nname: plain\nkey: {provider: openai, source: env:K}\n")
    deployments = {d.name: d for d in build_deployments(tmp_path)}
    assert set(deployments) == {"key-compromised", "rotation-drill", "key-watch", "postmortem", "drill-drilled"}
    assert deployments["key-watch"].parameters == {"runbook_dir": str(tmp_path.resolve())}, "it watches them"
    drilled = deployments["drill-drilled"]
    assert drilled.flow_name == "rotation-drill" and drilled.parameters == {"runbook": str(tmp_path / "drilled.yaml")}
    assert [s.schedule.cron for s in drilled.schedules] == ["0 4 * * 2"]
    assert all(d.entrypoint.startswith("cauterize.flows.") for d in deployments.values()), "module entrypoints"


# -- cauterize serve against a real server --------------------------------------------------------


@pytest.mark.slow
def test_serve_runs_the_rotation_drill_and_reports_through_the_client(prefect_server, tmp_path):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with open(tmp_path / "serve.log", "wb") as log:
        served = subprocess.Popen(
            [sys.executable, "-c", "from cauterize.cli import entry; entry()", "serve"],
            env=prefect_server.env(PREFECT_HOME=str(tmp_path / "serve-home")), cwd=tmp_path,
            stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        names = ("key-compromised/key-compromised", "rotation-drill/rotation-drill", "postmortem/postmortem")

        def deployments() -> dict | None:
            from prefect.exceptions import ObjectNotFound

            with prefect_client(prefect_server) as client:
                try:
                    return {name: client.read_deployment_by_name(name) for name in names}
                except ObjectNotFound:
                    return None

        found = _wait_for(deployments, 90, "the served deployments", served)
        drill = found["rotation-drill/rotation-drill"]
        assert [s.schedule.cron for s in drill.schedules] == ["0 3 * * 1"]
        assert found["key-compromised/key-compromised"].parameters == {"dry_run": False}

        workdir = tmp_path / "drill"
        with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
            run = run_deployment("rotation-drill/rotation-drill", parameters={"sandbox": True, "workdir": str(workdir)},
                                 timeout=150, poll_interval=1)
        assert run.state.is_completed(), (run.state, (tmp_path / "serve.log").read_text()[-3000:])
        with prefect_client(prefect_server) as client:
            artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
        by_key = {artifact.key: artifact for artifact in artifacts}
        assert {"drill-sandbox-drill", "postmortem-sandbox-drill"} <= set(by_key)
        report = by_key["drill-sandbox-drill"].data
        assert "time_to_contain_s" in report and "time_to_recover_s" in report and "**OK**" in report

        [incident] = [p for p in (workdir / "incidents").iterdir() if (p / "incident.json").is_file()]
        with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
            rerender = run_deployment("postmortem/postmortem", parameters={"incident_dir": str(incident)},
                                      timeout=120, poll_interval=1)
        assert rerender.state.is_completed(), rerender.state
        assert (workdir / "incidents" / "drills.jsonl").read_text().count("\n") == 1
    finally:
        _stop_group(served)


@pytest.mark.slow
def test_prefect_deploy_all_creates_the_deployments_on_a_work_pool(prefect_server, tmp_path):
    """The work-pool path for teams that outgrow one machine: `prefect deploy --all` reads prefect.yaml."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with prefect_client(prefect_server) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name="cauterize", type="process"))
        except ObjectAlreadyExists:
            pass
    before = (ROOT / "prefect.yaml").read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=ROOT, capture_output=True, text=True,
        env=prefect_server.env(PREFECT_HOME=str(tmp_path / "home"), PWD=str(ROOT)), timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (ROOT / "prefect.yaml").read_bytes() == before
    with prefect_client(prefect_server) as client:
        drill = client.read_deployment_by_name("rotation-drill/rotation-drill")
        compromised = client.read_deployment_by_name("key-compromised/key-compromised")
    assert drill.work_pool_name == compromised.work_pool_name == "cauterize"
    assert drill.entrypoint == "flows/rotation_drill.py:rotation_drill" and drill.parameters == {"sandbox": True}
    assert [s.schedule.cron for s in drill.schedules] == ["0 3 * * 1"]
    assert compromised.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
