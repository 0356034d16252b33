"""A key in a name, not in any content: a file name, a directory name, a branch and a tag name.
locate finds each (trees are searched like the rest of the store) and never shows the key."""

from __future__ import annotations

import secrets

from test_purge import T0, commit, git

from cauterize.locate.git import scan_repo
from cauterize.secret import Secret


def test_names_that_hold_the_key_are_found_and_redacted(tmp_path):
    value = "sk-proj-" + secrets.token_urlsafe(48)
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    commit(work, {"README.md": "# app\n"}, "initial", T0)
    (work / f"dir-{value}").mkdir()
    added = commit(work, {f"leak-{value}.txt": "notes\n", f"dir-{value}/a.txt": "a\n"}, "names", T0 + 60)
    git(work, "branch", f"backup-{value}")
    git(work, "tag", f"t-{value}")
    findings = scan_repo(work, Secret(value))
    kinds = sorted((finding.kind, finding.commit) for finding in findings)
    assert kinds == [("path-name", added)] * 3 + [("ref-name", None)] * 2  # the file, the directory, a file in it
    assert all(value not in repr(finding) for finding in findings)
    fingerprint = Secret(value).fingerprint
    assert {finding.path for finding in findings if finding.path} == {
        f"leak-[{fingerprint}].txt", f"dir-[{fingerprint}]", f"dir-[{fingerprint}]/a.txt"}
    assert {finding.ref for finding in findings if finding.kind == "ref-name"} == {
        f"refs/heads/backup-[{fingerprint}]", f"refs/tags/t-[{fingerprint}]"}


def test_a_clean_repository_with_many_trees_has_no_name_finding(tmp_path):
    value = "sk-proj-" + secrets.token_urlsafe(48)
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    for number in range(5):
        (work / f"d{number}").mkdir()
        commit(work, {f"d{number}/f.txt": f"{number}\n"}, f"c{number}", T0 + number)
    assert scan_repo(work, Secret(value)) == []
