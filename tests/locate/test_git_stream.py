"""The one-pass scanner's stream handling: a fixed buffer, objects cut by its edges, large objects read
in overlapping windows, and the work split between two cat-file processes. Real git output throughout:
the streams are what ``git cat-file --batch`` printed for a repository built at test time."""

from __future__ import annotations

import base64
import gzip
import io
import os
import secrets
import subprocess
import zipfile
from pathlib import Path

import pytest

import cauterize.locate.git as git_scan
from cauterize.errors import GitError
from cauterize.locate.git import _Scanner, _split, scan_objects, scan_repo
from cauterize.locate.matcher import Matcher
from cauterize.secret import Secret


def git_env(when: int | None = None) -> dict[str, str]:
    """Git isolated from the user's configuration, with a fixed identity (and date)."""
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}
    if when is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"@{when} +0000"
    return env


def write_blob(git_dir: Path, content: bytes) -> str:
    done = subprocess.run(["git", "--git-dir", str(git_dir), "hash-object", "-w", "--stdin"], input=content,
                          capture_output=True, check=True, env=git_env())
    return done.stdout.decode().strip()


def import_blobs(git_dir: Path, contents: list[bytes]) -> None:
    """Many blobs at once, with one ``git fast-import`` (into a pack, as a real repository holds them)."""
    stream = b"".join(b"blob\ndata %d\n%s\n" % (len(content), content) for content in contents)
    subprocess.run(["git", "--git-dir", str(git_dir), "fast-import", "--quiet"], input=stream, check=True,
                   env=git_env())


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def cat_file(git_dir: Path, oids: list[str]) -> bytes:
    """What ``git cat-file --batch`` prints for ``oids``, in that order."""
    done = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "--batch"],
                          input="".join(f"{oid}\n" for oid in oids).encode(), capture_output=True, check=True)
    return done.stdout


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    fake_key = "sk-proj-" + secrets.token_urlsafe(48)
    git_dir = tmp_path_factory.mktemp("stream") / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", str(git_dir)], check=True, env=git_env())
    value = fake_key
    secret = Secret(value)
    matcher = Matcher(secret)
    filler = secrets.token_hex(3000).encode()  # 6000 bytes that hold no form of the key
    b64 = base64.b64encode(secrets.token_bytes(301) + value.encode() + secrets.token_bytes(40))
    blobs = {
        "raw-in-large": filler + value.encode() + filler,
        "b64-in-large": filler + b64 + filler,
        "raw-at-start": value.encode() + filler,
        "raw-at-end": filler + value.encode(),
        "small": b"token=" + value.encode() + b"\n",
        "gzip-large": gzip.compress(filler + value.encode() + filler * 2),  # Huffman-coded: no raw copy
        "empty": b"",
        "zip-large": zip_bytes({"noise.bin": secrets.token_bytes(7000), "config/prod.env": filler + value.encode()}),
    }
    oids = {name: write_blob(git_dir, content) for name, content in blobs.items()}
    assert cat_file(git_dir, [oids["empty"]]) == f"{oids['empty']} blob 0\n\n".encode()
    tiny = [b"%d\n" % index for index in range(1500)]
    import_blobs(git_dir, tiny)
    tiny_oids = [write_blob(git_dir, content) for content in tiny[:40]]  # already stored: ids only
    return git_dir, secret, matcher, oids, tiny_oids


EXPECTED = {
    "raw-in-large": {("raw", None)},
    "b64-in-large": {("base64", None)},
    "raw-at-start": {("raw", None)},
    "raw-at-end": {("raw", None)},
    "small": {("raw", None)},
    "gzip-large": {("raw", "gzip")},
    "zip-large": {("raw", "zip:config/prod.env")},
}


def hits_of(scanner_hits, oids) -> dict[str, set]:
    names = {oid: name for name, oid in oids.items()}
    return {names[oid]: hit.encodings for oid, hit in scanner_hits.items()}


def smallest_buffer(matcher: Matcher) -> int:
    return len(_Scanner(matcher, 0).buf)


def test_key_cut_by_every_window_edge_is_found(world):
    """Buffer sizes one byte apart put the window edge at every offset of the key in the large blobs."""
    git_dir, _, matcher, oids, tiny = world
    order = [oids["empty"], *tiny[:7], oids["raw-in-large"], oids["empty"], oids["b64-in-large"],
             oids["raw-at-start"], oids["raw-at-end"]]
    stream = cat_file(git_dir, order)
    low = smallest_buffer(matcher)
    assert len(matcher.forms[-1][1]) < 200 and low < 6000  # the large blobs do not fit
    for size in range(low, low + 200):
        found = hits_of(_Scanner(matcher, size).run(io.BytesIO(stream)), oids)
        assert found == {name: EXPECTED[name] for name in ("raw-in-large", "b64-in-large", "raw-at-start",
                                                           "raw-at-end")}, size


def test_key_in_a_small_object_cut_by_the_buffer_edge(world):
    """Whole objects cut by the buffer edge move to the front and are searched whole."""
    git_dir, _, matcher, oids, tiny = world
    order = [*tiny[:30], oids["small"], oids["empty"], *tiny[30:], oids["small"]]
    stream = cat_file(git_dir, order)
    low = smallest_buffer(matcher)
    for size in range(low, low + 120, 3):
        assert hits_of(_Scanner(matcher, size).run(io.BytesIO(stream)), oids) == {"small": EXPECTED["small"]}


def test_containers_larger_than_the_buffer_are_opened(world):
    """A gzip or zip blob larger than the buffer is collected (up to a limit) and opened whole."""
    git_dir, _, matcher, oids, tiny = world
    stream = cat_file(git_dir, [tiny[0], oids["gzip-large"], oids["empty"], oids["zip-large"], tiny[1]])
    assert len(stream) > 4 * smallest_buffer(matcher)
    found = hits_of(_Scanner(matcher, 0).run(io.BytesIO(stream)), oids)
    assert found == {"gzip-large": EXPECTED["gzip-large"], "zip-large": EXPECTED["zip-large"]}
    found = hits_of(_Scanner(matcher, 1 << 20).run(io.BytesIO(stream)), oids)  # and when they fit
    assert found == {"gzip-large": EXPECTED["gzip-large"], "zip-large": EXPECTED["zip-large"]}


def test_large_commit_keeps_its_headers(world, tmp_path):
    """A commit larger than the buffer is searched in windows; its hit keeps the headers (for the time)."""
    _, secret, matcher, _, _ = world
    git_dir = tmp_path / "commit.git"
    subprocess.run(["git", "init", "-q", "--bare", str(git_dir)], check=True, env=git_env())
    message = secrets.token_hex(4000) + f" {secret.reveal()} " + secrets.token_hex(10)
    tree = subprocess.run(["git", "--git-dir", str(git_dir), "mktree"], input=b"", capture_output=True,
                          check=True).stdout.decode().strip()
    commit = subprocess.run(["git", "--git-dir", str(git_dir), "commit-tree", tree, "-m", message],
                            capture_output=True, check=True, env=git_env(1_600_000_000)).stdout.decode().strip()
    hits = _Scanner(matcher, 0).run(io.BytesIO(cat_file(git_dir, [commit])))
    assert hits[commit].kind == "commit" and hits[commit].encodings == {("raw", None)}
    assert hits[commit].content.startswith(b"tree ") and b"committer Test" in hits[commit].content


def test_truncated_stream_is_an_error(world):
    git_dir, _, matcher, oids, tiny = world
    stream = cat_file(git_dir, [tiny[0], oids["raw-in-large"]])
    for cut in (len(stream) - 1, len(stream) - 2, len(stream) // 2, 10):
        with pytest.raises(GitError, match="ended in the middle of an object"):
            _Scanner(matcher, 0).run(io.BytesIO(stream[:cut]))


def test_two_workers_and_tiny_buffers_find_the_same(world, monkeypatch):
    """Every object of the store, split between two cat-file processes or not, in any buffer size."""
    git_dir, _, matcher, oids, _ = world
    expected = scan_objects(git_dir, matcher, repo="test")
    assert hits_of(expected.hits, oids) == EXPECTED
    monkeypatch.setattr(git_scan, "SPLIT_MIN", 0)
    monkeypatch.setattr(git_scan, "WORKERS", 2)
    for chunk in (0, 5000, 1 << 20):
        monkeypatch.setattr(git_scan, "CHUNK", chunk)
        scan = scan_objects(git_dir, matcher, repo="test")
        assert hits_of(scan.hits, oids) == EXPECTED
        assert scan.hits.keys() == expected.hits.keys()


def test_two_workers_give_the_same_findings(awkward, monkeypatch):
    one = scan_repo(awkward.repo.path, awkward.key)
    monkeypatch.setattr(git_scan, "SPLIT_MIN", 0)
    monkeypatch.setattr(git_scan, "WORKERS", 2)
    assert scan_repo(awkward.repo.path, awkward.key) == one


def test_split_keeps_order_and_balances_cost():
    objects = [(b"%040d" % index, size) for index, size in enumerate([10, 5000, 0, 70000, 300, 1, 1, 90000])]
    for parts in (1, 2, 3):
        runs = _split(objects, parts)
        assert len(runs) == parts
        assert [oid for run in runs for oid in run] == [oid for oid, _ in objects]
    many = [(b"%040d" % index, 1000) for index in range(1000)]
    assert [len(run) for run in _split(many, 2)] == [500, 500]
    assert _split([], 2) == [[], []]


def test_many_tiny_objects_and_empty_blobs(world):
    git_dir, _, matcher, oids, tiny = world
    stream = cat_file(git_dir, [oids["empty"]] * 50 + tiny * 20 + [oids["empty"], oids["small"]])
    for size in (0, 4096, 1 << 20):
        assert hits_of(_Scanner(matcher, size).run(io.BytesIO(stream)), oids) == {"small": EXPECTED["small"]}
    assert _Scanner(matcher, 0).run(io.BytesIO(b"")) == {}


def test_corrupt_object_is_a_git_error_not_a_hang(tmp_path, world):
    _, _, matcher, _, _ = world
    git_dir = tmp_path / "corrupt.git"
    subprocess.run(["git", "init", "-q", "--bare", str(git_dir)], check=True, env=git_env())
    oid = write_blob(git_dir, secrets.token_hex(20000).encode())
    loose = git_dir / "objects" / oid[:2] / oid[2:]
    data = bytearray(loose.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)  # the header inflates, the content does not
    loose.chmod(0o644)
    loose.write_bytes(bytes(data))
    with pytest.raises(GitError, match="^git cat-file of corrupt failed: "):
        scan_objects(git_dir, matcher, repo="corrupt")
