"""One entry point per kind of place a copy can hide: git, file trees, S3, GitHub Actions logs.

``search(kind, target, secret, ...)`` returns a ``SourceResult``: findings, what could not be read
(``errors``: expired logs, unreadable files, size caps) and what the responder should do beyond
the findings (``actions``: a public bucket). A source that cannot be searched at all raises its
``CauterizeError``. The CLI's ``locate`` and the flow's locate step both go through here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cauterize.errors import InputError
from cauterize.locate.findings import Finding
from cauterize.secret import Secret

KINDS = ("git", "path", "s3", "github-actions")


@dataclass
class SourceResult:
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)


def search(kind: str, target: str, secret: Secret, *, workdir: Path) -> SourceResult:
    result = SourceResult()
    if kind == "git":
        from cauterize.locate.git import scan_repo

        result.findings = scan_repo(target, secret, workdir=workdir)
    elif kind == "path":
        from cauterize.locate.files import scan_tree

        result.findings = scan_tree(target, secret, errors=result.errors)
    elif kind == "s3":
        from cauterize.locate.s3 import scan_s3

        found = scan_s3(target, secret)
        result.findings, result.errors = list(found.findings), list(found.errors)
        result.actions = [f"s3://{found.bucket} is public ({reason}): make it private" for reason in found.public_reasons]
        if any(f.reachable is False for f in found.findings):
            result.actions.append(f"delete the old object versions in s3://{found.bucket} that hold the key")
    elif kind == "github-actions":
        from cauterize.locate.ci_logs import scan_github_actions

        result.findings = scan_github_actions(target, secret, errors=result.errors)
        if result.findings:
            result.actions.append(f"delete the GitHub Actions run logs of {target} that hold the key")
    else:
        raise InputError(f"unknown locate source '{kind}': expected one of {', '.join(KINDS)}")
    return result
