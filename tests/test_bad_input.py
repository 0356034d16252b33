"""Bad input never acts: every malformed runbook (through ``respond`` and ``runbook validate``) and
every bad CLI argument exits 2 with at most three lines naming the field or the problem and the
fix, no traceback, no key on stdout, and nothing done at the provider or any store."""

import os
import secrets
import subprocess
import sys

import pytest

from cauterize.sandbox.world import LEAKED_ENV, build_world

STORES = ("deploy/.env", "worker/.env")
UNSET = "CAUTERIZE_BAD_INPUT_UNSET_KEY"


def _replace(old, new):
    def mutate(text):
        assert old in text, f"the sandbox runbook no longer holds {old!r}"
        return text.replace(old, new, 1).encode()
    return mutate


RUNBOOKS = [
    ("empty", lambda text: b"", "the file is empty"),
    ("yaml-syntax-error", _replace("version: 1", "version: [1"), "YAML syntax error at line"),
    ("wrong-version", _replace("version: 1", "version: 2"), "version: must be 1"),
    ("unknown-top-level-key", lambda text: (text + "surprise: true\n").encode(), "surprise: unknown field"),
    ("unknown-store-key", _replace("variable:", "varable:"), "stores.0.varable: unknown field"),
    ("unknown-store-type", _replace("type: dotenv", "type: floppy"), "stores.0: unknown store type; expected one of"),
    ("bad-key-source-scheme", _replace(f"env:{LEAKED_ENV}", "envx:FOO"), "key.source: must be a key source reference"),
    ("unset-env-var", _replace(f"env:{LEAKED_ENV}", f"env:{UNSET}"), f"env:{UNSET}: the variable is not set"),
    ("base-url-not-a-url", _replace("mint: service-account", "mint: service-account\n    base_url: not a url"),
     "providers.openai.base_url: must be an http(s):// URL"),
    ("base-url-ftp", _replace("mint: service-account", "mint: service-account\n    base_url: ftp://x"),
     "providers.openai.base_url: must be an http(s):// URL"),
    ("binary-garbage", lambda text: b"\x00\xff" + secrets.token_bytes(512) + b"\x00", "is not UTF-8 text"),
    ("nul-in-text", _replace("name: sandbox", "name: sand\x00box"), "YAML syntax error at byte"),
    ("directory", None, "is a directory"),
    ("missing-file", None, "no such file"),
]

FILE_LEVEL = ("empty", "binary-garbage", "directory", "missing-file")

COMMANDS = [
    (["revoke", "--provider", "nosuch", "--key-env", "X", "--yes"], "unknown provider 'nosuch'"),
    (["verify", "--provider", "openai"], "give exactly one of --key-env VAR, --key-file PATH, --key-stdin"),
    (["evidence", "--provider", "openai", "--key-env", "X", "--since", "yesterday-ish"], "--since: 'yesterday-ish'"),
    (["locate", "--key-env", "X", "--s3", "not-an-s3-url"], "expected s3://BUCKET"),
    (["purge", "--key-env", "X", "--repo", "/nonexistent", "--push"], "pass --yes when not on a terminal"),
    (["watch", "--provider", "cohere"], "not 'cohere'"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = build_world(tmp_path_factory.mktemp("world"))
    world.stores_before = {name: (world.root / name).read_bytes() for name in STORES}
    world.prefect_home = tmp_path_factory.mktemp("prefect")
    yield world
    world.close()


def _cauterize(world, *args, extra_env=None):
    env = {**os.environ, **world.env, "PREFECT_HOME": str(world.prefect_home), "PREFECT_API_URL": "",
           **(extra_env or {})}
    env.pop(UNSET, None)
    return subprocess.run(
        [sys.executable, "-c", "from cauterize.cli import entry; entry()", *args],
        capture_output=True, text=True, env=env, timeout=120, input="",
    )


def _assert_rejected(done, words):
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert 1 <= len(lines) <= 3, done.stderr
    assert words in done.stderr, done.stderr


def _key_hits(done, keys):
    return sum(key in done.stdout or key in done.stderr for key in keys)


def _assert_untouched(world):
    assert world.emulator.is_live(world.env[LEAKED_ENV])
    assert {name: (world.root / name).read_bytes() for name in STORES} == world.stores_before
    assert not (world.root / "incidents").exists()


def _world_keys(world):
    return [world.env[LEAKED_ENV], world.env["OPENAI_ADMIN_KEY"]]


@pytest.mark.parametrize("command", [["respond", "{}", "--yes", "--json"], ["runbook", "validate", "{}"]],
                         ids=["respond", "validate"])
@pytest.mark.parametrize("name, mutate, words", RUNBOOKS, ids=[case[0] for case in RUNBOOKS])
def test_malformed_runbook_is_rejected_before_anything_is_done(world, command, name, mutate, words):
    path = world.root / f"bad-{name}.yaml"
    if name == "directory":
        path.mkdir(exist_ok=True)
    elif mutate is not None:
        path.write_bytes(mutate(world.runbook.read_text()))
    before = len(world.emulator.requests)
    done = _cauterize(world, *[arg.format(path) for arg in command])
    if name == "unset-env-var" and command[0] == "runbook":
        # validate is static (CI has no secrets): the unset source is a note, respond refuses
        assert done.returncode == 0 and f"note: key.source env:{UNSET} is not set here" in done.stderr
    else:
        _assert_rejected(done, words)
    if name in FILE_LEVEL:
        assert "field named above" not in done.stderr and "Point at a runbook file" in done.stderr
    hits = _key_hits(done, _world_keys(world))
    assert hits == 0
    assert len(world.emulator.requests) == before
    _assert_untouched(world)


@pytest.mark.parametrize("args, words", COMMANDS, ids=[case[0][0] for case in COMMANDS])
def test_bad_cli_arguments_are_rejected_before_anything_is_done(world, make_key, args, words):
    key = make_key()
    before = len(world.emulator.requests)
    done = _cauterize(world, *args, extra_env={"X": key})
    _assert_rejected(done, words)
    hits = _key_hits(done, [key, *_world_keys(world)])
    assert hits == 0
    assert len(world.emulator.requests) == before
    _assert_untouched(world)


def test_the_whole_matrix_reached_no_provider(world):
    assert world.emulator.requests == []
    _assert_untouched(world)
