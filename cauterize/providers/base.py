"""The provider protocol, its value types and the registry.

Every provider module (``openai.py``, ...) implements ``Provider`` and registers a factory with
``@register("name")``. Nothing outside ``providers/`` names a provider: callers go through
``get_provider(name, settings)``.

Liveness is three-state: ``live``, ``dead``, ``unknown``. "Could not check" is ``unknown`` and
never reads as ``dead``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

import httpx

from cauterize.errors import InputError
from cauterize.secret import Secret


class Liveness(str, enum.Enum):
    LIVE = "live"
    DEAD = "dead"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class KeyIdentity:
    """Who a key is at the provider. Public data only: never the value."""

    provider: str
    key_id: str | None
    project: str | None = None
    owner_type: str | None = None  # "user" | "service_account" | "admin" | ...
    owner_id: str | None = None
    name: str | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["notes"] = list(self.notes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyIdentity:
        return cls(**{**data, "notes": tuple(data.get("notes") or ())})


@dataclass(frozen=True)
class RevokeResult:
    identity: KeyIdentity
    action: str  # what was done, e.g. "deleted-key", "deleted-service-account", "already-revoked"
    action_items: tuple[str, ...] = ()


@dataclass(frozen=True)
class MintedKey:
    """A freshly minted key. Holds the value: never serialise it, write it to a store at once."""

    secret: Secret
    identity: KeyIdentity


@dataclass(frozen=True)
class UsageBucket:
    start: datetime
    end: datetime
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    cost_usd: float | None = None


@dataclass(frozen=True)
class Usage:
    buckets: tuple[UsageBucket, ...]
    limitations: tuple[str, ...] = ()


@dataclass
class ProviderSettings:
    """What a provider client needs, resolved from the runbook and the environment."""

    admin_key: Secret | None = None
    base_url: str | None = None
    project: str | None = None
    mint: str = "service-account"
    timeout: float = 10.0
    transport: httpx.BaseTransport | None = None  # the test seam: MockTransport or None for sockets
    extra: dict[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    name: ClassVar[str]

    def check(self, key: Secret) -> Liveness:
        """Ask the provider's data plane whether the key works."""

    def identify(self, key: Secret) -> KeyIdentity:
        """Find the key's id and owner through the admin API."""

    def revoke(self, identity: KeyIdentity) -> RevokeResult:
        """Disable or delete the key. An already revoked key is a normal outcome."""

    def mint(self, like: KeyIdentity, name: str) -> MintedKey:
        """Create a replacement with the same reach as ``like``."""

    def usage(self, identity: KeyIdentity, start: datetime, end: datetime, bucket: str) -> Usage:
        """Usage (and cost where the provider has it) of the key over [start, end)."""

    def close(self) -> None: ...


ProviderFactory = Callable[[ProviderSettings], Provider]
_REGISTRY: dict[str, ProviderFactory] = {}


def register(name: str) -> Callable[[ProviderFactory], ProviderFactory]:
    def decorate(factory: ProviderFactory) -> ProviderFactory:
        _REGISTRY[name] = factory
        return factory

    return decorate


def provider_names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get_provider(name: str, settings: ProviderSettings) -> Provider:
    _load_builtins()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown provider '{name}': expected one of {', '.join(sorted(_REGISTRY))}") from None
    return factory(settings)


def _load_builtins() -> None:
    if not _REGISTRY:
        from cauterize.providers import openai  # noqa: F401  (registers itself)
