import base64
import json
import logging
import pickle
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cauterize.errors import KeySourceError, SecretLeakError
from cauterize.logs import RedactingFilter
from cauterize.secret import ELLIPSIS, KeySource, Secret, assert_clean, encoded_forms, fingerprint_of, load_key


def test_value_never_shows_in_repr_str_format_or_logs(leaked_key, caplog):
    secret = Secret(leaked_key)
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % (secret,), f"{secret:>10}"):
        assert leaked_key not in text
        assert secret.fingerprint in text
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("key %s", secret)
    assert leaked_key not in caplog.text


def test_secret_cannot_be_pickled(leaked_key):
    with pytest.raises(TypeError):
        pickle.dumps(Secret(leaked_key))


def test_fingerprint_and_redacted_form(leaked_key):
    secret = Secret(leaked_key + "\n")
    assert secret.reveal() == leaked_key
    assert secret.fingerprint.startswith("sha256:") and len(secret.fingerprint) == 7 + 16
    assert secret.fingerprint == fingerprint_of(leaked_key)
    assert secret.redacted == leaked_key[:8] + ELLIPSIS + leaked_key[-4:]
    assert Secret(leaked_key) == secret and secret.matches(leaked_key)


def test_key_sources(tmp_path, monkeypatch, leaked_key):
    monkeypatch.setenv("LEAK", leaked_key)
    assert load_key("env:LEAK").reveal() == leaked_key
    path = tmp_path / "k"
    path.write_text(leaked_key + "\n")
    assert load_key(f"file:{path}").reveal() == leaked_key
    import io

    assert load_key("stdin:", stdin=io.StringIO(leaked_key + "\n")).reveal() == leaked_key


@pytest.mark.parametrize(
    "reference, words",
    [
        ("env:NOPE_NOT_SET", "not set"),
        ("file:/nonexistent/key", "no such file"),
        ("file:/", "directory"),
        ("plain", "must start with"),
        ("env:", "names nothing"),
    ],
)
def test_bad_key_sources_name_the_problem(reference, words, monkeypatch):
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    with pytest.raises(KeySourceError, match=words):
        load_key(reference)


def test_a_key_pasted_as_source_is_not_echoed(leaked_key):
    with pytest.raises(KeySourceError) as info:
        KeySource.parse(leaked_key)
    assert leaked_key not in str(info.value)


def test_multi_line_source_is_refused(tmp_path, leaked_key):
    path = tmp_path / "k"
    path.write_text(f"{leaked_key}\nsecond\n")
    with pytest.raises(KeySourceError, match="more than one line"):
        load_key(f"file:{path}")


@settings(max_examples=60, deadline=None)
@given(
    key=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/+", min_size=20, max_size=120),
    prefix=st.binary(max_size=7),
    suffix=st.binary(max_size=7),
)
def test_base64_forms_found_at_every_alignment(key, prefix, suffix):
    forms = encoded_forms(key)["base64"]
    for alphabet in (base64.b64encode, base64.urlsafe_b64encode):
        blob = alphabet(prefix + key.encode() + suffix)
        assert any(form in blob for form in forms)


def test_url_and_json_forms(leaked_key):
    key = leaked_key + "/+"
    forms = encoded_forms(key)
    assert quote(key, safe="").encode() in forms["url"]
    assert json.dumps(key)[1:-1].replace("/", "\\/").encode() in forms["json"]


def test_assert_clean_refuses_any_encoding(leaked_key):
    secret = Secret(leaked_key)
    assert_clean("nothing here " + secret.fingerprint, "x")
    for blob in (leaked_key, base64.b64encode(b"ab" + leaked_key.encode()).decode()):
        with pytest.raises(SecretLeakError) as info:
            assert_clean("prefix " + blob, "the thing")
        assert leaked_key not in str(info.value)


def test_redacting_filter_scrubs_values(leaked_key):
    secret = Secret(leaked_key)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "sent %s", (leaked_key,), None)
    RedactingFilter().filter(record)
    assert leaked_key not in record.getMessage() and secret.fingerprint in record.getMessage()


def test_safe_environ_drops_variables_holding_a_live_secret(leaked_key):
    from cauterize.secret import safe_environ

    secret = Secret(leaked_key)
    env = safe_environ({"PATH": "/bin", "LEAK": leaked_key, "WRAPPED": f"Bearer {leaked_key}"})
    assert env == {"PATH": "/bin"}
    del secret
