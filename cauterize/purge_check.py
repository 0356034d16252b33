"""The second verification of a purge, independent of the matcher that chose what to rewrite:
``purge_verify`` decodes every object through every decoder it has and looks for the key's raw
bytes, names included. A purge is "verified" only when both methods find nothing.

Objects are named by their content, so each object is searched once: every object the mirror
reaches before the rewrite (``before``), then only the objects the rewrite created (``after``).
What the independent search finds before the rewrite and the matcher did not (a .bz2, a PNG
zTXt chunk, UTF-16 text) joins the hits the rewrite acts on: a blob is scrubbed or removed, a
commit's message scrubbed. Whatever of it is still reachable afterwards fails the purge, and a
part it could not search (an encrypted zip member, a blob past its limits) is reported as not
proven clean: never as clean.
"""

from __future__ import annotations

from pathlib import Path

from cauterize import purge_verify
from cauterize.locate.git import ObjectHit
from cauterize.purge_verify import Survivor
from cauterize.secret import Secret


class Independent:
    """The independent search of one mirror, before and after its rewrite."""

    def __init__(self, mirror: Path, secret: Secret, label: str):
        self.mirror, self.secret, self.label = mirror, secret, label
        self.found: dict[str, list[Survivor]] = {}  # object -> copies, from the search before
        self.unsearched: dict[str, list[Survivor]] = {}

    def _keep(self, survivors: list[Survivor]) -> None:
        for survivor in survivors:
            target = self.unsearched if survivor.unsearched else self.found
            target.setdefault(survivor.object, []).append(survivor)

    def before(self, hits: dict[str, ObjectHit]) -> dict[str, ObjectHit]:
        """Search what the mirror reaches now; return the objects holding the key that ``hits``
        (the matcher's) lack, as hits for the plan (a blob marked binary: removed unless scrub
        leaves it clean)."""
        self._keep(purge_verify.verify_objects(self.mirror, self.secret, None, label=self.label))
        extra = {}
        for oid, survivors in self.found.items():
            kind = survivors[0].kind
            if oid and oid not in hits and kind in ("blob", "commit", "tag", "tree"):
                extra[oid] = ObjectHit(oid, kind, {("raw", survivor.where) for survivor in survivors},
                                       binary=kind == "blob")
        return extra

    def after(self, reachable: set[bytes], searched: set[bytes], refs: list[str]) -> tuple[list[str], list[str]]:
        """``(copies, unproven)`` among what the rewritten mirror reaches: the objects found before
        that are still reachable, the new objects, and the ref names; each as a line naming the
        object and how it was found (never the key)."""
        self._keep(purge_verify.verify_objects(self.mirror, self.secret, reachable - searched, label=self.label))
        survivors = purge_verify.verify_refs(refs, self.secret)
        copies = [_line(s) for oid, found in self.found.items() if oid.encode() in reachable for s in found]
        copies += [_line(s) for s in survivors if not s.unsearched]
        unproven = [_line(s) for oid, parts in self.unsearched.items() if oid.encode() in reachable for s in parts]
        unproven += [_line(s) for s in survivors if s.unsearched]
        return sorted(set(copies)), sorted(set(unproven))

    def remote(self, clone: Path | None, objects: set[bytes], refs: list[str]) -> tuple[list[str], list[str]]:
        """The same, for objects of a fresh clone of the remote not proven before (none: ``clone``
        may be None), and the ref names the remote advertises."""
        survivors = purge_verify.verify_objects(clone, self.secret, objects, label=self.label) if objects else []
        survivors += purge_verify.verify_refs(refs, self.secret)
        return (sorted({_line(s) for s in survivors if not s.unsearched}),
                sorted({_line(s) for s in survivors if s.unsearched}))


def _line(survivor: Survivor) -> str:
    if not survivor.object:
        return survivor.where
    return f"{survivor.kind or 'object'} {survivor.object[:12]} ({survivor.where})"
