"""``cauterize permissions RUNBOOK [--format F] [--discovery] [--aws-account ID]``: least privilege.

Prints on stdout the smallest policy cauterize needs for the runbook, in the format the platform
loads (``aws-iam``: IAM policy JSON; ``vault``: HCL; ``gcp-iam``: a custom role YAML; ``azure``: a
custom role definition JSON; ``github``: token permissions JSON; ``kubernetes``: Role YAML;
``providers``: the admin credentials; ``all``: every section under a ``#`` header). Notes (what
to bind where, what is not granted) go to stderr, so ``--format vault > policy.hcl`` stays loadable.
A format the runbook does not need prints nothing and says so on stderr. Registered in ``cli.py``
as ``app.command("permissions")(permissions)``; an unknown format exits 2.
"""

from __future__ import annotations

from pathlib import Path

import typer


def permissions(
    runbook: Path = typer.Argument(..., help="The runbook to derive the policies from."),
    format: str = typer.Option("all", "--format", help="aws-iam, vault, gcp-iam, azure, github, kubernetes, "
                               "providers or all."),
    discovery: bool = typer.Option(False, "--discovery", help="Also grant the locate step's sweep of every secret "
                                   "of the AWS region and Vault mount (broad)."),
    aws_account: str | None = typer.Option(None, "--aws-account", help="The AWS account id for the ARNs (default *)."),
) -> None:
    """Print the least-privilege policies cauterize needs for a runbook."""
    from cauterize.errors import InputError
    from cauterize.permissions import FORMATS, derive, render
    from cauterize.runbook import load_runbook

    if format not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, not '{format}'")
    if aws_account is not None and not (aws_account.isdigit() and len(aws_account) == 12):
        raise InputError(f"--aws-account must be a 12-digit AWS account id, not '{aws_account}'")
    sections = derive(load_runbook(runbook), aws_account=aws_account, discovery=discovery)
    text = render(sections, format)
    if text:
        typer.echo(text, nl=not text.endswith("\n"))
    if format == "all":
        return
    if format not in sections:
        typer.echo(f"the runbook needs no {format} permissions", err=True)
        return
    for note in sections[format].notes:
        typer.echo(f"note: {note}", err=True)
