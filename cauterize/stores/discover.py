"""Which secrets hold the leaked key: the runbook's stores, and every secret of the AWS account
(region) and Vault mount the responder can reach. Stores are compared by fingerprint only."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from cauterize.errors import CauterizeError
from cauterize.secret import Secret
from cauterize.stores.base import open_store, store_module


@dataclass
class Discovery:
    fingerprint: str
    hits: list[str] = field(default_factory=list)
    scanned: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "hits": self.hits, "scanned": self.scanned, "errors": self.errors}


def discover(secret: Secret, loaded: Any = None, environ: dict[str, str] | None = None) -> Discovery:
    """Read each runbook store, then sweep the services those stores (or the environment) point at."""
    env = os.environ if environ is None else environ
    result = Discovery(secret.fingerprint)
    sweeps: dict[tuple[str, tuple], dict[str, Any]] = {}
    for config in (loaded.runbook.stores if loaded is not None else []):
        try:
            store = open_store(config, loaded)
            result.scanned.append(store.describe())
            current = store.read()
        except CauterizeError as exc:
            result.errors.append(exc.one_line())
            continue
        if current is not None and current.fingerprint == secret.fingerprint:
            result.hits.append(store.describe())
        if config.type == "aws-secrets-manager":
            sweeps[("aws-secrets-manager", (config.region,))] = {"region": config.region}
        elif config.type == "vault-kv2":
            sweeps[("vault-kv2", (config.mount,))] = {"mount": config.mount}
        elif config.type == "gcp-secret-manager":
            sweeps[("gcp-secret-manager", (config.project,))] = {"project": config.project}
        elif config.type == "azure-key-vault":
            sweeps[("azure-key-vault", (config.vault_url,))] = {"vault_url": config.vault_url}
    if loaded is None:
        if any(env.get(name) for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_PROFILE")):
            sweeps[("aws-secrets-manager", (None,))] = {"region": None}
        if env.get("VAULT_ADDR"):
            sweeps[("vault-kv2", ("secret",))] = {"mount": "secret"}
    prefixes = {"aws-secrets-manager": "aws-sm:", "vault-kv2": "vault:", "gcp-secret-manager": "", "azure-key-vault": ""}
    for (kind, _), kwargs in sweeps.items():
        label = f"{kind} " + " ".join(f"{k}={v}" for k, v in kwargs.items() if v)
        result.scanned.append(f"every secret of {label.strip()}")
        try:
            found = store_module(kind).scan(secret, **kwargs)
        except CauterizeError as exc:
            result.errors.append(exc.one_line())
            continue
        result.hits.extend(prefixes[kind] + hit for hit in found if prefixes[kind] + hit not in result.hits)
    return result
