"""A throwaway world for ``cauterize demo``: an OpenAI organisation (the emulator on a real socket),
a git remote and a clone whose history holds the leaked key (committed, then removed), two
``.env`` files that hold it, and the sandbox runbook pointing at all of them.

Every key here is generated at run time (or taken from ``CAUTERIZE_SANDBOX_LEAKED_KEY``, the
canary tests' hook). The world lives under one directory; ``close()`` stops
the emulator, and ``housekeeping()`` does what a forge and the clone owners do after a purge.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

from cauterize.errors import InputError
from cauterize.sandbox.openai import OpenAIEmulator
from cauterize.sandbox.server import ServedApp, serve

MARKER = ".cauterize-demo"
LEAKED_ENV = "CAUTERIZE_SANDBOX_LEAKED_KEY"
#: seconds a revoked key keeps working on the emulator's data plane, as a real provider's does (default 0)
DELAY_ENV = "CAUTERIZE_SANDBOX_REVOCATION_DELAY"


@dataclass
class World:
    root: Path
    runbook: Path
    remote: Path
    clone: Path
    emulator: OpenAIEmulator
    app: ServedApp
    leaked_key_id: str
    leaked_at: datetime
    env: dict[str, str] = field(repr=False, default_factory=dict)

    def close(self) -> None:
        self.app.close()

    def housekeeping(self) -> list[str]:
        """What the forge's support and every clone owner do after a purge: drop the remote's
        unreachable objects, re-make the clone. Returns what was done, for the responder."""
        _git(self.remote, "reflog", "expire", "--expire=now", "--all")
        _git(self.remote, "gc", "--prune=now", "--quiet")
        shutil.rmtree(self.clone)
        _git(self.root, "clone", "--quiet", str(self.remote), str(self.clone))
        return [
            f"sandbox forge: expired reflogs and pruned unreachable objects in {self.remote.name}",
            f"re-cloned {self.clone.name} from the purged remote",
        ]


def prepare_root(workdir: Path | None) -> Path:
    """A fresh directory for the world. An earlier demo's directory is replaced; any other
    non-empty directory is refused, so a mistyped path never loses someone's files."""
    if workdir is None:
        import tempfile

        return Path(tempfile.mkdtemp(prefix="cauterize-demo-"))
    root = Path(workdir).expanduser().resolve()
    if root.exists():
        if not root.is_dir():
            raise InputError(f"--workdir {root}: exists and is not a directory")
        if any(root.iterdir()):
            if not (root / MARKER).exists():
                raise InputError(f"--workdir {root}: not empty and not an earlier demo; give a new or empty directory")
            shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)
    return root


def build_world(root: Path, *, now: datetime | None = None) -> World:
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    (root / MARKER).write_text("a cauterize demo world; `cauterize demo --workdir` replaces it\n")
    emulator = OpenAIEmulator(revocation_delay_s=_revocation_delay())
    admin_key = emulator.add_admin_key()
    project = emulator.add_project("customer-support-bot")
    emulator.add_project("internal-tools")
    for index in range(24):  # the leaked key sits on the second page of the key list
        emulator.add_user_key(project, name=f"dev key {index}")
    # A canary test may choose the (fake) leaked key, to search everything the demo wrote for it.
    key_id, leaked = emulator.add_user_key(project, os.environ.get(LEAKED_ENV) or None, name="laptop key (Dana)")
    # Dana restricted it in the console (audit logged): the replacement must carry the same scopes.
    emulator.restrict_key(key_id, ["api.model.request", "api.responses.write"])
    leaked_at = now - timedelta(days=3, hours=5)
    _seed_usage(emulator, key_id, leaked_at=leaked_at, now=now)
    app = serve(emulator)

    remote, clone = root / "remote.git", root / "app"
    _make_repo(root, remote, clone, leaked, leaked_at)
    for relative, line in (("deploy/.env", f'OPENAI_API_KEY="{leaked}"'), ("worker/.env", f"export OPENAI_API_KEY={leaked}")):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {relative.split('/')[0]} settings\nLOG_LEVEL=info\n{line}\nTIMEOUT_SECONDS=30\n")
        os.chmod(path, 0o600)
    runbook = root / "runbook.yaml"
    runbook.write_text(resources.files("cauterize.runbooks").joinpath("sandbox.yaml").read_text())
    env = {"OPENAI_BASE_URL": f"{app.url}/v1", "OPENAI_ADMIN_KEY": admin_key, LEAKED_ENV: leaked}
    return World(root, runbook, remote, clone, emulator, app, key_id, leaked_at, env)


def _revocation_delay() -> float:
    text = os.environ.get(DELAY_ENV) or "0"
    try:
        delay = float(text)
    except ValueError:
        delay = -1.0
    if not 0 <= delay <= 3600:
        raise InputError(f"{DELAY_ENV}={text!r}: give the seconds a revoked key keeps working, 0 to 3600")
    return delay


def _seed_usage(emulator: OpenAIEmulator, key_id: str, *, leaked_at: datetime, now: datetime) -> None:
    """Two weeks of office-hours traffic, then abuse from a few hours after the leak."""
    start = leaked_at - timedelta(days=15)
    hour = start.replace(minute=0)
    abuse_from = leaked_at + timedelta(hours=6)
    while hour < now:
        busy = 8 <= hour.hour < 19 and hour.weekday() < 5
        tokens, requests = (4000, 20) if busy else (400, 2)
        if hour >= abuse_from:
            tokens, requests = tokens + 90_000 + (hour.hour * 1_500), requests + 300
        emulator.add_usage(key_id, None, hour, hour + timedelta(hours=1), 3600,
                           input_tokens=tokens, output_tokens=tokens // 4, requests=requests)
        hour += timedelta(hours=1)


def _make_repo(root: Path, remote: Path, clone: Path, leaked: str, leaked_at: datetime) -> None:
    _git(root, "init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    _git(root, "clone", "--quiet", str(remote), str(clone))
    history = [
        (leaked_at - timedelta(days=20), "Start the support bot", {"README.md": "# support bot\n", "bot.py": _BOT}),
        (leaked_at, "Wire up OpenAI", {"config.py": f'OPENAI_API_KEY = "{leaked}"\nMODEL = "gpt-4o-mini"\n'}),
        (leaked_at + timedelta(hours=20), "Read the key from the environment", {"config.py": _CONFIG}),
    ]
    for when, message, files in history:
        for name, text in files.items():
            (clone / name).write_text(text)
        _git(clone, "add", "--all")
        _git(clone, "commit", "--quiet", "-m", message, env=_dated(when))
    _git(clone, "push", "--quiet", "origin", "main")


def _dated(when: datetime) -> dict[str, str]:
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    return {"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
    base = {
        "GIT_AUTHOR_NAME": "Dana Developer", "GIT_AUTHOR_EMAIL": "dana@example.com",
        "GIT_COMMITTER_NAME": "Dana Developer", "GIT_COMMITTER_EMAIL": "dana@example.com",
        "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd),
    }
    full = {**{k: v for k, v in os.environ.items() if k.startswith(("PATH", "LANG", "LC_"))}, **base, **(env or {})}
    subprocess.run(["git", *args], cwd=cwd, env=full, check=True, capture_output=True)


_BOT = 'from config import OPENAI_API_KEY, MODEL\n\n\ndef answer(question):\n    return f"[{MODEL}] {question}"\n'
_CONFIG = 'import os\n\nOPENAI_API_KEY = os.environ["OPENAI_API_KEY"]\nMODEL = "gpt-4o-mini"\n'
