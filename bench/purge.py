"""Purge a planted key from a big repository's history: cauterize side by side with git-filter-repo
and git-filter-branch.

    .venv/bin/python bench/purge.py [--runs 5] [--size-mb 640] [--workdir /tmp/cauterize-bench-purge]
                                    [--budget 60] [--no-filter-branch]

The repository is ``bench/locate.py``'s synthetic one (built once and cached under ``--workdir``):
at least ``--size-mb`` MB of uncompressed blobs over a few thousand commits, the key planted in a
file at HEAD, on an unmerged branch, in a file added then deleted, in a commit message, in two
base64 files, in a gzip'd log and in an annotated tag's message (the dangling commit of the locate
benchmark is not served, so a mirror clone never sees it). Its mirror is the pristine remote;
every timed run works on a fresh copy of it (the copy is not timed).

Contenders, each a child process, interleaved run by run:
  * cauterize: ``cauterize purge --key-env K --repo REMOTE --push --yes --json``: mirror clone, search,
    rewrite, verify, push to the local bare remote, verify what a fresh clone gets.
  * filter-repo (the floor): ``git clone --mirror file://REMOTE`` then ``git filter-repo --replace-text
    FILE`` in it, FILE holding the same literal forms cauterize replaces (0600, deleted after). It
    pushes nothing and checks nothing; its clone and its rewrite are timed apart as well.
  * filter-branch, ``--tree-filter`` (perl replacing the key in every file, ``--msg-filter`` for
    messages) and ``--index-filter`` (``git rm --cached`` of the planted paths, the old advice), on a
    clone of a fresh copy: stopped after ``--budget`` seconds and extrapolated from the commits it
    got through (its own progress line); its clean-up (refs/original, reflog, gc) and the push are
    not counted. Run once each, after the interleaved runs.

The key reaches every tool through the environment or a private file, never argv. Reports the
medians, the ratio of cauterize to the floor, and the copies each tool left (searched afterwards
with cauterize's scanner, untimed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import locate as synthetic  # bench/locate.py: the repository generator

from cauterize.locate.git import scan_objects
from cauterize.locate.matcher import Matcher
from cauterize.purge import filter_repo_command
from cauterize.secret import Secret

#: ``cauterize`` as the tests run it: registers ``purge`` from cli_purge if cli.py does not yet.
ENTRY = (
    "import cauterize.cli as cli\n"
    "if 'purge' not in {c.name or c.callback.__name__ for c in cli.app.registered_commands}:\n"
    "    from cauterize.cli_purge import purge; cli.app.command('purge')(purge)\n"
    "cli.entry()"
)
_STEP = re.compile(r"purge .*?: (.+?) \((\d+\.\d+) s, \d+\.\d+ s in all\)")
_REWRITE = re.compile(r"Rewrite [0-9a-f]+ \((\d+)/(\d+)\) \((\d+) seconds passed")
_INDEX_PATHS = ["app/settings.py", "side/settings.env", "config/legacy_keys.py", "fixtures/payload-a0.b64",
                "fixtures/payload-a1.b64", "logs/debug.log.gz"]


@dataclass
class Timings:
    runs: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)
    left: int | None = None  # objects still holding the key afterwards
    note: str = ""

    def part(self, name: str, seconds: float) -> None:
        self.parts.setdefault(name, []).append(seconds)


def env_with_key(key: str) -> dict[str, str]:
    return {**os.environ, "K": key, "LC_ALL": "C", "FILTER_BRANCH_SQUELCH_WARNING": "1"}


def fresh_remote(pristine: Path, dest: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    subprocess.run(["cp", "-a", str(pristine), str(dest)], check=True)
    return dest


def copies_left(git_dir: Path, key: str) -> int:
    """Objects of ``git_dir`` holding the key in any form (cauterize's scanner; not timed)."""
    return len(scan_objects(git_dir, Matcher(Secret(key)), repo=str(git_dir)).hits)


def run_cauterize(remote: Path, key: str, timings: Timings) -> None:
    argv = [sys.executable, "-c", ENTRY, "purge", "--key-env", "K", "--repo", str(remote), "--push", "--yes", "--json"]
    started = time.perf_counter()
    done = subprocess.run(argv, env=env_with_key(key), capture_output=True, check=False)
    timings.runs.append(time.perf_counter() - started)
    if done.returncode != 0:
        raise SystemExit(f"cauterize purge failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    (result,) = json.loads(done.stdout)["repos"]
    if not result["verified"]:
        raise SystemExit(f"cauterize purge did not verify: {result['leftovers']}")
    for step, seconds in _STEP.findall(done.stderr.decode()):
        timings.part(re.sub(r"\d+", "N", step), float(seconds))
    check = remote.with_name("check.git")  # what anyone can fetch now (the remote keeps old objects until a gc)
    shutil.rmtree(check, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", "--mirror", remote.as_uri(), str(check)], check=True)
    timings.left = copies_left(check, key)
    shutil.rmtree(check, ignore_errors=True)


def write_expressions(path: Path, key: str) -> None:
    forms = Matcher(Secret(key)).forms
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(b"".join(b"literal:%s==>***REMOVED***\n" % form for _, form in forms))


def run_filter_repo(remote: Path, key: str, scratch: Path, timings: Timings) -> None:
    mirror, expressions = scratch / "floor.git", scratch / "expressions.txt"
    shutil.rmtree(mirror, ignore_errors=True)
    write_expressions(expressions, key)
    try:
        started = time.perf_counter()
        subprocess.run(["git", "clone", "-q", "--mirror", remote.as_uri(), str(mirror)], check=True)
        cloned = time.perf_counter()
        subprocess.run([*filter_repo_command(), "--replace-text", str(expressions)], cwd=mirror, check=True,
                       capture_output=True)
        ended = time.perf_counter()
    finally:
        expressions.unlink(missing_ok=True)
    timings.runs.append(ended - started)
    timings.part("mirror clone", cloned - started)
    timings.part("git filter-repo --replace-text", ended - cloned)
    timings.left = copies_left(mirror, key)
    shutil.rmtree(mirror, ignore_errors=True)


def run_filter_branch(remote: Path, key: str, scratch: Path, budget: float, kind: str) -> Timings:
    """One bounded run; returns the elapsed time extrapolated to every commit."""
    work = scratch / f"filter-branch-{kind}"
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", "--no-local", str(remote), str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "fetch", "-q", "origin", "+refs/heads/*:refs/heads/*",
                    "+refs/tags/*:refs/tags/*", "--update-head-ok"], check=True)
    replace = r"perl -pi -e 's/\Q$ENV{K}\E/***REMOVED***/g'"
    if kind == "tree-filter":
        filters = ["--tree-filter", f"find . -type f -print0 | xargs -0 -r {replace}",
                   "--msg-filter", r"perl -pe 's/\Q$ENV{K}\E/***REMOVED***/g'"]
    else:
        filters = ["--index-filter", "git rm -q --cached --ignore-unmatch " + " ".join(_INDEX_PATHS)]
    argv = ["git", "filter-branch", "-f", *filters, "--tag-name-filter", "cat", "--", "--all"]
    log = scratch / f"filter-branch-{kind}.log"
    started = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=work, env=env_with_key(key), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=budget)
            finished = True
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            finished = False
    elapsed = time.perf_counter() - started
    progress = _REWRITE.findall(log.read_bytes().decode(errors="replace").replace("\r", "\n"))
    timings = Timings()
    if finished:
        timings.runs.append(elapsed)
        timings.note = f"finished in {elapsed:.0f} s"
    elif progress:
        done, total = int(progress[-1][0]), int(progress[-1][1])
        timings.runs.append(elapsed * total / done)
        timings.note = f"extrapolated: {done} of {total} commits in {elapsed:.0f} s"
    else:
        timings.note = f"no commit rewritten within {elapsed:.0f} s"
    shutil.rmtree(work, ignore_errors=True)
    log.unlink(missing_ok=True)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=640, help="uncompressed blob bytes to generate, in MB")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cauterize-bench-purge"))
    parser.add_argument("--budget", type=float, default=60.0, help="seconds each git filter-branch may run")
    parser.add_argument("--no-filter-branch", action="store_true")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.workdir.chmod(0o700)
    bench = synthetic.build(args.workdir, args.size_mb)
    pristine = args.workdir / f"remote-{args.size_mb}mb.git"
    if not pristine.exists():
        subprocess.run(["git", "clone", "-q", "--mirror", bench.repo.as_uri(), str(pristine)], check=True)
    remote, scratch = args.workdir / "remote.git", args.workdir / "scratch"
    scratch.mkdir(exist_ok=True)
    cauterize, floor = Timings(), Timings()
    for run in range(args.runs):  # interleaved, each on a fresh copy of the remote
        order = [("cauterize", cauterize), ("filter-repo", floor)]
        for name, timings in order if run % 2 == 0 else order[::-1]:
            fresh_remote(pristine, remote)
            if name == "cauterize":
                run_cauterize(remote, bench.key, timings)
            else:
                run_filter_repo(remote, bench.key, scratch, timings)
        print(f"  run {run + 1}: cauterize {cauterize.runs[-1]:.2f} s, filter-repo {floor.runs[-1]:.2f} s",
              file=sys.stderr)
    branches = {}
    if not args.no_filter_branch:
        for kind in ("tree-filter", "index-filter"):
            branches[kind] = run_filter_branch(fresh_remote(pristine, remote), bench.key, scratch, args.budget, kind)
            print(f"  filter-branch --{kind}: {branches[kind].note}", file=sys.stderr)
    shutil.rmtree(remote, ignore_errors=True)
    report(bench, pristine, cauterize, floor, branches, args)


def report(bench, pristine: Path, cauterize: Timings, floor: Timings, branches: dict[str, Timings], args) -> None:
    base = statistics.median(floor.runs)
    rewrite_only = statistics.median(floor.parts["git filter-repo --replace-text"])
    commits = subprocess.run(["git", "-C", str(pristine), "rev-list", "--all", "--count"], capture_output=True,
                             check=True).stdout.decode().strip()
    print(f"repository: {bench.blob_bytes / 1e6:.0f} MB of uncompressed blobs, {commits} commits served; "
          f"median of {args.runs} interleaved runs, each on a fresh copy of the remote")
    print(f"  {'contender':34s} {'median':>9s} {'range':>13s} {'x floor':>8s} {'x filter-repo':>14s}  left")
    rows = [("cauterize purge --push --yes", cauterize), ("clone + git filter-repo (floor)", floor)]
    rows += [(f"git filter-branch --{kind}", timings) for kind, timings in branches.items()]
    for name, timings in rows:
        if not timings.runs:
            print(f"  {name:34s} {'-':>9s}  {timings.note}")
            continue
        median = statistics.median(timings.runs)
        spread = f"{min(timings.runs):.2f}-{max(timings.runs):.2f}" if len(timings.runs) > 1 else "(1 run)"
        left = "-" if timings.left is None else str(timings.left)
        print(f"  {name:34s} {median:8.2f}s {spread:>13s} {median / base:7.2f}x {median / rewrite_only:13.2f}x  "
              f"{left:4s} {timings.note}")
    print("  parts (medians):")
    for name, timings in rows[:2]:
        parts = ", ".join(f"{part} {statistics.median(values):.2f} s" for part, values in timings.parts.items())
        print(f"    {name}: {parts}")
    print("  left: objects holding the key afterwards, in any form (cauterize: in a fresh mirror clone of the "
          "remote; filter-repo: in its rewritten mirror)")


if __name__ == "__main__":
    main()
