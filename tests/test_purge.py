"""purge_repo against real git and real git-filter-repo: a bare remote and a clone that leaked a key.

Keys are generated at test time; no key-shaped literal is written in this file.
"""

from __future__ import annotations

import gzip
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from cauterize import purge, purge_filter
from cauterize.errors import GitError, PurgeError
from cauterize.locate.git import scan_repo
from cauterize.locate.gitcmd import file_url
from cauterize.locate.matcher import Matcher
from cauterize.purge import purge_repo
from cauterize.secret import Secret

T0 = 1_700_000_000


def git(cwd: Path, *args: str, when: int | None = None, env: dict | None = None) -> str:
    full = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_AUTHOR_NAME="Dev",
                GIT_AUTHOR_EMAIL="dev@example.invalid", GIT_COMMITTER_NAME="Dev",
                GIT_COMMITTER_EMAIL="dev@example.invalid")
    full.update(env or {})
    if when is not None:
        full["GIT_AUTHOR_DATE"] = full["GIT_COMMITTER_DATE"] = f"@{when} +0000"
    done = subprocess.run(["git", *args], cwd=cwd, env=full, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode().strip()


def commit(work: Path, files: dict[str, str | bytes | None], message: str, when: int, **kwargs) -> str:
    for name, content in files.items():
        if content is None:
            git(work, "rm", "-q", name)
        else:
            (work / name).write_bytes(content.encode() if isinstance(content, str) else content)
            git(work, "add", name)
    git(work, "commit", "-q", "--allow-empty", "-m", message, when=when, **kwargs)
    return git(work, "rev-parse", "HEAD")


def refs(repo: Path) -> dict[str, str]:
    lines = git(repo, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
    return dict(line.split(" ") for line in lines)


@dataclass
class Leak:
    remote: Path
    work: Path
    key: Secret
    commits: dict[str, str]

    def push_all(self) -> None:
        git(self.work, "push", "-q", "origin", "--all")
        git(self.work, "push", "-q", "origin", "--tags")


@pytest.fixture
def leak(tmp_path) -> Leak:
    """A bare remote whose history holds a key: added then removed, in a commit message, in a tag
    message and on a second branch."""
    value = "sk-proj-" + secrets.token_urlsafe(48)
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    git(work, "remote", "add", "origin", str(remote))
    c = {}
    c["readme"] = commit(work, {"README.md": "# app\n"}, "initial", T0)
    c["added"] = commit(work, {"config.py": f"API_KEY = '{value}'\n"}, "add config", T0 + 60)
    c["removed"] = commit(work, {"config.py": None}, "remove config", T0 + 120)
    c["message"] = commit(work, {}, f"note: old key was {value}", T0 + 180)
    git(work, "tag", "-a", "v1", "-m", f"release; key {value}", when=T0 + 240)
    git(work, "checkout", "-q", "-b", "dev")
    c["dev"] = commit(work, {"dev.env": f"OPENAI_API_KEY={value}\n"}, "dev settings", T0 + 300)
    git(work, "checkout", "-q", "main")
    leak = Leak(remote, work, Secret(value), c)
    leak.push_all()
    return leak


@pytest.fixture
def recorded_argv(monkeypatch) -> list[list[str]]:
    """Every argv of every child process cauterize starts during the test."""
    seen: list[list[str]] = []
    real = subprocess.Popen

    class Recording(real):
        def __init__(self, args, *rest, **kwargs):
            seen.append([os.fspath(arg) for arg in args])
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    return seen


def test_dry_run_rewrites_a_mirror_and_changes_nothing_on_the_remote(leak, tmp_path):
    before = refs(leak.remote)
    result = purge_repo(leak.remote, leak.key, workdir=tmp_path / "wd", push=False)
    assert refs(leak.remote) == before
    assert (result.pushed, result.verified, result.refused_refs) == (False, False, [])
    assert result.refs_changed == ["refs/heads/dev", "refs/heads/main", "refs/tags/v1"]
    assert result.commits_rewritten == 4  # every commit from the one that added the key
    assert result.first_changed_commits == [leak.commits["added"]]
    assert any("--push" in item for item in result.action_items)
    assert scan_repo(leak.remote, leak.key)  # still there: nothing was pushed
    assert list((tmp_path / "wd").iterdir()) == []


def test_push_rewrites_the_remote_and_a_fresh_clone_is_clean(leak, tmp_path, recorded_argv, monkeypatch):
    written: list[Path] = []
    real_write = purge_filter.write_private
    monkeypatch.setattr(purge_filter, "write_private", lambda path, data: (written.append(path), real_write(path, data)))
    work_refs = refs(leak.work)

    result = purge_repo(leak.remote, leak.key, workdir=tmp_path / "wd", push=True)

    assert (result.pushed, result.verified, result.refused_refs) == (True, True, [])
    assert result.refs_changed == ["refs/heads/dev", "refs/heads/main", "refs/tags/v1"]
    assert scan_repo(file_url(leak.remote), leak.key, workdir=tmp_path / "check") == []
    # The key is replaced by the marker naming its fingerprint, in files and messages alike.
    marker = f"***REMOVED {leak.key.fingerprint}***"
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--mirror", file_url(leak.remote), str(clone))
    history = git(clone, "log", "--all", "-p", "--format=%B")
    assert history.count(marker) >= 4  # added + removed lines of config.py, the message, dev.env
    assert marker in git(clone, "for-each-ref", "--format=%(contents)", "refs/tags/v1")
    # The expressions file held the key: it is gone, and so is everything else purge wrote.
    assert written and not any(path.exists() for path in written)
    assert list((tmp_path / "wd").iterdir()) == []
    # No child process ever saw the key, in any encoding, on its command line.
    forms = [form.decode() for _, form in Matcher(leak.key).forms]
    assert recorded_argv and not [arg for argv in recorded_argv for arg in argv for form in forms if form in arg]
    # The user's own clone is never touched; re-cloning it is an action item.
    assert refs(leak.work) == work_refs
    assert any("re-cloned" in item for item in result.action_items)
    assert any("Forks" in item for item in result.action_items)
    assert any("garbage-collected" in item for item in result.leftovers)


def test_refs_the_remote_refuses_are_reported_not_fatal(leak, tmp_path):
    # Forges serve refs/pull/* but refuse pushes to them; receive.hideRefs does the same here.
    git(leak.remote, "update-ref", "refs/pull/1/head", leak.commits["dev"])
    git(leak.remote, "config", "receive.hideRefs", "refs/pull")
    result = purge_repo(leak.remote, leak.key, workdir=tmp_path / "wd", push=True)
    assert result.pushed and result.refused_refs == ["refs/pull/1/head"]
    assert not result.verified
    assert any(item.startswith("refs/pull/1/head was refused") for item in result.leftovers)
    assert any("(ref refs/pull/1/head)" in item for item in result.leftovers)
    assert refs(leak.remote)["refs/heads/main"] != leak.commits["message"]


def test_binary_and_compressed_copies_are_removed_from_history(leak, tmp_path):
    value = leak.key.reveal()
    commit(leak.work, {"dump.json.gz": gzip.compress(value.encode()), "app.bin": b"\0\1" + value.encode()},
           "binaries", T0 + 400)
    leak.push_all()
    result = purge_repo(leak.remote, leak.key, workdir=tmp_path / "wd", push=True)
    # The binary file is removed (bytes replaced in place could break its format); the gzip is
    # rewritten whole: it still decompresses, to the placeholder.
    assert result.verified and len(result.blobs_removed) == 1 and "app.bin" in result.files_removed[0]
    assert any("binary or compressed" in item for item in result.action_items)
    blob = git(leak.remote, "rev-parse", "main:dump.json.gz")
    data = subprocess.run(["git", "cat-file", "blob", blob], cwd=leak.remote, capture_output=True, check=True).stdout
    assert gzip.decompress(data) == f"***REMOVED {leak.key.fingerprint}***".encode()


def test_a_key_in_an_author_name_is_replaced_by_the_name_placeholder(leak, tmp_path):
    value = leak.key.reveal()
    commit(leak.work, {}, "harmless message", T0 + 500, env={"GIT_AUTHOR_NAME": value})
    leak.push_all()
    result = purge_repo(leak.remote, leak.key, workdir=tmp_path / "wd", push=True)
    assert result.verified
    fp = leak.key.fingerprint.partition(":")[2]
    assert git(leak.remote, "log", "-1", "--format=%an", "main") == f"REMOVED-{fp}"


def test_copy_the_rewrite_cannot_reach_raises_and_pushes_nothing(leak, tmp_path):
    value = leak.key.reveal()
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=leak.work, input=value.encode(),
                          capture_output=True, check=True).stdout.decode().strip()
    git(leak.work, "tag", "bare-blob", blob)  # a tag of a blob: no commit holds it, filter-repo never exports it
    leak.push_all()
    before = refs(leak.remote)
    with pytest.raises(PurgeError) as caught:
        purge_repo(leak.remote, leak.key, workdir=tmp_path / "wd", push=True)
    assert "blob@" in caught.value.message and "nothing was pushed" in caught.value.message
    assert value not in caught.value.one_line()
    assert refs(leak.remote) == before


def test_custom_marker(leak, tmp_path):
    purge_repo(leak.remote, leak.key, workdir=tmp_path / "wd", push=True, marker="[revoked key]")
    assert "[revoked key]" in git(leak.remote, "log", "--all", "--format=%B")
    for bad in ("two\nlines", "a==>b", f"x{leak.key.reveal()}"):
        with pytest.raises(PurgeError):
            purge_repo(leak.remote, leak.key, workdir=tmp_path / "wd", push=False, marker=bad)


def test_working_clone_as_remote_reports_stash_and_checked_out_branch(leak, tmp_path):
    (leak.work / "README.md").write_text(f"# app\n{leak.key.reveal()}\n")
    git(leak.work, "stash", "-q")
    result = purge_repo(leak.work, leak.key, workdir=tmp_path / "wd", push=True)
    assert "refs/heads/main" in result.refused_refs  # git refuses to update a checked-out branch
    # The command that works in a work tree, run there (`git stash clear` needs one).
    assert any(item.startswith("refs/stash of ") and f"`git -C {leak.work} stash clear`" in item
               for item in result.leftovers)
    assert not result.verified


def test_not_a_repository(tmp_path, leak):
    with pytest.raises(GitError, match="is not a git repository"):
        purge_repo(tmp_path, leak.key, workdir=tmp_path / "wd", push=False)
