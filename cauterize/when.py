"""Times as people type them on a command line or in a flow parameter: ISO-8601 (``2026-03-01T12:00Z``,
``2026-03-01``; no zone means UTC) or a time ago (``36h``, ``7d``, ``90m``, ``2w``, optionally
followed by ``ago``; ``now``). Shared by ``cauterize evidence``, ``cauterize watch`` and the key-watch flow.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from cauterize.errors import InputError

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])(?:\s+ago)?$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(value: str, option: str, *, now: datetime | None = None) -> datetime:
    """An ISO-8601 time or a time ago (``36h``, ``7d``...), as an aware UTC datetime."""
    text = value.strip().lower()
    now = now or datetime.now(UTC)
    if text == "now":
        return now
    relative = _RELATIVE.match(text)
    if relative:
        return now - timedelta(**{_UNIT[relative.group(2)]: float(relative.group(1))})
    try:
        moment = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise InputError(
            f"{option}: '{value}' is neither ISO-8601 (2026-03-01T12:00Z) nor a time ago like 36h, 7d or 90m"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw]?)$")


def parse_duration(value: str | float | int, option: str) -> float:
    """A length of time as people write it (``90s``, ``5m``, ``2h``, ``30d``, or plain seconds), in seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip().lower())
        if not match:
            raise InputError(f"{option}: '{value}' is not a duration like 90s, 5m, 2h or 30d")
        seconds = timedelta(**{_UNIT[match.group(2) or "s"]: float(match.group(1))}).total_seconds()
    if seconds < 0:
        raise InputError(f"{option}: '{value}' is negative")
    return seconds
