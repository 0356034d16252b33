"""Secret stores behind one protocol (see ``base.py``)."""

from __future__ import annotations

from cauterize.errors import KeySourceError
from cauterize.stores.base import SecretStore, StoreWrite, open_store, readiness, register

__all__ = ["SecretStore", "StoreWrite", "load_secret_reference", "open_store", "readiness", "register"]


#: Key source scheme -> the store type whose module resolves it with ``resolve_reference(target)``.
REFERENCE_SCHEMES = {"aws-sm": "aws-secrets-manager", "vault": "vault-kv2", "prefect-secret": "prefect-secret"}


def load_secret_reference(source):  # source: cauterize.secret.KeySource
    """Resolve a store-backed key source: ``aws-sm:ID[#FIELD]``, ``vault:MOUNT/PATH#FIELD``,
    ``prefect-secret:BLOCK``, through the store module that knows the service."""
    from cauterize.stores.base import store_module

    kind = REFERENCE_SCHEMES.get(source.scheme)
    try:
        module = store_module(kind) if kind else None
    except ModuleNotFoundError:
        module = None
    if module is None or not hasattr(module, "resolve_reference"):
        raise KeySourceError(
            f"key source {source.scheme}: is not supported by this version of cauterize",
            remediation="Use env:VAR, file:PATH or stdin:.",
        )
    return module.resolve_reference(source.target)
