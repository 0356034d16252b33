"""Secret hygiene across commands: canary keys searched for everywhere cauterize writes, and on
every child process's command line while a full response runs."""

import base64
import binascii
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote

import pytest

from cauterize.sandbox.world import build_world

pytestmark = pytest.mark.slow


def _forms(key: str) -> list[bytes]:
    raw = key.encode()
    forms = [raw, quote(key, safe="").encode(), binascii.hexlify(raw)]
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        forms.append(encoded[-(-8 * offset // 6): (8 * (offset + len(raw))) // 6])
    return forms


def _run(args, env):
    return subprocess.run([sys.executable, "-c", "from cauterize.cli import entry; entry()", *args],
                          capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)


class CmdlineSampler(threading.Thread):
    """Reads /proc/*/cmdline of every process, again and again, looking for key forms."""

    def __init__(self, forms):
        super().__init__(daemon=True)
        self.forms, self.hits, self.samples, self.stop = forms, [], 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if any(form in cmdline for form in self.forms):
                    self.hits.append(cmdline.split(b"\0")[0].decode(errors="replace"))
            self.samples += 1


def test_canary_keys_leak_nowhere_across_commands(tmp_path):
    home, tmpdir = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmpdir.mkdir()
    world = build_world(tmp_path / "w")
    leaked = world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"]
    env = {**os.environ, **world.env, "HOME": str(home), "TMPDIR": str(tmpdir),
           "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": ""}
    sampler = CmdlineSampler(_forms(leaked) + _forms(world.env["OPENAI_ADMIN_KEY"]))
    sampler.start()
    try:
        runs = {
            "verify": _run(["verify", "--provider", "openai", "--key-env", "CAUTERIZE_SANDBOX_LEAKED_KEY", "--json"], env),
            "evidence": _run(["evidence", "--provider", "openai", "--key-env", "CAUTERIZE_SANDBOX_LEAKED_KEY",
                              "--since", "7d", "--bucket", "1h", "--json"], env),
            "locate": _run(["locate", "--key-env", "CAUTERIZE_SANDBOX_LEAKED_KEY", "--git", str(world.clone),
                            "--path", str(world.root / "deploy"), "--json"], env),
            "stores scan": _run(["stores", "scan", str(world.runbook), "--key-env", "CAUTERIZE_SANDBOX_LEAKED_KEY"], env),
            "purge (dry run)": _run(["purge", "--key-env", "CAUTERIZE_SANDBOX_LEAKED_KEY", "--repo", str(world.clone),
                                     "--json"], env),
            "respond": _run(["respond", str(world.runbook), "--yes", "--json"], env),
            "revoke (already revoked)": _run(["revoke", "--provider", "openai", "--key-env",
                                              "CAUTERIZE_SANDBOX_LEAKED_KEY", "--yes", "--json"], env),
        }
        incident = json.loads(runs["respond"].stdout)
        directory = Path(incident["report"]["md"]).parent
        runs["report"] = _run(["report", str(directory), "--format", "html"], env)
        # demo and drill build their own sandbox worlds; CAUTERIZE_SANDBOX_LEAKED_KEY makes the same
        # canary their leaked (or drill) key
        runs["demo"] = _run(["demo", "--workdir", str(tmp_path / "demo"), "--json"], env)
        runs["drill"] = _run(["drill", "--sandbox", "--workdir", str(tmp_path / "drill"), "--json"], env)
    finally:
        sampler.stop.set()
        sampler.join()
        world.close()
    for name, done in runs.items():
        assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"
    new_keys = [_stored(root / "deploy/.env") for root in (world.root, *_worlds(tmp_path / "demo"),
                                                             *_worlds(tmp_path / "drill"))]
    assert len(set(new_keys)) == 3 and leaked not in new_keys, "respond, demo and drill each minted a key"
    assert sampler.samples > 10 and sampler.hits == [], f"key on a command line: {sampler.hits}"
    outputs = "".join(done.stdout + done.stderr for done in runs.values()).encode()
    # everything written but the stores and the sandbox repositories (the demo's canary test reads
    # every git object after the purge; a drill purges nothing by design)
    searched = [tmp_path / "prefect", home, tmpdir, world.root / "incidents",
                *(tmp_path / run / part for run in ("demo", "drill") for part in (".prefect", "incidents"))]
    assert all(root.is_dir() for root in searched), [str(root) for root in searched if not root.is_dir()]
    leaks = []
    for key, label in ((leaked, "old"), *((new, f"new {i}") for i, new in enumerate(new_keys))):
        forms = _forms(key)
        if any(form in outputs for form in forms):
            leaks.append(f"{label} key in a command's output")
        for root in searched:
            for path in root.rglob("*"):
                if path.is_file() and any(form in path.read_bytes() for form in forms):
                    leaks.append(f"{label} key in {path}")
    assert leaks == []
    assert sum(1 for root in searched for p in root.rglob("*") if p.is_file()) > 5, "the search covered files"
    for root in (world.root / "incidents", tmp_path / "prefect", *searched[4:]):
        for path in root.rglob("*"):
            mode = path.stat().st_mode & 0o777
            assert mode == (0o700 if path.is_dir() else 0o600), f"{path} is {oct(mode)}"


def _worlds(root: Path) -> list[Path]:
    """The sandbox world(s) a demo or drill built under ``root`` (where deploy/.env is)."""
    return [env.parent.parent for env in root.rglob("deploy/.env")]


def _stored(path: Path) -> str:
    return path.read_text().split('OPENAI_API_KEY="')[1].split('"')[0]
