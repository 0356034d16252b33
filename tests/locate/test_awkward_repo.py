"""Issue 5's acceptance repository, built with real git: the key hidden in every awkward place,
and a decoy key of the same shape that must never be reported. Both ``scan_repo`` and
``cauterize locate --key-env K --git REPO --json`` must report every placement with the commit
time of the commit (or tag) that first exposed it."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import secrets
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cauterize.locate.findings import iso_utc
from cauterize.locate.git import scan_repo
from cauterize.secret import Secret

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z
Row = dict[str, Any]


def fake_key() -> str:
    return "sk-proj-" + secrets.token_urlsafe(48)


def git(repo: Path, *args: str, when: int | None = None, input: bytes | None = None) -> str:
    env = {key: item for key, item in os.environ.items() if not key.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_AUTHOR_NAME="Dev",
               GIT_AUTHOR_EMAIL="dev@example.invalid", GIT_COMMITTER_NAME="Dev",
               GIT_COMMITTER_EMAIL="dev@example.invalid")
    if when is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"@{when} +0000"
    done = subprocess.run(["git", *args], cwd=repo, env=env, input=input, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode().strip()


@dataclass
class Awkward:
    path: Path
    value: str
    decoy: str
    commits: dict[str, str]


def noisy(text: str) -> bytes:
    return secrets.token_hex(300).encode() + b"\n" + text.encode() + b"\n" + secrets.token_hex(300).encode()


def build(path: Path) -> Awkward:
    value, decoy = fake_key(), fake_key()
    decoy = value[:8] + decoy[8:]  # same prefix and length, other characters
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    c: dict[str, str] = {}

    def commit(files: dict[str, bytes | str], message: str, when: int) -> str:
        for name, content in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
            git(path, "add", name)
        git(path, "commit", "-q", "--allow-empty", "-m", message, when=when)
        return git(path, "rev-parse", "HEAD")

    c["root"] = commit({"README.md": "# service\n"}, "initial", T0)
    c["decoy"] = commit({"decoy.env": f"OPENAI_API_KEY={decoy}\n"}, f"rotate: new key {decoy}", T0 + 50)
    # A file renamed, then removed.
    c["added"] = commit({"config/settings.py": f"OPENAI_API_KEY = '{value}'\n"}, "settings", T0 + 100)
    (path / "app").mkdir()
    git(path, "mv", "config/settings.py", "app/settings.py")
    c["renamed"] = commit({}, "move settings", T0 + 200)
    git(path, "rm", "-q", "app/settings.py")
    c["removed"] = commit({}, "remove settings", T0 + 300)
    # A Kubernetes Secret: data is base64 of the key.
    manifest = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: openai\ntype: Opaque\ndata:\n"
                f"  OPENAI_API_KEY: {base64.b64encode(value.encode()).decode()}\n")
    c["k8s"] = commit({"deploy/secret.yaml": manifest}, "deploy secret", T0 + 400)
    # A notebook whose output printed the key.
    notebook = {"cells": [{"cell_type": "code", "execution_count": 1, "metadata": {}, "source": ["print(key)"],
                           "outputs": [{"output_type": "stream", "name": "stdout", "text": [value + "\n"]}]}],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    c["notebook"] = commit({"notebooks/explore.ipynb": json.dumps(notebook, indent=1)}, "explore", T0 + 500)
    # The key in a commit message.
    c["message"] = commit({}, f"debug: prod works with {value}", T0 + 600)
    # A branch never merged.
    git(path, "checkout", "-q", "-b", "wip")
    c["branch"] = commit({"wip.env": f"OPENAI_API_KEY={value}\n"}, "wip", T0 + 700)
    git(path, "checkout", "-q", "main")
    # An annotated tag whose message holds the key.
    git(path, "tag", "-a", "v1.0", "-m", f"release; smoke-tested with {value}", when=T0 + 800)
    # A gzip'd log and a zip archive (deflated: no raw copy in the blob).
    c["gzip"] = commit({"logs/app.log.gz": gzip.compress(noisy(f"Authorization: Bearer {value}"))}, "logs",
                       T0 + 900)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("config/prod.env", noisy(f"OPENAI_API_KEY={value}"))
    c["zip"] = commit({"dist/config.zip": archive.getvalue()}, "bundle", T0 + 1000)
    # A git note on the current commit: its blob is reachable only from refs/notes/commits.
    git(path, "notes", "add", "-m", f"ops: rotated from {value}", c["zip"], when=T0 + 1100)
    c["notes"] = git(path, "rev-parse", "refs/notes/commits")
    # A stash of a modified tracked file.
    (path / "README.md").write_text(f"# service\nOPENAI_API_KEY={value}\n")
    git(path, "stash", "push", "-q", "-m", "wip", when=T0 + 1200)
    c["stash"] = git(path, "rev-parse", "refs/stash")
    # Committed, then reset away: unreachable (the reflog does not count).
    c["dangling"] = commit({"oops.env": f"OPENAI_API_KEY={value}\n"}, "oops", T0 + 1300)
    git(path, "reset", "-q", "--hard", "HEAD~1")
    return Awkward(path, value, decoy, c)


@dataclass(frozen=True)
class Placement:
    """Where one copy was hidden, how to recognise its finding, and what it must say."""

    name: str
    matches: Callable[[Row, Awkward], bool]
    first_seen: int  # seconds after T0
    encoding: str = "raw"
    reachable: bool = True
    commit: str | None = None  # key of Awkward.commits


PLACEMENTS = [
    Placement("file before its rename", lambda f, w: f["path"] == "config/settings.py", 100, commit="added"),
    Placement("file after its rename", lambda f, w: f["path"] == "app/settings.py", 200, commit="renamed"),
    Placement("base64 kubernetes secret", lambda f, w: f["path"] == "deploy/secret.yaml", 400, "base64",
              commit="k8s"),
    Placement("notebook output", lambda f, w: f["path"] == "notebooks/explore.ipynb", 500, commit="notebook"),
    Placement("commit message", lambda f, w: f["kind"] == "commit", 600, commit="message"),
    Placement("unmerged branch", lambda f, w: f["path"] == "wip.env" and f["ref"] == "refs/heads/wip", 700,
              commit="branch"),
    Placement("annotated tag message", lambda f, w: f["kind"] == "tag" and f["ref"] == "refs/tags/v1.0", 800,
              commit="message"),
    Placement("gzip'd log", lambda f, w: f["path"] == "logs/app.log.gz" and "(inside gzip)" in f["location"], 900,
              commit="gzip"),
    Placement("zip archive", lambda f, w: f["path"] == "dist/config.zip"
              and "(inside zip:config/prod.env)" in f["location"], 1000, commit="zip"),
    Placement("git note", lambda f, w: f["kind"] == "blob" and f["ref"] == "refs/notes/commits", 1100,
              commit="notes"),
    Placement("stash", lambda f, w: f["path"] == "README.md" and f["ref"] == "refs/stash", 1200, commit="stash"),
    Placement("unreachable commit", lambda f, w: f["path"] == "oops.env", 1300, reachable=False, commit="dangling"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Awkward:
    return build(tmp_path_factory.mktemp("acceptance") / "repo")


@pytest.fixture(scope="module")
def via_api(world) -> list[Row]:
    return [finding.to_dict() for finding in scan_repo(world.path, Secret(world.value))]


@pytest.fixture(scope="module")
def via_cli(world) -> list[Row]:
    env = {**os.environ, "K": world.value}
    done = subprocess.run(
        [sys.executable, "-c", "from cauterize.cli import entry; entry()",
         "locate", "--key-env", "K", "--git", str(world.path), "--json"],
        env=env, capture_output=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert world.value.encode() not in done.stdout + done.stderr
    document = json.loads(done.stdout)
    assert document["fingerprint"] == Secret(world.value).fingerprint
    return document["findings"]


@pytest.fixture(params=["api", "cli"])
def findings(request, via_api, via_cli) -> list[Row]:
    return via_api if request.param == "api" else via_cli


@pytest.mark.parametrize("placement", PLACEMENTS, ids=[placement.name for placement in PLACEMENTS])
def test_every_placement_is_reported_with_its_first_seen(world, findings, placement):
    matching = [finding for finding in findings if placement.matches(finding, world)]
    assert matching, f"{placement.name}: not reported"
    for finding in matching:
        assert finding["source"] == "git"
        assert finding["first_seen"] == iso_utc(T0 + placement.first_seen), placement.name
        assert finding["encoding"] == placement.encoding
        assert finding["reachable"] is placement.reachable
        if placement.commit:
            assert finding["commit"] == world.commits[placement.commit]


def test_the_decoy_is_never_reported(world, findings):
    assert not [finding for finding in findings if finding["path"] == "decoy.env"]
    assert not [finding for finding in findings if finding["commit"] == world.commits["decoy"]]
    text = json.dumps(findings)
    assert world.value not in text and world.decoy not in text


def test_nothing_unexpected_and_the_exposure_starts_at_the_first_copy(world, findings):
    unexplained = [f["location"] for f in findings if not any(p.matches(f, world) for p in PLACEMENTS)]
    assert unexplained == []
    assert min(f["first_seen"] for f in findings if f["first_seen"]) == iso_utc(T0 + 100)


def test_the_decoy_is_there_when_searched_for(world):
    found = scan_repo(world.path, Secret(world.decoy))
    assert {(f.kind, f.path) for f in found} == {("blob", "decoy.env"), ("commit", None)}
    assert {f.first_seen for f in found} == {iso_utc(T0 + 50)}
