"""The guard against the next leak: refuse a change that adds an LLM API key.

Two checks run on every line of every file checked:

* key shapes, one ``Rule`` per provider format (provider-apis.md sections 1.8, 2.5, 3.3-3.4, 4, 5):
  OpenAI ``sk-proj-``/``sk-svcacct-``/``sk-admin-``/legacy keys with the ``T3BlbkFJ`` marker,
  Anthropic ``sk-ant-api03-``/``sk-ant-admin01-`` keys (93 characters, then ``AA``), Google API keys
  (``AIza`` + 35), Google service-account key files (their ``private_key_id``), Azure OpenAI keys
  (32 hex digits next to an ``azure``/``openai`` keyword, or the 84-character ``JQQJ99`` form) and
  Cohere keys (40 alphanumerics next to a ``cohere``/``CO_API_KEY`` keyword). A rule with a context
  keyword needs it on the line or the line before (a service-account key: anywhere in the file).
* the organisation's list of leaked fingerprints (``sha256:`` + 16 hex digits, one a line; never a
  key): every token-like string of a line (and a whole file, for key files) is fingerprinted and
  looked up, whatever its shape. The list is ``CAUTERIZE_LEAKED_FINGERPRINTS``, else
  ``$XDG_CONFIG_HOME/cauterize/leaked-fingerprints`` (``~/.config/...``); the incident adds its key's
  fingerprint with ``add_leaked_fingerprint``.

A line holding ``cauterize: allow`` is exempt from the shape rules (a test fixture, a documented
example), never from the leaked list. Findings name the file, line, key type, redacted form and
fingerprint only. ``check_staged`` reads what the commit will hold (the index), not the working
tree; ``install`` writes the pre-commit hook that runs it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cauterize.errors import GitError, InputError
from cauterize.locate.gitcmd import run
from cauterize.secret import fingerprint_of, redact

LEAKED_ENV = "CAUTERIZE_LEAKED_FINGERPRINTS"
ALLOW = "cauterize: allow"
HOOK_MARKER = "# cauterize-guard"
CHAINED = "pre-commit.before-cauterize"
FINGERPRINT = re.compile(r"sha256:[0-9a-f]{16}")
_BINARY_PROBE = 8000
_URLSAFE = r"[A-Za-z0-9_-]"
_OPENAI_HALF = _URLSAFE + "{20,}"
_MARKER = "T3Blbk" + "FJ"  # base64 of "OpenAI"


@dataclass(frozen=True)
class Rule:
    kind: str
    pattern: re.Pattern[str]
    context: re.Pattern[str] | None = None  # a keyword the line (or the one before it) must hold
    file_context: bool = False  # the keyword may be anywhere in the file
    secret: bool = True  # False: the match names a key (an id) without being the secret itself


def _rule(kind: str, body: str, context: str | None = None, **kwargs: bool) -> Rule:
    pattern = re.compile(rf"(?<![\w-]){body}(?![\w-])" if "(?P<id>" not in body else body)
    return Rule(kind, pattern, re.compile(context, re.IGNORECASE) if context else None, **kwargs)


RULES: tuple[Rule, ...] = (
    _rule("OpenAI project key", f"sk-proj-{_OPENAI_HALF}{_MARKER}{_OPENAI_HALF}"),
    _rule("OpenAI service-account key", f"sk-(?:svcacct|service)-{_OPENAI_HALF}{_MARKER}{_OPENAI_HALF}"),
    _rule("OpenAI admin key", f"sk-admin-{_OPENAI_HALF}{_MARKER}{_OPENAI_HALF}"),
    _rule("OpenAI key", f"sk-(?:None-)?{_OPENAI_HALF}{_MARKER}{_OPENAI_HALF}"),
    _rule("Anthropic API key", r"sk-ant-api03-[\w-]{93}AA"),
    _rule("Anthropic admin key", r"sk-ant-admin01-[\w-]{93}AA"),
    _rule("Google API key", r"AIza[\w-]{35}"),
    _rule("Google service-account key", r'"private_key_id"\s*:\s*"(?P<id>[0-9a-f]{40})"',
          r'"private_key"\s*:\s*"-{5}BEGIN|"type"\s*:\s*"service_account"', file_context=True, secret=False),
    _rule("Azure OpenAI key", r"[0-9A-Za-z]{52}JQQJ99[0-9A-Za-z]{26}"),
    _rule("Azure OpenAI key", r"[0-9a-f]{32}", r"azure|openai"),
    _rule("Cohere API key", r"[0-9A-Za-z]{40}", r"cohere|\bCO_API_KEY\b"),
)
_TOKEN = re.compile(r"[A-Za-z0-9_\-.~+/=:]{8,}")  # runs of key characters
_WORD = re.compile(r"[^\s\"'`,;()\[\]{}<>]{8,}")  # runs of anything but blanks, quotes and brackets
_QUOTED = re.compile(r"\"([^\"\s]{8,})\"|'([^'\s]{8,})'|`([^`\s]{8,})`")


@dataclass(frozen=True)
class Finding:
    """A key in a file: where, what kind, and its public identity only."""

    path: str
    line: int
    kind: str
    redacted: str
    fingerprint: str | None  # None when the match names the key without being it (a private_key_id)
    leaked: bool = False  # its fingerprint is on the leaked list

    def describe(self) -> str:
        identity = f"{self.redacted} ({self.fingerprint})" if self.fingerprint else self.redacted
        note = ", a key already known to be leaked" if self.leaked else ""
        return f"{self.path}:{self.line}: {self.kind} {identity}{note}"


# ---- the leaked-fingerprint list ----------------------------------------------------------------


def leaked_list_path() -> Path:
    if os.environ.get(LEAKED_ENV):
        return Path(os.environ[LEAKED_ENV]).expanduser()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "cauterize" / "leaked-fingerprints"


def load_leaked(path: Path | None = None) -> frozenset[str]:
    """The fingerprints on the list (empty when there is none); lines that are not fingerprints are ignored."""
    try:
        text = (path or leaked_list_path()).read_text(encoding="utf-8")
    except FileNotFoundError:
        return frozenset()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"the leaked-fingerprint list cannot be read ({type(exc).__name__})",
                         remediation=f"Fix or remove {path or leaked_list_path()} (or {LEAKED_ENV}).") from None
    return frozenset(line.strip() for line in text.splitlines() if FINGERPRINT.fullmatch(line.strip()))


def add_leaked_fingerprint(fingerprint: str, path: Path | None = None) -> bool:
    """Put ``fingerprint`` on the list (created if needed); False if it was there already."""
    if not FINGERPRINT.fullmatch(fingerprint):  # never echo it: it might be a key pasted by mistake
        raise InputError("not a fingerprint: the leaked list takes sha256: + 16 hex digits, never a key")
    target = path or leaked_list_path()
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        info = None
    if info is not None and not stat.S_ISREG(info.st_mode):  # a link planted there is never written through
        from cauterize.errors import IncidentDirError

        raise IncidentDirError(f"the leaked-fingerprint list {target} is not a regular file (a link?)",
                               remediation=f"Remove {shlex.quote(str(target))} (cauterize did not make it) and rerun.")
    if fingerprint in load_leaked(target):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    existing = _read_nofollow(target) if info is not None else (
        "# Fingerprints of leaked keys (sha256: + 16 hex digits of SHA-256), one a line; never a key.\n"
    )
    separator = "" if not existing or existing.endswith("\n") else "\n"
    _replace(target, f"{existing}{separator}{fingerprint}\n", mode=stat.S_IMODE(info.st_mode) if info else 0o600)
    return True


def _read_nofollow(path: Path) -> str:
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), encoding="utf-8") as handle:
        return handle.read()


def _replace(target: Path, text: str, *, mode: int) -> None:
    """Write ``target`` through a temp file (``O_EXCL|O_NOFOLLOW``) renamed over it: atomic, and a
    link that appears at ``target`` meanwhile is replaced, not followed."""
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            os.fchmod(handle.fileno(), mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- scanning -------------------------------------------------------------------------------------


def scan_text(path: str, text: str, leaked: frozenset[str] = frozenset()) -> list[Finding]:
    """Every key shape and every leaked fingerprint in ``text``, by line."""
    lines = text.splitlines()
    in_file = {rule.kind: bool(rule.context.search(text)) for rule in RULES if rule.file_context and rule.context}
    findings: list[Finding] = []
    for number, line in enumerate(lines, 1):
        seen: set[str] = set()
        claimed: list[tuple[int, int]] = []
        for rule in () if ALLOW in line else RULES:
            for match in rule.pattern.finditer(line):
                group = "id" if "id" in rule.pattern.groupindex else 0
                start, end = match.span(group)
                if any(start < e and s < end for s, e in claimed) or not _in_context(rule, lines, number, in_file):
                    continue
                value = match.group(group)
                claimed.append((start, end))
                fingerprint = fingerprint_of(value) if rule.secret else None
                seen.add(fingerprint or value)
                findings.append(Finding(path, number, rule.kind, redact(value), fingerprint, fingerprint in leaked))
        for candidate in _candidates(line) if leaked else ():
            fingerprint = fingerprint_of(candidate)
            if fingerprint in leaked and fingerprint not in seen:
                seen.add(fingerprint)
                findings.append(Finding(path, number, "key on the leaked list", redact(candidate), fingerprint, True))
    whole = text.strip()
    if leaked and whole and fingerprint_of(whole) in leaked and not any(f.fingerprint == fingerprint_of(whole)
                                                                        for f in findings):
        shown = redact(" ".join(whole.split()))  # one line, whatever the file's layout
        findings.append(Finding(path, 1, "key file on the leaked list", shown, fingerprint_of(whole), True))
    return findings


def _in_context(rule: Rule, lines: list[str], number: int, in_file: dict[str, bool]) -> bool:
    if rule.context is None:
        return True
    if rule.file_context:
        return in_file.get(rule.kind, False)
    return bool(rule.context.search("\n".join(lines[max(0, number - 2) : number])))


def _candidates(line: str) -> Iterator[str]:
    """Token-like strings of a line a key may be: runs of key characters, the sides of ``=``/``:``,
    quoted strings, the whole line."""
    seen: set[str] = set()
    found = [line.strip()] + [next(g for g in m.groups() if g) for m in _QUOTED.finditer(line)]
    for token in _TOKEN.findall(line) + _WORD.findall(line):
        found += [token, token.rstrip(".,;:")]
        for separator in "=:":
            head, _, tail = token.partition(separator)
            found += [head, tail]
    for candidate in found:
        if len(candidate) >= 8 and candidate not in seen:
            seen.add(candidate)
            yield candidate


def _decode(data: bytes) -> str | None:
    """The text of a file, or None for a binary one."""
    return None if b"\0" in data[:_BINARY_PROBE] else data.decode("utf-8", "replace")


def check_files(paths: Iterable[Path], leaked: frozenset[str] | None = None) -> list[Finding]:
    """Check files as they are on disk (what the pre-commit framework passes: it stashes unstaged changes)."""
    leaked = load_leaked() if leaked is None else leaked
    findings: list[Finding] = []
    for path in paths:
        try:
            text = _decode(Path(path).read_bytes())
        except (IsADirectoryError, FileNotFoundError):
            continue
        except OSError as exc:
            raise InputError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
        if text is not None:
            findings += scan_text(str(path), text, leaked)
    return findings


def check_staged(repo: Path = Path("."), leaked: frozenset[str] | None = None) -> list[Finding]:
    """Check what the next commit will hold: each added, copied, modified or renamed file as staged
    (``git diff --cached --name-only -z``, then the blob at ``:PATH``), not as in the working tree."""
    leaked = load_leaked() if leaked is None else leaked
    where = str(repo)
    listed = _git(repo, "diff", "--cached", "--name-only", "-z", "--diff-filter=ACMR", "--ignore-submodules",
                  "--no-renames", verb="git diff --cached", where=where)
    findings: list[Finding] = []
    for raw in filter(None, listed.split(b"\0")):
        name = os.fsdecode(raw)
        text = _decode(_git(repo, "cat-file", "blob", f":{name}", verb="git cat-file", where=where))
        if text is not None:
            findings += scan_text(name, text, leaked)
    return findings


def _git(repo: Path, *args: str, verb: str, where: str) -> bytes:
    return run(["git", "-C", os.fspath(repo), *args], verb=verb, repo=where).stdout


# ---- the hook -------------------------------------------------------------------------------------


def hook_script(fallback: list[str] | None = None) -> str:
    """The pre-commit hook: the hook that was there before (kept as ``pre-commit.before-cauterize``)
    runs first; then ``cauterize guard check --staged``, from PATH or else the installing cauterize."""
    fallback = fallback or [sys.executable, "-m", "cauterize.cli"]
    return f"""#!/bin/sh
{HOOK_MARKER}: installed by `cauterize guard install`; refuses a commit that adds an LLM API key.
# The pre-commit hook that was here before is kept as {CHAINED} and runs first.
hooks=$(dirname "$0")
if [ -x "$hooks/{CHAINED}" ]; then
    "$hooks/{CHAINED}" "$@" || exit $?
fi
if command -v cauterize >/dev/null 2>&1; then
    exec cauterize guard check --staged
fi
exec {shlex.join(fallback)} guard check --staged
"""


@dataclass(frozen=True)
class Installed:
    hook: Path
    chained: Path | None  # the previous hook, now run first
    changed: bool  # False: the guard was installed already

    def describe(self) -> str:
        if not self.changed:
            return f"the cauterize guard is already installed in {self.hook}"
        chained = f"; the previous hook runs first, as {self.chained}" if self.chained else ""
        return f"installed the cauterize guard as {self.hook}{chained}"


def install(repo: Path = Path(".")) -> Installed:
    """Write the pre-commit hook of ``repo`` (where git looks for it: ``core.hooksPath`` included),
    executable, chaining to a hook already there; installing twice changes nothing."""
    hooks = Path(os.fsdecode(_git(repo, "rev-parse", "--git-path", "hooks", verb="git rev-parse",
                                  where=str(repo)).strip()))
    hooks = hooks if hooks.is_absolute() else Path(repo) / hooks
    hook, chained = hooks / "pre-commit", hooks / CHAINED
    existing = hook.read_text(encoding="utf-8", errors="replace") if hook.exists() else None
    if existing is not None and HOOK_MARKER in existing:
        return Installed(hook, chained if chained.exists() else None, changed=False)
    hooks.mkdir(parents=True, exist_ok=True)
    if existing is not None:
        if chained.exists():
            raise GitError(f"{hook} and {chained} both exist", remediation=f"Merge {chained} into {hook} by hand, "
                           "remove it, and run `cauterize guard install` again.")
        hook.rename(chained)
    found = shutil.which("cauterize")
    hook.write_text(hook_script([found] if found else None), encoding="utf-8")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRUSR)
    return Installed(hook, chained if existing is not None else None, changed=True)


__all__ = ["RULES", "Finding", "Installed", "add_leaked_fingerprint", "check_files", "check_staged", "install",
           "leaked_list_path", "load_leaked", "scan_text"]
