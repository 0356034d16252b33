"""The matcher finds every encoded form of one key, at every alignment, and nothing else."""

from __future__ import annotations

import base64
import gzip
import json
import pickle
import secrets
import string
from urllib.parse import quote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cauterize.locate.matcher import Match, Matcher, gunzip
from cauterize.secret import Secret

TOKEN = string.ascii_letters + string.digits + "-_"
tails = st.text(alphabet=TOKEN, min_size=16, max_size=80)
prefixes = st.sampled_from(["sk-", "sk-proj-", "sk-ant-api03-", "AIza", ""])
noise = st.binary(max_size=200)


def make(prefix: str, tail: str) -> tuple[str, Matcher]:
    value = prefix + tail
    return value, Matcher(Secret(value))


@settings(max_examples=60, deadline=None)
@given(prefix=prefixes, tail=tails, before=noise, after=noise)
def test_raw_copy_found_at_its_offset(prefix, tail, before, after):
    value, matcher = make(prefix, tail)
    matches = matcher.scan(before + value.encode() + after)
    assert Match("raw", len(before), None, len(value)) in matches


@settings(max_examples=60, deadline=None)
@given(prefix=prefixes, tail=tails, align=st.integers(0, 2), lead=st.integers(0, 20),
       urlsafe=st.booleans(), after=noise)
def test_base64_found_at_every_alignment_and_alphabet(prefix, tail, align, lead, urlsafe, after):
    value, matcher = make(prefix, tail)
    payload = secrets.token_bytes(3 * lead + align) + value.encode() + after
    encoded = base64.urlsafe_b64encode(payload) if urlsafe else base64.b64encode(payload)
    assert "base64" in {match.encoding for match in matcher.scan(b"data: " + encoded + b"\n")}


@pytest.mark.parametrize("align", [0, 1, 2])
def test_base64_alignment_is_exhaustive(align):
    """Each of the three alignments is a different form, and each is found on its own."""
    value, matcher = make("sk-proj-", secrets.token_urlsafe(48))
    encoded = base64.b64encode(b"x" * align + value.encode())
    assert [match.encoding for match in matcher.scan(encoded)] == ["base64"]


def test_url_and_json_forms():
    value, matcher = make("sk-test-", "abc/def+ghi=jkl" + secrets.token_hex(12) + '"q\\')
    url_safe_slash = quote(value, safe="/").encode()
    url_strict = quote(value, safe="").encode()
    as_json = json.dumps({"key": value}).encode()
    escaped_slash = json.dumps(value).replace("/", "\\/").encode()
    for data, encoding in ((url_safe_slash, "url"), (url_strict, "url"), (as_json, "json"), (escaped_slash, "json")):
        assert encoding in {match.encoding for match in matcher.scan(b"?token=" + data + b"&x=1")}, data


@settings(max_examples=100, deadline=None)
@given(prefix=prefixes, tail=tails, other_tail=tails, align=st.integers(0, 2))
def test_other_key_with_same_prefix_is_not_a_hit(prefix, tail, other_tail, align):
    # Same length, so the other key cannot contain this one. Base64 forms cannot pin the last
    # character's low bits (they share a base64 digit with what follows), so differ before it.
    other_tail = other_tail[: len(tail)].ljust(len(tail), "x")
    assume(tail[:-1] != other_tail[:-1])
    _, matcher = make(prefix, tail)
    other = (prefix + other_tail).encode()
    for data in (other, base64.b64encode(b"\0" * align + other), json.dumps({"k": other.decode()}).encode()):
        assert matcher.scan(b"KEY=" + data + b"\n") == []


def test_each_copy_reported_with_offsets_in_order():
    value, matcher = make("sk-proj-", secrets.token_urlsafe(40))
    encoded = base64.b64encode(value.encode())
    data = b"a " + value.encode() + b" b " + encoded + b" c " + value.encode()
    matches = matcher.scan(data)
    assert [(m.encoding, m.offset) for m in matches] == [
        ("raw", 2), ("base64", 2 + len(value) + 3), ("raw", len(data) - len(value))
    ]
    assert all(data[m.offset:m.offset + m.length] for m in matches)


def test_gzip_content_scanned_with_container_marker():
    value, matcher = make("sk-proj-", secrets.token_urlsafe(40))
    data = gzip.compress(b"header\n" + value.encode() + b"\ntrailer")
    assert value.encode() not in data
    assert matcher.scan(data) == [Match("raw", 7, "gzip", len(value))]


def test_gzip_multi_member_and_corrupt_input():
    value, matcher = make("sk-proj-", secrets.token_urlsafe(40))
    two = gzip.compress(b"first member") + gzip.compress(value.encode())
    assert [m.container for m in matcher.scan(two)] == ["gzip"]
    assert matcher.scan(b"\x1f\x8b" + b"not really gzip") == []
    assert matcher.scan(gzip.compress(value.encode())[:-8]) != []  # trailer lost: what inflated is scanned


def test_gunzip_is_bounded():
    bomb = gzip.compress(b"\0" * (1 << 20))
    assert len(gunzip(bomb, limit=1000)) == 1000


def test_forms_raw_first_and_never_shown():
    value, matcher = make("sk-proj-", secrets.token_urlsafe(40))
    assert matcher.forms[0] == ("raw", value.encode())
    assert {name for name, _ in matcher.forms} <= {"raw", "base64", "url", "json"}
    assert 3 <= len([name for name, _ in matcher.forms if name == "base64"]) <= 6  # one or two alphabets
    assert value not in repr(matcher)
    with pytest.raises(TypeError):
        pickle.dumps(matcher)
    assert value not in matcher.redact(f"error: {value} rejected")
    assert matcher.contains(b"x" + value.encode()) and not matcher.contains(b"nothing")
