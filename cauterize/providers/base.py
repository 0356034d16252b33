"""The provider protocol, its value types and the registry.

Every provider module (``openai.py``, ...) implements ``Provider`` and registers a factory with
``@register("name")``. Nothing outside ``providers/`` names a provider: callers go through
``get_provider(name, settings)``.

Liveness is three-state: ``live``, ``dead``, ``unknown``. "Could not check" is ``unknown`` and
never reads as ``dead``.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import httpx

from cauterize.errors import InputError
from cauterize.secret import Secret

if TYPE_CHECKING:
    from cauterize.scopes import CarriedScopes


class Liveness(str, enum.Enum):
    LIVE = "live"
    DEAD = "dead"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Verdict:
    """A liveness answer and why: ``state`` is dead only on the provider's documented
    invalid-credential answer; ``reason`` names what was seen (``401 invalid_api_key``,
    ``403 permission_error``, ``timeout``...), never a key value. ``status`` is the HTTP status,
    when there was one."""

    state: Liveness
    reason: str = ""
    status: int | None = None

    @classmethod
    def live(cls, reason: str = "", status: int | None = 200) -> Verdict:
        return cls(Liveness.LIVE, reason, status)

    @classmethod
    def dead(cls, reason: str, status: int | None = None) -> Verdict:
        return cls(Liveness.DEAD, reason, status)

    @classmethod
    def unknown(cls, reason: str, status: int | None = None) -> Verdict:
        return cls(Liveness.UNKNOWN, reason, status)

    @property
    def value(self) -> str:
        return self.state.value

    def __str__(self) -> str:
        return f"{self.state.value} ({self.reason})" if self.reason else self.state.value


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
    #: the scopes the replacement was given (``()``: unrestricted), None where the provider has none
    scopes: tuple[str, ...] | None = None


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
    """What a provider client needs, resolved from the runbook and the environment.

    Fields a provider does not use stay None. A provider reads its own further environment
    variables (e.g. Azure's subscription) where a field is None."""

    admin_key: Secret | None = None
    base_url: str | None = None
    data_url: str | None = None
    project: str | None = None
    subscription: str | None = None
    resource_group: str | None = None
    account: str | None = None
    mint: str = "service-account"
    revoke: str = "default"
    service_account: str | None = None  # OpenAI: the service account a user key's replacement goes on
    confirm_timeout: float | None = None  # seconds; None: the provider's default window
    timeout: float = 10.0
    transport: httpx.BaseTransport | None = None  # the test seam: MockTransport or None for sockets
    extra: dict[str, Any] = field(default_factory=dict)


def env_name(provider: str, what: str) -> str:
    """A provider's conventional variable: ``OPENAI_ADMIN_KEY``, ``AZURE_OPENAI_BASE_URL``..."""
    return f"{provider.upper().replace('-', '_')}_{what}"


def settings_for(
    provider: str,
    config: Any = None,
    *,
    base_dir: Any = None,
    transport: httpx.BaseTransport | None = None,
    environ: dict[str, str] | None = None,
) -> ProviderSettings:
    """Settings from a runbook's ``ProviderConfig`` (or None, for the CLI's one-shot commands),
    falling back to ``<PROVIDER>_ADMIN_KEY``, ``<PROVIDER>_BASE_URL`` and ``<PROVIDER>_DATA_URL``."""
    from cauterize.secret import KeySource

    env = os.environ if environ is None else environ
    get = (lambda name: getattr(config, name, None)) if config is not None else (lambda name: None)
    admin_ref = get("admin_key")
    if admin_ref is None and env.get(env_name(provider, "ADMIN_KEY")):
        admin_ref = f"env:{env_name(provider, 'ADMIN_KEY')}"
    return ProviderSettings(
        admin_key=KeySource.parse(admin_ref).load(base_dir=base_dir) if admin_ref else None,
        base_url=get("base_url") or env.get(env_name(provider, "BASE_URL")) or None,
        data_url=get("data_url") or env.get(env_name(provider, "DATA_URL")) or None,
        project=get("project"),
        subscription=get("subscription"),
        resource_group=get("resource_group"),
        account=get("account"),
        mint=get("mint") or "service-account",
        revoke=get("revoke") or "default",
        service_account=get("service_account"),
        confirm_timeout=_seconds(get("confirm_timeout")),
        transport=transport,
    )


def _seconds(value: Any) -> float | None:
    from cauterize.when import parse_duration

    return None if value is None else parse_duration(value, "confirm_timeout")


class Provider(Protocol):
    name: ClassVar[str]

    def check(self, key: Secret) -> Verdict:
        """Ask the provider's data plane whether the key works: live, dead (only on the documented
        invalid-credential answer) or unknown, with the reason."""

    def identify(self, key: Secret) -> KeyIdentity:
        """Find the key's id and owner through the admin API."""

    def revoke(self, identity: KeyIdentity) -> RevokeResult:
        """Disable or delete the key. An already revoked key is a normal outcome."""

    def mint(self, like: KeyIdentity, name: str, scopes: CarriedScopes | None = None) -> MintedKey:
        """Create a replacement with the same reach as ``like`` (``scopes``: what intake read it carried)."""

    def usage(self, identity: KeyIdentity, start: datetime, end: datetime, bucket: str) -> Usage:
        """Usage (and cost where the provider has it) of the key over [start, end)."""

    def missing(self) -> list[str]:
        """What containment (identify, revoke) lacks here (admin credential, subscription...), found
        without any network call; [] when nothing is known to be missing (the preflight)."""

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
    _load_builtins(only=name)
    try:
        factory = _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(set(BUILTIN) | set(_REGISTRY)))
        raise InputError(f"unknown provider '{name}': expected one of {known}") from None
    return factory(settings)


#: Built-in providers: name -> module under cauterize.providers (each registers itself on import).
BUILTIN = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "google",
    "azure-openai": "azure_openai",
    "cohere": "cohere",
}


def _load_builtins(only: str | None = None) -> None:
    """Import the built-in provider modules (just ``only``'s when given: the revoke path stays lean)."""
    import importlib

    for name, module in BUILTIN.items():
        if (only is None or name == only) and name not in _REGISTRY:
            try:
                importlib.import_module(f"cauterize.providers.{module}")
            except ModuleNotFoundError as exc:
                if exc.name != f"cauterize.providers.{module}":
                    raise


#: How long a revocation may take to propagate, by provider, when the runbook does not say
#: (``providers.<name>.confirm_timeout``). Providers keep accepting a deleted key for seconds after
#: the delete returns; IAM and ARM changes are eventually consistent over minutes.
CONFIRM_WINDOWS_S: dict[str, float] = {
    "openai": 90.0,
    "anthropic": 90.0,
    "cohere": 120.0,
    "google": 300.0,
    "azure-openai": 300.0,
}
DEFAULT_CONFIRM_WINDOW_S = 120.0
#: first wait between two liveness checks; it doubles up to the cap
CONFIRM_FIRST_WAIT_S, CONFIRM_MAX_WAIT_S = 0.5, 3.0


def confirm_window(provider: str, configured: float | None = None) -> float:
    """The confirmation window for ``provider``: the runbook's, else the provider's default."""
    return configured if configured is not None else CONFIRM_WINDOWS_S.get(provider, DEFAULT_CONFIRM_WINDOW_S)


@dataclass(frozen=True)
class Confirmation:
    """The outcome of polling a key until it answers as wanted, or the window runs out."""

    verdict: Verdict  # the last answer
    want: Liveness
    seconds: float  # from the first check to the last answer
    attempts: int
    window_s: float

    @property
    def confirmed(self) -> bool:
        return self.verdict.state is self.want

    def to_dict(self) -> dict[str, Any]:
        return {
            "want": self.want.value,
            "state": self.verdict.value,
            "reason": self.verdict.reason,
            "seconds": round(self.seconds, 3),
            "attempts": self.attempts,
            "window_s": self.window_s,
        }


def confirm_liveness(
    check: Callable[[], Verdict],
    *,
    want: Liveness,
    window_s: float,
    progress: Callable[[str], None] | None = None,
    first_wait: float = CONFIRM_FIRST_WAIT_S,
    max_wait: float = CONFIRM_MAX_WAIT_S,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Confirmation:
    """Poll ``check`` with backoff until it answers ``want`` or ``window_s`` has passed.

    Revocations propagate: a provider may accept a deleted key for seconds (or, for IAM, minutes)
    after the delete returned, so giving up early would call a correct revocation a failure. The
    last check happens at the end of the window; ``progress`` hears one line per unconfirmed answer."""
    import time

    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    start = clock()
    deadline = start + max(window_s, 0.0)
    wait, attempts = first_wait, 0
    while True:
        verdict = check()
        attempts += 1
        now = clock()
        if verdict.state is want or now >= deadline:
            return Confirmation(verdict, want, now - start, attempts, window_s)
        pause = min(wait, max_wait, deadline - now)
        if progress is not None:
            progress(
                f"not {want.value} yet after {now - start:.1f} s ({verdict}); checking again in {pause:.1f} s, "
                f"for up to {window_s:.0f} s"
            )
        sleep(pause)
        wait *= 2
