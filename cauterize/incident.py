"""The incident record: the one source of truth of a response (DESIGN.md section 5).

``<incidents dir>/<incident id>/incident.json`` holds the runbook, the fingerprints and redacted forms
of the old and new key, the provider identity, every step with its status and timestamps, findings,
purge results, evidence and action items. It is rewritten atomically (temp file + rename, 0600 in a
0700 directory) after every change, and refused if it would hold a live secret in any encoding.
The post-mortem is rendered from it alone; a rerun resumes from it.

Nothing on disk is trusted that cauterize did not write: the report directory, each incident
directory and its ``.work/`` are made 0700 and, when they exist already, checked (a real directory,
this user's, writable by nobody else); files are created through a temp file (``O_EXCL|O_NOFOLLOW``)
renamed over a target that is not a link, and read with ``O_NOFOLLOW``. Anything else is refused
with ``IncidentDirError`` (exit 2) and the one command that fixes it. Incident ids end in a random
part, so nobody can predict one and plant its directory in advance.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shlex
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from cauterize import interrupts
from cauterize.errors import CauterizeError, IncidentDirError, InputError
from cauterize.secret import assert_clean

STEPS = ("intake", "revoke", "rotate", "redeploy", "locate", "purge", "evidence", "report")
#: ``skipped``: not needed, by policy or dry run (done for completeness); ``blocked``: a step it needs
#: did not succeed (``details.blocked_by`` names it); ``waiting``: for a person; ``interrupted``: a
#: signal stopped it. Complete means every step is ``ok`` or ``skipped``.
Status = Literal["pending", "running", "ok", "failed", "skipped", "blocked", "waiting", "interrupted"]
#: the statuses that count as done: an incident is complete when every step has one of them
DONE = ("ok", "skipped")
RECORD_NAME = "incident.json"
#: a step's scratch (mirror clones, filter-repo's replacement expressions): may hold the key in clear
WORK_NAME = ".work"
#: bytes of randomness at the end of an incident id (8 hex digits)
ID_RANDOM_BYTES = 4


def utcnow() -> datetime:
    """Now, in UTC, to the millisecond (step durations are measured from these)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class StepRecord(BaseModel):
    status: Status = "pending"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    summary: str | None = None
    error: str | None = None
    remediation: str | None = None
    details: dict[str, Any] = {}


class KeyRecord(BaseModel):
    fingerprint: str
    redacted: str
    source: str | None = None  # a reference (env:..., store:N), never the value
    liveness: str | None = None  # live | dead | unknown
    identity: dict[str, Any] | None = None
    #: the old key: what limits its reach (scopes.CarriedScopes, read by the rotate step);
    #: the new key: the scopes it was given ([]: unrestricted), null where the provider has none
    scopes: dict[str, Any] | list[str] | None = None


class Event(BaseModel):
    at: datetime
    step: str | None
    message: str


class ActionItem(BaseModel):
    step: str
    text: str
    done: bool = False


class Incident(BaseModel):
    id: str
    runbook: str
    runbook_path: str
    mode: Literal["respond", "drill", "demo"] = "respond"
    dry_run: bool = False
    created_at: datetime
    updated_at: datetime
    provider: str
    order: str
    old_key: KeyRecord
    new_key: KeyRecord | None = None
    pending_mint: dict[str, Any] | None = None  # a mint under way: its name and start, to find orphans
    steps: dict[str, StepRecord] = Field(default_factory=lambda: {name: StepRecord() for name in STEPS})
    revoked_at: datetime | None = None
    exposure_start: datetime | None = None
    findings: list[dict[str, Any]] = []
    purge: list[dict[str, Any]] = []
    evidence: dict[str, Any] | None = None
    action_items: list[ActionItem] = []
    events: list[Event] = []
    report: dict[str, str] = {}
    metrics: dict[str, float] = {}  # time_to_contain_s, time_to_recover_s, revoke_confirm_s, ...
    #: what the world said at the end of the last run (verification.py): the old key's verdict, each
    #: store's key, the new key's verdict, ``contained``, ``recovered`` and the steps it reopened
    verification: dict[str, Any] | None = None
    #: what the preflight found when the incident was opened: runnable steps, problems, notes
    preflight: dict[str, Any] | None = None

    # -- helpers used by the steps -------------------------------------------------------
    def log(self, step: str | None, message: str) -> None:
        self.events.append(Event(at=utcnow(), step=step, message=message))

    def add_action(self, step: str, text: str) -> None:
        if not any(item.text == text for item in self.action_items):
            self.action_items.append(ActionItem(step=step, text=text))

    def step(self, name: str) -> StepRecord:
        return self.steps[name]

    @property
    def complete(self) -> bool:
        return all(record.status in DONE for record in self.steps.values())

    @property
    def verified(self) -> bool:
        """The world agreed at the end: the old key answered dead and the new key (where one was
        minted) is live in every store. A dry run changed nothing and needs no verification."""
        if self.dry_run:
            return True
        result = self.verification or {}
        return bool(result.get("contained")) and result.get("recovered") is not False and not result.get("reopened")

    def exit_code(self) -> int:
        """0 done and verified; 4 the old key still answers after revoke; 3 a step failed or waits,
        or the end verification could not confirm the outcome."""
        if self.steps["revoke"].details.get("still_live"):
            return 4
        return 0 if self.complete and self.verified else 3


class IncidentStore:
    """Reads and writes incident records under one directory."""

    def __init__(self, root: Path):
        self.root = Path(root)
        if os.path.lexists(self.root):  # an existing report directory is checked before anything in it is read
            _private_dir(self.root)

    def new_id(self, runbook: str, fingerprint: str, now: datetime | None = None) -> str:
        """``<UTC stamp>-<runbook>-<fingerprint8>-<random8>``: sorted by time, readable, and not
        predictable from the key and the time. The id is stored in the record and read from there
        (the mint's name is derived from it), so a resumed run keeps it."""
        stamp = (now or utcnow()).strftime("%Y%m%dT%H%M%SZ")
        return f"{stamp}-{runbook}-{fingerprint.removeprefix('sha256:')[:8]}-{secrets.token_hex(ID_RANDOM_BYTES)}"

    def directory(self, incident_id: str) -> Path:
        return self.root / incident_id

    def create(self, incident: Incident) -> Path:
        """Make the incident's directory (0700, new: one of that name is never reused) and write
        the first record. A name already taken, which only a planted directory can be, gets a fresh
        random part (the record says so); three in a row are refused."""
        _private_dir(self.root)
        for _ in range(3):
            path = self.directory(incident.id)
            try:
                path.mkdir(mode=0o700)
            except FileExistsError:
                incident.log(None, f"{incident.id} existed already (cauterize did not make it): a new id was drawn")
                incident.id = f"{incident.id.rsplit('-', 1)[0]}-{secrets.token_hex(ID_RANDOM_BYTES)}"
                continue
            _private_dir(path)
            save(incident, path)
            return path
        raise IncidentDirError(
            f"{self.root}: three fresh incident ids in a row were taken already: someone is creating them",
            remediation=f"Find who writes into {self.root} (it must be private to this user) and rerun.",
        )

    def find_open(self, runbook: str, fingerprint: str) -> Path | None:
        """The newest unfinished incident of this runbook and key, to resume after a crash."""
        if not self.root.is_dir():
            return None
        for path in sorted(self.root.iterdir(), reverse=True):
            record = path / RECORD_NAME
            if not record.is_file():
                continue
            try:
                incident = load(path)
            except IncidentDirError:
                raise  # a record cauterize did not write: refused, never skipped for a fresh incident
            except CauterizeError:
                continue
            if incident.runbook == runbook and incident.old_key.fingerprint == fingerprint and not incident.complete:
                return path
        return None


class IncidentLocked(CauterizeError):
    """Another process handles this key's incident: this run changes nothing and says so (exit 0:
    the response is under way, which is what the caller asked for)."""

    exit_code = 0
    remediation = "Wait for the other responder (the record shows its progress), or stop it and rerun."


class AlreadyContained(CauterizeError):
    """The key's incident is complete and the world still agrees: nothing to do (exit 0)."""

    exit_code = 0
    remediation = "Pass --new-incident to respond to this key again as a new incident."

    def __init__(self, message: str, incident_dir: Path, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.incident_dir = incident_dir


LOCK_NAME = "lock"


def acquire_lock(incident_dir: Path) -> None:
    """One responder per incident: a lock file naming the owner's pid and start time. A lock whose
    process is gone is stale and taken over; this process may take its own lock again."""
    import atexit
    import json as _json

    path = Path(incident_dir) / LOCK_NAME
    try:
        owner = _json.loads(read_private(path))
    except (FileNotFoundError, ValueError):
        owner = None
    if owner and owner.get("pid") != os.getpid() and _alive(owner.get("pid")):
        raise IncidentLocked(
            f"incident {Path(incident_dir).name} is being handled by process {owner['pid']} "
            f"(started {owner.get('started_at')})"
        )
    write_private(path, _json.dumps({"pid": os.getpid(), "started_at": utcnow().isoformat()}), what="the incident lock")
    if not owner or owner.get("pid") != os.getpid():
        clear_work(incident_dir)  # what a crashed run left in .work/ (a mirror, filter-repo's expressions)
    atexit.register(release_lock, Path(incident_dir))


def release_lock(incident_dir: Path) -> None:
    import json as _json

    path = Path(incident_dir) / LOCK_NAME
    try:
        if _json.loads(read_private(path)).get("pid") == os.getpid():
            path.unlink()
    except (FileNotFoundError, ValueError, IncidentDirError):
        pass


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():  # a zombie is dead for our purpose
        return stat.read_text().split(") ", 1)[-1][:1] != "Z"
    return True


def load(incident_dir: Path) -> Incident:
    """The record, read only if cauterize could have written it: the incident directory and
    ``incident.json`` are real (no link), this user's and writable by nobody else."""
    directory = Path(incident_dir)
    record = directory / RECORD_NAME
    try:
        _check(directory, os.lstat(directory), directory=True)
        return Incident.model_validate_json(read_private(record))
    except FileNotFoundError:
        raise InputError(f"incident {incident_dir}: no {RECORD_NAME} there") from None
    except ValueError as exc:
        raise InputError(f"incident {incident_dir}: {RECORD_NAME} is not a valid record ({type(exc).__name__})") from None


def save(incident: Incident, incident_dir: Path) -> None:
    incident.updated_at = utcnow()
    data = json.dumps(incident.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"
    write_private(Path(incident_dir) / RECORD_NAME, data, what="the incident record")
    if incident.complete:
        clear_work(incident_dir)  # no step runs any more: no scratch may outlive the response


def write_private(path: Path, data: str | bytes, *, what: str) -> None:
    """Atomic write of a file cauterize owns: refused if it holds a live secret; 0600 in 0700.

    The temp file is created with ``O_EXCL|O_NOFOLLOW`` (``mkstemp``) and renamed over the target,
    which must not exist as anything cauterize did not write (a link, another user's file)."""
    assert_clean(data, what)
    path = Path(path)
    _private_dir(path.parent)
    try:
        _check(path, os.lstat(path), directory=False)
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_private(path: Path, text: str, *, what: str) -> None:
    """Append to a file cauterize owns (created 0600, opened with ``O_NOFOLLOW``); refused if the
    text holds a live secret or the file is not one cauterize wrote."""
    assert_clean(text, what)
    path = Path(path)
    _private_dir(path.parent)
    fd = _open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        _check(path, os.fstat(handle.fileno()), directory=False)
        handle.write(text)


def read_private(path: Path) -> bytes:
    """The bytes of a file cauterize wrote, opened with ``O_NOFOLLOW``: a link, a file that is not
    regular, another user's, or one others may write is refused (``IncidentDirError``)."""
    path = Path(path)
    with os.fdopen(_open_nofollow(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
        _check(path, os.fstat(handle.fileno()), directory=False)
        return handle.read()


def work_dir(incident_dir: Path) -> Path:
    """The incident's ``.work/`` (0700, checked like the incident directory), for step scratch."""
    work = Path(incident_dir) / WORK_NAME
    _private_dir(work)
    return work


def clear_work(incident_dir: Path) -> None:
    """Remove ``.work/`` and everything in it (scratch may hold the key in clear), without following
    a link anywhere in it. Called when an incident's lock is taken (a crashed run's leftovers) and
    when it completes."""
    work = Path(incident_dir) / WORK_NAME
    try:
        _check(work, os.lstat(work), directory=True)
    except FileNotFoundError:
        return
    try:
        shutil.rmtree(work)
    except OSError as exc:
        raise IncidentDirError(
            f"{work} (scratch that may hold the key) could not be removed: {exc.strerror or type(exc).__name__}",
            remediation=f"rm -rf {shlex.quote(str(work))}",
        ) from None


def _private_dir(path: Path) -> None:
    """``path`` as a directory nobody else may change: made 0700 if missing (missing parents too),
    else checked (``_check``). Parents that exist are the user's path and are not checked."""
    path = Path(path)
    missing, ancestor = [], path
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        missing.append(ancestor)
        ancestor = ancestor.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
    _check(path, os.lstat(path), directory=True)


def _open_nofollow(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            _check(path, os.lstat(path), directory=False)  # names the link and how to fix it
        raise


def _check(path: Path, info: os.stat_result, *, directory: bool) -> None:
    """Refuse (``IncidentDirError``, one line and the command that fixes it) what cauterize could not
    have written: a symbolic link, the wrong kind of file, another user's, writable by group or others."""
    kind = "directory" if directory else "file"
    quoted = shlex.quote(str(path))
    if stat.S_ISLNK(info.st_mode):
        raise IncidentDirError(
            f"{path} is a symbolic link: cauterize never follows a link in its incident {kind}s",
            remediation=f"cauterize did not make it: see where it points (ls -l {quoted}), remove it and rerun",
        )
    if not (stat.S_ISDIR(info.st_mode) if directory else stat.S_ISREG(info.st_mode)):
        raise IncidentDirError(
            f"{path} is not a {'directory' if directory else 'regular file'}",
            remediation=f"cauterize did not make it: move it aside (mv {quoted} {quoted}.suspect) and rerun",
        )
    if info.st_uid != os.geteuid():
        raise IncidentDirError(
            f"{path} is owned by uid {info.st_uid}, not by this user (uid {os.geteuid()})",
            remediation=f"chown {os.geteuid()} {quoted} if it is yours, else move it aside and rerun",
        )
    if info.st_mode & 0o022:
        who = "its group and others" if info.st_mode & 0o022 == 0o022 else ("others" if info.st_mode & 0o002 else "its group")
        raise IncidentDirError(
            f"{path} may be written by {who}: cauterize keeps its incident {kind}s private",
            remediation=f"chmod {'700' if directory else '600'} {quoted}",
        )


@contextmanager
def step(incident: Incident, incident_dir: Path, name: str) -> Iterator[StepRecord]:
    """Run one step: ``running`` on entry, ``ok`` on exit unless the body chose another status;
    ``failed`` (or ``waiting`` for a manual step) with the error's one line and remediation on error;
    ``interrupted`` when a signal stops it (a rerun runs it again). The record is saved at every
    transition."""
    from cauterize.errors import ManualStepRequired

    record = incident.steps[name]
    record.status = "running"
    record.started_at = utcnow()
    record.ended_at = None
    record.error = record.remediation = None
    incident.log(name, "started")
    save(incident, incident_dir)
    try:
        yield record
    except ManualStepRequired as exc:
        record.status = "waiting"
        record.error, record.remediation = exc.message, exc.remediation
        incident.log(name, f"waiting for a person: {exc.message}")
        raise
    except CauterizeError as exc:
        record.status = "failed"
        record.error, record.remediation = exc.message, exc.remediation
        incident.log(name, f"failed: {exc.message}")
        raise
    except Exception as exc:
        record.status = "failed"
        record.error = f"internal error: {type(exc).__name__}"
        record.remediation = "This is a bug in cauterize; the record shows which steps are done. Rerun to resume."
        incident.log(name, f"failed: internal error {type(exc).__name__}")
        raise
    except BaseException as exc:  # SIGINT/SIGTERM (interrupts.Interrupted), an orchestrator's cancellation
        if isinstance(exc, GeneratorExit):
            raise
        record.status = "interrupted"
        record.error = f"interrupted by {_signal_of(exc)}"
        record.remediation = f"{resume_hint(incident)} to resume"
        incident.log(name, record.error)
        interrupts.stopped_in(name)
        raise
    else:
        if record.status == "running":
            record.status = "ok"
        incident.log(name, record.status + (f": {record.summary}" if record.summary else ""))
    finally:
        record.ended_at = utcnow()
        save(incident, incident_dir)


def resume_hint(incident: Incident) -> str:
    """The command that resumes this incident, as an instruction."""
    if incident.mode == "demo":
        return "rerun `cauterize demo` (a new sandbox world)"
    if incident.mode == "drill":
        return "rerun the drill"
    return f"rerun `cauterize respond {incident.runbook_path}`"


def _signal_of(exc: BaseException) -> str:
    signum = getattr(exc, "signum", None) or getattr(exc, "signal", None) or interrupts.received()
    if signum is None and isinstance(exc, KeyboardInterrupt):
        signum = 2  # SIGINT: Python's own Ctrl-C
    return interrupts.signal_name(signum)


# -- one key, one incident ---------------------------------------------------------------------------

#: key locks this process holds: (root, runbook, fingerprint) -> the open file holding the flock
_KEY_LOCKS: dict[tuple[str, str, str], Any] = {}


def hold_key_lock(root: Path, runbook: str, fingerprint: str) -> None:
    """One responder per key: an exclusive ``flock`` on ``<root>/.locks/<runbook>-<fingerprint>``,
    held until this process exits (the kernel releases it even after SIGKILL, so a crashed run never
    leaves a stale lock). Taken before an incident is looked up or created, so two runs started at
    once cannot open two incidents. This process may take it again; another gets ``IncidentLocked``
    naming the holder's pid and start time."""
    import fcntl

    root = Path(root)
    entry = (str(root.resolve()), runbook, fingerprint)
    if entry in _KEY_LOCKS:
        return
    _private_dir(root)
    locks = root / ".locks"
    _private_dir(locks)
    path = locks / f"{runbook}-{fingerprint.removeprefix('sha256:')}"
    handle = os.fdopen(_open_nofollow(path, os.O_RDWR | os.O_CREAT), "r+", encoding="utf-8")
    try:
        _check(path, os.fstat(handle.fileno()), directory=False)  # a planted lock is refused, not trusted
    except IncidentDirError:
        handle.close()
        raise
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            owner = json.loads(handle.read() or "{}")
        except ValueError:
            owner = {}
        handle.close()
        raise IncidentLocked(
            f"the {runbook} key {fingerprint} is being handled by process {owner.get('pid', '?')} "
            f"(started {owner.get('started_at', '?')}, incident {owner.get('incident') or 'being opened'}); "
            "this run changed nothing"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "started_at": utcnow().isoformat()}))
    handle.flush()
    _KEY_LOCKS[entry] = handle


def note_key_lock(root: Path, runbook: str, fingerprint: str, incident_dir: Path) -> None:
    """Name the incident in the key lock this process holds (what a second responder is told)."""
    handle = _KEY_LOCKS.get((str(Path(root).resolve()), runbook, fingerprint))
    if handle is None:
        return
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "started_at": utcnow().isoformat(), "incident": Path(incident_dir).name}))
    handle.flush()


def latest_complete(root: Path, runbook: str, fingerprint: str, *, dry_run: bool = False) -> Path | None:
    """The newest complete incident of this runbook and key (of the same dry-run kind), or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    for path in sorted(root.iterdir(), reverse=True):
        if not (path / RECORD_NAME).is_file():
            continue
        try:
            incident = load(path)
        except IncidentDirError:
            raise  # a record cauterize did not write: refused, never skipped
        except CauterizeError:
            continue
        if (incident.runbook, incident.old_key.fingerprint, incident.dry_run) == (runbook, fingerprint, dry_run) \
                and incident.complete:
            return path
    return None


def minted_by(root: Path, runbook: str, fingerprint: str) -> Path | None:
    """The incident of this runbook whose replacement key has this fingerprint, or None: a key
    source that now reads the replacement (a store the redeploy wrote) must not be taken for the
    leak, or a replayed alert would revoke the healthy key."""
    root = Path(root)
    if not root.is_dir():
        return None
    for path in sorted(root.iterdir(), reverse=True):
        if not (path / RECORD_NAME).is_file():
            continue
        try:
            incident = load(path)
        except IncidentDirError:
            raise
        except CauterizeError:
            continue
        if incident.runbook == runbook and incident.new_key is not None and incident.new_key.fingerprint == fingerprint:
            return path
    return None

