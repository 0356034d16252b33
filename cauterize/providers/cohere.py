"""Cohere: liveness and identity through ``POST /v1/check-api-key``; revoking and minting are manual.

Cohere documents no API to list, create or revoke keys, and none for usage per key (provider-apis.md
5): keys live in the dashboard (dashboard.cohere.com/api-keys) and the CLI (``co key create|list|revoke``).
There is no admin credential either. So ``check`` and ``identify`` ask ``check-api-key`` with the
leaked key itself, ``revoke`` and ``mint`` raise ``ManualStepRequired`` with the steps for a
person (the flow then waits, and a rerun confirms with ``check``), and ``usage`` says there is
nothing to read.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import httpx

from cauterize.errors import (
    InputError,
    KeyNotFound,
    ManualStepRequired,
    ProviderRejected,
)
from cauterize.http import DEFAULT_POLICY, RetryPolicy, new_client, send
from cauterize.providers.base import (
    KeyIdentity,
    MintedKey,
    ProviderSettings,
    RevokeResult,
    Usage,
    Verdict,
    register,
)
from cauterize.providers.liveness import ask, json_body, refused
from cauterize.secret import Secret, scrub

if TYPE_CHECKING:
    from cauterize.scopes import CarriedScopes

DEFAULT_BASE_URL = "https://api.cohere.com"
DASHBOARD = "https://dashboard.cohere.com/api-keys"
NO_USAGE_API = "Cohere has no usage API per key"
_KEYLIKE = re.compile(r"\b[A-Za-z0-9]{40}\b")


@register("cohere")
class CohereProvider:
    """The ``cohere`` provider: ``CohereProvider(ProviderSettings(base_url=...))``; it needs no admin key."""

    name = "cohere"

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings
        self._base_url = settings.base_url or DEFAULT_BASE_URL
        self._policy, self._sleep = policy, sleep
        self._client = new_client(self._base_url, timeout=settings.timeout, transport=settings.transport)

    def __repr__(self) -> str:
        return f"CohereProvider(base_url={self._base_url!r})"

    def missing(self) -> list[str]:
        """What containment (identify, revoke) lacks here, found without a network call: nothing (a person revokes Cohere keys in the dashboard)."""
        return []

    def close(self) -> None:
        self._client.close()

    def check_api_key(self, key: Secret) -> httpx.Response:
        """``POST /v1/check-api-key`` with ``Authorization: Bearer <key>``: 200 ``{valid, organization_id, owner_id}``."""
        value = key.reveal()
        if not value.isascii() or not value.isprintable():
            raise InputError(f"the key {key.fingerprint} holds characters that cannot be sent in an HTTP header")
        return send(
            self._client,
            "POST",
            "v1/check-api-key",
            what=f"Cohere check-api-key of {key.fingerprint}",
            policy=self._policy,
            sleep=self._sleep,
            headers={"Authorization": f"Bearer {value}"},
        )

    # ---- the protocol ----------------------------------------------------------------------

    def check(self, key: Secret) -> Verdict:
        """``check-api-key``, failing closed: 200 ``{"valid": true}`` live; 200 ``{"valid": false}`` or
        401 with Cohere's error body dead; anything else unknown with the reason (a 200 without a
        boolean ``valid``, 400, 429/5xx after every retry, no answer, a redirect): ``liveness``."""
        route = "POST /v1/check-api-key"
        answer = ask(lambda: self.check_api_key(key))
        if isinstance(answer, Verdict):
            return answer
        status = answer.status_code
        if status == 401 and json_body(answer):
            return Verdict.dead(f"401 from {route}: {_message(answer)}", status)
        if status != 200:
            return refused(answer, route, _message(answer) if status >= 400 else "")
        valid = json_body(answer).get("valid")
        if valid is True:
            return Verdict.live(f"200 from {route}: valid")
        if valid is False:
            return Verdict.dead(f"200 from {route}: valid false", status)
        if not answer.content:
            return Verdict.unknown(f"200 from {route} with an empty body", status)
        return Verdict.unknown(f"200 from {route} without a boolean 'valid' (not Cohere's answer?)", status)

    def identify(self, key: Secret) -> KeyIdentity:
        """The organisation and owner ``check-api-key`` names; Cohere exposes no key id."""
        response = self.check_api_key(key)
        body = _body(response) if response.status_code == 200 else {}
        if response.status_code == 401 or body.get("valid") is False:
            raise KeyNotFound(
                f"Cohere does not accept the leaked key {key.fingerprint}: it is revoked already or was never valid",
                remediation=f"Confirm in {DASHBOARD} that no key shown as {key.redacted} is still listed.",
            )
        if response.status_code != 200 or body.get("valid") is not True:
            raise ProviderRejected(f"Cohere check-api-key answered {response.status_code}: {_message(response)}")
        organization, owner = body.get("organization_id"), body.get("owner_id")
        notes = (
            f"Cohere exposes no key id: find the key in {DASHBOARD} by its redacted form {key.redacted}",
            "revoking and replacing it are manual steps (dashboard or `co key revoke` / `co key create`)",
        )
        return KeyIdentity("cohere", None, organization, "user" if owner else None, owner, None, notes)

    def revoke(self, identity: KeyIdentity) -> RevokeResult:
        """Cohere has no revoke API: a person deletes the key."""
        where = f" of organization {identity.project}" if identity.project else ""
        raise ManualStepRequired(
            f"revoke the leaked Cohere key{where} by hand: {DASHBOARD} -> API keys -> delete the key "
            "(or `co key revoke`), then rerun: cauterize confirms that it answers 401",
            remediation="Cohere has no API to revoke a key: a person with access to the organisation must do it.",
        )

    def mint(self, like: KeyIdentity, name: str, scopes: CarriedScopes | None = None) -> MintedKey:
        """Cohere has no API to create a key: a person creates one and pastes it into the prompt."""
        raise ManualStepRequired(
            f"create the replacement Cohere key '{name}' by hand: {DASHBOARD} -> API keys -> new key "
            "(or `co key create`), and paste it into the prompt",
            remediation="Cohere has no API to create a key: a person with access to the organisation must do it.",
        )

    def usage(self, identity: KeyIdentity, start: datetime, end: datetime, bucket: str) -> Usage:
        """Nothing to read: Cohere offers no usage or cost per key."""
        return Usage((), (NO_USAGE_API,))


def _body(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(response: httpx.Response) -> str:
    """Cohere's ``message``, with anything key-shaped masked."""
    message = str(_body(response).get("message") or response.reason_phrase or "no message")
    return " ".join(scrub(_KEYLIKE.sub("[redacted]", message)).split())[:300]
