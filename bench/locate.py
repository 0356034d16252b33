"""Find every planted copy of a key in a big repository: cauterize side by side with the floor and peers.

    .venv/bin/python bench/locate.py [--runs 5] [--size-mb 640] [--workdir /tmp/cauterize-bench-locate]
                                     [--only floor,cauterize] [--peers-runs 1]

Builds once (cached under ``--workdir``) a synthetic repository with at least ``--size-mb`` MB of
uncompressed blobs: a few thousand commits of generated code, JSON and prose files of varied sizes
that evolve line by line (so the pack is deltified like a real one), written with one
``git fast-import`` stream and repacked with ``git repack -adf``. A throwaway key shaped like an
OpenAI project key (so pattern scanners have a fair chance) is planted in nine places, each at its
own path, commit or tag so a hit can be attributed (``PLANTS``).

Contenders, each a child process, interleaved run by run:
  * floor:      ``git cat-file --batch-all-objects --batch --unordered | grep -F -c -f <(printenv K)``
  * cauterize:  ``cauterize locate --key-env K --git REPO --json`` (the real CLI)
  * scan-pass:  only its one pass over the objects (``scan_objects``), to tell it from start-up and
    attribution
  * git-log-S:  ``git log --all -p -S KEY`` (the key on argv: git's behaviour)
  * git-grep:   ``git grep -l -F -e KEY REV...`` over ``git rev-list --all``, 500 revisions a call
  * detect-secrets: ``detect-secrets scan --all-files`` of a checkout of HEAD (it has no history mode)
  * trufflehog3: ``trufflehog3 --format JSON REPO`` (its default: history of the active branch, plus
    the working tree)
The two scanners are installed from PyPI into throwaway venvs under ``--workdir``, never into the
project. Peers that take longer than ``--slow`` seconds are timed ``--peers-runs`` times only.
Reports the median time, the ratio to the floor and how many of the planted copies each found.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import random
import resource
import secrets
import shutil
import statistics
import string
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_600_000_000
ALNUM = string.ascii_letters + string.digits

#: marker -> what the planted copy is. Every copy has its own path, commit or tag.
PLANTS = {
    "head-file": "app/settings.py, in HEAD",
    "side-branch": "side/settings.env, on an unmerged branch",
    "added-then-deleted": "config/legacy_keys.py, removed in the next commit",
    "commit-message": "a commit message on main",
    "base64-align0": "fixtures/payload-a0.b64, base64 at byte alignment 0",
    "base64-align1": "fixtures/payload-a1.b64, base64 at byte alignment 1",
    "gzip-file": "logs/debug.log.gz, a gzip'd log",
    "dangling-commit": "scratch/dangling.txt, in a commit no ref reaches",
    "tag-message": "the message of the annotated tag v2.0",
}
PATHS = {
    "app/settings.py": "head-file",
    "side/settings.env": "side-branch",
    "config/legacy_keys.py": "added-then-deleted",
    "fixtures/payload-a0.b64": "base64-align0",
    "fixtures/payload-a1.b64": "base64-align1",
    "logs/debug.log.gz": "gzip-file",
    "scratch/dangling.txt": "dangling-commit",
}


# ---- the synthetic repository -----------------------------------------------------------------


@dataclass
class Bench:
    repo: Path
    checkout: Path
    key: str
    ids: dict[str, str]  # "commit-message" / "tag-message" -> object id
    blob_bytes: int


class Stream:
    """A ``git fast-import`` stream written straight into the importer's stdin."""

    def __init__(self, out):
        self.out = out
        self.mark = 0
        self.when = T0

    def commit(self, ref: str, message: str, changes: dict[str, bytes | None], parent: int | None) -> int:
        self.mark += 1
        self.when += random.randint(600, 7200)
        msg = message.encode()
        head = (f"commit {ref}\nmark :{self.mark}\n"
                f"committer Bench <bench@example.invalid> {self.when} +0000\ndata {len(msg)}\n").encode()
        self.out.write(head + msg + b"\n")
        if parent is not None:
            self.out.write(f"from :{parent}\n".encode())
        for path, content in changes.items():
            if content is None:
                self.out.write(f"D {path}\n".encode())
            else:
                self.out.write(f"M 100644 inline {path}\ndata {len(content)}\n".encode() + content + b"\n")
        self.out.write(b"\n")
        return self.mark

    def tag(self, name: str, commit: int, message: str) -> None:
        msg = message.encode()
        self.out.write(f"tag {name}\nfrom :{commit}\ntagger Bench <bench@example.invalid> {self.when + 60} +0000\n"
                       f"data {len(msg)}\n".encode() + msg + b"\n")


class Text:
    """Pools of generated lines (code, JSON records, prose) that files are drawn from."""

    def __init__(self):
        words = ["".join(random.choices(string.ascii_lowercase, k=random.randint(2, 9))) for _ in range(4000)]
        self.words = words
        self.pools = {
            ".py": [("    " * random.randint(0, 3) + " ".join(random.choices(words, k=random.randint(2, 9)))
                     + random.choice([":", " = 0", "()", "(self, value)", f" + {random.randint(0, 999)}"]) + "\n")
                    for _ in range(30000)],
            ".json": [f'  {{"id": {random.randint(1, 10**6)}, "name": "{" ".join(random.choices(words, k=2))}", '
                      f'"tags": ["{random.choice(words)}", "{random.choice(words)}"], '
                      f'"score": {random.random():.4f}}},\n' for _ in range(30000)],
            ".md": [" ".join(random.choices(words, k=random.randint(4, 16))) + ".\n" for _ in range(30000)],
        }

    def lines(self, ext: str, count: int) -> list[str]:
        return random.choices(self.pools[ext], k=count)


def make_key() -> str:
    """A throwaway key of an OpenAI project key's documented shape (pattern scanners know it, and
    cauterize's key check accepts it: a 144-character one of an older shape is refused)."""
    from cauterize.sandbox.openai import new_key_value

    return new_key_value("proj")


def b64_with_key(key: str, align: int) -> bytes:
    payload = secrets.token_bytes(300 + align) + key.encode() + secrets.token_bytes(200)
    return base64.b64encode(payload) + b"\n"


def generate(out, key: str, size: int) -> int:
    """Write the whole history to ``out``; returns the uncompressed bytes of every blob written."""
    random.seed(20261126)
    text = Text()
    stream = Stream(out)
    dirs = [f"{top}/{sub}" for top in ("src", "lib", "docs", "data", "tests") for sub in random.sample(text.words, 5)]
    files: dict[str, list[str]] = {}

    def new_file() -> str:
        ext = random.choice([".py", ".py", ".json", ".md"])
        path = f"{random.choice(dirs)}/{random.choice(text.words)}_{len(files)}{ext}"
        files[path] = text.lines(ext, max(4, int(10 ** random.uniform(1.3, 3.4))))  # ~1 KB to ~130 KB
        return path

    for _ in range(280):
        new_file()
    big = "data/dump/records.json"
    files[big] = text.lines(".json", 16000)  # ~1.4 MB, rewritten now and then like a lock or fixture file
    written = 0

    def encode(path: str) -> bytes:
        nonlocal written
        content = "".join(files[path]).encode()
        written += len(content)
        return content

    main = stream.commit("refs/heads/main", "initial import", {path: encode(path) for path in files}, None)
    commits = 1
    planted: set[str] = set()

    def plant(name: str, when: float) -> bool:
        if name in planted or written < when * size:
            return False
        planted.add(name)
        return True

    secret_line = f'OPENAI_API_KEY = "{key}"\n'
    while written < size or len(planted) < len(PLANTS):
        changes: dict[str, bytes | None] = {}
        editable = [path for path in files if path != big]
        for path in random.sample(editable, random.randint(1, 4)) + ([big] if random.random() < 0.1 else []):
            lines = files[path]
            ext = os.path.splitext(path)[1]
            for _ in range(max(1, len(lines) // 50)):
                lines[random.randrange(len(lines))] = text.lines(ext, 1)[0]
            at = random.randrange(len(lines))
            lines[at:at] = text.lines(ext, random.randint(0, 6))
            changes[path] = encode(path)
        if random.random() < 0.02:
            path = new_file()
            changes[path] = encode(path)
        message = " ".join(random.choices(text.words, k=random.randint(3, 10)))
        if plant("head-file", 0.01):
            settings = text.lines(".py", 40) + [secret_line] + text.lines(".py", 40)
            changes["app/settings.py"] = "".join(settings).encode()
        if plant("added-then-deleted", 0.3):
            changes["config/legacy_keys.py"] = "".join(text.lines(".py", 20) + [secret_line]).encode()
            main = stream.commit("refs/heads/main", message, changes, main)
            changes, message = {"config/legacy_keys.py": None}, "remove legacy keys"
        if plant("side-branch", 0.4):
            side = stream.commit("refs/heads/side", "try the new settings",
                                 {"side/settings.env": f"DEBUG=1\nOPENAI_API_KEY={key}\n".encode()}, main)
            stream.commit("refs/heads/side", "more settings", {"side/notes.md": b"wip\n"}, side)
        if plant("commit-message", 0.5):
            message = f"debug: tried {key} against prod"
        if plant("base64-align0", 0.6):
            planted.add("base64-align1")
            changes["fixtures/payload-a0.b64"] = b64_with_key(key, 0)
            changes["fixtures/payload-a1.b64"] = b64_with_key(key, 1)
        if plant("gzip-file", 0.7):
            log = text.lines(".md", 2000)
            log[1234] = f"2020-10-01T12:00:00Z DEBUG auth header: Bearer {key}\n"
            changes["logs/debug.log.gz"] = gzip.compress("".join(log).encode(), mtime=0)
        if plant("dangling-commit", 0.8):
            stream.commit("refs/heads/bench-dangling", "scratch",
                          {"scratch/dangling.txt": f"export OPENAI_API_KEY={key}\n".encode()}, main)
        main = stream.commit("refs/heads/main", message, changes, main)
        commits += 1
        if plant("tag-message", 0.9):
            stream.tag("v2.0", main, f"v2.0\n\nrelease smoke test used {key}\n")
    return written


def git(repo: Path, *args: str, **kwargs) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=True, **kwargs)
    return done.stdout.decode().strip()


def build(workdir: Path, size_mb: int) -> Bench:
    """The cached benchmark repository (built on first use, in a minute or two)."""
    base = workdir / f"repo-{size_mb}mb"
    repo, checkout, meta = base / "repo", base / "head-checkout", base / "bench.json"
    if not meta.exists() or len(json.loads(meta.read_text())["key"]) != len(make_key()):  # none, or an old shape
        shutil.rmtree(base, ignore_errors=True)
        repo.mkdir(parents=True)
        base.chmod(0o700)
        key = make_key()
        git(repo, "init", "-q", "-b", "main")
        git(repo, "config", "gc.auto", "0")
        started = time.perf_counter()
        importer = subprocess.Popen(["git", "-C", str(repo), "fast-import", "--quiet"], stdin=subprocess.PIPE)
        written = generate(importer.stdin, key, size_mb * 1_000_000)
        importer.stdin.close()
        if importer.wait() != 0:
            raise SystemExit("git fast-import failed")
        print(f"  imported {written / 1e6:.0f} MB of blobs in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        git(repo, "repack", "-a", "-d", "-f", "-q", "--window=10", "--depth=50")
        git(repo, "update-ref", "-d", "refs/heads/bench-dangling")  # now only the pack holds it
        git(repo, "reset", "-q", "--hard")
        checkout.mkdir()
        archive = subprocess.run(["git", "-C", str(repo), "archive", "HEAD"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(checkout)], input=archive.stdout, check=True)
        ids = {"commit-message": git(repo, "log", "--all", "--format=%H", "--grep=^debug: tried"),
               "tag-message": git(repo, "rev-parse", "refs/tags/v2.0")}
        meta.write_text(json.dumps({"key": key, "ids": ids, "blob_bytes": written}))
        meta.chmod(0o600)
        print(f"  built {repo} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    data = json.loads(meta.read_text())
    return Bench(repo, checkout, data["key"], data["ids"], data["blob_bytes"])


# ---- the contenders ---------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    run: Callable[[Bench], str]  # runs the tool once; returns its output
    found: Callable[[Bench, str], set[str]]  # which markers its output names
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # user + system seconds of its processes
    copies: set[str] = field(default_factory=set)
    note: str = ""


def env_with_key(bench: Bench) -> dict[str, str]:
    return {**os.environ, "K": bench.key, "LC_ALL": "C"}


def floor_run(bench: Bench) -> str:
    pipeline = (f"git -C '{bench.repo}' cat-file --batch-all-objects --batch --unordered"
                " | grep -F -c -f <(printenv K)")
    return subprocess.run(["bash", "-c", pipeline], env=env_with_key(bench), capture_output=True, check=False).stdout.decode()


def cauterize_run(bench: Bench) -> str:
    argv = [str(ROOT / ".venv/bin/cauterize"), "locate", "--key-env", "K", "--git", str(bench.repo), "--json"]
    return subprocess.run(argv, env=env_with_key(bench), capture_output=True, check=True).stdout.decode()


SCAN_PASS = """
import os, sys
from pathlib import Path
from cauterize.locate.git import scan_objects
from cauterize.locate.matcher import Matcher
from cauterize.secret import Secret
scan = scan_objects(Path(sys.argv[1]) / ".git", Matcher(Secret(os.environ["K"])), repo="bench")
print(len(scan.hits))
"""


def scan_pass_run(bench: Bench) -> str:
    """Only the one pass over the objects (``scan_objects``), in a fresh interpreter: no CLI, no attribution."""
    argv = [str(ROOT / ".venv/bin/python"), "-c", SCAN_PASS, str(bench.repo)]
    return subprocess.run(argv, env=env_with_key(bench), capture_output=True, check=True).stdout.decode()


def cauterize_found(bench: Bench, out: str) -> set[str]:
    found = set()
    for finding in json.loads(out)["findings"]:
        if finding.get("path") in PATHS:
            found.add(PATHS[finding["path"]])
        for marker, oid in bench.ids.items():
            if finding.get("object") == oid:
                found.add(marker)
    return found


def git_log_run(bench: Bench) -> str:
    argv = ["git", "-C", str(bench.repo), "log", "--all", "-p", "-S" + bench.key, "--format=commit %H"]
    done = subprocess.run(argv, env=env_with_key(bench), capture_output=True, check=True)
    return "\n".join(line for line in done.stdout.decode(errors="replace").splitlines()
                     if line.startswith(("commit ", "diff --git ")))  # drop the lines holding the key


def git_log_found(bench: Bench, out: str) -> set[str]:
    found = set()
    for line in out.splitlines():
        if line.startswith("diff --git "):
            path = line.split(" b/", 1)[1]
            if path in PATHS:
                found.add(PATHS[path])
    return found


def git_grep_run(bench: Bench) -> str:
    revs = git(bench.repo, "rev-list", "--all").split()
    out = []
    for at in range(0, len(revs), 500):
        argv = ["git", "-C", str(bench.repo), "grep", "-l", "-F", "-e", bench.key, *revs[at:at + 500]]
        done = subprocess.run(argv, env=env_with_key(bench), capture_output=True, check=False)
        out.append(done.stdout.decode(errors="replace"))
    return "".join(out)


def git_grep_found(bench: Bench, out: str) -> set[str]:
    return {PATHS[line.split(":", 1)[1]] for line in out.splitlines() if line.split(":", 1)[-1] in PATHS}


def venv_tool(workdir: Path, package: str, tool: str) -> Path | None:
    """``tool`` from a throwaway venv under ``workdir`` holding ``package`` (installed on first use)."""
    venv = workdir / f"venv-{package}"
    exe = venv / "bin" / tool
    if not exe.exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        done = subprocess.run([str(venv / "bin/pip"), "install", "-q", package], capture_output=True, check=False)
        if done.returncode != 0 or not exe.exists():
            print(f"  {package} did not install: {done.stderr.decode()[-300:]}", file=sys.stderr)
            return None
    return exe


def detect_secrets_run(exe: Path) -> Callable[[Bench], str]:
    def run(bench: Bench) -> str:
        argv = [str(exe), "scan", "--all-files", "."]
        return subprocess.run(argv, cwd=bench.checkout, capture_output=True, check=True).stdout.decode()
    return run


def detect_secrets_found(bench: Bench, out: str) -> set[str]:
    return {PATHS[path.removeprefix("./")] for path in json.loads(out)["results"] if path.removeprefix("./") in PATHS}


def trufflehog3_run(exe: Path, workdir: Path) -> Callable[[Bench], str]:
    def run(bench: Bench) -> str:
        report = workdir / "trufflehog3.json"
        report.unlink(missing_ok=True)
        argv = [str(exe), "--format", "JSON", "--output", str(report), "--zero", str(bench.repo)]
        subprocess.run(argv, capture_output=True, check=True)
        text = report.read_text()
        report.unlink()
        return text
    return run


def trufflehog3_found(bench: Bench, out: str) -> set[str]:
    found = set()
    root = str(bench.repo).rstrip("/") + "/"
    for issue in json.loads(out):
        path = issue.get("path", "").removeprefix(root)
        if path in PATHS:
            found.add(PATHS[path])
        for marker, oid in bench.ids.items():
            if issue.get("commit") == oid and issue.get("secret") and issue["secret"] in bench.key:
                found.add(marker)  # in the commit's diff, not its message: counted only if it is the key
    return found


def contenders(workdir: Path, only: set[str] | None) -> list[Contender]:
    chosen = [
        Contender("floor", floor_run, lambda bench, out: set(), note="cat-file | grep -F (raw form only)"),
        Contender("cauterize", cauterize_run, cauterize_found, note="locate --git --json"),
        Contender("scan-pass", scan_pass_run, lambda bench, out: set(), note="cauterize's one pass alone (python -c)"),
        Contender("git-log-S", git_log_run, git_log_found, note="git log --all -p -S KEY"),
        Contender("git-grep", git_grep_run, git_grep_found, note="git grep KEY over rev-list --all"),
    ]
    if not only or "detect-secrets" in only:
        exe = venv_tool(workdir, "detect-secrets", "detect-secrets")
        if exe:
            chosen.append(Contender("detect-secrets", detect_secrets_run(exe), detect_secrets_found,
                                    note="checkout of HEAD: no history mode"))
    if not only or "trufflehog3" in only:
        exe = venv_tool(workdir, "trufflehog3", "trufflehog3")
        if exe:
            chosen.append(Contender("trufflehog3", trufflehog3_run(exe, workdir), trufflehog3_found,
                                    note="history of the active branch + working tree"))
    return [contender for contender in chosen if not only or contender.name in only]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ---- the benchmark ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=640, help="uncompressed blob bytes to generate, in MB")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cauterize-bench-locate"))
    parser.add_argument("--only", default="", help="comma-separated contenders (default: all)")
    parser.add_argument("--slow", type=float, default=30.0, help="a peer slower than this many seconds ...")
    parser.add_argument("--peers-runs", type=int, default=1, help="... is timed this many times only")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    bench = build(args.workdir, args.size_mb)
    chosen = contenders(args.workdir, set(filter(None, args.only.split(","))) or None)
    for run in range(args.runs):  # interleaved, so machine load hits every contender alike
        for contender in chosen:
            slow = contender.times and min(contender.times) > args.slow and contender.name not in ("floor", "cauterize")
            if slow and len(contender.times) >= args.peers_runs:
                continue
            started, before = time.perf_counter(), children_cpu()
            out = contender.run(bench)
            contender.times.append(time.perf_counter() - started)
            contender.cpu.append(children_cpu() - before)
            contender.copies = contender.found(bench, out)
        print(f"  run {run + 1}: " + ", ".join(f"{c.name} {c.times[-1]:.2f} s" for c in chosen if c.times),
              file=sys.stderr)
    report(bench, chosen, args)


def report(bench: Bench, chosen: list[Contender], args) -> None:
    floor = statistics.median(chosen[0].times) if chosen and chosen[0].name == "floor" else None
    objects = git(bench.repo, "count-objects", "-v")
    pack = next(line.split()[1] for line in objects.splitlines() if line.startswith("size-pack"))
    print(f"repository: {bench.blob_bytes / 1e6:.0f} MB of uncompressed blobs, pack {int(pack) / 1024:.0f} MiB, "
          f"{git(bench.repo, 'rev-list', '--all', '--count')} reachable commits; "
          f"{len(PLANTS)} planted copies; median of {args.runs} interleaved runs")
    print(f"  {'contender':15s} {'median':>9s} {'range':>15s} {'x floor':>8s} {'cpu':>8s}  found  note")
    for c in chosen:
        median = statistics.median(c.times)
        ratio = f"{median / floor:.2f}x" if floor else "-"
        found = "-" if c.name in ("floor", "scan-pass") else f"{len(c.copies)}/{len(PLANTS)}"
        spread = f"{min(c.times):.2f}-{max(c.times):.2f}" if len(c.times) > 1 else "(1 run)"
        cpu = f"{statistics.median(c.cpu):.2f}s"
        print(f"  {c.name:15s} {median:8.2f}s {spread:>15s} {ratio:>8s} {cpu:>8s}  {found:5s}  {c.note}")
    for c in chosen:
        if c.name in ("floor", "scan-pass"):
            continue
        missed = sorted(set(PLANTS) - c.copies)
        print(f"  {c.name} missed: {', '.join(missed) or 'nothing'}")


if __name__ == "__main__":
    main()
