"""How the webhook receiver knows an alert was dealt with: by its delivery GUID, and by its key's incident.

GitHub may redeliver any delivery of the past 3 days with the same ``X-GitHub-Delivery`` GUID, by
hand or through its API. The receiver answers a GUID it has acted on with ``duplicate`` and starts
nothing; this log is that memory.

    <state dir>/deliveries.jsonl    one JSON object a line, 0600 in a 0700 directory:
        {"delivery": GUID, "at": ISO-8601, "alert": "OWNER/REPO#N", "action": ..., "status":
         "started" | "in-progress" | "already-contained", "runbook": FILE, "fingerprint":
         "sha256:..." | null, "incident": ID | null, "run": ... | null}

Entries older than ``KEEP`` (7 days, over GitHub's 3-day window) are pruned at start and once a
day. The log holds public identities only (fingerprints, incident ids): never an alert's secret or
any key value, and each line is checked with ``assert_clean`` before it is written. The directory is
refused (exit 2) when it is a link, another user's or writable by others. A second receiver on the
same directory shares the memory: every lookup reads the file, and writes hold an ``flock``.

An incident is its runbook and its key's fingerprint (``Identity``): ``latest_incident`` finds the
newest one of either fingerprint the receiver knows (the runbook's key, the alert's secret), complete
or not, and ``lock_holder`` says whether a live responder holds it. Both only read.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cauterize import incident as records
from cauterize.errors import CauterizeError, InputError
from cauterize.incident import utcnow
from cauterize.logs import LOGGER
from cauterize.secret import assert_clean

KEEP = timedelta(days=7)
FILE_NAME = "deliveries.jsonl"
STATE_DIR_NAME = ".cauterize-webhook"  # under the runbook directory unless the receiver is given one
_PRUNE_EVERY = timedelta(days=1)


class DeliveryLog:
    """The deliveries the receiver acted on, by GUID, for at least GitHub's redelivery window."""

    def __init__(self, directory: Path, *, keep: timedelta = KEEP):
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self.keep = keep
        self._lock = threading.Lock()
        self._pruned_at: datetime | None = None
        _private_dir(self.directory)
        self.prune()

    def get(self, delivery: str) -> dict[str, Any] | None:
        """The entry of this GUID, or None (also once it is older than ``keep``)."""
        found = None
        for entry in self._entries():
            if entry.get("delivery") == delivery:
                found = entry
        return found

    def recent(self, runbook: str, fingerprints: set[str | None], within: timedelta) -> dict[str, Any] | None:
        """The newest ``started`` entry for this runbook and one of these fingerprints, not older
        than ``within`` (a response started but whose incident may not exist yet)."""
        since = utcnow() - within
        found = None
        for entry in self._entries():
            if (entry.get("status") == "started" and entry.get("runbook") == runbook
                    and entry.get("fingerprint") in fingerprints and _when(entry) >= since):
                found = entry
        return found

    def remember(self, entry: dict[str, Any]) -> None:
        """Append one entry (``at`` is set here)."""
        line = json.dumps({"at": utcnow().isoformat(), **entry}, sort_keys=False) + "\n"
        assert_clean(line, "the webhook's delivery log")
        with self._locked():
            fd = self._open(os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                _check_file(fd, self.path)
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        if self._pruned_at is None or utcnow() - self._pruned_at > _PRUNE_EVERY:
            self.prune()

    def prune(self) -> None:
        """Rewrite the log without the entries older than ``keep`` (atomically: temp file + rename)."""
        with self._locked():
            self._pruned_at = utcnow()
            entries = list(self._entries(old=True))
            kept = [entry for entry in entries if _when(entry) >= utcnow() - self.keep]
            if len(kept) == len(entries):
                return
            tmp = self.directory / f".{FILE_NAME}.tmp"
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(entry) + "\n" for entry in kept)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)

    def _entries(self, *, old: bool = False) -> Iterator[dict[str, Any]]:
        try:
            fd = self._open(os.O_RDONLY)
        except FileNotFoundError:
            return
        with os.fdopen(fd, encoding="utf-8") as handle:
            _check_file(handle.fileno(), self.path)
            lines = handle.read().splitlines()
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a torn last line after a crash
            if isinstance(entry, dict) and (old or _when(entry) >= utcnow() - self.keep):
                yield entry

    def _open(self, flags: int) -> int:
        """The log file, never through a link (``O_NOFOLLOW``), 0600 when created."""
        try:
            return os.open(self.path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            raise
        except OSError as exc:  # ELOOP: a link planted in its place
            raise InputError(f"{self.path}: cannot be opened ({exc.strerror}); it must be a file cauterize made",
                             remediation=_REMEDY.format(dir=self.directory)) from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock


_REMEDY = "Use a directory private to this user (chmod 700 {dir}, owned by this user), or pass --state-dir."


def _when(entry: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(entry.get("at")))
    except ValueError:
        return datetime.min.replace(tzinfo=utcnow().tzinfo)


def _private_dir(path: Path) -> None:
    """Create the state directory 0700, or accept an existing one only if it is this user's own,
    a real directory (not a link) and not writable by others; read bits for others are removed."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = os.lstat(path)
    problem = None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        problem = "is a link or not a directory"
    elif info.st_uid != os.getuid():
        problem = "belongs to another user"
    elif info.st_mode & 0o022:
        problem = "is writable by others"
    if problem:
        raise InputError(f"webhook state directory {path} {problem}", remediation=_REMEDY.format(dir=path))
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)


def _check_file(fd: int, path: Path) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise InputError(f"{path} is not a private file of this user", remediation=_REMEDY.format(dir=path.parent))


# -- incident identity ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Who an alert's incident is: the runbook and the key's fingerprints known here."""

    runbook: Path
    name: str  # the runbook's name (incident records name it)
    incidents: Path  # the runbook's report directory
    key: str | None  # the runbook's key, read from its source; None when this process cannot read it
    alert: str | None  # the alert's secret, when GitHub sent it

    @property
    def fingerprint(self) -> str | None:
        return self.alert or self.key

    @property
    def fingerprints(self) -> set[str]:
        return {value for value in (self.alert, self.key) if value}


def identify(runbook: Path, alert_fingerprint: str | None = None, *, read_key: bool = True) -> Identity:
    """The runbook's name, report directory and key fingerprint (read from its source: ``stdin:``
    never is, and a source this process cannot read leaves it unknown, logged)."""
    from cauterize.providers.formats import load_leaked_key
    from cauterize.runbook import load_runbook

    loaded = load_runbook(runbook)
    rb = loaded.runbook
    key = None
    if read_key and not rb.key.source.startswith("stdin:"):
        try:
            key = load_leaked_key(rb.key.source, rb.key.provider, base_dir=loaded.base_dir).fingerprint
        except CauterizeError as exc:
            LOGGER.info("webhook: the key of %s cannot be read here (%s)", runbook.name, exc.message)
    return Identity(runbook, rb.name, loaded.resolve(rb.report.dir), key, alert_fingerprint)


def latest_incident(who: Identity, *, fingerprints: set[str | None] | None = None) -> tuple[Path, records.Incident] | None:
    """The newest incident (not a dry run) of the runbook for one of the key's fingerprints, complete
    or not; None when there is none (or no fingerprint is known). Read only."""
    wanted = (fingerprints or who.fingerprints) - {None}
    if not wanted or not who.incidents.is_dir():
        return None
    newest = None
    for path in who.incidents.iterdir():
        if not (path / records.RECORD_NAME).is_file():
            continue
        try:
            incident = records.load(path)
        except CauterizeError:
            continue
        mine = incident.runbook == who.name and incident.old_key.fingerprint in wanted and not incident.dry_run
        if mine and (newest is None or incident.created_at > newest[1].created_at):
            newest = (path, incident)
    return newest


def lock_holder(incident_dir: Path) -> int | None:
    """The pid holding the incident's lock (``incident.acquire_lock``) if that process is alive."""
    try:
        pid = json.loads((Path(incident_dir) / records.LOCK_NAME).read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    try:  # a zombie is gone for our purpose
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[-1][:1] == "Z":
            return None
    except OSError:
        pass
    return pid
