"""LLM providers behind one protocol (see ``base.py``)."""

from cauterize.providers.base import (
    KeyIdentity,
    Liveness,
    MintedKey,
    Provider,
    ProviderSettings,
    RevokeResult,
    Usage,
    UsageBucket,
    Verdict,
    get_provider,
    provider_names,
    register,
)

__all__ = [
    "KeyIdentity",
    "Liveness",
    "MintedKey",
    "Provider",
    "ProviderSettings",
    "RevokeResult",
    "Usage",
    "UsageBucket",
    "Verdict",
    "get_provider",
    "provider_names",
    "register",
]
