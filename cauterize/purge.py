"""Purge a key from a repository's history with git-filter-repo, changing only what held it, and
say plainly what changed and what it could not do.

1. Mirror-clone the remote (``file://`` for a local path, so only what a remote serves) into a
   private directory; the user's own clones are never touched.
2. Scan every object of the mirror once (locate's ``scan_objects``: blobs, trees, commits, tags).
3. Plan (``purge_plan``): the commits that hold a copy and their descendants are all that change;
   the dry run says how many, why, and how many signed commits and tags lose their signature.
4. Sort the blobs holding the key: each is rewritten with every copy replaced in its own
   encoding (``scrub``: a base64 copy by the base64 of the placeholder, so a Kubernetes Secret
   still decodes) when that leaves none; otherwise (zip, tar, other binary formats) it is removed
   from history and reported, with an action item to restore it cleaned.
5. Rewrite (``purge_filter``: git-filter-repo's API in a child process, the key never on a
   command line, only the planned revisions as ``--refs``, so older commits, their tags and every
   other ref keep their ids); paths holding the key are renamed (``REMOVED-<fp>``), messages and
   idents scrubbed. Notes are rewritten after it (``purge_notes``), and tags and refs whose
   objects or names still hold the key are rebuilt or renamed (``purge_refs``).
6. Verify: everything the rewritten refs reach is free of the key, names included, or
   ``PurgeError`` and nothing is pushed. Objects are named by their content, so an object the
   mirror held before the rewrite was searched in step 2: none of those holding the key may be
   reachable, and only the objects the rewrite created are searched again.
7. Push (only with ``push=True``): exactly the refs whose value changed (a ref named with the key:
   deleted under that name, created under the new one), each with ``--force-with-lease`` on the
   value it had when cloned, from a multi-pack-index bitmap so git sends only what the remote
   lacks. ``refs/stash`` is set aside before the rewrite (git-filter-repo refuses a repository
   with a stash, and git cannot push it) and reported with the command that deletes it where the
   remote is; refs the remote refuses (``refs/pull/*`` on forges) are reported, not fatal.
8. Verify again what a fresh clone of the remote gets: the closure of the refs it advertises,
   and their names.

What no push can do (other clones, forks, the forge's caches and unreferenced objects, CI
caches) is listed in ``action_items``, written for the kind of remote (bare, working copy,
forge); what was attempted and failed is listed in ``leftovers``. The scratch directory (the
mirror holds the key until it is rewritten) is removed however this ends.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cauterize import (
    interrupts,
    purge_advice,
    purge_check,
    purge_filter,
    purge_notes,
    purge_plan,
    purge_refs,
    purge_verify,
    scrub,
)
from cauterize.errors import GitError, PurgeError
from cauterize.locate.attribution import History
from cauterize.locate.findings import Finding
from cauterize.locate.git import ObjectHit, scan_git_dir, scan_objects
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
from cauterize.logs import LOGGER
from cauterize.secret import Secret

#: Largest blob holding the key that is rewritten in place; a larger one is removed from history.
SCRUB_LIMIT = 64 << 20
#: scrub labels of copies in a NUL-holding blob that is still rewritten in place (text in a wide
#: encoding; gzip decompressed, scrubbed and recompressed whole).
_REENCODED = ("utf-16", "utf-32", "gzip")
#: Refs pushed per ``git push`` call (keeps argv far below the system limit on repos with many tags).
PUSH_BATCH = 200
UNPUSHABLE = ("refs/stash",)
NOTES = "refs/notes/"
_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_PRUNED = "0" * 40  # what commit-map says of a commit the rewrite dropped (it became empty)
_IDENTITY = ("-c", "user.name=cauterize", "-c", "user.email=cauterize@localhost.invalid")


@dataclass
class PurgeResult:
    """What a purge did, for the incident record and the post-mortem. Ref names that held the key
    are shown with it redacted (``refs/heads/backup-[sha256:...]``)."""

    repo: str
    remote_kind: str = "bare"  # "bare" | "working copy" | "forge" (what the advice is written for)
    pushed: bool = False
    verified: bool = False
    verified_by: list[str] = field(default_factory=list)  # the methods that found no copy
    unproven: list[str] = field(default_factory=list)  # reachable parts no search could open: not verified
    why: str = ""  # how many commits change, and the reason
    refs_changed: list[str] = field(default_factory=list)
    refs_updated: list[dict] = field(default_factory=list)  # {"ref", "old", "new"}: new None = deleted
    refs_renamed: list[dict] = field(default_factory=list)  # {"old", "new"}: the old name held the key
    refs_kept: int = 0  # refs left exactly as they were
    refused_refs: list[str] = field(default_factory=list)
    commits_total: int = 0
    commits_holding: int = 0  # commits that hold a copy themselves
    commits_rewritten: int = 0
    commits_dropped: list[str] = field(default_factory=list)  # became empty (their only change was removed)
    commits_untouched: int = 0  # keep their ids and signatures
    signed_commits_unsigned: int = 0  # signed commits the rewrite changes: their signature is lost
    tags_rewritten: list[str] = field(default_factory=list)  # tags whose commit is rewritten
    tags_cleaned: list[str] = field(default_factory=list)  # tag objects holding the key, rebuilt without it
    signed_tags_unsigned: int = 0
    commit_map: dict[str, str | None] = field(default_factory=dict)  # old -> new (None: dropped), changed only
    first_changed_commits: list[str] = field(default_factory=list)
    paths_renamed: int = 0  # paths whose name held the key
    blobs_removed: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)  # "path (blob 1a2b3c4d5e6f: key inside gzip)"
    notes_moved: int = 0
    leftovers: list[str] = field(default_factory=list)
    action_items: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def purge_repo(
    remote: str | Path, secret: Secret, *, workdir: Path, push: bool, marker: str | None = None
) -> PurgeResult:
    """Rewrite ``remote``'s history without ``secret``; push it only if ``push`` (else a dry run).
    The scratch directory (the mirror, which holds the key until it is rewritten, and the
    expressions) is removed when this returns or raises."""
    label = display_name(remote)
    matcher = Matcher(secret)
    replacement = _replacement(marker, secret, matcher)
    url = str(remote) if is_url(remote) else file_url(git_dir_of(remote, repo=label))
    scratch = private_dir(workdir, "cauterize-purge-")
    clock = _Clock(label)
    try:
        mirror = clone_mirror(url, scratch / "mirror.git", repo=label)
        clock.lap("mirror-cloned")
        result = PurgeResult(repo=label, remote_kind=remote_kind(remote))
        before = _refs(mirror, label)
        _set_aside_unpushable(mirror, before, result, remote)
        searched = _inventory(mirror, label)
        scan = scan_objects(mirror, matcher, repo=label)
        clock.lap(f"searched {len(searched)} objects: {len(scan.hits)} hold the key")
        independent = purge_check.Independent(mirror, secret, label)
        found = {**scan.hits, **independent.before(scan.hits)}
        hits = {oid.encode() for oid in found}
        clock.lap(f"searched them independently: {len(found) - len(scan.hits)} more hold the key")
        plan = purge_plan.plan(mirror, matcher, found, scan.commits, label=label)
        _describe_plan(plan, result, matcher.redact)
        clock.lap(f"planned: {result.why}")
        if plan.changed:
            rewrite, strip, cleaned = _sort_blobs(mirror, found, secret, replacement, matcher, label)
            result.blobs_removed = sorted(strip)
            result.files_removed = [matcher.redact(line) for line in
                                    _describe_blobs(mirror, found, strip, scan.commits, label)]
            purge_filter.run_filter(mirror, secret, placeholder=replacement, name_placeholder=_name_placeholder(secret),
                                    rewrite_blobs=rewrite, strip_blobs=strip, revs=plan.revs, scratch=scratch,
                                    label=label, redact=matcher.redact)
            _read_metadata(mirror / "filter-repo", result)
            notes = {oid: _write_blob(mirror, cleaned[oid], label) if oid in rewrite else None for oid in rewrite | strip}
            result.notes_moved = purge_notes.rewrite_notes(mirror, result.commit_map, notes, list(plan.refs),
                                                           label=label)
            clock.lap(f"rewrote {result.commits_rewritten} commits")
        result.tags_cleaned, result.refs_renamed = purge_refs.clean_refs(
            mirror, matcher, replacement, _name_placeholder(secret), label=label)
        after = _refs(mirror, label)
        changed = _describe_refs(before, after, result, matcher)
        reachable = _verify_mirror(mirror, matcher, searched, {oid.encode() for oid in scan.hits}, scratch, label)
        copies, result.unproven = independent.after(reachable, searched, list(after))
        if copies:
            raise PurgeError(f"purge of {label}: the independent search finds the key after the rewrite in "
                             f"{_listed(copies)}; nothing was pushed")
        result.leftovers += [f"not proven clean (could not be searched whole): {line}" for line in result.unproven]
        result.verified_by = ["matcher", "decoders"]
        clock.lap("verified the rewritten mirror (both methods)")
        if push:
            _write_bitmap(mirror, label)
            _push(mirror, url, before, after, changed, result, label, matcher.redact)
            clock.lap(f"pushed {len(changed)} refs")
            _verify_remote(url, matcher, reachable, searched - hits, scratch, result, independent)
            clock.lap("verified what a fresh clone of the remote gets")
        result.action_items = purge_advice.action_items(result, label, push, remote)
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def remote_kind(remote: str | Path) -> str:
    """``forge`` for a URL other than ``file://``, ``working copy`` for a local repository with a
    work tree, else ``bare``: the advice for what a push cannot do differs for each."""
    text = str(remote)
    if is_url(text) and not text.startswith("file://"):
        return "forge"
    path = Path(text.removeprefix("file://"))
    return "working copy" if (path / ".git").exists() else "bare"


def _name_placeholder(secret: Secret) -> bytes:
    """What replaces the key in a path or a ref name: ``REMOVED-<16 hex>`` (valid in both)."""
    return f"REMOVED-{secret.fingerprint.partition(':')[2]}".encode()


def _describe_plan(plan: purge_plan.Plan, result: PurgeResult, redact) -> None:
    result.why = plan.why() if plan.changed else "no commit holds a copy of the key"
    result.commits_total = plan.commits_total
    result.commits_holding = len(plan.holding)
    result.commits_untouched = plan.commits_total - len(plan.changed)
    result.signed_commits_unsigned = plan.signed_changed
    result.tags_rewritten = [redact(name) for name in plan.tags_changed]
    result.signed_tags_unsigned = plan.signed_tags_changed
    result.paths_renamed = plan.key_paths


def _describe_refs(before: dict[str, str], after: dict[str, str], result: PurgeResult, matcher: Matcher) -> list[str]:
    """Every ref whose value changed, with old and new id (names redacted for the record), and how
    many were left as they were. Returns the changed refs' real names, for the push."""
    changed = sorted(ref for ref in before.keys() | after.keys() if before.get(ref) != after.get(ref))
    result.refs_changed = [matcher.redact(ref) for ref in changed]
    result.refs_updated = [{"ref": matcher.redact(ref), "old": before.get(ref), "new": after.get(ref)}
                           for ref in changed]
    result.refs_kept = sum(1 for ref, oid in before.items() if after.get(ref) == oid)
    return changed


class _Clock:
    """Progress lines with the time each step took (on stderr when the CLI asks for progress)."""

    def __init__(self, label: str):
        self.label = label
        self.start = self.last = time.perf_counter()

    def lap(self, what: str) -> None:
        now = time.perf_counter()
        LOGGER.info("purge %s: %s (%.2f s, %.2f s in all)", self.label, what, now - self.last, now - self.start)
        self.last = now


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


def _inventory(git_dir: Path, label: str) -> set[bytes]:
    """The id of every object in the store: one ``--batch-check`` pass over object headers."""
    out = git(git_dir, "cat-file", "--batch-all-objects", "--unordered", "--batch-check=%(objectname)",
              verb="git cat-file", repo=label).stdout
    return set(out.split())


def _reachable(git_dir: Path, label: str, matcher: Matcher) -> tuple[set[bytes], list[str]]:
    """The id of every object a ref (or HEAD) reaches, what a clone of this repository would get;
    and the names holding the key (redacted) among the refs and the paths those objects have."""
    out = git(git_dir, "rev-list", "--objects", "--all", verb="git rev-list", repo=label).stdout
    objects, names = set(), []
    for line in out.split(b"\n"):
        oid, _, path = line.partition(b" ")
        if oid:
            objects.add(oid)
        if path and matcher.contains(path):
            names.append(f"the path {matcher.redact(path.decode('utf-8', 'replace'))}")
    names += [f"the ref {matcher.redact(ref)}" for ref in _refs(git_dir, label)
              if matcher.contains(ref.encode("utf-8", "surrogateescape"))]
    return objects, names


def _set_aside_unpushable(mirror: Path, refs: dict[str, str], result: PurgeResult, remote: str | Path) -> None:
    """Drop ``refs/stash`` from the mirror: git-filter-repo refuses to run with it, and git cannot
    push it. The advice is the command that works where the remote is: ``git stash clear`` needs a
    work tree, a bare repository takes ``update-ref -d``, a forge only a push deleting the ref."""
    for ref in UNPUSHABLE:
        if refs.pop(ref, None):
            git(mirror, "update-ref", "-d", ref, verb="git update-ref", repo=result.repo)
            where = str(remote).removeprefix("file://")
            command = {
                "bare": f"`git -C {where} update-ref -d {ref}` on the machine that holds it",
                "working copy": f"`git -C {where} stash clear` in that working copy",
                "forge": f"`git push {where} :{ref}` (a push deleting the ref)",
            }[result.remote_kind]
            result.leftovers.append(
                f"{ref} of {result.repo} cannot be rewritten through a push; if it holds the key, delete it: {command}"
            )


def _sort_blobs(
    mirror: Path, hits: dict[str, ObjectHit], secret: Secret, replacement: bytes, matcher: Matcher, label: str
) -> tuple[set[str], set[str], dict[str, bytes]]:
    """``(rewrite, strip, scrubbed content of each blob to rewrite)``: a blob holding the key is rewritten when ``scrub`` (each copy replaced
    in its own encoding) leaves none, containers opened, and the blob is text or a format scrub
    re-encodes whole (UTF-16/32 text, gzip); otherwise (a zip, a tar, another binary format, a blob
    over ``SCRUB_LIMIT``) the whole blob is removed from history and reported."""
    blobs = sorted(oid for oid, hit in hits.items() if hit.kind == "blob")
    if not blobs:
        return set(), set(), {}
    sizes = git(mirror, "cat-file", "--batch-check=%(objectname) %(objectsize)", verb="git cat-file", repo=label,
                input="".join(f"{oid}\n" for oid in blobs).encode()).stdout.decode().split()
    small = [oid for oid, size in zip(sizes[0::2], sizes[1::2]) if int(size) <= SCRUB_LIMIT]
    key = secret.reveal().encode()
    cleaned = {}
    for oid, data in zip(small, purge_plan.contents(mirror, small, label)):
        data, forms = scrub.scrub(data, key, replacement)
        if matcher.scan(data) or purge_verify.check("blob", data, secret):
            continue  # a copy (or a part neither search can open) is left: remove the blob
        if b"\0" in data[:8192] and not all(form.startswith(_REENCODED) for form in forms):
            continue  # a binary format: bytes replaced in place could break it; remove it, and say so
        cleaned[oid] = data
    return set(cleaned), set(blobs) - set(cleaned), cleaned


def _write_blob(mirror: Path, data: bytes, label: str) -> str:
    return git(mirror, "hash-object", "-w", "--stdin", verb="git hash-object", repo=label, input=data).stdout.decode().strip()


def _describe_blobs(
    mirror: Path, hits: dict[str, ObjectHit], blobs: set[str], commits: list[bytes], label: str
) -> list[str]:
    """``path (blob 1a2b3c4d5e6f: the key inside gzip)`` for each blob to strip, at every path it had."""
    if not blobs:
        return []
    introductions = History(mirror, repo=label, commits=commits).introductions(blobs)
    described = []
    for oid in sorted(blobs):
        where = sorted({f"{container}" for _, container in hits[oid].encodings if container})
        why = f"the key inside {', '.join(where)}" if where else "a binary file holding the key"
        paths = sorted({intro.path for intro in introductions.get(oid, [])}) or ["(in no commit)"]
        described += [f"{path} (blob {oid[:12]}: {why})" for path in paths]
    return described


def filter_repo_command() -> list[str]:
    """git-filter-repo next to the running Python, else on PATH, else as a module of this Python."""
    beside = Path(sys.executable).parent / "git-filter-repo"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("git-filter-repo")
    return [found] if found else [sys.executable, "-m", "git_filter_repo"]


def _read_metadata(metadata: Path, result: PurgeResult) -> None:
    """Evidence from git-filter-repo's own records: commit-map, first-changed-commits, LFS orphans."""
    for line in _lines(metadata / "commit-map")[1:]:  # the first line is a header
        old, new = line.split()
        if old != new:
            result.commit_map[old] = None if new == _PRUNED else new
    result.commits_rewritten = len(result.commit_map)
    result.commits_dropped = sorted(old for old, new in result.commit_map.items() if new is None)
    result.first_changed_commits = [line.split()[0] for line in _lines(metadata / "first-changed-commits")]
    orphans = _lines(metadata / "orphaned_lfs_objects")
    if orphans:
        result.leftovers.append(
            f"{len(orphans)} Git LFS objects are no longer referenced but stay on the LFS server; "
            "ask the forge to delete them (list: filter-repo/orphaned_lfs_objects)"
        )


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.is_file() else []


def _verify_mirror(
    mirror: Path, matcher: Matcher, searched: set[bytes], hits: set[bytes], scratch: Path, label: str
) -> set[bytes]:
    """Everything the refs of the rewritten mirror reach is free of the key, or PurgeError (and
    nothing is pushed). Returns those objects: each is clean, and so is its closure."""
    reachable, names = _reachable(mirror, label, matcher)
    if names:
        raise PurgeError(f"purge of {label}: {_listed(names)} still hold the key after the rewrite; nothing was pushed")
    if reachable & hits or _holding_key(mirror, reachable - searched, matcher, scratch, label):
        findings = [finding for finding in scan_git_dir(mirror, matcher, repo=label)
                    if finding.object and finding.object.encode() in reachable]  # not the old history
        raise PurgeError(
            f"purge of {label}: {_copies(len(findings))} of {matcher.fingerprint} remain after the rewrite "
            f"({_summary(findings)}); nothing was pushed"
        )
    return reachable


def _listed(names: list[str], limit: int = 3) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _holding_key(git_dir: Path, objects: set[bytes], matcher: Matcher, scratch: Path, label: str) -> set[str]:
    """Which of ``objects`` (of ``git_dir``) hold the key: they are packed into a scratch repository
    of their own, which ``scan_objects`` reads whole."""
    if not objects:
        return set()
    subset = private_dir(scratch, "subset-") / "objects.git"
    try:
        run(["git", "init", "-q", "--bare", subset], verb="git init", repo=label)
        git(git_dir, "pack-objects", "-q", "--window=0", os.fspath(subset / "objects" / "pack" / "pack"),
            verb="git pack-objects", repo=label, input=b"\n".join(sorted(objects)) + b"\n")
        return set(scan_objects(subset, matcher, repo=label).hits)
    finally:
        shutil.rmtree(subset.parent, ignore_errors=True)


def _copies(count: int) -> str:
    return f"{count} copy" if count == 1 else f"{count} copies"


def _summary(findings: list[Finding], limit: int = 3) -> str:
    shown = ", ".join(finding.location for finding in findings[:limit])
    return shown + (f" and {len(findings) - limit} more" if len(findings) > limit else "")


def _write_bitmap(mirror: Path, label: str) -> None:
    """A multi-pack-index bitmap over the old and the rewritten history, so that ``git push``
    computes exactly the objects the remote lacks. Without it git walks only the boundary of the
    remote's refs and re-sends nearly the whole history after a rewrite (git 2.34+; a failure only
    makes the push slower)."""
    done = git(mirror, "multi-pack-index", "write", "--bitmap", verb="git multi-pack-index", repo=label, check=False)
    if done.returncode != 0:
        LOGGER.info("purge %s: no bitmap (%s); the push sends more than it must", label, first_line(done.stderr))


def _push(mirror: Path, url: str, before: dict, after: dict, changed: list[str], result: PurgeResult,
          label: str, redact) -> None:
    """Push every changed ref with a lease on its cloned value; record refusals instead of failing."""
    refs = [ref for ref in changed if ref not in UNPUSHABLE]
    for start in range(0, len(refs), PUSH_BATCH):
        batch = refs[start:start + PUSH_BATCH]
        leases = [f"--force-with-lease={ref}:{before.get(ref, '')}" for ref in batch]
        specs = [f"{after[ref]}:{ref}" if ref in after else f":{ref}" for ref in batch]
        interrupts.check()  # never a push after SIGINT/SIGTERM (spawn refuses too, at the exec)
        done = git(mirror, "push", "--porcelain", "--no-verify", *leases, url, *specs, verb="git push", repo=label,
                   check=False)
        statuses = _porcelain(done.stdout.decode("utf-8", "replace"))
        if done.returncode != 0 and not statuses:
            raise GitError(f"git push of {label} failed: {first_line(done.stderr)}")
        for ref, (flag, summary) in statuses.items():
            if flag == "!":
                shown = redact(ref)
                result.refused_refs.append(shown)
                result.leftovers.append(f"{shown} was refused by the remote ({redact(summary)}) and still holds the old history")
            else:
                result.pushed = True
    if result.pushed:
        where = url.removeprefix("file://")
        result.leftovers.append(
            f"{label} keeps the old objects, unreferenced, until it is garbage-collected: "
            + purge_advice.garbage(result.remote_kind, where)
        )


def _porcelain(text: str) -> dict[str, tuple[str, str]]:
    """``git push --porcelain`` lines ``<flag>\\t<src>:<dst>\\t<summary>`` as ``{dst: (flag, summary)}``."""
    statuses = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and len(parts[0]) == 1:
            statuses[parts[1].rpartition(":")[2]] = (parts[0], parts[2])
    return statuses


def _advertised(url: str, label: str) -> dict[str, str]:
    """``{ref: object id}`` of every ref the remote serves (``git ls-remote``; peeled tags left out)."""
    done = run(["git", "ls-remote", "--", url], verb="git ls-remote", repo=label)
    refs = {}
    for line in done.stdout.decode("utf-8", "surrogateescape").splitlines():
        oid, _, name = line.partition("\t")
        if not name.endswith("^{}"):
            refs[name] = oid
    return refs


def _verify_remote(
    url: str, matcher: Matcher, proven: set[bytes], clean: set[bytes], scratch: Path, result: PurgeResult,
    independent: purge_check.Independent,
) -> None:
    """What a fresh clone of the remote gets (the closure of the refs it advertises) holds no copy.

    ``proven`` are the objects the verified mirror reaches: each is clean and so is its closure,
    so a tip among them needs no further look. ``clean`` are other objects the matcher searched
    before the rewrite and found free of the key, though their closures may not be; the
    independent search looks again at everything not in ``proven``."""
    advertised = _advertised(url, result.repo)
    named = [ref for ref in advertised if matcher.contains(ref.encode("utf-8", "surrogateescape"))]
    for ref in named:
        result.leftovers.append(f"the remote still serves the ref {matcher.redact(ref)}, whose name holds the key")
    unknown = sorted(ref for ref, oid in advertised.items() if oid.encode() not in proven)
    if not unknown:
        copies, _ = independent.remote(None, set(), list(advertised))
        result.leftovers += [f"the remote still serves {line}" for line in copies]
        result.verified = not named and not copies and not result.unproven
        return
    LOGGER.info("purge %s: %s not in the rewritten mirror; cloning the remote afresh to search them",
                result.repo, matcher.redact(", ".join(unknown)))
    clone = clone_mirror(url, scratch / "verify.git", repo=result.repo)
    _, names = _reachable(clone, result.repo, matcher)
    result.leftovers += [f"a fresh clone still holds {name}" for name in names if name.startswith("the path")]
    inventory = _inventory(clone, result.repo)
    copies, unproven = independent.remote(clone, inventory - proven, list(advertised))
    result.leftovers += [f"a fresh clone still holds {line} (the independent search)" for line in copies]
    result.leftovers += [f"not proven clean in a fresh clone: {line}" for line in unproven]
    if not _holding_key(clone, inventory - proven - clean, matcher, scratch, result.repo):
        result.verified = not named and not names and not copies and not unproven and not result.unproven
        return
    for finding in scan_git_dir(clone, matcher, repo=result.repo):
        result.leftovers.append(f"a fresh clone still holds a copy at {finding.location} (ref {finding.ref})")


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
