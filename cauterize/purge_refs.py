"""The copies of a key that live in refs rather than in history: annotated tag objects whose
message, tagger or name holds it, and refs whose own name does (``refs/heads/backup-<KEY>``,
``refs/tags/t-<KEY>``). git-filter-repo rewrites only the tags of the commits it rewrites, and
never a name, so after the rewrite:

- every annotated tag whose object still holds the key is rebuilt with ``git mktag``: the same
  target, the key replaced (its name by the name placeholder), and no signature (a signature over
  the old content would not verify);
- every ref whose name holds the key is renamed, the key replaced by the name placeholder
  (``REMOVED-<16 hex>``): created under the new name, deleted under the old. A name that is not
  valid, or already taken, leaves the ref deleted only. Each is reported, the old name redacted.
"""

from __future__ import annotations

from pathlib import Path

from cauterize.locate.gitcmd import git
from cauterize.locate.matcher import Matcher
from cauterize.purge_plan import contents

_SIGNATURES = (b"-----BEGIN PGP SIGNATURE-----", b"-----BEGIN SSH SIGNATURE-----", b"-----BEGIN SIGNED MESSAGE-----")


def clean_refs(
    mirror: Path, matcher: Matcher, replacement: bytes, name_placeholder: bytes, *, label: str
) -> tuple[list[str], list[dict]]:
    """Rebuild the tags that hold the key and rename the refs named with it. Returns the tags
    rebuilt (names redacted) and the renames ``{"old", "new"}`` (``new`` None: deleted only)."""
    refs = _refs(mirror, label)
    rebuilt = []
    tags = [(name, oid) for name, (oid, kind) in refs.items() if kind == "tag"]
    if tags:
        for (name, oid), raw in zip(tags, contents(mirror, [oid for _, oid in tags], label)):
            if not matcher.contains(raw):
                continue
            new = git(mirror, "mktag", verb="git mktag", repo=label,
                      input=_clean_tag(raw, matcher, replacement, name_placeholder)).stdout.decode().strip()
            git(mirror, "update-ref", name, new, oid, verb="git update-ref", repo=label)
            refs[name] = (new, "tag")
            rebuilt.append(matcher.redact(name))
    renamed = []
    for name, (oid, _) in sorted(refs.items()):
        if not matcher.contains(name.encode("utf-8", "surrogateescape")):
            continue
        target = _replace(name.encode("utf-8", "surrogateescape"), matcher, name_placeholder).decode(
            "utf-8", "surrogateescape")
        valid = git(mirror, "check-ref-format", target, verb="git check-ref-format", repo=label,
                    check=False).returncode == 0
        if valid and target not in refs:
            git(mirror, "update-ref", target, oid, "", verb="git update-ref", repo=label)
        else:
            target = None
        git(mirror, "update-ref", "-d", name, oid, verb="git update-ref", repo=label)
        renamed.append({"old": matcher.redact(name), "new": target})
    return rebuilt, renamed


def _clean_tag(raw: bytes, matcher: Matcher, replacement: bytes, name_placeholder: bytes) -> bytes:
    header, _, message = raw.partition(b"\n\n")
    lines = []
    for line in header.split(b"\n"):
        if line.startswith(b"tag "):
            line = b"tag " + _replace(line[4:], matcher, name_placeholder)
        elif not line.startswith((b"object ", b"type ")):
            line = _replace(line, matcher, replacement)
        lines.append(line)
    cut = min((at for at in (message.find(mark) for mark in _SIGNATURES) if at >= 0), default=len(message))
    message = _replace(message[:cut], matcher, replacement)
    return b"\n".join(lines) + b"\n\n" + message


def _replace(data: bytes, matcher: Matcher, replacement: bytes) -> bytes:
    for _, form in matcher.forms:
        data = data.replace(form, replacement)
    return data


def _refs(mirror: Path, label: str) -> dict[str, tuple[str, str]]:
    out = git(mirror, "for-each-ref", "--format=%(objectname) %(objecttype) %(refname)",
              verb="git for-each-ref", repo=label).stdout
    refs = {}
    for line in out.decode("utf-8", "surrogateescape").splitlines():
        oid, kind, name = line.split(" ", 2)
        refs[name] = (oid, kind)
    return refs
