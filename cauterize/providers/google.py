"""Google (Vertex AI through IAM service-account keys; Gemini API keys): the API client and the ``google`` provider.

``GoogleIAM`` mirrors IAM v1 ``projects.serviceAccounts.keys``, Monitoring's ``projects.timeSeries.list``
and Org Policy v2's ``getEffectivePolicy`` one method per endpoint (provider-apis.md 3.1, 3.2). Every
answer goes through ``google_api.GoogleAPI._call``, the one place where Google's error envelope becomes
a cauterize error (a 403 naming an IAM permission is ``MissingPermission``). Google API keys
(``AIza...``) are the API Keys API's, in ``google_apikeys``; why a new key may be refused (org policy,
the 10-key limit) is ``google_orgpolicy``'s.

``GoogleProvider`` implements the provider protocol on top of it. The leaked key is a
service-account key file, so everything is exact: ``check`` signs a JWT with the file's private
key and asks the token endpoint for an access token (a token: live; ``invalid_grant`` about the key:
dead); for a Google API key (``AIza...``) ``check`` lists the Gemini API's models with it instead;
``identify`` builds the key's IAM name from ``client_email`` and ``private_key_id`` and confirms it
with ``GET``; ``revoke`` disables the key (immediate, reversible) and then deletes it; ``mint``
creates a new key for the same service account (an org policy against key creation: ``ManualStepRequired``;
``preflight_mint`` says beforehand); ``usage`` reads the per-key authentication counts, which is all
Google reports per key. A Google API key is identified, deleted and replaced through the API Keys API
(``google_apikeys``): the provider dispatches on the key's shape and on the identity's resource name.

The admin credential (``settings.admin_key``, from ``GOOGLE_ADMIN_KEY``, else ``GOOGLE_OAUTH_ACCESS_TOKEN``)
is an OAuth access token, or a service-account key file exchanged for one (scope ``cloud-platform``)
and renewed before it expires. Endpoints: ``settings.base_url`` (IAM), ``settings.data_url`` (the
token endpoint), ``settings.extra["monitoring_url"]`` or ``GOOGLE_MONITORING_URL`` (Monitoring),
``settings.extra["generative_url"]`` or ``GOOGLE_GENERATIVE_URL`` (the Gemini API, API-key liveness),
``settings.extra["apikeys_url"]`` or ``GOOGLE_APIKEYS_URL`` (API Keys v2), ``settings.extra["orgpolicy_url"]``
or ``GOOGLE_ORGPOLICY_URL`` (Org Policy v2).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from cauterize.errors import (
    CauterizeError,
    InputError,
    KeyNotFound,
    ManualStepRequired,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from cauterize.http import DEFAULT_POLICY, RetryPolicy, new_client, send
from cauterize.providers import google_orgpolicy
from cauterize.providers.base import (
    KeyIdentity,
    MintedKey,
    ProviderSettings,
    RevokeResult,
    Usage,
    UsageBucket,
    Verdict,
    register,
)
from cauterize.providers.google_api import API_KEYLIKE, GoogleAPI, GoogleRejected, error_reasons, provider_message
from cauterize.providers.google_apikeys import ApiKeySteps, GoogleApiKeys, is_api_key_identity, require_api_key
from cauterize.providers.google_auth import AdminAuth, ServiceAccountCredentials, TokenAnswer, exchange
from cauterize.providers.liveness import ask, listing, refused
from cauterize.secret import Secret

if TYPE_CHECKING:
    from cauterize.scopes import CarriedScopes

DEFAULT_IAM_URL = "https://iam.googleapis.com"
DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
DEFAULT_MONITORING_URL = "https://monitoring.googleapis.com"
DEFAULT_GENERATIVE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_APIKEYS_URL = "https://apikeys.googleapis.com"
DEFAULT_ORGPOLICY_URL = "https://orgpolicy.googleapis.com"
AUTHN_METRIC = "iam.googleapis.com/service_account/key/authn_events_count"
Json = dict[str, Any]

_ADMIN_REMEDIATION = (
    "Set GOOGLE_ADMIN_KEY (or the runbook's providers.google.admin_key) to an access token or a service-account key "
    "file of a principal holding iam.serviceAccountKeys.list, iam.serviceAccountKeys.get, "
    "iam.serviceAccountKeys.disable, iam.serviceAccountKeys.delete and iam.serviceAccountKeys.create on the leaked "
    "key's project (roles/iam.serviceAccountKeyAdmin), plus monitoring.timeSeries.list for evidence and "
    "orgpolicy.policy.get for the mint's preflight; for a Google API key, apikeys.keys.lookup, get, delete, create "
    "and getKeyString, and serviceusage.operations.get (roles/serviceusage.apiKeysAdmin)."
)
#: bucket -> Monitoring alignment period in seconds
_ALIGNMENT = {"1m": 60, "1h": 3600, "1d": 86400}
#: invalid_grant descriptions that are about the request (clock, audience), not about the key
_NOT_ABOUT_THE_KEY = re.compile(r"timeframe|\biat\b|\bexp\b|audience", re.IGNORECASE)
_RETENTION = timedelta(weeks=6)  # Cloud Monitoring keeps Google Cloud metrics this long
_NO_PER_KEY_TOKENS = (
    "Google reports no per-key token or cost usage: requests here count authentications with the key "
    f"({AUTHN_METRIC}; one token exchange can serve an hour of Vertex AI calls) and tokens stay 0. "
    "Per-call evidence needs Vertex AI Data Access audit logs (aiplatform.googleapis.com, "
    "authenticationInfo.serviceAccountKeyName); tokens and cost exist only per project and model."
)


class GoogleIAM(GoogleAPI):
    """IAM's service-account key methods, Monitoring's ``timeSeries.list`` and Org Policy's effective policy.

    ``iam``, ``monitoring`` and ``orgpolicy`` carry their base URLs and the admin bearer (``google_auth.AdminAuth``)."""

    def __init__(self, iam: httpx.Client, monitoring: httpx.Client, orgpolicy: httpx.Client, **options: Any):
        super().__init__(**options)
        self._iam, self._monitoring, self._orgpolicy = iam, monitoring, orgpolicy

    def close(self) -> None:
        for client in (self._iam, self._monitoring, self._orgpolicy):
            client.close()

    # ---- projects.serviceAccounts.keys -----------------------------------------------------

    def list_service_account_keys(self, account: str, key_types: Sequence[str] = ()) -> Json:
        """``GET /v1/{account}/keys``: ``{keys: [...]}`` of ``projects/{p}/serviceAccounts/{email}`` (no paging)."""
        params = [("keyTypes", kind) for kind in key_types]
        return self._call(self._iam, "GET", f"v1/{account}/keys", params=params, not_found=KeyNotFound)

    def get_service_account_key(self, name: str) -> Json:
        """``GET /v1/{name}``: one key (``projects/{p}/serviceAccounts/{email}/keys/{keyId}``)."""
        return self._call(self._iam, "GET", f"v1/{name}", not_found=KeyNotFound)

    def disable_service_account_key(self, name: str) -> Json:
        """``POST /v1/{name}:disable``: ``{}``; the key stops authenticating at once, reversibly."""
        return self._call(self._iam, "POST", f"v1/{name}:disable", json={}, not_found=KeyNotFound)

    def enable_service_account_key(self, name: str) -> Json:
        """``POST /v1/{name}:enable``: ``{}``."""
        return self._call(self._iam, "POST", f"v1/{name}:enable", json={}, not_found=KeyNotFound)

    def delete_service_account_key(self, name: str) -> Json:
        """``DELETE /v1/{name}``: ``{}``; permanent."""
        return self._call(self._iam, "DELETE", f"v1/{name}", not_found=KeyNotFound)

    def create_service_account_key(
        self,
        account: str,
        *,
        private_key_type: str = "TYPE_GOOGLE_CREDENTIALS_FILE",
        key_algorithm: str = "KEY_ALG_RSA_2048",
    ) -> Json:
        """``POST /v1/{account}/keys``: the new key; ``privateKeyData`` (base64 of the key file) comes only here."""
        body = {"privateKeyType": private_key_type, "keyAlgorithm": key_algorithm}
        return self._call(self._iam, "POST", f"v1/{account}/keys", json=body, not_found=KeyNotFound)

    # ---- projects.timeSeries ---------------------------------------------------------------

    def list_time_series(
        self,
        project: str,
        *,
        metric_filter: str,
        start_time: str,
        end_time: str,
        alignment_period: str | None = None,
        per_series_aligner: str | None = None,
        page_token: str | None = None,
    ) -> Json:
        """``GET /v3/projects/{project}/timeSeries``: one page (``timeSeries``, ``nextPageToken``)."""
        params = {
            "filter": metric_filter,
            "interval.startTime": start_time,
            "interval.endTime": end_time,
            "aggregation.alignmentPeriod": alignment_period,
            "aggregation.perSeriesAligner": per_series_aligner,
            "pageToken": page_token,
        }
        present = {name: value for name, value in params.items() if value is not None}
        return self._call(self._monitoring, "GET", f"v3/projects/{project}/timeSeries", params=present)

    def iter_time_series(self, project: str, **query: Any) -> Iterator[Json]:
        """Every series of ``list_time_series``, following ``nextPageToken`` (one series may span pages)."""
        token: str | None = None
        while True:
            page = self.list_time_series(project, **query, page_token=token)
            yield from page.get("timeSeries") or []
            following = page.get("nextPageToken")
            if not following or following == token:
                return
            token = following

    # ---- Org Policy v2 ---------------------------------------------------------------------

    def get_effective_policy(self, project: str, constraint: str) -> Json:
        """``GET /v2/projects/{project}/policies/{constraint}:getEffectivePolicy``: the Policy in force there
        (``spec.rules[].enforce`` for a boolean constraint); needs ``orgpolicy.policy.get``."""
        return self._call(self._orgpolicy, "GET", f"v2/projects/{project}/policies/{constraint}:getEffectivePolicy")


@register("google")
class GoogleProvider:
    """The ``google`` provider: ``GoogleProvider(ProviderSettings(admin_key=Secret(...)))``."""

    name = "google"

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        environ: Mapping[str, str] | None = None,
    ):
        env = os.environ if environ is None else environ
        self.settings = settings
        self._iam_url = settings.base_url or DEFAULT_IAM_URL
        self._token_url = settings.data_url or DEFAULT_TOKEN_URL

        def endpoint(name: str, default: str) -> str:
            return settings.extra.get(f"{name}_url") or env.get(f"GOOGLE_{name.upper()}_URL") or default

        self._monitoring_url = endpoint("monitoring", DEFAULT_MONITORING_URL)
        self._generative_url = endpoint("generative", DEFAULT_GENERATIVE_URL)
        self._apikeys_url = endpoint("apikeys", DEFAULT_APIKEYS_URL)
        self._orgpolicy_url = endpoint("orgpolicy", DEFAULT_ORGPOLICY_URL)
        self._generative: httpx.Client | None = None
        fallback = (env.get("GOOGLE_OAUTH_ACCESS_TOKEN") or "").strip()
        self._credential = settings.admin_key or (Secret(fallback) if fallback else None)
        self._policy, self._sleep, self._now = policy, sleep, now
        self._oauth = new_client(self._token_url, timeout=settings.timeout, transport=settings.transport)
        self._auth: AdminAuth | None = None
        self._admin: GoogleIAM | None = None
        self._api_keys: GoogleApiKeys | None = None
        self._api_key_steps = ApiKeySteps(lambda: self.api_keys, settings.mint)

    def __repr__(self) -> str:
        return f"GoogleProvider(base_url={self._iam_url!r})"

    @property
    def admin(self) -> GoogleIAM:
        """The IAM, Monitoring and Org Policy client, created on first use (``check`` needs no admin credential)."""
        if self._admin is None:
            urls = (self._iam_url, self._monitoring_url, self._orgpolicy_url)
            iam, monitoring, orgpolicy = (self._admin_client(url) for url in urls)
            self._admin = GoogleIAM(iam, monitoring, orgpolicy, **self._options())
        return self._admin

    @property
    def api_keys(self) -> GoogleApiKeys:
        """The API Keys v2 client (same admin credential), created on first use."""
        if self._api_keys is None:
            self._api_keys = GoogleApiKeys(self._admin_client(self._apikeys_url), **self._options())
        return self._api_keys

    def _admin_client(self, url: str) -> httpx.Client:
        if self._auth is None:
            if self._credential is None:
                raise InputError(
                    "no Google admin credential: set GOOGLE_ADMIN_KEY (a service-account key file or an access "
                    "token), GOOGLE_OAUTH_ACCESS_TOKEN or providers.google.admin_key",
                    remediation=_ADMIN_REMEDIATION,
                )
            self._auth = AdminAuth(self._credential, self._exchange, self._now, _ADMIN_REMEDIATION)
        client = new_client(url, timeout=self.settings.timeout, transport=self.settings.transport)
        client.auth = self._auth
        return client

    def _options(self) -> dict[str, Any]:
        return {"policy": self._policy, "sleep": self._sleep, "admin_remediation": _ADMIN_REMEDIATION}

    def missing(self) -> list[str]:
        """What containment (identify, revoke) lacks here, found without a network call: the admin credential."""
        try:
            self.admin
        except InputError as exc:
            return [exc.one_line()]
        return []

    def close(self) -> None:
        self._oauth.close()
        for client in (self._generative, self._admin, self._api_keys):
            if client is not None:
                client.close()

    def _exchange(self, account: ServiceAccountCredentials, what: str) -> TokenAnswer:
        assertion = account.assertion(self._token_url, self._now())
        return exchange(self._oauth, self._token_url, assertion, what=what, policy=self._policy, sleep=self._sleep)

    # ---- check -----------------------------------------------------------------------------

    def check(self, key: Secret) -> Verdict:
        """Is the key live? Fails closed (``liveness``); a Google API key goes to ``check_api_key``.

        A service-account key file: a JWT signed with it is exchanged for an access token. A token is
        live; 400 ``invalid_grant`` about the key ("Invalid JWT Signature." for a disabled or deleted
        key, "account not found") is dead; ``invalid_grant`` about the request (clock skew: ``iat``/
        ``exp``, "timeframe"; the audience), any other OAuth error, 429/5xx after every retry, no
        answer, a redirect or an odd body is unknown. A file that is no key file is an ``InputError``."""
        if key.reveal().startswith("AIza"):
            return self.check_api_key(key)
        account = ServiceAccountCredentials.parse(key)
        answer = ask(lambda: self._exchange(account, f"Google liveness of {key.fingerprint}"))
        if isinstance(answer, Verdict):
            return answer
        if answer.access_token:
            return Verdict.live("the token endpoint issued an access token")
        about_the_key = answer.error == "invalid_grant" and not _NOT_ABOUT_THE_KEY.search(answer.description)
        if answer.status == 400 and about_the_key:
            return Verdict.dead(f"400 invalid_grant: {answer.description}"[:300], 400)
        said = f"{answer.error} {answer.description}".strip() if answer.error else "no access token"
        if 300 <= answer.status < 400:
            said = "a redirect, not followed (a proxy or portal?)"
        return Verdict.unknown(f"{answer.status} from the token endpoint: {said}"[:300], answer.status)

    def check_api_key(self, key: Secret) -> Verdict:
        """``GET {generative}/v1/models`` with header ``x-goog-api-key`` (the Gemini API's models.list).

        Live: 200 with ``{"models": [...]}``. Dead: 400 ``INVALID_ARGUMENT`` whose ``ErrorInfo`` reason
        is ``API_KEY_INVALID`` ("API key not valid", "API key expired"): Google's answer for a key
        that is malformed, cannot be found (deleted) or expired (googleapis ``error_reason.proto``).
        Unknown, with the reason: 403 ``PERMISSION_DENIED`` (``SERVICE_DISABLED``: the API is off in the
        key's project; ``API_KEY_SERVICE_BLOCKED``, ``..._REFERRER_BLOCKED``, ``..._IP_ADDRESS_BLOCKED``:
        the key's restrictions; all of them say the key exists), any other answer, none at all."""
        value = require_api_key(key)
        if self._generative is None:
            self._generative = new_client(
                self._generative_url, timeout=self.settings.timeout, transport=self.settings.transport
            )
        client, route = self._generative, "GET /v1/models"
        answer = ask(
            lambda: send(
                client,
                "GET",
                "v1/models",
                what=f"Google API key liveness of {key.fingerprint}",
                policy=self._policy,
                sleep=self._sleep,
                headers={"x-goog-api-key": value},
            )
        )
        if isinstance(answer, Verdict):
            return answer
        status = answer.status_code
        if status == 200:
            return listing(answer, route, "models")
        code, message = provider_message(answer)
        reasons = error_reasons(answer)
        message = API_KEYLIKE.sub("[key redacted]", message)
        if status == 400 and code == "INVALID_ARGUMENT" and "API_KEY_INVALID" in reasons:
            return Verdict.dead(f"400 INVALID_ARGUMENT API_KEY_INVALID: {message}", status)
        detail = " ".join([code, *reasons]) + f": {message}" if status >= 400 else ""
        return refused(answer, route, detail)

    # ---- identify --------------------------------------------------------------------------

    def identify(self, key: Secret) -> KeyIdentity:
        """``GET`` the key by the name its file spells out: exact, no search. A Google API key is looked
        up by its value (``google_apikeys``)."""
        if key.reveal().startswith("AIza"):
            return self._api_key_steps.identify(key)
        account = ServiceAccountCredentials.parse(key)
        try:
            found = self.admin.get_service_account_key(account.key_name())
        except KeyNotFound as exc:
            raise KeyNotFound(
                f"Google has no key {account.private_key_id} for {account.client_email} (the leaked key "
                f"{key.fingerprint}): it was deleted, or its service account or project is gone",
                remediation="Check with `cauterize verify` that the key is dead; nothing is left to revoke if so.",
            ) from exc
        name = str(found.get("name") or "")
        if not name.endswith(f"/keys/{account.private_key_id}"):
            raise ProviderRejected(
                f"Google answered GET {account.key_name()} with something that is not that key",
                remediation="Check the IAM endpoint (providers.google.base_url or a proxy in between), then rerun.",
            )
        notes = []
        if found.get("disabled"):
            reason = f" ({found['disableReason']})" if found.get("disableReason") else ""
            notes.append(f"the key was already disabled at Google{reason}; it is still listed, so it will be deleted")
        project = account.project_id or name.split("/")[1]
        return KeyIdentity(
            "google", account.private_key_id, project, "service_account", account.client_email, name, tuple(notes)
        )

    # ---- revoke ----------------------------------------------------------------------------

    def revoke(self, identity: KeyIdentity) -> RevokeResult:
        """Disable the key, then delete it (``settings.revoke``: ``disable`` stops after disabling,
        ``delete`` only deletes). A key already gone is ``already-revoked``. A Google API key is deleted
        (``deleted-api-key``; the API has no disable)."""
        if is_api_key_identity(identity):
            return self._api_key_steps.revoke(identity)
        policy = self.settings.revoke
        if policy not in ("default", "disable", "delete"):
            raise InputError(f"providers.google.revoke is '{policy}': expected default, disable or delete")
        name = f"{_account_name(identity)}/keys/{_key_id(identity)}"
        tokens = (
            f"access tokens issued with key {identity.key_id} before {_aware(self._now()).astimezone(UTC):%Y-%m-%d %H:%M} UTC are not "
            "revoked with it and may work until they expire (up to 1 hour): check the audit logs of that hour"
        )
        try:
            if policy != "delete":
                self.admin.disable_service_account_key(name)
        except KeyNotFound:
            return RevokeResult(identity, "already-revoked")
        if policy == "disable":
            kept = f"key {identity.key_id} is disabled, not deleted (revoke policy 'disable'): delete it once"
            return RevokeResult(identity, "disabled-key", (f"{kept} the incident is closed", tokens))
        try:
            self.admin.delete_service_account_key(name)
        except KeyNotFound:
            return RevokeResult(identity, "already-revoked")
        except ProviderError as exc:
            if policy == "delete":
                raise
            item = f"key {identity.key_id} is disabled but its deletion failed ({exc.one_line()}): delete it by hand"
            return RevokeResult(identity, "disabled-key", (item, tokens))
        return RevokeResult(identity, "deleted-key", (tokens,))

    # ---- mint ------------------------------------------------------------------------------

    def mint(self, like: KeyIdentity, name: str, scopes: CarriedScopes | None = None) -> MintedKey:
        """Create a key for ``like``'s service account (Google keys have no name: ``name`` is unused).

        Refusals (``google_orgpolicy.refusal``): an organization policy against key creation is
        ``ManualStepRequired`` (a person provides the replacement, or the policy changes); the 10-key
        limit is ``ProviderRejected`` saying to delete unused keys; a missing
        ``iam.serviceAccountKeys.create`` is ``MissingPermission``. A Google API key's replacement is
        an API key of the same project with the same restrictions (``google_apikeys``)."""
        if is_api_key_identity(like):
            return self._api_key_steps.mint(like, name)
        if self.settings.mint == "manual":
            raise ManualStepRequired(
                f"create a key for {like.owner_id} in the Cloud console (IAM > Service accounts > Keys) "
                "and paste its JSON file into the prompt"
            )
        account = _account_name(like)
        try:
            created = self.admin.create_service_account_key(account)
        except GoogleRejected as exc:
            if exc.status != "FAILED_PRECONDITION":
                raise
            raise google_orgpolicy.refusal(
                exc, str(like.owner_id), like.project, lambda: self._user_key_count(account)
            ) from exc
        try:
            return self._minted(created, like)
        except CauterizeError:
            if created.get("name"):
                self.admin.delete_service_account_key(str(created["name"]))  # never leave a key nobody holds
            raise

    def _minted(self, created: Json, like: KeyIdentity) -> MintedKey:
        key_name = str(created.get("name") or "")
        try:
            text = base64.b64decode(str(created.get("privateKeyData") or ""), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            text = ""
        if not text.strip():
            raise ProviderRejected(f"Google created {key_name} without a readable privateKeyData")
        secret = Secret(text)
        account = ServiceAccountCredentials.parse(secret, role="minted key")
        if account.private_key_id != key_name.rsplit("/", 1)[-1]:
            raise ProviderRejected(f"the key file Google returned for {key_name} names another key id")
        identity = KeyIdentity(
            "google",
            account.private_key_id,
            account.project_id or like.project,
            "service_account",
            account.client_email,
            key_name,
        )
        return MintedKey(secret, identity)

    def preflight_mint(self, like: KeyIdentity) -> list[dict[str, Any]]:
        """What would make ``mint(like)`` fail, read without changing anything; ``[]`` when nothing would.

        Each problem is ``{"blocking": bool, "message": str}``: ``blocking`` when the mint would fail
        as things stand (an organization policy constraint against key creation is enforced on the
        key's project; the service account already holds 10 user-managed keys), not blocking when a
        check got no answer (no ``orgpolicy.policy.get``, the Org Policy API off, no answer at all):
        the message then says it could not be checked. Reads Org Policy v2 ``getEffectivePolicy`` for
        ``iam.disableServiceAccountKeyCreation`` and ``iam.managed.disableServiceAccountKeyCreation``,
        and IAM ``keys.list``. A Google API key, or ``mint: manual``, has nothing to check: ``[]``."""
        if is_api_key_identity(like) or self.settings.mint == "manual":
            return []
        try:
            account = _account_name(like)
        except InputError as exc:
            return [{"blocking": False, "message": f"the mint could not be checked: {exc.message}"}]
        return google_orgpolicy.preflight(
            lambda project, constraint: self.admin.get_effective_policy(project, constraint),
            lambda: self._user_key_count(account),
            like.project,
            str(like.owner_id),
        )

    def _user_key_count(self, account: str) -> int:
        listed = self.admin.list_service_account_keys(account, ("USER_MANAGED",)).get("keys") or []
        return sum(1 for key in listed if isinstance(key, dict))  # disabled keys count: they still exist

    # ---- usage -----------------------------------------------------------------------------

    def usage(self, identity: KeyIdentity, start: datetime, end: datetime, bucket: str) -> Usage:
        """Authentications with the key per bucket over ``[start, end)`` (Cloud Monitoring, all pages).
        A Google API key has none to read (``google_apikeys.NO_PER_KEY_USAGE``)."""
        if bucket not in _ALIGNMENT:
            raise InputError(f"bucket '{bucket}' is not one of {', '.join(_ALIGNMENT)}")
        if is_api_key_identity(identity):
            return self._api_key_steps.usage(identity)
        key_id = _key_id(identity)
        if not identity.project:
            raise InputError(f"the Google key {key_id} has no project in its identity; identify it again")
        totals: dict[tuple[datetime, datetime], int] = {}
        series = self.admin.iter_time_series(
            identity.project,
            metric_filter=f'metric.type="{AUTHN_METRIC}" AND metric.labels.key_id="{key_id}"',
            start_time=_rfc3339(start),
            end_time=_rfc3339(end),
            alignment_period=f"{_ALIGNMENT[bucket]}s",
            per_series_aligner="ALIGN_SUM",
        )
        for item in series:
            for point in item.get("points") or []:
                interval = point.get("interval") or {}
                until = interval.get("endTime")
                if until:
                    span = (_parse_time(interval.get("startTime") or until), _parse_time(until))
                    totals[span] = totals.get(span, 0) + _count(point.get("value") or {})
        limitations = [_NO_PER_KEY_TOKENS]
        if not any(totals.values()):
            limitations.insert(0, f"Cloud Monitoring reported no authentication with key {key_id} in this window")
        if _aware(start) < _aware(self._now()) - _RETENTION:
            limitations.append("Cloud Monitoring keeps these counts for 6 weeks: the start of the window is older")
        buckets = tuple(UsageBucket(s, e, requests=n) for (s, e), n in sorted(totals.items()))
        return Usage(buckets, tuple(limitations))


def _account_name(identity: KeyIdentity) -> str:
    if not identity.owner_id:
        raise InputError(f"the Google key {identity.key_id} has no service account in its identity; identify it again")
    return f"projects/{identity.project or '-'}/serviceAccounts/{identity.owner_id}"


def _key_id(identity: KeyIdentity) -> str:
    if not identity.key_id or not re.fullmatch(r"[A-Za-z0-9_-]+", identity.key_id):
        raise InputError("cannot act on a Google key without its key id; identify it first")
    return identity.key_id


def _count(value: Json) -> int:
    """An ``int64Value`` (a string in Google's JSON) or a ``doubleValue``."""
    raw = value.get("int64Value", value.get("doubleValue", 0))
    try:
        return int(float(raw))
    except (TypeError, ValueError):
        return 0


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _rfc3339(when: datetime) -> str:
    return _aware(when).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str) -> datetime:
    """An RFC 3339 time as Google writes it (``Z``, up to nanoseconds)."""
    try:
        return _aware(datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value)))
    except ValueError:
        raise ProviderUnavailable(f"Cloud Monitoring answered a time cauterize cannot read: {value[:40]!r}") from None
