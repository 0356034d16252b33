"""Scratch outside an incident (``cauterize purge``, ``cauterize locate``): a run killed while its
mirror and replacement expressions hold the key leaves a directory the next run removes; a live
run's directory is never touched. Real processes, real SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_purge import T0, Leak, commit, git

from cauterize.scratch import scratch, sweep
from cauterize.secret import Secret


@pytest.fixture
def leak(tmp_path, make_key) -> Leak:
    """A bare remote whose history holds a key of the real shape (the CLI checks it)."""
    value = make_key()
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    git(work, "remote", "add", "origin", str(remote))
    added = commit(work, {"config.py": f"API_KEY = '{value}'\n"}, "add config", T0)
    git(work, "push", "-q", "origin", "--all")
    return Leak(remote, work, Secret(value), {"added": added})


def _purge(leak, tmp: Path, *extra: str, fault: str = "") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "K": leak.key.reveal(), "TMPDIR": str(tmp), "CAUTERIZE_FAULT": fault}
    return subprocess.run([str(Path(sys.executable).parent / "cauterize"), "purge", "--key-env", "K", "--repo", str(leak.remote),
                           *extra], env=env, capture_output=True, timeout=240, check=False)


def _holding(root: Path, value: str) -> list[str]:
    return [str(path.relative_to(root)) for path in root.rglob("*")
            if path.is_file() and not path.is_symlink() and value.encode() in path.read_bytes()]


def test_a_purge_killed_with_the_key_on_disk_is_swept_by_the_next_run(leak, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    killed = _purge(leak, tmp, fault="kill-after:purge-expressions")
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode(errors="replace")[-2000:]
    left = [path.name for path in tmp.iterdir() if path.name.startswith("cauterize-purge-")]
    assert left and _holding(tmp, leak.key.reveal()), "the kill left the key in scratch (what the rerun must clean)"

    done = _purge(leak, tmp)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert [path.name for path in tmp.iterdir() if path.name.startswith("cauterize-")] == []
    assert _holding(tmp, leak.key.reveal()) == []


def test_a_live_runs_scratch_is_not_swept(tmp_path):
    with scratch("cauterize-test-", tmp_path) as mine:
        (mine / "mirror").write_text("in use")
        assert sweep(tmp_path, "cauterize-test-") == []
        assert (mine / "mirror").exists()
    assert not mine.exists()
    orphan = tmp_path / "cauterize-test-orphan"
    orphan.mkdir()
    (orphan / ".owner").write_text("")
    assert sweep(tmp_path, "cauterize-test-") == ["cauterize-test-orphan"]
    assert not orphan.exists()
