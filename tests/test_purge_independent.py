"""Purge is verified by a second method that does not share the matcher's limits (issue 18).

The forms the independent check found surviving a purge that called itself verified: base64
wrapped at 76 columns, a committed .bz2, a PNG zTXt chunk, UTF-16 text. Each is now removed, and a
fresh clone of the remote is searched here with this file's own decoders (``base64 -d``,
``bunzip2``, PNG chunks + zlib, ``iconv``). A form no decoder of the matcher knows, added to the
independent search only, is removed from a file; in a commit message, where no rewrite can clean
it, it makes the purge fail with nothing pushed. Real git, real git-filter-repo.
"""

from __future__ import annotations

import base64
import bz2
import codecs
import secrets
import struct
import subprocess
import zlib

import pytest
from test_purge import T0, commit, git, refs

from cauterize import purge_verify
from cauterize.errors import PurgeError
from cauterize.locate.gitcmd import file_url
from cauterize.purge import purge_repo
from cauterize.secret import Secret


def _png_with(text: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0\0")
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"zTXt", b"Comment\0\0" + zlib.compress(text))
            + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


def _png_texts(data: bytes) -> list[bytes]:
    out, pos = [], 8
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8:pos + 8 + length]
        if kind == b"zTXt":
            out.append(zlib.decompress(body.partition(b"\0")[2][1:]))
        pos += 12 + length
    return out


def _decoded_views(data: bytes) -> list[bytes]:
    """What a person gets from one blob with the usual tools."""
    views = [data]
    try:
        views.append(base64.b64decode(b"".join(data.split()), validate=True))
    except ValueError:
        pass
    if data.startswith(b"BZh"):
        views.append(bz2.decompress(data))
    if data.startswith(b"\x89PNG"):
        views += _png_texts(data)
    if data.startswith(codecs.BOM_UTF16_LE):
        views.append(data.decode("utf-16").encode())
    return views


def _fresh_clone_yields(remote, value: str, tmp_path) -> list[str]:
    clone = tmp_path / "fresh.git"
    git(tmp_path, "clone", "-q", "--mirror", file_url(remote), str(clone))
    found = []
    for line in git(clone, "rev-list", "--objects", "--all").splitlines():
        oid = line.split()[0]
        data = subprocess.run(["git", "cat-file", "-p", oid], cwd=clone, capture_output=True, check=True).stdout
        if any(value.encode() in view for view in _decoded_views(data)):
            found.append(line)
    return found


@pytest.fixture
def repo(tmp_path):
    value = "sk-proj-" + secrets.token_urlsafe(60)
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    git(work, "remote", "add", "origin", str(remote))
    commit(work, {"README.md": "# app\n"}, "initial", T0)
    return value, remote, work


def test_forms_the_matcher_misses_are_gone_from_a_fresh_clone(repo, tmp_path):
    value, remote, work = repo
    for folder in ("deploy", "backup", "docs", "notes"):
        (work / folder).mkdir()
    env_file = f"# settings\nOPENAI_API_KEY={value}\nDEBUG=0\n".encode() * 3
    commit(work, {
        "deploy/env.b64": base64.encodebytes(env_file),  # wrapped at 76 columns
        "backup/dump.sql.bz2": bz2.compress(f"INSERT INTO keys VALUES ('{value}');\n".encode()),
        "docs/screenshot.png": _png_with(f"key: {value}".encode()),
        "notes/windows.txt": codecs.BOM_UTF16_LE + f"key={value}\r\n".encode("utf-16-le"),
    }, "awkward copies", T0 + 60)
    commit(work, {"more.txt": "later\n"}, "later", T0 + 120)
    git(work, "push", "-q", "origin", "main")
    (tmp_path / "before").mkdir()
    assert len(_fresh_clone_yields(remote, value, tmp_path / "before")) == 4  # each tool finds its copy

    result = purge_repo(remote, Secret(value), workdir=tmp_path / "wd", push=True)

    assert result.verified and result.verified_by == ["matcher", "decoders"] and result.unproven == []
    assert _fresh_clone_yields(remote, value, tmp_path) == []
    removed = " ".join(result.files_removed)
    assert "backup/dump.sql.bz2" in removed and "docs/screenshot.png" in removed
    # Text stays text: the wrapped base64 still decodes (to the placeholder), the UTF-16 file still reads.
    placeholder = f"***REMOVED {Secret(value).fingerprint}***"
    b64 = subprocess.run(["git", "cat-file", "-p", "main:deploy/env.b64"], cwd=remote, capture_output=True,
                         check=True).stdout
    assert max(len(line) for line in b64.splitlines()) == 76
    assert base64.b64decode(b64) == env_file.replace(value.encode(), placeholder.encode())
    wide = subprocess.run(["git", "cat-file", "-p", "main:notes/windows.txt"], cwd=remote, capture_output=True,
                          check=True).stdout
    assert wide.decode("utf-16") == f"key={placeholder}\r\n"


def _reversed(data: bytes, size: int):
    """A format only the independent search is taught here: the bytes reversed."""
    yield "reversed", data[::-1]


def test_a_form_only_the_independent_search_knows(repo, tmp_path):
    value, remote, work = repo
    commit(work, {"odd.txt": f"token={value}\n"[::-1]}, "odd", T0 + 60)
    git(work, "push", "-q", "origin", "main")
    # Without the decoder, neither search sees it: the purge has nothing to do.
    assert purge_repo(remote, Secret(value), workdir=tmp_path / "wd0", push=False).commits_rewritten == 0
    with purge_verify.registered(purge_verify.Decoder("reversed", _reversed)):
        result = purge_repo(remote, Secret(value), workdir=tmp_path / "wd", push=True)
    assert result.verified and any("odd.txt" in line and "reversed" in line for line in result.files_removed)
    listing = git(remote, "ls-tree", "-r", "--name-only", "main").split()
    assert "odd.txt" not in listing


def test_a_surviving_copy_fails_the_verification_and_nothing_is_pushed(repo, tmp_path):
    value, remote, work = repo
    commit(work, {"a.txt": "a\n"}, f"note {value[::-1]}", T0 + 60)  # a message no rewrite can clean
    git(work, "push", "-q", "origin", "main")
    before = refs(remote)
    with purge_verify.registered(purge_verify.Decoder("reversed", _reversed)):
        with pytest.raises(PurgeError, match="the independent search finds the key after the rewrite") as raised:
            purge_repo(remote, Secret(value), workdir=tmp_path / "wd", push=True)
    assert "reversed" in str(raised.value) and value not in str(raised.value)
    assert refs(remote) == before
    assert list((tmp_path / "wd").iterdir()) == []
