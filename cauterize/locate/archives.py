"""Search a file on disk member by member, streaming: tar (plain, gzip, bzip2, xz), gzip, bzip2,
xz and zip (jar, whl), nested inside one another, without extracting anything to disk.

What a stream is, is decided by its magic bytes, never by its name: a ``.tgz``, a layer blob
named by its digest, a ``.jar`` and a ``.whl`` are recognised alike. A tar is read with
``tarfile`` in stream mode (``r|``), a compressed stream through its decompressor, so memory
stays flat whatever the size; a zip needs random access, so one met inside a stream (a tar
member, a gzip) is read into memory up to ``ZIP_IN_MEMORY`` bytes, while a zip file on disk is
opened in place. Anything else is searched in chunks with the matcher (wrapped base64 included).

Each hit is recorded as ``(chain, encoding)``, where ``chain`` names the containers in order:
``("gzip", "tar:etc/app.env")`` for a ``.tar.gz`` member, ``("zip:lib/app.jar", "zip:app.properties")``.
Member names and zip comments are searched too (a hit names the archive itself); other archive
headers and the compressed bytes themselves are not. Member names are only ever shown redacted.

Decompression bombs: ``FILE_LIMITS`` caps the bytes decompressed from one stream (a gzip, a zip
entry: 4 GiB) and from one file on disk in all (16 GiB), and how deep containers nest (6: an
image tarball, its gzip'd layer, the layer's tar, a jar in it, a jar in that, ...). What fits is
searched; every cut is an error naming the member and the limit, never silent.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import IO, Protocol

from cauterize.locate.matcher import Budget, Limits, Matcher, container_kind, size_text

FILE_LIMITS = Limits(member=4 << 30, total=16 << 30, depth=6)
#: A zip met inside a stream is read into memory (zipfile needs random access) up to this size.
ZIP_IN_MEMORY = 256 << 20
#: Outermost tar members this small and JSON-shaped are kept for ``images.py`` (manifests, configs).
METADATA_BYTES = 4 << 20
METADATA_TOTAL = 64 << 20
CHUNK = 8 << 20
HEAD = 512
_COMPRESSED = ("gzip", "bzip2", "xz")
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError,
                NotImplementedError, RuntimeError)

_BLOB = re.compile(r"blobs/[a-z0-9]+/[0-9a-f]{32,128}")

Chain = tuple[str, ...]


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass
class Walk:
    """One file's search: the matcher, its budget, what was found and what could not be searched."""

    matcher: Matcher
    budget: Budget
    where: str  # the file on disk, as error messages name it
    errors: list[str]
    hits: dict[Chain, set[str]] = field(default_factory=dict)
    metadata: dict[str, bytes] = field(default_factory=dict)  # outermost tar members, for images.py
    stopped: bool = False  # the total limit was reached: nothing more is read

    def hit(self, chain: Chain, encoding: str) -> None:
        self.hits.setdefault(chain, set()).add(encoding)

    def error(self, chain: Chain, problem: str) -> None:
        self.errors.append(self.matcher.redact(f"{'!'.join((self.where, *chain))}: {problem}"))


def walk_file(path: str, walk: Walk) -> None:
    """Search the file at ``path`` (opened here; ``OSError`` if it cannot be)."""
    with open(path, "rb") as handle:
        head = _read_up_to(handle, HEAD)
        if container_kind(head) == "zip":
            handle.seek(0)
            _walk_zip(walk, handle, (), 1)
        else:
            walk_stream(walk, _Prefixed(head, handle), (), 0)


def walk_stream(walk: Walk, stream: Readable, chain: Chain, depth: int) -> None:
    """Search ``stream`` (already inside ``depth`` containers), opening it if it is a container."""
    if walk.stopped:
        return
    head = _read_up_to(stream, HEAD)
    kind = _kind(head)
    body = _Prefixed(head, stream)
    if kind == "zstd":
        walk.error(chain, "zstd-compressed; cannot be opened, searched as plain bytes")
        kind = None
    if kind and depth >= walk.budget.limits.depth:
        walk.error(chain, f"{kind} nested deeper than {walk.budget.limits.depth} containers; searched as plain bytes")
        kind = None
    try:
        if kind == "tar":
            _walk_tar(walk, body, chain, depth + 1)
        elif kind in _COMPRESSED:
            inner = chain + (kind,)
            with _decompressed(kind, body) as plain:
                walk_stream(walk, _Counted(plain, walk, inner), inner, depth + 1)
        elif kind == "zip":
            data = _read_up_to(body, ZIP_IN_MEMORY + 1)
            if len(data) > ZIP_IN_MEMORY:
                walk.error(chain, f"zip larger than {size_text(ZIP_IN_MEMORY)} inside a stream; searched as plain bytes")
                search(walk, _Prefixed(data, body), chain)
            else:
                _walk_zip(walk, io.BytesIO(data), chain, depth + 1)
        else:
            search(walk, body, chain)
    except _READ_ERRORS as exc:
        walk.error(chain, f"{kind or 'data'} unreadable ({type(exc).__name__}); what was read before was searched")


def search(walk: Walk, stream: Readable, chain: Chain) -> None:
    """Search a stream that is no container, chunk by chunk (copies across chunks are found)."""
    matcher = walk.matcher
    tail = b""
    while chunk := stream.read(CHUNK):
        data = tail + chunk if tail else chunk
        for match in matcher.find(data) + matcher.find_wrapped(data):
            walk.hit(chain, match.encoding)
        tail = data[-matcher.overlap:]


def _search_bytes(walk: Walk, data: bytes, chain: Chain) -> None:
    for match in walk.matcher.find(data):
        walk.hit(chain, match.encoding)


def _walk_tar(walk: Walk, stream: Readable, chain: Chain, depth: int) -> None:
    outermost = not any(part.startswith(("tar:", "zip:")) for part in chain)
    count = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:  # type: ignore[call-overload]
            for info in archive:
                if walk.stopped:
                    return
                if not info.isfile():
                    continue
                member = archive.extractfile(info)
                if member is None:
                    continue
                _search_bytes(walk, info.name.encode("utf-8", "surrogateescape"), chain)
                label = chain + (f"tar:{info.name}",)
                name = info.name.removeprefix("./")
                if outermost and info.size <= METADATA_BYTES and _is_metadata(name, walk):
                    data = member.read()
                    walk.metadata[name] = data
                    walk_stream(walk, io.BytesIO(data), label, depth)
                else:
                    walk_stream(walk, member, label, depth)
                count += 1
    except _READ_ERRORS as exc:
        walk.error(chain, f"tar unreadable after {count} member(s) ({type(exc).__name__}); the rest was not searched")


def _walk_zip(walk: Walk, handle: IO[bytes], chain: Chain, depth: int) -> None:
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        walk.error(chain, f"zip unreadable ({type(exc).__name__}); searched as plain bytes")
        handle.seek(0)
        search(walk, handle, chain)
        return
    with archive:
        _search_bytes(walk, archive.comment, chain)
        for info in archive.infolist():
            if walk.stopped:
                return
            _search_bytes(walk, info.filename.encode("utf-8", "surrogateescape"), chain)
            if info.is_dir():
                continue
            label = chain + (f"zip:{info.filename}",)
            if info.flag_bits & 0x1:
                walk.error(label, "encrypted; not searched")
                continue
            try:
                with archive.open(info) as member:
                    walk_stream(walk, _Counted(member, walk, label), label, depth)
            except _READ_ERRORS as exc:
                walk.error(label, f"unreadable ({type(exc).__name__}); not searched")


def _decompressed(kind: str, raw: Readable) -> IO[bytes]:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[arg-type]
    if kind == "bzip2":
        return bz2.BZ2File(raw)  # type: ignore[arg-type]
    return lzma.LZMAFile(raw)  # type: ignore[arg-type]


def _is_metadata(name: str, walk: Walk) -> bool:
    """An image's manifest, index, layout marker, config or blob, while the kept total stays small."""
    if sum(map(len, walk.metadata.values())) > METADATA_TOTAL:
        return False
    return name in ("manifest.json", "index.json", "oci-layout") or (
        "/" not in name and name.endswith(".json")) or bool(_BLOB.fullmatch(name))


def _kind(head: bytes) -> str | None:
    kind = container_kind(head)
    if kind:
        return kind
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] == b"1AY&SY":
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return None


def _read_up_to(stream: Readable, size: int) -> bytes:
    parts, got = [], 0
    while got < size and (part := stream.read(size - got)):
        parts.append(part)
        got += len(part)
    return b"".join(parts)


class _Prefixed:
    """``head`` (bytes already read for sniffing) followed by the rest of ``stream``."""

    def __init__(self, head: bytes, stream: Readable):
        self._head = head
        self._stream = stream

    def read(self, size: int = -1, /) -> bytes:
        if not self._head:
            return self._stream.read(size)
        if size < 0:
            data, self._head = self._head + self._stream.read(), b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        return data


class _Counted:
    """A decompressed stream that stops at the member and total limits, reporting the cut once."""

    def __init__(self, stream: Readable, walk: Walk, chain: Chain):
        self._stream = stream
        self._walk = walk
        self._chain = chain
        self._size = 0
        self._done = False

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        if self._done or self._walk.stopped:
            return b""
        budget = self._walk.budget
        total_bound = budget.remaining < budget.limits.member - self._size
        allowance = budget.remaining if total_bound else budget.limits.member - self._size
        data = self._pull(min(size, allowance + 1))
        if len(data) > allowance:
            data = data[:allowance]
            self._done = True
            self._cut(self._size + allowance, total_bound)
        self._size += len(data)
        budget.spend(len(data))
        return data

    def _pull(self, size: int) -> bytes:
        """Up to ``size`` bytes; a corrupt or truncated stream ends here, keeping what came before
        (``read1`` hands over what each step decompressed, so nothing is lost with the error)."""
        read = getattr(self._stream, "read1", self._stream.read)
        parts, got = [], 0
        try:
            while got < size and (part := read(size - got)):
                parts.append(part)
                got += len(part)
        except _READ_ERRORS as exc:
            self._done = True
            self._walk.error(self._chain, f"corrupt or truncated ({type(exc).__name__}) after "
                             f"{size_text(self._size + got)}; what was decompressed before was searched")
        return b"".join(parts)

    def _cut(self, kept: int, total_bound: bool) -> None:
        limits = self._walk.budget.limits
        if total_bound:
            self._walk.stopped = True
            cap = f"the total limit of {size_text(limits.total)} decompressed per file"
            rest = "; nothing after it in this file was searched"
        else:
            cap, rest = f"the per-member limit of {size_text(limits.member)}", ""
        self._walk.error(self._chain, f"decompresses past {cap}; only the first {size_text(kept)} were searched{rest}")
