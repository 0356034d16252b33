"""Issue 5's acceptance repository, built with real git: the key hidden in every awkward place,
and a decoy key of the same shape that must never be reported. Both ``scan_repo`` and
``cauterize locate --key-env K --git REPO --json`` must report every placement with the commit
time of the commit (or tag) that first exposed it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from awkward_repo import T0, Awkward, build

from cauterize.locate.findings import iso_utc
from cauterize.locate.git import scan_repo
from cauterize.secret import Secret

Row = dict[str, Any]


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
