"""Shared fixtures for locate tests: fake keys made at test time, and real git repositories with
the key in every awkward place a leak ends up (see reference/git-facts.md).

No key-shaped literal is ever written in this source tree: keys are generated per run.
"""

from __future__ import annotations

import base64
import gzip
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cauterize.secret import Secret

T0 = 1_600_000_000  # 2020-09-13T12:26:40Z


def fake_key(prefix: str = "sk-proj-") -> str:
    return prefix + secrets.token_urlsafe(48)


def git_env(when: int | None = None) -> dict[str, str]:
    """An environment that isolates git from the user's config and pins identity and dates."""
    env = dict(os.environ)
    env.update(
        GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME="Test", GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="Test", GIT_COMMITTER_EMAIL="test@example.invalid",
    )
    if when is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"@{when} +0000"
    return env


def run_git(cwd: Path, *args: str, when: int | None = None, input: bytes | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=git_env(when), input=input, capture_output=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"git {args[0]} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode().strip()


class Repo:
    """A throwaway repository driven by the real git binary."""

    def __init__(self, path: Path, *, bare: bool = False):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main", *(["--bare"] if bare else []))

    def git(self, *args: str, when: int | None = None, input: bytes | None = None) -> str:
        return run_git(self.path, *args, when=when, input=input)

    def write(self, files: dict[str, str | bytes | None]) -> None:
        for name, content in files.items():
            target = self.path / name
            if content is None:
                self.git("rm", "-q", name)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
            self.git("add", name)

    def commit(self, files: dict[str, str | bytes | None], message: str, *, when: int) -> str:
        self.write(files)
        self.git("commit", "-q", "--allow-empty", "-m", message, when=when)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")


def b64_at(key: str, align: int, *, urlsafe: bool = False) -> bytes:
    """The key base64-encoded inside a bigger stream, at byte alignment ``align`` (0, 1 or 2)."""
    payload = secrets.token_bytes(30 + align) + key.encode() + secrets.token_bytes(17)
    encoded = base64.b64encode(payload)
    return encoded.replace(b"+", b"-").replace(b"/", b"_") if urlsafe else encoded


@dataclass
class AwkwardRepo:
    """A repository with the key planted in every awkward place, and what a scan must report."""

    repo: Repo
    key: Secret
    other: Secret  # same prefix, different key: must never be reported
    commits: dict[str, str] = field(default_factory=dict)
    loose_blob: str = ""
    t0: int = T0  # commit times are t0 + a few minutes


def build_awkward_repo(path: Path) -> AwkwardRepo:
    value, other = fake_key(), fake_key()
    repo = Repo(path)
    world = AwkwardRepo(repo, Secret(value), Secret(other))
    c = world.commits
    c["root"] = repo.commit({"README.md": "# demo\n"}, "initial", when=T0)
    # A file on a side branch that was never merged.
    repo.git("checkout", "-q", "-b", "side")
    c["side"] = repo.commit({"side.env": f"OPENAI_API_KEY={value}\n"}, "side work", when=T0 + 100)
    repo.git("checkout", "-q", "main")
    # Added in one commit, deleted in the next.
    c["added"] = repo.commit({"config.py": f"API_KEY = '{value}'\n"}, "add config", when=T0 + 200)
    c["deleted"] = repo.commit({"config.py": None}, "remove config", when=T0 + 300)
    # In a commit message.
    c["message"] = repo.commit({}, f"debug: tried {value} against prod", when=T0 + 400)
    # In an annotated tag message.
    repo.git("tag", "-a", "v1.0", "-m", f"release notes: key {value}", when=T0 + 500)
    # Base64 at each alignment, both alphabets, inside bigger files.
    c["base64"] = repo.commit(
        {f"b64/align{n}{'-url' if urlsafe else ''}.txt": b64_at(value, n, urlsafe=urlsafe)
         for n in range(3) for urlsafe in (False, True)},
        "fixtures", when=T0 + 600,
    )
    # Gzip-compressed file.
    c["gzip"] = repo.commit({"dump.json.gz": gzip.compress(f'{{"key": "{value}"}}'.encode())}, "dump", when=T0 + 650)
    # The other key, with the same prefix: never a finding.
    c["other"] = repo.commit({"other.txt": f"KEY={other}\n"}, "another key", when=T0 + 660)
    # Committed, then reset away, and the reflog expired: a truly dangling commit.
    c["dangling"] = repo.commit({"dangling.txt": f"oops {value}\n"}, "oops", when=T0 + 700)
    repo.git("reset", "-q", "--hard", "HEAD~1")
    repo.git("reflog", "expire", "--expire=now", "--all")
    # Reset away but still in the reflog: reflogs do not count as reachable.
    c["reflog"] = repo.commit({"reflog.txt": f"again {value}\n"}, "oops again", when=T0 + 750)
    repo.git("reset", "-q", "--hard", "HEAD~1")
    # A merge that introduces the key itself (an "evil merge").
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit({"feature.txt": "feature\n"}, "feature", when=T0 + 850)
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "--no-commit", "feature", when=T0 + 900)
    c["merge"] = repo.commit({"merged.txt": f"token: {value}\n"}, "merge feature", when=T0 + 900)
    # In the stash.
    (path / "README.md").write_text(f"# demo\nkey: {value}\n")
    repo.git("stash", "-q", when=T0 + 1000)
    c["stash"] = repo.git("rev-parse", "refs/stash")
    # A loose blob in no commit at all.
    world.loose_blob = repo.git("hash-object", "-w", "--stdin", input=f"loose {value}\n".encode())
    return world


@pytest.fixture(scope="module")
def awkward(tmp_path_factory) -> AwkwardRepo:
    return build_awkward_repo(tmp_path_factory.mktemp("awkward") / "repo")


@pytest.fixture
def key() -> Secret:
    return Secret(fake_key())


@pytest.fixture
def new_key():
    """Make a fresh fake key value (a str, generated at test time)."""
    return fake_key


@pytest.fixture
def new_repo(tmp_path):
    """Make a fresh non-bare repository under tmp_path: ``new_repo("name")``."""
    return lambda name="repo", **kwargs: Repo(tmp_path / name, **kwargs)
