"""``.env`` files: the variable's value is replaced in place by an atomic rewrite.

Every other byte stays as it was: other lines, comments, blank lines, ``export`` prefixes, line
endings and the value's quoting style. The new file gets the old one's mode and owner and
replaces it by rename, so a reader never sees a half-written file. So what a write needs is a
readable file (or none yet) in a directory it can create a file in (or create); ``missing()`` checks
exactly that, and the file's own write permission does not matter.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path

from cauterize.errors import StoreError
from cauterize.secret import Secret
from cauterize.stores.base import StoreWrite, register

_LINE = r"""^(?P<lead>[ \t]*(?:export[ \t]+)?){name}(?P<eq>[ \t]*=[ \t]*)(?P<value>"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^\s#'"]*)"""


class DotenvStore:
    kind = "dotenv"

    def __init__(self, path: Path, variable: str):
        self.path = Path(path)
        self.variable = variable
        self._line = re.compile(_LINE.format(name=re.escape(variable)).encode(), re.MULTILINE)

    def describe(self) -> str:
        return f"dotenv {self.path} {self.variable}"

    def missing(self) -> list[str]:
        """What keeps the write (read, temporary file beside it, rename) from working here."""
        try:
            return self._missing()
        except OSError as exc:  # a directory on the way that this user cannot search
            return [f"{self.describe()}: cannot look at the path ({exc.strerror}): run as a user who can read it"]

    def _missing(self) -> list[str]:
        what, path = self.describe(), self.path
        if path.is_dir():
            return [f"{what}: {path} is a directory: fix the store's path in the runbook"]
        if path.exists() and not os.access(path, os.R_OK):
            return [f"{what}: the file is not readable by this user: run as its owner, or grant read"]
        directory = _existing_ancestor(path.parent)
        if not directory.is_dir():
            return [f"{what}: {directory} is not a directory: fix the store's path in the runbook"]
        if not os.access(directory, os.W_OK | os.X_OK):
            needs = "to create a file in" if directory == path.parent else "to create the missing directories under"
            return [(f"{what}: {directory} is not writable by this user (a write needs {needs} it): "
                    "run as its owner, or grant write")]
        if path.exists() and _sticky_refuses_rename(directory, path):
            return [f"{what}: {directory} is sticky and the file is another user's: run as the file's owner"]
        return []

    def notes(self) -> list[str]:
        try:
            if self.path.exists():
                return []
        except OSError:
            return []  # missing() says why
        return [f"{self.describe()}: the file does not exist yet; a write creates it: check the path in the runbook"]

    def _read_bytes(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"{self.describe()}: cannot read ({exc.strerror})") from None

    def read(self) -> Secret | None:
        data = self._read_bytes()
        if data is None:
            return None
        values = [_unquote(match.group("value")) for match in self._line.finditer(data)]
        if not values or not values[-1]:
            return None
        return Secret(values[-1].decode("utf-8"))

    def write(self, value: Secret) -> StoreWrite:
        before = self._read_bytes()
        after = self._render(before or b"", value.reveal().encode())
        self._replace(after, like=self.path if before is not None else None)
        if self.read() != value:
            raise StoreError(f"{self.describe()}: read-back after the write does not hold the new key")

        def undo() -> None:
            if before is None:
                self.path.unlink(missing_ok=True)
            else:
                self._replace(before, like=self.path)

        return StoreWrite(store=self.describe(), version=None, undo=undo)

    def _render(self, data: bytes, new: bytes) -> bytes:
        def substitute(match: re.Match[bytes]) -> bytes:
            quoted = match.group("value")
            quote = quoted[:1] if quoted[:1] in (b'"', b"'") else b""
            return match.group("lead") + self.variable.encode() + match.group("eq") + quote + new + quote

        rendered, count = self._line.subn(substitute, data)
        if count:
            return rendered
        newline = b"\r\n" if b"\r\n" in data else b"\n"
        if data and not data.endswith(b"\n"):
            data += newline
        return data + self.variable.encode() + b"=" + new + newline

    def _replace(self, data: bytes, *, like: Path | None) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
        except OSError as exc:
            raise StoreError(f"{self.describe()}: cannot write in {directory} ({exc.strerror})") from None
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if like is not None:
                stat = like.stat()
                os.chmod(tmp, stat.st_mode & 0o7777)
                if hasattr(os, "chown") and os.geteuid() == 0:
                    os.chown(tmp, stat.st_uid, stat.st_gid)
            os.replace(tmp, self.path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise StoreError(f"{self.describe()}: cannot replace the file ({exc.strerror})") from None


def _existing_ancestor(directory: Path) -> Path:
    """``directory``, or its nearest ancestor that exists (a write makes the missing ones)."""
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return directory


def _sticky_refuses_rename(directory: Path, path: Path) -> bool:
    """In a sticky directory (``/tmp``) only the file's or the directory's owner (or root) may replace the file."""
    uid = os.geteuid()
    mode, owner = directory.stat(), path.stat().st_uid
    return bool(mode.st_mode & stat.S_ISVTX) and uid not in (0, mode.st_uid, owner)


def _unquote(value: bytes) -> bytes:
    if len(value) >= 2 and value[:1] == value[-1:] and value[:1] in (b'"', b"'"):
        return value[1:-1]
    return value


@register("dotenv")
def _from_runbook(config, loaded) -> DotenvStore:
    return DotenvStore(loaded.resolve(config.path), config.variable)
