"""Interrupts: the first SIGINT or SIGTERM stops a command cleanly within seconds, the second at once.

    install(hint)    the CLI's long-running commands (respond, demo, drill, purge, revoke)
    check()          between steps, before every push, before each HTTP attempt: raises once a signal came
    spawn() / run()  child processes in a session (so a process group) of their own, registered so an
                     interrupt ends them and everything they started (git-filter-repo's git
                     fast-export, ...); without a terminal, so nothing they run (ssh) can stop on it
    exit_now(code)   the end of an interrupted command: every child gone, then ``os._exit``

The first signal sets the process-wide flag (``check()`` raises from then on, in every thread: no new
step starts, no push is sent, no retry is made), silences logging and thread tracebacks (Prefect logs
errors while its services stop), sends SIGTERM to every registered child process group (git cleans up
its lock files on SIGTERM) and raises ``Interrupted`` in the main thread, which cuts short the HTTP
call, the child process or the wait in flight there. The step being run records itself
``interrupted`` (``incident.step``); the command says in one line how to resume (``say``) and calls
``exit_now(130)``: registered groups still alive after a short grace get SIGKILL, and so does any
other child of this process (the Prefect server that Prefect's ephemeral mode started, a sops); the
children are reaped and the process ends without atexit hooks (Prefect's would try to flush logs to
the server it just lost, for a minute). A watchdog does the same ``DEADLINE_S`` after the signal if
the main thread has not got there, whatever a worker thread is stuck in. A second signal ends the
process at once, after a best-effort SIGKILL of the children.

``Interrupted`` derives from ``KeyboardInterrupt``, not ``CauterizeError``: every ``except
CauterizeError`` or ``except Exception`` that records a failure and carries on (the flow's tasks, a
locate source, the containment loop) must let it through, and libraries that already handle Ctrl-C
(subprocess kills its child; Prefect marks its task and flow runs Crashed) then handle SIGTERM too.
Without ``install()`` (the library, a served deployment) nothing changes but ``spawn``'s process
groups. Core: no Prefect here.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

EXIT_CODE = 130
#: from the first signal to the end of the process, whatever a worker thread is stuck in (the children
#: get GRACE_S more: the process is gone well within 5 s)
DEADLINE_S = 3.0
#: registered children get SIGTERM at the signal, SIGKILL this long after if still there
GRACE_S = 0.5
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM asked this process to stop: exit 130, and a rerun resumes."""

    exit_code = EXIT_CODE

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(f"interrupted by {signal_name(signum)}")
        self.signum = signum

    @property
    def message(self) -> str:
        return str(self.args[0])

    def __reduce__(self):
        return type(self), (self.signum,)


class _State:
    """The process-wide flag and registry (one per process, as signals are)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.event = threading.Event()
        self.lock = threading.RLock()  # ``say`` once (a second signal may arrive inside it)
        #: held around each spawn; ``exit_now`` takes it for good, so no child starts after the last kill
        self.spawning = threading.Lock()
        self.children: dict[int, subprocess.Popen] = {}
        self.installed = False
        self.hint = "rerun the command to resume"
        self.step: str | None = None  # the step that recorded itself interrupted
        self.said = False


_STATE = _State()


def signal_name(signum: int | None) -> str:
    try:
        return signal.Signals(signum).name if signum is not None else "a signal"
    except ValueError:
        return f"signal {signum}"


def received() -> int | None:
    """The signal that interrupted this process, or None."""
    return _STATE.signum


def check() -> None:
    """Raise ``Interrupted`` if a signal came: call it before starting anything that changes the world."""
    if _STATE.signum is not None:
        raise Interrupted(_STATE.signum)


def sleep(seconds: float) -> None:
    """``time.sleep`` that an interrupt cuts short, in any thread."""
    if _STATE.event.wait(max(seconds, 0.0)):
        check()


def stopped_in(step: str) -> None:
    """Note the step that recorded itself interrupted (named in the line ``say`` prints)."""
    _STATE.step = step


# -- the handler -----------------------------------------------------------------------------------


def install(hint: str) -> None:
    """Handle SIGINT and SIGTERM in this process (main thread only); ``hint`` tells how to resume."""
    _STATE.hint = hint
    _STATE.installed = True
    for signum in SIGNALS:
        signal.signal(signum, _handle)


def reclaim() -> None:
    """Take SIGTERM back where a library replaced the handler (Prefect does, for the duration of a flow
    run), if ``install`` was called; from the main thread only, else nothing."""
    if not _STATE.installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not _handle:
        signal.signal(signal.SIGTERM, _handle)


def _handle(signum: int, frame: object) -> None:
    if _STATE.signum is not None:  # the second signal: now
        _kill_children(signal.SIGKILL)
        say()
        _flush_and_exit(EXIT_CODE)
    _STATE.signum = signum
    _STATE.event.set()
    _silence()
    _signal_registered(signal.SIGTERM)
    threading.Thread(target=_watchdog, name="cauterize-interrupt-watchdog", daemon=True).start()
    raise Interrupted(signum)


def _silence() -> None:
    """Nothing but the one line from here on: no log records, no tracebacks of dying threads."""
    logging.disable(logging.CRITICAL)
    threading.excepthook = lambda args: None
    sys.unraisablehook = lambda unraisable: None


def _watchdog() -> None:
    time.sleep(DEADLINE_S)
    say()
    exit_now(EXIT_CODE)


def line() -> str:
    """The one line an interrupted command prints."""
    during = f" during {_STATE.step}" if _STATE.step else ""
    return f"cauterize: interrupted by {signal_name(_STATE.signum)}{during}; {_STATE.hint}"


def say() -> None:
    """Print ``line()`` on stderr, once."""
    with _STATE.lock:
        if _STATE.said:
            return
        _STATE.said = True
    try:
        os.write(2, (line() + "\n").encode())
    except OSError:
        pass


def exit_now(code: int = EXIT_CODE) -> None:
    """End the process: registered children (SIGTERM already sent) get the grace, then SIGKILL; any
    other child of this process SIGKILL; all of them are reaped; then ``os._exit(code)``."""
    _STATE.spawning.acquire(timeout=1.0)  # never released: no thread starts a child from here on
    _signal_registered(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    for proc in list(_STATE.children.values()):
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except (subprocess.TimeoutExpired, OSError):
            pass
    _kill_children(signal.SIGKILL)
    _reap(timeout=0.5)
    _flush_and_exit(code)


def _flush_and_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


# -- child processes ---------------------------------------------------------------------------------


def spawn(argv: Sequence[str | os.PathLike], **popen: object) -> subprocess.Popen:
    """``subprocess.Popen`` in a session of its own (its pid is its process group), registered until
    ``release``. Refused (``Interrupted``) once a signal came."""
    with _STATE.spawning:
        check()
        proc = subprocess.Popen([os.fspath(arg) for arg in argv], start_new_session=True, **popen)  # type: ignore[call-overload]
        _STATE.children[proc.pid] = proc
    return proc


def release(proc: subprocess.Popen) -> None:
    """Forget a child that has ended (its group may no longer be signalled)."""
    _STATE.children.pop(proc.pid, None)


def run(
    argv: Sequence[str | os.PathLike],
    *,
    input: bytes | None = None,
    timeout: float | None = None,
    **popen: object,
) -> subprocess.CompletedProcess[bytes]:
    """``subprocess.run(argv, capture_output=True)`` through ``spawn``: on any exception (an interrupt,
    a timeout) the child's whole group is killed before it propagates."""
    popen.setdefault("stdin", subprocess.PIPE if input is not None else subprocess.DEVNULL)
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
    try:
        with proc:
            try:
                out, err = proc.communicate(input, timeout=timeout)
            except BaseException:
                kill_group(proc)
                proc.wait()
                raise
    finally:
        release(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def kill_group(proc: subprocess.Popen, signum: int = signal.SIGKILL) -> None:
    """Signal a spawned child's whole process group (its children too)."""
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_registered(signum: int) -> None:
    for proc in list(_STATE.children.values()):
        kill_group(proc, signum)


def _kill_children(signum: int) -> None:
    """Every registered group, and every other direct child of this process (and its group when it
    leads one)."""
    _signal_registered(signum)
    for pid in _direct_children():
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signum)
            else:
                os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _reap(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = False
        for pid in _direct_children():
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            pending = pending or done == 0
        if not pending:
            return
        time.sleep(0.02)


def _direct_children() -> list[int]:
    """The pids whose parent is this process (Linux ``/proc``; elsewhere only the registered ones)."""
    me = os.getpid()
    proc = Path("/proc")
    if not proc.is_dir():
        return list(_STATE.children)
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and fields[1] == str(me):
            found.append(int(entry.name))
    return found
