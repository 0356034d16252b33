"""Verify a purge independently: ``purge_verify.verify_objects`` over every reachable object, side by side
with the floor and with locate's matcher scan.

    .venv/bin/python bench/verify.py [--runs 5] [--size-mb 640] [--workdir /tmp/cauterize-bench-purge]
                                     [--real DIR --real-mb 400]

The repository is ``bench/locate.py``'s synthetic one (built once and cached under ``--workdir``, as
``bench/purge.py`` does): 640 MB of generated code, JSON and prose over a few thousand commits, the
key planted in nine places (eight reachable). ``--real DIR`` also builds (once) a repository of one
commit holding the files under DIR (a virtualenv's site-packages is a fair mix of real code, data
and binaries), where the prefilter passes more objects to the decoders than on generated text.

Contenders, interleaved run by run, each timed from the call to the answer:
  * floor:        ``git cat-file --batch-all-objects --batch --unordered > /dev/null`` (reference/git-facts.md)
  * floor-sorted: the same without ``--unordered`` (object-id order; once, it is several times slower)
  * verify:       ``verify_objects(git_dir, secret, None, label=...)``: rev-list, listing, two cat-files
  * matcher scan: ``cauterize.locate.git.scan_objects`` (locate's pass: raw, base64, url and json forms)
Reports medians, the ratio to the floor, CPU seconds (this process and its children) and what each found.
"""

from __future__ import annotations

import argparse
import os
import resource
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
from cauterize.purge_verify import verify_objects
from cauterize.secret import Secret


@dataclass
class Timings:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    found: str = ""


def cpu_now() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(timings: Timings, action) -> None:
    cpu, started = cpu_now(), time.perf_counter()
    result = action()
    timings.wall.append(time.perf_counter() - started)
    timings.cpu.append(cpu_now() - cpu)
    timings.found = result


def floor(git_dir: Path, *extra: str) -> str:
    with open(os.devnull, "wb") as sink:
        subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "--batch-all-objects", "--batch", *extra],
                       stdout=sink, check=True)
    return "-"


def verify(git_dir: Path, secret: Secret) -> str:
    survivors = verify_objects(git_dir, secret, None, label=str(git_dir))
    found = [s for s in survivors if not s.unsearched]
    objects = len({s.object for s in found})
    return (f"{objects} objects hold the key, as {', '.join(sorted({s.where for s in found}))}; "
            f"{len(survivors) - len(found)} unsearched")


def matcher_scan(git_dir: Path, secret: Secret) -> str:
    scan = scan_objects(git_dir, Matcher(secret), repo=str(git_dir))
    return f"{len(scan.hits)} objects hold the key (every object, reachable or not)"


def real_repo(workdir: Path, source: Path, size_mb: int) -> Path:
    """A one-commit repository of the files under ``source`` (at most ``size_mb`` MB), built once."""
    repo = workdir / f"real-{size_mb}mb.git"
    if (repo / "bench-done").exists():
        return repo
    subprocess.run(["rm", "-rf", str(repo)], check=True)
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    importer = subprocess.Popen(["git", "--git-dir", str(repo), "fast-import", "--quiet"], stdin=subprocess.PIPE)
    out, total = importer.stdin, 0
    out.write(b"commit refs/heads/main\ncommitter Bench <bench@example.invalid> 1600000000 +0000\ndata 4\nreal\n")
    for path in sorted(source.rglob("*")):
        if total > size_mb * 1_000_000 or not path.is_file() or path.is_symlink() or path.suffix == ".pyc":
            continue
        data = path.read_bytes()
        if len(data) > 8 << 20:
            continue
        name = path.relative_to(source).as_posix().encode()
        out.write(b"M 100644 inline " + name + b"\ndata %d\n" % len(data) + data + b"\n")
        total += len(data)
    out.write(b"\n")
    out.close()
    if importer.wait() != 0:
        raise SystemExit("git fast-import failed")
    subprocess.run(["git", "--git-dir", str(repo), "repack", "-a", "-d", "-q"], check=True)
    (repo / "bench-done").write_text(f"{total}\n")
    print(f"  built {repo}: {total / 1e6:.0f} MB of files", file=sys.stderr)
    return repo


def compare(name: str, git_dir: Path, key: str, runs: int) -> None:
    secret = Secret(key)
    contenders = {
        "floor (cat-file --unordered)": Timings(),
        "verify_objects": Timings(),
        "matcher scan_objects": Timings(),
    }
    actions = {
        "floor (cat-file --unordered)": lambda: floor(git_dir, "--unordered"),
        "verify_objects": lambda: verify(git_dir, secret),
        "matcher scan_objects": lambda: matcher_scan(git_dir, secret),
    }
    for run in range(runs):
        order = list(actions) if run % 2 == 0 else list(actions)[::-1]
        for contender in order:
            timed(contenders[contender], actions[contender])
        print(f"  run {run + 1}: " + ", ".join(f"{c} {t.wall[-1]:.2f} s" for c, t in contenders.items()),
              file=sys.stderr)
    sorted_floor = Timings()
    timed(sorted_floor, lambda: floor(git_dir))
    base = statistics.median(contenders["floor (cat-file --unordered)"].wall)
    print(f"{name}: median of {runs} interleaved runs")
    print(f"  {'contender':30s} {'median':>8s} {'range':>11s} {'x floor':>8s} {'cpu':>7s}  found")
    rows = list(contenders.items()) + [("floor (cat-file, id order)", sorted_floor)]
    for contender, timings in rows:
        median = statistics.median(timings.wall)
        spread = f"{min(timings.wall):.2f}-{max(timings.wall):.2f}" if len(timings.wall) > 1 else "(1 run)"
        print(f"  {contender:30s} {median:7.2f}s {spread:>11s} {median / base:7.2f}x {statistics.median(timings.cpu):6.2f}s"
              f"  {timings.found}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=640, help="uncompressed blob bytes to generate, in MB")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cauterize-bench-purge"))
    parser.add_argument("--real", type=Path, help="also measure a repository of the files under this directory")
    parser.add_argument("--real-mb", type=int, default=400)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.workdir.chmod(0o700)
    bench = synthetic.build(args.workdir, args.size_mb)
    compare(f"synthetic repository ({bench.blob_bytes / 1e6:.0f} MB of blobs)", bench.repo / ".git", bench.key,
            args.runs)
    if args.real:
        repo = real_repo(args.workdir, args.real, args.real_mb)
        compare(f"real files ({repo.name}, key absent)", repo, synthetic.make_key(), args.runs)


if __name__ == "__main__":
    main()
