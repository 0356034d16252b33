"""What locate reports: one ``Finding`` per copy of the key, and the ``LocateResult`` of a search.

The JSON shape is the contract of DESIGN.md section 5 (``locate --json``), plus ``object`` (the git
object id holding the copy) and ``kind`` (``blob``, ``commit``, ``tag`` or ``file``). Fields that
do not apply are ``None``. A finding names where a copy is, never the copy itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

SOURCES = ("git", "file", "s3", "ci-log")
ENCODINGS = ("raw", "base64", "url", "json")
KINDS = ("blob", "commit", "tag", "file", "path-name", "ref-name")  # path-name, ref-name: the key is in a name


def iso_utc(timestamp: float) -> str:
    """A Unix time as ISO-8601 in UTC with a ``Z`` suffix, e.g. ``2024-05-01T12:00:00Z``."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    """An ISO-8601 string as an aware datetime (naive values are taken as UTC)."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One copy of the key: where it is, in which encoding, and since when it has been there."""

    source: str
    location: str
    repo: str | None = None
    commit: str | None = None
    ref: str | None = None
    path: str | None = None
    reachable: bool | None = None
    encoding: str = "raw"
    first_seen: str | None = None
    object: str | None = None
    kind: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"finding source {self.source!r} is not one of {', '.join(SOURCES)}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"finding encoding {self.encoding!r} is not one of {', '.join(ENCODINGS)}")
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"finding kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.first_seen is not None:
            parse_time(self.first_seen)  # raises ValueError if it is not ISO-8601

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        """The inverse of ``to_dict`` (unknown keys are ignored, so older records still load)."""
        names = cls.__dataclass_fields__
        return cls(**{key: value for key, value in data.items() if key in names})


@dataclass(frozen=True)
class LocateResult:
    """Every finding for one key across the sources searched, and the sources that failed."""

    fingerprint: str
    findings: list[Finding] = field(default_factory=list)
    sources_scanned: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def exposure_start(self) -> str | None:
        """The earliest ``first_seen`` of any finding: when the key started being exposed."""
        seen = [finding.first_seen for finding in self.findings if finding.first_seen]
        if not seen:
            return None
        return min(seen, key=parse_time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "findings": [finding.to_dict() for finding in self.findings],
            "sources_scanned": list(self.sources_scanned),
            "errors": list(self.errors),
            "exposure_start": self.exposure_start,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocateResult:
        return cls(
            fingerprint=data["fingerprint"],
            findings=[Finding.from_dict(item) for item in data.get("findings", [])],
            sources_scanned=list(data.get("sources_scanned", [])),
            errors=list(data.get("errors", [])),
        )
