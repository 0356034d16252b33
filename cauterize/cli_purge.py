"""``cauterize purge KEYSRC --repo PATH_OR_URL [--push] [--yes] [--json]`` (DESIGN.md section 4).

A dry run by default: each repository is mirror-cloned and rewritten in a private scratch
directory, the result is verified and reported, and nothing is pushed. ``--push`` pushes the
rewritten history (after ``--yes`` or a confirmation on the terminal) and verifies what a fresh
clone of the remote now gets. A working clone given as ``--repo`` stands for its ``origin``: the
copy others clone from; the working clone itself is never touched, and re-cloning it becomes an
action item.

Exit codes: 0 every repository rewritten and verified clean (or, in a dry run, rewritten and
verified before any push); 2 invalid input; 3 something could not be purged (a refused ref, a
copy left over, a repository that failed). ``--json`` prints ``{"fingerprint", "dry_run",
"repos": [PurgeResult.to_dict(), ...]}`` on stdout; progress goes to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cauterize.errors import CauterizeError, InputError

if TYPE_CHECKING:
    from cauterize.purge import PurgeResult


def purge(
    repo: Annotated[list[str], typer.Option("--repo", help="A repository path or URL (repeatable); a working clone "
                                            "stands for its origin.")],
    key_env: Annotated[str | None, typer.Option("--key-env", help="Read the key from this environment variable.")] = None,
    key_file: Annotated[Path | None, typer.Option("--key-file", help="Read the key from this file.")] = None,
    key_stdin: Annotated[bool, typer.Option("--key-stdin", help="Read the key from standard input.")] = False,
    push: Annotated[bool, typer.Option("--push", help="Push the rewritten history (default: a dry run).")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation before pushing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Rewrite git history without the key (git-filter-repo), verify it, and push it with --push.
    Exit 3 if something could not be purged."""
    from cauterize.cli import _emit_json, key_source
    from cauterize.locate.gitcmd import display_name
    from cauterize.logs import progress_to_stderr
    from cauterize.providers.formats import load_leaked_key
    from cauterize.purge import PurgeResult, purge_repo, remote_of
    from cauterize.scratch import scratch
    from cauterize.secret import assert_clean, scrub

    key = load_leaked_key(key_source(key_env, key_file, key_stdin), None)
    remotes = [(given, remote_of(given)) for given in repo]
    if push and not yes:
        if key_stdin or not sys.stdin.isatty():
            raise InputError("purge --push rewrites the remote's history for good: pass --yes when not on a terminal")
        names = ", ".join(display_name(remote) for _, remote in remotes)
        typer.confirm(f"Rewrite and force-push the history of {names} without {key.fingerprint}?", abort=True,
                      err=True)
    progress_to_stderr()
    results: list[PurgeResult] = []
    with scratch("cauterize-purge-") as work:  # removed on the way out; a crashed run's is swept first
        for given, remote in remotes:
            try:
                result = purge_repo(remote, key, workdir=work, push=push)
            except InputError:
                raise
            except CauterizeError as exc:
                result = PurgeResult(repo=display_name(remote), error=scrub(exc.one_line()))
            if remote != given:
                result.action_items.append(
                    f"{given} is a working clone of {display_name(remote)}: re-clone it (its stash, reflog and "
                    "local branches may still hold the key)"
                )
            results.append(result)
    if as_json:
        document = {"fingerprint": key.fingerprint, "dry_run": not push, "repos": [r.to_dict() for r in results]}
        assert_clean(json.dumps(document), "the purge report")
        _emit_json(document)
    else:
        text = "".join(_describe(result, push) for result in results)
        assert_clean(text, "the purge report")
        typer.echo(text, nl=False)
    failed = [result.repo for result in results if not _done(result, push)]
    summary = f"{len(results) - len(failed)} of {len(results)} repo(s) {'purged and verified' if push else 'rewritten (dry run)'}"
    typer.echo(f"{summary}; not done: {', '.join(failed)}" if failed else summary, err=True)
    if failed:
        raise typer.Exit(3)


def _done(result: PurgeResult, push: bool) -> bool:
    """Verified clean after a push; rewritten and verified in the mirror for a dry run."""
    return result.error is None and (result.verified or not push)


def _short(oid: str | None) -> str:
    return oid[:12] if oid else "(none)"


def _describe(result: PurgeResult, push: bool) -> str:
    """The human report of one repository."""
    if result.error:
        state = f"FAILED: {result.error}"
    elif not push:
        state = "dry run, nothing pushed"
    else:
        state = ("pushed; " if result.pushed else "nothing to push; ") + (
            "a fresh clone holds no copy" if result.verified else "NOT verified clean")
    lines = [f"{result.repo}: {state}"]
    if result.why:
        lines.append(f"  {result.why}")
    if result.refs_changed:
        lines.append(f"  refs changed ({len(result.refs_changed)}), {result.refs_kept} left as they were:")
        lines += [f"    {ref['ref']}: {_short(ref['old'])} -> {_short(ref['new'])}" for ref in result.refs_updated]
    lines += [f"  ref renamed (its name held the key): {rename['old']} -> {rename['new'] or '(deleted)'}"
              for rename in result.refs_renamed]
    if result.commits_rewritten:
        first = ", ".join(commit[:12] for commit in result.first_changed_commits)
        lines.append(f"  commits rewritten: {result.commits_rewritten} (first changed: {first}); "
                     f"{result.commits_untouched} keep their ids")
    if result.commits_dropped:
        lines.append(f"  commits dropped (they became empty): {', '.join(c[:12] for c in result.commits_dropped)}")
    if result.signed_commits_unsigned or result.signed_tags_unsigned:
        lines.append(f"  signatures lost: {result.signed_commits_unsigned} signed commit(s), "
                     f"{result.signed_tags_unsigned} signed tag(s) (rewritten objects cannot keep them)")
    if result.tags_cleaned:
        lines.append(f"  tags rebuilt without the key: {', '.join(result.tags_cleaned)}")
    if result.paths_renamed:
        lines.append(f"  paths renamed (their name held the key): {result.paths_renamed}")
    lines += [f"  file removed from history: {line}" for line in result.files_removed]
    if result.notes_moved:
        lines.append(f"  notes re-attached to rewritten commits: {result.notes_moved}")
    if result.refused_refs:
        lines.append(f"  refused by the remote: {', '.join(result.refused_refs)}")
    lines += [f"  left over: {item}" for item in result.leftovers]
    lines += [f"  action: {item}" for item in result.action_items]
    return "\n".join(lines) + "\n"
