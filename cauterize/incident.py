"""The incident record: the one source of truth of a response (DESIGN.md section 5).

``<incidents dir>/<incident id>/incident.json`` holds the runbook, the fingerprints and redacted forms
of the old and new key, the provider identity, every step with its status and timestamps, findings,
purge results, evidence and action items. It is rewritten atomically (temp file + rename, 0600 in a
0700 directory) after every change, and refused if it would hold a live secret in any encoding.
The post-mortem is rendered from it alone; a rerun resumes from it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from cauterize.errors import CauterizeError, InputError
from cauterize.secret import assert_clean

STEPS = ("intake", "revoke", "rotate", "redeploy", "locate", "purge", "evidence", "report")
#: ``skipped``: not needed, by policy or dry run (done for completeness); ``blocked``: a step it needs
#: did not succeed (``details.blocked_by`` names it); ``waiting``: for a person; ``interrupted``: a
#: signal stopped it. Complete means every step is ``ok`` or ``skipped``.
Status = Literal["pending", "running", "ok", "failed", "skipped", "blocked", "waiting", "interrupted"]
#: the statuses that count as done: an incident is complete when every step has one of them
DONE = ("ok", "skipped")
RECORD_NAME = "incident.json"


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

    def new_id(self, runbook: str, fingerprint: str, now: datetime | None = None) -> str:
        stamp = (now or utcnow()).strftime("%Y%m%dT%H%M%SZ")
        return f"{stamp}-{runbook}-{fingerprint.removeprefix('sha256:')[:8]}"

    def directory(self, incident_id: str) -> Path:
        return self.root / incident_id

    def create(self, incident: Incident) -> Path:
        path = self.directory(incident.id)
        _private_dir(self.root)
        _private_dir(path)
        save(incident, path)
        return path

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
            except CauterizeError:
                continue
            if incident.runbook == runbook and incident.old_key.fingerprint == fingerprint and not incident.complete:
                return path
        return None


class IncidentLocked(CauterizeError):
    exit_code = 2
    remediation = "Wait for the other responder (the record shows its progress), or stop it and rerun."


LOCK_NAME = "lock"


def acquire_lock(incident_dir: Path) -> None:
    """One responder per incident: a lock file naming the owner's pid and start time. A lock whose
    process is gone is stale and taken over; this process may take its own lock again."""
    import atexit
    import json as _json

    path = Path(incident_dir) / LOCK_NAME
    try:
        owner = _json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        owner = None
    if owner and owner.get("pid") != os.getpid() and _alive(owner.get("pid")):
        raise IncidentLocked(
            f"incident {Path(incident_dir).name} is being handled by process {owner['pid']} "
            f"(started {owner.get('started_at')})"
        )
    path.write_text(_json.dumps({"pid": os.getpid(), "started_at": utcnow().isoformat()}))
    os.chmod(path, 0o600)
    atexit.register(release_lock, Path(incident_dir))


def release_lock(incident_dir: Path) -> None:
    import json as _json

    path = Path(incident_dir) / LOCK_NAME
    try:
        if _json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (FileNotFoundError, ValueError):
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
    record = Path(incident_dir) / RECORD_NAME
    try:
        return Incident.model_validate_json(record.read_bytes())
    except FileNotFoundError:
        raise InputError(f"incident {incident_dir}: no {RECORD_NAME} there") from None
    except ValueError as exc:
        raise InputError(f"incident {incident_dir}: {RECORD_NAME} is not a valid record ({type(exc).__name__})") from None


def save(incident: Incident, incident_dir: Path) -> None:
    incident.updated_at = utcnow()
    data = json.dumps(incident.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"
    write_private(Path(incident_dir) / RECORD_NAME, data, what="the incident record")


def write_private(path: Path, data: str, *, what: str) -> None:
    """Atomic write of a file cauterize owns: refused if it holds a live secret; 0600 in 0700."""
    assert_clean(data, what)
    _private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


@contextmanager
def step(incident: Incident, incident_dir: Path, name: str) -> Iterator[StepRecord]:
    """Run one step: ``running`` on entry, ``ok`` on exit unless the body chose another status;
    ``failed`` (or ``waiting`` for a manual step) with the error's one line and remediation on error.
    The record is saved at every transition."""
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
    else:
        if record.status == "running":
            record.status = "ok"
        incident.log(name, record.status + (f": {record.summary}" if record.summary else ""))
    finally:
        record.ended_at = utcnow()
        save(incident, incident_dir)
