"""Running git (and git-filter-repo) as child processes: one environment, one error boundary.

Every child runs without a shell, with ``GIT_TERMINAL_PROMPT=0`` (never wait for a password) and
``GIT_OPTIONAL_LOCKS=0`` (a scan never writes to the repository it reads). A failed command
becomes a ``GitError`` (or the error class the caller names) whose one-line message names the
command's verb and the repository, plus the first line git printed on stderr, with credentials in
URLs and any key form redacted. Key values never go on a command line: callers pass them through
files or stdin. Children run in a session of their own, registered with ``interrupts``: a
signal ends them and whatever they started (git-filter-repo's git fast-export and fast-import).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from cauterize import interrupts
from cauterize.errors import CauterizeError, GitError
from cauterize.secret import safe_environ, scrub

_SCP_LIKE = re.compile(r"^[\w.~-]+@[\w.-]+:")


def child_env() -> dict[str, str]:
    """The environment of every git child process."""
    env = safe_environ()  # the key and the admin credentials stay out of every child's environment
    env.update(GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", LC_ALL="C", LANGUAGE="C")
    return env


def is_url(repo: str | Path) -> bool:
    """Whether ``repo`` names a remote to clone (``https://``, ``ssh://``, ``file://``, ``git@host:path``)."""
    text = str(repo)
    if "://" in text:
        return True
    return bool(_SCP_LIKE.match(text)) and not Path(text).exists()


def display_name(repo: str | Path) -> str:
    """How a repository is named in findings and messages: URLs lose any user:password part."""
    text = str(repo)
    if "://" not in text:
        return text
    parts = urlsplit(text)
    if "@" not in parts.netloc:
        return text
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def file_url(path: str | Path) -> str:
    """A ``file://`` URL for a local repository, so a clone gets only what a remote would serve."""
    return Path(path).expanduser().resolve().as_uri()


def private_dir(workdir: Path | None, prefix: str) -> Path:
    """A fresh directory only this user can enter (mode 0700) under ``workdir`` (or the system temp)."""
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=workdir))
    path.chmod(0o700)
    return path


def run(
    argv: Sequence[str | os.PathLike],
    *,
    verb: str,
    repo: str,
    cwd: Path | None = None,
    input: bytes | None = None,
    check: bool = True,
    error: type[CauterizeError] = GitError,
    redact: Callable[[str], str] | None = None,
    message_lines: int = 1,
) -> subprocess.CompletedProcess[bytes]:
    """Run one child process to completion; on failure (if ``check``) raise ``error`` naming verb and
    repo, with the first ``message_lines`` lines of its stderr joined on one line."""
    args = [os.fspath(arg) for arg in argv]
    try:
        done = interrupts.run(args, cwd=cwd, input=input, env=child_env())
    except OSError as exc:
        raise error(f"{verb} of {repo} could not start: {exc.strerror or type(exc).__name__}") from None
    if check and done.returncode != 0:
        raise error(f"{verb} of {repo} failed: {first_line(done.stderr, redact, count=message_lines)}")
    return done


def git_argv(git_dir: Path, *args: str) -> list[str]:
    """``git --no-replace-objects --git-dir GIT_DIR ARGS...``: objects as stored, not as replaced."""
    return ["git", "--no-replace-objects", "--git-dir", os.fspath(git_dir), *args]


def git(git_dir: Path, *args: str, verb: str, repo: str, **kwargs) -> subprocess.CompletedProcess[bytes]:
    """Run ``git_argv(git_dir, *args)``: ``verb`` names the command in error messages."""
    return run(git_argv(git_dir, *args), verb=verb, repo=repo, **kwargs)


def lines(git_dir: Path, *args: str, verb: str, repo: str) -> Iterator[bytes]:
    """Stream the stdout lines of a git command that may print millions of them (e.g. ``rev-list --all``)."""
    with tempfile.TemporaryFile() as errors:
        proc = interrupts.spawn(git_argv(git_dir, *args), stdout=subprocess.PIPE, stderr=errors,
                                stdin=subprocess.DEVNULL, env=child_env())
        try:
            for line in proc.stdout:
                yield line.rstrip(b"\n")
        except BaseException:  # the consumer stopped early (or failed): do not leave git running
            interrupts.kill_group(proc)
            raise
        finally:
            proc.stdout.close()
            returncode = proc.wait()
            interrupts.release(proc)
        if returncode != 0:
            errors.seek(0)
            raise GitError(f"{verb} of {repo} failed: {first_line(errors.read())}")


def first_line(stderr: bytes, redact: Callable[[str], str] | None = None, *, count: int = 1) -> str:
    """The first meaningful line(s) of a child's stderr on one line, safe to show: credentials and keys removed."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    meaningful = [line for line in lines if line and not line.startswith("hint:")]
    line = " ".join(meaningful[:count]) or "(no message)"
    line = re.sub(r"(\w+://)[^/@\s]+@", r"\1", line)  # user:password@ in URLs
    line = scrub(line)
    return redact(line) if redact else line


def git_dir_of(path: str | Path, *, repo: str) -> Path:
    """The absolute git directory of a local repository (working tree or bare); ``GitError`` if none."""
    local = Path(path).expanduser()
    if not local.is_dir():
        raise GitError(f"{repo} is not a directory")
    done = run(["git", "-C", os.fspath(local), "rev-parse", "--absolute-git-dir"], verb="git rev-parse",
               repo=repo, check=False)
    if done.returncode != 0:
        raise GitError(f"{repo} is not a git repository ({first_line(done.stderr)})")
    return Path(done.stdout.decode().strip())


def clone_mirror(url: str, dest: Path, *, repo: str, error: type[CauterizeError] = GitError) -> Path:
    """``git clone --mirror URL DEST``: a bare copy of every ref the remote serves."""
    run(["git", "clone", "--mirror", "--quiet", "--", url, os.fspath(dest)], verb="git clone", repo=repo,
        error=error)
    return dest
