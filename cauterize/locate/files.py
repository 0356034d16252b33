"""Scan a file tree for copies of the key: regular files and gzip-compressed files.

``.git`` directories are left to the git source, which reads every object of a repository.
Archives (zip, tar), container images and notebooks are the locate issue's next steps.
"""

from __future__ import annotations

import os
from pathlib import Path

from cauterize.errors import InputError
from cauterize.locate.findings import Finding
from cauterize.locate.matcher import Matcher
from cauterize.secret import Secret

#: Larger files are read in full too, but only up to this many bytes.
MAX_FILE_BYTES = 256 << 20


def scan_tree(root: str | Path, secret: Secret) -> list[Finding]:
    """Every copy of ``secret`` in the regular files under ``root`` (symlinks are not followed)."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"path {root}: no such file or directory")
    matcher = Matcher(secret)
    findings: list[Finding] = []
    for path in _files(root):
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_FILE_BYTES)
        except OSError:
            continue
        for encoding in sorted({match.encoding for match in matcher.scan(data)}):
            findings.append(
                Finding(
                    source="file",
                    location=str(path),
                    path=str(path),
                    encoding=encoding,
                    first_seen=None,  # a file's mtime says when it last changed, not when the key arrived
                    kind="file",
                )
            )
    return findings


def _files(root: Path):
    if root.is_file():
        yield root
        return
    for directory, subdirs, files in os.walk(root, followlinks=False):
        subdirs[:] = [name for name in subdirs if name != ".git"]
        for name in files:
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                yield path
