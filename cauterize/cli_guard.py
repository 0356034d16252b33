"""``cauterize guard install [--repo PATH]`` and ``cauterize guard check [FILES...] [--staged]``.

``check`` is what the pre-commit hook runs (``--staged``: the index, what the commit will hold) and
what the pre-commit framework runs (``FILES``: it passes the staged files, unstaged changes stashed).
Exit 0 when nothing is found; 1 when it refuses, with one line per key on stderr (file, line, key
type, redacted form, fingerprint: never the key) and how to move the key into a secret store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cauterize.errors import InputError

guard_app = typer.Typer(help="Refuse commits that add an LLM API key (a git pre-commit hook).", no_args_is_help=True)

HOW_TO_FIX = """\
How to fix: take the key out of the file and read it at run time instead: from an environment variable
set by your deployment, or from a secret store (AWS Secrets Manager, Vault, GCP Secret Manager, Azure Key
Vault, a Kubernetes Secret, GitHub Actions secrets...; a cauterize runbook lists where each key lives).
Then `git add` the file again. Committed or pushed before? Treat the key as leaked: `cauterize respond RUNBOOK`.
A test value that must look like a key can be marked on its line with `cauterize: allow`."""
LEAKED_NOTE = "A key on the leaked list is compromised: never reuse it, whatever the file; revoke it if still live."


@guard_app.command("install")
def install(
    repo: Annotated[Path, typer.Option("--repo", help="The repository (default: the current directory).")] = Path("."),
) -> None:
    """Install the pre-commit hook that runs `cauterize guard check --staged` (an existing hook runs first)."""
    from cauterize.guard import install as install_hook

    typer.echo(install_hook(repo).describe(), err=True)


@guard_app.command("check")
def check(
    files: Annotated[list[Path] | None, typer.Argument(help="Files to check, as they are on disk.")] = None,
    staged: Annotated[bool, typer.Option("--staged", help="Check the staged changes (what the commit will hold).")]
    = False,
    repo: Annotated[Path, typer.Option("--repo", help="The repository for --staged.")] = Path("."),
) -> None:
    """Refuse (exit 1) when the files or the staged changes hold an LLM API key or a key on the leaked list."""
    from cauterize.guard import check_files, check_staged

    if staged == bool(files):
        raise InputError("give either FILES or --staged")
    findings = check_staged(repo) if staged else check_files(files or [])
    if not findings:
        return
    where = "the staged changes" if staged else "the files checked"
    typer.echo(f"cauterize guard: refused: {len(findings)} API key(s) in {where}", err=True)
    for finding in findings:
        typer.echo(f"  {finding.describe()}", err=True)
    typer.echo(HOW_TO_FIX, err=True)
    if any(finding.leaked for finding in findings):
        typer.echo(LEAKED_NOTE, err=True)
    raise typer.Exit(1)


__all__ = ["guard_app"]
