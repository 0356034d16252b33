"""Find one key in bytes, in every form a copy of it may take, in one pass per form.

``Matcher(secret)`` holds the byte forms of ``Secret.encodings()`` (raw, base64 at all three
alignments and both alphabets, percent-encoded, JSON-escaped) and reports each occurrence as a
``Match(encoding, offset, container)``. Forms are few (typically seven), so ``bytes.find`` per
form beats any regex alternation. Only this key's exact forms match: another key that merely
shares its prefix does not. A longer token that *contains* the whole key is reported, because it
holds a full copy of it.

Gzip members (``.gz`` files, ``.tar.gz`` archives, gzip-compressed blobs) are decompressed up to
``GZIP_LIMIT`` bytes and scanned too; their matches carry ``container="gzip"`` and an offset into
the decompressed data.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from cauterize.secret import Secret

GZIP_MAGIC = b"\x1f\x8b"
#: Most decompressed bytes scanned per gzip container (guards against decompression bombs).
GZIP_LIMIT = 64 << 20


@dataclass(frozen=True)
class Match:
    """One occurrence: which encoding, where (``offset``, ``length`` bytes), and inside which container
    (``None``: the data itself; ``"gzip"``: the offset is into the decompressed content)."""

    encoding: str
    offset: int
    container: str | None = None
    length: int = 0


class Matcher:
    """Every encoded form of one key, searched with ``bytes.find``. Never shows a form in ``repr``."""

    __slots__ = ("_forms", "fingerprint")

    def __init__(self, secret: Secret):
        self.fingerprint = secret.fingerprint
        self._forms = tuple((name, form) for name, forms in secret.encodings().items() for form in forms)

    @property
    def forms(self) -> tuple[tuple[str, bytes], ...]:
        """``(encoding, form bytes)`` pairs, raw first: the literals a purge must replace."""
        return self._forms

    def find(self, data: bytes | bytearray, start: int = 0, end: int | None = None) -> list[Match]:
        """Occurrences in ``data[start:end]`` (offsets are into ``data``), without opening containers."""
        end = len(data) if end is None else end
        found = []
        for name, form in self._forms:
            at = data.find(form, start, end)
            while at >= 0:
                found.append(Match(name, at, None, len(form)))
                at = data.find(form, at + 1, end)
        found.sort(key=lambda match: match.offset)
        return found

    def scan(self, data: bytes | bytearray) -> list[Match]:
        """Occurrences in ``data``, plus those inside it when it is gzip-compressed."""
        found = self.find(data)
        if data[:2] == GZIP_MAGIC:
            found.extend(self.scan_gzip(data))
        return found

    def scan_gzip(self, data: bytes | bytearray) -> list[Match]:
        """Occurrences in the decompressed content of gzip ``data`` (empty if it does not inflate)."""
        content = gunzip(data)
        if not content:
            return []
        return [Match(m.encoding, m.offset, "gzip", m.length) for m in self.find(content)]

    def contains(self, data: bytes | bytearray) -> bool:
        """Whether any form occurs in ``data`` (containers not opened)."""
        return any(form in data for _, form in self._forms)

    def redact(self, text: str) -> str:
        """``text`` with every form of the key replaced by its fingerprint (for error messages)."""
        for _, form in self._forms:
            text = text.replace(form.decode("utf-8", "replace"), f"[{self.fingerprint}]")
        return text

    def __repr__(self) -> str:
        return f"Matcher({self.fingerprint}, {len(self._forms)} forms)"

    def __reduce__(self):
        raise TypeError("a Matcher holds key material and cannot be pickled; pass the fingerprint instead")


def gunzip(data: bytes | bytearray, limit: int = GZIP_LIMIT) -> bytes:
    """Decompress every gzip member of ``data``, up to ``limit`` bytes; ``b""`` if it is not gzip."""
    out: list[bytes] = []
    size = 0
    rest = bytes(data)
    try:
        while rest[:2] == GZIP_MAGIC and size < limit:
            inflater = zlib.decompressobj(wbits=31)
            chunk = inflater.decompress(rest, limit - size)
            out.append(chunk)
            size += len(chunk)
            if not inflater.eof:
                break
            rest = inflater.unused_data
    except zlib.error:
        pass  # a corrupt or truncated member: keep what inflated
    return b"".join(out)
