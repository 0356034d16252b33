"""What a purge must change, and nothing more: the commits, tags and refs that hold a copy of the
key or descend from one, computed before any rewrite so a dry run can say it.

A commit must change when it holds a copy itself (it introduces a blob holding the key, a path
whose name holds it, or its own message or headers hold it), and so must every commit that
descends from one: its parent's id changes. Nothing else needs to: a commit that is no
descendant of a copy keeps its id and its GPG signature, and so does every tag pointing at it.
That set is closed under ancestors, so the rewrite is given as revisions for git fast-export:
every ref whose tip must change, minus (``^id``) the boundary (the parents of changed commits
that do not change themselves). git-filter-repo's ``--refs`` passes them through and implies
``--partial``: refs it is not given keep their values, none is deleted, and ``refs/remotes/*``
are not migrated to branches (what a plain run does in a fresh clone).

Annotated tags holding the key (message, tagger, name) whose commit does not change, and refs
whose own name holds the key, are not for filter-repo: ``purge.py`` rebuilds or renames them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from cauterize.locate.attribution import History
from cauterize.locate.git import key_paths
from cauterize.locate.gitcmd import git, lines
from cauterize.locate.matcher import Matcher

_SIGNED_COMMIT = (b"\ngpgsig ", b"\ngpgsig-sha256 ")
_SIGNED_TAG = (b"-----BEGIN PGP SIGNATURE-----", b"-----BEGIN SSH SIGNATURE-----",
               b"-----BEGIN SIGNED MESSAGE-----")


@dataclass
class Ref:
    """A ref as cloned: its value, the object type of that value, and the commit it peels to."""

    name: str
    oid: str
    kind: str  # "commit" | "tag" | "blob" | "tree"
    peeled: str  # the commit an annotated tag points at ("" when it is no tag)
    signed: bool = False  # an annotated tag carrying a signature


@dataclass
class Plan:
    """The commits and refs a purge changes, and why (for the dry run's report)."""

    commits_total: int = 0  # commits any ref reaches
    holding: set[str] = field(default_factory=set)  # reachable commits holding a copy themselves
    changed: set[str] = field(default_factory=set)  # those and every descendant: what the rewrite changes
    boundary: set[str] = field(default_factory=set)  # parents of changed commits that keep their ids
    signed_changed: int = 0  # changed commits that carry a signature (lost in any rewrite)
    revs: list[str] = field(default_factory=list)  # for ``git filter-repo --refs``
    refs: dict[str, Ref] = field(default_factory=dict)
    key_paths: int = 0  # paths whose name holds the key (renamed by the rewrite)

    @property
    def refs_to_rewrite(self) -> list[str]:
        return sorted(name for name, ref in self.refs.items() if (ref.peeled or ref.oid) in self.changed)

    @property
    def tags_changed(self) -> list[str]:
        """Annotated or lightweight tags whose value the rewrite changes."""
        return [name for name in self.refs_to_rewrite if name.startswith("refs/tags/")]

    @property
    def signed_tags_changed(self) -> int:
        return sum(1 for name in self.tags_changed if self.refs[name].signed)

    def why(self) -> str:
        """One line a maintainer can check: how many commits change and the reason for each."""
        own = len(self.holding)
        descendants = len(self.changed) - own
        kept = self.commits_total - len(self.changed)
        return (f"{len(self.changed)} of {self.commits_total} commits change: {own} hold a copy of the key, "
                f"{descendants} descend from one; {kept} older or unrelated commits keep their ids and signatures")


def plan(mirror: Path, matcher: Matcher, hits: dict, commits: list[bytes], *, label: str) -> Plan:
    """The rewrite ``hits`` (locate's ``scan_objects`` hits of ``mirror``) call for."""
    result = Plan(refs=_refs(mirror, label))
    parents = _graph(mirror, label)
    result.commits_total = len(parents)
    blobs = {oid for oid, hit in hits.items() if hit.kind == "blob"}
    named = key_paths(mirror, matcher, label) if any(hit.kind == "tree" for hit in hits.values()) else {}
    history = History(mirror, repo=label, commits=commits)
    holding = {oid for oid, hit in hits.items() if hit.kind == "commit"}
    for blob, introductions in history.introductions(blobs | set(named)).items():
        for intro in introductions:
            if blob in blobs or matcher.contains(intro.path.encode("utf-8", "surrogateescape")):
                holding.add(intro.commit)
    result.key_paths = len(named)
    result.holding = holding & parents.keys()
    result.changed = _descendants(result.holding, parents)
    result.boundary = {parent for commit in result.changed for parent in parents[commit]} - result.changed
    result.revs = [*result.refs_to_rewrite, *(f"^{commit}" for commit in sorted(result.boundary))]
    result.signed_changed = _count_signed(mirror, result.changed, label)
    return result


def _refs(mirror: Path, label: str) -> dict[str, Ref]:
    out = git(mirror, "for-each-ref", "--format=%(objectname) %(objecttype) %(*objectname) %(refname)",
              verb="git for-each-ref", repo=label).stdout
    refs = {}
    for line in out.decode("utf-8", "surrogateescape").splitlines():
        oid, kind, rest = line.split(" ", 2)
        peeled, _, name = rest.partition(" ")
        refs[name] = Ref(name=name, oid=oid, kind=kind, peeled=peeled)
    tags = [ref for ref in refs.values() if ref.kind == "tag"]
    if tags:
        for ref, raw in zip(tags, contents(mirror, [ref.oid for ref in tags], label)):
            ref.signed = any(mark in raw for mark in _SIGNED_TAG)
    return refs


def _graph(mirror: Path, label: str) -> dict[str, list[str]]:
    """``{commit: parents}`` for every commit a ref reaches (one ``rev-list --parents`` walk)."""
    graph = {}
    for line in lines(mirror, "rev-list", "--all", "--parents", verb="git rev-list", repo=label):
        commit, *parents = line.decode().split()
        graph[commit] = parents
    return graph


def _descendants(roots: set[str], parents: dict[str, list[str]]) -> set[str]:
    children: dict[str, list[str]] = {}
    for commit, its_parents in parents.items():
        for parent in its_parents:
            children.setdefault(parent, []).append(commit)
    seen = set(roots)
    queue = deque(roots)
    while queue:
        for child in children.get(queue.popleft(), ()):
            if child not in seen:
                seen.add(child)
                queue.append(child)
    return seen


def _count_signed(mirror: Path, commits: set[str], label: str) -> int:
    if not commits:
        return 0
    return sum(1 for raw in contents(mirror, sorted(commits), label)
               if any(mark in raw.partition(b"\n\n")[0] for mark in _SIGNED_COMMIT))


def contents(mirror: Path, oids: list[str], label: str) -> list[bytes]:
    """The raw content of each object, in order (one ``cat-file --batch``; commits and tags are small)."""
    out = git(mirror, "cat-file", "--batch", verb="git cat-file", repo=label,
              input="".join(f"{oid}\n" for oid in oids).encode()).stdout
    contents, at = [], 0
    for _ in oids:
        end = out.index(b"\n", at)
        size = int(out[at:end].split()[2])
        contents.append(out[end + 1:end + 1 + size])
        at = end + 1 + size + 1
    return contents
