"""run_filter against real git and real git-filter-repo: a mirror whose history leaked one key in
every place a leak lands (a file, a Kubernetes Secret, a URL, a file name, a directory name, an
author email, a commit message, a tag message, a binary file), rewritten from the leak on only.

Keys are generated at test time; no key-shaped literal is written in this file.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from cauterize import purge_filter
from cauterize.errors import PurgeError
from cauterize.locate.git import scan_objects
from cauterize.locate.gitcmd import file_url
from cauterize.locate.matcher import Matcher
from cauterize.purge_filter import run_filter
from cauterize.secret import Secret

T0 = 1_700_000_000
ZERO = "0" * 40


def git(cwd: Path, *args: str, when: int | None = None, env: dict | None = None, input: bytes | None = None) -> str:
    full = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_AUTHOR_NAME="Dev",
                GIT_AUTHOR_EMAIL="dev@example.invalid", GIT_COMMITTER_NAME="Dev",
                GIT_COMMITTER_EMAIL="dev@example.invalid")
    full.update(env or {})
    if when is not None:
        full["GIT_AUTHOR_DATE"] = full["GIT_COMMITTER_DATE"] = f"@{when} +0000"
    done = subprocess.run(["git", *args], cwd=cwd, env=full, capture_output=True, check=False, input=input)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode(errors="surrogateescape").strip()


def commit(work: Path, files: dict[str, str | bytes | None], message: str, when: int, **kwargs) -> str:
    for name, content in files.items():
        if content is None:
            git(work, "rm", "-q", name)
        else:
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_bytes(content.encode() if isinstance(content, str) else content)
            git(work, "add", name)
    git(work, "commit", "-q", "--allow-empty", "-m", message, when=when, **kwargs)
    return git(work, "rev-parse", "HEAD")


def signed_commit(work: Path, message: str, when: int) -> str:
    """A commit carrying a ``gpgsig`` header (its signature is not checked: ids depend on bytes only)."""
    tree, parent = git(work, "rev-parse", "HEAD^{tree}"), git(work, "rev-parse", "HEAD")
    ident = f"Dev <dev@example.invalid> {when} +0000"
    body = (f"tree {tree}\nparent {parent}\nauthor {ident}\ncommitter {ident}\n"
            f"gpgsig -----BEGIN PGP SIGNATURE-----\n \n {base64.b64encode(secrets.token_bytes(48)).decode()}\n"
            f" -----END PGP SIGNATURE-----\n\n{message}\n")
    oid = git(work, "hash-object", "-t", "commit", "-w", "--stdin", input=body.encode())
    git(work, "update-ref", "refs/heads/main", oid)
    return oid


def secret_yaml(value: str) -> str:
    encoded = base64.b64encode(value.encode()).decode()
    return (f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\ntype: Opaque\ndata:\n"
            f"  OPENAI_API_KEY: {encoded}\n  USER: {base64.b64encode(b'app').decode()}\n")


@dataclass
class Leak:
    mirror: Path
    key: Secret
    commits: dict[str, str]
    rewrite: set[str]
    strip: set[str]

    @property
    def value(self) -> str:
        return self.key.reveal()

    @property
    def fingerprint_hex(self) -> str:
        return self.key.fingerprint.split(":")[1]

    @property
    def placeholder(self) -> bytes:
        return f"***REMOVED {self.key.fingerprint}***".encode()

    @property
    def name_placeholder(self) -> bytes:
        return f"REMOVED-{self.fingerprint_hex}".encode()


@pytest.fixture
def leak(tmp_path) -> Leak:
    # A '+' in the key: its percent-encoded form differs from the raw one, and it is a valid file name.
    value = f"sk-proj-{secrets.token_urlsafe(24)}+{secrets.token_urlsafe(24)}"
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    c: dict[str, str] = {}
    c["one"] = commit(work, {"README.md": "# app\n"}, "initial", T0)
    c["two"] = commit(work, {"app.py": "print('hi')\n"}, "app", T0 + 10)
    git(work, "tag", "-a", "v1", "-m", "first release", when=T0 + 15)
    c["three"] = commit(work, {"app.py": "print('hello')\n"}, "greet", T0 + 20)
    c["signed"] = signed_commit(work, "a signed commit", T0 + 25)
    c["leak"] = commit(work, {
        "config.py": f"API_KEY = '{value}'\n",
        "k8s/secret.yaml": secret_yaml(value),
        "endpoint.txt": f"https://api.example.invalid/v1?key={quote(value, safe='')}&v=1\n",
        f"leak-{value}.txt": "see the name\n",
        f"{value}/settings.py": "DEBUG = False\n",
    }, f"configure the client\n\nThe key is {value}\n", T0 + 30)
    c["binary"] = commit(work, {"dump.bin": b"\0\1\2" + value.encode() + b"\0"}, "add a dump", T0 + 40)
    c["email"] = commit(work, {"app.py": "print('hello, world')\n"}, "polish", T0 + 50,
                        env={"GIT_AUTHOR_EMAIL": value, "GIT_AUTHOR_NAME": f"Dev {value}"})
    c["later"] = commit(work, {"config.py": "import os\nAPI_KEY = os.environ['API_KEY']\n",
                               f"{value}/settings.py": None, "old.py": f"API_KEY = '{value}'\n"},
                        "read the key from env", T0 + 60)
    git(work, "tag", "-a", "v2", "-m", f"release 2 (key {value})", when=T0 + 70)
    mirror = tmp_path / "mirror.git"
    git(tmp_path, "clone", "-q", "--mirror", file_url(work), str(mirror))
    key = Secret(value)
    scan = scan_objects(mirror, Matcher(key), repo="mirror")
    blobs = [hit for hit in scan.hits.values() if hit.kind == "blob"]
    return Leak(mirror, key, c, {hit.oid for hit in blobs if not hit.binary}, {hit.oid for hit in blobs if hit.binary})


def purge(leak: Leak, scratch: Path, revs: list[str] | None) -> None:
    run_filter(leak.mirror, leak.key, placeholder=leak.placeholder, name_placeholder=leak.name_placeholder,
               rewrite_blobs=leak.rewrite, strip_blobs=leak.strip, revs=revs, scratch=scratch, label="mirror",
               redact=Matcher(leak.key).redact)


def reachable_contents(git_dir: Path) -> list[bytes]:
    """The content of every object the refs reach, read with ``git cat-file --batch``."""
    ids = git(git_dir, "rev-list", "--objects", "--all", "--no-object-names").split()
    out = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "--batch"], input="\n".join(ids).encode(),
                         capture_output=True, check=True).stdout
    contents, at = [], 0
    while at < len(out):
        header_end = out.index(b"\n", at)
        size = int(out[at:header_end].split()[2])
        contents.append(out[header_end + 1:header_end + 1 + size])
        at = header_end + 1 + size + 1
    return contents


def holds_key(content: bytes, value: str) -> bool:
    """The key in any form Matcher knows, or in any base64 token once decoded."""
    if Matcher(Secret(value)).scan(content):
        return True
    for token in re.findall(rb"[A-Za-z0-9+/_-]{16,}={0,2}", content):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                decoded = decode(token + b"=" * (-len(token) % 4))
            except ValueError:
                continue
            if value.encode() in decoded:
                return True
    return False


def test_rewrite_from_the_leak_on(leak, tmp_path, monkeypatch):
    logged = tmp_path / "git-argv.log"
    wrapper = tmp_path / "bin"
    wrapper.mkdir()
    (wrapper / "git").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {logged}\nexec {shutil.which("git")} "$@"\n')
    (wrapper / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper}{os.pathsep}{os.environ['PATH']}")
    started: list[list[str]] = []
    real_popen = subprocess.Popen

    class Recording(real_popen):
        def __init__(self, args, *rest, **kwargs):
            started.append([os.fspath(arg) for arg in args])
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    written: dict[Path, bytes] = {}
    real_write = purge_filter.write_private
    monkeypatch.setattr(purge_filter, "write_private",
                        lambda path, data: (written.__setitem__(path, data), real_write(path, data)))
    c = leak.commits
    assert leak.rewrite and len(leak.strip) == 1

    purge(leak, tmp_path / "scratch", ["refs/heads/main", "refs/tags/v2", f"^{c['signed']}"])

    mirror, value = leak.mirror, leak.value
    # History before the leak keeps its ids; so does the tag outside the rewritten range.
    new_main = git(mirror, "rev-parse", "refs/heads/main")
    assert new_main != c["later"]
    before = [c["one"], c["two"], c["three"], c["signed"]]
    assert git(mirror, "rev-list", "--reverse", "refs/heads/main").split()[:4] == before
    assert "gpgsig -----BEGIN PGP SIGNATURE-----" in git(mirror, "cat-file", "commit", c["signed"])
    assert git(mirror, "rev-parse", "refs/tags/v1^{commit}") == c["two"]
    # No reachable object holds the key, in any form, decoded or not.
    contents = reachable_contents(mirror)
    assert contents and not [content for content in contents if holds_key(content, value)]
    # Each copy is the placeholder in its own encoding, and the files still parse.
    manifest = yaml.safe_load(git(mirror, "show", "refs/heads/main:k8s/secret.yaml"))
    assert base64.b64decode(manifest["data"]["OPENAI_API_KEY"], validate=True) == leak.placeholder
    assert base64.b64decode(manifest["data"]["USER"]) == b"app"
    endpoint = git(mirror, "show", "refs/heads/main:endpoint.txt")
    assert endpoint == f"https://api.example.invalid/v1?key={quote(leak.placeholder.decode(), safe='')}&v=1"
    leaked_config = git(mirror, "show", f"{new_main}~2:config.py")  # main~2: the dump commit is gone
    assert leaked_config == f"API_KEY = '{leak.placeholder.decode()}'"
    # Names: the file and the directory are renamed; the ident and the messages are scrubbed.
    paths = git(mirror, "ls-tree", "-r", "--name-only", "refs/heads/main").splitlines()
    name = leak.name_placeholder.decode()
    assert f"leak-{name}.txt" in paths and f"{name}/settings.py" not in paths  # renamed, then deleted
    assert git(mirror, "ls-tree", "--name-only", f"{new_main}~2", f"{name}/settings.py") == f"{name}/settings.py"
    assert not [path for path in paths if value in path]
    # The same leaked line in another file is the same blob: rewritten once, to the same new blob.
    assert git(mirror, "rev-parse", "refs/heads/main:old.py") == git(mirror, "rev-parse", f"{new_main}~2:config.py")
    assert git(mirror, "log", "-1", "--format=%an <%ae>", f"{new_main}~1") == f"Dev {name} <{name}>"
    assert f"The key is {leak.placeholder.decode()}" in git(mirror, "log", "--format=%B", "refs/heads/main")
    assert git(mirror, "for-each-ref", "--format=%(contents)", "refs/tags/v2") == \
        f"release 2 (key {leak.placeholder.decode()})"
    # The binary blob is stripped; the commit that only added it became empty and is dropped.
    commit_map = dict(line.split() for line in (mirror / "filter-repo" / "commit-map").read_text().splitlines()[1:])
    assert commit_map[c["binary"]] == ZERO
    assert set(commit_map) == {c["leak"], c["binary"], c["email"], c["later"]}  # the range only
    assert "dump.bin" not in paths
    assert git(mirror, "rev-list", "--count", "refs/heads/main") == str(len(c) - 1)  # all but the dropped one
    first = (mirror / "filter-repo" / "first-changed-commits").read_text().split()
    assert first[0] == c["leak"]
    assert "refs/heads/main" in (mirror / "filter-repo" / "ref-map").read_text()
    # The key was on disk only in the spec, which is gone with its directory; no argv ever held it.
    forms = [form.decode() for _, form in Matcher(leak.key).forms]
    assert [path.name for path, data in written.items() if value.encode() in data] == [purge_filter.SPEC]
    assert not any(path.exists() for path in written) and list((tmp_path / "scratch").iterdir()) == []
    assert any(argv[1:3] == ["-m", "cauterize.purge_filter"] for argv in started)
    children = [line for line in logged.read_text().splitlines()]
    assert any("fast-export" in line for line in children) and any("fast-import" in line for line in children)
    assert not [arg for argv in started for arg in argv for form in forms if form in arg]
    assert not [line for line in children for form in forms if form in line]


def test_rewrite_of_every_ref_without_revs(leak, tmp_path):
    blob = git(leak.mirror, "rev-parse", f"{leak.commits['leak']}:config.py")
    git(leak.mirror, "tag", "-a", "blob-tag", "-m", "a tag of a blob", blob)  # rare, but a tag, so rewritten
    purge(leak, tmp_path / "scratch", None)
    tagged = git(leak.mirror, "cat-file", "blob", "refs/tags/blob-tag^{blob}")
    assert tagged == f"API_KEY = '{leak.placeholder.decode()}'"
    contents = reachable_contents(leak.mirror)
    assert not [content for content in contents if holds_key(content, leak.value)]
    assert git(leak.mirror, "rev-parse", "refs/tags/v1^{commit}") == leak.commits["two"]  # nothing to change there


def test_a_failed_rewrite_raises_and_leaves_no_spec(leak, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    with pytest.raises(PurgeError) as caught:
        purge(leak, scratch, ["refs/heads/no-such-branch", f"^{leak.commits['signed']}"])
    assert "git filter-repo of mirror failed" in caught.value.message
    assert leak.value not in caught.value.one_line()
    assert list(scratch.iterdir()) == []
    assert git(leak.mirror, "rev-parse", "refs/heads/main") == leak.commits["later"]  # untouched
    # A child that never reads the spec (it dies first): the parent still deletes it.
    monkeypatch.setattr(sys, "executable", shutil.which("false"))
    with pytest.raises(PurgeError):
        purge(leak, scratch, None)
    assert list(scratch.iterdir()) == []


def test_placeholders_and_revs_are_checked_before_anything_is_written(leak, tmp_path):
    scratch = tmp_path / "scratch"
    bad = [{"placeholder": b"two\nlines"}, {"placeholder": b"x" + leak.value.encode()},
           {"name_placeholder": b"a/b"}, {"name_placeholder": b"a b"}, {"revs": ["--all"]}, {"revs": []}]
    for change in bad:
        arguments = {"placeholder": leak.placeholder, "name_placeholder": leak.name_placeholder, "revs": None} | change
        with pytest.raises(PurgeError) as caught:
            run_filter(leak.mirror, leak.key, rewrite_blobs=leak.rewrite, strip_blobs=set(), scratch=scratch,
                       label="mirror", redact=str, **arguments)
        assert leak.value not in caught.value.one_line()
    assert not scratch.exists() or list(scratch.iterdir()) == []
