"""How long `cauterize revoke` takes to confirm a revocation that propagates, side by side with the
fixed loop it replaced (5 checks 1 s apart), against the OpenAI emulator on a local socket.

    .venv/bin/python bench/confirmation.py [--delays 0,1,3,8,20] [--runs 3]

For each propagation delay (the emulator keeps answering 200 for a deleted key that long, then 401),
each contender revokes a fresh key through the real CLI code path (identify, DELETE, confirm) in a
child process:
  * cauterize:  `cauterize revoke --provider openai --key-env K --yes --json` (backoff 0.5 s doubling,
                capped at 3 s, over the provider's 90 s window);
  * fixed-5x1s: the same command with the old policy (5 checks 1 s apart), run through
                `providers.base.confirm_liveness` with a 4 s window and a constant 1 s wait.
Reports the median seconds from the DELETE to the confirmed death, the overshoot past the delay,
the number of liveness checks, and the verdict (a false exit 4 where the fixed loop gives up early).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cauterize.sandbox.openai import OpenAIEmulator  # noqa: E402
from cauterize.sandbox.server import serve  # noqa: E402

#: the old loop, as a child: identify + revoke with the provider, then 5 checks 1 s apart
FIXED = """
import json, os, sys
from cauterize.providers.base import Liveness, confirm_liveness, get_provider, settings_for
from cauterize.secret import Secret
client = get_provider("openai", settings_for("openai"))
key = Secret(os.environ["K"])
client.revoke(client.identify(key))
result = confirm_liveness(lambda: client.check(key), want=Liveness.DEAD, window_s=4.0, first_wait=1.0, max_wait=1.0)
print(json.dumps({"liveness": result.verdict.value, "confirmation": result.to_dict()}))
sys.exit(0 if result.confirmed else 4)
"""


def one_run(kind: str, delay: float) -> dict:
    emulator = OpenAIEmulator(revocation_delay_s=delay)
    admin = emulator.add_admin_key()
    project = emulator.add_project("web")
    _, leaked = emulator.add_user_key(project, name="leaked")
    with serve(emulator) as app:
        env = {**os.environ, "OPENAI_BASE_URL": f"{app.url}/v1", "OPENAI_ADMIN_KEY": admin, "K": leaked}
        if kind == "cauterize":
            args = [sys.executable, "-c", "from cauterize.cli import entry; entry()",
                    "revoke", "--provider", "openai", "--key-env", "K", "--yes", "--json"]
        else:
            args = [sys.executable, "-c", FIXED]
        done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    document = json.loads(done.stdout)
    confirmation = document["confirmation"]
    return {"exit": done.returncode, "seconds": confirmation["seconds"], "attempts": confirmation["attempts"],
            "verdict": document["liveness"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays", default="0,1,3,8,20")
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    print("| propagation | contender | exit | confirmed after (median) | overshoot | checks | verdict |")
    print("|---|---|---|---|---|---|---|")
    for delay in [float(d) for d in options.delays.split(",")]:
        for kind in ("cauterize", "fixed-5x1s"):
            runs = [one_run(kind, delay) for _ in range(options.runs)]
            seconds = statistics.median(r["seconds"] for r in runs)
            exits = sorted({r["exit"] for r in runs})
            verdicts = sorted({r["verdict"] for r in runs})
            overshoot = f"{seconds - delay:+.2f} s" if "dead" in verdicts else "—"
            print(f"| {delay:g} s | {kind} | {','.join(map(str, exits))} | {seconds:.2f} s | {overshoot} | "
                  f"{statistics.median(r['attempts'] for r in runs):g} | {','.join(verdicts)} |", flush=True)


if __name__ == "__main__":
    main()
