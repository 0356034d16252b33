"""scan_repo finds the key in every awkward place of a real repository, and attributes each copy."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import cauterize.locate.git as git_scan
from cauterize.errors import GitError
from cauterize.locate.findings import Finding, LocateResult, iso_utc
from cauterize.locate.git import scan_repo
from cauterize.locate.gitcmd import display_name, file_url, is_url
from cauterize.secret import Secret

T0 = 1_600_000_000  # the awkward repository's first commit time (checked below)
DESIGN_FIELDS = {"source", "location", "repo", "commit", "ref", "path", "reachable", "encoding", "first_seen"}


@pytest.fixture(scope="module")
def findings(awkward) -> list[Finding]:
    return scan_repo(awkward.repo.path, awkward.key)


def at(findings: list[Finding], path: str) -> Finding:
    [found] = [finding for finding in findings if finding.path == path]
    return found


def test_file_on_a_side_branch(awkward, findings):
    assert awkward.t0 == T0
    found = at(findings, "side.env")
    assert (found.kind, found.encoding, found.reachable) == ("blob", "raw", True)
    assert found.ref == "refs/heads/side"
    assert found.commit == awkward.commits["side"]
    assert found.first_seen == iso_utc(T0 + 100)
    assert found.location == f"{awkward.repo.path}:side.env@{awkward.commits['side'][:12]}"


def test_file_added_then_deleted(awkward, findings):
    found = at(findings, "config.py")
    assert found.commit == awkward.commits["added"]
    assert (found.reachable, found.ref, found.first_seen) == (True, "refs/heads/main", iso_utc(T0 + 200))


def test_commit_message(awkward, findings):
    [found] = [finding for finding in findings if finding.kind == "commit"]
    assert found.object == found.commit == awkward.commits["message"]
    assert found.location.endswith(f":commit-message@{awkward.commits['message'][:12]}")
    assert (found.path, found.reachable, found.ref) == (None, True, "refs/heads/main")
    assert found.first_seen == iso_utc(T0 + 400)


def test_annotated_tag_message(awkward, findings):
    [found] = [finding for finding in findings if finding.kind == "tag"]
    assert found.ref == "refs/tags/v1.0"
    assert found.commit == awkward.commits["message"]  # the tagged commit
    assert (found.reachable, found.first_seen) == (True, iso_utc(T0 + 500))
    assert ":tag-message@" in found.location


@pytest.mark.parametrize("path", [f"b64/align{n}{suffix}.txt" for n in range(3) for suffix in ("", "-url")])
def test_base64_inside_bigger_files(awkward, findings, path):
    found = at(findings, path)
    assert (found.encoding, found.commit, found.reachable) == ("base64", awkward.commits["base64"], True)


def test_gzip_compressed_file(awkward, findings):
    found = at(findings, "dump.json.gz")
    assert found.encoding == "raw"
    assert found.location.endswith("(inside gzip)")


def test_commit_reset_away_is_dangling_and_unreachable(awkward, findings):
    found = at(findings, "dangling.txt")
    assert (found.commit, found.reachable, found.ref) == (awkward.commits["dangling"], False, None)
    assert found.first_seen == iso_utc(T0 + 700)


def test_commit_kept_only_by_a_reflog_is_unreachable(awkward, findings):
    found = at(findings, "reflog.txt")
    assert (found.commit, found.reachable, found.ref) == (awkward.commits["reflog"], False, None)


def test_stash(awkward, findings):
    found = at(findings, "README.md")
    assert (found.commit, found.ref, found.reachable) == (awkward.commits["stash"], "refs/stash", True)
    assert found.first_seen == iso_utc(T0 + 1000)


def test_key_introduced_by_a_merge_commit(awkward, findings):
    found = at(findings, "merged.txt")
    assert (found.commit, found.ref) == (awkward.commits["merge"], "refs/heads/main")
    assert found.first_seen == iso_utc(T0 + 900)


def test_loose_blob_in_no_commit(awkward, findings):
    [found] = [finding for finding in findings if finding.object == awkward.loose_blob]
    assert (found.kind, found.path, found.commit, found.ref) == ("blob", None, None, None)
    assert (found.reachable, found.first_seen) == (False, None)


def test_nothing_else_and_never_the_other_key(awkward, findings):
    assert len(findings) == 16
    assert all(finding.path != "other.txt" for finding in findings)
    # The other key is there, and found when searched for: the matcher tells them apart.
    assert [finding.path for finding in scan_repo(awkward.repo.path, awkward.other)] == ["other.txt"]


def test_findings_follow_the_locate_contract(awkward, findings):
    for finding in findings:
        data = finding.to_dict()
        assert set(data) == DESIGN_FIELDS | {"object", "kind"}
        assert Finding.from_dict(json.loads(json.dumps(data))) == finding
        assert awkward.key.reveal() not in json.dumps(data)
    result = LocateResult(awkward.key.fingerprint, findings, [str(awkward.repo.path)], [])
    assert result.exposure_start == iso_utc(T0 + 100)
    assert result.to_dict()["findings"][0]["source"] == "git"
    assert LocateResult.from_dict(result.to_dict()) == result


def test_small_reads_give_the_same_findings(awkward, findings, monkeypatch):
    """Objects and keys cut across stream reads are stitched back together."""
    monkeypatch.setattr(git_scan, "CHUNK", 61)
    assert scan_repo(awkward.repo.path, awkward.key) == findings


def test_local_scan_is_read_only(awkward):
    def snapshot() -> dict:
        git_dir = awkward.repo.path / ".git"
        return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in git_dir.rglob("*") if p.is_file()}

    before = snapshot()
    scan_repo(awkward.repo.path, awkward.key)
    assert snapshot() == before


def test_key_never_on_a_command_line(awkward, monkeypatch):
    seen: list[list[str]] = []
    real = subprocess.Popen

    class Recording(real):
        def __init__(self, args, *rest, **kwargs):
            seen.append([str(arg) for arg in args])
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    assert scan_repo(awkward.repo.path, awkward.key)
    assert seen
    forms = [form.decode() for _, form in git_scan.Matcher(awkward.key).forms]
    assert not [arg for argv in seen for arg in argv for form in forms if form in arg]


def test_url_is_mirror_cloned_and_cleaned_up(awkward, tmp_path):
    url = file_url(awkward.repo.path)
    found = scan_repo(url, awkward.key, workdir=tmp_path)
    paths = {finding.path for finding in found}
    # A clone gets what a remote serves: every ref, no dangling or reflog-only objects.
    assert {"side.env", "config.py", "merged.txt", "README.md"} <= paths
    assert not {"dangling.txt", "reflog.txt"} & paths
    assert awkward.loose_blob not in {finding.object for finding in found}
    assert {finding.repo for finding in found} == {url}
    assert list(tmp_path.iterdir()) == []


def test_empty_repository(new_repo, key):
    assert scan_repo(new_repo("empty").path, key) == []


def test_not_a_repository(tmp_path, key):
    with pytest.raises(GitError) as caught:
        scan_repo(tmp_path, key)
    assert str(tmp_path) in caught.value.message
    with pytest.raises(GitError, match="is not a directory"):
        scan_repo(tmp_path / "missing", key)


def test_clone_failure_names_the_repo_not_the_key(tmp_path, key):
    url = (tmp_path / "nowhere.git").as_uri()
    with pytest.raises(GitError) as caught:
        scan_repo(url, key, workdir=tmp_path / "work")
    assert caught.value.message.startswith(f"git clone of {url} failed:")
    assert key.reveal() not in caught.value.one_line()
    assert list((tmp_path / "work").iterdir()) == []


def test_urls_and_credentials():
    assert is_url("https://github.com/org/app.git") and is_url("git@github.com:org/app.git")
    assert is_url("file:///srv/app.git") and not is_url("/srv/app") and not is_url(Path("repo"))
    assert display_name("https://user:token@example.com/org/app.git") == "https://example.com/org/app.git"
    assert display_name("/srv/app") == "/srv/app"


def test_finding_rejects_values_outside_the_contract():
    with pytest.raises(ValueError):
        Finding(source="ftp", location="x")
    with pytest.raises(ValueError):
        Finding(source="git", location="x", encoding="rot13")
    with pytest.raises(ValueError):
        Finding(source="git", location="x", first_seen="yesterday")
    assert LocateResult("sha256:0").exposure_start is None


def test_same_blob_at_two_paths_gives_two_findings(new_repo, new_key):
    value = new_key()
    repo = new_repo()
    first = repo.commit({"a/.env": f"K={value}\n"}, "a", when=T0)
    second = repo.commit({"b/.env": f"K={value}\n"}, "b", when=T0 + 60)
    found = scan_repo(repo.path, Secret(value))
    assert [(f.path, f.commit, f.first_seen) for f in found] == [
        ("a/.env", first, iso_utc(T0)), ("b/.env", second, iso_utc(T0 + 60))
    ]
    assert len({f.object for f in found}) == 1
