"""Secret stores behind one protocol (see ``base.py``)."""

from __future__ import annotations

from cauterize.errors import KeySourceError
from cauterize.stores.base import SecretStore, StoreWrite, open_store, register

__all__ = ["SecretStore", "StoreWrite", "load_secret_reference", "open_store", "register"]


def load_secret_reference(source):  # source: cauterize.secret.KeySource
    """Resolve a store-backed key source (``vault:``, ``aws-sm:``, ``prefect-secret:``)."""
    raise KeySourceError(
        f"key source {source.scheme}: is not supported yet by this version of cauterize",
        remediation="Use env:VAR, file:PATH or stdin: for now.",
    )
