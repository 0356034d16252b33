"""The secret-store protocol and its registry.

A store is where an application reads its key from. Each store module implements ``SecretStore``
and registers a factory with ``@register("type")`` for the runbook's store ``type``.
Nothing outside ``stores/`` names a store type.

A store may also say, before anything is read or written, what keeps it from working here:
``missing()`` (blocking: each a line naming what is missing and how to provide it) and ``notes()``
(advisory: may work, but could not be checked without a call). Both look at the environment and
local files only: no network, no secret value read. ``readiness(store)`` asks for both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

from cauterize.errors import InputError, StoreError
from cauterize.secret import Secret


@dataclass
class StoreWrite:
    """What a write did: a public version label, where the old value still lingers in the store's
    history (``AWSPREVIOUS``, older Vault versions...), and an undo for rollback (in memory only)."""

    store: str
    version: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    lingering: list[str] = field(default_factory=list)
    undo: Callable[[], None] | None = field(default=None, repr=False)


class SecretStore(Protocol):
    kind: ClassVar[str]

    def describe(self) -> str:
        """A human name for the secret, e.g. ``dotenv /srv/app/.env OPENAI_API_KEY``: never a value."""

    def read(self) -> Secret | None:
        """The current value, or None when the store does not hold this secret yet."""

    def write(self, value: Secret) -> StoreWrite:
        """Make ``value`` the current version, with the store's native versioning."""


_Method = TypeVar("_Method", bound=Callable[..., Any])
#: What a client library raises when a store's API answers 200 with something that is not its JSON
#: (a proxy's page, a truncated body): botocore and hvac hand the body back half-parsed, the
#: Kubernetes and Prefect clients raise json errors.
_UNREADABLE = (KeyError, TypeError, ValueError, AttributeError)


def answers_checked(method: _Method) -> _Method:
    """A store's ``read``/``write`` whose API answered something unreadable ends in a StoreError
    naming the store (no chained cause: a half-parsed body could hold anything)."""

    @functools.wraps(method)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except _UNREADABLE as exc:
            raise StoreError(
                f"{self.describe()}: {method.__name__} got an answer it cannot read ({type(exc).__name__})",
                remediation="Check the store's endpoint (a proxy or gateway in between answering for it?), then rerun.",
                retryable=True,
            ) from None

    return checked  # type: ignore[return-value]


def readiness(store: Any) -> tuple[list[str], list[str]]:
    """``(missing, notes)`` of a store: what blocks it here, and what could not be checked locally."""
    missing, notes = getattr(store, "missing", None), getattr(store, "notes", None)
    return (list(missing()) if missing else [], list(notes()) if notes else [])


StoreFactory = Callable[[Any, Any], SecretStore]  # (store config model, LoadedRunbook) -> store
_REGISTRY: dict[str, StoreFactory] = {}


def register(kind: str) -> Callable[[StoreFactory], StoreFactory]:
    def decorate(factory: StoreFactory) -> StoreFactory:
        _REGISTRY[kind] = factory
        return factory

    return decorate


def open_store(config: Any, loaded: Any) -> SecretStore:
    _load_builtins(only=config.type)
    try:
        factory = _REGISTRY[config.type]
    except KeyError:
        raise InputError(f"store type '{config.type}' is not supported yet by this version of cauterize") from None
    return factory(config, loaded)


#: Built-in stores: runbook type -> module under cauterize.stores (each registers itself on import).
BUILTIN = {
    "dotenv": "dotenv",
    "aws-secrets-manager": "aws_secrets_manager",
    "vault-kv2": "vault",
    "sops": "sops",
    "github-actions": "github_actions",
    "kubernetes": "kubernetes",
    "prefect-secret": "prefect_secret",
    "gcp-secret-manager": "gcp_secret_manager",
    "azure-key-vault": "azure_key_vault",
}


def store_module(kind: str):
    """The module of a built-in store type (imported on demand)."""
    import importlib

    return importlib.import_module(f"cauterize.stores.{BUILTIN[kind]}")


def _load_builtins(only: str | None = None) -> None:
    for kind, module in BUILTIN.items():
        if (only is None or kind == only) and kind not in _REGISTRY:
            try:
                store_module(kind)
            except ModuleNotFoundError as exc:
                if exc.name != f"cauterize.stores.{module}":
                    raise
