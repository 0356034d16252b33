"""Fault points for the crash-and-resume tests (a documented test hook, off unless set).

``CAUTERIZE_FAULT=<action>-after:<point>`` acts when the process passes ``<point>``: the end of a
step (``intake``, ``revoke``, ... ``report``), or a point inside one: ``mint`` (rotate, the new key
exists at the provider only), ``primary-store`` (rotate, the primary store holds it),
``first-store`` (redeploy, the first other store holds it), ``purge-expressions`` (purge, the
replacement expressions are on disk). The actions:

- ``kill``: SIGKILL. Nothing is flushed or cleaned up, exactly as when the machine dies; a rerun
  must converge from the record.
- ``sigint`` / ``sigterm``: the signal a person (Ctrl-C) or a supervisor sends, to this process only.
  The response must stop within seconds, record the step as interrupted, and resume on a rerun.
"""

from __future__ import annotations

import os
import signal

ACTIONS = {"kill": signal.SIGKILL, "sigint": signal.SIGINT, "sigterm": signal.SIGTERM}


def point(name: str) -> None:
    action, _, where = os.environ.get("CAUTERIZE_FAULT", "").partition("-after:")
    if where == name and action in ACTIONS:
        os.kill(os.getpid(), ACTIONS[action])
