"""Logging for cauterize: progress on stderr, and a last-line filter that redacts live secrets."""

from __future__ import annotations

import logging
import sys

from cauterize.secret import scrub

LOGGER = logging.getLogger("cauterize")


class RedactingFilter(logging.Filter):
    """Replace any live secret's value in a record by its fingerprint (the last line of defence:
    code never logs values in the first place)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


def install_filter(*names: str) -> None:
    """Attach the redacting filter to the named loggers and to every handler they reach."""
    redactor = RedactingFilter()
    for name in names or ("",):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(redactor)
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(redactor)


def progress_to_stderr(level: int = logging.INFO) -> None:
    if any(getattr(h, "_cauterize", False) for h in LOGGER.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cauterize: %(message)s"))
    handler._cauterize = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    LOGGER.addHandler(handler)
    LOGGER.setLevel(level)
    LOGGER.propagate = False
