"""Find every copy of a key in one git repository: every object, reachable or not, read once.

``scan_repo`` reads every blob, commit and annotated tag of the object store once through
``git cat-file`` (the floor for an exact search, see reference/git-facts.md) and runs the matcher
over large buffers of that stream. Blobs (file contents; gzip, zip and tar ones opened too),
commits (messages and headers) and tags (messages) are searched; trees, which hold only names and
ids, are not even read. Only the few objects that hold a hit are then attributed to commits,
paths, refs and a first-seen time (``attribution.py``). ``git log -S`` and tree walks are not
used: they miss unreachable commits, commit messages and merge-introduced content.

How the one pass keeps up with the floor (bench/locate.py, 640 MB of blobs, 2 cores; figures in
bench/README.md):

1. ``git cat-file --batch-all-objects --batch-check`` lists every id, type and size (0.04 s, about
   6% of the floor there); trees are dropped and the rest is cut into ``WORKERS`` runs of
   consecutive objects (pack order, so each run keeps git's delta-base cache warm), balanced by
   size plus 16 KiB per object: by bytes alone the first run, full of small objects, took 0.31 s
   against 0.21 s; with the per-object term, 0.24 s and 0.25 s.
2. Each run goes to its own ``git cat-file --batch --buffer`` (ids read from a file, so no feeder
   thread), read by its own thread. Inflating and piping objects in git is most of the cost, and
   two git processes put it on both cores. ``bytes.find`` holds the GIL, but with a key of 40+
   characters it skips through text at several GB/s (0.13 s of CPU for 640 MB, four forms), so
   the reader threads keep up; two workers took the pass from 0.92 s to 0.53 s (floor 0.69 s).
3. A reader ``readinto``s a fixed 4 MiB buffer (no read per object, no concatenation), runs one
   ``Matcher.find`` over the whole objects in it, credits each match to its object by bisection,
   and moves the cut object at the end to the front. An object larger than the buffer is searched
   in windows that overlap by (longest form - 1) bytes, so a copy cut by a window edge is whole in
   the next one and memory stays bounded: a 2 GB blob is never held; a gzip, zip or tar blob is
   collected up to ``CONTAINER_LIMIT`` for the matcher to open; a large commit or tag keeps its
   first 64 KiB (the headers attribution reads).

Measured and not kept: buffers of 1 and 16 MiB (within noise of 4 MiB); sleeping after short reads
so the pipe fills (15x fewer reads, not faster); more reader threads than git processes (two threads
running ``bytes.find`` together: 0.7 GB/s, one: 0.9 GB/s). Kept though small: a 1 MiB pipe (a
quarter fewer reads). On a machine whose other core is busy the two workers gain little, and the
pass costs about 1.3x the floor's CPU time either way (1.05 s against 0.81 s: the listing, two
delta-base caches, the searching).

A URL (``https://``, ``ssh://``, ``git@host:``, ``file://``) is mirror-cloned into a private
temporary directory first and removed afterwards; a local path is read in place and never
written. The key goes to no command line and no file: it stays in this process.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from bisect import bisect_right
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from cauterize import interrupts
from cauterize.errors import GitError
from cauterize.locate.attribution import History
from cauterize.locate.findings import Finding, iso_utc
from cauterize.locate.gitcmd import (
    child_env,
    clone_mirror,
    display_name,
    first_line,
    git,
    git_argv,
    git_dir_of,
    is_url,
    lines,
    private_dir,
)
from cauterize.locate.matcher import Matcher, container_kind
from cauterize.secret import Secret

#: Bytes of the cat-file stream each worker holds; an object larger than this is searched in windows.
CHUNK = 4 << 20
#: Objects (blobs, commits and tags) holding fewer bytes than this are read by a single cat-file.
SPLIT_MIN = 16 << 20
#: cat-file processes (and reader threads) sharing the objects when there are enough of them.
WORKERS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
#: Most bytes of one gzip, zip or tar blob handed to the matcher to open (a zip needs its end).
CONTAINER_LIMIT = 256 << 20
_OBJECT_COST = 16 << 10  # bytes that cost git as much to print as one more object (measured)
_HEAD_BYTES = 64 << 10  # kept of a commit or tag larger than the buffer: its headers are at the start
_PIPE_BYTES = 1 << 20  # asked of the kernel for each cat-file pipe, so git stalls less while Python searches
_NEWLINE = ord("\n")
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
    findings = list(_attribute(scan.hits, history, repo, matcher))
    findings.sort(key=lambda f: (f.first_seen or "~", f.location, f.encoding))
    return findings


# ---- the one pass -----------------------------------------------------------------------------


def scan_objects(git_dir: Path, matcher: Matcher, *, repo: str) -> StreamScan:
    """Stream every blob, commit and tag of the store once and collect those holding a form of the key."""
    objects, commits = _list_objects(git_dir, repo)
    scan = StreamScan(commits=commits)
    total = sum(size for _, size in objects)
    parts = [ids for ids in _split(objects, WORKERS if total >= SPLIT_MIN else 1) if ids]
    with ExitStack() as processes:
        procs = [processes.enter_context(_cat_file(git_dir, ids, repo)) for ids in parts]
        with ThreadPoolExecutor(max_workers=max(1, len(procs))) as pool:
            futures = [pool.submit(_Scanner(matcher, CHUNK).run, proc.stdout) for proc in procs]
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [future.exception() for future in done if future.exception()]
                if failed:
                    raise failed[0]
            except BaseException:
                for proc in procs:  # the other readers see the end of their stream and stop
                    proc.kill()
                raise
        for future in futures:
            for oid, hit in future.result().items():
                scan.hits.setdefault(oid, hit).encodings |= hit.encodings
    return scan


def _list_objects(git_dir: Path, repo: str) -> tuple[list[tuple[bytes, int]], list[bytes]]:
    """``(id, size)`` of every blob, commit and tag in pack order (trees hold only names and ids),
    and the ids of the commits. One ``--batch-check`` pass: it reads object headers, not contents."""
    out = git(git_dir, "cat-file", "--batch-all-objects", "--unordered",
              "--batch-check=%(objectname) %(objecttype) %(objectsize)", verb="git cat-file", repo=repo).stdout
    objects, commits = [], []
    for line in out.splitlines():
        oid, kind, size = line.split(b" ")
        if kind == b"commit":
            commits.append(oid)
        objects.append((oid, int(size)))
    return objects, commits


def _split(objects: list[tuple[bytes, int]], parts: int) -> list[list[bytes]]:
    """``parts`` runs of consecutive objects costing git about as much each to print. Consecutive, so
    each cat-file keeps the locality of the pack and its delta-base cache; the cost of an object is its
    size plus ``_OBJECT_COST`` (finding and undeltifying it), which balanced both halves to 5%."""
    total = sum(size + _OBJECT_COST for _, size in objects)
    runs: list[list[bytes]] = [[] for _ in range(parts)]
    seen = 0
    for oid, size in objects:
        runs[min(parts - 1, seen * parts // max(total, 1))].append(oid)
        seen += size + _OBJECT_COST
    return runs


@contextmanager
def _cat_file(git_dir: Path, ids: list[bytes], repo: str) -> Iterator[subprocess.Popen]:
    """``git cat-file --batch`` printing ``ids`` (read from a file) to an unbuffered pipe."""
    with tempfile.TemporaryFile() as listing, tempfile.TemporaryFile() as errors:
        listing.write(b"\n".join(ids) + b"\n")
        listing.seek(0)
        proc = interrupts.spawn(git_argv(git_dir, "cat-file", "--batch", "--buffer"), stdin=listing,
                                stdout=subprocess.PIPE, stderr=errors, env=child_env(), bufsize=0)
        with suppress(OSError, AttributeError):  # Linux only; the default 64 KiB pipe works too
            fcntl.fcntl(proc.stdout, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        try:
            yield proc
        except BaseException as exc:
            interrupts.kill_group(proc)
            proc.stdout.close()
            proc.wait()
            interrupts.release(proc)
            errors.seek(0)
            said = errors.read()
            if isinstance(exc, GitError) and said.strip():  # a stream cut short: git's own reason is better
                raise GitError(f"git cat-file of {repo} failed: {first_line(said)}") from exc
            raise
        proc.stdout.close()
        returncode = proc.wait()
        interrupts.release(proc)
        if returncode != 0:
            errors.seek(0)
            raise GitError(f"git cat-file of {repo} failed: {first_line(errors.read())}")


class _Scanner:
    """Searches one ``cat-file --batch`` stream inside one fixed buffer.

    The buffer is filled with ``readinto``; the whole objects in it are searched with one
    ``Matcher.find`` call over the buffer and each match is credited to the object around it. The
    partial object at the end moves to the front and the buffer is filled again. An object larger
    than the buffer is searched in windows that overlap by the longest form less one byte, so a
    copy cut by a window edge is still whole in the next window, and no object is ever held whole.
    """

    def __init__(self, matcher: Matcher, size: int):
        self.matcher = matcher
        self.overlap = max(len(form) for _, form in matcher.forms) - 1
        self.buf = bytearray(max(size, 4 * self.overlap + 1024))  # room for a header and a window
        self.view = memoryview(self.buf)
        self.filled = 0
        self.eof = False
        self.stream: IO[bytes] | None = None
        self.hits: dict[str, ObjectHit] = {}

    def run(self, stream: IO[bytes]) -> dict[str, ObjectHit]:
        self.stream = stream
        while True:
            self._fill()
            if not self.filled:
                return self.hits
            done = self._scan_whole_objects()
            if done:
                self._drop(done)
            elif self.eof:
                raise GitError("git cat-file output ended in the middle of an object")
            else:  # the full buffer holds the start of one object only
                self._scan_large_object()

    def _fill(self) -> None:
        while self.filled < len(self.buf) and not self.eof:
            count = self.stream.readinto(self.view[self.filled:])
            if count:
                self.filled += count
            else:
                self.eof = True

    def _drop(self, count: int) -> None:
        """Forget the first ``count`` bytes of the buffer: the rest moves to the front."""
        rest = self.filled - count
        self.view[:rest] = self.view[count:self.filled]
        self.filled = rest

    def _header(self, pos: int) -> tuple[bytes, bytes, int, int] | None:
        """``(id, kind, content start, size)`` of the object at ``pos``, or None if its header is cut."""
        newline = self.buf.find(b"\n", pos, self.filled)
        if newline < 0:
            return None
        fields = self.buf[pos:newline].split(b" ")
        if len(fields) == 2 and fields[1] == b"missing":  # removed by a gc since it was listed
            return fields[0], b"missing", newline + 1, -1
        if len(fields) != 3:
            raise GitError("git cat-file printed an unexpected header")
        return bytes(fields[0]), bytes(fields[1]), newline + 1, int(fields[2])

    def _scan_whole_objects(self) -> int:
        """Search every object wholly in the buffer; returns where the first cut one starts."""
        buf, pos, objects = self.buf, 0, []
        while (header := self._header(pos)) is not None:
            oid, kind, start, size = header
            if size < 0:
                pos = start
                continue
            end = start + size
            if end >= self.filled:  # the content and its newline are not all here yet
                break
            if buf[end] != _NEWLINE:
                raise GitError("git cat-file printed an object of another size than its header says")
            objects.append((oid, kind, start, end))
            pos = end + 1
        if not objects:
            return pos
        matches = self.matcher.find(buf, 0, pos)
        starts = [start for _, _, start, _ in objects]
        for match in matches:
            oid, kind, start, end = objects[bisect_right(starts, match.offset) - 1]
            if start <= match.offset and match.offset + match.length <= end:
                self._hit(oid, kind, start, end).encodings.add((match.encoding, None))
        for oid, kind, start, end in objects:
            if kind == b"blob" and container_kind(buf, start) and (inside := self._inside(buf[start:end])):
                self._hit(oid, kind, start, end).encodings.update(inside)
        return pos

    def _scan_large_object(self) -> None:
        """Search the object at the start of the full buffer in overlapping windows, reading on."""
        header = self._header(0)
        if header is None:
            raise GitError("git cat-file printed a header longer than the buffer")
        oid, kind, start, left = header
        buf, found = self.buf, set()
        head = bytes(buf[start:start + _HEAD_BYTES]) if kind != b"blob" else None
        binary = kind == b"blob" and buf.find(b"\0", start, start + 8192) >= 0
        container = bytearray() if kind == b"blob" and container_kind(buf, start) else None
        low = fresh = start  # the window starts at ``low``; bytes before ``fresh`` were in the last one
        while True:
            end = min(self.filled, fresh + left)
            found.update(match.encoding for match in self.matcher.find(buf, low, end))
            if container is not None:
                container += buf[fresh:min(end, fresh + CONTAINER_LIMIT - len(container))]
            left -= end - fresh
            if not left and end < self.filled:  # the content and its newline are all read
                if buf[end] != _NEWLINE:
                    raise GitError("git cat-file printed an object of another size than its header says")
                break
            keep = min(self.overlap, end - low)
            self.view[:keep] = self.view[end - keep:end]
            self.filled, low, fresh = keep, 0, keep
            self._fill()
            if self.eof and self.filled <= fresh:
                raise GitError("git cat-file output ended in the middle of an object")
        self._drop(end + 1)
        inside = self._inside(container) if container else []
        if found or inside:
            hit = self.hits.setdefault(oid.decode(), ObjectHit(oid.decode(), kind.decode(), content=head, binary=binary))
            hit.encodings.update((encoding, None) for encoding in found)
            hit.encodings.update(inside)

    def _inside(self, content: bytes | bytearray) -> list[tuple[str, str]]:
        """``(encoding, container)`` of the copies inside a gzip, zip or tar blob: the matcher opens it."""
        return [(match.encoding, match.container) for match in self.matcher.scan_containers(content)]

    def _hit(self, oid: bytes, kind: bytes, start: int, end: int) -> ObjectHit:
        """The hit of an object wholly in the buffer at ``start:end`` (made on its first match)."""
        key = oid.decode()
        hit = self.hits.get(key)
        if hit is None:
            content = bytes(self.buf[start:end]) if kind != b"blob" else None
            binary = kind == b"blob" and self.buf.find(b"\0", start, min(end, start + 8192)) >= 0
            hit = self.hits[key] = ObjectHit(key, kind.decode(), content=content, binary=binary)
        return hit


# ---- attribution ------------------------------------------------------------------------------


def _attribute(hits: dict[str, ObjectHit], history: History, repo: str, matcher: Matcher) -> Iterator[Finding]:
    """Findings for every hit; names that hold the key (paths, refs) are shown redacted."""
    blobs = {oid for oid, hit in hits.items() if hit.kind == "blob"}
    named = key_paths(history.git_dir, matcher, repo) if any(hit.kind == "tree" for hit in hits.values()) else {}
    introductions = history.introductions(blobs | set(named))
    commits = {intro.commit for intros in introductions.values() for intro in intros}
    commits |= {oid for oid, hit in hits.items() if hit.kind == "commit"}
    reachable = history.reachable_among(commits)
    found = []
    for oid, hit in sorted(hits.items()):
        if hit.kind == "blob" and oid in introductions:
            found += _blob_in_commits(hit, introductions[oid], reachable, history, repo)
        elif hit.kind == "blob":
            found += _loose_blob(hit, history, repo)
        elif hit.kind == "commit":
            found += _commit_message(hit, reachable, history, repo)
        elif hit.kind == "tag":
            found += _tag_message(hit, history, repo)
    found += _path_names(named, introductions, reachable, history, repo, matcher)
    found += _ref_names(history, repo, matcher)
    for finding in found:
        yield replace(finding, location=matcher.redact(finding.location), path=_redacted(finding.path, matcher),
                      ref=_redacted(finding.ref, matcher))


def _redacted(text: str | None, matcher: Matcher) -> str | None:
    return None if text is None else matcher.redact(text)


def key_paths(git_dir: Path, matcher: Matcher, repo: str) -> dict[str, bytes]:
    """``{object: path}`` for what a ref reaches at a path whose name holds the key (a file
    ``leak-<KEY>.txt``, a directory named with it): one ``rev-list --objects`` walk, run only when
    a tree holds the key."""
    found = {}
    for line in lines(git_dir, "rev-list", "--objects", "--all", verb="git rev-list --objects", repo=repo):
        oid, _, path = line.partition(b" ")
        if path and matcher.contains(path):
            found[oid.decode()] = path
    return found


def _path_names(named, introductions, reachable, history, repo, matcher) -> Iterator[Finding]:
    """One finding per path whose name holds the key, at the commit that first added it."""
    seen = set()
    for oid in named:
        for intro in introductions.get(oid, []):
            if intro.path in seen or not matcher.contains(intro.path.encode("utf-8", "surrogateescape")):
                continue
            seen.add(intro.path)
            yield Finding(source="git", location=f"{repo}:{intro.path}@{intro.commit[:12]} (the path name)",
                          encoding="raw", object=oid, kind="path-name", repo=repo, commit=intro.commit,
                          ref=history.containing_ref(intro.commit) if intro.commit in reachable else None,
                          path=intro.path, reachable=intro.commit in reachable, first_seen=iso_utc(intro.time))


def _ref_names(history, repo, matcher) -> Iterator[Finding]:
    for oid, _, name in history.refs:
        if matcher.contains(name.encode("utf-8", "surrogateescape")):
            yield Finding(source="git", location=f"{repo}:{name} (the ref name)", encoding="raw", object=oid,
                          kind="ref-name", repo=repo, ref=name, reachable=True)


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
