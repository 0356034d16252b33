"""Ctrl-C and SIGTERM through the CLI (issue 17, item 4): real processes, real signals.

The first SIGINT or SIGTERM stops `cauterize respond` within 5 s in every phase (containment, a
provider call that hangs, a slow git child in locate or in git-filter-repo, the whole process group
as a terminal's Ctrl-C sends it), records the step it stopped as ``interrupted``, prints one line
saying how to resume and no traceback or Prefect log, leaves no process of its session behind, and
never pushes afterwards; a rerun completes the same incident. The second signal ends it at once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from cauterize.sandbox.world import build_world
from cauterize.secret import Secret
from cauterize.stores.dotenv import DotenvStore

pytestmark = pytest.mark.slow

CAUTERIZE = [sys.executable, "-c", "from cauterize.cli import entry; entry()"]
MARKER = "CAUTERIZE_TEST_RUN"
LIMIT_S = 5.0
#: SIGINT-to-exit times measured here, by phase (printed at the end of the session with -s / -rA)
MEASURED: dict[str, float] = {}


class Run:
    """A process in a session of its own, its stderr read line by line with arrival times."""

    def __init__(self, argv: list[str], env: dict[str, str], world=None):
        self.world = world
        self.marker = f"{MARKER}={uuid.uuid4().hex}"  # inherited by every descendant, whatever its session
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     text=True, env={**env, MARKER: self.marker.partition("=")[2]},
                                     start_new_session=True)
        self.lines: list[tuple[float, str]] = []
        self.out = ""
        self._threads = [threading.Thread(target=self._err, daemon=True), threading.Thread(target=self._out, daemon=True)]
        for thread in self._threads:
            thread.start()
        self.signalled_at: float | None = None

    def _err(self) -> None:
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def _out(self) -> None:
        self.out = self.proc.stdout.read()

    @property
    def stderr(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def wait_for(self, check, what: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode} before {what}:\n{self.stderr[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout} s:\n{self.stderr[-3000:]}")
            time.sleep(0.01)

    def wait_for_line(self, text: str, timeout: float = 180) -> None:
        self.wait_for(lambda: any(text in line for _, line in self.lines), repr(text), timeout)

    def signal(self, signum: int = signal.SIGINT, group: bool = False) -> None:
        self.signalled_at = time.monotonic()
        (os.killpg if group else os.kill)(self.proc.pid, signum)

    def finish(self, timeout: float = 300) -> float | None:
        """Wait for the exit; the seconds from the signal to the exit (None without a signal)."""
        try:
            self.proc.wait(timeout=timeout)
        finally:
            ended = time.monotonic()
            left = leftovers(self)
            _kill(left)
            for thread in self._threads:
                thread.join(timeout=10)
        self.leftovers = left
        return None if self.signalled_at is None else ended - self.signalled_at

    def after_signal(self) -> list[str]:
        return [line for at, line in self.lines if self.signalled_at is not None and at >= self.signalled_at]


def leftovers(run: Run) -> list[str]:
    """Live processes (not zombies) the run started: in its session, or (cauterize starts its children
    in sessions of their own) holding its environment marker. What a responder must not leave behind."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            environ = (stat.parent / "environ").read_bytes()
        except OSError:
            continue
        name, _, rest = text.partition(" (")[2].rpartition(") ")
        fields = rest.split()
        if len(fields) < 4 or fields[0] == "Z" or int(stat.parent.name) == run.proc.pid:
            continue
        if fields[3] == str(run.proc.pid) or run.marker.encode() in environ.split(b"\0"):
            found.append(f"{stat.parent.name} {name}")
    return found


def _kill(entries: list[str]) -> None:
    for entry in entries:
        try:
            os.kill(int(entry.split()[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass


def respond(world, tmp_path, fault: str | None = None, server=None, **extra: str) -> Run:
    """`cauterize respond` on Prefect's ephemeral server (the one it starts and must stop), or on
    ``server``."""
    env = {**os.environ, **world.env, "PREFECT_HOME": str(tmp_path / "prefect"), **extra}
    env.pop("PREFECT_API_URL", None)
    if server is not None:
        env = {**server.env(PREFECT_HOME=str(tmp_path / "prefect")), **world.env, **extra}
    env.pop("CAUTERIZE_FAULT", None)
    if fault:
        env["CAUTERIZE_FAULT"] = fault
    return Run([*CAUTERIZE, "respond", str(world.runbook), "--yes", "--json"], env, world)


def assert_interrupted(run: Run, seconds: float | None, phase: str, step: str | None = None) -> dict:
    """Exit 130 within 5 s, one line on stderr after the signal (how to resume), no traceback, no
    process left; the record says which step was interrupted. Returns the record."""
    assert run.proc.returncode == 130, run.stderr[-3000:]
    assert seconds is not None and seconds < LIMIT_S, f"{phase}: {seconds:.2f} s from the signal to the exit"
    MEASURED[phase] = round(seconds, 2)
    after = run.after_signal()
    assert len(after) == 1 and after[0].startswith("cauterize: interrupted by SIG"), after
    assert "to resume" in after[0] and "cauterize respond" in after[0], after[0]
    assert "Traceback" not in run.stderr and "| ERROR" not in run.stderr, run.stderr[-3000:]
    assert run.leftovers == [], f"left running: {run.leftovers}"
    [record] = [json.loads(p.read_text()) for p in (run.world.root / "incidents").glob("*/incident.json")]
    statuses = {name: s["status"] for name, s in record["steps"].items()}
    assert "running" not in statuses.values(), statuses
    if step is not None:
        assert statuses[step] == "interrupted", statuses
        assert record["steps"][step]["error"].startswith("interrupted by SIG")
        assert "cauterize respond" in record["steps"][step]["remediation"]
        assert f"during {step}" in after[0]
    return record


def assert_completes(world, tmp_path, server) -> dict:
    """A rerun completes the same incident: exit 0, one incident, one live minted key in every store.
    (On a running Prefect server: an ephemeral one would cost seconds and is not what is tested.)"""
    rerun = respond(world, tmp_path, server=server)
    rerun.finish()
    assert rerun.proc.returncode == 0, rerun.stderr[-3000:]
    record = json.loads(rerun.out)
    assert len(list((world.root / "incidents").glob("*/incident.json"))) == 1, "one key, one incident"
    emulator = world.emulator
    live = [k for k in emulator.keys.values() if k.owner_type == "service_account" and emulator.is_live(k.value)]
    assert len(live) == 1, f"{len(live)} live minted keys"
    for store in ("deploy/.env", "worker/.env"):
        assert DotenvStore(world.root / store, "OPENAI_API_KEY").read() == Secret(live[0].value)
    assert not emulator.is_live(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])
    assert all(step["status"] == "ok" for step in record["steps"].values()), record["steps"]
    return record


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory, request):
    from test_deployments import shared_server

    return shared_server(tmp_path_factory, request)


@pytest.fixture
def world(tmp_path):
    world = build_world(tmp_path / "w")
    yield world
    world.close()


@pytest.fixture
def slow_git(tmp_path):
    """A `git` first on PATH that sleeps (a child of its own, like git-filter-repo's children) before
    running the real git when its arguments hold ``$SLOW_GIT``: a slow clone, scan or rewrite."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "git"
    wrapper.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        case " $* " in *" $SLOW_GIT "*) sleep 60 ;; esac
        exec {shutil.which("git")} "$@"
    """))
    wrapper.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def _sleeping(run: Run) -> bool:
    return any(entry.endswith(" sleep") for entry in leftovers(run))


# -- the mechanism, without Prefect -----------------------------------------------------------------

DRIVER = textwrap.dedent("""
    import sys, time
    from cauterize import interrupts
    interrupts.install("rerun the driver to resume")
    child = interrupts.spawn(["sh", "-c", "sleep 60 & sleep 60"])
    print("ready", flush=True)
    try:
        child.wait()
    except interrupts.Interrupted:
        pass
    while True:  # a clean-up that never ends: only the watchdog or a second signal stops it
        time.sleep(0.1)
""")


def _driver() -> Run:
    run = Run([sys.executable, "-c", DRIVER], {**os.environ})
    run.wait_for(lambda: len([e for e in leftovers(run) if e.endswith(" sleep")]) == 2, "the children", timeout=30)
    return run


def test_a_stuck_process_still_exits_130_within_5s_with_its_children_gone():
    run = _driver()
    run.signal(signal.SIGTERM)
    seconds = run.finish(timeout=30)
    assert run.proc.returncode == 130 and seconds < LIMIT_S, (run.proc.returncode, seconds, run.stderr)
    assert run.after_signal() == ["cauterize: interrupted by SIGTERM; rerun the driver to resume"]
    assert run.leftovers == [], run.leftovers


def test_a_second_sigint_exits_at_once():
    run = _driver()
    run.signal()
    time.sleep(0.3)
    second = time.monotonic()
    os.kill(run.proc.pid, signal.SIGINT)
    run.finish(timeout=30)
    assert run.proc.returncode == 130 and time.monotonic() - second < 1.5, run.stderr
    assert run.after_signal() == ["cauterize: interrupted by SIGINT; rerun the driver to resume"]
    assert run.leftovers == [], run.leftovers


# -- respond, phase by phase ----------------------------------------------------------------------


def test_containment_stops_while_the_revoke_call_hangs_and_a_rerun_completes(world, tmp_path, prefect_server):
    world.emulator.stall_next("DELETE", "*/api_keys/*", 8)
    run = respond(world, tmp_path)
    run.wait_for(lambda: world.emulator.stalled, "the revoke call")
    time.sleep(0.2)
    run.signal()
    assert_interrupted(run, run.finish(), "containment: the revoke call hangs", step="revoke")
    assert_completes(world, tmp_path, prefect_server)


def test_the_flow_stops_while_the_mint_hangs_and_the_rerun_revokes_the_late_orphan(world, tmp_path, prefect_server):
    world.emulator.stall_next("POST", "*/service_accounts", 4)
    run = respond(world, tmp_path)
    run.wait_for(lambda: world.emulator.stalled, "the mint call", timeout=240)
    time.sleep(0.2)
    run.signal()
    assert_interrupted(run, run.finish(), "flow: the mint call hangs", step="rotate")
    # The provider answers the abandoned call after all: a minted key nobody holds, to be found.
    deadline = time.monotonic() + 30
    while not world.emulator.calls("POST", "*/service_accounts") and time.monotonic() < deadline:
        time.sleep(0.1)
    record = assert_completes(world, tmp_path, prefect_server)
    assert any("interrupted run minted" in e["message"] for e in record["events"]), "the orphan was revoked"


def test_the_flow_stops_during_a_slow_git_scan_in_locate(world, tmp_path, slow_git):
    run = respond(world, tmp_path, PATH=slow_git, SLOW_GIT="--batch-all-objects")
    run.wait_for(lambda: _sleeping(run), "the slow git child", timeout=240)
    run.signal()
    record = assert_interrupted(run, run.finish(), "flow: a slow git child in locate")
    assert record["steps"]["redeploy"]["status"] == "ok" and record["steps"]["purge"]["status"] == "pending"


def test_a_purge_interrupted_in_git_filter_repo_pushes_nothing_and_resumes(world, tmp_path, slow_git, prefect_server):
    before = _refs(world.remote)
    run = respond(world, tmp_path, PATH=slow_git, SLOW_GIT="fast-export")
    run.wait_for(lambda: _sleeping(run), "git-filter-repo's git fast-export", timeout=240)
    run.signal(signal.SIGTERM)
    assert_interrupted(run, run.finish(), "flow: git-filter-repo's child in purge (SIGTERM)", step="purge")
    assert _refs(world.remote) == before, "nothing was pushed"
    record = assert_completes(world, tmp_path, prefect_server)
    assert record["purge"][0]["verified"] and _refs(world.remote) != before


def test_ctrl_c_to_the_whole_process_group_during_the_flow(world, tmp_path):
    """A terminal's Ctrl-C reaches every process of the foreground group: the Prefect server too."""
    run = respond(world, tmp_path)
    run.wait_for_line("redeploy  ok", timeout=240)
    run.signal(group=True)
    assert_interrupted(run, run.finish(), "flow: Ctrl-C to the process group")


def _refs(repo: Path) -> str:
    return subprocess.run(["git", "-C", str(repo), "for-each-ref"], capture_output=True, text=True, check=True).stdout


def teardown_module(module) -> None:
    if MEASURED:
        print("\nSIGINT/SIGTERM to exit, by phase: " + json.dumps(MEASURED, indent=1))
