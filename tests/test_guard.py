"""The guard: key shapes and the leaked list (unit), then `guard install` and real `git commit`s through the hook.

Every key is generated at run time in its provider's shape; none is ever written in this file. For
the hook to find `cauterize`, the venv's bin directory goes first on PATH.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import string
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cauterize.cli_guard import HOW_TO_FIX, guard_app
from cauterize.errors import InputError
from cauterize.guard import (
    CHAINED,
    HOOK_MARKER,
    LEAKED_ENV,
    add_leaked_fingerprint,
    check_files,
    check_staged,
    install,
    leaked_list_path,
    load_leaked,
    scan_text,
)
from cauterize.sandbox.anthropic import new_key_value as anthropic_key
from cauterize.sandbox.openai import new_key_value as openai_key
from cauterize.secret import fingerprint_of, redact

ALNUM = string.ascii_letters + string.digits


def rand(length: int, alphabet: str = ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def google_key() -> str:
    return "AIza" + rand(35, ALNUM + "_-")


def azure_key_84() -> str:
    return rand(52) + "JQQJ99" + rand(26)


def service_account_file() -> tuple[str, str]:
    """A Google service-account key file's text (with a made-up private key) and its private_key_id."""
    key_id = secrets.token_hex(20)
    pem = "-" * 5 + "BEGIN " + "PRIVATE" + " KEY" + "-" * 5 + "\n" + rand(64) + "\n"
    body = {"type": "service_account", "project_id": "demo", "private_key_id": key_id, "private_key": pem,
            "client_email": "caller@demo.iam.gserviceaccount.com"}
    return json.dumps(body, indent=2), key_id


def kinds(text: str, leaked: frozenset[str] = frozenset()) -> list[tuple[int, str]]:
    return [(finding.line, finding.kind) for finding in scan_text("f", text, leaked)]


# ---- shapes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda: openai_key("proj"), "OpenAI project key"),
        (lambda: openai_key("svcacct"), "OpenAI service-account key"),
        (lambda: openai_key("admin"), "OpenAI admin key"),
        (lambda: "sk-" + rand(20) + "T3Blbk" + "FJ" + rand(20), "OpenAI key"),
        (lambda: anthropic_key("api03"), "Anthropic API key"),
        (lambda: anthropic_key("admin01"), "Anthropic admin key"),
        (google_key, "Google API key"),
        (azure_key_84, "Azure OpenAI key"),
    ],
)
def test_each_provider_shape_is_found_with_its_kind_and_only_its_public_identity(make, kind):
    key = make()
    (finding,) = scan_text("app/config.py", f'import os\nAPI_KEY = "{key}"\n')
    assert (finding.path, finding.line, finding.kind) == ("app/config.py", 2, kind)
    assert finding.redacted == redact(key) and finding.fingerprint == fingerprint_of(key)
    assert key not in finding.describe() and finding.describe().startswith(f"app/config.py:2: {kind} {redact(key)}")


def test_context_shapes_need_their_keyword_on_the_line_or_the_line_before():
    hex32, cohere = secrets.token_hex(16), rand(40)
    assert kinds(f"AZURE_OPENAI_API_KEY={hex32}") == [(1, "Azure OpenAI key")]
    assert kinds(f"azure:\n  api_key: {hex32}") == [(2, "Azure OpenAI key")]
    assert kinds(f"checksum = {hex32}") == []
    assert kinds(f"CO_API_KEY={cohere}") == [(1, "Cohere API key")]
    assert kinds(f'cohere:\n  key: "{cohere}"') == [(2, "Cohere API key")]
    assert kinds(f"commit = {rand(40)}\n\n\ncohere = 1") == []


def test_a_service_account_key_file_is_found_by_its_private_key_id():
    text, key_id = service_account_file()
    (finding,) = scan_text("sa.json", text)
    assert finding.kind == "Google service-account key" and finding.line == 4
    assert finding.redacted == redact(key_id) and finding.fingerprint is None
    assert scan_text("ids.json", json.dumps({"private_key_id": key_id})) == [], "an id alone is not a key file"


def test_decoys_are_not_flagged():
    decoys = [
        "sk-proj-" + rand(6),
        "sk-proj-" + rand(60),  # no T3BlbkFJ marker
        "sk-ant-api03-" + rand(40) + "AA",
        "sk-ant-api03-" + rand(93, ALNUM + "_-") + "AAx",  # longer than the format
        "AIza" + rand(20),
        rand(52) + "JQQJ9x" + rand(26),  # the marker one character short (a random 9 would complete it)
        "see https://platform.openai.com/api-keys and docs for sk-proj- prefixes",
    ]
    assert kinds("\n".join(decoys)) == []


def test_a_line_marked_allow_skips_shapes_but_never_the_leaked_list():
    allowed, leaked = openai_key(), anthropic_key()
    text = f'FIXTURE = "{allowed}"  # cauterize: allow\nOTHER = "{leaked}"  # cauterize: allow\n'
    assert kinds(text, frozenset({fingerprint_of(leaked)})) == [(2, "key on the leaked list")]


@pytest.mark.parametrize("template", ["TOKEN={key}", 'token: "{key}"', "{key}", "x = {{'k': '{key}'}}",
                                      "curl -H 'Authorization: Bearer {key}' https://api.example.com",
                                      "export SECRET={key};"])
def test_a_key_on_the_leaked_list_is_found_whatever_its_shape(template):
    key = rand(12) + "!" + secrets.token_urlsafe(18) if "curl" not in template else secrets.token_urlsafe(24)
    (finding,) = scan_text("notes.txt", "first line\n" + template.format(key=key), frozenset({fingerprint_of(key)}))
    assert (finding.line, finding.kind, finding.leaked) == (2, "key on the leaked list", True)
    assert finding.fingerprint == fingerprint_of(key) and key not in finding.describe()


def test_a_shaped_key_on_the_list_is_one_finding_marked_leaked():
    key = openai_key()
    (finding,) = scan_text("f", f"KEY={key}", frozenset({fingerprint_of(key)}))
    assert finding.kind == "OpenAI project key" and finding.leaked
    assert finding.describe().endswith("a key already known to be leaked")


def test_a_leaked_key_file_is_found_as_a_whole():
    text, _ = service_account_file()
    found = scan_text("sa.json", text + "\n", frozenset({fingerprint_of(text)}))
    assert [f.kind for f in found] == ["Google service-account key", "key file on the leaked list"]


# ---- the leaked list ------------------------------------------------------------------------------


def test_the_leaked_list_is_created_appended_once_and_never_takes_a_key(tmp_path, monkeypatch):
    monkeypatch.setenv(LEAKED_ENV, str(tmp_path / "list"))
    assert leaked_list_path() == tmp_path / "list" and load_leaked() == frozenset()
    first, second = fingerprint_of(rand(30)), fingerprint_of(rand(30))
    assert add_leaked_fingerprint(first) and add_leaked_fingerprint(second)
    assert not add_leaked_fingerprint(first)
    lines = (tmp_path / "list").read_text().splitlines()
    assert lines[0].startswith("#") and lines[1:] == [first, second]
    assert load_leaked() == {first, second}
    key = openai_key()
    with pytest.raises(InputError) as info:
        add_leaked_fingerprint(key)
    assert key not in info.value.one_line() and load_leaked() == {first, second}


def test_the_default_list_lives_under_the_config_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(LEAKED_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert leaked_list_path() == tmp_path / "cauterize" / "leaked-fingerprints"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert leaked_list_path() == tmp_path / ".config" / "cauterize" / "leaked-fingerprints"


# ---- files and the CLI ------------------------------------------------------------------------------


def test_check_files_reads_text_skips_binaries_and_the_cli_exits_1_without_the_key(tmp_path):
    key = anthropic_key()
    (tmp_path / "config.yaml").write_text(f"llm:\n  provider: anthropic\n  key: {key}\n")
    (tmp_path / "blob.bin").write_bytes(b"\0" + key.encode())
    (tmp_path / "clean.txt").write_text("nothing here\n")
    found = check_files([tmp_path / "config.yaml", tmp_path / "blob.bin", tmp_path / "clean.txt"], frozenset())
    assert [(Path(f.path).name, f.line, f.kind) for f in found] == [("config.yaml", 3, "Anthropic API key")]

    runner = CliRunner()
    refused = runner.invoke(guard_app, ["check", str(tmp_path / "config.yaml"), str(tmp_path / "clean.txt")])
    assert refused.exit_code == 1 and key not in refused.output
    assert f"config.yaml:3: Anthropic API key {redact(key)}" in refused.output and "secret store" in refused.output
    assert runner.invoke(guard_app, ["check", str(tmp_path / "clean.txt")]).exit_code == 0
    neither = runner.invoke(guard_app, ["check"])
    assert isinstance(neither.exception, InputError)


# ---- git: the index, the hook, real commits ------------------------------------------------------------


@pytest.fixture
def git_env(tmp_path, monkeypatch) -> dict[str, str]:
    """A private HOME and leaked list; the venv's bin first on PATH so the hook finds `cauterize`."""
    home = tmp_path / "home"
    home.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith(("GIT_", "XDG_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        HOME=str(home), GIT_CONFIG_NOSYSTEM="1", LC_ALL="C",
        GIT_AUTHOR_NAME="Dev", GIT_AUTHOR_EMAIL="dev@example.com",
        GIT_COMMITTER_NAME="Dev", GIT_COMMITTER_EMAIL="dev@example.com",
    )
    env[LEAKED_ENV] = str(tmp_path / "leaked-fingerprints")
    monkeypatch.setenv(LEAKED_ENV, env[LEAKED_ENV])
    return env


def git(repo: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=False)


@pytest.fixture
def repo(tmp_path, git_env) -> Path:
    path = tmp_path / "app"
    path.mkdir()
    git(path, "init", "-q", "-b", "main", env=git_env)
    (path / "README.md").write_text("# app\n")
    git(path, "add", "README.md", env=git_env)
    assert git(path, "commit", "-q", "-m", "start", env=git_env).returncode == 0
    return path


def commit(repo: Path, env: dict[str, str], files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", *files, env=env)
    return git(repo, "commit", "-m", "change", env=env)


def commits(repo: Path, env: dict[str, str]) -> int:
    return int(git(repo, "rev-list", "--count", "HEAD", env=env).stdout)


@pytest.fixture
def hook_runs(git_env) -> None:
    """The hook runs `cauterize guard check --staged`: that command must exist on PATH."""
    found = subprocess.run(["cauterize", "guard", "check", "--help"], env=git_env, capture_output=True, check=False)
    if found.returncode != 0:
        pytest.fail("`cauterize guard` is not a command: register cauterize.cli_guard.guard_app in cauterize/cli.py")


@pytest.fixture
def guarded(repo, git_env, hook_runs) -> Path:
    result = CliRunner().invoke(guard_app, ["install", "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    return repo


def test_install_writes_an_executable_hook_once(guarded):
    hook = guarded / ".git" / "hooks" / "pre-commit"
    assert HOOK_MARKER in hook.read_text() and "cauterize guard check --staged" in hook.read_text()
    assert hook.stat().st_mode & stat.S_IXUSR
    again = install(guarded)
    assert not again.changed and "already installed" in again.describe()
    assert not (hook.parent / CHAINED).exists()


@pytest.mark.slow
@pytest.mark.parametrize(("make", "kind"), [(openai_key, "OpenAI project key"), (anthropic_key, "Anthropic API key")])
def test_git_commit_of_a_key_is_refused_with_file_and_line_and_never_shows_it(guarded, git_env, make, kind):
    key = make()
    result = commit(guarded, git_env, {"src/settings.py": f'import os\n\nAPI_KEY = "{key}"\n'})
    output = result.stdout + result.stderr
    assert result.returncode != 0 and commits(guarded, git_env) == 1
    assert f"src/settings.py:3: {kind} {redact(key)}" in output and HOW_TO_FIX.splitlines()[0] in output
    assert key not in output and key[8:-4] not in output


@pytest.mark.slow
def test_a_clean_commit_with_decoys_passes(guarded, git_env):
    text = f"PREFIX = 'sk-proj-{rand(5)}'\nSHA = '{secrets.token_hex(20)}'\n"
    result = commit(guarded, git_env, {"docs/keys.md": text})
    assert result.returncode == 0, result.stderr
    assert commits(guarded, git_env) == 2


@pytest.mark.slow
def test_commit_all_is_checked_through_the_temporary_index(guarded, git_env):
    key = anthropic_key()
    (guarded / "README.md").write_text(f"# app\nANTHROPIC_API_KEY={key}\n")  # tracked, modified, not added
    result = git(guarded, "commit", "-a", "-m", "all", env=git_env)
    assert result.returncode != 0 and "README.md:2: Anthropic API key" in result.stderr and key not in result.stderr


@pytest.mark.slow
def test_a_key_on_the_leaked_list_is_refused_whatever_its_shape(guarded, git_env):
    key = secrets.token_urlsafe(30)
    add_leaked_fingerprint(fingerprint_of(key), Path(git_env[LEAKED_ENV]))
    result = commit(guarded, git_env, {".env": f"INTERNAL_TOKEN={key}\n"})
    output = result.stdout + result.stderr
    assert result.returncode != 0 and ".env:1: key on the leaked list" in output and key not in output


@pytest.mark.slow
def test_an_existing_hook_is_chained_and_runs_first(repo, git_env, hook_runs):
    hooks = repo / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "pre-commit").write_text(f"#!/bin/sh\necho ran >> '{repo.parent / 'earlier-hook'}'\nexit 0\n")
    (hooks / "pre-commit").chmod(0o755)
    installed = install(repo)
    assert installed.changed and installed.chained == hooks / CHAINED
    assert commit(repo, git_env, {"a.txt": "fine\n"}).returncode == 0
    assert (repo.parent / "earlier-hook").read_text() == "ran\n"
    (hooks / CHAINED).write_text("#!/bin/sh\nexit 1\n")
    assert commit(repo, git_env, {"b.txt": "fine\n"}).returncode != 0, "its refusal still stops the commit"


def test_install_follows_core_hooks_path(repo, git_env):
    git(repo, "config", "core.hooksPath", ".githooks", env=git_env)
    assert install(repo).hook.resolve() == (repo / ".githooks" / "pre-commit").resolve()


def test_check_staged_works_before_the_first_commit(tmp_path, git_env):
    fresh = tmp_path / "fresh"
    git(tmp_path, "init", "-q", str(fresh), env=git_env)
    (fresh / "key.txt").write_text(google_key() + "\n")
    git(fresh, "add", "key.txt", env=git_env)
    assert [(f.path, f.kind) for f in check_staged(fresh)] == [("key.txt", "Google API key")]


def test_check_staged_reads_the_index_not_the_working_tree(repo, git_env):
    key = openai_key()
    (repo / "staged.py").write_text(f"KEY = '{key}'\n")
    git(repo, "add", "staged.py", env=git_env)
    (repo / "staged.py").write_text("KEY = os.environ['KEY']\n")  # cleaned, but not staged
    (repo / "unstaged.py").write_text(f"KEY = '{openai_key()}'\n")  # never added
    (repo / "README.md").write_text(f"# app\n{openai_key()}\n")  # modified, not staged
    assert [(f.path, f.line) for f in check_staged(repo)] == [("staged.py", 1)]
    git(repo, "add", "staged.py", env=git_env)
    assert check_staged(repo) == []
