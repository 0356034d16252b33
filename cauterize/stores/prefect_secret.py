"""Prefect ``Secret`` blocks, read and written through Prefect's REST API with httpx.

The core never imports Prefect, so this module speaks the server's API (Prefect 3) directly:

    GET   /block_types/slug/secret/block_documents/name/{name}?include_secrets=true
                                                     get_document()     the document, None on 404
    PATCH /block_documents/{id}                      update_value()     {"data": {"value": V},
                                                                         "merge_existing_data": false}: 204
    GET   /block_types/slug/secret                   block_type_id()
    POST  /block_schemas/filter                      block_schema_id()  the newest schema of that type
    POST  /block_documents/                          create_document()  {name, data, block_schema_id,
                                                                         block_type_id}: 201
    DELETE /block_documents/{id}                     delete_document()  204 (undo of a creation)

``write`` is the composite: get_document, then update_value (or, for a block that does not exist
yet, block_type_id, block_schema_id and create_document), then get_document again to read back.
``undo`` puts the previous ``data`` back, or deletes the document the write created. Prefect keeps
no history of block data, so nothing lingers. ``version`` is the document's ``updated`` stamp.

Endpoint and credentials follow Prefect's own settings: ``PREFECT_API_URL`` (``http://HOST:4200/api``,
or a Prefect Cloud workspace URL), ``PREFECT_API_KEY`` (Cloud, sent as a bearer token) or
``PREFECT_API_AUTH_STRING`` (a self-hosted server with basic auth). When ``PREFECT_API_URL`` is
not in the environment, the active profile of ``PREFECT_HOME/profiles.toml`` is read. 429 and 5xx
are retried by ``cauterize.http.send``; every failure becomes a ``StoreError`` in ``_error``, and no
message ever quotes a request body (Prefect's 422 answers echo it, value included).
``missing()`` checks those settings as resolved at construction, without a call.
"""

from __future__ import annotations

import base64
import os
import time
import tomllib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import httpx

from cauterize.errors import KeySourceError, ProviderError, StoreError
from cauterize.http import DEFAULT_POLICY, RetryPolicy, new_client, send
from cauterize.secret import Secret
from cauterize.stores.base import StoreWrite, answers_checked, register

_UNAVAILABLE = "The Prefect API (PREFECT_API_URL) is throttling or unreachable: check the server, then rerun."

BLOCK_TYPE = "secret"
CLOUD_API_HOST = "api.prefect.cloud"
_SETTINGS = ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING")
_CREDENTIALS = "Set PREFECT_API_KEY (Prefect Cloud) or PREFECT_API_AUTH_STRING (a self-hosted server with basic auth)."
_REGISTER = (
    "Check PREFECT_API_URL; a server registers the Secret block type when it starts "
    "(`prefect block register -m prefect.blocks.system` does it by hand)."
)


class PrefectSecretStore:
    kind = "prefect-secret"

    def __init__(
        self,
        block: str,
        *,
        api_url: str | None = None,
        api_key: str | None = None,
        auth_string: str | None = None,
        transport: httpx.BaseTransport | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.block = block
        settings = prefect_settings()
        self.api_url = api_url or settings.get("PREFECT_API_URL")
        self._api_key = api_key or settings.get("PREFECT_API_KEY")
        self._auth_string = auth_string or settings.get("PREFECT_API_AUTH_STRING")
        self._transport, self.policy, self.sleep = transport, policy, sleep
        self._client: httpx.Client | None = None

    def describe(self) -> str:
        return f"prefect-secret {self.block}"

    def missing(self) -> list[str]:
        """No API URL (environment or active profile), or Prefect Cloud without an API key; no call made."""
        if not self.api_url:
            return [(f"{self.describe()}: PREFECT_API_URL is not set and no Prefect profile sets it: point it at "
                    "the Prefect server or Cloud workspace that holds the block")]
        if urlparse(self.api_url).hostname == CLOUD_API_HOST and not self._api_key:
            return [(f"{self.describe()}: PREFECT_API_URL is a Prefect Cloud workspace but PREFECT_API_KEY is not set: "
                    "set it (environment or profile)")]
        return []

    @answers_checked
    def read(self) -> Secret | None:
        document = self.get_document()
        return None if document is None else self._value_of(document)

    @answers_checked
    def write(self, value: Secret) -> StoreWrite:
        before = self.get_document()
        if before is None:
            created = self.create_document({"value": value.reveal()})
            undo = partial(self.delete_document, created["id"])
        else:
            self.update_value(before["id"], {"value": value.reveal()})
            undo = partial(self.update_value, before["id"], dict(before.get("data") or {}))
        after = self.get_document()
        if after is None or self._value_of(after) != value:
            raise StoreError(f"{self.describe()}: read-back after the write does not hold the new key")
        return StoreWrite(
            store=self.describe(),
            version=str(after.get("updated")),
            details={"block": self.block, "block_document_id": after["id"], "created": before is None},
            undo=undo,
        )

    # ---- one method per endpoint ---------------------------------------------------------------

    def get_document(self) -> dict[str, Any] | None:
        """``GET /block_types/slug/secret/block_documents/name/{name}?include_secrets=true``; None on 404."""
        path = f"block_types/slug/{BLOCK_TYPE}/block_documents/name/{quote(self.block, safe='')}"
        return self._call("GET", path, "read the block", missing_ok=True, params={"include_secrets": "true"})

    def update_value(self, document_id: str, data: dict[str, Any]) -> None:
        """``PATCH /block_documents/{id}`` replacing ``data`` whole: 204."""
        body = {"data": data, "merge_existing_data": False}
        self._call("PATCH", f"block_documents/{document_id}", "update the block", json=body)

    def block_type_id(self) -> str:
        """``GET /block_types/slug/secret``: the id of Prefect's Secret block type."""
        return self._call("GET", f"block_types/slug/{BLOCK_TYPE}", "find the Secret block type")["id"]

    def block_schema_id(self, block_type_id: str) -> str:
        """``POST /block_schemas/filter``: the newest schema of the block type."""
        body = {"block_schemas": {"block_type_id": {"any_": [block_type_id]}}, "limit": 1}
        schemas = self._call("POST", "block_schemas/filter", "find the Secret block schema", json=body)
        if not schemas:
            raise StoreError(f"{self.describe()}: the server has no schema for Secret blocks", remediation=_REGISTER)
        return schemas[0]["id"]

    def create_document(self, data: dict[str, Any]) -> dict[str, Any]:
        """``POST /block_documents/`` (type and schema looked up first): 201, the new document."""
        type_id = self.block_type_id()
        body = {"name": self.block, "data": data, "block_type_id": type_id}
        body["block_schema_id"] = self.block_schema_id(type_id)
        return self._call("POST", "block_documents/", "create the block", json=body)

    def delete_document(self, document_id: str) -> None:
        """``DELETE /block_documents/{id}``: 204."""
        self._call("DELETE", f"block_documents/{document_id}", "delete the block")

    # ---- plumbing --------------------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            if not self.api_url:
                raise StoreError(
                    f"{self.describe()}: PREFECT_API_URL is not set and no Prefect profile sets it",
                    remediation="Point PREFECT_API_URL at the Prefect server or Cloud workspace that holds the block.",
                )
            headers = {}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            elif self._auth_string:
                headers["Authorization"] = "Basic " + base64.b64encode(self._auth_string.encode()).decode()
            self._client = new_client(self.api_url, headers=headers, transport=self._transport)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _call(self, method: str, path: str, what: str, *, missing_ok: bool = False, **kwargs: Any) -> Any:
        """One request (``send`` retries 429/5xx): the JSON answer, None for 204 (or 404 if ``missing_ok``)."""
        try:
            options = {"policy": self.policy, "sleep": self.sleep, **kwargs}
            response = send(self.client, method, path, what=f"{self.describe()}: {what}", **options)
        except ProviderError as exc:
            raise StoreError(exc.message, remediation=_UNAVAILABLE, retryable=exc.retryable) from exc
        if response.status_code in (200, 201):
            return response.json()
        if response.status_code == 204 or (missing_ok and response.status_code == 404):
            return None
        raise self._error(response, what)

    def _error(self, response: httpx.Response, what: str) -> StoreError:
        """The one translation of Prefect's error answers into ``StoreError`` (never quoting a body)."""
        try:
            body = response.json()
        except ValueError:
            body = {}
        said = body.get("detail") if isinstance(body, dict) else None
        said = said if isinstance(said, str) else (body.get("exception_message") if isinstance(body, dict) else None)
        text = f"{self.describe()}: cannot {what}: Prefect answered {response.status_code}"
        text += f" ({' '.join(str(said).split())[:200]})" if isinstance(said, str) and said else ""
        if response.status_code in (401, 403):
            return StoreError(text, remediation=_CREDENTIALS)
        if response.status_code == 404:
            return StoreError(text, remediation=_REGISTER)
        return StoreError(text)

    def _value_of(self, document: dict[str, Any]) -> Secret | None:
        value = (document.get("data") or {}).get("value")
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise StoreError(f"{self.describe()}: the block holds a JSON {type(value).__name__}, not one key")
        try:
            return Secret(value)
        except KeySourceError:
            raise StoreError(f"{self.describe()}: the block does not hold one key") from None


def prefect_settings() -> dict[str, str]:
    """``PREFECT_API_URL``, ``PREFECT_API_KEY``, ``PREFECT_API_AUTH_STRING`` from the environment, else
    from the active profile (``PREFECT_PROFILE`` or ``active``) of ``PREFECT_HOME/profiles.toml``."""
    found = {name: os.environ[name] for name in _SETTINGS if os.environ.get(name)}
    if "PREFECT_API_URL" in found:
        return found
    home = Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        profiles = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return found
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active") or ""
    profile = (profiles.get("profiles") or {}).get(active) or {}
    return {**{name: str(profile[name]) for name in _SETTINGS if profile.get(name)}, **found}


def resolve_reference(block_name: str) -> Secret:
    """The key held by the Prefect Secret block ``block_name`` (key source ``prefect-secret:BLOCK``)."""
    store = PrefectSecretStore(block_name)
    try:
        value = store.read()
    finally:
        store.close()
    if value is None:
        raise KeySourceError(
            f"key source prefect-secret:{block_name}: no Secret block of that name holds a value at {store.api_url}",
            remediation="Check the block name (`prefect block ls`) and PREFECT_API_URL.",
        )
    return value


@register("prefect-secret")
def _from_runbook(config, loaded) -> PrefectSecretStore:
    return PrefectSecretStore(config.block)


__all__ = ["PrefectSecretStore", "prefect_settings", "resolve_reference"]
