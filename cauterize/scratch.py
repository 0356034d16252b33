"""Private scratch directories for the commands that run outside an incident (``cauterize purge``,
``cauterize locate``): a mirror clone there holds the key until it is rewritten, and the
replacement expressions hold it in clear, so no crash may leave one behind for good.

``scratch(prefix)`` makes a fresh 0700 directory in the system temp and holds an exclusive
``flock`` on the ``.owner`` file inside it for as long as the command runs; the kernel releases
it when the process dies, SIGKILL included. Before making its own, it removes every directory of
this user with the same prefix whose lock nobody holds (a crashed run's), and removes its own on
the way out. (Inside an incident, the incident's ``.work/`` is cleared the same way: incident.py.)
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cauterize.locate.gitcmd import private_dir

OWNER = ".owner"
#: A directory without its lock file yet (a run killed between mkdtemp and the lock) is stale after this.
UNLOCKED_GRACE_S = 600


@contextmanager
def scratch(prefix: str, parent: Path | None = None) -> Iterator[Path]:
    """A private directory, locked while in use; a crashed predecessor's is swept first."""
    root = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    sweep(root, prefix)
    path = private_dir(root, prefix)
    fd = os.open(path / OWNER, os.O_CREAT | os.O_WRONLY | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def sweep(root: Path, prefix: str) -> list[str]:
    """Remove this user's ``prefix*`` directories under ``root`` that no live process holds.
    Returns their names."""
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue
        if _abandoned(Path(entry.path), info):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.name)
    return removed


def _abandoned(path: Path, info: os.stat_result) -> bool:
    try:
        fd = os.open(path / OWNER, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return time.time() - info.st_mtime > UNLOCKED_GRACE_S
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a live run holds it
    finally:
        os.close(fd)
    return True
