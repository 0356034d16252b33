"""purge_verify against real git: every form a copy of a key can take that the matcher does not know,
each found by decoding, and the forms that are not copies left alone.

Keys are generated at test time; no key-shaped literal is written in this file.
"""

from __future__ import annotations

import base64
import bz2
import codecs
import gzip
import io
import json
import lzma
import os
import quopri
import secrets
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from cauterize import purge_verify
from cauterize.errors import GitError
from cauterize.purge_verify import Decoder, Survivor, check, reachable, registered, verify_objects, verify_refs
from cauterize.secret import Secret

T0 = 1_700_000_000


def git(cwd: Path, *args: str, env: dict | None = None, input: bytes | None = None) -> str:
    full = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_AUTHOR_NAME="Dev",
                GIT_AUTHOR_EMAIL="dev@example.invalid", GIT_COMMITTER_NAME="Dev",
                GIT_COMMITTER_EMAIL="dev@example.invalid", GIT_AUTHOR_DATE=f"@{T0} +0000",
                GIT_COMMITTER_DATE=f"@{T0} +0000")
    full.update(env or {})
    done = subprocess.run(["git", *args], cwd=cwd, env=full, capture_output=True, check=False, input=input)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode().strip()


def new_key() -> str:
    return "sk-proj-" + secrets.token_urlsafe(48)


def percent(text: str) -> str:
    """Every character percent-encoded (the key's characters need no escaping: quote() leaves them)."""
    return "".join(f"%{byte:02X}" for byte in text.encode())


def wrapped(data: bytes, width: int, indent: str) -> bytes:
    text = base64.b64encode(data).decode()
    return "".join(f"{indent}{text[i:i + width]}\n" for i in range(0, len(text), width)).encode()


def png(*chunks: tuple[bytes, bytes]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0\0")
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunk(k, b) for k, b in
                                            ((b"IHDR", header), *chunks, (b"IDAT", pixels), (b"IEND", b"")))


def zipped(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def tarred(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


def forms(key: str) -> dict[str, tuple[bytes, str]]:
    """path -> (content, the where verify_objects must report for that blob)."""
    raw = key.encode()
    line = b"Authorization: Bearer " + raw + b"\n"
    return {
        "k8s/secret-76.yaml": (b"apiVersion: v1\nkind: Secret\ndata:\n  env: |\n"
                               + wrapped(b"OPENAI_API_KEY=" + raw + b"\nDEBUG=1\n", 76, "    "), "base64 (wrapped)"),
        "certs/bundle-64.pem": (b"-----BEGIN DATA-----\n" + wrapped(os.urandom(50) + raw + os.urandom(30), 64, "  ")
                                + b"-----END DATA-----\n", "base64 (wrapped)"),
        "mime/crlf.eml": (wrapped(os.urandom(7) + raw, 76, "").replace(b"\n", b"\r\n"), "base64 (wrapped)"),
        "dumps/key.bz2": (bz2.compress(line), "bzip2"),
        "dumps/key.xz": (lzma.compress(line * 3 + os.urandom(64)), "xz"),
        "dumps/key.lzma": (lzma.compress(line + os.urandom(64), format=lzma.FORMAT_ALONE), "lzma"),
        "dumps/key.zlib": (zlib.compress(line), "zlib"),
        "dist/bundle.zip": (zipped({"logs/app.log.gz": gzip.compress(line), "README": b"hi\n"}),
                            "zip:logs/app.log.gz!gzip"),
        "dist/bundle.tar": (tarred({"config/.env": line, "other": b"x"}), "tar:config/.env"),
        "img/ztxt.png": (png((b"zTXt", b"Comment\0\0" + zlib.compress(line))), "png zTXt!zlib"),
        "img/itxt.png": (png((b"iTXt", b"Comment\0\x01\0en\0Comment\0" + zlib.compress(line))), "png iTXt!zlib"),
        "docs/utf16le.txt": (line.decode().encode("utf-16"), "utf-16le"),
        "docs/utf16be.txt": (line.decode().encode("utf-16-be"), "utf-16be"),
        "docs/utf32.txt": (line.decode().encode("utf-32-le"), "utf-32le"),
        "web/percent.url": (b"https://api.example.invalid/v1?key="
                            + percent(key).encode() + b"\n", "url"),
        "web/hex.txt": (b"token: " + raw.hex().encode() + b"\n", "hex"),
        "web/escaped.json": (json.dumps({"key": "".join(f"\\u{ord(c):04x}" for c in key)}).replace("\\\\", "\\")
                             .encode(), "json-escape"),
        "web/entities.html": (b"<p>" + "".join(f"&#{ord(c)};" for c in key).encode() + b"</p>\n", "html-entities"),
        "mail/qp.eml": (quopri.encodestring(b"Dear team, the production credential is " + raw
                                            + b" and it must be rotated quickly please.\n"), "quoted-printable"),
        "web/base32.txt": (base64.b32encode(raw) + b"\n", "base32"),
        "nested/b64-of-gzip.txt": (base64.b64encode(gzip.compress(line + os.urandom(40))) + b"\n", "base64!gzip"),
        "docs/report.pdf": (b"%PDF-1.4\n1 0 obj <</Filter /FlateDecode>>\nstream\n" + zlib.compress(line * 2)
                            + b"\nendstream\n" + os.urandom(16) + b"\n", "zlib at byte 49"),
    }


@dataclass
class Repo:
    work: Path
    git_dir: Path
    key: Secret
    blobs: dict[str, str]  # path -> blob id
    commits: dict[str, str]
    survivors: list[Survivor]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    value = new_key()
    work = tmp_path_factory.mktemp("verify") / "work"
    git(work.parent, "init", "-q", "-b", "main", str(work))
    files = {path: content for path, (content, _) in forms(value).items()}
    # not copies: another key sharing a long prefix, and purge's placeholder
    files["other/similar.env"] = f"OPENAI_API_KEY={value[:-3]}{'xyz' if value[-3:] != 'xyz' else 'abc'}\n".encode()
    files["other/placeholder.py"] = b"API_KEY = '***REMOVED sha256:0123456789abcdef***'\n"
    files[f"names/{value}.txt"] = b"named after the key\n"
    files[f"names/{percent(value)}.bak"] = b"named after the key, percent-encoded\n"
    for path, content in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_bytes(content)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "fixtures")
    commits = {"fixtures": git(work, "rev-parse", "HEAD")}
    git(work, "commit", "-q", "--allow-empty", "-m", "tidy", env={"GIT_AUTHOR_EMAIL": f"{value}@example.invalid"})
    commits["author"] = git(work, "rev-parse", "HEAD")
    encoded = base64.b64encode(f"debug: tried {value}".encode()).decode()
    git(work, "commit", "-q", "--allow-empty", "-m", f"notes\n\npayload {encoded}")
    commits["message"] = git(work, "rev-parse", "HEAD")
    git(work, "tag", "-a", value, "-m", "release")
    commits["tag"] = git(work, "rev-parse", f"refs/tags/{value}")
    blobs = {path: git(work, "rev-parse", f"HEAD:{path}") for path in files}
    secret = Secret(value)
    survivors = verify_objects(work / ".git", secret, label="work")
    return Repo(work, work / ".git", secret, blobs, commits, survivors)


def wheres(repo: Repo, oid: str) -> set[str]:
    return {s.where for s in repo.survivors if s.object == oid}


@pytest.mark.parametrize("path", list(forms("x" * 64)))
def test_each_form_the_matcher_misses_is_found(repo, path):
    expected = forms(repo.key.reveal())[path][1]
    assert expected in wheres(repo, repo.blobs[path])
    assert not any(s.unsearched for s in repo.survivors if s.object == repo.blobs[path])


def test_names_headers_and_messages_are_searched(repo):
    names = {s.where for s in repo.survivors if s.kind == "tree"}
    assert names == {"tree entry name", "tree entry name!url"}
    assert wheres(repo, repo.commits["author"]) == {"author"}
    assert wheres(repo, repo.commits["message"]) == {"commit message!base64"}
    assert wheres(repo, repo.commits["tag"]) == {"tag name"}


def test_refs_named_after_the_key(repo):
    value, fingerprint = repo.key.reveal(), repo.key.fingerprint
    found = verify_refs([f"refs/heads/backup-{value}", f"refs/tags/{percent(value)}", "refs/heads/main",
                         f"refs/heads/{base64.b64encode(value.encode()).decode()}"], repo.key)
    assert [s.where for s in found] == [
        f"ref name refs/heads/[{fingerprint}] (base64)",
        f"ref name refs/heads/backup-[{fingerprint}]",
        f"ref name refs/tags/[{fingerprint}] (url)",
    ]
    assert {(s.object, s.kind) for s in found} == {("", "ref")}
    names = git(repo.work, "for-each-ref", "--format=%(refname)").splitlines()
    assert [s.where for s in verify_refs(names, repo.key)] == [f"ref name refs/tags/[{fingerprint}]"]


def test_copies_that_are_not_copies_are_not_reported(repo):
    for path in ("other/similar.env", "other/placeholder.py"):
        assert not wheres(repo, repo.blobs[path])
    reported = {s.object for s in repo.survivors}
    expected = {repo.blobs[path] for path in forms("x")} | {repo.commits[c] for c in ("author", "message", "tag")}
    trees = {s.object for s in repo.survivors if s.kind == "tree"}
    assert reported - trees == expected


def test_survivors_never_show_the_key(repo):
    value = repo.key.reveal()
    shown = repr(repo.survivors) + json.dumps([s.where for s in repo.survivors])
    for form in (value, quote(value, safe=""), base64.b64encode(value.encode()).decode()[:40], value[8:30]):
        assert form not in shown


def test_a_clean_repository_verifies_clean(tmp_path):
    work = tmp_path / "clean"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / "README.md").write_text("# nothing to see\n")
    (work / "data.b64").write_bytes(wrapped(os.urandom(3000), 76, "  "))
    (work / "blob.gz").write_bytes(gzip.compress(os.urandom(5000)))
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "clean")
    key = Secret(new_key())
    assert verify_objects(work / ".git", key, label="clean") == []
    assert verify_refs(["refs/heads/main", "refs/tags/v1.0"], key) == []


def test_only_the_objects_named_are_searched_and_unreachable_ones_are_not_by_default(tmp_path):
    work = tmp_path / "w"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    value = new_key()
    git(work, "commit", "-q", "--allow-empty", "-m", "root")
    loose = git(work, "hash-object", "-w", "--stdin", input=f"KEY={value}\n".encode())
    secret = Secret(value)
    assert loose.encode() not in reachable(work / ".git", label="w")
    assert verify_objects(work / ".git", secret, label="w") == []
    assert verify_objects(work / ".git", secret, [loose.encode()], label="w") == [Survivor(loose, "blob", "raw")]
    missing = verify_objects(work / ".git", secret, [b"0" * 40], label="w")
    assert missing == [Survivor("0" * 40, "", "missing from the object store", unsearched=True)]


def test_objects_larger_than_the_buffer_and_than_the_whole_limit(tmp_path, monkeypatch):
    work = tmp_path / "w"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    value = new_key()
    big = os.urandom(200_000).hex().encode() + b"\n" + bz2.compress(value.encode())
    blob = git(work, "hash-object", "-w", "--stdin", input=big)
    secret = Secret(value)
    monkeypatch.setattr(purge_verify, "CHUNK", 64 << 10)
    found = verify_objects(work / ".git", secret, [blob.encode()], label="w")
    assert [s.where for s in found] == ["bzip2 at byte 400001"]
    raw = os.urandom(150_000).hex().encode() + value.encode() + b"\n" * 1000
    blob = git(work, "hash-object", "-w", "--stdin", input=raw)
    monkeypatch.setattr(purge_verify, "WHOLE_LIMIT", 100 << 10)
    found = verify_objects(work / ".git", secret, [blob.encode()], label="w")
    assert [(s.where, s.unsearched) for s in found] == [
        ("not decoded: larger than 0 MiB, searched raw only", True), ("raw", False)]


def test_a_decoder_registered_for_a_made_up_format_finds_what_nothing_else_does(tmp_path):
    value = new_key()
    rot13 = codecs.encode(value, "rot13").encode()
    assert check("blob", b"token=" + rot13, value) == []
    decoder = Decoder("rot13", lambda data, size: [("rot13", codecs.encode(data.decode("latin-1"), "rot13")
                                                    .encode("latin-1"))], repeat=False)
    work = tmp_path / "w"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / "obfuscated.txt").write_bytes(b"token=" + rot13 + b"\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "x")
    with registered(decoder):
        assert check("blob", b"token=" + rot13, value) == ["rot13"]
        assert [s.where for s in verify_objects(work / ".git", Secret(value), label="w")] == ["rot13"]
    assert decoder not in purge_verify.DECODERS
    assert verify_objects(work / ".git", Secret(value), label="w") == []


BOMB = """
import resource, sys, time, zlib
from cauterize.purge_verify import check
packer = zlib.compressobj(9, zlib.DEFLATED, 31)
bomb = b"".join(packer.compress(b"\\0" * (1 << 20)) for _ in range(1024)) + packer.flush()  # 1 GiB in 1 MiB
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
print(check("blob", bomb, sys.stdin.read()))
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_a_decompression_bomb_is_cut_reported_and_cheap():
    done = subprocess.run([sys.executable, "-c", BOMB], input=new_key().encode(), capture_output=True, check=True,
                          timeout=120)
    where, measured = done.stdout.decode().splitlines()
    seconds, grown_kib = measured.split()
    assert where == "['gzip: searched its first 64 MiB only']"
    assert float(seconds) < 10
    assert int(grown_kib) < 512 << 10  # the 1 GiB is never held


def test_the_decompression_budget_per_object_is_reported(monkeypatch):
    monkeypatch.setattr(purge_verify, "MEMBER_LIMIT", 1 << 20)
    monkeypatch.setattr(purge_verify, "TOTAL_LIMIT", 3 << 20)
    value = new_key()
    members = {f"part{i}.bin": b"\0" * (1 << 20) for i in range(6)}
    members["z-last.env"] = f"KEY={value}\n".encode()  # past the budget: not searched, and said so
    (where,) = check("blob", zipped(members), value)
    assert where.startswith("zip:part") and where.endswith(": not searched: 3 MiB decompressed in this object")


def test_what_cannot_be_opened_is_reported():
    value = new_key()
    encrypted = bytearray(zipped({"secret.env": b"x" * 100}))
    encrypted[6] |= 0x1  # the local header's encryption flag
    central = encrypted.rfind(b"PK\x01\x02")
    encrypted[central + 8] |= 0x1
    assert check("blob", bytes(encrypted), value) == ["zip:secret.env (encrypted): not searched"]
    assert check("blob", b"\x1f\x8b\x08\0" + os.urandom(100), value) == ["gzip (malformed): not searched"]


def test_an_archive_member_named_after_the_key_is_shown_by_fingerprint():
    value = new_key()
    secret = Secret(value)
    where = check("blob", zipped({f"{value}.gz": gzip.compress(value.encode())}), secret)
    assert {"zip member names", f"zip:[{secret.fingerprint}]!gzip"} <= set(where)
    assert not any(value in line or value[8:40] in line for line in where)


def test_signatures_are_searched_raw_only_and_keep_the_prefilter_quiet():
    value = new_key()
    signature = b"-----BEGIN PGP SIGNATURE-----\n \n " + b"\n ".join(wrapped(os.urandom(400), 64, "").split())
    commit = (b"tree " + b"1" * 40 + b"\nparent " + b"2" * 40 + b"\nauthor A <a@b> 1 +0000\n"
              b"committer A <a@b> 1 +0000\ngpgsig " + signature + b"\n -----END PGP SIGNATURE-----\n\nmsg\n")
    assert check("commit", commit, value) == []
    assert check("commit", commit.replace(b"msg", base64.b64encode(value.encode())), value) == [
        "commit message!base64"]


def test_errors_name_the_repository_not_the_key(tmp_path):
    value = new_key()
    with pytest.raises(GitError) as caught:
        verify_objects(tmp_path, Secret(value), label="nowhere")
    assert "nowhere" in str(caught.value) and value not in str(caught.value)


def test_the_key_reaches_no_child_process(repo, monkeypatch):
    seen: list[list[str]] = []
    real = subprocess.Popen

    class Recording(real):
        def __init__(self, args, *rest, **kwargs):
            seen.append([os.fspath(arg) for arg in args])
            env = kwargs.get("env") or {}
            seen.append(list(env.values()))
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    verify_objects(repo.git_dir, repo.key, label="work")
    assert seen and not any(repo.key.reveal() in arg for argv in seen for arg in argv)


def test_the_prefilter_drops_nothing_the_decoders_find(repo):
    """A decoder registered beyond the built-in ones turns the prefilter and the view screening off:
    every view then meets every decoder. The answers must not change."""
    nothing = Decoder("nothing", lambda data, size: ())
    contents = [content for content, _ in forms(repo.key.reveal()).values()]
    contents += [os.urandom(20_000), gzip.compress(os.urandom(20_000)), zipped({"a": os.urandom(5000)})]
    screened = [check("blob", content, repo.key) for content in contents]
    with registered(nothing):
        assert [check("blob", content, repo.key) for content in contents] == screened
        unscreened = verify_objects(repo.git_dir, repo.key, [oid.encode() for oid in repo.blobs.values()], label="w")
    assert unscreened == [s for s in repo.survivors if s.kind == "blob"]


def test_object_ids_may_be_given_as_text(repo):
    blob = repo.blobs["dumps/key.bz2"]
    assert verify_objects(repo.git_dir, repo.key, [blob], label="w") == [Survivor(blob, "blob", "bzip2")]
