"""Key input that cannot lie (issue 16): every form a person pastes a key in reads as the bare key,
through env:, file: and stdin: alike; a value that is no key of the provider is exit 2 before any
request, naming the source and the expected shape and never any part of the value."""

import base64
import io
import json
import os
import secrets
import subprocess
import sys

import pytest

from cauterize.errors import KeySourceError
from cauterize.providers import formats
from cauterize.providers.formats import check_key, load_leaked_key
from cauterize.sandbox import anthropic, azure_openai, cohere, openai
from cauterize.sandbox.openai import OpenAIEmulator
from cauterize.sandbox.server import serve
from cauterize.secret import Secret, load_key


def google_api_key() -> str:
    return "AIza" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
                            for _ in range(35))


@pytest.fixture(scope="module")
def service_account_json() -> str:
    from cauterize.sandbox.google import GoogleEmulator

    emulator = GoogleEmulator()
    email = emulator.add_service_account("p-key-input")
    return emulator.add_key("p-key-input", email)[1]


# -- every pasted form, through every local source ---------------------------------------------------

FORMS = {
    "bare": "{k}",
    "trailing newline": "{k}\n",
    "CRLF": "{k}\r\n",
    "BOM": "\ufeff{k}\n",
    "surrounding spaces": "  \t{k}  \n",
    "quoted": '"{k}"\n',
    "single-quoted": "'{k}'",
    "NAME=key": "OPENAI_API_KEY={k}\n",
    'NAME="key"': 'OPENAI_API_KEY="{k}"\n',
    "NAME='key'": "OPENAI_API_KEY='{k}'\n",
    "NAME = key": "OPENAI_API_KEY = {k}\n",
    "export NAME=key": "export OPENAI_API_KEY={k}\n",
    'export NAME="key"': 'export OPENAI_API_KEY="{k}"\n',
    "export NAME='key' # comment": "export OPENAI_API_KEY='{k}'  # the prod key\n",
    "NAME=key # comment": "OPENAI_API_KEY={k} # the prod key\n",
    "BOM, CRLF and export": "\ufeffexport OPENAI_API_KEY=\"{k}\"\r\n",
    "comments and blank lines": "# the leaked key\n\n{k}\n\n# end\n",
    ".env with one key": "# app\nDEBUG=1\nPORT=8080\nOPENAI_BASE_URL=https://api.openai.com/v1?x=1\nOPENAI_API_KEY=\"{k}\"\nEMPTY=\n",
    ".env with one key, CRLF": "DEBUG=1\r\nexport OPENAI_API_KEY='{k}'\r\nLOG_LEVEL=info\r\n",
}


def _read(kind: str, text: str, tmp_path, monkeypatch, **kwargs) -> Secret:
    if kind == "env":
        monkeypatch.setenv("LEAKED_INPUT", text)
        return load_leaked_key("env:LEAKED_INPUT", "openai", **kwargs)
    if kind == "file":
        path = tmp_path / "leaked.env"
        path.write_bytes(text.encode())
        return load_leaked_key(f"file:{path}", "openai", **kwargs)
    return load_leaked_key("stdin:", "openai", stdin=io.StringIO(text, newline=""), **kwargs)


@pytest.mark.parametrize("kind", ["env", "file", "stdin"])
@pytest.mark.parametrize("form", list(FORMS))
def test_every_pasted_form_reads_as_the_bare_key(form, kind, tmp_path, monkeypatch):
    key = openai.new_key_value()
    secret = _read(kind, FORMS[form].format(k=key), tmp_path, monkeypatch)
    assert secret.reveal() == key


REFUSED = {
    "two keys": ("OPENAI_API_KEY={k}\nOPENAI_ADMIN_KEY={a}\n", "2 lines that look like keys"),
    "a key of another provider beside it": ("OPENAI_API_KEY={k}\nANTHROPIC_API_KEY={c}\n", "2 lines that look like keys"),
    "three keys, one bare": ("{k}\nA={a}\nB={k}\n", "3 lines that look like keys"),
    "only comments": ("# nothing here\n\n# really\n", "only blank or comment"),
    "no key among the lines": ("DEBUG=1\nPORT=8080\n", "none is an OpenAI key"),
    "a stray line beside the key": ("{k}\nsecond\n", "not a NAME=value line"),
    "an unclosed quote": ('OPENAI_API_KEY="{k}\n', "could not be parsed"),
    "junk after the quote": ("OPENAI_API_KEY='{k}' extra\n", "could not be parsed"),
    "an empty assignment": ("OPENAI_API_KEY=\n", "empty value"),
    "empty": ("  \n", "empty"),
    "truncated": ("{t}\n", "does not hold an OpenAI key"),
    "NAME: value": ("OPENAI_API_KEY: {k}\n", "does not hold an OpenAI key"),
}


@pytest.mark.parametrize("kind", ["env", "file", "stdin"])
@pytest.mark.parametrize("case", list(REFUSED))
def test_ambiguous_or_broken_sources_are_refused_without_the_value(case, kind, tmp_path, monkeypatch):
    key, admin, other = openai.new_key_value(), openai.new_key_value("admin"), anthropic.new_key_value()
    text, words = REFUSED[case]
    with pytest.raises(KeySourceError) as info:
        _read(kind, text.format(k=key, a=admin, c=other, t=key[:-9]), tmp_path, monkeypatch)
    message = info.value.one_line()
    assert info.value.exit_code == 2
    if not (kind == "stdin" and case == "empty"):  # stdin words it "nothing was read"
        assert words in message
    for value in (key, admin, other, key[:-9], key[8:-4], admin[8:-4]):
        assert value not in message
    assert "\n" not in message


def test_a_service_account_json_file_is_one_key(service_account_json, tmp_path, monkeypatch):
    for kind, text in (("env", service_account_json), ("file", service_account_json.replace("\n", "\r\n")),
                       ("stdin", "\ufeff" + service_account_json)):
        if kind == "env":
            monkeypatch.setenv("SA_JSON", text)
            secret = load_leaked_key("env:SA_JSON", "google")
        elif kind == "file":
            path = tmp_path / "sa.json"
            path.write_bytes(text.encode())
            secret = load_leaked_key(f"file:{path}", "google")
        else:
            secret = load_leaked_key("stdin:", "google", stdin=io.StringIO(text))
        assert json.loads(secret.reveal()) == json.loads(service_account_json)
    from cauterize.providers.google_auth import ServiceAccountCredentials

    assert ServiceAccountCredentials.parse(secret).client_email.startswith("vertex-caller@")


def test_a_whole_env_file_picks_the_key_of_the_provider_only_when_it_is_the_only_key(tmp_path):
    key = openai.new_key_value()
    path = tmp_path / ".env"
    path.write_text(f"DATABASE_URL=postgres://db/app\nSECRET_WORD=hello\nOPENAI_API_KEY={key}\n")
    assert load_leaked_key(f"file:{path}", "openai").reveal() == key
    assert load_leaked_key(f"file:{path}", None).reveal() == key  # locate, purge: any provider's shape
    with pytest.raises(KeySourceError, match="Anthropic"):
        load_leaked_key(f"file:{path}", "anthropic")


def test_random_tokens_beside_the_key_do_not_count_for_a_known_provider_but_other_keys_do(tmp_path):
    key = openai.new_key_value()
    token40 = "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(40))
    path = tmp_path / ".env"
    path.write_text(f"AWS_SECRET_ACCESS_KEY={token40}\nSESSION_HASH={secrets.token_hex(16)}\nOPENAI_API_KEY={key}\n")
    assert load_leaked_key(f"file:{path}", "openai").reveal() == key
    with pytest.raises(KeySourceError, match="holds 3 lines that look like keys"):
        load_leaked_key(f"file:{path}", None)  # without a provider, 32 hex and 40 alphanumerics are keys too
    cohere_key = cohere.new_key_value()
    path.write_text(f"CO_API_KEY={cohere_key}\nOPENAI_API_KEY={key}\n")
    with pytest.raises(KeySourceError, match=r"holds 2 lines that look like keys \(line 1 \(CO_API_KEY\), line 2"):
        load_leaked_key(f"file:{path}", "cohere")


def test_store_and_admin_sources_go_through_the_same_parser(monkeypatch, make_key):
    admin = make_key("sk-admin-")
    monkeypatch.setenv("OPENAI_ADMIN_KEY", f"export OPENAI_ADMIN_KEY='{admin}'\r\n")
    from cauterize.providers.base import settings_for

    assert settings_for("openai").admin_key.reveal() == admin
    # an admin credential has no leaked-key shape to fit: the parser, not the format check
    token = "hvs." + secrets.token_urlsafe(24)
    monkeypatch.setenv("SOME_TOKEN", f'TOKEN="{token}"')
    assert load_key("env:SOME_TOKEN").reveal() == token


def test_store_references_are_parsed_too(monkeypatch):
    from cauterize import stores

    key = openai.new_key_value()
    monkeypatch.setattr(stores, "load_secret_reference", lambda source: Secret(f'OPENAI_API_KEY="{key}"'))
    assert load_leaked_key("vault:secret/app#OPENAI_API_KEY", "openai").reveal() == key


# -- key formats, per provider ---------------------------------------------------------------------

GENERATED = {
    "openai": [openai.new_key_value, lambda: openai.new_key_value("svcacct"), lambda: openai.new_key_value("admin")],
    "anthropic": [anthropic.new_key_value, lambda: anthropic.new_key_value("admin01")],
    "google": [google_api_key],
    "azure-openai": [azure_openai.new_key_value, lambda: azure_openai.new_key_value("legacy")],
    "cohere": [cohere.new_key_value],
}
ROWS = [(provider, index) for provider, makers in GENERATED.items() for index in range(len(makers))]


@pytest.mark.parametrize("provider, index", ROWS)
def test_a_generated_key_fits_its_provider_and_no_other(provider, index):
    key = GENERATED[provider][index]()
    assert check_key(Secret(key), provider, "env:LEAKED").reveal() == key
    assert [name for name, _ in formats.fitting(key)] == [provider]


def _broken(provider: str, key: str) -> dict[str, str]:
    """Truncated, wrong prefix, missing marker (or the provider's nearest equivalent)."""
    cases = {"truncated": key[:-3], "one character too many": key + key[-1]}
    if provider == "openai":
        cases["wrong prefix"] = "sk-prod-" + key.split("-", 2)[2]
        cases["missing marker"] = key.replace("T3BlbkFJ", "T3BlbkFX")
    elif provider == "anthropic":
        cases["wrong prefix"] = "sk-ent-" + key[len("sk-ant-"):]
        cases["missing marker"] = key[:-2] + "AB"  # every Anthropic key ends in AA
    elif provider == "google":
        cases["wrong prefix"] = "AIzb" + key[4:]
    elif provider == "azure-openai":
        if "JQQJ99" in key:
            cases["missing marker"] = key.replace("JQQJ99", "JQQJ88")
        else:
            cases["not hexadecimal"] = "g" + key[1:]
    elif provider == "cohere":
        cases["not alphanumeric"] = key[:20] + "-" + key[21:]
    return cases


@pytest.mark.parametrize("provider, index", ROWS)
def test_a_broken_key_is_exit_2_naming_the_shape(provider, index):
    key = GENERATED[provider][index]()
    for case, broken in _broken(provider, key).items():
        with pytest.raises(KeySourceError) as info:
            check_key(Secret(broken), provider, "env:LEAKED")
        message = info.value.one_line()
        label = formats.FORMATS[provider].label
        assert info.value.exit_code == 2
        assert "env:LEAKED" in message and f"{label} key (" in message, (case, message)
        assert broken[8:-4] not in message and key[8:-4] not in message, case


def test_openai_diagnosis_says_what_is_wrong_without_the_value():
    key = openai.new_key_value()
    with pytest.raises(KeySourceError) as info:
        check_key(Secret(key.replace("T3BlbkFJ", "T3BlbkFX")), "openai", "env:LEAKED")
    assert "has no T3BlbkFJ marker" in info.value.message and f"{len(key)} characters" in info.value.message
    with pytest.raises(KeySourceError) as info:
        check_key(Secret(anthropic.new_key_value()), "openai", "env:LEAKED")
    assert "Anthropic" in info.value.message and "--provider anthropic" in info.value.message


def test_without_a_provider_any_known_shape_is_accepted():
    for makers in GENERATED.values():
        key = makers[0]()
        assert check_key(Secret(key), None, "env:K").reveal() == key
    with pytest.raises(KeySourceError, match="a key of a known provider"):
        check_key(Secret("pw-" + secrets.token_urlsafe(30)), None, "env:K")


def test_a_provider_without_documented_shapes_is_not_checked():
    value = "custom-" + secrets.token_urlsafe(30)
    assert check_key(Secret(value), "some-plugin-provider", "env:K").reveal() == value


# -- a key where its NAME or PATH belongs --------------------------------------------------------------


@pytest.mark.parametrize("maker", [openai.new_key_value, anthropic.new_key_value, cohere.new_key_value,
                                   azure_openai.new_key_value, lambda: azure_openai.new_key_value("legacy"),
                                   google_api_key, lambda: "OPENAI_API_KEY=" + openai.new_key_value()])
def test_key_source_refuses_a_key_given_as_the_variable_name(maker):
    from cauterize.cli import key_source

    key = maker()
    with pytest.raises(KeySourceError) as info:
        key_source(key, None, False)
    assert info.value.message == "--key-env takes the NAME of the variable that holds the key, not the key itself"
    with pytest.raises(KeySourceError) as info:
        load_key(f"env:{key}")
    assert key not in info.value.one_line() and key[:8] not in info.value.one_line()
    from pathlib import Path

    with pytest.raises(KeySourceError, match="--key-file takes the PATH"):
        key_source(None, Path(key), False)


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "LEAKED", "my_key", "PROD_OPENAI_API_KEY_FROM_THE_LEAKED_DOTENV_FILE"])
def test_ordinary_variable_names_pass(name):
    from cauterize.cli import key_source

    assert key_source(name, None, False) == f"env:{name}"


def test_bad_references_never_echo_a_pasted_key():
    for value in (openai.new_key_value(), "OPENAI_API_KEY=" + openai.new_key_value(), cohere.new_key_value()):
        with pytest.raises(KeySourceError) as info:
            load_key(value)
        assert value not in info.value.one_line() and value[:8] not in info.value.one_line()


def test_the_pasted_replacement_key_is_parsed_and_checked(monkeypatch):
    import typer

    from cauterize.cli import _ask_for_key

    key = openai.new_key_value()
    answers = iter([anthropic.new_key_value(), f"OPENAI_API_KEY='{key}'\n"])
    monkeypatch.setattr(typer, "prompt", lambda *a, **k: next(answers))
    assert _ask_for_key("create a key by hand", "openai").reveal() == key
    monkeypatch.setattr(typer, "prompt", lambda *a, **k: "")
    assert _ask_for_key("create a key by hand", "openai") is None


# -- through the real CLI, as the on-call engineer runs it ------------------------------------------------


def _cauterize(*args, env, stdin=None):
    return subprocess.run(
        [sys.executable, "-c", "from cauterize.cli import entry; entry()", *args],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=120,
        input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
    )


@pytest.fixture
def openai_live():
    emulator = OpenAIEmulator()
    admin = emulator.add_admin_key()
    project = emulator.add_project("web")
    _, leaked = emulator.add_user_key(project, name="leaked")
    with serve(emulator) as app:
        yield emulator, {"OPENAI_BASE_URL": f"{app.url}/v1", "OPENAI_ADMIN_KEY": admin}, leaked


def _nowhere(key: str, done: subprocess.CompletedProcess) -> None:
    output = done.stdout + done.stderr
    for form in (key, key[8:-4], base64.b64encode(key.encode()).decode()[4:-4]):
        assert form not in output


def test_verify_reads_a_dotenv_line_as_the_live_key(openai_live):
    """The headline bug: the whole line was sent, the provider said 401, verify printed "dead"."""
    emulator, env, leaked = openai_live
    done = _cauterize("verify", "--provider", "openai", "--key-env", "LEAKED",
                      env={**env, "LEAKED": f"OPENAI_API_KEY={leaked}"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "live"
    sent = {c.headers.get("authorization") for c in emulator.calls("GET", "*/models")}
    assert sent == {f"Bearer {leaked}"}, "the bare key, not the line, reached the provider"
    _nowhere(leaked, done)


def test_verify_reads_an_exported_quoted_key_file(openai_live, tmp_path):
    _, env, leaked = openai_live
    path = tmp_path / "leaked.env"
    path.write_text(f"# from the laptop\nexport OPENAI_API_KEY='{leaked}'\r\n")
    done = _cauterize("verify", "--provider", "openai", "--key-file", str(path), "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["liveness"] == "live"
    piped = _cauterize("verify", "--provider", "openai", "--key-stdin", env=env, stdin=path.read_text())
    assert piped.returncode == 0 and piped.stdout.splitlines()[0] == "live", piped.stderr


def test_a_key_given_as_the_variable_name_is_exit_2_and_never_printed(openai_live):
    emulator, env, leaked = openai_live
    for command in (["verify", "--provider", "openai"], ["revoke", "--provider", "openai", "--yes"]):
        done = _cauterize(*command, "--key-env", leaked, env=env)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [(
            "cauterize: --key-env takes the NAME of the variable that holds the key, not the key itself "
            "(Key sources are env:VAR, file:PATH or stdin: (never the key itself).)"
        )]
        _nowhere(leaked, done)
    assert not emulator.requests


def test_a_malformed_key_is_exit_2_before_any_request(openai_live):
    emulator, env, leaked = openai_live
    for value in (leaked[:-6], f'OPENAI_API_KEY="{leaked}', leaked.replace("T3BlbkFJ", "T3BlbkFX")):
        done = _cauterize("verify", "--provider", "openai", "--key-env", "LEAKED", env={**env, "LEAKED": value})
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "env:LEAKED" in lines[0] and "Traceback" not in done.stderr
        _nowhere(leaked, done)
    assert not emulator.requests, "nothing reached the provider"
