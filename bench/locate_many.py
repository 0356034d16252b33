"""Locate over many repositories: the flow's mapped scan against a plain loop, side by side.

    .venv/bin/python bench/locate_many.py [--repos 50] [--commits 200] [--runs 3]

Builds N small repositories (each with a few hundred commits and the key planted once in its
history) under --workdir, opens one incident whose runbook lists them all, then times:
  * loop:          response.scan_source over every source, one after the other (no Prefect);
  * threads-1/4:   the flow's mapping (tasks.steps.scan_source.map) on Prefect's thread pool;
  * dask:          the same mapping on a local Dask cluster (prefect-dask), 2 workers.
Every contender must find the N planted copies. Reports medians and ratios to the loop.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_repo(path: Path, key: str, commits: int) -> None:
    """A repository from one git fast-import stream; the key sits in commit commits//2 only."""
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    lines = []
    for n in range(commits):
        body = f"# module {n}\n" + "x = %d\n" % n * 40
        if n == commits // 2:
            body += f'API_KEY = "{key}"\n'
        data = body.encode()
        lines += [b"commit refs/heads/main", b"mark :%d" % (n + 1),
                  b"committer Bench <b@example.com> %d +0000" % (1_700_000_000 + n * 60),
                  b"data 6", b"commit"]
        if n:
            lines.append(b"from :%d" % n)
        lines += [b"M 100644 inline src/mod%d.py" % (n % 25), b"data %d" % len(data), data]
    stream = b"\n".join(lines) + b"\n"
    subprocess.run(["git", "fast-import", "--quiet"], cwd=path, input=stream, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=50)
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cauterize-bench-many")
    args = parser.parse_args()
    work = args.workdir
    key = "sk-proj-" + secrets.token_urlsafe(48)  # a throwaway key, made now
    os.environ["BENCH_LEAKED"] = key
    repos = []
    work.mkdir(parents=True, exist_ok=True)
    for n in range(args.repos):
        path = work / f"repo{n:03d}.git"
        if path.exists():
            subprocess.run(["rm", "-rf", str(path)], check=True)
        build_repo(path, key, args.commits)
        repos.append(path)
    runbook = work / "runbook.yaml"
    runbook.write_text("version: 1\nname: bench-many\nkey: {provider: openai, source: env:BENCH_LEAKED}\n"
                       f"locate:\n  git: [{', '.join(str(r) for r in repos)}]\n"
                       f"report: {{dir: {work / 'incidents'}}}\n")
    os.environ["PREFECT_HOME"] = str(work / "prefect")
    from cauterize.flows.runner import configure_prefect

    configure_prefect(work / "prefect")
    from prefect import flow, unmapped

    from cauterize import response
    from cauterize.flows.runner import task_runner
    from cauterize.tasks.steps import scan_source

    incident = response.open_incident(runbook)
    sources = response.locate_sources(incident)

    def loop() -> int:
        return sum(len(response.scan_source(incident, s)["findings"]) for s in sources)

    def mapped(runner_factory):
        @flow(name="bench-locate-many", task_runner=runner_factory(), persist_result=False)
        def run() -> int:
            futures = scan_source.map(unmapped(str(incident)), sources)
            return sum(len(f.result()["findings"]) for f in futures)

        return run

    def dask_runner():
        os.environ["CAUTERIZE_TASK_RUNNER"] = "dask"
        try:
            return task_runner(2)
        finally:
            os.environ.pop("CAUTERIZE_TASK_RUNNER")

    contenders = {
        "loop": loop,
        "threads-1": mapped(lambda: task_runner(1)),
        "threads-4": mapped(lambda: task_runner(4)),
        "dask": mapped(dask_runner),
    }
    contenders["threads-1"]()  # warm-up: Prefect's ephemeral server starts once, outside the timings
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.runs):
        for name, run in contenders.items():
            started = time.perf_counter()
            found = run()
            times[name].append(time.perf_counter() - started)
            if found != args.repos:
                raise SystemExit(f"{name} found {found} copies, expected {args.repos}")
    base = statistics.median(times["loop"])
    print(f"locate over {args.repos} repositories x {args.commits} commits, median of {args.runs} runs")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:10s} {median:7.2f} s   {median / base:5.2f}x the loop   ({args.repos} / {args.repos} found)")


if __name__ == "__main__":
    main()
