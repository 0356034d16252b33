"""Replace one key in bytes, each copy by the placeholder *in the copy's own encoding*, so the file
stays what it was: a Kubernetes Secret still base64-decodes, a URL still parses, a JSON string
still loads, a UTF-16 file is still UTF-16.

``scrub(data, key, placeholder)`` returns the new bytes and the labels of the encodings it replaced
(``raw``, ``url``, ``json``, ``utf-16le``, ``utf-16be``, ``utf-32le``, ``utf-32be``, ``hex``,
``base64``; nested forms chain with ``!``: ``base64!url``, ``gzip!base64``). Labels never hold
key material, and neither does any message or ``repr`` here.

What each copy becomes:

- raw: the placeholder;
- percent-encoded (``%XX`` for some or all characters): the percent-encoded placeholder, hex digits
  in the case the copy used; every character encoded if the copy had every character encoded;
- JSON-escaped (``\\/``, ``\\uXXXX``, ``\\"``...): the placeholder escaped the same way;
- UTF-16LE/BE and UTF-32LE/BE (BOM or not; a BOM says which byte order wins where both match):
  the placeholder in that encoding, at the same code-unit alignment;
- hex (lower or upper case): the placeholder's hex in the same case;
- base64 (standard or URL-safe alphabet, padded or not, on one line or wrapped over several lines
  of one width with the same indentation and line ending: PEM, MIME, ``base64`` output, YAML block
  scalars, CRLF files): the whole value is decoded, scrubbed recursively (so base64 of a URL with a
  percent-encoded key is handled, and so is a gzip stream inside a value once the value is
  opened), and re-encoded with the same alphabet, padding, line width, indentation and line
  endings. Bytes outside the value are untouched;
- gzip (the whole data is gzip members, up to ``GZIP_LIMIT`` decompressed): decompressed, scrubbed
  and recompressed as one member with the original header (mtime, OS, name with the key removed).

Returned unchanged, for the caller to strip instead (purge removes such blobs from history): zip and
tar archives (a copy replaced in place would break their sizes and checksums), gzip streams holding
an archive or decompressing past the limit, and other compressions.

Speed: data with no copy costs C-speed checks only: ``bytes.find`` of the raw, wide and hex forms;
one ``bytes.translate`` dropping whitespace, then ``find`` of the key's base64 forms (both
alphabets, three alignments, also of its percent-encoded and UTF-16LE forms) in what is left, so a
copy wrapped at any width is seen; and, only when ``%`` (or a JSON escape the key's characters
could take) occurs, one compiled-regex scan. A base64 value is opened only where such a form
shows, so base64 holding the key only inside another layer (gzip, a second base64, a partly
percent-encoded key) is found only when something else in the value points there.

Heuristics, stated: consecutive lines made only of base64 characters, with the same indentation
and one width followed by a line no longer, are read as one wrapped value (a list of unrelated
same-width tokens one per line is read line by line when the key lies inside one line). A value
using neither ``+/`` nor ``-_`` is read as URL-safe when it sits between dots (a JWT) or lacks the
padding its length needs, else as standard; it is re-encoded unpadded only when it was visibly
so. The first JSON escape of a copy is honoured before raw copies are replaced, so ``\\/`` and the
rest of a key that starts with ``/`` becomes the escaped placeholder, not a stray backslash.

The module is longer than most here because each encoding needs both its search and its writer,
and base64 needs the reading of wrapped values; each part is a few small functions.
"""

from __future__ import annotations

import binascii
import functools
import json
import re
import struct
import zlib
from dataclasses import dataclass
from urllib.parse import quote

from cauterize.locate.matcher import GZIP_LIMIT, GZIP_MAGIC, container_kind

#: Layers opened inside one another (base64 in base64, gzip in base64...).
MAX_DEPTH = 3

_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_ALPHABETS = {"std": _ALNUM + b"+/", "url": _ALNUM + b"-_"}
_TO_STD = bytes.maketrans(b"-_", b"+/")
_TO_URL = bytes.maketrans(b"+/", b"-_")
_UNRESERVED = frozenset(_ALNUM + b"-._~")
_WHITESPACE = b" \t\r\n"
_NON_WHITESPACE = re.compile(rb"[^ \t\r\n]+")
_PURE_LINE = re.compile(rb"([ \t]*)([A-Za-z0-9+/_-]+={0,2})(\r?)")
_ESCAPE_HEX = re.compile(rb"%([0-9A-Fa-f]{2})|\\u([0-9A-Fa-f]{4})")
_JSON_SHORT = {'"': b'\\"', "\\": b"\\\\", "/": b"\\/", "\b": b"\\b", "\f": b"\\f", "\n": b"\\n",
               "\r": b"\\r", "\t": b"\\t"}
_WIDE = (("utf-16le", "utf-16-le", 2), ("utf-16be", "utf-16-be", 2),
         ("utf-32le", "utf-32-le", 4), ("utf-32be", "utf-32-be", 4))
_BOMS = ((b"\xff\xfe\x00\x00", "utf-32le"), (b"\x00\x00\xfe\xff", "utf-32be"),
         (b"\xff\xfe", "utf-16le"), (b"\xfe\xff", "utf-16be"))


def scrub(data: bytes, key: bytes, placeholder: bytes) -> tuple[bytes, list[str]]:
    """``data`` with every copy of ``key`` replaced by ``placeholder`` in the copy's encoding, and
    the sorted labels of the encodings replaced (``[]``, and ``data`` itself, when there was none)."""
    return scrubber(key, placeholder).scrub(data)


def scrub_name(name: bytes, key: bytes, name_placeholder: bytes) -> bytes:
    """A file path or ref name with raw and percent-encoded copies of ``key`` replaced by
    ``name_placeholder`` (the caller's name-safe text, e.g. ``REMOVED-<16 hex>``), as is."""
    return scrubber(key, name_placeholder).scrub_name(name)


@functools.lru_cache(maxsize=4)
def scrubber(key: bytes, placeholder: bytes) -> Scrubber:
    """The ``Scrubber`` for one key and placeholder, built once (its patterns cost a little)."""
    return Scrubber(key, placeholder)


@dataclass(frozen=True)
class _Wide:
    label: str
    form: bytes
    replacement: bytes
    unit: int


@dataclass(frozen=True)
class _Token:
    """One base64 value: ``data[start:end]`` holds its ``pieces`` (one per line) joined by ``eol + indent``."""

    start: int
    end: int
    pieces: tuple[bytes, ...]
    indent: bytes
    eol: bytes
    alphabet: str
    dotted: bool = False  # a segment between dots (a JWT): URL-safe, unpadded

    @property
    def width(self) -> int:
        return len(self.pieces[0]) if len(self.pieces) > 1 else 0


class Scrubber:
    """Every encoded form of one key, and how to write the placeholder in each. Never shows either."""

    __slots__ = ("_hex", "_json", "_json_leads", "_key", "_percent", "_percent_lead", "_placeholder", "_text",
                 "_triggers", "_wide")

    def __init__(self, key: bytes, placeholder: bytes):
        if not key:
            raise ValueError("the key to scrub is empty")
        if key in placeholder:
            raise ValueError("the placeholder must not contain the key")
        self._key, self._placeholder = bytes(key), bytes(placeholder)
        self._text = _text(self._placeholder)
        key_text = _text(self._key)
        self._wide = tuple(
            _Wide(label, key_text.encode(codec), self._text.encode(codec), unit)
            for label, codec, unit in _WIDE if key_text is not None and self._text is not None
        )
        self._hex = ((self._key.hex().encode(), self._placeholder.hex().encode()),
                     (self._key.hex().upper().encode(), self._placeholder.hex().upper().encode()))
        self._percent = re.compile(b"".join(_percent_alternatives(byte) for byte in self._key))
        #: Any escape of a key byte: cheap (a literal ``%`` first), and a percent-encoded copy holds one.
        self._percent_lead = _escape_lead(self._key)
        self._json = (re.compile(b"".join(_json_alternatives(char) for char in key_text))
                      if key_text is not None else None)
        self._json_leads = (b"\\u", *sorted({_JSON_SHORT[char] for char in key_text or "" if char in _JSON_SHORT}))
        self._triggers = _base64_triggers(self._key, key_text)

    def __repr__(self) -> str:
        return "Scrubber(...)"

    def __reduce__(self):
        raise TypeError("a Scrubber holds key material and cannot be pickled")

    # -- the fast check ---------------------------------------------------------------------------

    def might_hold(self, data: bytes) -> bool:
        """Whether ``data`` may hold a copy ``scrub`` replaces (false: it certainly holds none)."""
        if self._key in data or data.startswith(GZIP_MAGIC):
            return True
        if any(wide.form in data for wide in self._wide) or any(form in data for form, _ in self._hex):
            return True
        if b"%" in data and self._percent_lead.search(data) and self._percent.search(data):
            return True
        if self._json is not None and any(lead in data for lead in self._json_leads) and self._json.search(data):
            return True
        squeezed = data.translate(None, _WHITESPACE)
        return any(form in squeezed for form, _ in self._triggers)

    # -- scrubbing --------------------------------------------------------------------------------

    def scrub(self, data: bytes, depth: int = 0) -> tuple[bytes, list[str]]:
        """See ``scrub``; ``depth`` is how many layers (base64, gzip) ``data`` already sits in."""
        original = data
        data = bytes(data)
        if not self.might_hold(data):
            return original, []
        if data.startswith(GZIP_MAGIC):
            return self._gzip(original, data, depth)
        if container_kind(data) is not None:
            return original, []  # zip or tar: sizes and checksums would no longer match
        labels: set[str] = set()
        if self._json is not None and any(lead in data for lead in self._json_leads):
            data = self._json_copies(data, labels)  # first: ``\/`` + the rest of a key starting with '/' holds it raw
        if self._key in data:
            data = data.replace(self._key, self._placeholder)
            labels.add("raw")
        data = self._wide_forms(data, labels)
        for form, replacement in self._hex:
            if form in data:
                data = data.replace(form, replacement)
                labels.add("hex")
        if b"%" in data and self._percent_lead.search(data):
            data = self._percent_copies(data, labels)
        if depth < MAX_DEPTH:
            data = self._base64(data, depth, labels)
        return (data, sorted(labels)) if labels else (original, [])

    def scrub_name(self, name: bytes) -> bytes:
        """See ``scrub_name``: raw and percent-encoded copies, replaced by the placeholder as is."""
        if any(byte in self._placeholder for byte in b"/\0\n"):
            raise ValueError("a name placeholder must hold no '/', NUL or newline")
        out = name.replace(self._key, self._placeholder) if self._key in name else name
        if b"%" in out:
            out = self._percent.sub(lambda match: self._placeholder, out)
        return out

    def _percent_copies(self, data: bytes, labels: set[str]) -> bytes:
        """Percent-encoded copies (raw ones are gone by now: each match holds an escape)."""
        data, count = self._percent.subn(lambda match: self._percent_placeholder(match.group(0)), data)
        if count:
            labels.add("url")
        return data

    def _json_copies(self, data: bytes, labels: set[str]) -> bytes:
        """JSON-escaped copies. A match without an escape is a raw copy; one whose first backslash is
        itself escaped (``\\\\/KEY``) is left for the raw pass."""
        out, last = [], 0
        match = self._json.search(data)
        while match:
            start, copy = match.start(), match.group(0)
            if copy.startswith(b"\\") and (start - len(data[:start].rstrip(b"\\"))) % 2:
                match = self._json.search(data, start + 1)
                continue
            out += [data[last:start], self._json_placeholder(copy) if b"\\" in copy else self._placeholder]
            labels.add("json" if b"\\" in copy else "raw")
            last = match.end()
            match = self._json.search(data, last)
        if not out:
            return data
        out.append(data[last:])
        return b"".join(out)

    def _percent_placeholder(self, copy: bytes) -> bytes:
        """The placeholder percent-encoded as ``copy`` was: every byte if every byte was, else the
        bytes outside the unreserved set; hex digits in the copy's case."""
        lower = _lower_hex(copy)
        every = copy.count(b"%") * 3 == len(copy)
        digits = "%%%02x" if lower else "%%%02X"
        return b"".join(
            bytes([byte]) if byte in _UNRESERVED and not every else (digits % byte).encode()
            for byte in self._placeholder
        )

    def _json_placeholder(self, copy: bytes) -> bytes:
        """The placeholder JSON-escaped as ``copy`` was: every character as ``\\uXXXX`` if every
        character was, else as ``json.dumps`` writes it (``/`` as ``\\/`` if the copy did so)."""
        text = self._text if self._text is not None else self._placeholder.decode("latin-1")
        digits = "\\u%04x" if _lower_hex(copy) else "\\u%04X"
        if copy.count(b"\\u") * 6 == len(copy):
            return b"".join((digits % unit).encode() for unit in _utf16_units(text))
        out = json.dumps(text)[1:-1].encode()
        return out.replace(b"/", b"\\/") if b"\\/" in copy else out

    def _wide_forms(self, data: bytes, labels: set[str]) -> bytes:
        """UTF-16 and UTF-32 copies. An ASCII key's UTF-16BE form also matches UTF-16LE text one byte
        early (and LE matches BE text one byte late): copies at the text's own alignment go first,
        in the byte order its BOM names (little-endian without one), then any left elsewhere."""
        named = next((label for bom, label in _BOMS if data.startswith(bom)), None)
        ordered = sorted(self._wide, key=lambda wide: (wide.label != named, not wide.label.endswith("le")))
        for aligned in (True, False):
            for wide in ordered:
                data, count = _replace(data, wide.form, wide.replacement, wide.unit if aligned else 1)
                if count:
                    labels.add(wide.label)
        return data

    def _gzip(self, original: bytes, data: bytes, depth: int) -> tuple[bytes, list[str]]:
        if depth >= MAX_DEPTH:
            return original, []
        content = _gunzip_whole(data)
        if content is None or container_kind(content) is not None:
            return original, []
        inner, labels = self.scrub(content, depth + 1)
        header = _gzip_header(data)
        if header is None:
            return original, []
        clean_header = header.replace(self._key, self._placeholder)
        if not labels and clean_header == header:
            return original, []
        labels = [f"gzip!{label}" for label in labels] + (["gzip!raw"] if clean_header != header else [])
        return _gzip_like(clean_header, data[8], inner), sorted(set(labels))

    # -- base64 -----------------------------------------------------------------------------------

    def _base64(self, data: bytes, depth: int, labels: set[str]) -> bytes:
        """Base64 values showing a base64 form of the key once whitespace is ignored (so at any line
        width), each decoded, scrubbed and re-encoded."""
        squeezed = data.translate(None, _WHITESPACE)
        found = sorted((at, alphabets) for form, alphabets in self._triggers for at in _find_all(squeezed, form))
        if not found:
            return data
        hits = zip(_unsqueezed(data, [at for at, _ in found]), (alphabets for _, alphabets in found))
        out: list[bytes] = []
        last = seen_until = 0
        for at, alphabets in hits:
            if at < seen_until:
                continue
            for token in _candidates(data, at, alphabets):
                if token.start < last:
                    continue
                seen_until = max(seen_until, token.end)
                rewritten = self._rewrite(token, depth)
                if rewritten is not None:
                    text, inner = rewritten
                    out += [data[last:token.start], text]
                    last = token.end
                    labels.update("base64" if label == "raw" else f"base64!{label}" for label in inner)
                    break
        if not out:
            return data
        out.append(data[last:])
        return b"".join(out)

    def _rewrite(self, token: _Token, depth: int) -> tuple[bytes, list[str]] | None:
        """The token's new text when its decoded bytes hold a copy, with the labels found inside."""
        text = b"".join(token.pieces)
        core = text.rstrip(b"=")
        alphabet, unpadded = token.alphabet, not text.endswith(b"=")
        if not any(byte in text for byte in b"+/-_"):  # either alphabet fits: see the module's heuristics
            alphabet = "url" if token.dotted or (unpadded and len(core) % 4) else "std"
        std = core.translate(_TO_STD) if alphabet == "url" else core
        for shift in range(min(4, len(token.pieces[0]))):
            body = std[shift:]
            if len(body) % 4 == 1 or len(body) < 2:
                continue
            try:
                decoded = binascii.a2b_base64(body + b"=" * (-len(body) % 4))
            except binascii.Error:
                continue
            new, inner = self.scrub(decoded, depth + 1)
            if not inner:
                continue
            encoded = binascii.b2a_base64(new, newline=False)
            if alphabet == "url":
                encoded = encoded.translate(_TO_URL)
            if unpadded and (token.dotted or len(body) % 4):  # visibly unpadded; with no sign either way: padded
                encoded = encoded.rstrip(b"=")
            compact = core[:shift] + encoded
            if not token.width:
                return compact, inner
            lines = [compact[at:at + token.width] for at in range(0, len(compact), token.width)]
            return (token.eol + token.indent).join(lines), inner
        return None


# -- building the forms -------------------------------------------------------------------------------


def _text(value: bytes) -> str | None:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _hex_class(nibble: int) -> bytes:
    digit = b"%x" % nibble
    return digit if nibble < 10 else b"[" + digit + digit.upper() + b"]"


def _escape_lead(key: bytes) -> re.Pattern:
    """``%(?:2[dD]|3[0-9]|...)``: a percent escape of any byte of ``key``, grouped by high nibble."""
    lows: dict[int, set[int]] = {}
    for byte in key:
        lows.setdefault(byte >> 4, set()).add(byte & 15)
    groups = []
    for high, nibbles in sorted(lows.items()):
        digits = b"".join(b"%x" % n for n in sorted(nibbles))
        groups.append(_hex_class(high) + b"[" + bytes(sorted(set(digits + digits.upper()))) + b"]")
    return re.compile(b"%(?:" + b"|".join(groups) + b")")


def _percent_alternatives(byte: int) -> bytes:
    """``(?:k|%6[bB])``: one key byte, as itself or percent-encoded in either case."""
    return b"(?:%s|%%%s%s)" % (re.escape(bytes([byte])), _hex_class(byte >> 4), _hex_class(byte & 15))


def _json_alternatives(char: str) -> bytes:
    """One key character as JSON may write it: itself, a short escape, or ``\\uXXXX`` (either case)."""
    options = []
    if char not in '"\\' and ord(char) >= 0x20:
        options.append(re.escape(char.encode()))
    if char in _JSON_SHORT:
        options.append(re.escape(_JSON_SHORT[char]))
    options.append(b"".join(rb"\\u" + b"".join(_hex_class(unit >> shift & 15) for shift in (12, 8, 4, 0))
                            for unit in _utf16_units(char)))
    return b"(?:" + b"|".join(options) + b")"


def _utf16_units(text: str) -> list[int]:
    raw = text.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(raw[at:at + 2], "big") for at in range(0, len(raw), 2)]


def _base64_triggers(key: bytes, key_text: str | None) -> tuple[tuple[bytes, tuple[str, ...]], ...]:
    """The base64 forms (both alphabets, all three alignments: the characters that depend on key
    bytes only) of the key, of its percent-encoded forms and of its UTF-16LE form, as
    ``(form, alphabets it may belong to)``."""
    variants = [key]
    if key_text is not None:
        upper = quote(key_text, safe="").encode()
        variants += [upper, re.sub(rb"%[0-9A-F]{2}", lambda m: m.group(0).lower(), upper),
                     key_text.encode("utf-16-le")]
    triggers: dict[bytes, list[str]] = {}
    for variant in dict.fromkeys(variants):
        for offset in range(3):
            encoded = binascii.b2a_base64(b"\0" * offset + variant, newline=False)
            stable = encoded[-(-8 * offset // 6):(8 * (offset + len(variant))) // 6]
            for alphabet, form in (("std", stable), ("url", stable.translate(_TO_URL))):
                if alphabet not in triggers.setdefault(form, []):
                    triggers[form].append(alphabet)
    return tuple((form, tuple(alphabets)) for form, alphabets in triggers.items())


def _unsqueezed(data: bytes, offsets: list[int]) -> list[int]:
    """Where the characters at ``offsets`` (ascending) of ``data`` without whitespace are in ``data``."""
    out: list[int] = []
    pending = iter(offsets)
    target = next(pending, None)
    count = 0
    for run in _NON_WHITESPACE.finditer(data):
        length = run.end() - run.start()
        while target is not None and target < count + length:
            out.append(run.start() + target - count)
            target = next(pending, None)
        if target is None:
            break
        count += length
    return out


# -- base64 values in the data ------------------------------------------------------------------------


def _candidates(data: bytes, at: int, alphabets: tuple[str, ...]) -> list[_Token]:
    """The values around ``data[at]`` in each alphabet the form there may belong to, the alphabet
    reaching farthest first (a URL-safe value read as standard stops at its first ``-`` or ``_``)."""
    found = [_tokens_at(data, at, alphabet) for alphabet in alphabets]
    found.sort(key=lambda tokens: -max((token.end - token.start for token in tokens), default=0))
    return [token for tokens in found for token in tokens]


def _tokens_at(data: bytes, at: int, alphabet: str) -> list[_Token]:
    """The base64 value(s) around ``data[at]`` in ``alphabet``, most likely first: the run of base64
    characters on its line, extended over the wrapped lines around it when the run is a whole line."""
    chars = _ALPHABETS[alphabet]
    line_start = data.rfind(b"\n", 0, at) + 1
    line_end = data.find(b"\n", at)
    line_end = len(data) if line_end < 0 else line_end
    start = line_start + len(data[line_start:at].rstrip(chars))
    right = data[at:line_end]
    end = at + len(right) - len(right.lstrip(chars))
    padding = len(data[end:min(line_end, end + 2)]) - len(data[end:min(line_end, end + 2)].lstrip(b"="))
    end += padding
    if end - start < 4:
        return []
    dotted = data[start - 1:start] == b"." or data[end:end + 1] == b"."
    single = _Token(start, end, (data[start:end],), b"", b"\n", alphabet, dotted)
    prefix, suffix = data[line_start:start], data[end:line_end]
    if prefix.strip(b" \t") or suffix not in (b"", b"\r"):
        return [single]  # the value starts or ends inside its line: it is not wrapped
    block = _wrapped_block(data, line_start, line_end, prefix, suffix, alphabet)
    if len(block.pieces) == 1:
        return [single]
    lengths = {len(piece) for piece in block.pieces}
    return [single, block] if len(lengths) == 1 else [block]


def _wrapped_block(data: bytes, line_start: int, line_end: int, indent: bytes, cr: bytes, alphabet: str) -> _Token:
    """The wrapped value that holds the line ``data[line_start:line_end]``: among the consecutive lines of
    base64 characters with the same indentation and line ending, lines of one width ended by one no longer."""
    other = b"-_" if alphabet == "std" else b"+/"

    def line_at(start: int, end: int) -> tuple[int, int] | None:
        match = _PURE_LINE.fullmatch(data, start, end)
        if not match or match.group(1) != indent or match.group(3) != cr:
            return None
        if any(byte in match.group(2) for byte in other):
            return None
        return match.start(2), match.end(2)

    lines = [line_at(line_start, line_end)]
    here = 0
    start = line_start
    while start > 0:  # upwards
        previous = data.rfind(b"\n", 0, start - 1) + 1
        found = line_at(previous, start - 1)
        if found is None:
            break
        lines.insert(0, found)
        here += 1
        start = previous
    end = line_end
    while end < len(data):  # downwards
        following = data.find(b"\n", end + 1)
        following = len(data) if following < 0 else following
        found = line_at(end + 1, following)
        if found is None:
            break
        lines.append(found)
        end = following
    first = 0
    while first < len(lines):
        width, last = lines[first][1] - lines[first][0], first
        while (last + 1 < len(lines) and lines[last][1] - lines[last][0] == width
               and data[lines[last][1] - 1] != ord("=") and lines[last + 1][1] - lines[last + 1][0] <= width):
            last += 1
        if first <= here <= last:
            chosen = lines[first:last + 1]
            pieces = tuple(data[s:e] for s, e in chosen)
            return _Token(chosen[0][0], chosen[-1][1], pieces, indent, cr + b"\n", alphabet)
        first = last + 1
    raise AssertionError("the line is in no block")  # unreachable: every line is in one block


# -- small helpers ------------------------------------------------------------------------------------


def _lower_hex(copy: bytes) -> bool:
    """Whether the escapes in ``copy`` write hex letters in lower case (upper case when none has a letter)."""
    letters = b"".join(b"".join(group or b"" for group in match.groups()) for match in _ESCAPE_HEX.finditer(copy))
    return any(byte in b"abcdef" for byte in letters) and not any(byte in b"ABCDEF" for byte in letters)


def _find_all(data: bytes, form: bytes) -> list[int]:
    found, at = [], data.find(form)
    while at >= 0:
        found.append(at)
        at = data.find(form, at + 1)
    return found


def _replace(data: bytes, form: bytes, replacement: bytes, unit: int) -> tuple[bytes, int]:
    """Replace the copies of ``form`` that start at a multiple of ``unit``; returns (data, how many)."""
    at = data.find(form)
    if at < 0:
        return data, 0
    out, last, count = [], 0, 0
    while at >= 0:
        if at % unit == 0:
            out += [data[last:at], replacement]
            last, count = at + len(form), count + 1
            at = data.find(form, last)
        else:
            at = data.find(form, at + 1)
    if not count:
        return data, 0
    out.append(data[last:])
    return b"".join(out), count


def _gunzip_whole(data: bytes) -> bytes | None:
    """The content of ``data`` when all of it is gzip members and it inflates within ``GZIP_LIMIT``."""
    out: list[bytes] = []
    size, rest = 0, data
    try:
        while rest:
            if not rest.startswith(GZIP_MAGIC):
                return None  # bytes after the last member: not a gzip file as a whole
            inflater = zlib.decompressobj(wbits=31)
            chunk = inflater.decompress(rest, GZIP_LIMIT - size + 1)
            size += len(chunk)
            if size > GZIP_LIMIT or not inflater.eof:
                return None
            out.append(chunk)
            rest = inflater.unused_data
    except zlib.error:
        return None
    return b"".join(out)


def _gzip_header(data: bytes) -> bytes | None:
    """The header of the first gzip member, without the optional header CRC (``None`` if cut short)."""
    try:
        flags, at = data[3], 10
        if flags & 4:
            at += 2 + int.from_bytes(data[at:at + 2], "little")
        for flag in (8, 16):
            if flags & flag:
                at = data.index(b"\0", at) + 1
    except (IndexError, ValueError):
        return None
    if at > len(data):
        return None
    return data[:3] + bytes([flags & ~2 & 0xFF]) + data[4:at]


def _gzip_like(header: bytes, extra_flags: int, content: bytes) -> bytes:
    """One gzip member holding ``content``, behind ``header``, at the level its XFL byte names."""
    level = 9 if extra_flags == 2 else 1 if extra_flags == 4 else 6
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = compressor.compress(content) + compressor.flush()
    return header + body + struct.pack("<II", zlib.crc32(content), len(content) & 0xFFFFFFFF)
