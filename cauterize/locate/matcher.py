"""Find one key in bytes, in every form a copy of it may take, in one pass per form.

``Matcher(secret)`` holds the byte forms of ``Secret.encodings()`` (raw, base64 at all three
alignments and both alphabets, percent-encoded, JSON-escaped) and reports each occurrence as a
``Match(encoding, offset, container)``. Forms are few (typically seven), so ``bytes.find`` per
form beats any regex alternation. Only this key's exact forms match: another key that merely
shares its prefix does not. A longer token that *contains* the whole key is reported, because it
holds a full copy of it.

``scan(data)`` searches the bytes as they are first, then, only when the magic bytes at the start
say so, opens the container they are and searches its members:

- gzip (``1f 8b``): every gzip member, decompressed; ``container="gzip"``;
- zip (``PK\\x03\\x04``; jar, whl): every entry, stored or deflated, read with ``zipfile``;
  ``container="zip:config/prod.env"``;
- tar (``ustar`` at offset 257; POSIX, pax and GNU tars): every regular member;
  ``container="tar:etc/app.env"``.

A container inside a member is opened too, up to ``Limits.depth`` levels, and the labels chain
with ``!``: ``"zip:logs/app.log.gz!gzip"``, ``"gzip!tar:dist/app.zip!zip:.env"``. A container's
offset is into the member's content. A match in the raw bytes that lies inside a member where
the same encoding was found (a stored zip entry, a tar member) is reported once, inside the member.

Decompression bombs: one ``Budget`` per ``scan`` call caps the bytes decompressed from any one
member (``Limits.member``, 64 MiB) and in all (``Limits.total``, 256 MiB); what fits is searched,
and the cut is reported in ``errors``, never silently. Not opened: zips whose magic is not at the
start (self-extracting), encrypted zip entries, zips without a central directory (truncated),
pre-POSIX (v7) tars, and compressions other than gzip; the raw bytes are still searched.

Wrapped base64 (PEM at 64 columns, MIME at 76, ``base64`` CLI output, YAML-indented blocks) is
found by ``find_wrapped``: every standard-alphabet base64 form is cut into blocks short enough
that any copy broken by whitespace into lines of at least ``WRAP_WIDTH`` characters keeps one
block whole; each block hit is then checked exactly over a small window with whitespace
removed. It costs about one more ``find`` per block (12 for a 72-character key), so ``scan``
runs it while the git stream's hot path (``find``) does not.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from cauterize.secret import Secret

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
TAR_MAGIC = b"ustar"
TAR_MAGIC_AT = 257
#: Most decompressed bytes scanned per gzip container (guards against decompression bombs).
GZIP_LIMIT = 64 << 20
#: Most decompressed bytes per ``scan`` call, all members together.
TOTAL_LIMIT = 256 << 20
#: Containers opened inside one another: a zip inside a .tar.gz is three deep.
MAX_DEPTH = 3
#: The shortest line length for which wrapped base64 is found (PEM: 64, MIME: 76).
WRAP_WIDTH = 64
_WHITESPACE = frozenset(b" \t\r\n")
_ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError, OSError, RuntimeError, ValueError)


@dataclass(frozen=True)
class Match:
    """One occurrence: which encoding, where (``offset``, ``length`` bytes), and inside which container
    (``None``: the data itself; ``"gzip"``: the offset is into the decompressed content)."""

    encoding: str
    offset: int
    container: str | None = None
    length: int = 0


@dataclass(frozen=True)
class Limits:
    """Caps on decompression: bytes from one member, bytes in all, and containers nested."""

    member: int = GZIP_LIMIT
    total: int = TOTAL_LIMIT
    depth: int = MAX_DEPTH


class Budget:
    """Decompressed bytes spent so far in one scan (a blob, a file on disk), against ``limits``."""

    __slots__ = ("limits", "used")

    def __init__(self, limits: Limits | None = None):
        self.limits = limits or Limits()
        self.used = 0

    @property
    def remaining(self) -> int:
        return max(0, self.limits.total - self.used)

    def allowance(self) -> int:
        """Bytes the next member may decompress to."""
        return min(self.limits.member, self.remaining)

    def spend(self, size: int) -> None:
        self.used += size

    def over(self, label: str, kept: int) -> str:
        """The error text for a member cut at ``kept`` bytes (call it before ``spend``)."""
        if self.remaining < self.limits.member:
            cap = f"the total limit of {size_text(self.limits.total)}"
        else:
            cap = f"the per-member limit of {size_text(self.limits.member)}"
        return f"{label}: decompresses past {cap}; only the first {size_text(kept)} were searched"


def size_text(size: int) -> str:
    """``64 MiB``, ``3 GiB``, ``1000 bytes``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} bytes"


def container_kind(data: bytes | bytearray, start: int = 0) -> str | None:
    """``"gzip"``, ``"zip"`` or ``"tar"`` when the magic bytes at ``data[start:]`` say so, else None."""
    if data.startswith(GZIP_MAGIC, start):
        return "gzip"
    if data.startswith(ZIP_MAGIC, start):
        return "zip"
    if data.startswith(TAR_MAGIC, start + TAR_MAGIC_AT):
        return "tar"
    return None


_Covered = list[tuple[int, int, frozenset[str]]]


class Matcher:
    """Every encoded form of one key, searched with ``bytes.find``. Never shows a form in ``repr``."""

    __slots__ = ("_forms", "_wrapped", "fingerprint", "overlap")

    def __init__(self, secret: Secret):
        self.fingerprint = secret.fingerprint
        encodings = secret.encodings()
        self._forms = tuple((name, form) for name, forms in encodings.items() for form in forms)
        standard = [form for form in encodings.get("base64", []) if b"-" not in form and b"_" not in form]
        self._wrapped = tuple(trigger for form in standard for trigger in _wrap_triggers(form))
        #: Bytes a chunked search must carry from one chunk to the next (wrapped copies included).
        self.overlap = 4 * max(len(form) for _, form in self._forms)

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

    def find_wrapped(self, data: bytes | bytearray, start: int = 0, end: int | None = None) -> list[Match]:
        """Base64 copies broken by whitespace (line wrapping, indentation) in ``data[start:end]``;
        ``length`` spans the whitespace. Copies with no whitespace inside are ``find``'s."""
        end = len(data) if end is None else end
        found: dict[int, Match] = {}
        for form, block, at in self._wrapped:
            hit = data.find(block, start, end)
            while hit >= 0:
                low = max(start, hit - at - 2 * len(form))
                high = min(end, hit + 3 * len(form))
                for match in _unwrapped(data, low, high, form):
                    found[match.offset] = match
                hit = data.find(block, hit + 1, end)
        return sorted(found.values(), key=lambda match: match.offset)

    def scan(
        self, data: bytes | bytearray, *, errors: list[str] | None = None, budget: Budget | None = None,
        depth: int = 0,
    ) -> list[Match]:
        """Occurrences in ``data``, plus those inside it when it is a gzip, zip or tar container.

        ``errors`` collects what could not be searched (limits reached, corrupt containers);
        ``budget`` is shared when one file's scan makes several calls; ``depth`` is how many
        containers ``data`` already sits in."""
        found = sorted(self.find(data) + self.find_wrapped(data), key=lambda match: match.offset)
        if container_kind(data) is None:
            return found
        inside, covered = self._open(data, budget or Budget(), errors, depth + 1, "")
        return [match for match in found if not _is_covered(match, covered)] + inside

    def scan_containers(
        self, data: bytes | bytearray, *, errors: list[str] | None = None, budget: Budget | None = None,
    ) -> list[Match]:
        """Only the occurrences inside the container ``data`` is (for a caller that already ran
        ``find`` over the raw bytes, like the git stream); ``[]`` if it is no container."""
        if container_kind(data) is None:
            return []
        return self._open(data, budget or Budget(), errors, 1, "")[0]

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

    # ---- containers ---------------------------------------------------------------------------

    def _open(
        self, data: bytes | bytearray, budget: Budget, errors: list[str] | None, depth: int, where: str,
    ) -> tuple[list[Match], _Covered]:
        """Matches inside container ``data`` (labels chained), and the byte ranges its members cover."""
        kind = container_kind(data)
        if kind is None:
            return [], []
        if depth > budget.limits.depth:
            _note(errors, f"{where}{kind}: nested deeper than {budget.limits.depth} containers; not opened")
            return [], []
        members = {"gzip": self._gzip_members, "zip": self._zip_members, "tar": self._tar_members}[kind]
        found: list[Match] = []
        covered: _Covered = []
        for label, start, end, content in members(data, budget, errors, where):
            direct = sorted(self.find(content) + self.find_wrapped(content), key=lambda match: match.offset)
            nested, inner = self._open(content, budget, errors, depth + 1, f"{where}{label}!")
            direct = [match for match in direct if not _is_covered(match, inner)]
            found.extend(Match(m.encoding, m.offset, label, m.length) for m in direct)
            found.extend(Match(m.encoding, m.offset, f"{label}!{m.container}", m.length) for m in nested)
            covered.append((start, end, frozenset(m.encoding for m in direct + nested)))
        return found, covered

    def _gzip_members(self, data, budget: Budget, errors, where: str) -> Iterator[tuple[str, int, int, bytes]]:
        allowance = budget.allowance()
        content, over, corrupt = inflate_gzip(data, allowance)
        if over:
            _note(errors, budget.over(f"{where}gzip", len(content)))
        elif corrupt:
            _note(errors, f"{where}gzip: corrupt or truncated; what inflated ({size_text(len(content))}) was searched")
        budget.spend(len(content))
        if content:
            yield "gzip", 0, len(data), content

    def _zip_members(self, data, budget: Budget, errors, where: str) -> Iterator[tuple[str, int, int, bytes]]:
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            _note(errors, f"{where}zip: not a readable zip archive ({type(exc).__name__}); its members were not opened")
            return
        with archive:
            entries = sorted(archive.infolist(), key=lambda info: info.header_offset)
            ends = [info.header_offset for info in entries[1:]] + [getattr(archive, "start_dir", len(data))]
            for info, end in zip(entries, ends):
                if info.is_dir():
                    continue
                label = f"zip:{self.redact(info.filename)}"
                if info.flag_bits & 0x1:
                    _note(errors, f"{where}{label}: encrypted; not searched")
                    continue
                allowance = budget.allowance()
                if allowance <= 0:
                    _note(errors, f"{where}{label}: {_total_reached(budget)}")
                    return
                try:
                    with archive.open(info) as member:
                        content = member.read(allowance + 1)
                except _ZIP_READ_ERRORS as exc:
                    _note(errors, f"{where}{label}: cannot be read ({type(exc).__name__}); not searched")
                    continue
                if len(content) > allowance:
                    content = content[:allowance]
                    _note(errors, budget.over(f"{where}{label}", allowance))
                budget.spend(len(content))
                yield label, info.header_offset, end, content

    def _tar_members(self, data, budget: Budget, errors, where: str) -> Iterator[tuple[str, int, int, bytes]]:
        count = 0
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
                for info in archive:
                    if not info.isfile():
                        continue
                    label = f"tar:{self.redact(info.name)}"
                    if info.issparse():
                        reader = archive.extractfile(info)
                        content = reader.read() if reader else b""
                    else:
                        content = bytes(data[info.offset_data:info.offset_data + info.size])
                    count += 1
                    yield label, info.offset, info.offset_data + info.size, content
        except (tarfile.TarError, EOFError, OSError) as exc:
            _note(errors, f"{where}tar: unreadable after {count} member(s) ({type(exc).__name__}); the rest not searched")


def _wrap_triggers(form: bytes) -> Iterator[tuple[bytes, bytes, int]]:
    """``(form, block, offset of block in form)``: blocks such that any copy of ``form`` cut into
    lines of at least ``WRAP_WIDTH`` characters keeps one of them whole. The longest piece of such
    a copy is at least ``min(WRAP_WIDTH, ceil(len/2))`` long, and any piece of length ``2s - 1``
    holds one of the blocks of size ``s`` that start at multiples of ``s``."""
    longest_piece = min(WRAP_WIDTH, (len(form) + 1) // 2)
    size = (longest_piece + 1) // 2
    if size < 8:  # short keys: blocks this short would fire everywhere in base64-heavy data
        return
    for at in range(0, len(form) - size + 1, size):
        yield form, form[at:at + size], at


def _unwrapped(data: bytes | bytearray, low: int, high: int, form: bytes) -> Iterator[Match]:
    """Copies of ``form`` in ``data[low:high]`` once whitespace is removed that had whitespace inside."""
    window = bytes(data[low:high])
    kept = [index for index, byte in enumerate(window) if byte not in _WHITESPACE]
    squeezed = bytes(window[index] for index in kept)
    at = squeezed.find(form)
    while at >= 0:
        first, last = kept[at], kept[at + len(form) - 1]
        if last - first + 1 > len(form):
            yield Match("base64", low + first, None, last - first + 1)
        at = squeezed.find(form, at + 1)


def _is_covered(match: Match, covered: _Covered) -> bool:
    return any(start <= match.offset < end and match.encoding in found for start, end, found in covered)


def _note(errors: list[str] | None, text: str) -> None:
    if errors is not None:
        errors.append(text)


def _total_reached(budget: Budget) -> str:
    return f"the total limit of {size_text(budget.limits.total)} decompressed was reached; not searched"


def inflate_gzip(data: bytes | bytearray, limit: int) -> tuple[bytes, bool, bool]:
    """Decompress every gzip member of ``data`` up to ``limit`` bytes: ``(content, more remained
    past the limit, corrupt or truncated)``. Content is ``b""`` if ``data`` is not gzip."""
    out: list[bytes] = []
    size = 0
    rest = bytes(data)
    try:
        while rest[:2] == GZIP_MAGIC:
            inflater = zlib.decompressobj(wbits=31)
            chunk = inflater.decompress(rest, limit - size + 1)
            if size + len(chunk) > limit:
                out.append(chunk[: limit - size])
                return b"".join(out), True, False
            out.append(chunk)
            size += len(chunk)
            if not inflater.eof:  # the input ended inside the member
                return b"".join(out), False, True
            rest = inflater.unused_data
    except zlib.error:
        return b"".join(out), False, True  # a corrupt or truncated member: keep what inflated
    return b"".join(out), False, False


def gunzip(data: bytes | bytearray, limit: int = GZIP_LIMIT) -> bytes:
    """Decompress every gzip member of ``data``, up to ``limit`` bytes; ``b""`` if it is not gzip."""
    return inflate_gzip(data, limit)[0]
