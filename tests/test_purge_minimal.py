"""Purge changes only what held the key (issue 18): commits before the leak keep their ids and
their SSH signatures, tags on them keep theirs, the remote's ref namespace is the same set before
and after (refs/remotes/* included) except refs whose own name held the key, which are renamed;
a key in a file name, a branch name and a tag name is gone from a fresh clone; commits that
became empty are reported as dropped.

Real git, real git-filter-repo, real ``ssh-keygen`` signatures; keys generated at test time.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from test_purge import T0, commit, git, refs

from cauterize.errors import PurgeError
from cauterize.locate.gitcmd import file_url
from cauterize.purge import purge_repo
from cauterize.secret import Secret

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen signs the commits")


def _signing(tmp_path: Path) -> dict[str, str]:
    key = tmp_path / "signing"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dev", "-f", str(key)], check=True)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"dev@example.invalid {(tmp_path / 'signing.pub').read_text()}")
    return {"GIT_CONFIG_COUNT": "4", "GIT_CONFIG_KEY_0": "gpg.format", "GIT_CONFIG_VALUE_0": "ssh",
            "GIT_CONFIG_KEY_1": "user.signingkey", "GIT_CONFIG_VALUE_1": str(key),
            "GIT_CONFIG_KEY_2": "gpg.ssh.allowedSignersFile", "GIT_CONFIG_VALUE_2": str(allowed),
            "GIT_CONFIG_KEY_3": "commit.gpgsign", "GIT_CONFIG_VALUE_3": "true"}


@pytest.fixture
def world(tmp_path):
    """Signed history before the leak, a side branch that never sees it, origin refs stored in the
    remote, then the leak: raw, in a file name, in a binary-only commit, a branch and a tag name."""
    value = "sk-proj-" + secrets.token_urlsafe(48)
    sign = _signing(tmp_path)
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    git(work, "remote", "add", "origin", str(remote))
    c = {}
    c["one"] = commit(work, {"README.md": "# app\n"}, "initial", T0, env=sign)
    c["two"] = commit(work, {"app.py": "print('hi')\n"}, "app", T0 + 60, env=sign)
    git(work, "tag", "-s", "v1", "-m", "release 1", when=T0 + 70, env=sign)
    git(work, "tag", "light", c["one"])
    git(work, "tag", "-a", f"t-{value}", "-m", "tag named with the key", c["one"], when=T0 + 80)
    git(work, "checkout", "-q", "-b", "feature")
    c["feature"] = commit(work, {"feature.py": "x = 1\n"}, "feature", T0 + 90, env=sign)
    git(work, "checkout", "-q", "main")
    c["leak"] = commit(work, {"config.py": f"API_KEY = '{value}'\n", f"leak-{value}.txt": "notes\n"},
                       "add config", T0 + 120, env=sign)
    c["binary"] = commit(work, {"blob.bin": b"\0\1" + value.encode() + b"\0"}, "add a binary", T0 + 180, env=sign)
    c["after"] = commit(work, {"more.py": "y = 2\n"}, "more", T0 + 240, env=sign)
    git(work, "branch", f"backup-{value}")
    git(work, "push", "-q", "origin", "--all")
    git(work, "push", "-q", "origin", "--tags")
    # What a mirror of a mirror carries: remote-tracking refs, stored in the shared remote itself.
    git(work, "push", "-q", "origin", "refs/heads/main:refs/remotes/origin/main",
        "refs/heads/feature:refs/remotes/origin/feature")
    return {"remote": remote, "key": Secret(value), "value": value, "commits": c, "sign": sign,
            "before": refs(remote)}


def _fresh_clone_holds(remote: Path, value: str, tmp_path: Path) -> list[str]:
    """Every place a fresh mirror clone shows the key: ref names, paths, object contents."""
    clone = tmp_path / "fresh.git"
    shutil.rmtree(clone, ignore_errors=True)
    git(tmp_path, "clone", "-q", "--mirror", file_url(remote), str(clone))
    found = [f"ref {name}" for name in refs(clone) if value in name]
    listing = git(clone, "rev-list", "--objects", "--all").splitlines()
    found += [f"path of {line.split()[0]}" for line in listing if value in line]
    ids = "\n".join(line.split()[0] for line in listing) + "\n"
    raw = subprocess.run(["git", "cat-file", "--batch"], cwd=clone, input=ids.encode(), capture_output=True,
                         check=True).stdout
    if value.encode() in raw:
        found.append("an object's content")
    return found


def test_purge_changes_only_what_held_the_key(world, tmp_path):
    c, value, before = world["commits"], world["value"], world["before"]
    result = purge_repo(world["remote"], world["key"], workdir=tmp_path / "wd", push=True)
    after = refs(world["remote"])
    assert (result.pushed, result.verified, result.error) == (True, True, None)
    # Commits before the leak and the side branch keep their ids, their signatures still verify.
    for name in ("one", "two", "feature"):
        assert git(world["remote"], "cat-file", "-e", c[name]) == ""
        git(world["remote"], "verify-commit", c[name], env=world["sign"])
    for ref in ("refs/tags/v1", "refs/tags/light", "refs/heads/feature", "refs/remotes/origin/feature"):
        assert after[ref] == before[ref], ref
    git(world["remote"], "verify-tag", "v1", env=world["sign"])
    # Only the leak and what descends from it changed: 3 commits, one of them dropped (only a binary).
    assert set(result.commit_map) == {c["leak"], c["binary"], c["after"]}
    assert result.commits_dropped == [c["binary"]]
    assert result.commits_total == 6 and result.commits_untouched == 3 and result.commits_holding == 2
    assert result.signed_commits_unsigned == 3
    assert "3 of 6 commits change: 2 hold a copy of the key, 1 descend from one" in result.why
    # The ref namespace: the same set of names, but for the two whose names held the key.
    fp = world["key"].fingerprint.partition(":")[2]
    renamed = {f"refs/heads/backup-{value}": f"refs/heads/backup-REMOVED-{fp}",
               f"refs/tags/t-{value}": f"refs/tags/t-REMOVED-{fp}"}
    assert set(after) == {renamed.get(name, name) for name in before}
    assert after["refs/remotes/origin/main"] != before["refs/remotes/origin/main"]  # it held the leak: rewritten
    assert {r["new"] for r in result.refs_renamed} == set(renamed.values())
    assert all(value not in r["old"] for r in result.refs_renamed)
    assert result.refs_kept == 4  # v1, light, feature, origin/feature
    assert {r["ref"] for r in result.refs_updated} == {"refs/heads/main", "refs/remotes/origin/main",
                                                      *(name.replace(value, f"[{world['key'].fingerprint}]")
                                                        for name in renamed), *renamed.values()}
    # The renamed tag keeps its target (a commit before the leak) and its message.
    assert git(world["remote"], "rev-parse", f"refs/tags/t-REMOVED-{fp}^{{commit}}") == c["one"]
    assert git(world["remote"], "for-each-ref", "--format=%(contents:subject)",
               f"refs/tags/t-REMOVED-{fp}") == "tag named with the key"
    # The file named with the key is renamed, its content kept.
    tree = git(world["remote"], "ls-tree", "--name-only", "main").split()
    assert f"leak-REMOVED-{fp}.txt" in tree and "blob.bin" not in tree
    assert _fresh_clone_holds(world["remote"], value, tmp_path) == []
    assert value not in repr(result.to_dict())


def test_dry_run_says_what_would_change_and_why(world, tmp_path):
    result = purge_repo(world["remote"], world["key"], workdir=tmp_path / "wd", push=False)
    assert refs(world["remote"]) == world["before"]
    assert not result.pushed and result.signed_commits_unsigned == 3 and result.signed_tags_unsigned == 0
    assert result.why.startswith("3 of 6 commits change")
    assert any("signed commit(s)" in item and "lose their signature" in item for item in result.action_items)
    assert any("became empty" in item for item in result.action_items)
    assert any("renamed" in item for item in result.action_items)


def test_a_key_named_ref_that_survives_fails_the_verification(world, tmp_path, monkeypatch):
    from cauterize import purge_refs

    monkeypatch.setattr(purge_refs, "clean_refs", lambda *args, **kwargs: ([], []))
    with pytest.raises(PurgeError, match="still hold the key after the rewrite; nothing was pushed") as raised:
        purge_repo(world["remote"], world["key"], workdir=tmp_path / "wd", push=True)
    assert world["value"] not in str(raised.value)
    assert refs(world["remote"]) == world["before"]
    assert list((tmp_path / "wd").iterdir()) == []  # no pre-purge mirror left behind


def test_a_tag_named_with_the_key_on_a_rewritten_commit_is_reported_redacted(world, tmp_path):
    value = world["value"]
    work = tmp_path / "work"
    git(work, "tag", "-a", f"r-{value}", "-m", "release", "main")
    git(work, "push", "-q", "origin", f"refs/tags/r-{value}")
    result = purge_repo(world["remote"], world["key"], workdir=tmp_path / "wd", push=True)
    assert result.verified and value not in repr(result.to_dict())
    assert f"refs/tags/r-[{world['key'].fingerprint}]" in result.tags_rewritten
    assert _fresh_clone_holds(world["remote"], value, tmp_path) == []
