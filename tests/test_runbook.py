import json
from pathlib import Path

import pytest

from cauterize.errors import RunbookError
from cauterize.runbook import load_runbook, runbook_schema

RUNBOOKS = sorted((Path(__file__).resolve().parents[1] / "runbooks").glob("*.yaml"))

VALID = """\
version: 1
name: t
key: {provider: openai, source: env:K}
stores:
  - {type: dotenv, path: app/.env, variable: OPENAI_API_KEY}
locate: {git: [repo]}
"""


@pytest.mark.parametrize("path", RUNBOOKS, ids=[p.name for p in RUNBOOKS])
def test_every_shipped_runbook_is_valid(path):
    loaded = load_runbook(path)
    assert loaded.runbook.name
    assert loaded.runbook.key.provider in ("openai", "anthropic", "google", "azure-openai", "cohere")


def test_shipped_runbooks_cover_the_realistic_setups():
    names = {p.name for p in RUNBOOKS}
    assert {"sandbox.yaml", "openai-aws-dotenv.yaml", "anthropic-vault.yaml"} <= names


def test_relative_paths_resolve_against_the_runbook(tmp_path):
    path = tmp_path / "rb.yaml"
    path.write_text(VALID)
    loaded = load_runbook(path)
    assert loaded.resolve("app/.env") == (tmp_path / "app" / ".env").resolve()
    assert loaded.resolve_repo("repo") == str((tmp_path / "repo").resolve())
    assert loaded.resolve_repo("https://example.com/x.git") == "https://example.com/x.git"


@pytest.mark.parametrize(
    "text, field",
    [
        (VALID.replace("version: 1", "version: 2"), "version"),
        (VALID + "surprise: true\n", "surprise: unknown field"),
        (VALID.replace("type: dotenv", "type: floppy"), "stores.0: unknown store type"),
        (VALID.replace("source: env:K", "source: K"), "key.source"),
        (VALID.replace("variable: OPENAI_API_KEY", "varable: OPENAI_API_KEY"), "stores.0.varable"),
        (VALID.replace("provider: openai", "provider: acme"), "key.provider"),
        (VALID.replace("name: t", "name: 'Bad Name!'"), "name"),
        (VALID.replace("key: {provider: openai, source: env:K}", ""), "key: required field is missing"),
        (VALID + "evidence: {baseline_days: -1}\n", "evidence.baseline_days"),
        (VALID + "locate: {s3: [bucket]}\n", "locate.s3"),
    ],
)
def test_invalid_runbooks_name_the_field(tmp_path, text, field):
    path = tmp_path / "rb.yaml"
    path.write_text(text)
    with pytest.raises(RunbookError) as info:
        load_runbook(path)
    message = str(info.value)
    assert field in message and "\n" not in message


@pytest.mark.parametrize(
    "content, words",
    [(b"", "empty"), (b"version: [1\n", "YAML syntax error at line"), (b"\xff\xfe\x00garbage", "UTF-8"), (b"- a\n- b\n", "mapping")],
)
def test_malformed_files(tmp_path, content, words):
    path = tmp_path / "rb.yaml"
    path.write_bytes(content)
    with pytest.raises(RunbookError, match=words):
        load_runbook(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(RunbookError, match="no such file"):
        load_runbook(tmp_path / "absent.yaml")
    with pytest.raises(RunbookError, match="directory"):
        load_runbook(tmp_path)


def test_schema_is_json_schema_rejecting_unknown_keys():
    schema = json.loads(runbook_schema())
    assert schema["additionalProperties"] is False
    assert {"version", "name", "key"} <= set(schema["required"])
    assert "stores" in schema["properties"]


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.sampled_from(
        ["openai", "dotenv", "env:K", "s3://b", "revoke-first", "push", 1, "version"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["version", "name", "key", "provider", "source", "stores", "type", "path", "variable",
                         "policy", "locate", "git", "evidence", "report", "providers", "openai", "x"]),
        inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=200), _YAML_VALUES.map(lambda v: __import__("yaml").safe_dump(v).encode())))
def test_the_loader_never_fails_other_than_with_one_runbook_error_line(tmp_path, data):
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    try:
        load_runbook(path)
    except RunbookError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
