"""Where objects sit in a repository's history: which commits introduced a blob, at which paths,
whether a commit is reachable, and which ref holds it. Run only for the few objects that hold a
hit, after the one ``cat-file`` pass of ``git.py``.

Reachable means reachable from a ref (any ref under ``refs/``, ``refs/stash`` and
``refs/pull/*`` included) or from ``HEAD``. Reflog entries do not count: reflogs are local,
never served to a clone, and expire; a commit kept alive only by a reflog is reported as
unreachable, like one that was reset away and left dangling.

Introductions come from one ``git log --find-object`` walk started from *every* commit in the
object store (reachable or not), so commits reset away, dropped stashes and orphaned rebases are
attributed too. Merges are diffed against their first parent; a blob the merge shows as new
counts as introduced by the merge only if no other parent holds it at that path (an "evil
merge"), which ``git log -p`` would never show.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cauterize.locate.gitcmd import git, lines

_LOG_FORMAT = "%x01%H %ct %P"


@dataclass(frozen=True)
class Introduction:
    """A commit that added a blob at a path (its content there is new relative to every parent)."""

    commit: str
    time: int
    path: str


class History:
    """Answers about one repository's history; every query is one git command, run lazily."""

    def __init__(self, git_dir: Path, *, repo: str, commits: list[bytes]):
        self.git_dir = git_dir
        self.repo = repo
        self._commits = commits  # every commit id in the object store, from the cat-file pass

    def _git(self, *args: str, verb: str, **kwargs) -> bytes:
        return git(self.git_dir, *args, verb=verb, repo=self.repo, **kwargs).stdout

    # ---- introductions ----------------------------------------------------------------------

    def introductions(self, blobs: set[str]) -> dict[str, list[Introduction]]:
        """For each blob, the commits (reachable or not) that introduced it, with path and time."""
        if not blobs or not self._commits:
            return {}
        out = self._git(
            "log", "--stdin", "-z", "--raw", "--no-abbrev", "--no-renames", "--diff-merges=first-parent",
            "--no-show-signature", "--no-color", f"--format={_LOG_FORMAT}",
            *(f"--find-object={blob}" for blob in sorted(blobs)),
            verb="git log --find-object", input=b"\n".join(self._commits) + b"\n",
        )
        candidates: list[tuple[str, Introduction, list[str]]] = []
        for record in out.split(b"\x01")[1:]:
            header, _, body = record.partition(b"\0")
            commit, time, *parents = header.decode().split()
            fields = body.lstrip(b"\n").split(b"\0")
            for meta, path in zip(fields[0::2], fields[1::2]):
                parts = meta.split()
                if len(parts) < 5 or parts[4] == b"D":
                    continue
                blob = parts[3].decode()
                if blob in blobs:
                    text = path.decode("utf-8", "backslashreplace")
                    candidates.append((blob, Introduction(commit, int(time), text), parents))
        kept = self._new_in_every_parent(candidates)
        found: dict[str, list[Introduction]] = {}
        for blob, intro in kept:
            found.setdefault(blob, []).append(intro)
        for intros in found.values():
            intros.sort(key=lambda intro: (intro.time, intro.commit))
        return found

    def _new_in_every_parent(self, candidates) -> list[tuple[str, Introduction]]:
        """Drop merge candidates whose blob a non-first parent already holds at the same path."""
        queries = [
            f"{parent}:{intro.path}"
            for _, intro, parents in candidates
            for parent in parents[1:]
            if "\n" not in intro.path
        ]
        held: set[str] = set()
        if queries:
            out = self._git("cat-file", "--batch-check=%(objectname)", verb="git cat-file",
                            input="\n".join(queries).encode() + b"\n")
            for query, answer in zip(queries, out.decode().splitlines()):
                held.add(f"{query} {answer.split()[0]}")
        return [
            (blob, intro)
            for blob, intro, parents in candidates
            if not any(f"{parent}:{intro.path} {blob}" in held for parent in parents[1:])
        ]

    # ---- reachability and refs --------------------------------------------------------------

    def reachable_among(self, commits: set[str]) -> set[str]:
        """Which of ``commits`` are reachable from a ref or HEAD (one ``rev-list --all`` walk)."""
        if not commits:
            return set()
        wanted = {commit.encode() for commit in commits}
        found = set()
        for line in lines(self.git_dir, "rev-list", "--all", verb="git rev-list", repo=self.repo):
            if line in wanted:
                found.add(line.decode())
                if len(found) == len(wanted):
                    break
        return found

    @cached_property
    def refs(self) -> list[tuple[str, str, str]]:
        """``(object id, peeled object id or "", refname)`` for every ref."""
        out = self._git("for-each-ref", "--format=%(objectname) %(*objectname) %(refname)",
                        verb="git for-each-ref")
        rows = []
        for line in out.decode("utf-8", "backslashreplace").splitlines():
            oid, peeled, name = line.split(" ", 2)
            rows.append((oid, peeled, name))
        return rows

    def refs_pointing_at(self, oid: str) -> list[str]:
        """Refs whose value (or peeled tag target) is ``oid``: how a tag object or a bare blob is reachable."""
        return [name for value, peeled, name in self.refs if oid in (value, peeled)]

    @cached_property
    def head(self) -> str | None:
        """The ref HEAD points to (``HEAD`` itself when detached), or None in an empty repository."""
        done = git(self.git_dir, "symbolic-ref", "-q", "HEAD", verb="git symbolic-ref", repo=self.repo, check=False)
        if done.returncode == 0:
            return done.stdout.decode().strip()
        done = git(self.git_dir, "rev-parse", "-q", "--verify", "HEAD", verb="git rev-parse", repo=self.repo,
                   check=False)
        return "HEAD" if done.returncode == 0 else None

    def containing_ref(self, commit: str) -> str | None:
        """One ref that contains ``commit``: HEAD's branch first, then branches, tags, any other ref."""
        if self.head and self._is_ancestor(commit, self.head):
            return self.head
        for command, *patterns in (("for-each-ref", "refs/heads/"), ("tag",), ("for-each-ref",)):
            out = self._git(command, f"--contains={commit}", "--format=%(refname)", *patterns,
                            verb=f"git {command} --contains")
            names = sorted(out.decode("utf-8", "backslashreplace").split())
            if names:
                return names[0]
        return None

    def _is_ancestor(self, commit: str, ref: str) -> bool:
        done = git(self.git_dir, "merge-base", "--is-ancestor", commit, ref, verb="git merge-base",
                   repo=self.repo, check=False)
        return done.returncode == 0
