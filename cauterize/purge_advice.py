"""What a purge's report tells people to do next: what no push can do (other clones, forks, the
forge's caches and unreferenced objects, CI caches), written for the kind of remote (a bare
repository, a working copy, a forge), with the commands that work there."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cauterize.purge import PurgeResult


def action_items(result: PurgeResult, label: str, push: bool, remote: str | Path) -> list[str]:
    first = ", ".join(commit[:12] for commit in result.first_changed_commits) or "none"
    where = str(remote).removeprefix("file://")
    items = []
    if not push:
        items.append(f"Dry run: nothing was pushed. Review the changes above, then rerun with --push to rewrite {label}.")
    if result.signed_commits_unsigned or result.signed_tags_unsigned:
        items.append(
            f"{result.signed_commits_unsigned} signed commit(s) and {result.signed_tags_unsigned} signed tag(s) "
            "change and lose their signature (a rewritten object cannot keep one): re-sign the tags that matter "
            "(`git tag -s -f NAME NEW-ID`) and tell their users the new ids."
        )
    if result.blobs_removed:
        items.append(
            f"{len(result.blobs_removed)} binary or compressed files holding the key are removed from history "
            "(git-filter-repo cannot edit them in place; files_removed lists them): restore them without the key "
            "if they are still needed."
        )
    if result.commits_dropped:
        items.append(
            f"{len(result.commits_dropped)} commit(s) became empty once the files holding the key were removed and are "
            f"gone from history ({', '.join(commit[:12] for commit in result.commits_dropped[:5])}"
            f"{' ...' if len(result.commits_dropped) > 5 else ''})."
        )
    if result.refs_renamed:
        items.append(
            f"{len(result.refs_renamed)} ref(s) whose name held the key were renamed "
            f"({', '.join(_rename_text(rename) for rename in result.refs_renamed)}): tell whoever uses them."
        )
    if result.refused_refs:
        items.append(
            f"The remote refused {', '.join(result.refused_refs)}: they still serve the old history. "
            + _refused(result.remote_kind, where, result.refused_refs)
        )
    items += [
        "Keep the key revoked: anyone who fetched the repository before the purge still has it.",
        (
            "Every existing clone must be discarded and re-cloned (or rebased onto the new history as the "
            f"git-filter-repo manual describes); first changed commits: {first}."
        ),
        *_forge(result),
        "Forks keep the old history: ask their owners to delete or re-sync them.",
        "Clear CI caches and build artifacts made from the old history (they may hold copies of the key).",
    ]
    return items


def _rename_text(rename: dict) -> str:
    return f"{rename['old']} -> {rename['new']}" if rename["new"] else f"{rename['old']} deleted"


def _refused(kind: str, where: str, refs: list[str]) -> str:
    if kind == "forge" or any(ref.startswith("refs/pull/") for ref in refs):
        return ("Ask the forge's support to delete or rewrite them (on GitHub and GitLab, pull-request refs can "
                "only be removed by support).")
    if kind == "working copy":
        return (f"{where} is a working copy, which refuses a push to its checked-out branch: there, run "
                "`git fetch <the purged mirror> '+refs/*:refs/*'` or check out another branch and rerun the purge.")
    return f"On the machine that holds {where}, check its hooks (`hooks/pre-receive`, `hooks/update`) and rerun."


def _forge(result: PurgeResult) -> list[str]:
    """What only the forge can do (a local remote's owner is told in ``leftovers``); a remote
    serving pull-request refs is taken for a forge's."""
    pulls = any(ref.startswith("refs/pull/") for ref in result.refs_changed + result.refused_refs)
    if result.remote_kind != "forge" and not pulls:
        return []
    return [(
        "Ask the forge to purge cached views, pull-request refs (refs/pull/*) and unreferenced objects "
        "(GitHub and GitLab support do this on request)."
    )]


def garbage(kind: str, where: str) -> str:
    """How the old objects a push leaves unreferenced are garbage-collected, where the remote is."""
    if kind == "forge":
        return "only the forge's support can garbage-collect them"
    expire = f"`git -C {where} reflog expire --expire=now --all && git -C {where} gc --prune=now`"
    if kind == "working copy":
        return (f"there, run {expire} and `git -C {where} stash clear`, and check that its work tree and "
                f"index no longer hold the key (`git -C {where} status`)")
    return f"run {expire} on the machine that holds it"
