"""The documented shapes of each provider's keys (provider-apis.md 1.8, 2.5, 3.4, 4, 5).

A leaked key is checked against its provider's shapes before anything is sent: a dotenv line, a
quoted value or a truncated paste fails here with exit 2 instead of reaching the provider, whose 401
would read as "dead" for a live key. Without a provider (locate, purge, stores scan) a key must fit
some provider's shape. Messages name the source and the expected shape, and describe the value only
by facts that reveal none of it (its length, a documented prefix or marker it has or lacks).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from cauterize.errors import KeySourceError
from cauterize.secret import KeySource, Secret

_URLSAFE = "[A-Za-z0-9_-]"
_ALNUM = "[A-Za-z0-9]"


@dataclass(frozen=True)
class KeyShape:
    """One documented key shape: a full-match regex, or a test for documents (Google's JSON)."""

    name: str
    description: str
    pattern: str | None = None
    test: Callable[[str], bool] | None = None
    distinctive: bool = True  # False: any random token of that length fits (32 hex, 40 alphanumerics)

    def fits(self, value: str) -> bool:
        if self.pattern is not None:
            return re.fullmatch(self.pattern, value) is not None
        return self.test is not None and self.test(value)


@dataclass(frozen=True)
class KeyFormat:
    """A provider's key shapes, and the public landmarks (prefixes, markers) a message may name."""

    label: str
    expected: str
    short: str  # the same, in a few characters, for the list of every provider's shapes
    shapes: tuple[KeyShape, ...]
    prefixes: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()
    alphabet: str = ""  # a character class every character of a regex-shaped key belongs to
    suffix: str = ""  # what every key ends with

    @property
    def article(self) -> str:
        return "an" if self.label[0] in "AEIOU" else "a"

    def fitting(self, value: str) -> KeyShape | None:
        return next((shape for shape in self.shapes if shape.fits(value)), None)


def _is_service_account_json(value: str) -> bool:
    """A Google service-account key file: a JSON object of type service_account with its key fields."""
    if not value.startswith("{"):
        return False
    try:
        data = json.loads(value)
    except ValueError:
        return False
    return (
        isinstance(data, dict)
        and data.get("type") == "service_account"
        and all(isinstance(data.get(name), str) and data[name].strip()
                for name in ("private_key_id", "client_email", "private_key"))
    )


_HALF = f"(?:{_URLSAFE}{{74}}|{_URLSAFE}{{58}})"

FORMATS: dict[str, KeyFormat] = {
    "openai": KeyFormat(
        "OpenAI",
        "sk-proj-, sk-svcacct-, sk-service-, sk-admin-, sk-None- or legacy sk- followed by [A-Za-z0-9_-] "
        "around the T3BlbkFJ marker",
        "sk-...T3BlbkFJ...",
        (
            # gitleaks openai-api-key: 74 or 58 characters either side of the marker
            KeyShape("project, service-account or admin key",
                     "sk-proj-/sk-svcacct-/sk-admin- + 74 or 58 of [A-Za-z0-9_-] + T3BlbkFJ + 74 or 58 more",
                     f"sk-(?:proj|svcacct|admin)-{_HALF}T3BlbkFJ{_HALF}"),
            # trufflehog accepts sk-service-; sk-None- per kingfisher: lengths not documented
            KeyShape("service-account or unscoped key",
                     "sk-service-/sk-None- + 20 or more of [A-Za-z0-9_-] + T3BlbkFJ + 20 or more",
                     f"sk-(?:service|None)-{_URLSAFE}{{20,}}T3BlbkFJ{_URLSAFE}{{20,}}"),
            # legacy user keys, and early project keys named sk-<name>-
            KeyShape("legacy key", "sk- + 20 letters/digits + T3BlbkFJ + 20 letters/digits",
                     f"sk-(?:{_URLSAFE}+-)?{_ALNUM}{{20}}T3BlbkFJ{_ALNUM}{{20}}"),
        ),
        prefixes=("sk-proj-", "sk-svcacct-", "sk-service-", "sk-admin-", "sk-None-", "sk-"),
        markers=("T3BlbkFJ",),
        alphabet=_URLSAFE,
    ),
    "anthropic": KeyFormat(
        "Anthropic",
        "sk-ant-api03- or sk-ant-admin01- + 93 of [A-Za-z0-9_-] + AA (other sk-ant-<kind><2 digits>- versions: "
        "32 or more, then AA)",
        "sk-ant-...AA",
        (
            KeyShape("API or admin key", "sk-ant-api03-/sk-ant-admin01- + 93 of [A-Za-z0-9_-] + AA",
                     f"sk-ant-(?:api03|admin01)-{_URLSAFE}{{93}}AA"),
            KeyShape("key of another version", "sk-ant-<kind><2 digits>- + 32 or more of [A-Za-z0-9_-] + AA",
                     f"sk-ant-(?!api03-|admin01-)[a-z]+[0-9]{{2}}-{_URLSAFE}{{32,}}AA"),
        ),
        prefixes=("sk-ant-api03-", "sk-ant-admin01-", "sk-ant-"),
        alphabet=_URLSAFE,
        suffix="AA",
    ),
    "google": KeyFormat(
        "Google",
        "a service-account key file (JSON with type service_account, private_key_id, client_email, private_key) "
        "or an API key (AIza + 35 of [A-Za-z0-9_-])",
        "AIza... or a service-account JSON",
        (
            KeyShape("service-account key file",
                     'JSON: "type": "service_account", private_key_id, client_email, private_key',
                     test=_is_service_account_json),
            KeyShape("API key", "AIza + 35 of [A-Za-z0-9_-]", f"AIza{_URLSAFE}{{35}}"),
        ),
        prefixes=("AIza",),
    ),
    "azure-openai": KeyFormat(
        "Azure OpenAI",
        "32 hexadecimal characters, or 84 letters/digits with the JQQJ99 marker after the first 52",
        "32 hex or 84 characters with JQQJ99",
        (
            KeyShape("legacy account key", "32 hexadecimal characters", "[0-9a-fA-F]{32}", distinctive=False),
            # 52 random, JQQJ99 (Microsoft's annotated-key signature; JQQJ9D/JQQJ9H also exist), 26 more
            KeyShape("account key", "52 letters/digits + JQQJ99 + 26 letters/digits",
                     f"{_ALNUM}{{52}}JQQJ9[9DH]{_ALNUM}{{26}}"),
        ),
        markers=("JQQJ99",),
        alphabet=_ALNUM,
    ),
    "cohere": KeyFormat(
        "Cohere",
        "40 letters/digits",
        "40 letters/digits",
        (KeyShape("API key", "40 letters/digits", f"{_ALNUM}{{40}}", distinctive=False),),
        alphabet=_ALNUM,
    ),
}


def known(provider: str | None) -> bool:
    """Whether ``provider`` has documented key shapes here (an unknown one is not checked)."""
    return provider in FORMATS


def fitting(value: str) -> list[tuple[str, KeyShape]]:
    """Every (provider, shape) the value fits."""
    found = []
    for name, key_format in FORMATS.items():
        shape = key_format.fitting(value)
        if shape is not None:
            found.append((name, shape))
    return found


def fits(value: str, provider: str | None = None) -> bool:
    """Whether the value has the shape of a key of ``provider`` (of any provider when None)."""
    if provider is None:
        return bool(fitting(value))
    key_format = FORMATS.get(provider)
    return key_format is None or key_format.fitting(value) is not None


def key_lines(provider: str | None) -> Callable[[str], bool]:
    """Which lines of a multi-line source (a whole .env) count as keys: those that fit ``provider``,
    and those that fit a distinctive shape of another provider (so that two keys are never picked
    among); without a known provider, those that fit any shape."""
    if provider not in FORMATS:
        return fits

    def is_key(value: str) -> bool:
        return fits(value, provider) or any(shape.distinctive for _, shape in fitting(value))

    return is_key


def expected(provider: str | None) -> str:
    """The expected shape in words, for messages."""
    if provider is None:
        return "a key of a known provider (" + "; ".join(f"{f.label} {f.short}" for f in FORMATS.values()) + ")"
    key_format = FORMATS.get(provider)
    return f"{key_format.article} {key_format.label} key ({key_format.expected})" if key_format else "a key"


def check_key(secret: Secret, provider: str | None, where: str) -> Secret:
    """The secret, if it fits ``provider``'s shapes (any provider's when None); else exit 2 naming
    the source, the expected shape and what is wrong, never any part of the value."""
    value = secret.reveal()
    if fits(value, provider):
        return secret
    raise KeySourceError(
        f"key source {where} does not hold {expected(provider)}: {_diagnosis(value, provider)}",
        remediation="Give a source that holds exactly the leaked key, as the provider issued it.",
    )


def _diagnosis(value: str, provider: str | None) -> str:
    """What is wrong with the value, in facts that reveal none of it."""
    others = [(name, shape) for name, shape in fitting(value) if name != provider]
    if others:
        name, shape = others[0]
        return f"it has the shape of {FORMATS[name].article} {FORMATS[name].label} {shape.name} (--provider {name}?)"
    if re.match(r"(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*\s*[=:]", value):
        return "it looks like a NAME=value line that could not be parsed"
    if value[:1] in "\"'":
        return "it is wrapped in quotes that do not close"
    if any(ch.isspace() for ch in value):
        return f"it is {len(value)} characters and holds whitespace"
    if value.startswith("{"):
        return "it is a JSON document but not a Google service-account key file"
    facts = [f"it is {len(value)} characters"]
    key_format = FORMATS.get(provider) if provider else _by_prefix(value)
    if key_format is not None:
        if key_format.prefixes:
            prefix = next((p for p in key_format.prefixes if value.startswith(p)), None)
            facts.append(f"starts with {prefix}" if prefix else "starts with none of " + ", ".join(key_format.prefixes))
        for marker in key_format.markers:
            facts.append(f"has the {marker} marker" if marker in value else f"has no {marker} marker")
        if key_format.alphabet and not re.fullmatch(f"{key_format.alphabet}+", value):
            facts.append(f"holds characters outside {key_format.alphabet}")
        if key_format.suffix and not value.endswith(key_format.suffix):
            facts.append(f"does not end in {key_format.suffix}")
    return ", ".join(facts[:-1]) + (" and " if len(facts) > 1 else "") + facts[-1]


def _by_prefix(value: str) -> KeyFormat | None:
    """The format whose documented prefix the value starts with (the longest such prefix wins)."""
    found = [(len(p), f) for f in FORMATS.values() for p in f.prefixes if value.startswith(p)]
    return max(found, key=lambda item: item[0])[1] if found else None


def load_leaked_key(reference: str, provider: str | None, **kwargs) -> Secret:
    """Read the leaked key from its source reference with the one key-source parser, picking the
    key line of a .env by the key shapes, then check it against ``provider``'s shapes (any known
    provider's when None; none for a provider this table does not know). ``kwargs`` go to
    ``KeySource.load`` (``stdin``, ``base_dir``)."""
    source = KeySource.parse(reference)
    key = source.load(fits=key_lines(provider), expected=expected(provider), **kwargs)
    return check_key(key, provider, str(source))
