"""Time to contain: from command start to the old key's revocation reaching the provider.

    .venv/bin/python bench/contain.py [--runs 5]

Side by side, each run a fresh sandbox world (OpenAI emulator on a socket, the leaked key among
25 others, a git remote, two .env stores) and a fresh process:
  * revoke:      `cauterize revoke --provider openai --yes` (the floor: no incident, no flow);
  * respond:     `cauterize respond RUNBOOK --yes` (revoke-first: intake and revoke in process,
                 then the Prefect flow resumes the incident);
  * flow-first:  the same flow started without the in-process containment (Prefect's ephemeral
                 start-up comes before the revoke), for comparison.
Reports medians of the DELETE's arrival after process start, the record's time_to_contain_s,
and ratios. Target (issue 8): respond <= 1.5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cauterize.sandbox.world import build_world  # noqa: E402


def one_run(kind: str) -> float:
    with tempfile.TemporaryDirectory(prefix="cauterize-bench-contain-") as tmp:
        world = build_world(Path(tmp) / "w")
        arrived = threading.Event()
        stamp = [0.0]
        emulator = world.emulator
        original = emulator.__class__.__call__

        def timed(self, request: httpx.Request) -> httpx.Response:
            if request.method == "DELETE" and not arrived.is_set():
                stamp[0] = time.perf_counter()
                arrived.set()
            return original(self, request)

        emulator.__class__.__call__ = timed
        try:
            env = {**os.environ, **world.env, "PREFECT_HOME": str(Path(tmp) / "prefect"), "PREFECT_API_URL": ""}
            cli = [str(ROOT / ".venv/bin/cauterize")]
            argv = {
                "revoke": cli + ["revoke", "--provider", "openai", "--key-env", "CAUTERIZE_SANDBOX_LEAKED_KEY", "--yes"],
                "respond": cli + ["respond", str(world.runbook), "--yes"],
                "flow-first": [sys.executable, "-c",
                               "import sys; from cauterize.flows.runner import run_flow; run_flow(sys.argv[1])",
                               str(world.runbook)],
            }[kind]
            started = time.perf_counter()
            subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300,
                           stdin=subprocess.DEVNULL)
            if not arrived.wait(5):
                raise RuntimeError(f"{kind}: no DELETE arrived")
            return stamp[0] - started
        finally:
            emulator.__class__.__call__ = original
            world.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    kinds = ["revoke", "respond", "flow-first"]
    results: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(args.runs):
        for kind in kinds:
            results[kind].append(one_run(kind))
    medians = {kind: statistics.median(values) for kind, values in results.items()}
    print(f"command start -> revocation at the provider (median of {args.runs} runs)")
    for kind, median in medians.items():
        print(f"  {kind:11s} {median:6.3f} s  (range {min(results[kind]):.3f}-{max(results[kind]):.3f})"
              f"  {median / medians['revoke']:5.2f}x revoke")
    print(f"  target respond <= 1.5 s: {'met' if medians['respond'] <= 1.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
