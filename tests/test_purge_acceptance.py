"""Issue 6's acceptance, through the real CLI: ``cauterize purge --key-env K --repo URL --push --yes
--json`` on the locate issue's awkward repository pushed to a local bare remote.

The remote serves ``refs/pull/1/head`` (pointing at the unmerged branch that holds the key) but
refuses pushes to it (``receive.hideRefs``), as a forge does. So the first push is incomplete
(exit 3, the ref reported as refused); once the forge's support deletes that ref, as the action
item asks, a fresh mirror clone holds no copy in any form, the decoy is untouched, every file
that never held the key is byte-identical at every ref tip, and a second purge verifies clean
(exit 0). A dry run changes nothing on the remote.

The copies are searched for by the test itself, independently of cauterize's matcher: in every
object of ``git cat-file --batch-all-objects --batch``, gzip and zip blobs decompressed, base64
runs decoded at every alignment. Keys are generated at test time; no key-shaped literal is here;
the key reaches git through stdin and files, and the CLI only through its environment.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import json
import re
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from awkward_repo import T0, Awkward, build, fake_key, git, git_bytes, git_env

from cauterize.errors import PurgeError
from cauterize.locate.gitcmd import file_url
from cauterize.purge import purge_repo
from cauterize.secret import Secret

ENTRY = (  # the real CLI; registers `purge` from cli_purge if cli.py does not yet
    "import cauterize.cli as cli\n"
    "if 'purge' not in {c.name or c.callback.__name__ for c in cli.app.registered_commands}:\n"
    "    from cauterize.cli_purge import purge; cli.app.command('purge')(purge)\n"
    "cli.entry()"
)


# ---- an independent search for every copy ---------------------------------------------------------

_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{24,}={0,2}")  # with its padding: a key need not be 3n bytes


def copies_in(data: bytes, value: bytes) -> list[str]:
    """How ``value`` occurs in ``data``: raw, in a base64 run (any alignment, either alphabet),
    inside a gzip stream or a zip member (recursively)."""
    found = []
    if value in data:
        found.append("raw")
    for run in _BASE64_RUN.findall(data):
        for skip in range(4):
            chunk = run[skip:]
            chunk = chunk[: len(chunk) - len(chunk) % 4]
            for altchars in (None, b"-_"):
                try:
                    decoded = base64.b64decode(chunk, altchars=altchars, validate=False)
                except (binascii.Error, ValueError):
                    continue
                if value in decoded:
                    found.append("base64")
    if data.startswith(b"\x1f\x8b"):
        try:
            found += [f"gzip!{kind}" for kind in copies_in(gzip.decompress(data), value)]
        except (OSError, EOFError, zlib.error):
            found.append("unreadable gzip")
    if data.startswith(b"PK\x03\x04"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in archive.namelist():
                found += [f"zip:{name}!{kind}" for kind in copies_in(archive.read(name), value)]
    return found


def objects(repo: Path) -> dict[str, tuple[str, bytes]]:
    """Every object of ``repo``: ``{id: (type, content)}``."""
    out = git_bytes(repo, "cat-file", "--batch-all-objects", "--batch")
    found, pos = {}, 0
    while pos < len(out):
        newline = out.index(b"\n", pos)
        oid, kind, size = out[pos:newline].decode().split()
        start = newline + 1
        found[oid] = (kind, out[start:start + int(size)])
        pos = start + int(size) + 1
    return found


def copies_in_repo(repo: Path, value: str) -> dict[str, list[str]]:
    hits = {}
    for oid, (kind, content) in objects(repo).items():
        if kind != "tree" and (where := copies_in(content, value.encode())):
            hits[f"{kind} {oid}"] = where
    return hits


def fresh_mirror(remote: Path, dest: Path) -> Path:
    git(dest.parent, "clone", "-q", "--mirror", file_url(remote), str(dest))
    return dest


def tip_files(repo: Path) -> dict[str, dict[str, str]]:
    """``{ref: {path: blob id}}`` of every ref whose tip is (or peels to) a commit."""
    files = {}
    for line in git(repo, "for-each-ref", "--format=%(refname) %(objecttype) %(*objecttype)").splitlines():
        ref, kind, peeled = (line.split() + [""])[:3]
        if "commit" not in (kind, peeled):
            continue
        listing = git(repo, "ls-tree", "-r", f"{ref}^{{commit}}")
        files[ref] = {entry.split("\t", 1)[1]: entry.split()[2] for entry in listing.splitlines()}
    return files


# ---- the scenario ---------------------------------------------------------------------------------


def cauterize(*args: str, key: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[bytes]:
    env = {**git_env(), "K": key}
    return subprocess.run([sys.executable, "-c", ENTRY, *args], env=env, capture_output=True, stdin=stdin,
                          timeout=240, check=False)


def report(done: subprocess.CompletedProcess[bytes], code: int) -> dict:
    assert done.returncode == code, done.stderr.decode(errors="replace")
    return json.loads(done.stdout)


@dataclass
class Scenario:
    world: Awkward
    remote: Path
    before_refs: str
    before_objects: set[str]
    before_files: dict[str, dict[str, str]]
    before_copies: dict[str, list[str]]
    dry_run: subprocess.CompletedProcess[bytes]
    dry_run_text: subprocess.CompletedProcess[bytes]
    after_dry_run_refs: str
    after_dry_run_objects: set[str]
    refused_without_yes: subprocess.CompletedProcess[bytes]
    first_push: subprocess.CompletedProcess[bytes]
    second_push: subprocess.CompletedProcess[bytes]
    clone: Path


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Scenario:
    root = tmp_path_factory.mktemp("purge-acceptance")
    world = build(root / "work")
    remote = root / "remote.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(remote))
    git(world.path, "remote", "add", "origin", str(remote))
    git(world.path, "push", "-q", "origin", "--all")
    git(world.path, "push", "-q", "origin", "--tags")
    git(world.path, "push", "-q", "origin", "refs/notes/commits")
    git(remote, "update-ref", "refs/pull/1/head", world.commits["branch"])  # a pull request from wip
    git(remote, "config", "receive.hideRefs", "refs/pull")  # the forge refuses pushes to it
    probe = fresh_mirror(remote, root / "before.git")
    before_refs, before_objects = git(remote, "for-each-ref"), set(objects(remote))
    before_files, before_copies = tip_files(probe), copies_in_repo(probe, world.value)
    key = world.value
    # A dry run, given the working clone: it stands for its origin, and nothing is pushed.
    dry_run = cauterize("purge", "--key-env", "K", "--repo", str(world.path), "--json", key=key)
    dry_run_text = cauterize("purge", "--key-env", "K", "--repo", str(remote), key=key)
    after_dry_run_refs, after_dry_run_objects = git(remote, "for-each-ref"), set(objects(remote))
    refused_without_yes = cauterize("purge", "--key-env", "K", "--repo", file_url(remote), "--push", key=key)
    first_push = cauterize("purge", "--key-env", "K", "--repo", file_url(remote), "--push", "--yes", "--json", key=key)
    git(remote, "update-ref", "-d", "refs/pull/1/head")  # what the forge's support does when asked
    second_push = cauterize("purge", "--key-env", "K", "--repo", file_url(remote), "--push", "--yes", "--json",
                            key=key)
    return Scenario(
        world, remote, before_refs, before_objects, before_files, before_copies, dry_run, dry_run_text,
        after_dry_run_refs, after_dry_run_objects, refused_without_yes, first_push, second_push,
        clone=fresh_mirror(remote, root / "after.git"),
    )


def test_the_remote_held_every_kind_of_copy_before(scenario):
    kinds = {kind for where in scenario.before_copies.values() for kind in where}
    assert {"raw", "base64", "gzip!raw", "zip:config/prod.env!raw"} <= kinds
    held = {key.split()[0] for key in scenario.before_copies}
    assert held == {"blob", "commit", "tag"}  # files and notes, commit messages, the tag message


def test_a_dry_run_changes_nothing_on_the_remote(scenario):
    document = report(scenario.dry_run, 0)
    assert document["dry_run"] is True and document["fingerprint"] == Secret(scenario.world.value).fingerprint
    (result,) = document["repos"]
    assert result["repo"] == str(scenario.remote) and not result["pushed"] and not result["verified"]
    assert {"refs/heads/main", "refs/heads/wip", "refs/tags/v1.0", "refs/notes/commits",
            "refs/pull/1/head"} <= set(result["refs_changed"])
    assert result["first_changed_commits"] == [scenario.world.commits["added"]]
    assert any("re-clone it" in item and str(scenario.world.path) in item for item in result["action_items"])
    assert scenario.after_dry_run_refs == scenario.before_refs
    assert scenario.after_dry_run_objects == scenario.before_objects
    text = scenario.dry_run_text
    assert text.returncode == 0, text.stderr.decode(errors="replace")
    out = text.stdout.decode()
    for expected in ("dry run, nothing pushed", "refs changed (", "commits rewritten: ", "file removed from history: ",
                     "action: "):
        assert expected in out


def test_push_needs_yes_off_a_terminal(scenario):
    done = scenario.refused_without_yes
    assert done.returncode == 2 and b"--yes" in done.stderr
    assert not done.stdout


def test_the_first_push_reports_the_refused_pull_request_ref(scenario):
    (result,) = report(scenario.first_push, 3)["repos"]
    assert result["pushed"] and not result["verified"] and result["error"] is None
    assert result["refused_refs"] == ["refs/pull/1/head"]
    assert any("refs/pull/1/head was refused" in item for item in result["leftovers"])
    assert any("(ref refs/pull/1/head)" in item for item in result["leftovers"])
    assert any("forge's support" in item and "refs/pull/1/head" in item for item in result["action_items"])
    removed = " ".join(result["files_removed"])
    # The gzip'd log is rewritten whole (decompressed, scrubbed, recompressed); the zip is removed.
    assert "logs/app.log.gz" not in removed
    assert "dist/config.zip" in removed and "zip:config/prod.env" in removed
    assert len(result["blobs_removed"]) == 1
    commit_map = result["commit_map"]
    assert result["commits_rewritten"] == len(commit_map) > 0
    assert scenario.world.commits["decoy"] not in commit_map and scenario.world.commits["root"] not in commit_map
    assert commit_map[scenario.world.commits["zip"]] is None  # only added the zip: now empty, dropped
    for words in ("re-cloned", "Forks", "CI caches", "cached views"):
        assert any(words in item for item in result["action_items"]), words


def test_a_fresh_mirror_clone_holds_no_copy_in_any_form(scenario):
    (result,) = report(scenario.second_push, 0)["repos"]
    assert result["verified"] and result["refs_changed"] == [] and result["refused_refs"] == []
    assert copies_in_repo(scenario.clone, scenario.world.value) == {}
    marker = f"***REMOVED {Secret(scenario.world.value).fingerprint}***".encode()
    marked = {kind for kind, content in objects(scenario.clone).values() if marker in content}
    assert marked == {"blob", "commit", "tag"}
    refs = git(scenario.clone, "for-each-ref", "--format=%(refname)").split()
    assert {"refs/heads/main", "refs/heads/wip", "refs/tags/v1.0", "refs/notes/commits"} <= set(refs)
    assert "refs/pull/1/head" not in refs


def test_the_decoy_is_untouched(scenario):
    world = scenario.world
    assert git(scenario.clone, "merge-base", "--is-ancestor", world.commits["decoy"], "refs/heads/main") == ""
    assert world.decoy in git(scenario.clone, "log", "-1", "--format=%B", world.commits["decoy"])
    after = tip_files(scenario.clone)
    assert after["refs/heads/main"]["decoy.env"] == scenario.before_files["refs/heads/main"]["decoy.env"]
    assert git(scenario.clone, "cat-file", "blob", after["refs/heads/main"]["decoy.env"]) == f"OPENAI_API_KEY={world.decoy}"


def test_every_file_that_never_held_the_key_is_byte_identical_at_every_ref_tip(scenario):
    before, after = scenario.before_files, tip_files(scenario.clone)
    held = {oid for key, where in scenario.before_copies.items() if key.startswith("blob ") for oid in [key.split()[1]]}
    compared = 0
    for ref, files in before.items():
        if ref == "refs/pull/1/head":
            continue  # deleted by the forge's support
        for path, blob in files.items():
            if blob in held:
                assert after[ref].get(path) != blob, f"{ref}:{path} still holds the key"
            else:
                assert after[ref].get(path) == blob, f"{ref}:{path} changed"
                compared += 1
    assert compared == 18  # README.md, decoy.env and the four assets at main, wip and v1.0


def test_stdout_and_stderr_never_show_the_key(scenario):
    for done in (scenario.dry_run, scenario.dry_run_text, scenario.refused_without_yes, scenario.first_push,
                 scenario.second_push):
        assert scenario.world.value.encode() not in done.stdout + done.stderr


def test_notes_follow_their_rewritten_commits(tmp_path):
    value = fake_key()
    work, remote = tmp_path / "work", tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / "a.env").write_text(f"KEY={value}\n")
    git(work, "add", "a.env")
    git(work, "commit", "-q", "-m", "leak", when=T0)
    (work / "b.txt").write_text("more\n")
    git(work, "add", "b.txt")
    git(work, "commit", "-q", "-m", "more", when=T0 + 60)
    old = git(work, "rev-parse", "HEAD")
    git(work, "notes", "add", "-m", "reviewed by ops", old, when=T0 + 120)
    git(work, "push", "-q", str(remote), "main", "refs/notes/commits")
    result = purge_repo(remote, Secret(value), workdir=tmp_path / "wd", push=True)
    assert result.verified and result.notes_moved == 1 and "refs/notes/commits" in result.refs_changed
    new = git(remote, "rev-parse", "main")
    assert new == result.commit_map[old] != old
    assert git(remote, "notes", "show", new) == "reviewed by ops"


def test_a_copy_the_rewrite_cannot_reach_is_reported_alone_and_nothing_is_pushed(tmp_path):
    value = fake_key()
    work, remote = tmp_path / "work", tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / "a.env").write_text(f"KEY={value}\n")
    git(work, "add", "a.env")
    git(work, "commit", "-q", "-m", "leak", when=T0)
    # A tag of a bare blob holding the key: no commit holds it, so no rewrite reaches it.
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=work, input=f"{value}\n".encode(),
                          capture_output=True, check=True, env=git_env()).stdout.decode().strip()
    git(work, "tag", "bare-blob", blob)
    git(work, "push", "-q", str(remote), "main", "refs/tags/bare-blob")
    before = git(remote, "for-each-ref")
    with pytest.raises(PurgeError) as caught:
        purge_repo(remote, Secret(value), workdir=tmp_path / "wd", push=True)
    # Only that blob: the old history left in the mirror is not counted.
    assert f"1 copy of {Secret(value).fingerprint} remain" in caught.value.message
    assert "blob@" in caught.value.message and value not in caught.value.message
    assert git(remote, "for-each-ref") == before


def test_each_repository_is_reported_and_one_failure_makes_it_incomplete(tmp_path):
    clean, remote = tmp_path / "clean", tmp_path / "clean.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(tmp_path, "init", "-q", "-b", "main", str(clean))
    (clean / "README.md").write_text("# nothing to see\n")
    git(clean, "add", "README.md")
    git(clean, "commit", "-q", "-m", "initial", when=T0)
    git(clean, "push", "-q", str(remote), "main")
    before = git(remote, "for-each-ref")
    done = cauterize("purge", "--key-env", "K", "--repo", str(remote), "--repo", str(tmp_path / "missing"),
                     "--push", "--yes", "--json", key=fake_key())
    first, second = report(done, 3)["repos"]
    assert first["verified"] and not first["pushed"] and first["refs_changed"] == [] and first["error"] is None
    assert second["repo"] == str(tmp_path / "missing") and "is not a directory" in second["error"]
    assert git(remote, "for-each-ref") == before
    assert b"not done: " + str(tmp_path / "missing").encode() in done.stderr
