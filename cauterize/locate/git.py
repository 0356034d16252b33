"""Find every copy of a key in one git repository: every object, reachable or not, read once.

``scan_repo`` streams ``git cat-file --batch-all-objects --batch --unordered`` (the floor for an
exact search, see reference/git-facts.md) and runs the matcher over big chunks of that stream, so
the per-object Python work is one header parse. Blobs (file contents, gzip ones opened), commits
(messages and headers) and annotated tags (messages) are searched; trees are not. Only the few
objects that hold a hit are then attributed to commits, paths, refs and a first-seen time
(``attribution.py``). ``git log -S`` and tree walks are not used: they miss unreachable commits,
commit messages and merge-introduced content.

A URL (``https://``, ``ssh://``, ``git@host:``, ``file://``) is mirror-cloned into a private
temporary directory first and removed afterwards; a local path is read in place and never
written. The key goes to no command line and no file: it stays in this process.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cauterize.errors import GitError
from cauterize.locate.attribution import History
from cauterize.locate.findings import Finding, iso_utc
from cauterize.locate.gitcmd import (
    child_env,
    clone_mirror,
    display_name,
    first_line,
    git_argv,
    git_dir_of,
    is_url,
    private_dir,
)
from cauterize.locate.matcher import GZIP_MAGIC, Matcher
from cauterize.secret import Secret

#: Bytes read from the cat-file stream per step; a larger object is read whole.
CHUNK = 16 << 20
_SEARCHED = {b"blob", b"commit", b"tag"}
_TIME_LINE = re.compile(rb"^(?:committer|tagger) .*> (\d+) [+-]\d{4}$", re.MULTILINE)
_TAGGED = re.compile(rb"^object ([0-9a-f]+)\ntype commit$", re.MULTILINE)


@dataclass
class ObjectHit:
    """An object holding the key: its id, kind, the (encoding, container) pairs found, and for
    commits and tags the content (headers name the time and the tagged commit)."""

    oid: str
    kind: str
    encodings: set[tuple[str, str | None]] = field(default_factory=set)
    content: bytes | None = None
    binary: bool = False  # a NUL in the first 8 KiB: git-filter-repo's --replace-text skips such blobs


@dataclass
class StreamScan:
    """What one pass over every object found: the hits, and every commit id (for attribution)."""

    hits: dict[str, ObjectHit] = field(default_factory=dict)
    commits: list[bytes] = field(default_factory=list)


def scan_repo(repo: str | Path, secret: Secret, *, workdir: Path | None = None) -> list[Finding]:
    """Every copy of ``secret`` in the repository at ``repo`` (a local path or a URL to mirror-clone).

    One finding per (object, path, encoding): ``commit`` and ``first_seen`` name the earliest commit
    that introduced the copy there (committer time, UTC); ``reachable`` is True when a ref or HEAD
    reaches it (reflogs do not count: they are local and never served); ``ref`` is one such ref,
    HEAD's branch first. A blob in no commit has ``first_seen`` None. Raises ``GitError``.
    """
    label = display_name(repo)
    matcher = Matcher(secret)
    if not is_url(repo):
        return scan_git_dir(git_dir_of(repo, repo=label), matcher, repo=label)
    scratch = private_dir(workdir, "cauterize-scan-")
    try:
        mirror = clone_mirror(str(repo), scratch / "mirror.git", repo=label)
        return scan_git_dir(mirror, matcher, repo=label)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def scan_git_dir(git_dir: Path, matcher: Matcher, *, repo: str) -> list[Finding]:
    """Scan the object store of ``git_dir`` in place and attribute each hit."""
    scan = scan_objects(git_dir, matcher, repo=repo)
    if not scan.hits:
        return []
    history = History(git_dir, repo=repo, commits=scan.commits)
    findings = list(_attribute(scan.hits, history, repo))
    findings.sort(key=lambda f: (f.first_seen or "~", f.location, f.encoding))
    return findings


# ---- the one pass -----------------------------------------------------------------------------


def scan_objects(git_dir: Path, matcher: Matcher, *, repo: str) -> StreamScan:
    """Stream every object of the store once and collect those holding a form of the key."""
    argv = git_argv(git_dir, "cat-file", "--batch-all-objects", "--batch", "--unordered")
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL,
                                env=child_env())
        try:
            scan = _read_stream(proc.stdout, matcher)
        except BaseException:
            proc.kill()
            raise
        finally:
            proc.stdout.close()
            returncode = proc.wait()
        if returncode != 0:
            errors.seek(0)
            raise GitError(f"git cat-file of {repo} failed: {first_line(errors.read())}")
    return scan


def _read_stream(stream: IO[bytes], matcher: Matcher) -> StreamScan:
    scan = StreamScan()
    rest = b""
    missing = 0
    while chunk := stream.read(max(CHUNK, missing)):
        data = rest + chunk if rest else chunk
        done, missing = _scan_buffer(data, matcher, scan)
        rest = data[done:]
    if rest:
        raise GitError("git cat-file output ended in the middle of an object")
    return scan


def _scan_buffer(data: bytes, matcher: Matcher, scan: StreamScan) -> tuple[int, int]:
    """Scan the complete objects at the start of ``data``. Returns the end of the last one, and how
    many more bytes the next object needs (0 if its header is not complete yet)."""
    pos, size_of_data = 0, len(data)
    gzipped = []
    while (newline := data.find(b"\n", pos)) >= 0:
        oid, kind, size = data[pos:newline].split(b" ")
        start = newline + 1
        end = start + int(size)
        if end >= size_of_data:  # the content and its trailing newline are not all here yet
            return _search(data, pos, matcher, scan, gzipped), end + 1 - size_of_data
        if kind == b"commit":
            scan.commits.append(oid)
        elif kind == b"blob" and data.startswith(GZIP_MAGIC, start):
            gzipped.append((oid, start, end))
        pos = end + 1
    return _search(data, pos, matcher, scan, gzipped), 0


def _search(data: bytes, limit: int, matcher: Matcher, scan: StreamScan, gzipped: list) -> int:
    """Find the key in ``data[:limit]`` (whole objects only) and credit each match to its object."""
    matches = matcher.find(data, 0, limit)
    if matches:
        objects = _objects(data, limit)
        obj = next(objects)
        for match in matches:  # sorted by offset, like the objects
            while obj[3] <= match.offset:
                obj = next(objects)
            oid, kind, start, end = obj
            if start <= match.offset and match.offset + match.length <= end and kind in _SEARCHED:
                _record(scan, data, oid, kind, start, end).encodings.add((match.encoding, None))
    for oid, start, end in gzipped:
        for match in matcher.scan_gzip(data[start:end]):
            _record(scan, data, oid, b"blob", start, end).encodings.add((match.encoding, match.container))
    return limit


def _objects(data: bytes, limit: int) -> Iterator[tuple[bytes, bytes, int, int]]:
    """``(oid, kind, content start, content end)`` of each object in ``data[:limit]``, then a sentinel."""
    pos = 0
    while pos < limit:
        newline = data.find(b"\n", pos)
        oid, kind, size = data[pos:newline].split(b" ")
        start = newline + 1
        yield oid, kind, start, start + int(size)
        pos = start + int(size) + 1
    while True:
        yield b"", b"", limit, 1 << 62


def _record(scan: StreamScan, data: bytes, oid: bytes, kind: bytes, start: int, end: int) -> ObjectHit:
    key = oid.decode()
    hit = scan.hits.get(key)
    if hit is None:
        content = data[start:end] if kind != b"blob" else None
        binary = kind == b"blob" and data.find(b"\0", start, min(end, start + 8192)) >= 0
        hit = scan.hits[key] = ObjectHit(key, kind.decode(), content=content, binary=binary)
    return hit


# ---- attribution ------------------------------------------------------------------------------


def _attribute(hits: dict[str, ObjectHit], history: History, repo: str) -> Iterator[Finding]:
    blobs = {oid for oid, hit in hits.items() if hit.kind == "blob"}
    introductions = history.introductions(blobs)
    commits = {intro.commit for intros in introductions.values() for intro in intros}
    commits |= {oid for oid, hit in hits.items() if hit.kind == "commit"}
    reachable = history.reachable_among(commits)
    for oid, hit in sorted(hits.items()):
        if hit.kind == "blob" and oid in introductions:
            yield from _blob_in_commits(hit, introductions[oid], reachable, history, repo)
        elif hit.kind == "blob":
            yield from _loose_blob(hit, history, repo)
        elif hit.kind == "commit":
            yield from _commit_message(hit, reachable, history, repo)
        else:
            yield from _tag_message(hit, history, repo)


def _findings(hit: ObjectHit, **fields) -> Iterator[Finding]:
    """One finding per (encoding, container) of the object."""
    location = fields.pop("location")
    for encoding, container in sorted(hit.encodings, key=lambda pair: (pair[0], pair[1] or "")):
        where = f"{location} (inside {container})" if container else location
        yield Finding(source="git", location=where, encoding=encoding, object=hit.oid, kind=hit.kind, **fields)


def _blob_in_commits(hit, intros, reachable, history, repo) -> Iterator[Finding]:
    by_path: dict[str, list] = {}
    for intro in intros:  # sorted by time, earliest first
        by_path.setdefault(intro.path, []).append(intro)
    for path, path_intros in by_path.items():
        first = path_intros[0]
        live = [intro for intro in path_intros if intro.commit in reachable]
        yield from _findings(
            hit, location=f"{repo}:{path}@{first.commit[:12]}", repo=repo, commit=first.commit,
            ref=history.containing_ref(live[0].commit) if live else None, path=path,
            reachable=bool(live), first_seen=iso_utc(first.time),
        )


def _loose_blob(hit, history, repo) -> Iterator[Finding]:
    refs = history.refs_pointing_at(hit.oid)
    yield from _findings(hit, location=f"{repo}:blob@{hit.oid[:12]}", repo=repo,
                         ref=refs[0] if refs else None, reachable=bool(refs))


def _commit_message(hit, reachable, history, repo) -> Iterator[Finding]:
    live = hit.oid in reachable
    yield from _findings(
        hit, location=f"{repo}:commit-message@{hit.oid[:12]}", repo=repo, commit=hit.oid,
        ref=history.containing_ref(hit.oid) if live else None, reachable=live,
        first_seen=_header_time(hit.content),
    )


def _tag_message(hit, history, repo) -> Iterator[Finding]:
    refs = history.refs_pointing_at(hit.oid)
    tagged = _TAGGED.search(hit.content or b"")
    yield from _findings(
        hit, location=f"{repo}:tag-message@{hit.oid[:12]}", repo=repo,
        commit=tagged.group(1).decode() if tagged else None, ref=refs[0] if refs else None,
        reachable=bool(refs), first_seen=_header_time(hit.content),
    )


def _header_time(content: bytes | None) -> str | None:
    """The committer (or tagger) time of a commit or tag object, as ISO-8601 UTC."""
    headers = (content or b"").split(b"\n\n", 1)[0]
    found = _TIME_LINE.search(headers)
    return iso_utc(int(found.group(1))) if found else None
