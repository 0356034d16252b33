"""Notes after a purge's rewrite. A note is a blob in a notes ref's tree, named after the commit it
annotates; git-filter-repo passes notes commits through as they are (their names are commit ids,
which its callbacks would mangle), so a note holding the key keeps it and a note of a rewritten
commit keeps the old commit's name. Each notes ref whose history needs it is rewritten here, one
commit at a time, oldest first: every note renamed to its commit's new id, every note blob
holding the key replaced by its scrubbed blob (or dropped when it cannot be scrubbed), parents
mapped, every other header and the message kept as they are.

A notes tree fanned out into directories (``1a/2b3c...``) is flattened, which git reads the
same. A notes ref holding files that are not notes is left as it is: the verification that
follows the rewrite then says whether it still holds the key.
"""

from __future__ import annotations

import re
from pathlib import Path

from cauterize.locate.gitcmd import git

NOTES = "refs/notes/"
_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class _Rewriter:
    def __init__(self, mirror: Path, commit_map: dict[str, str | None], blobs: dict[str, str | None], label: str):
        self.mirror, self.commit_map, self.blobs, self.label = mirror, commit_map, blobs, label
        self.moved = 0

    def _git(self, *args: str, **kwargs) -> str:
        return git(self.mirror, *args, verb=f"git {args[0]}", repo=self.label, **kwargs).stdout.decode().strip()

    def entries(self, commit: str) -> list[tuple[str, str, str, str]] | None:
        """``(mode, type, blob, name)`` of the notes tree of ``commit``, flattened; None if it holds other files."""
        listing = git(self.mirror, "ls-tree", "-r", "--full-tree", commit, verb="git ls-tree", repo=self.label).stdout
        rows = []
        for line in listing.decode("utf-8", "surrogateescape").splitlines():
            meta, path = line.split("\t", 1)
            mode, kind, oid = meta.split()
            name = path.replace("/", "")
            if not _OBJECT_ID.fullmatch(name):
                return None
            rows.append((mode, kind, oid, name))
        return rows

    def fixed(self, rows: list[tuple[str, str, str, str]]) -> list[tuple[str, str, str, str]]:
        out = []
        for mode, kind, oid, name in rows:
            target = self.commit_map.get(name) or name
            blob = self.blobs.get(oid, oid)
            if blob is None:
                continue  # a note holding the key that cannot be scrubbed: dropped
            out.append((mode, kind, blob, target))
        return out

    def rewrite(self, ref: str) -> bool:
        commits = self._git("rev-list", "--topo-order", "--reverse", ref).split()
        trees = {}
        for commit in commits:
            rows = self.entries(commit)
            if rows is None:
                return False
            trees[commit] = (rows, self.fixed(rows))
        if all(rows == fixed for rows, fixed in trees.values()):
            return False
        mapped: dict[str, str] = {}
        for commit in commits:
            rows, fixed = trees[commit]
            tree = self._git("mktree", input="".join(f"{m} {k} {o}\t{n}\n" for m, k, o, n in fixed).encode())
            raw = git(self.mirror, "cat-file", "commit", commit, verb="git cat-file", repo=self.label).stdout
            header, _, message = raw.partition(b"\n\n")
            lines = []
            for line in header.split(b"\n"):
                if line.startswith(b"tree "):
                    line = b"tree " + tree.encode()
                elif line.startswith(b"parent "):
                    line = b"parent " + mapped[line[7:].decode()].encode()
                lines.append(line)
            mapped[commit] = self._git("hash-object", "-t", "commit", "-w", "--stdin",
                                       input=b"\n".join(lines) + b"\n\n" + message)
        tip = commits[-1]
        self._git("update-ref", ref, mapped[tip], tip)
        self.moved += sum(1 for _, _, _, name in trees[tip][0] if self.commit_map.get(name))
        return True


def rewrite_notes(
    mirror: Path, commit_map: dict[str, str | None], blobs: dict[str, str | None], refs: list[str], *, label: str
) -> int:
    """Rewrite the notes refs among ``refs`` that need it; ``blobs`` maps a note blob holding the
    key to its scrubbed blob (None: drop the note). Returns how many notes moved to a new id."""
    rewriter = _Rewriter(mirror, commit_map, blobs, label)
    for ref in refs:
        if ref.startswith(NOTES):
            rewriter.rewrite(ref)
    return rewriter.moved
