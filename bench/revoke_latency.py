"""Time from process start to the revoke request reaching the provider, cold, side by side with peers.

    .venv/bin/python bench/revoke_latency.py [--runs 7]

Each run starts a fresh process. The provider is the OpenAI emulator on a local socket holding
the leaked key among 120 others (so identification pages through the key list). Peers:
  * floor-curl:   curl sending the DELETE directly (the key id already known: no identification);
  * floor-python: python -c "import httpx; DELETE" (the interpreter plus an HTTP client);
  * cauterize:    cauterize revoke --provider openai --key-env K --yes (identify + DELETE + confirm).
Reports the median time to the DELETE's arrival and the ratio to each floor.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cauterize.sandbox.openai import OpenAIEmulator  # noqa: E402
from cauterize.sandbox.server import serve  # noqa: E402


class Timed:
    """Wraps the emulator: notes when the first DELETE arrives."""

    def __init__(self, emulator: OpenAIEmulator):
        self.emulator = emulator
        self.arrived = threading.Event()
        self.at = 0.0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE" and not self.arrived.is_set():
            self.at = time.perf_counter()
            self.arrived.set()
        return self.emulator(request)


def one_run(kind: str) -> float:
    emulator = OpenAIEmulator()
    admin = emulator.add_admin_key()
    project = emulator.add_project("web")
    for index in range(120):
        emulator.add_user_key(project, name=f"k{index}")
    key_id, leaked = emulator.add_user_key(project, name="leaked")
    timed = Timed(emulator)
    with serve(timed) as app:
        base = f"{app.url}/v1"
        env = {**os.environ, "OPENAI_BASE_URL": base, "OPENAI_ADMIN_KEY": admin, "K": leaked}
        url = f"{base}/organization/projects/{project}/api_keys/{key_id}"
        if kind == "cauterize":
            argv = [str(ROOT / ".venv/bin/cauterize"), "revoke", "--provider", "openai", "--key-env", "K", "--yes"]
        elif kind == "floor-curl":
            argv = ["curl", "-s", "-o", "/dev/null", "-X", "DELETE", "-H", "Authorization: Bearer " + admin, url]
        else:
            code = "import httpx,os,sys; httpx.delete(sys.argv[1], headers={'Authorization': 'Bearer '+os.environ['OPENAI_ADMIN_KEY']})"
            argv = [sys.executable, "-c", code, url]
        started = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=60)
        if not timed.arrived.wait(5):
            raise RuntimeError(f"{kind}: no DELETE arrived")
        return timed.at - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    kinds = ["floor-python", "cauterize"] + (["floor-curl"] if shutil.which("curl") else [])
    results: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(args.runs):  # interleaved, so machine load hits every contender alike
        for kind in kinds:
            results[kind].append(one_run(kind))
    medians = {kind: statistics.median(times) for kind, times in results.items()}
    print(f"time from process start to the DELETE reaching the server (median of {args.runs} cold runs)")
    for kind, median in medians.items():
        spread = f"{min(results[kind]):.3f}-{max(results[kind]):.3f}"
        print(f"  {kind:13s} {median:6.3f} s   (range {spread} s)")
    for floor in ("floor-python", "floor-curl"):
        if floor in medians:
            print(f"  cauterize / {floor}: {medians['cauterize'] / medians[floor]:.2f}x")
    print(f"  target: <= 1.0 s (aim 0.5 s): {'met' if medians['cauterize'] <= 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
