"""`cauterize demo` end to end through the real CLI, Prefect, git and the emulator on a socket,
and the canary search of everything it wrote."""

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from cauterize.sandbox.openai import new_key_value

pytestmark = pytest.mark.slow

KEY_SHAPE = re.compile(rb"sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,}")


def _cauterize(*args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-c", "from cauterize.cli import entry; entry()", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout,
    )


def _forms(key: str) -> list[bytes]:
    raw = key.encode()
    forms = [raw, quote(key, safe="").encode()]
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        forms.append(encoded[-(-8 * offset // 6): (8 * (offset + len(raw))) // 6])
    return forms


def _git_objects(repo: Path) -> bytes:
    """Every object of a repository, decompressed, read with git itself (not with our scanner)."""
    done = subprocess.run(
        ["git", "cat-file", "--batch-all-objects", "--batch", "--unordered"],
        cwd=repo, capture_output=True, check=True,
    )
    return done.stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory, request):
    workdir = tmp_path_factory.mktemp("demo") / "world"
    leaked = new_key_value()  # a canary of the real shape, made at run time
    done = _cauterize("demo", "--workdir", str(workdir), "--json", env={"CAUTERIZE_SANDBOX_LEAKED_KEY": leaked})
    return workdir, leaked, done


def test_demo_runs_every_step_ok(demo):
    workdir, leaked, done = demo
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)
    assert {name: step["status"] for name, step in record["steps"].items()} == {
        name: "ok" for name in ("intake", "revoke", "rotate", "redeploy", "locate", "purge", "evidence", "report")
    }
    report = Path(record["report"]["md"])
    assert report.is_file() and report.is_relative_to(workdir)
    assert f"post-mortem: {report}" in done.stderr
    assert "Traceback" not in done.stderr
    text = report.read_text()
    assert record["old_key"]["fingerprint"] in text and "anomalous bucket" in text
    assert Path(record["report"]["html"]).read_text().startswith("<!doctype html>")


def test_canary_keys_are_only_in_the_env_stores(demo):
    workdir, leaked, done = demo
    new = re.search(r'OPENAI_API_KEY="([^"]+)"', (workdir / "deploy/.env").read_text()).group(1)
    assert new != leaked
    expected = {workdir / "deploy/.env", workdir / "worker/.env"}
    hits: dict[str, set] = {"old": set(), "new": set()}
    for path in workdir.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for name, key in (("old", leaked), ("new", new)):
            if any(form in data for form in _forms(key)):
                hits[name].add(path)
    for repo in (workdir / "remote.git", workdir / "app"):
        objects = _git_objects(repo)
        for name, key in (("old", leaked), ("new", new)):
            if any(form in objects for form in _forms(key)):
                hits[name].add(repo)
    assert hits["old"] == set(), f"the leaked key is still in {sorted(map(str, hits['old']))}"
    assert hits["new"] == expected
    prefect_home = workdir / ".prefect"
    assert any(prefect_home.glob("*.db")), "the Prefect database lives inside the workdir"


def test_no_key_shaped_string_in_record_report_or_prefect_home(demo):
    workdir, _, _ = demo
    checked = 0
    for path in [*workdir.joinpath("incidents").rglob("*"), *workdir.joinpath(".prefect").rglob("*")]:
        if path.is_file():
            checked += 1
            assert not KEY_SHAPE.search(path.read_bytes()), f"key-shaped string in {path}"
    assert checked >= 4


def test_runbook_validate_malformed_exits_2_with_one_line(tmp_path):
    path = tmp_path / "rb.yaml"
    path.write_text("version: 1\nname: x\nkey: {provider: openai, source: env:K}\nstores:\n  - {type: dotenv, path: a}\n")
    done = _cauterize("runbook", "validate", str(path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "stores.0.variable" in lines[0] and "Traceback" not in done.stderr
