"""The awkward repository of the locate and purge acceptance tests, built with real git: the key
hidden in every awkward place (renamed-then-removed file, base64 Kubernetes Secret, notebook
output, commit and tag messages, unmerged branch, gzip'd log, zip archive, git note, stash,
unreachable commit), a same-shape decoy that must never be reported, and files that never held
the key (binary and compressed too). Keys are generated at run time and reach git through files
and stdin, never argv. Imported by tests/locate/test_awkward_repo.py and tests/test_purge_acceptance.py.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import secrets
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z


def fake_key() -> str:
    from cauterize.sandbox.openai import new_key_value

    return new_key_value()  # the real shape: the CLI checks it


def git_env() -> dict[str, str]:
    env = {key: item for key, item in os.environ.items() if not key.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_AUTHOR_NAME="Dev",
               GIT_AUTHOR_EMAIL="dev@example.invalid", GIT_COMMITTER_NAME="Dev",
               GIT_COMMITTER_EMAIL="dev@example.invalid")
    return env


def git(repo: Path, *args: str, when: int | None = None, input: bytes | None = None) -> str:
    return git_bytes(repo, *args, when=when, input=input).decode().strip()


def git_bytes(repo: Path, *args: str, when: int | None = None, input: bytes | None = None) -> bytes:
    env = git_env()
    if when is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"@{when} +0000"
    done = subprocess.run(["git", *args], cwd=repo, env=env, input=input, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


@dataclass
class Awkward:
    path: Path
    value: str
    decoy: str
    commits: dict[str, str]


def noisy(text: str) -> bytes:
    return secrets.token_hex(300).encode() + b"\n" + text.encode() + b"\n" + secrets.token_hex(300).encode()


def build(path: Path) -> Awkward:
    value, decoy = fake_key(), fake_key()
    decoy = value[:8] + decoy[8:]  # same prefix and length, other characters
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    c: dict[str, str] = {}

    def commit(files: dict[str, bytes | str], message: str, when: int) -> str:
        for name, content in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
            git(path, "add", name)
        git(path, "commit", "-q", "--allow-empty", "-F", "-", when=when, input=message.encode())  # not on argv
        return git(path, "rev-parse", "HEAD")

    c["root"] = commit({"README.md": "# service\n"}, "initial", T0)
    c["decoy"] = commit({"decoy.env": f"OPENAI_API_KEY={decoy}\n"}, f"rotate: new key {decoy}", T0 + 50)
    c["added"] = commit({"config/settings.py": f"OPENAI_API_KEY = '{value}'\n"}, "settings", T0 + 100)
    (path / "app").mkdir()
    git(path, "mv", "config/settings.py", "app/settings.py")
    c["renamed"] = commit({}, "move settings", T0 + 200)
    git(path, "rm", "-q", "app/settings.py")
    c["removed"] = commit({}, "remove settings", T0 + 300)
    manifest = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: openai\ntype: Opaque\ndata:\n"
                f"  OPENAI_API_KEY: {base64.b64encode(value.encode()).decode()}\n")
    c["k8s"] = commit({"deploy/secret.yaml": manifest}, "deploy secret", T0 + 400)
    notebook = {"cells": [{"cell_type": "code", "execution_count": 1, "metadata": {}, "source": ["print(key)"],
                           "outputs": [{"output_type": "stream", "name": "stdout", "text": [value + "\n"]}]}],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    # Files that never held the key, binary and compressed ones too: they must come out byte-identical.
    untouched = io.BytesIO()
    with zipfile.ZipFile(untouched, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("docs/index.html", noisy("<h1>docs</h1>"))
    c["assets"] = commit({"src/app.py": "import os\nKEY = os.environ['OPENAI_API_KEY']\n",
                          "assets/logo.png": b"\x89PNG\r\n\x1a\n\0" + secrets.token_bytes(512),
                          "logs/old.log.gz": gzip.compress(noisy("GET /health 200")),
                          "dist/docs.zip": untouched.getvalue()}, "assets", T0 + 450)
    c["notebook"] = commit({"notebooks/explore.ipynb": json.dumps(notebook, indent=1)}, "explore", T0 + 500)
    c["message"] = commit({}, f"debug: prod works with {value}", T0 + 600)
    git(path, "checkout", "-q", "-b", "wip")
    c["branch"] = commit({"wip.env": f"OPENAI_API_KEY={value}\n"}, "wip", T0 + 700)
    git(path, "checkout", "-q", "main")
    git(path, "tag", "-a", "v1.0", "-F", "-", when=T0 + 800, input=f"release; smoke-tested with {value}".encode())
    c["gzip"] = commit({"logs/app.log.gz": gzip.compress(noisy(f"Authorization: Bearer {value}"))}, "logs",
                       T0 + 900)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("config/prod.env", noisy(f"OPENAI_API_KEY={value}"))
    c["zip"] = commit({"dist/config.zip": archive.getvalue()}, "bundle", T0 + 1000)
    git(path, "notes", "add", "-F", "-", c["zip"], when=T0 + 1100, input=f"ops: rotated from {value}".encode())
    c["notes"] = git(path, "rev-parse", "refs/notes/commits")
    (path / "README.md").write_text(f"# service\nOPENAI_API_KEY={value}\n")
    git(path, "stash", "push", "-q", "-m", "wip", when=T0 + 1200)
    c["stash"] = git(path, "rev-parse", "refs/stash")
    c["dangling"] = commit({"oops.env": f"OPENAI_API_KEY={value}\n"}, "oops", T0 + 1300)
    git(path, "reset", "-q", "--hard", "HEAD~1")
    return Awkward(path, value, decoy, c)
