"""scrub: each copy of a key becomes the placeholder in the copy's own encoding, and the file stays valid.

Keys are generated at test time; no key-shaped literal is written in this file.
"""

from __future__ import annotations

import base64
import gzip
import json
import pickle
import re
import secrets
import time
from urllib.parse import quote, unquote_to_bytes

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cauterize.scrub import Scrubber, scrub, scrub_name
from cauterize.secret import fingerprint_of


def new_key(prefix: str = "sk-proj-") -> bytes:
    return (prefix + secrets.token_urlsafe(54)).encode()


def slashy_key() -> bytes:
    """A key with '/' and '+' in it (the shape of an AWS secret access key): URL and JSON escape it."""
    while True:
        value = base64.b64encode(secrets.token_bytes(30))
        if b"/" in value and b"+" in value:
            return value


def marker(key: bytes) -> bytes:
    return f"***REMOVED {fingerprint_of(key)}***".encode()


def wrap(text: bytes, width: int, indent: bytes = b"", eol: bytes = b"\n") -> bytes:
    return b"".join(indent + text[at:at + width] + eol for at in range(0, len(text), width))


def unwrap(block: bytes) -> bytes:
    return b"".join(block.split())


KEY = new_key()
PLACEHOLDER = marker(KEY)


def test_raw_copies_become_the_placeholder():
    data = b"OPENAI_API_KEY=" + KEY + b"\n# again: " + KEY + b"\n"
    out, labels = scrub(data, KEY, PLACEHOLDER)
    assert out == b"OPENAI_API_KEY=" + PLACEHOLDER + b"\n# again: " + PLACEHOLDER + b"\n"
    assert labels == ["raw"]


def test_data_without_the_key_is_returned_as_is_and_fast():
    text = b"def f(x):\n    return '%s %20' % x  # a \\n comment\n" * 20_000  # ~1 MB of code-like text
    encoded = base64.encodebytes(secrets.token_bytes(700_000))  # ~1 MB of wrapped base64
    for data in (text, encoded, b"Fix the parser\n"):
        started = time.perf_counter()
        out, labels = scrub(data, KEY, PLACEHOLDER)
        assert out is data and labels == []
        assert time.perf_counter() - started < 0.25  # a few ms in practice: C-speed checks only


def test_a_near_miss_is_not_touched():
    near = KEY[:-2] + (b"A" if KEY[-2:-1] != b"A" else b"B") + KEY[-1:]
    for data in (b"k=" + near + b"\n", b"k: " + base64.b64encode(near) + b"\n", b"k=" + near.hex().encode(),
                 b"k=" + quote(near.decode(), safe="").encode(), near.decode().encode("utf-16-le")):
        out, labels = scrub(data, KEY, PLACEHOLDER)
        assert (out, labels) == (data, [])


# -- base64 -------------------------------------------------------------------------------------------


def secret_manifest(values: dict[str, bytes]) -> bytes:
    data = "".join(f"  {name}: {base64.b64encode(value).decode()}\n" for name, value in values.items())
    return f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\ntype: Opaque\ndata:\n{data}".encode()


@pytest.mark.parametrize("lead", [b"", b"x", b"xy"], ids=["align0", "align1", "align2"])
def test_kubernetes_secret_still_decodes_with_the_placeholder(lead):
    value = lead + KEY + b"\n"
    manifest = secret_manifest({"OPENAI_API_KEY": value, "USER": b"app-user"})
    out, labels = scrub(manifest, KEY, PLACEHOLDER)
    assert labels == ["base64"]
    data = yaml.safe_load(out)["data"]
    assert base64.b64decode(data["OPENAI_API_KEY"], validate=True) == lead + PLACEHOLDER + b"\n"
    assert base64.b64decode(data["USER"]) == b"app-user"
    before, after = manifest.split(b"OPENAI_API_KEY: ")
    assert out.startswith(before + b"OPENAI_API_KEY: ")
    assert out.endswith(after.split(b"\n", 1)[1])  # every other line byte-identical


def test_kubernetes_secret_with_a_wrapped_block_scalar():
    config = b'{"auths": {}, "token": "' + KEY + b'", "note": "' + b"n" * 120 + b'"}'
    encoded = base64.b64encode(config)
    manifest = (b"apiVersion: v1\nkind: Secret\ndata:\n  config.json: |\n" + wrap(encoded, 76, b"    ")
                + b"  other: aGVsbG8=\n")
    out, labels = scrub(manifest, KEY, PLACEHOLDER)
    assert labels == ["base64"]
    loaded = yaml.safe_load(out)["data"]
    assert base64.b64decode(unwrap(loaded["config.json"].encode())) == config.replace(KEY, PLACEHOLDER)
    block = out.split(b"|\n")[1].split(b"  other:")[0]
    lines = block.splitlines()
    assert all(line.startswith(b"    ") for line in lines)
    assert {len(line) for line in lines[:-1]} == {80} and len(lines[-1]) <= 80
    assert out.endswith(b"  other: aGVsbG8=\n")


@pytest.mark.parametrize("width", [64, 76])
@pytest.mark.parametrize("lead", [0, 1, 2])
def test_pem_like_block_rewrapped_at_its_width(width, lead):
    payload = secrets.token_bytes(60 + lead) + b"key=" + KEY + b";" + secrets.token_bytes(90)
    body = wrap(base64.b64encode(payload), width)
    pem = b"intro text\n-----BEGIN SECRET-----\n" + body + b"-----END SECRET-----\ntrailer\n"
    out, labels = scrub(pem, KEY, PLACEHOLDER)
    assert labels == ["base64"]
    head, rest = out.split(b"-----BEGIN SECRET-----\n")
    new_body, tail = rest.split(b"-----END SECRET-----\n")
    assert head == b"intro text\n" and tail == b"trailer\n"
    lines = new_body.splitlines()
    assert {len(line) for line in lines[:-1]} == {width} and 0 < len(lines[-1]) <= width
    assert base64.b64decode(unwrap(new_body), validate=True) == payload.replace(KEY, PLACEHOLDER)
    # The untouched part of the value keeps its characters: the lines before the key's line.
    unchanged = (60 + lead) * 4 // 3 // width
    assert lines[:unchanged] == body.splitlines()[:unchanged]


def test_indented_crlf_base64_cli_output():
    payload = b"export OPENAI_API_KEY=" + KEY + b"\r\nexport OTHER=1\r\n"
    block = wrap(base64.b64encode(payload), 76, b"\t  ", b"\r\n")
    data = b"BEGIN\r\n" + block + b"END\r\n"
    out, labels = scrub(data, KEY, PLACEHOLDER)
    assert labels == ["base64"]
    lines = out.split(b"\r\n")
    assert lines[0] == b"BEGIN" and lines[-2:] == [b"END", b""]
    assert all(line.startswith(b"\t  ") for line in lines[1:-2])
    assert b"\n" not in out.replace(b"\r\n", b"")
    assert base64.b64decode(unwrap(b"".join(lines[1:-2]))) == payload.replace(KEY, PLACEHOLDER)


def test_narrow_wrapping_is_found_too():
    payload = b"token " + KEY
    data = wrap(base64.b64encode(payload), 20)
    out, labels = scrub(data, KEY, PLACEHOLDER)
    assert labels == ["base64"] and {len(line) for line in out.splitlines()[:-1]} == {20}
    assert base64.b64decode(unwrap(out)) == b"token " + PLACEHOLDER


@pytest.mark.parametrize("lead", [0, 1, 2])
def test_url_safe_base64_without_padding(lead):
    payload = json.dumps({"sub": "x" * lead, "key": KEY.decode()}).encode()
    segment = base64.urlsafe_b64encode(payload).rstrip(b"=")
    token = b"eyJhbGciOiJub25lIn0." + segment + b"."
    data = b"Authorization: Bearer " + token + b"\n"
    out, labels = scrub(data, KEY, PLACEHOLDER)
    assert labels == ["base64"]
    new_segment = out.split(b".")[1]
    assert b"=" not in new_segment and not set(new_segment) & set(b"+/")
    decoded = base64.urlsafe_b64decode(new_segment + b"=" * (-len(new_segment) % 4))
    assert json.loads(decoded) == {"sub": "x" * lead, "key": PLACEHOLDER.decode()}
    assert out.startswith(b"Authorization: Bearer eyJhbGciOiJub25lIn0.") and out.endswith(b".\n")


def test_base64_of_text_holding_a_url_encoded_key():
    key = slashy_key()
    text = b"https://api.example.invalid/v1?key=" + quote(key.decode(), safe="").encode() + b"&x=1"
    data = b"ENDPOINT=" + base64.b64encode(text) + b"\n"
    out, labels = scrub(data, key, marker(key))
    assert labels == ["base64!url"]
    decoded = base64.b64decode(out[len(b"ENDPOINT="):-1])
    assert decoded.startswith(b"https://api.example.invalid/v1?key=") and decoded.endswith(b"&x=1")
    assert unquote_to_bytes(decoded.split(b"key=")[1].split(b"&")[0]) == marker(key)


def test_gzip_inside_base64_is_decompressed_scrubbed_and_rebuilt():
    stored = gzip.compress(b"KEY=" + KEY + b"\n", compresslevel=0, mtime=0)  # the key shows through
    data = b"blob: " + base64.b64encode(stored) + b"\n"
    out, labels = scrub(data, KEY, PLACEHOLDER)
    assert labels == ["base64!gzip!raw"]
    assert gzip.decompress(base64.b64decode(out[6:-1], validate=True)) == b"KEY=" + PLACEHOLDER + b"\n"
    # Compressed for real, the key's base64 form does not show: the value is not opened (documented).
    hidden = b"blob: " + base64.b64encode(gzip.compress(b"KEY=" + KEY + b"\n", mtime=0)) + b"\n"
    assert scrub(hidden, KEY, PLACEHOLDER) == (hidden, [])


# -- the other encodings ------------------------------------------------------------------------------


def test_percent_encoded_copies_keep_their_style():
    key = slashy_key()
    upper = quote(key.decode(), safe="").encode()
    lower = re.sub(rb"%[0-9A-F]{2}", lambda m: m.group(0).lower(), upper)
    every = "".join(f"%{byte:02x}" for byte in key).encode()
    data = b"a=" + upper + b"&b=" + lower + b"&c=" + every + b"\n"
    out, labels = scrub(data, key, marker(key))
    assert labels == ["url"]
    values = dict(part.split(b"=", 1) for part in out.strip().split(b"&"))
    assert {name: unquote_to_bytes(value) for name, value in values.items()} == {
        b"a": marker(key), b"b": marker(key), b"c": marker(key)}
    escapes = {name: re.findall(rb"%[0-9A-Fa-f]{2}", value) for name, value in values.items()}
    assert escapes[b"a"] and all(escape == escape.upper() for escape in escapes[b"a"])
    assert escapes[b"b"] and all(escape == escape.lower() for escape in escapes[b"b"])
    assert values[b"c"] == b"".join(f"%{byte:02x}".encode() for byte in marker(key))


def test_json_escaped_copies_keep_their_style():
    key = slashy_key()
    slashed = json.dumps(key.decode()).replace("/", "\\/")
    unicode = "".join(f"\\u{ord(char):04x}" for char in key.decode())
    document = f'{{"a": {slashed}, "b": "{unicode}"}}'.encode()
    out, labels = scrub(document, key, marker(key))
    assert labels == ["json"]
    assert json.loads(out) == {"a": marker(key).decode(), "b": marker(key).decode()}
    assert b'"b": "\\u002a\\u002a' in out


def test_json_escape_of_a_leading_slash_is_not_left_behind():
    rest = secrets.token_urlsafe(40).encode()
    key = b"/" + rest  # JSON's '\/' + the rest of the key holds the key raw
    document = b'{"a": "\\/' + rest + b'", "c": "\\\\/' + rest + b'"}'  # "c": a literal backslash, the key raw
    out, labels = scrub(document, key, marker(key))
    assert json.loads(out) == {"a": marker(key).decode(), "c": "\\" + marker(key).decode()}
    assert labels == ["json", "raw"]


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-16", "utf-32-le", "utf-32-be", "utf-32"])
def test_wide_text_stays_in_its_encoding(codec):
    text = f"[settings]\r\napi_key = {KEY.decode()}\r\nname = caf\u00e9 \u2603\r\n"
    data = text.encode(codec)
    out, labels = scrub(data, KEY, PLACEHOLDER)
    assert out.decode(codec) == text.replace(KEY.decode(), PLACEHOLDER.decode())
    assert out[:4] == data[:4] or codec.endswith(("-le", "-be"))
    assert len(labels) == 1 and labels[0].startswith("utf-")


def test_hex_copies_keep_their_case():
    data = b"lower=" + KEY.hex().encode() + b"\nupper=" + KEY.hex().upper().encode() + b"\n"
    out, labels = scrub(data, KEY, PLACEHOLDER)
    assert labels == ["hex"]
    assert out == b"lower=" + PLACEHOLDER.hex().encode() + b"\nupper=" + PLACEHOLDER.hex().upper().encode() + b"\n"


def test_gzip_is_rebuilt_with_its_header():
    content = b"log line\n" * 50 + b"Authorization: Bearer " + KEY + b"\n"
    data = gzip.compress(content, compresslevel=9, mtime=1_700_000_000)
    out, labels = scrub(data, KEY, PLACEHOLDER)
    assert labels == ["gzip!raw"]
    assert gzip.decompress(out) == content.replace(KEY, PLACEHOLDER)
    assert out[:10] == data[:10]  # magic, flags, mtime, XFL, OS


def test_archives_are_left_for_the_caller_to_strip():
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("app.env")
        info.size = len(KEY)
        archive.addfile(info, io.BytesIO(KEY))
    for data in (buffer.getvalue(), gzip.compress(buffer.getvalue())):
        assert scrub(data, KEY, PLACEHOLDER) == (data, [])


@settings(max_examples=80, deadline=None)
@given(before=st.binary(max_size=64), after=st.binary(max_size=64), align=st.integers(0, 2),
       width=st.sampled_from([0, 16, 60, 64, 76]), urlsafe=st.booleans())
def test_base64_round_trip_property(before, after, align, width, urlsafe):
    payload = secrets.token_bytes(align) + KEY + secrets.token_bytes(5)
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(payload)
    value = wrap(encoded, width) if width else encoded + b"\n"
    data = b"# " + before.replace(b"\n", b" ") + b"\n" + value + b";;\n" + after  # "# ": not a zip or gzip
    out, labels = scrub(data, KEY, PLACEHOLDER)
    assert "base64" in labels
    new_value = out[len(before) + 3:len(out) - len(after) - 3]
    assert out.endswith(b";;\n" + after)
    decode = base64.urlsafe_b64decode if urlsafe else base64.b64decode
    assert decode(unwrap(new_value)) == payload.replace(KEY, PLACEHOLDER)


# -- names and the object itself ----------------------------------------------------------------------


def test_scrub_name_replaces_raw_and_percent_encoded_copies():
    name_placeholder = b"REMOVED-" + fingerprint_of(KEY)[7:].encode()
    renamed = scrub_name(b"config/leak-" + KEY + b".txt", KEY, name_placeholder)
    assert renamed == b"config/leak-" + name_placeholder + b".txt"
    assert scrub_name(KEY + b"/settings.py", KEY, name_placeholder) == name_placeholder + b"/settings.py"
    encoded = "".join(f"%{byte:02X}" for byte in KEY).encode()
    assert scrub_name(b"cache/" + encoded, KEY, name_placeholder) == b"cache/" + name_placeholder
    assert scrub_name(b"src/app.py", KEY, name_placeholder) == b"src/app.py"
    with pytest.raises(ValueError, match="name placeholder"):
        scrub_name(b"x", KEY, b"a/b")


def test_the_scrubber_shows_no_key_and_refuses_a_placeholder_holding_it():
    scrubber = Scrubber(KEY, PLACEHOLDER)
    assert KEY.decode() not in repr(scrubber)
    with pytest.raises(TypeError):
        pickle.dumps(scrubber)
    with pytest.raises(ValueError) as caught:
        Scrubber(KEY, b"x" + KEY)
    assert KEY.decode() not in str(caught.value)
