"""Fault points for the crash-and-resume tests (a documented test hook, off unless set).

``CAUTERIZE_FAULT=kill-after:<point>`` kills the process with SIGKILL when it passes ``<point>``:
the mint (``mint``), or the end of a step (``intake``, ``revoke``, ... ``report``). Nothing is
flushed or cleaned up, exactly as when the machine dies; a rerun must converge from the record.
"""

from __future__ import annotations

import os
import signal


def point(name: str) -> None:
    if os.environ.get("CAUTERIZE_FAULT") == f"kill-after:{name}":
        os.kill(os.getpid(), signal.SIGKILL)
