"""An independent check that no copy of a key survives a purge: decode every object, never encode the key.

``purge.py`` rewrites history with the forms ``locate.matcher`` knows (raw, base64 at three
alignments, percent- and JSON-escaped). Verified with that same matcher, a form it does not know
survived while verification passed: base64 wrapped at 76 columns, a committed .bz2, a PNG zTXt
chunk, UTF-16 text, a key in a file, branch or tag *name*, an author field. This module shares no
code with the matcher (it imports neither ``cauterize.locate.matcher`` nor ``cauterize.locate.git``):
it looks for the key's raw bytes only, in every *view* of every object that chains of decoders give.

    verify_objects(git_dir, secret, ids, label=...)   the objects named (None: what a clone gets)
    verify_refs(names, secret)                        ref names (for-each-ref or ls-remote output)
    check(kind, data, secret)                         one object's bytes, without git
    reachable(git_dir, label=...)                     every object a ref (or HEAD) reaches

Views. An object's bytes are its first view. Each ``Decoder`` in ``DECODERS`` turns a view into more
views, ``decode(data, size) -> [(label, bytes), ...]``, cheaply yielding nothing when the data does
not look like its format (``size`` is the key's length: a shorter view cannot hold it); decoders
run on their own output up to ``MAX_DEPTH`` levels and labels chain with "!"
(``zip:dist/app.zip!zip:.env!base64 (wrapped)``). Built in: gzip (every member), zlib, bzip2, xz,
lzma, zstd (when ``zstandard`` is importable), zip and tar members and their names, zlib, gzip,
bzip2 and xz streams inside other binary data (a PDF's FlateDecode), PNG zTXt and iTXt; UTF-16 and
UTF-32 (ASCII text in one byte lane, NULs in the others: a lane is named by its position, so text
at an odd offset reads as the other byte order); base64 in both alphabets (lines joined whatever
their width, indentation or CRLF, then decoded at all four alignments), base32, hex,
percent-encoding (and '+' as space), JSON/JS escapes, HTML entities, quoted-printable. Tree
objects are searched by entry name, commits and tags header by header (author, committer,
tagger, the tag name, the message); their signatures are searched raw only (gpg wrote them).
``register(decoder)`` adds a decoder, ``registered(decoder)`` adds one for a ``with`` block.

Limits, reported and never silent: a view larger than ``MEMBER_LIMIT`` (64 MiB) is searched up to
it; decompressed bytes per object stop at ``TOTAL_LIMIT`` (256 MiB); an archive's members stop at
``ARCHIVE_MEMBERS``; an object larger than ``WHOLE_LIMIT`` is searched raw only; encrypted zip
members and malformed archives cannot be opened. Each becomes a ``Survivor`` with
``unsearched=True``: no copy was found there, but the object is not proven clean. Views deeper than
``MAX_DEPTH`` are not decoded.

Speed (bench/verify.py, 2 cores). Objects are read in pack order by two ``git cat-file --batch``
processes, one reader thread each, in batches of whatever whole objects the pipe has delivered
(waiting for a full buffer left git idle on a full pipe). Per batch, one ``bytes.translate`` into
character classes: ``A`` for the base64 alphabet, escape syntax (``=%\\&#;``), line breaks and the
key's own bytes; ``S`` for spaces and tabs; ``B`` for control and non-ASCII bytes; ``.`` for the
rest. Then per object, range-limited ``find`` calls tell whether a built-in decoder could produce
the key: binary decoders need a ``B`` (every compression, archive, image and UTF-16/32 format has
one), text decoders need a run of ``A`` as long as the key (a raw copy; base64, base32 and hex
unwrapped or wrapped without indentation; every escape syntax; quoted-printable) or one of
``WRAP_MIN`` followed by ``S`` (an indented wrapped line). Only objects that pass are decoded, and
every decoded view is screened the same way before any decoder runs on it. The one gap: indented
wrapped lines narrower than ``WRAP_MIN - 1`` columns are decoded only in views flagged otherwise.
A decoder registered beyond the built-in ones turns screening off: every view meets every decoder.
Identical views are decoded once (BLAKE2 digests) and at most ``VIEW_LIMIT`` per object (reported).

Hygiene: the key is read from the ``Secret`` in this process only: no command line, environment or
file holds it (cat-file reads ids from a temporary file of ids). A ``where`` names formats and
archive members, never data: a member name holding the key in any form shows the fingerprint.

The module is longer than most: the prefilter is sound only read together with the decoders it
stands in for.
"""

from __future__ import annotations

import binascii
import bz2
import fcntl
import functools
import hashlib
import html
import io
import lzma
import os
import re
import struct
import subprocess
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import unquote_to_bytes

from cauterize import interrupts
from cauterize.errors import GitError
from cauterize.locate.gitcmd import child_env, first_line, git, git_argv
from cauterize.secret import Secret, fingerprint_of

try:  # optional: only if something else installed it
    import zstandard
except ImportError:  # pragma: no cover - depends on the environment
    zstandard = None

MAX_DEPTH = 4
MEMBER_LIMIT = 64 << 20
TOTAL_LIMIT = 256 << 20
WHOLE_LIMIT = 256 << 20
ARCHIVE_MEMBERS = 10_000
EMBEDDED_TRIES = 4096
#: distinct views decoded per object (repetitive data decodes into ever more views of itself)
VIEW_LIMIT = 16_384
#: shortest indented wrapped line (newline included) the prefilter sends to the decoders (PEM: 65)
WRAP_MIN = 60
CHUNK = 4 << 20
READ_MIN = 256 << 10
WORKERS = max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
SPLIT_MIN = 16 << 20
_OBJECT_COST = 16 << 10  # bytes that cost git as much to print as one more object
_PIPE_BYTES = 1 << 20


@dataclass(frozen=True)
class Survivor:
    """A copy of the key in an object (or a ref name), or with ``unsearched`` a part that could not be
    searched. ``where`` says how it was found; it never holds any part of the key."""

    object: str  # hex object id ("" for a ref name)
    kind: str  # "blob" | "commit" | "tag" | "tree" | "ref"
    where: str
    unsearched: bool = False


# ---- decoders ------------------------------------------------------------------------------------

Views = Iterable[tuple[str, "bytes | None"]]


@dataclass(frozen=True)
class Decoder:
    """``decode(data, size)`` yields ``(label, view)``; a view of None names a part that looked like the
    format but could not be opened (reported unsearched). It must not raise on malformed data.
    ``expands``: its views count toward ``TOTAL_LIMIT``. ``repeat``: it is applied to its own views."""

    name: str
    decode: Callable[[bytes, int], Views]
    expands: bool = False
    repeat: bool = True


DECODERS: list[Decoder] = []


def register(decoder: Decoder) -> Decoder:
    DECODERS.append(decoder)
    return decoder


@contextmanager
def registered(decoder: Decoder) -> Iterator[Decoder]:
    """``decoder`` in ``DECODERS`` for the duration of a ``with`` block."""
    register(decoder)
    try:
        yield decoder
    finally:
        DECODERS.remove(decoder)


#: built-in decoders of text (the rest decode binary data): see ``_Needle.texty``
_TEXT_DECODERS: set[Decoder] = set()


def _builtin(name: str, *, expands: bool = False, repeat: bool = True, text: bool = False):
    def add(decode: Callable[[bytes, int], Views]) -> Callable[[bytes, int], Views]:
        decoder = register(Decoder(name, decode, expands, repeat))
        if text:
            _TEXT_DECODERS.add(decoder)
        return decode
    return add


_INFLATE_ERRORS = (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError)


def _expand(make: Callable[[], object], data: bytes | memoryview, again: bytes | None) -> bytes | None:
    """Decompress ``data`` (and the streams after it that start with ``again``) to at most
    ``MEMBER_LIMIT`` + 1 bytes; None if not even the start decompresses."""
    parts, got, rest = [], 0, data
    try:
        while rest and got <= MEMBER_LIMIT:
            stream = make()
            parts.append(stream.decompress(rest, MEMBER_LIMIT + 1 - got))
            got += len(parts[-1])
            rest = stream.unused_data if stream.eof else b""
            if again is None or not rest.startswith(again):
                break
    except _INFLATE_ERRORS:
        if not parts:
            return None
    return b"".join(parts)


def _expanded(label: str, make: Callable[[], object], data: bytes, again: bytes | None = None) -> Views:
    out = _expand(make, data, again)
    yield (label, out) if out is not None else (f"{label} (malformed)", None)


@_builtin("gzip", expands=True)
def _gzip(data: bytes, size: int) -> Views:
    if data.startswith(b"\x1f\x8b\x08"):
        yield from _expanded("gzip", lambda: zlib.decompressobj(31), data, b"\x1f\x8b")


@_builtin("zlib", expands=True)
def _zlib(data: bytes, size: int) -> Views:
    if len(data) > 2 and data[0] & 0x0F == 8 and data[0] >> 4 <= 7 and (data[0] << 8 | data[1]) % 31 == 0:
        out = _expand(zlib.decompressobj, data, None)
        if out:  # "x^" may start plain text: a failure here is not worth a report
            yield "zlib", out


@_builtin("bzip2", expands=True)
def _bzip2(data: bytes, size: int) -> Views:
    if data[:3] == b"BZh" and data[3:4].isdigit() and data[4:10] in (b"1AY&SY", b"\x17rE8P\x90"):
        yield from _expanded("bzip2", bz2.BZ2Decompressor, data, b"BZh")


@_builtin("xz", expands=True)
def _xz(data: bytes, size: int) -> Views:
    if data.startswith(b"\xfd7zXZ\x00"):
        yield from _expanded("xz", lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ), data, b"\xfd7zXZ\x00")


_LZMA_DICTS = {1 << n for n in range(12, 31)} | {3 << n for n in range(11, 30)}


@_builtin("lzma", expands=True)
def _lzma(data: bytes, size: int) -> Views:
    if len(data) > 13 and data[0] < 225 and int.from_bytes(data[1:5], "little") in _LZMA_DICTS:
        out = _expand(lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE), data, None)
        if out:  # the .lzma header is too weak a sign to report a failure
            yield "lzma", out


if zstandard is not None:  # pragma: no cover - depends on the environment

    @_builtin("zstd", expands=True)
    def _zstd(data: bytes, size: int) -> Views:
        if data.startswith(b"\x28\xb5\x2f\xfd"):
            try:
                with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
                    yield "zstd", reader.read(MEMBER_LIMIT + 1)
            except zstandard.ZstdError:
                yield "zstd (malformed)", None


_EOCD_SEARCH = 65_557  # the end-of-central-directory record lies in the last 64 KiB + 22 bytes


@_builtin("zip", expands=True)
def _zip(data: bytes, size: int) -> Views:
    if not data.startswith(b"PK\x03\x04") and data.rfind(b"PK\x05\x06", max(0, len(data) - _EOCD_SEARCH)) < 0:
        return
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        yield "zip (malformed)", None
        return
    with archive:
        infos = archive.infolist()
        yield "zip member names", "\n".join(info.filename for info in infos).encode("utf-8", "surrogateescape")
        for count, info in enumerate(infos):
            if count == ARCHIVE_MEMBERS:
                yield f"zip ({len(infos) - count} members past the first {ARCHIVE_MEMBERS})", None
                return
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                yield f"zip:{info.filename} (encrypted)", None
                continue
            try:
                with archive.open(info) as member:
                    content = member.read(MEMBER_LIMIT + 1)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, *_INFLATE_ERRORS):
                yield f"zip:{info.filename} (unreadable)", None
                continue
            yield f"zip:{info.filename}", content


@_builtin("tar")
def _tar(data: bytes, size: int) -> Views:
    if data[257:262] != b"ustar":
        return
    names = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            for member in archive:
                names.append(member.name)
                if len(names) > ARCHIVE_MEMBERS:
                    yield f"tar (members past the first {ARCHIVE_MEMBERS})", None
                    break
                if member.isfile():
                    yield f"tar:{member.name}", archive.extractfile(member).read(MEMBER_LIMIT + 1)
    except (tarfile.TarError, OSError, ValueError, EOFError):
        yield "tar (malformed)", None
    yield "tar member names", "\n".join(names).encode("utf-8", "surrogateescape")


_PNG = b"\x89PNG\r\n\x1a\n"


@_builtin("png")
def _png(data: bytes, size: int) -> Views:
    """zTXt and compressed iTXt chunks as their zlib streams (the zlib decoder opens them); tEXt and
    plain iTXt are plain bytes, already searched."""
    if not data.startswith(_PNG):
        return
    pos = len(_PNG)
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"zTXt":
            yield "png zTXt", body.partition(b"\0")[2][1:]
        elif kind == b"iTXt":
            rest = body.partition(b"\0")[2]
            if rest[:1] == b"\x01":
                yield "png iTXt", rest[2:].split(b"\0", 2)[-1]
        elif kind == b"IEND":
            return


#: PNG (pixels are not text) and executables (ELF, Mach-O, PE: their strings are stored raw) are not
#: scanned for embedded streams: their candidate magics are noise
_NOT_EMBEDDING = (_PNG, b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"MZ")
_EMBEDDED = re.compile(rb"\x78[\x01\x5e\x9c\xda]|\x1f\x8b\x08|BZh[1-9]1AY&SY|\xfd7zXZ\x00")
_EMBEDDED_KINDS = {
    0x78: ("zlib", zlib.decompressobj, None),
    0x1F: ("gzip", lambda: zlib.decompressobj(31), b"\x1f\x8b"),
    ord("B"): ("bzip2", bz2.BZ2Decompressor, b"BZh"),
    0xFD: ("xz", lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ), b"\xfd7zXZ\x00"),
}


@_builtin("embedded", expands=True)
def _embedded(data: bytes, size: int) -> Views:
    """Compressed streams that start inside binary data (PDF FlateDecode, a .gz appended to a file)."""
    if data.isascii() or data.startswith(_NOT_EMBEDDING):  # compressed data is never ASCII
        return
    view = memoryview(data)
    for tries, match in enumerate(_EMBEDDED.finditer(data, 1)):
        if tries == EMBEDDED_TRIES:
            yield f"embedded streams (past the first {EMBEDDED_TRIES} candidates)", None
            return
        name, make, again = _EMBEDDED_KINDS[data[match.start()]]
        out = _expand(make, view[match.start():], again)
        if out is not None and len(out) >= size:
            yield f"{name} at byte {match.start()}", out


def _lane_text(data: bytes, width: int, lane: int, size: int) -> bytes:
    """The text in one byte lane of UTF-16 (``width`` 2) or UTF-32 (4) data: every stretch of at least
    ``size`` non-NUL bytes in that lane where all the other lanes are NUL, one per line."""
    text = data[lane::width]
    mask = int.from_bytes(text.translate(_NOT_NUL), "big")  # A where the lane is not NUL...
    for other in range(width):
        if other != lane:  # ...and A where each other lane is NUL: "A" & " " is no longer "A"
            nuls = data[other::width][:len(text)].ljust(len(text), b"\0").translate(_NUL)
            mask &= int.from_bytes(nuls, "big")
    classes = mask.to_bytes(len(text), "big")
    return b"\n".join(text[start:end] for start, end in _spans(classes, size))


@functools.lru_cache(maxsize=MAX_DEPTH)  # shared by the UTF-16 and UTF-32 decoders
def _wide_classes(data: bytes) -> bytes:
    """``T`` for printable ASCII, ``Z`` for NUL: ASCII text in UTF-16 is a run of ``TZ`` (or ``ZT``)."""
    return data.translate(_WIDE)


@_builtin("utf-16", repeat=False)
def _utf16(data: bytes, size: int) -> Views:
    if data.count(0) >= size and _wide_classes(data).find(b"TZ" * (size - 1)) >= 0:
        for lane, label in ((0, "utf-16le"), (1, "utf-16be")):
            if text := _lane_text(data, 2, lane, size):
                yield label, text


@_builtin("utf-32", repeat=False)
def _utf32(data: bytes, size: int) -> Views:
    if data.count(b"\0\0\0") >= size and _wide_classes(data).find(b"TZZZ" * (size - 1)) >= 0:
        for lane in range(4):
            if text := _lane_text(data, 4, lane, size):
                yield {0: "utf-32le", 3: "utf-32be"}.get(lane, "utf-32"), text


def _classes(members: bytes, other: bytes = b" ") -> bytes:
    table = bytearray(other * 256)
    for byte in members:
        table[byte] = ord("A")
    return bytes(table)


_B64 = _classes(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_")
_B32 = _classes(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz234567")
_HEX = _classes(b"0123456789abcdefABCDEF")
_TOKEN = _classes(bytes(byte for byte in range(0x21, 0x7F) if byte not in b"\"'`<>"))
_NOT_NUL = _classes(bytes(range(1, 256)))
_NUL = _classes(b"\0")
_WIDE = bytes(ord("Z") if byte == 0 else ord("T") if 0x20 <= byte < 0x7F or byte in b"\t\n\r" else ord(".")
              for byte in range(256))
_URLSAFE = bytes.maketrans(b"-_", b"+/")
_B32_DIGITS = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567abcdefghijklmnopqrstuvwxyz",
                              b"0123456789abcdefghijklmnopqrstuv0123456789abcdefghijklmnop")
_NOT_IN_RUN = re.compile(rb"[^A]")
_SPACE = ord("S")
_LINE_BREAK = re.compile(rb"\n[ \t]*")


def _spans(classes: bytes, shortest: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of every maximal run of ``A`` at least ``shortest`` long in a class map."""
    if shortest <= 0 or len(classes) < shortest:
        return
    needle = b"A" * shortest
    pos = classes.find(needle)
    while pos >= 0:
        stop = _NOT_IN_RUN.search(classes, pos + shortest)
        end = stop.start() if stop else len(classes)
        yield pos, end
        pos = classes.find(needle, end)


def _runs(data: bytes, table: bytes, shortest: int) -> Iterator[bytes]:
    """Every distinct maximal run of ``table``'s members at least ``shortest`` long."""
    seen = set()
    for start, end in _spans(data.translate(table) if len(data) >= shortest else b"", shortest):
        if (run := data[start:end]) not in seen:
            seen.add(run)
            yield run


def _joined(data: bytes) -> bytes:
    """``data`` with every line break and the indentation after it removed: wrapped runs become one."""
    return _LINE_BREAK.sub(b"", data.replace(b"\r", b"")) if b"\n" in data else data


@functools.lru_cache(maxsize=MAX_DEPTH)  # the same view's runs serve base64, base32 and hex
def _alphabet_runs(data: bytes, size: int) -> tuple[bytes, ...]:
    """The base64-alphabet runs of ``data``, its lines joined, long enough to hold ``size`` bytes in base64.
    The base32 and hex alphabets are subsets and need longer runs: their runs lie inside these."""
    return tuple(_runs(_joined(data), _B64, 4 * size // 3))


@_builtin("base64", text=True)
def _base64(data: bytes, size: int) -> Views:
    runs = _alphabet_runs(data, size)
    plain = set(_runs(data, _B64, 4 * size // 3)) if runs and b"\n" in data else None
    for run in runs:
        urlsafe = (b"-" in run or b"_" in run) and b"+" not in run and b"/" not in run
        label = "base64url" if urlsafe else "base64"
        if plain is not None and run not in plain:
            label += " (wrapped)"
        standard = run.translate(_URLSAFE)
        for offset in range(4):  # the run may start anywhere in a larger base64 text
            part = standard[offset:]
            rest = len(part) % 4
            part = part[:-1] if rest == 1 else part + b"=" * ((4 - rest) % 4)
            yield label, binascii.a2b_base64(part)


@_builtin("base32", text=True)
def _base32(data: bytes, size: int) -> Views:
    for run in (part for runs in _alphabet_runs(data, size) for part in _runs(runs, _B32, 8 * size // 5)):
        digits = run.translate(_B32_DIGITS)
        for offset in range(8):  # as an integer: the standard library's base32 decoder is pure Python
            bits = 5 * (len(digits) - offset)
            value = int(digits[offset:], 32) >> bits % 8
            yield "base32", value.to_bytes(bits // 8, "big")


@_builtin("hex", text=True)
def _hex(data: bytes, size: int) -> Views:
    for run in (part for runs in _alphabet_runs(data, size) for part in _runs(runs, _HEX, 2 * size)):
        for offset in (0, 1):
            part = run[offset:]
            yield "hex", binascii.unhexlify(part[:len(part) // 2 * 2])


_PERCENT = re.compile(rb"%[0-9A-Fa-f]{2}")
_JS_ESCAPE = re.compile(rb"\\(?:u([0-9A-Fa-f]{4})|x([0-9A-Fa-f]{2})|([\\/\"'bfnrt]))")
_JS_SIMPLE = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t"}
_ENTITY = re.compile(rb"&(?:#[0-9]+|#[xX][0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);")
_SOFT_BREAK = re.compile(rb"=(?:\r?\n|3[Dd])")


def _tokens(data: bytes, marker: bytes, size: int) -> Iterator[bytes]:
    """Runs of printable non-space, non-quote characters at least ``size`` long holding ``marker``."""
    if marker in data:
        yield from (token for token in _token_runs(data, size) if marker in token)


@functools.lru_cache(maxsize=MAX_DEPTH)  # the same view's tokens serve url, json-escape and html-entities
def _token_runs(data: bytes, size: int) -> tuple[bytes, ...]:
    return tuple(_runs(data, _TOKEN, size))


@_builtin("url", text=True)
def _url(data: bytes, size: int) -> Views:
    for token in _tokens(data, b"%", size):
        if _PERCENT.search(token):
            yield "url", unquote_to_bytes(token)
            if b"+" in token:
                yield "url (+ as space)", unquote_to_bytes(token.replace(b"+", b" "))


def _js_char(match: re.Match[bytes]) -> bytes:
    code, byte, simple = match.groups()
    if code:
        return chr(int(code, 16)).encode("utf-8", "surrogatepass")
    if byte:
        return bytes([int(byte, 16)])
    return _JS_SIMPLE.get(simple, simple)


@_builtin("json-escape", text=True)
def _json_escape(data: bytes, size: int) -> Views:
    for token in _tokens(data, b"\\", size):
        yield "json-escape", _JS_ESCAPE.sub(_js_char, token)


@_builtin("html-entities", text=True)
def _html_entities(data: bytes, size: int) -> Views:
    for token in _tokens(data, b"&", size):
        if _ENTITY.search(token):
            text = html.unescape(token.decode("utf-8", "surrogateescape"))
            yield "html-entities", text.encode("utf-8", "surrogateescape")


@_builtin("quoted-printable", text=True)
def _quoted_printable(data: bytes, size: int) -> Views:
    if b"=" in data and data.isascii() and _SOFT_BREAK.search(data):  # else it decodes to itself
        yield "quoted-printable", binascii.a2b_qp(data)


_BUILTIN = frozenset(DECODERS)
_CACHES = (_wide_classes, _alphabet_runs, _token_runs)
#: escape decoders: see ``_Search.top``
_TRANSPARENT = {"url", "url (+ as space)", "json-escape", "html-entities", "quoted-printable"}


# ---- one object's views --------------------------------------------------------------------------


class _Needle:
    """The key's bytes, what the prefilter looks for, and its fingerprint; never printed."""

    __slots__ = ("fingerprint", "run", "shortest", "table", "value")

    def __init__(self, key: Secret | str | bytes):
        value = key.reveal() if isinstance(key, Secret) else key
        self.value = value.encode() if isinstance(value, str) else bytes(value)
        if not self.value:
            raise ValueError("an empty key matches everywhere")
        self.fingerprint = key.fingerprint if isinstance(key, Secret) else fingerprint_of(self.value)
        table = bytearray(b"." * 256)
        for byte in list(range(0x09)) + list(range(0x0E, 0x20)) + list(range(0x7F, 0x100)):
            table[byte] = ord("B")
        table[ord(" ")] = table[ord("\t")] = ord("S")
        for byte in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=%\\&#;\r\n" + self.value:
            table[byte] = ord("A")
        self.table = bytes(table)
        self.run = b"A" * len(self.value)
        self.shortest = b"A" * min(WRAP_MIN, len(self.value))

    def suspicious(self, classes: bytes | bytearray, start: int, end: int) -> bool:
        """Whether a built-in decoder could find the key in ``start:end``, whose classes (``self.table``)
        are given: a binary decoder if there is a ``B``, a text decoder if there is a run of ``A`` as long
        as the key or one of ``WRAP_MIN`` followed by a space or tab (``texty``)."""
        return classes.find(b"B", start, end) >= 0 or self.texty(classes, start, end)

    def texty(self, classes: bytes | bytearray, start: int, end: int) -> bool:
        pos = classes.find(self.shortest, start, end)
        while pos >= 0:
            stop = _NOT_IN_RUN.search(classes, pos + len(self.shortest), end)
            run_end = stop.start() if stop else end
            if run_end - pos >= len(self.run) or (run_end < end and classes[run_end] == _SPACE):
                return True
            pos = classes.find(self.shortest, run_end, end)
        return False

    def __repr__(self) -> str:
        return f"_Needle({self.fingerprint})"

    def __reduce__(self):
        raise TypeError("the key cannot be pickled")


@dataclass
class _Search:
    """The views of one object, searched depth first: the label chains holding the key, and the parts
    not searched (chain, why)."""

    needle: _Needle
    decoders: tuple[Decoder, ...]
    found: set[tuple[str, ...]] = field(default_factory=set)
    unsearched: set[tuple[tuple[str, ...], str]] = field(default_factory=set)
    spent: int = 0
    seen: set[bytes] = field(default_factory=set)  # digests of the views decoded: each is decoded once

    def __post_init__(self) -> None:
        #: with the built-in decoders only, a view the prefilter passes over holds nothing they can decode
        self.screen = set(self.decoders) <= _BUILTIN

    def view(self, data: bytes, chain: tuple[str, ...] = (), depth: int = 0, last: Decoder | None = None) -> None:
        if self.needle.value in data:
            self.found.add(chain)
        if depth >= MAX_DEPTH:
            return
        binary = text = True
        if self.screen:
            classes = data.translate(self.needle.table)
            binary, text = classes.find(b"B") >= 0, self.needle.texty(classes, 0, len(classes))
            if not (binary or text):
                return
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if digest in self.seen:
            return
        if len(self.seen) >= VIEW_LIMIT:
            self.unsearched.add((chain, f"not decoded: {VIEW_LIMIT} views decoded in this object"))
            return
        self.seen.add(digest)
        size = len(self.needle.value)
        for decoder in self.decoders:
            if decoder is last and not decoder.repeat:
                continue
            if decoder.expands and self.spent > TOTAL_LIMIT:
                continue
            if not (text if decoder in _TEXT_DECODERS else binary):
                continue
            for label, out in decoder.decode(data, size):
                link = chain + (label,)
                if out is None:
                    self.unsearched.add((link, "not searched"))
                    continue
                if len(out) > MEMBER_LIMIT:
                    out = out[:MEMBER_LIMIT]
                    self.unsearched.add((link, f"searched its first {MEMBER_LIMIT >> 20} MiB only"))
                if decoder.expands:
                    self.spent += len(out)
                    if self.spent > TOTAL_LIMIT:
                        self.unsearched.add((link, f"not searched: {TOTAL_LIMIT >> 20} MiB decompressed in this object"))
                        break
                self.view(out, link, depth + 1, decoder)

    def top(self, data: bytes, chain: tuple[str, ...] = ()) -> None:
        """Search one top-level view (an object, a tree entry name, a commit header). Escape decoders
        leave what is not escaped as it was: a copy also found with one of them left out of the chain
        is the same copy (a raw key seen through percent-decoding), reported once."""
        before, self.found = self.found, set()
        self.view(data, chain)
        self.found = before | {found for found in self.found if not any(
            part in _TRANSPARENT and found[:i] + found[i + 1:] in self.found for i, part in enumerate(found))}

    def object(self, kind: str, data: bytes, id_bytes: int) -> None:
        if kind == "tree":
            for name in _tree_names(data, id_bytes):
                if len(name) >= len(self.needle.value):
                    self.top(name, ("tree entry name",))
        elif kind in ("commit", "tag"):
            for section, value, decode in _sections(kind, data):
                if decode:
                    self.top(value, (section,))
                elif self.needle.value in value:
                    self.found.add((section,))
        else:
            self.top(data)

    def wheres(self) -> tuple[list[str], list[str]]:
        """What was found, and what could not be searched, as labels safe to show."""
        found = sorted({_rendered(chain, self.needle) for chain in self.found})
        unsearched = sorted({f"{_rendered(chain, self.needle)}: {why}" for chain, why in self.unsearched})
        return found, unsearched


def _inspect(kind: str, data: bytes, needle: _Needle, decoders: tuple[Decoder, ...], id_bytes: int = 20) -> _Search:
    search = _Search(needle, decoders)
    try:
        search.object(kind, bytes(data), id_bytes)
    finally:  # the decoders' shared work is kept for one object only: its views may hold the key
        for cache in _CACHES:
            cache.cache_clear()
    return search


def check(kind: str, data: bytes, secret: Secret | str | bytes, *, id_bytes: int = 20) -> list[str]:
    """Where the key is in one object's bytes (``kind``: blob, tree, commit, tag), then the parts that
    could not be searched (their labels end in "not searched..." or "searched its first ... only").
    An empty list: these bytes are proven free of the key. ``id_bytes``: 32 in a SHA-256 repository."""
    found, unsearched = _inspect(kind, data, _Needle(secret), tuple(DECODERS), id_bytes).wheres()
    return found + unsearched


def _tree_names(data: bytes, id_bytes: int) -> Iterator[bytes]:
    """The entry names of a tree object (``mode SP name NUL id``)."""
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        nul = data.find(b"\0", space + 1)
        if space < 0 or nul < 0:
            yield data[pos:]  # not a tree after all: search what is left as a name
            return
        yield data[space + 1:nul]
        pos = nul + 1 + id_bytes


_HEADERS = {b"author": "author", b"committer": "committer", b"tagger": "tagger", b"tag": "tag name"}
_RAW_ONLY = {b"gpgsig": "signature", b"gpgsig-sha256": "signature", b"tree": "header tree",
             b"parent": "header parent", b"object": "header object", b"type": "header type"}
_ARMOR = re.compile(rb"^-----BEGIN (?:PGP|SSH) SIGNATURE-----$", re.MULTILINE)


def _sections(kind: str, data: bytes) -> Iterator[tuple[str, bytes, bool]]:
    """``(section, bytes, decode)`` of a commit or tag: each header and the message. Signatures and
    object ids (``decode`` False) are searched raw only."""
    head, _, message = data.partition(b"\n\n")
    fields: list[list] = []
    for line in head.split(b"\n"):
        if line.startswith(b" ") and fields:
            fields[-1][1].append(line[1:])
        else:
            name, _, value = line.partition(b" ")
            fields.append([name, [value]])
    for name, lines in fields:
        value = b"\n".join(lines)
        if name in _RAW_ONLY:
            yield _RAW_ONLY[name], value, False
        else:
            yield _HEADERS.get(name, f"header {name.decode('ascii', 'replace')}"), value, True
    armor = _ARMOR.search(message)
    if armor:
        yield "signature", message[armor.start():], False
        message = message[:armor.start()]
    yield f"{kind} message", message, True


def _rendered(chain: tuple[str, ...], needle: _Needle) -> str:
    return "!".join(_shown(part, needle) for part in chain) if chain else "raw"


def _shown(part: str, needle: _Needle) -> str:
    """A label part safe to show: one line, and an archive member name holding the key as the fingerprint."""
    text = "".join(char if char.isprintable() else "?" for char in part)[:200]
    head, colon, name = text.partition(":")
    if colon and _holds(name, needle):
        return f"{head}:[{needle.fingerprint}]"
    return f"[{needle.fingerprint}]" if _holds(text, needle) else text


def _holds(text: str, needle: _Needle) -> bool:
    data = text.encode("utf-8", "surrogateescape")
    search = _Search(needle, tuple(DECODERS))
    search.view(data)
    return bool(search.found)


# ---- ref names -----------------------------------------------------------------------------------


def verify_refs(names: Iterable[str], secret: Secret) -> list[Survivor]:
    """Ref names holding the key, raw or in any decoded form (percent-encoded, base64...)."""
    needle, decoders = _Needle(secret), tuple(DECODERS)
    survivors = set()
    for name in names:
        search = _Search(needle, decoders)
        search.top(name.encode("utf-8", "surrogateescape"))
        found, unsearched = search.wheres()
        shown = _redacted_ref(name, needle)
        survivors |= {Survivor("", "ref", f"ref name {shown}" + ("" if where == "raw" else f" ({where})"))
                      for where in found}
        survivors |= {Survivor("", "ref", f"ref name {shown} ({where})", unsearched=True) for where in unsearched}
    return sorted(survivors, key=lambda s: s.where)


def _redacted_ref(name: str, needle: _Needle) -> str:
    """The ref name with the key (raw), and any component holding it in another form, as the fingerprint."""
    mark = f"[{needle.fingerprint}]"
    parts = name.replace(needle.value.decode("utf-8", "surrogateescape"), mark).split("/")
    parts = [mark if _holds(part, needle) else part for part in parts]
    shown = "/".join(parts)
    return shown if not _holds(shown, needle) else "/".join(parts[:2] + [mark])


# ---- the object store ----------------------------------------------------------------------------


def reachable(git_dir: Path, *, label: str) -> set[bytes]:
    """The id of every object a ref (or HEAD) reaches: what a clone of this repository gets."""
    out = git(git_dir, "rev-list", "--objects", "--all", "--no-object-names", verb="git rev-list", repo=label).stdout
    return set(out.split())


def verify_objects(
    git_dir: Path, secret: Secret, objects: Iterable[bytes | str] | None = None, *, label: str
) -> list[Survivor]:
    """Every copy of the key in ``objects`` (hex ids) of ``git_dir``, or with None in every object a
    ref reaches; parts that could not be searched come with ``unsearched``. Raises ``GitError``."""
    needle, decoders = _Needle(secret), tuple(DECODERS)
    with ThreadPoolExecutor(max_workers=2) as pool:  # two git commands at once
        everything = pool.submit(_everything, git_dir, label)
        wanted = (reachable(git_dir, label=label) if objects is None
                  else {oid.encode() if isinstance(oid, str) else bytes(oid) for oid in objects})
        listing = [(oid, size) for oid, size in everything.result() if oid in wanted]
    survivors = [Survivor(oid.decode(), "", "missing from the object store", unsearched=True)
                 for oid in sorted(wanted - {oid for oid, _ in listing})]
    total = sum(size for _, size in listing)
    parts = [ids for ids in _split(listing, WORKERS if total >= SPLIT_MIN else 1) if ids]
    fast = set(decoders) <= _BUILTIN
    with ExitStack() as processes:
        procs = [processes.enter_context(_cat_file(git_dir, ids, label)) for ids in parts]
        with ThreadPoolExecutor(max_workers=max(1, len(procs))) as pool:
            futures = [pool.submit(_Reader(needle, decoders, fast).run, proc.stdout) for proc in procs]
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [future.exception() for future in done if future.exception()]
                if failed:
                    raise failed[0]
            except BaseException:
                for proc in procs:  # the other readers see the end of their stream and stop
                    interrupts.kill_group(proc)
                raise
        for future in futures:
            survivors += future.result()
    return sorted(set(survivors), key=lambda s: (s.object, s.where))


def _everything(git_dir: Path, label: str) -> list[tuple[bytes, int]]:
    """``(id, size)`` of every object in pack order (``--unordered``: git's delta-base cache stays warm)."""
    out = git(git_dir, "cat-file", "--batch-all-objects", "--unordered", "--batch-check=%(objectname) %(objectsize)",
              verb="git cat-file", repo=label).stdout
    return [(oid, int(size)) for oid, _, size in (line.partition(b" ") for line in out.splitlines())]


def _split(objects: list[tuple[bytes, int]], parts: int) -> list[list[bytes]]:
    """``parts`` runs of consecutive objects costing git about as much each to print (size plus a
    per-object cost), so each cat-file keeps the locality of the pack."""
    total = sum(size + _OBJECT_COST for _, size in objects)
    runs: list[list[bytes]] = [[] for _ in range(parts)]
    seen = 0
    for oid, size in objects:
        runs[min(parts - 1, seen * parts // max(total, 1))].append(oid)
        seen += size + _OBJECT_COST
    return runs


@contextmanager
def _cat_file(git_dir: Path, ids: list[bytes], label: str) -> Iterator[subprocess.Popen]:
    """``git cat-file --batch`` printing ``ids`` (read from a file of ids) to an unbuffered pipe."""
    with tempfile.TemporaryFile() as listing, tempfile.TemporaryFile() as errors:
        listing.write(b"\n".join(ids) + b"\n")
        listing.seek(0)
        proc = interrupts.spawn(git_argv(git_dir, "cat-file", "--batch", "--buffer"), stdin=listing,
                                stdout=subprocess.PIPE, stderr=errors, env=child_env(), bufsize=0)
        with suppress(OSError, AttributeError):  # Linux only; the default 64 KiB pipe works too
            fcntl.fcntl(proc.stdout, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        try:
            yield proc
        except BaseException:
            interrupts.kill_group(proc)
            raise
        finally:
            proc.stdout.close()
            returncode = proc.wait()
            interrupts.release(proc)
        if returncode != 0:
            errors.seek(0)
            raise GitError(f"git cat-file of {label} failed: {first_line(errors.read())}")


class _Reader:
    """Reads one ``cat-file --batch`` stream into a fixed buffer and searches the whole objects in it:
    one raw ``find`` and one ``translate`` per buffer, the prefilter per object, the decoders only
    for objects it flags. An object larger than the buffer is read whole (up to ``WHOLE_LIMIT``)."""

    def __init__(self, needle: _Needle, decoders: tuple[Decoder, ...], fast: bool):
        self.needle, self.decoders, self.fast = needle, decoders, fast
        self.buf = bytearray(CHUNK)
        self.view = memoryview(self.buf)
        self.filled = 0
        self.eof = False
        self.stream: IO[bytes] | None = None
        self.survivors: list[Survivor] = []

    def run(self, stream: IO[bytes]) -> list[Survivor]:
        self.stream = stream
        while True:
            self._fill()
            if self.eof and not self.filled:
                return self.survivors
            objects, used = self._whole_objects()
            if objects:
                self._search(self.buf, objects, used)
            if used:
                self._drop(used)
            elif self.filled == len(self.buf):
                self._large_object()
            elif self.eof:
                raise GitError("git cat-file output ended in the middle of an object")

    def _fill(self) -> None:
        """Read what the pipe holds (at least ``READ_MIN`` bytes, or to the end of the buffer or the
        stream): batches follow git's pace, instead of git waiting on a full pipe while this waits for
        a full buffer."""
        start = self.filled
        while not self.eof and self.filled < len(self.buf) and self.filled - start < READ_MIN:
            count = self.stream.readinto(self.view[self.filled:])
            if count:
                self.filled += count
            else:
                self.eof = True

    def _drop(self, count: int) -> None:
        rest = self.filled - count
        self.view[:rest] = self.view[count:self.filled]
        self.filled = rest

    def _header(self, pos: int) -> tuple[str, str, int, int] | None:
        """``(id, kind, content start, size)`` at ``pos`` (size -1: missing), or None if the header is cut."""
        newline = self.buf.find(b"\n", pos, self.filled)
        if newline < 0:
            return None
        fields = self.buf[pos:newline].decode("ascii", "replace").split(" ")
        if len(fields) == 2 and fields[1] == "missing":  # removed by a gc since it was listed
            return fields[0], "missing", newline + 1, -1
        if len(fields) != 3:
            raise GitError("git cat-file printed an unexpected header")
        return fields[0], fields[1], newline + 1, int(fields[2])

    def _whole_objects(self) -> tuple[list[tuple[str, str, int, int]], int]:
        """The objects wholly in the buffer ``(id, kind, start, end)``, and where the first cut one starts."""
        pos, objects = 0, []
        while (header := self._header(pos)) is not None:
            oid, kind, start, size = header
            if size < 0:
                self.survivors.append(Survivor(oid, "", "missing from the object store", unsearched=True))
                pos = start
                continue
            end = start + size
            if end >= self.filled:
                break
            if self.buf[end] != 0x0A:
                raise GitError("git cat-file printed an object of another size than its header says")
            objects.append((oid, kind, start, end))
            pos = end + 1
        return objects, pos

    def _search(self, buf: bytearray, objects: list[tuple[str, str, int, int]], used: int) -> None:
        needle = self.needle
        classes = (buf if used == len(buf) else buf[:used]).translate(needle.table)  # a raw copy is a run of A as long as the key, like the rest
        for oid, kind, start, end in objects:
            if not self.fast:
                flagged = True
            elif kind == "tree":  # names: no line breaks, and the binary ids are not text
                flagged = classes.find(needle.run, start, end) >= 0
            elif kind == "blob":
                flagged = needle.suspicious(classes, start, end)
            else:
                flagged = self._commit_or_tag_suspicious(buf, classes, kind, start, end)
            if flagged:
                self._record(oid, kind, bytes(buf[start:end]))

    def _commit_or_tag_suspicious(self, buf: bytearray, classes: bytes, kind: str, start: int, end: int) -> bool:
        """The prefilter on a commit or tag without its object ids (hex runs joined by line breaks) and
        signatures (wrapped base64 gpg wrote): from its first person line on, or header by header when
        it is signed or carries a merged tag."""
        needle = self.needle
        if buf.find(needle.value, start, end) >= 0:
            return True
        signed = buf.find(b"\ngpgsig", start, end) >= 0 or buf.find(b"\nmergetag ", start, end) >= 0
        if kind == "commit" and not signed:
            person = buf.find(b"\nauthor ", start, end)
            return needle.suspicious(classes, person if person >= 0 else start, end)
        body = b"\n".join(value for _, value, decode in _sections(kind, bytes(buf[start:end])) if decode)
        return needle.suspicious(body.translate(needle.table), 0, len(body))

    def _record(self, oid: str, kind: str, data: bytes) -> None:
        found, unsearched = _inspect(kind, data, self.needle, self.decoders, len(oid) // 2).wheres()
        self.survivors += [Survivor(oid, kind, where) for where in found]
        self.survivors += [Survivor(oid, kind, where, unsearched=True) for where in unsearched]

    def _large_object(self) -> None:
        """The object at the start of the full buffer: read whole into a buffer of its own, or searched
        raw in overlapping windows when larger than ``WHOLE_LIMIT``."""
        header = self._header(0)
        if header is None:
            raise GitError("git cat-file printed a header longer than the buffer")
        oid, kind, start, size = header
        if size > WHOLE_LIMIT:
            self._windows(oid, kind, start, size)
            return
        whole = bytearray(size + 1)  # with the newline after the object
        have = self.filled - start
        whole[:have] = self.view[start:self.filled]
        self.filled = 0
        view = memoryview(whole)
        while have < len(whole):
            count = self.stream.readinto(view[have:])
            if not count:
                raise GitError("git cat-file output ended in the middle of an object")
            have += count
        if whole[size] != 0x0A:
            raise GitError("git cat-file printed an object of another size than its header says")
        self._search(whole, [(oid, kind, 0, size)], len(whole))

    def _windows(self, oid: str, kind: str, start: int, size: int) -> None:
        """Search an object too large to hold in buffer-sized windows that overlap by the key's length
        less one byte, so a copy cut by a window edge is whole in the next one."""
        overlap = len(self.needle.value) - 1
        low = fresh = start  # the window starts at ``low``; bytes before ``fresh`` were in the last one
        left, found = size, False
        while True:
            end = min(self.filled, fresh + left)
            found = found or self.buf.find(self.needle.value, low, end) >= 0
            left -= end - fresh
            if not left and end < self.filled:  # the content and its newline are all read
                break
            keep = min(overlap, end - low)
            self.view[:keep] = self.view[end - keep:end]
            self.filled, low, fresh = keep, 0, keep
            self._fill()
            if self.eof and self.filled <= fresh:
                raise GitError("git cat-file output ended in the middle of an object")
        if self.buf[end] != 0x0A:
            raise GitError("git cat-file printed an object of another size than its header says")
        self._drop(end + 1)
        if found:
            self.survivors.append(Survivor(oid, kind, "raw"))
        self.survivors.append(Survivor(oid, kind, f"not decoded: larger than {WHOLE_LIMIT >> 20} MiB, searched raw only",
                                       unsearched=True))
