"""Azure OpenAI: the management client (one method per endpoint) and the ``azure-openai`` provider.

An Azure OpenAI key is not an object with an id: each Cognitive Services account has two slots,
Key1 and Key2, read with ARM ``listKeys`` and replaced with ``regenerateKey`` (provider-apis.md 4).
``AzureManagement`` mirrors those ARM endpoints the way ``azure-mgmt-cognitiveservices`` calls
them: a bearer token for https://management.azure.com, ``api-version`` on every request (2025-09-01;
Azure Monitor has its own), list pages followed through their absolute ``nextLink``, which is
only ever requested on the ARM host itself (the token goes nowhere else). Every answer goes through
``_error_for``, the one place where ARM status codes become cauterize errors.

``AzureOpenAIProvider`` implements the provider protocol on top of it:

* ``check``: the data plane, ``GET {endpoint}/openai/models?api-version=2024-10-21`` (else the v1
  API's ``/openai/v1/models``) with header ``api-key``.
* ``identify``: ``listKeys`` of the configured account, or of every account of the resource group
  or subscription (all pages); the leaked value is compared with each slot in constant time.
* ``revoke``: ``regenerateKey`` of that slot. Azure has no per-key disable: regenerating is the
  revocation, and its answer holds the replacement, which this instance keeps for ``mint``.
* ``mint``: the slot's regenerated value; it never regenerates anything itself (see ``mint``).
* ``usage``: Azure Monitor metrics of the whole account: Azure has no per-key dimension.

Settings: ``base_url`` (ARM, default https://management.azure.com); ``data_url`` (default
``https://{account}.openai.azure.com``, else the endpoint of the account ``identify`` found);
``subscription``, ``resource_group``, ``account`` (else ``AZURE_SUBSCRIPTION_ID``,
``AZURE_RESOURCE_GROUP``, ``AZURE_OPENAI_ACCOUNT``); ``admin_key``: an Entra ID access token for
ARM (the caller falls back to ``AZURE_OPENAI_ADMIN_KEY``; this module also reads
``AZURE_MANAGEMENT_TOKEN``, e.g. from ``az account get-access-token``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from cauterize.errors import (
    AdminAuthError,
    CauterizeError,
    InputError,
    KeyNotFound,
    ManualStepRequired,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)
from cauterize.http import DEFAULT_POLICY, RetryPolicy, json_object, new_client, send
from cauterize.providers.base import (
    KeyIdentity,
    MintedKey,
    ProviderSettings,
    RevokeResult,
    Usage,
    UsageBucket,
    register,
    Verdict,
)
from cauterize.providers.liveness import ask, json_body, listing, refused
from cauterize.secret import Secret, scrub

if TYPE_CHECKING:
    from cauterize.scopes import CarriedScopes

DEFAULT_BASE_URL = "https://management.azure.com"
API_VERSION = "2025-09-01"  # azure-mgmt-cognitiveservices 14.1.0's default
METRICS_API_VERSION = "2023-10-01"  # Azure Monitor Metrics - List
DATA_API_VERSION = "2024-10-21"  # the latest GA data-plane version (Models - List)
Json = dict[str, Any]

_PROVIDER = "providers/Microsoft.CognitiveServices/accounts"
_RESOURCE_ID = re.compile(
    r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.CognitiveServices/accounts/([^/]+)$",
    re.IGNORECASE,
)
_SLOTS = ("Key1", "Key2")
_LEAKED_NOTE = re.compile(r"leaked value \((sha256:[0-9a-f]{16})\)")
#: Azure Monitor metric -> UsageBucket field
_METRICS = {
    "ProcessedPromptTokens": "input_tokens",
    "GeneratedTokens": "output_tokens",
    "AzureOpenAIRequests": "requests",
}
_INTERVALS = {"1m": ("PT1M", 60), "1h": ("PT1H", 3600), "1d": ("P1D", 86400)}
_KEYLIKE = re.compile(r"\b[a-f0-9]{32}\b|\b[A-Za-z0-9]{84}\b|\beyJ[\w-]+\.[\w-]+\.[\w-]+")
_ADMIN_REMEDIATION = (
    "Set AZURE_OPENAI_ADMIN_KEY or AZURE_MANAGEMENT_TOKEN (or the runbook's providers.azure-openai.admin_key) to a "
    "current ARM token (`az account get-access-token --resource https://management.azure.com`) of a principal "
    "allowed Microsoft.CognitiveServices/accounts/listKeys/action and "
    "Microsoft.CognitiveServices/accounts/regenerateKey/action on the account (e.g. Cognitive Services Contributor)."
)
_NOT_FOUND_REMEDIATION = (
    "The leaked key is in no account this token can list keys of: check the subscription, resource group and "
    "account in the runbook, or regenerate the key in the Azure portal (the account's Keys and Endpoint page)."
)


class AzureManagement:
    """ARM for Cognitive Services accounts, and Azure Monitor. ``client`` carries the ARM base URL and bearer."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        api_version: str = API_VERSION,
        metrics_api_version: str = METRICS_API_VERSION,
        policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._client = client
        self.api_version, self.metrics_api_version = api_version, metrics_api_version
        self._policy, self._sleep = policy, sleep

    # ---- accounts --------------------------------------------------------------------------

    def list_accounts(self, subscription: str, *, next_link: str | None = None) -> Json:
        """``GET /subscriptions/{sub}/providers/Microsoft.CognitiveServices/accounts``: one page."""
        return self._call("GET", next_link or f"{_segment('subscriptions', subscription)}/{_PROVIDER}")

    def list_accounts_by_resource_group(
        self, subscription: str, resource_group: str, *, next_link: str | None = None
    ) -> Json:
        """``GET /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.CognitiveServices/accounts``: one page."""
        path = f"{_segment('subscriptions', subscription)}/{_segment('resourceGroups', resource_group)}/{_PROVIDER}"
        return self._call("GET", next_link or path)

    def iter_accounts(self, subscription: str, resource_group: str | None = None) -> Iterator[Json]:
        """Every account of the subscription (or of one resource group), following ``nextLink``."""
        next_link: str | None = None
        seen: set[str] = set()
        while True:
            if resource_group:
                page = self.list_accounts_by_resource_group(subscription, resource_group, next_link=next_link)
            else:
                page = self.list_accounts(subscription, next_link=next_link)
            yield from page.get("value") or []
            next_link = page.get("nextLink")
            if not next_link or next_link in seen:
                return
            seen.add(next_link)

    def get_account(self, subscription: str, resource_group: str, account: str) -> Json:
        """``GET .../accounts/{account}``."""
        return self._call("GET", _account_path(subscription, resource_group, account), not_found=KeyNotFound)

    def update_account(self, subscription: str, resource_group: str, account: str, properties: Json) -> Json:
        """``PATCH .../accounts/{account}`` with ``{"properties": ...}`` (e.g. ``disableLocalAuth``)."""
        path = _account_path(subscription, resource_group, account)
        return self._call("PATCH", path, json={"properties": properties}, not_found=KeyNotFound)

    # ---- keys ------------------------------------------------------------------------------

    def list_keys(self, subscription: str, resource_group: str, account: str) -> Json:
        """``POST .../accounts/{account}/listKeys``: ``{key1, key2}``."""
        path = _account_path(subscription, resource_group, account) + "/listKeys"
        return self._call("POST", path, not_found=KeyNotFound)

    def regenerate_key(self, subscription: str, resource_group: str, account: str, key_name: str) -> Json:
        """``POST .../accounts/{account}/regenerateKey`` with ``{"keyName": "Key1"|"Key2"}``: the new pair."""
        path = _account_path(subscription, resource_group, account) + "/regenerateKey"
        return self._call("POST", path, json={"keyName": key_name}, not_found=KeyNotFound)

    # ---- Azure Monitor ---------------------------------------------------------------------

    def list_metrics(
        self, resource_id: str, *, metricnames: str, timespan: str, interval: str, aggregation: str = "Total"
    ) -> Json:
        """``GET {resourceId}/providers/Microsoft.Insights/metrics``: one series per metric (no key dimension)."""
        params = {"metricnames": metricnames, "timespan": timespan, "interval": interval, "aggregation": aggregation}
        path = resource_id.strip("/") + "/providers/Microsoft.Insights/metrics"
        return self._call("GET", path, params=params, api_version=self.metrics_api_version)

    # ---- the one boundary ------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        api_version: str | None = None,
        not_found: type[ProviderError] = ProviderRejected,
        **kwargs: Any,
    ) -> Json:
        url = (
            self._url(path)
            .copy_merge_params(params or {})
            .copy_set_param("api-version", api_version or self.api_version)
        )
        what = f"Azure {method} {url.path}"
        response = send(self._client, method, str(url), what=what, policy=self._policy, sleep=self._sleep, **kwargs)
        if response.status_code >= 400:
            raise _error_for(response, what, not_found)
        return json_object(response, what)

    def _url(self, path: str) -> httpx.URL:
        """A path under the ARM base URL, or a ``nextLink``, which must point at that same host."""
        base = self._client.base_url
        if "://" not in path:
            return base.join(path)
        url = httpx.URL(path)
        if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
            raise ProviderRejected(f"Azure returned a nextLink on another host ({url.host}): not following it")
        return url


def _error_for(response: httpx.Response, what: str, not_found: type[ProviderError]) -> ProviderError:
    """Map an ARM error answer to a cauterize error (quoting Azure's code and message, masked)."""
    status, (code, message) = response.status_code, provider_message(response)
    if status in (401, 403):
        return AdminAuthError(
            f"the Azure management token was rejected ({status} {code}): {message}", remediation=_ADMIN_REMEDIATION
        )
    if status == 404:
        return not_found(f"{what}: not found (404 {code}): {message}")
    return ProviderRejected(f"{what}: Azure refused the request ({status} {code}): {message}")


def provider_message(response: httpx.Response) -> tuple[str, str]:
    """``(error.code, error.message)`` of an Azure error body, with anything key- or token-shaped masked."""
    try:
        error = response.json().get("error") or {}
        code, message = (
            (str(error.get("code") or ""), str(error.get("message") or ""))
            if isinstance(error, dict)
            else ("", str(error))
        )
    except (ValueError, AttributeError):
        code, message = "", ""
    message = scrub(_KEYLIKE.sub("[redacted]", message or response.reason_phrase or "no message"))
    return code or str(response.status_code), " ".join(message.split())[:400]


@register("azure-openai")
class AzureOpenAIProvider:
    """The ``azure-openai`` provider: ``AzureOpenAIProvider(ProviderSettings(admin_key=Secret(token), ...))``."""

    name = "azure-openai"

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        environ: Mapping[str, str] | None = None,
    ):
        env = os.environ if environ is None else environ
        self.settings = settings
        self.subscription = settings.subscription or env.get("AZURE_SUBSCRIPTION_ID") or None
        self.resource_group = settings.resource_group or env.get("AZURE_RESOURCE_GROUP") or None
        self.account = settings.account or env.get("AZURE_OPENAI_ACCOUNT") or None
        token = env.get("AZURE_MANAGEMENT_TOKEN", "").strip()
        self._token = settings.admin_key or (Secret(token) if token else None)
        self._arm_url = settings.base_url or DEFAULT_BASE_URL
        self._data_url = settings.data_url or (f"https://{self.account}.openai.azure.com" if self.account else None)
        self._policy, self._sleep = policy, sleep
        self._management: AzureManagement | None = None
        self._data: dict[str, httpx.Client] = {}
        self._replacements: dict[tuple[str, str], Secret] = {}  # (resource id, slot) -> value regenerated here

    def __repr__(self) -> str:
        return f"AzureOpenAIProvider(base_url={self._arm_url!r}, data_url={self._data_url!r})"

    @property
    def management(self) -> AzureManagement:
        """The ARM client, created on first use (``check`` needs no token)."""
        if self._management is None:
            if self._token is None:
                raise InputError(
                    "no Azure management token: set AZURE_OPENAI_ADMIN_KEY, AZURE_MANAGEMENT_TOKEN "
                    "or providers.azure-openai.admin_key",
                    remediation=_ADMIN_REMEDIATION,
                )
            headers = {"Authorization": f"Bearer {_header_value(self._token)}"}
            client = new_client(
                self._arm_url, headers=headers, timeout=self.settings.timeout, transport=self.settings.transport
            )
            self._management = AzureManagement(client, policy=self._policy, sleep=self._sleep)
        return self._management

    def missing(self) -> list[str]:
        """What containment (identify, revoke) lacks here, found without a network call: the management token, and a subscription to search."""
        problems = []
        try:
            self.management
        except InputError as exc:
            problems.append(exc.one_line())
        if not self.subscription:
            problems.append("no Azure subscription: set providers.azure-openai.subscription or AZURE_SUBSCRIPTION_ID")
        return problems

    def close(self) -> None:
        for client in self._data.values():
            client.close()
        if self._management is not None:
            self._management._client.close()

    # ---- check -----------------------------------------------------------------------------

    def check(self, key: Secret) -> Verdict:
        """``GET {endpoint}/openai/models?api-version=2024-10-21`` (Models - List, GA) with header
        ``api-key``; where that version or route is refused (400 "API version not supported", 404),
        the v1 API's ``GET {endpoint}/openai/v1/models``. Fails closed:

        Live: 200 with the list body (``{"data": [...], "object": "list"}``). Dead: 401 with Azure's
        error body ("Access denied due to invalid subscription key or wrong API endpoint"), the answer
        for a regenerated slot. Unknown, with the reason: 403 ``AuthenticationTypeDisabled`` (key
        authentication is off for the account, which an owner can turn back on: the key itself is
        not revoked), any other 403 (a firewall, a private endpoint), an api-version refused on both
        routes, 429/5xx after every retry, no answer, a redirect or an odd body: ``liveness``. No
        endpoint to ask is an ``InputError``."""
        client = self._data_client()
        header = {"api-key": _header_value(key)}

        def models(path: str, params: dict[str, str] | None) -> httpx.Response | Verdict:
            return ask(
                lambda: send(
                    client,
                    "GET",
                    path,
                    what=f"Azure OpenAI liveness of {key.fingerprint}",
                    policy=self._policy,
                    sleep=self._sleep,
                    params=params,
                    headers=header,
                )
            )

        route = f"GET /openai/models?api-version={DATA_API_VERSION}"
        answer = models("openai/models", {"api-version": DATA_API_VERSION})
        if isinstance(answer, httpx.Response) and _version_refused(answer):
            first = f"{answer.status_code} {_said(answer)}"
            route = "GET /openai/v1/models"
            answer = models("openai/v1/models", None)
            if isinstance(answer, httpx.Response) and _version_refused(answer):
                return Verdict.unknown(
                    f"the data plane refused both Models routes: api-version {DATA_API_VERSION} answered {first}, "
                    f"/openai/v1/models {answer.status_code} {_said(answer)}",
                    answer.status_code,
                )
        if isinstance(answer, Verdict):
            return answer
        status = answer.status_code
        code, message = provider_message(answer)
        if status == 200:
            return listing(answer, route)
        if status == 401 and isinstance(json_body(answer).get("error"), dict):
            # Azure's 401 says "invalid subscription key OR wrong API endpoint": where the account's
            # keys can be read, a key one of its slots still holds is not called dead.
            held = self._account_holds(key)
            if held:
                return Verdict.unknown(
                    f"401 from {route}, but account {self.account} still holds this key in {held} (listKeys): "
                    "the endpoint asked may not be this account's (check providers.azure-openai.data_url)",
                    status,
                )
            confirmed = "; listKeys: no slot of the account holds it" if held == "" else ""
            return Verdict.dead(f"401 from {route}: {message}{confirmed}", status)
        if status == 403 and code == "AuthenticationTypeDisabled":
            return Verdict.unknown(
                f"403 AuthenticationTypeDisabled from {route}: key authentication is off for the account; "
                "the key is not revoked and works again if it is turned back on (regenerate the slot)",
                status,
            )
        return refused(answer, route, _said(answer) if status >= 400 else "")

    def _account_holds(self, key: Secret) -> str | None:
        """The slot of the pinned account that still holds ``key`` ("" when neither does), or None
        when that cannot be read here (no management token, the account not pinned, an error)."""
        if self._token is None or not (self.account and self.resource_group and self.subscription):
            return None
        try:
            keys = self.management.list_keys(self.subscription, self.resource_group, self.account)
        except CauterizeError:
            return None
        return _matching_slot(keys, key) or ""

    def _data_client(self) -> httpx.Client:
        if not self._data_url:
            raise InputError(
                "no Azure OpenAI endpoint to check the key against: set providers.azure-openai.data_url or account "
                "(or AZURE_OPENAI_DATA_URL / AZURE_OPENAI_ACCOUNT)"
            )
        if self._data_url not in self._data:
            self._data[self._data_url] = new_client(
                self._data_url, timeout=self.settings.timeout, transport=self.settings.transport
            )
        return self._data[self._data_url]

    # ---- identify --------------------------------------------------------------------------

    def identify(self, key: Secret) -> KeyIdentity:
        """``listKeys`` of the account (or of every account in scope, all pages); each slot compared in constant time."""
        pinned = self.account is not None
        skipped: list[tuple[Any, ProviderError]]
        searched, skipped = 0, []
        for account in self._accounts_to_search():
            try:
                keys = self.management.list_keys(*_parts(account["id"]))
            except ProviderError as exc:
                if pinned or isinstance(exc, (RateLimited, ProviderUnavailable)):
                    raise
                skipped.append((account.get("name"), exc))  # e.g. no listKeys right there, or local auth off
                continue
            searched += 1
            slot = _matching_slot(keys, key)
            if slot is not None:
                return self._found(account, slot, key, skipped)
        auth = [exc for _, exc in skipped if isinstance(exc, AdminAuthError)]
        if auth and not searched:
            raise auth[0]
        unread = f"; {len(skipped)} could not be read: {', '.join(str(n) for n, _ in skipped)}" if skipped else ""
        raise KeyNotFound(
            f"no key of the {searched} Azure OpenAI account(s) searched in {self._scope()} matches the leaked key "
            f"{key.fingerprint}{unread}",
            remediation=_NOT_FOUND_REMEDIATION,
        )

    def _accounts_to_search(self) -> Iterator[Json]:
        if self.account and self.resource_group and self.subscription:
            yield {
                "id": "/" + _account_path(self.subscription, self.resource_group, self.account),
                "name": self.account,
            }
            return
        if not self.subscription:
            raise InputError("no Azure subscription: set providers.azure-openai.subscription or AZURE_SUBSCRIPTION_ID")
        found = False
        for account in self.management.iter_accounts(self.subscription, self.resource_group):
            if self.account is None or str(account.get("name", "")).lower() == self.account.lower():
                found = True
                yield account
        if self.account and not found:
            raise KeyNotFound(
                f"no Azure OpenAI account named {self.account} in {self._scope()}", remediation=_NOT_FOUND_REMEDIATION
            )

    def _found(self, account: Json, slot: str, key: Secret, skipped: list[tuple[Any, ProviderError]]) -> KeyIdentity:
        name = account.get("name") or _parts(account["id"])[2]
        endpoint = (account.get("properties") or {}).get("endpoint")
        if not self._data_url and endpoint:
            self._data_url = endpoint  # liveness of this key (and its replacement) is asked of its own account
        notes = [f"leaked value ({key.fingerprint}) is {slot} of account {name}; Azure keys have no id, only two slots"]
        if skipped:
            notes.append(f"accounts whose keys could not be read: {', '.join(str(n) for n, _ in skipped)}")
        return KeyIdentity("azure-openai", slot, account["id"], "account", name, None, tuple(notes))

    def _scope(self) -> str:
        where = f"subscription {self.subscription}"
        return f"resource group {self.resource_group} of {where}" if self.resource_group else where

    # ---- revoke ----------------------------------------------------------------------------

    def revoke(self, identity: KeyIdentity) -> RevokeResult:
        """``regenerateKey`` of the identified slot: the old value dies, the answer holds the replacement."""
        resource_id, slot = _resource_id(identity), _slot(identity)
        subscription, group, name = _parts(resource_id)
        try:
            keys = self.management.regenerate_key(subscription, group, name, slot)
        except KeyNotFound:
            return RevokeResult(
                identity, "already-revoked", (f"Azure account {name} no longer exists: its keys died with it",)
            )
        value = keys.get(slot.lower())
        if isinstance(value, str) and value.strip():
            self._replacements[(resource_id.lower(), slot)] = Secret(value)
        other = _SLOTS[1 - _SLOTS.index(slot)]
        item = (
            f"Azure has no per-key disable: {slot} of account {name} was regenerated, which revoked the leaked value; "
            f"every client still using it now gets 401. Move clients to {other} or to the new {slot} value, and "
            f"regenerate {other} too if it was stored next to the leaked key."
        )
        return RevokeResult(identity, "regenerated-key", (item,))

    # ---- mint ------------------------------------------------------------------------------

    def mint(self, like: KeyIdentity, name: str, scopes: CarriedScopes | None = None) -> MintedKey:
        """The replacement is the regenerated value of ``like``'s slot; Azure keys have no name, so ``name`` is unused.

        If this instance regenerated the slot, that value is returned. Otherwise (a rerun in a new
        process) the slot's current value is read with ``listKeys``: after the revocation it *is* the
        replacement. Regenerating here instead would kill a replacement that may already be deployed,
        and regenerating the other slot would break the clients that were moved to it; so mint never
        regenerates. If the slot still holds the leaked value (nothing revoked yet, e.g. rotate-first),
        or ``like`` does not say which value leaked (its ``identify`` note), nothing is handed out: a
        person chooses (move clients to the other slot first)."""
        resource_id, slot = _resource_id(like), _slot(like)
        replacement = self._replacements.get((resource_id.lower(), slot))
        if replacement is None:
            value = self.management.list_keys(*_parts(resource_id)).get(slot.lower())
            if not isinstance(value, str) or not value.strip():
                raise ProviderRejected(f"Azure listed no value for {slot} of {like.owner_id}")
            replacement = Secret(value)
            leaked = next((m.group(1) for n in like.notes if (m := _LEAKED_NOTE.search(n))), None)
            if leaked in (None, replacement.fingerprint):
                state = "still holds the leaked key" if leaked else "may still hold the leaked key"
                raise ManualStepRequired(
                    f"{slot} of Azure account {like.owner_id} {state}: Azure cannot mint a key without "
                    f"regenerating it. Revoke first (the regenerated {slot} is the replacement), or move clients "
                    "to the other slot in the portal and paste its value into the prompt"
                )
        account = like.owner_id or _parts(resource_id)[2]
        notes = (f"the regenerated value of {slot}: Azure keys have no name, so '{name}' was not used",)
        return MintedKey(replacement, KeyIdentity("azure-openai", slot, resource_id, "account", account, None, notes))

    def find_minted(self, like: KeyIdentity, name: str) -> list[KeyIdentity]:
        """Replacements an interrupted run may have left behind: none. ``mint`` creates nothing; the
        slot's regenerated value was never exposed, and a rerun reads it again with ``listKeys``."""
        return []

    # ---- usage -----------------------------------------------------------------------------

    def usage(self, identity: KeyIdentity, start: datetime, end: datetime, bucket: str) -> Usage:
        """Azure Monitor metrics (prompt tokens, generated tokens, requests) of the key's whole account."""
        if bucket not in _INTERVALS:
            raise InputError(f"bucket '{bucket}' is not one of {', '.join(_INTERVALS)}")
        resource_id = _resource_id(identity)
        interval, seconds = _INTERVALS[bucket]
        body = self.management.list_metrics(
            resource_id, metricnames=",".join(_METRICS), timespan=f"{_iso(start)}/{_iso(end)}", interval=interval
        )
        totals: dict[str, dict[str, float]] = {}
        limitations = [
            (
                f"Azure Monitor has no per-key dimension: these figures cover the whole account "
                f"{_parts(resource_id)[2]} (both key slots and every Entra ID caller), not the leaked key alone"
            ),
            "Azure Monitor metrics carry no cost: see Cost Management for the account's charges",
        ]
        for metric in body.get("value") or []:
            field = _METRICS.get((metric.get("name") or {}).get("value"))
            if field is None:
                continue
            if metric.get("errorCode") not in (None, "Success"):
                limitations.append(f"Azure Monitor could not read {metric['name']['value']}: {metric.get('errorCode')}")
            for series in metric.get("timeseries") or []:
                for point in series.get("data") or []:
                    slot = totals.setdefault(point["timeStamp"], dict.fromkeys(_METRICS.values(), 0.0))
                    slot[field] += float(point.get("total") or 0)
        buckets = tuple(
            UsageBucket(
                when,
                when + timedelta(seconds=seconds),
                int(t["input_tokens"]),
                int(t["output_tokens"]),
                int(t["requests"]),
            )
            for when, t in sorted((_parse_iso(stamp), t) for stamp, t in totals.items())
        )
        return Usage(buckets, tuple(limitations))


def _matching_slot(keys: Json, key: Secret) -> str | None:
    """The slot holding ``key``: both slots are always compared, each in constant time."""
    found = None
    for slot in _SLOTS:
        value = keys.get(slot.lower())
        if isinstance(value, str) and value.strip() and key.matches(value):
            found = slot
    return found


def _segment(name: str, value: str) -> str:
    return f"{name}/{quote(value, safe='')}"


def _account_path(subscription: str, resource_group: str, account: str) -> str:
    return "/".join(
        (
            _segment("subscriptions", subscription),
            _segment("resourceGroups", resource_group),
            _PROVIDER,
            quote(account, safe=""),
        )
    )


def _parts(resource_id: str) -> tuple[str, str, str]:
    """``(subscription, resource group, account)`` of an account's resource id."""
    match = _RESOURCE_ID.match(resource_id or "")
    if match is None:
        raise InputError(f"'{resource_id}' is not the resource id of a Cognitive Services account")
    return match.group(1), match.group(2), match.group(3)


def _resource_id(identity: KeyIdentity) -> str:
    if not identity.project:
        raise InputError(f"the Azure key {identity.key_id} has no account in its identity; identify it again")
    _parts(identity.project)
    return identity.project


def _slot(identity: KeyIdentity) -> str:
    slot = next((s for s in _SLOTS if s.lower() == str(identity.key_id).lower()), None)
    if slot is None:
        raise InputError(f"'{identity.key_id}' is not an Azure key slot: expected Key1 or Key2; identify the key first")
    return slot


def _said(response: httpx.Response) -> str:
    """``code: message`` of an Azure error answer (the code left out where it only repeats the status)."""
    code, message = provider_message(response)
    return message if code == str(response.status_code) else f"{code}: {message}"


def _version_refused(response: httpx.Response) -> bool:
    """The data plane does not serve this route at this api-version: 404 (``Resource not found``) or
    400 ``API version not supported``, as Azure answers retired or unknown versions."""
    if response.status_code == 404:
        return True
    code, message = provider_message(response)
    return response.status_code == 400 and "api version" in f"{code} {message}".lower().replace("-", " ")


def _header_value(secret: Secret) -> str:
    value = secret.reveal()
    if not value.isascii() or not value.isprintable():
        raise InputError(f"the credential {secret.fingerprint} holds characters that cannot be sent in an HTTP header")
    return value


def _iso(when: datetime) -> str:
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(stamp: str) -> datetime:
    parsed = datetime.fromisoformat(stamp)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
