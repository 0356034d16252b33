"""The secret value type, its public identity, key sources and the encodings a search needs.

A ``Secret`` never shows its value in ``repr``, ``str``, f-strings, logging or pickles; the value is
read only through ``reveal()``, at the one place that must send or store it. Its public identity is
its ``fingerprint`` (``sha256:`` + 16 hex digits) and its ``redacted`` form (first 8, ellipsis,
last 4). Keys enter only through a source reference (DESIGN.md section 3), whose text one parser
reads (``parse_key_text``: a bare key, a ``NAME=value`` line, a whole .env with one key, a JSON key
file); ``cauterize.providers.formats`` then checks a leaked key against its provider's key shapes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import quote

from cauterize.errors import KeySourceError

#: Schemes a key source reference may use. ``vault:``, ``aws-sm:`` and ``prefect-secret:`` are
#: resolved by the stores layer; the three below need nothing but the process.
LOCAL_SCHEMES = ("env", "file", "stdin")
ALL_SCHEMES = LOCAL_SCHEMES + ("vault", "aws-sm", "prefect-secret")

ELLIPSIS = "…"


def fingerprint_of(value: str | bytes) -> str:
    """``sha256:`` + the first 16 hex digits of SHA-256 of the value."""
    data = value.encode() if isinstance(value, str) else value
    return "sha256:" + hashlib.sha256(data).hexdigest()[:16]


def redact(value: str) -> str:
    """The first 8 characters, an ellipsis, the last 4; shorter values show nothing."""
    if len(value) < 16:
        return ELLIPSIS
    return f"{value[:8]}{ELLIPSIS}{value[-4:]}"


class Secret:
    """A key value that refuses to be printed, logged, pickled or copied into results."""

    __slots__ = ("__weakref__", "_value", "fingerprint", "redacted")

    def __init__(self, value: str):
        value = value.strip()
        if not value:
            raise KeySourceError("the key source is empty")
        if "\x00" in value or (any(ch in value for ch in "\r\n") and not value.startswith("{")):
            # One key per source; a JSON credentials file (Google service-account keys) spans lines.
            raise KeySourceError("the key source holds more than one line; it must hold exactly one key")
        self._value = value
        self.fingerprint = fingerprint_of(value)
        self.redacted = redact(value)
        _REGISTRY.add(self)

    def reveal(self) -> str:
        """The value itself: call only where it is sent to a provider or written to a store."""
        return self._value

    def matches(self, other: str) -> bool:
        """Constant-time comparison with a candidate value."""
        return hmac.compare_digest(self._value.encode(), other.strip().encode())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return hmac.compare_digest(self._value.encode(), other._value.encode())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        return f"Secret({self.fingerprint}, {self.redacted})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self):
        raise TypeError("a Secret cannot be pickled or persisted; pass its fingerprint or source instead")

    def __len__(self) -> int:
        return len(self._value)

    def encodings(self) -> dict[str, list[bytes]]:
        """Every byte form a copy of this key may take, by encoding name (see ``encoded_forms``)."""
        return encoded_forms(self._value)


def encoded_forms(value: str) -> dict[str, list[bytes]]:
    """The byte forms to search for: ``raw``, ``base64`` (standard and URL-safe alphabets, at all
    three byte alignments of a larger base64 stream), ``url`` (percent-encoded) and ``json``
    (JSON string escaping). A form identical to an earlier one is listed once, under the earlier name.
    """
    raw = value.encode()
    forms: dict[str, list[bytes]] = {"raw": [raw], "base64": [], "url": [], "json": []}
    seen = {raw}
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        # Characters that depend on key bytes only: skip those mixing in the prefix or the padding.
        start = -(-8 * offset // 6)
        end = (8 * (offset + len(raw))) // 6
        stable = encoded[start:end]
        for form in (stable, stable.replace(b"+", b"-").replace(b"/", b"_")):
            if form not in seen:
                seen.add(form)
                forms["base64"].append(form)
    for name, form in (
        ("url", quote(value, safe="").encode()),
        ("url", quote(value, safe="/").encode()),
        ("json", json.dumps(value)[1:-1].encode()),
        ("json", json.dumps(value)[1:-1].replace("/", "\\/").encode()),
    ):
        if form not in seen:
            seen.add(form)
            forms[name].append(form)
    return {name: items for name, items in forms.items() if items}


class _Registry:
    """Weak set of every Secret alive in this process, for the last-line log redaction filter."""

    def __init__(self) -> None:
        import weakref

        self._items: weakref.WeakSet[Secret] = weakref.WeakSet()
        self._lock = threading.Lock()

    def add(self, secret: Secret) -> None:
        with self._lock:
            self._items.add(secret)

    def scrub(self, text: str) -> str:
        with self._lock:
            items = list(self._items)
        for secret in items:
            value = secret.reveal()
            if value in text:
                text = text.replace(value, f"[{secret.fingerprint}]")
        return text

    def find_in(self, data: bytes) -> list[str]:
        """Fingerprints of live secrets found in ``data`` in any encoded form."""
        with self._lock:
            items = list(self._items)
        hits = []
        for secret in items:
            if any(form in data for forms in secret.encodings().values() for form in forms):
                hits.append(secret.fingerprint)
        return hits


_REGISTRY = _Registry()


def safe_environ(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment without any variable that holds a live secret, for child processes
    (git, git-filter-repo, sops...) that have no business reading the key."""
    env = dict(os.environ if base is None else base)
    with _REGISTRY._lock:
        values = [secret.reveal() for secret in _REGISTRY._items]
    return {name: value for name, value in env.items() if not any(v in value for v in values)}


def scrub(text: str) -> str:
    """Replace any live secret's value in ``text`` by its fingerprint."""
    return _REGISTRY.scrub(text)


def assert_clean(data: bytes | str, what: str) -> None:
    """Refuse to write ``data`` to ``what`` if it holds any live secret, in any encoding."""
    from cauterize.errors import SecretLeakError

    blob = data.encode() if isinstance(data, str) else data
    hits = _REGISTRY.find_in(blob)
    if hits:
        raise SecretLeakError(f"refused to write {what}: it would hold the key {', '.join(hits)}")


@dataclass(frozen=True)
class KeySource:
    """A parsed key source reference (``env:VAR``, ``file:PATH``, ``stdin:``, ...)."""

    scheme: str
    target: str

    @classmethod
    def parse(cls, reference: str) -> KeySource:
        scheme, sep, target = reference.partition(":")
        if not sep or scheme not in ALL_SCHEMES:
            raise KeySourceError(
                f"key source {_describe(reference)!s} must start with one of "
                + ", ".join(f"{s}:" for s in ALL_SCHEMES)
            )
        if scheme != "stdin" and not target:
            raise KeySourceError(f"key source {scheme}: names nothing after the colon")
        if scheme == "env" and looks_like_a_value(target):
            raise KeySourceError("key source env: takes the NAME of the variable that holds the key, not the key itself")
        return cls(scheme, target)

    def __str__(self) -> str:
        return f"{self.scheme}:{self.target}"

    def load(
        self,
        *,
        stdin: IO[str] | None = None,
        base_dir: Path | None = None,
        fits: Callable[[str], bool] | None = None,
        expected: str | None = None,
    ) -> Secret:
        """Read the source and parse it with ``parse_key_text`` (``fits`` and ``expected`` pick the key
        line of a .env). ``vault:``/``aws-sm:``/``prefect-secret:`` are resolved by the stores layer."""
        return parse_key_text(self._read(stdin, base_dir), str(self), fits=fits, expected=expected)

    def _read(self, stdin: IO[str] | None, base_dir: Path | None) -> str:
        if self.scheme == "env":
            value = os.environ.get(self.target)
            if value is None:
                raise KeySourceError(f"key source env:{self.target}: the variable is not set")
            if not value.strip():
                raise KeySourceError(f"key source env:{self.target}: the variable is empty")
            return value
        if self.scheme == "file":
            path = Path(self.target).expanduser()
            if base_dir is not None and not path.is_absolute():
                path = base_dir / path
            try:
                data = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                if "/" not in self.target and looks_like_a_value(self.target):
                    raise KeySourceError(
                        "key source file: takes the PATH of a file that holds the key, not the key itself"
                    ) from None
                raise KeySourceError(f"key source file:{self.target}: no such file") from None
            except IsADirectoryError:
                raise KeySourceError(f"key source file:{self.target}: is a directory") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise KeySourceError(f"key source file:{self.target}: cannot be read ({type(exc).__name__})") from None
            if not data.strip():
                raise KeySourceError(f"key source file:{self.target}: the file is empty")
            return data
        if self.scheme == "stdin":
            stream = stdin if stdin is not None else sys.stdin
            # a person at a terminal pastes one line; a pipe may carry a whole file (.env, JSON)
            data = stream.readline() if stream.isatty() else stream.read()
            if not data.strip():
                raise KeySourceError("key source stdin: nothing was read from standard input")
            return data
        from cauterize.stores import load_secret_reference

        return load_secret_reference(self).reveal()


# -- the one key-source parser ---------------------------------------------------------------------

_ASSIGNMENT = re.compile(r"(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*(.*)")
_PLAIN_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


@dataclass(frozen=True)
class _Line:
    number: int
    name: str | None  # the NAME of a NAME=value line
    value: str

    def label(self) -> str:
        """``line 3 (OPENAI_API_KEY)``; a name is shown only when it is plainly a variable name."""
        shown = self.name and _PLAIN_NAME.fullmatch(self.name) and not looks_like_a_value(self.name)
        return f"line {self.number} ({self.name})" if shown else f"line {self.number}"


def parse_key_text(
    text: str,
    where: str,
    *,
    fits: Callable[[str], bool] | None = None,
    expected: str | None = None,
) -> Secret:
    """The key in the text of a key source (DESIGN.md section 3): a bare key, or one ``NAME=value`` /
    ``export NAME=value`` line with the value optionally in single or double quotes (a ``# comment``
    may follow); surrounding whitespace, CR and a UTF-8 BOM are stripped, blank and ``#`` lines
    ignored. A JSON document (a Google service-account key file) is a key as a whole. In a source of
    several lines (a whole .env), the one line whose value ``fits`` the key shapes is the key; several
    such lines are refused, never picked among. Errors name ``where``, never any part of the value."""
    text = text.strip().lstrip("\ufeff").strip()
    if not text:
        raise KeySourceError(f"key source {where} is empty")
    if text.startswith("{"):
        return Secret(text)
    lines = []
    for number, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        line = raw.strip().lstrip("\ufeff").strip()
        if line and not line.startswith("#"):
            lines.append(_parse_line(line, number, where))
    if not lines:
        raise KeySourceError(f"key source {where} holds no key: only blank or comment lines")
    if len(lines) == 1:
        line = lines[0]
        if not line.value:
            raise KeySourceError(f"key source {where}: {line.label()} assigns an empty value")
        return Secret(line.value)
    return Secret(_pick(lines, where, fits or _looks_like_a_credential, expected or "a key").value)


def _parse_line(line: str, number: int, where: str) -> _Line:
    """One non-blank, non-comment line: ``NAME=value`` or a bare value, either optionally quoted."""
    match = _ASSIGNMENT.fullmatch(line)
    if match is None or match.group(2).startswith("="):  # ``abc==``: base64 padding, not an assignment
        return _Line(number, None, _unquoted(line, _Line(number, None, ""), where))
    name, rest = match.groups()
    if rest[:1] not in ("'", '"'):
        return _Line(number, name, re.split(r"[ \t]+#", rest, maxsplit=1)[0].strip())
    return _Line(number, name, _unquoted(rest, _Line(number, name, ""), where))


def _unquoted(text: str, line: _Line, where: str) -> str:
    """``'value'`` or ``"value"`` (a ``# comment`` may follow) without its quotes; anything else as is."""
    if text[:1] not in ("'", '"'):
        return text
    end = text.find(text[0], 1)
    after = text[end + 1:].strip() if end > 0 else ""
    if end < 0 or (after and not after.startswith("#")):
        problem = "its quote does not close" if end < 0 else "something follows its closing quote"
        kind = "a NAME=value line" if line.name else "a quoted value"
        raise KeySourceError(f"key source {where}: {line.label()} looks like {kind} that could not be parsed ({problem})")
    return text[1:end].strip()


def _pick(lines: list[_Line], where: str, fits: Callable[[str], bool], expected: str) -> _Line:
    """The one key line of a multi-line source (a .env), or an error saying how many there are."""
    bare = [line for line in lines if line.name is None and not fits(line.value)]
    if bare:
        raise KeySourceError(
            f"key source {where} holds more than one line and {bare[0].label()} is not a NAME=value line: "
            "give one key, or a .env file with one key"
        )
    keys = [line for line in lines if line.value and fits(line.value)]
    if len(keys) == 1:
        return keys[0]
    if not keys:
        raise KeySourceError(f"key source {where} holds {len(lines)} lines and none is {expected}")
    raise KeySourceError(
        f"key source {where} holds {len(keys)} lines that look like keys "
        f"({', '.join(line.label() for line in keys)}): give a source that holds only the one key"
    )


def _looks_like_a_credential(value: str) -> bool:
    """Without key shapes to go by (admin credentials, webhook URLs): a long value with no whitespace."""
    return len(value) >= 16 and not any(ch.isspace() for ch in value)


def looks_like_a_value(text: str) -> bool:
    """Whether ``text``, given where a NAME or PATH belongs, looks like a key or a NAME=value line
    instead (so it must not be echoed): quotes, ``=`` or whitespace; or a long random-looking token."""
    if any(ch in text for ch in "=\"'{") or any(ch.isspace() for ch in text):
        return True
    if re.fullmatch(r"[0-9a-fA-F]{32,}", text):
        return True
    if re.fullmatch(r"[A-Za-z0-9_-]{20,}", text) and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        return True  # a variable name has no '-' and does not start with a digit
    return len(text) >= 32 and all(any(test(ch) for ch in text) for test in (str.isupper, str.islower, str.isdigit))


def _describe(reference: str) -> str:
    """Name a bad reference without echoing it: it might be the key itself, pasted by mistake."""
    if len(reference) > 24 or looks_like_a_value(reference):
        return "(not shown: it may be the key itself)"
    return f"'{reference}'"


def load_key(reference: str, **kwargs) -> Secret:
    """Parse a key source reference and read the key (no format check: see
    ``cauterize.providers.formats.load_leaked_key`` for the leaked key of a known provider)."""
    return KeySource.parse(reference).load(**kwargs)
