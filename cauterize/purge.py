"""Purge a key from a repository's history with git-filter-repo, following its documented
Sensitive Data Removal procedure step by step, and say plainly what it could not do.

1. Mirror-clone the remote (``file://`` for a local path, so only what a remote serves) into a
   private directory; the user's own clones are never touched.
2. Scan the mirror. Blobs holding the key that ``--replace-text`` cannot edit (binary ones, and
   compressed ones whose key is inside the compression) are listed for ``--strip-blobs-with-ids``.
3. Rewrite: ``git filter-repo --sensitive-data-removal --replace-text F --replace-message F``,
   where F (mode 0600, in a 0700 directory, deleted right after) holds one
   ``literal:<form>==>***REMOVED <fingerprint>***`` line per encoded form of the key. The key is
   never on a command line.
4. Verify: every object of the rewritten mirror is scanned; any copy left raises ``PurgeError``
   and nothing is pushed.
5. Push (only with ``push=True``): every changed ref, each with ``--force-with-lease`` on the value
   it had when cloned. ``refs/stash`` is set aside before the rewrite (git-filter-repo refuses a
   repository with a stash, and git cannot push it) and reported; refs the remote refuses
   (``refs/pull/*`` on forges) are reported, not fatal.
6. Verify again: a fresh mirror clone of the remote is scanned; no copy means ``verified``.

What no push can do (other clones, forks, the forge's caches and unreferenced objects) is
listed in ``action_items``; what was attempted and failed is listed in ``leftovers``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cauterize.errors import GitError, PurgeError
from cauterize.locate.findings import Finding
from cauterize.locate.git import scan_git_dir, scan_objects
from cauterize.locate.gitcmd import (
    child_env,
    clone_mirror,
    display_name,
    file_url,
    first_line,
    git,
    git_dir_of,
    is_url,
    private_dir,
    run,
)
from cauterize.locate.matcher import Matcher
from cauterize.secret import Secret

#: Refs pushed per ``git push`` call (keeps argv far below the system limit on repos with many tags).
PUSH_BATCH = 200
UNPUSHABLE = ("refs/stash",)


@dataclass
class PurgeResult:
    """What a purge did, for the incident record and the post-mortem."""

    repo: str
    pushed: bool = False
    verified: bool = False
    refs_changed: list[str] = field(default_factory=list)
    refused_refs: list[str] = field(default_factory=list)
    commits_rewritten: int = 0
    first_changed_commits: list[str] = field(default_factory=list)
    blobs_removed: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    action_items: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def purge_repo(
    remote: str | Path, secret: Secret, *, workdir: Path, push: bool, marker: str | None = None
) -> PurgeResult:
    """Rewrite ``remote``'s history without ``secret``; push it only if ``push`` (else a dry run)."""
    label = display_name(remote)
    matcher = Matcher(secret)
    replacement = _replacement(marker, secret, matcher)
    url = str(remote) if is_url(remote) else file_url(git_dir_of(remote, repo=label))
    scratch = private_dir(workdir, "cauterize-purge-")
    keep_scratch = False
    try:
        mirror = clone_mirror(url, scratch / "mirror.git", repo=label)
        result = PurgeResult(repo=label)
        before = _refs(mirror, label)
        _set_aside_unpushable(mirror, before, result, label)
        strip = _unreplaceable_blobs(mirror, matcher, label)
        _rewrite(mirror, matcher, replacement, strip, scratch, label)
        after = _refs(mirror, label)
        result.refs_changed = sorted(ref for ref in before.keys() | after.keys() if before.get(ref) != after.get(ref))
        result.blobs_removed = sorted(strip)
        _read_metadata(mirror / "filter-repo", result)
        try:
            _verify_mirror(mirror, matcher, label)
        except PurgeError:
            keep_scratch = True
            raise
        if push:
            _push(mirror, url, before, after, result, label)
            _verify_remote(url, matcher, scratch / "verify.git", result)
        result.action_items = _action_items(result, label, push)
        return result
    finally:
        if not keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _replacement(marker: str | None, secret: Secret, matcher: Matcher) -> bytes:
    text = marker if marker is not None else f"***REMOVED {secret.fingerprint}***"
    if not text or "\n" in text or "\r" in text or "==>" in text:
        raise PurgeError("the replacement marker must be one non-empty line without '==>'")
    if matcher.contains(text.encode()):
        raise PurgeError("the replacement marker must not contain the key")
    return text.encode()


def _refs(git_dir: Path, label: str) -> dict[str, str]:
    out = git(git_dir, "for-each-ref", "--format=%(objectname) %(refname)", verb="git for-each-ref", repo=label)
    refs = {}
    for line in out.stdout.decode("utf-8", "surrogateescape").splitlines():
        oid, name = line.split(" ", 1)
        refs[name] = oid
    return refs


def _set_aside_unpushable(mirror: Path, refs: dict[str, str], result: PurgeResult, label: str) -> None:
    """Drop ``refs/stash`` from the mirror: git-filter-repo refuses to run with it, and git cannot push it."""
    for ref in UNPUSHABLE:
        if refs.pop(ref, None):
            git(mirror, "update-ref", "-d", ref, verb="git update-ref", repo=label)
            result.leftovers.append(
                f"{ref} of {label} cannot be rewritten through a push; if it holds the key, "
                "run `git stash clear` in that repository"
            )


def _unreplaceable_blobs(mirror: Path, matcher: Matcher, label: str) -> set[str]:
    """Blobs --replace-text would leave holding the key: binary ones and compressed copies."""
    hits = scan_objects(mirror, matcher, repo=label).hits.values()
    return {
        hit.oid for hit in hits
        if hit.kind == "blob" and (hit.binary or any(container for _, container in hit.encodings))
    }


def _rewrite(mirror: Path, matcher: Matcher, replacement: bytes, strip: set[str], scratch: Path, label: str) -> None:
    """Run git-filter-repo in the mirror; the expressions file lives only for the duration of the run."""
    private = private_dir(scratch, "expressions-")
    expressions = private / "replacements.txt"
    try:
        _write_private(expressions, b"".join(b"literal:%s==>%s\n" % (form, replacement) for _, form in matcher.forms))
        argv = [*filter_repo_command(), "--sensitive-data-removal", "--replace-text", expressions,
                "--replace-message", expressions]
        if strip:
            blob_ids = private / "strip-blob-ids.txt"
            _write_private(blob_ids, "".join(f"{oid}\n" for oid in sorted(strip)).encode())
            argv += ["--strip-blobs-with-ids", blob_ids]
        run(argv, verb="git filter-repo", repo=label, cwd=mirror, error=PurgeError, redact=matcher.redact,
            message_lines=3)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` readable by this user only (0600); refuse to reuse an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def filter_repo_command() -> list[str]:
    """git-filter-repo next to the running Python, else on PATH, else as a module of this Python."""
    beside = Path(sys.executable).parent / "git-filter-repo"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("git-filter-repo")
    return [found] if found else [sys.executable, "-m", "git_filter_repo"]


def _read_metadata(metadata: Path, result: PurgeResult) -> None:
    """Evidence from git-filter-repo's own records: commit-map, first-changed-commits, LFS orphans."""
    commit_map = _lines(metadata / "commit-map")[1:]  # the first line is a header
    result.commits_rewritten = sum(1 for line in commit_map if len(set(line.split())) == 2)
    result.first_changed_commits = [line.split()[0] for line in _lines(metadata / "first-changed-commits")]
    orphans = _lines(metadata / "orphaned_lfs_objects")
    if orphans:
        result.leftovers.append(
            f"{len(orphans)} Git LFS objects are no longer referenced but stay on the LFS server; "
            "ask the forge to delete them (list: filter-repo/orphaned_lfs_objects)"
        )


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.is_file() else []


def _verify_mirror(mirror: Path, matcher: Matcher, label: str) -> None:
    """Every object of the rewritten mirror is free of the key, or PurgeError (and nothing is pushed)."""
    findings = scan_git_dir(mirror, matcher, repo=label)
    if findings:
        raise PurgeError(
            f"purge of {label}: {_copies(len(findings))} of {matcher.fingerprint} remain after the rewrite "
            f"({_summary(findings)}); nothing was pushed; the rewritten mirror is kept at {mirror}"
        )


def _copies(count: int) -> str:
    return f"{count} copy" if count == 1 else f"{count} copies"


def _summary(findings: list[Finding], limit: int = 3) -> str:
    shown = ", ".join(finding.location for finding in findings[:limit])
    return shown + (f" and {len(findings) - limit} more" if len(findings) > limit else "")


def _push(mirror: Path, url: str, before: dict, after: dict, result: PurgeResult, label: str) -> None:
    """Push every changed ref with a lease on its cloned value; record refusals instead of failing."""
    refs = [ref for ref in result.refs_changed if ref not in UNPUSHABLE]
    for start in range(0, len(refs), PUSH_BATCH):
        batch = refs[start:start + PUSH_BATCH]
        leases = [f"--force-with-lease={ref}:{before.get(ref, '')}" for ref in batch]
        specs = [f"{after[ref]}:{ref}" if ref in after else f":{ref}" for ref in batch]
        done = git(mirror, "push", "--porcelain", "--no-verify", *leases, url, *specs, verb="git push", repo=label,
                   check=False)
        statuses = _porcelain(done.stdout.decode("utf-8", "replace"))
        if done.returncode != 0 and not statuses:
            raise GitError(f"git push of {label} failed: {first_line(done.stderr)}")
        for ref, (flag, summary) in statuses.items():
            if flag == "!":
                result.refused_refs.append(ref)
                result.leftovers.append(f"{ref} was refused by the remote ({summary}) and still holds the old history")
            else:
                result.pushed = True
    if result.pushed:
        result.leftovers.append(
            f"{label} keeps the old objects, unreferenced, until it is garbage-collected "
            "(`git gc --prune=now` on the server, or the forge's support)"
        )


def _porcelain(text: str) -> dict[str, tuple[str, str]]:
    """``git push --porcelain`` lines ``<flag>\\t<src>:<dst>\\t<summary>`` as ``{dst: (flag, summary)}``."""
    statuses = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and len(parts[0]) == 1:
            statuses[parts[1].rpartition(":")[2]] = (parts[0], parts[2])
    return statuses


def _verify_remote(url: str, matcher: Matcher, clone: Path, result: PurgeResult) -> None:
    """A fresh mirror clone of the remote (what anyone can fetch now) holds no copy of the key."""
    findings = scan_git_dir(clone_mirror(url, clone, repo=result.repo), matcher, repo=result.repo)
    result.verified = not findings
    for finding in findings:
        result.leftovers.append(f"a fresh clone still holds a copy at {finding.location} (ref {finding.ref})")


def _action_items(result: PurgeResult, label: str, push: bool) -> list[str]:
    first = ", ".join(commit[:12] for commit in result.first_changed_commits) or "none"
    items = []
    if not push:
        items.append(f"Dry run: nothing was pushed. Review the changes above, then rerun with --push to rewrite {label}.")
    if result.blobs_removed:
        items.append(
            f"{len(result.blobs_removed)} binary or compressed files holding the key were deleted from history "
            "(git-filter-repo cannot edit them in place); restore them without the key if they are still needed."
        )
    items += [
        "Keep the key revoked: anyone who fetched the repository before the purge still has it.",
        (
            "Every existing clone must be discarded and re-cloned (or rebased onto the new history as the "
            f"git-filter-repo manual describes); first changed commits: {first}."
        ),
        (
            "Ask the forge to purge cached views, pull-request refs (refs/pull/*) and unreferenced objects "
            "(GitHub and GitLab support do this on request)."
        ),
        "Forks keep the old history: ask their owners to delete or re-sync them.",
    ]
    return items


def remote_of(repo: str) -> str:
    """What a purge rewrites: a working clone's ``origin`` (the copy others clone from), else the
    repository itself (a bare repository or a URL)."""
    path = Path(repo)
    if is_url(repo) or not (path / ".git").exists():
        return repo
    done = subprocess.run(
        ["git", "config", "--get", "remote.origin.url"],
        cwd=path, capture_output=True, text=True, check=False, env=child_env(),
    )
    url = done.stdout.strip()
    if not url:
        return repo
    if is_url(url) or Path(url).is_absolute():
        return url
    return str((path / url).resolve())
