"""AWS Secrets Manager, rotated the way AWS's own rotation functions do it.

``write`` is a composite of these calls (IAM action: ``secretsmanager:`` + the API name):

1. ``DescribeSecret``: does the secret exist, is it scheduled for deletion
2. ``GetSecretValue`` ``AWSCURRENT``: the old version id and document
3. ``PutSecretValue``: the new document as a new version, staged ``AWSPENDING`` only
4. ``GetSecretValue`` ``AWSPENDING``: read back; its fingerprint must be the new key's
5. ``UpdateSecretVersionStage``: ``AWSCURRENT`` moves to the new version, away from the old one
   (now ``AWSPREVIOUS``); AWS refuses if another writer moved ``AWSCURRENT`` since step 2.
6. ``UpdateSecretVersionStage``: ``AWSPENDING`` removed, even when 4 or 5 failed; 7. read back.

A secret that does not exist yet is created (``CreateSecret``) holding ``{"FIELD": key}``, or the
bare key without a field; undoing that write deletes it again without a recovery window.

With a ``field`` the secret is a JSON object and only that field's value is replaced in the
document's text: every other byte (other fields, their order, spacing, number formats) is kept.

Endpoint, region and credentials come from boto3's own environment (``AWS_ENDPOINT_URL``,
``AWS_DEFAULT_REGION``, ``AWS_PROFILE``, ``AWS_MAX_ATTEMPTS``...); the runbook's ``region``
overrides the region. botocore errors become ``StoreError`` in one place, ``_translated``.
``missing()``/``notes()`` resolve that region and botocore's credential chain from the environment
and AWS's config files only, in the chain's order, without a call (``local_readiness``).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, ClassVar

import boto3
import botocore.session
from botocore import exceptions as boto
from botocore.config import Config
from botocore.credentials import create_credential_resolver

from cauterize.errors import KeySourceError, StoreError
from cauterize.secret import Secret
from cauterize.stores.base import StoreWrite, answers_checked, register

IAM_ACTIONS = ("GetSecretValue", "PutSecretValue", "UpdateSecretVersionStage", "DescribeSecret")
_GRANT = (
    "Grant " + ", ".join(f"secretsmanager:{action}" for action in IAM_ACTIONS) + " on the secret "
    "(CreateSecret and DeleteSecret to create it and undo that, ListSecrets to scan), and kms:Decrypt "
    "and kms:GenerateDataKey on its KMS key if it uses a customer-managed one."
)
_HINTS = {
    "ResourceNotFoundException": "Check the secret id and the region (AWS_DEFAULT_REGION or the store's region).",
    "InvalidRequestException": "The secret may be scheduled for deletion: restore it (RestoreSecret) or fix the runbook.",
    "InvalidParameterException": "If AWSCURRENT moved during the write, another writer rotated the secret: rerun.",
    "ResourceExistsException": "Another writer created the secret at the same time: rerun.",
}
_RETRYABLE = {"ThrottlingException", "InternalServiceError", "InternalFailure", "ServiceUnavailable", "RequestTimeout"}
_NETWORK = (boto.EndpointConnectionError, boto.ConnectTimeoutError, boto.ReadTimeoutError, boto.ConnectionClosedError)
_BOTO_HINTS: dict[Any, str] = {
    boto.NoRegionError: "Set AWS_DEFAULT_REGION, or the store's region in the runbook.",
    boto.NoCredentialsError: "Provide AWS credentials the way boto3 finds them (AWS_PROFILE, AWS_ACCESS_KEY_ID, a role).",
    _NETWORK: "Check connectivity to Secrets Manager (AWS_ENDPOINT_URL if set, proxies, VPC endpoint), then rerun.",
}
_CONFIG = Config(connect_timeout=5, read_timeout=20)  # retries: boto3's environment (AWS_MAX_ATTEMPTS...)


@contextmanager
def _translated(secret_id: str, operation: str) -> Iterator[None]:
    """The one place botocore errors become StoreErrors: the secret id and the AWS error code, never a value."""
    what = f"aws-secrets-manager {secret_id}: {operation}"
    try:
        yield
    except boto.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        hint, retryable = _HINTS.get(code, _GRANT), code in _RETRYABLE
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code not in _HINTS and status in (429, 500, 502, 503, 504):  # throttled or down (a proxy's answer too)
            hint, retryable = f"Secrets Manager (or a proxy in front of it) answered {status}: rerun in a minute.", True
        # A service's validation message may quote what it was sent: no chained cause for calls sending the key.
        cause = None if operation in ("PutSecretValue", "CreateSecret") else exc
        raise StoreError(f"{what} failed ({code})", remediation=hint, retryable=retryable) from cause
    except boto.ParamValidationError:  # its message may quote a parameter, and the key is one
        raise StoreError(f"{what} failed (botocore's parameter validation refused it)") from None
    except boto.BotoCoreError as exc:
        hint = next((hint for kind, hint in _BOTO_HINTS.items() if isinstance(exc, kind)), _GRANT)
        retryable = isinstance(exc, _NETWORK)
        raise StoreError(f"{what} failed ({type(exc).__name__})", remediation=hint, retryable=retryable) from exc


class _Api:
    """A Secrets Manager client, made on first use from boto3's environment (or injected)."""

    def __init__(self, region: str | None = None, client: Any = None):
        self.region = region
        self._client = client
        self.injected = client is not None

    def call(self, operation: str, subject: str, *, missing_ok: bool = False, **params: Any) -> Any:
        """One API call, e.g. ``call("get_secret_value", ...)``; None for a missing secret if ``missing_ok``."""
        with _translated(subject, "".join(part.title() for part in operation.split("_"))):
            if self._client is None:
                self._client = boto3.session.Session().client("secretsmanager", region_name=self.region, config=_CONFIG)
            if operation == "list_secrets":  # every page
                paginator = self._client.get_paginator(operation)
                return [item for page in paginator.paginate(**params) for item in page["SecretList"]]
            try:
                return getattr(self._client, operation)(**params)
            except boto.ClientError as exc:
                if missing_ok and exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    return None
                raise


class AwsSecretsManagerStore:
    kind: ClassVar[str] = "aws-secrets-manager"

    def __init__(self, secret_id: str, field: str | None = None, region: str | None = None, *, client: Any = None):
        self.secret_id, self.field = secret_id, field
        self._api = _Api(region, client)
        self._name = f"aws-secrets-manager {secret_id}"

    def describe(self) -> str:
        return f"{self._name} {self.field}" if self.field else self._name

    def missing(self) -> list[str]:
        """What keeps boto3 from reaching the secret from here (region, credentials); no call made."""
        return [] if self._api.injected else local_readiness(self.describe(), self._api.region)[0]

    def notes(self) -> list[str]:
        """Credentials only a call could confirm (instance metadata, a container endpoint, web identity)."""
        return [] if self._api.injected else local_readiness(self.describe(), self._api.region)[1]

    @answers_checked
    def read(self) -> Secret | None:
        return None if (current := self._current()) is None else self._extract(current[1])

    @answers_checked
    def write(self, value: Secret) -> StoreWrite:
        described = self._sm("describe_secret", missing_ok=True)
        if described is None:
            return self._create(value)
        if described.get("DeletedDate"):
            raise StoreError(f"{self._name}: is scheduled for deletion", remediation=_HINTS["InvalidRequestException"])
        old_version, old_document = self._current() or (None, None)
        had_old_value = old_document is not None and self._extract(old_document) is not None
        document = self._render(old_document, value)
        pending_stage: dict[str, Any] = {"ClientRequestToken": str(uuid.uuid4()), "VersionStages": ["AWSPENDING"]}
        new_version = self._sm("put_secret_value", SecretString=document, **pending_stage)["VersionId"]
        try:
            pending = self._sm("get_secret_value", VersionId=new_version, VersionStage="AWSPENDING")
            if getattr(self._extract(self._document(pending)), "fingerprint", None) != value.fingerprint:
                raise StoreError(f"{self._name}: version {new_version} (AWSPENDING) does not read back as the new key")
            self._move_current(to=new_version, away_from=old_version)
        finally:  # done or refused, no version stays pending for a rotation function to pick up
            self._sm("update_secret_version_stage", VersionStage="AWSPENDING", RemoveFromVersionId=new_version)
        self._check_current(value)
        # Without an old version there is nothing to go back to: AWS never removes AWSCURRENT from a secret.
        undo = partial(self._move_current, to=old_version, away_from=new_version) if old_version else None
        lingering = [f"{self._name}: version {old_version} (AWSPREVIOUS) still holds the old value"]
        return StoreWrite(
            store=self.describe(),
            version=new_version,
            details={"secret_id": self.secret_id, "field": self.field, "previous_version": old_version},
            lingering=lingering if had_old_value else [],
            undo=undo,
        )

    def _create(self, value: Secret) -> StoreWrite:
        document, token = self._render(None, value), str(uuid.uuid4())
        created = self._api.call(
            "create_secret", self.secret_id, Name=self.secret_id, ClientRequestToken=token, SecretString=document
        )
        self._check_current(value)
        undo = partial(self._sm, "delete_secret", ForceDeleteWithoutRecovery=True)  # back to no secret at all
        details = {"secret_id": self.secret_id, "field": self.field, "created": True}
        return StoreWrite(store=self.describe(), version=created["VersionId"], details=details, undo=undo)

    def _sm(self, operation: str, *, missing_ok: bool = False, **params: Any) -> Any:
        return self._api.call(operation, self.secret_id, missing_ok=missing_ok, SecretId=self.secret_id, **params)

    def _move_current(self, *, to: str, away_from: str | None) -> None:
        params: dict[str, Any] = {"RemoveFromVersionId": away_from} if away_from else {}
        self._sm("update_secret_version_stage", VersionStage="AWSCURRENT", MoveToVersionId=to, **params)

    def _check_current(self, value: Secret) -> None:
        if getattr(self.read(), "fingerprint", None) != value.fingerprint:
            raise StoreError(f"{self._name}: AWSCURRENT does not read back as the new key after the write")

    def _current(self) -> tuple[str, str] | None:
        """(version id, document) of AWSCURRENT, or None when the secret or its current version is missing."""
        response = self._sm("get_secret_value", missing_ok=True, VersionStage="AWSCURRENT")
        return None if response is None else (response["VersionId"], self._document(response))

    def _document(self, response: dict[str, Any]) -> str:
        if "SecretString" not in response:
            hint = "Rotate this secret by hand, or store the key as a string secret."
            raise StoreError(f"{self._name}: is a binary secret; cauterize writes SecretString only", remediation=hint)
        return response["SecretString"]

    def _extract(self, document: str) -> Secret | None:
        if self.field is None:
            return Secret(document) if document.strip() else None
        data = _json_object(document)
        if data is None:
            hint = "Remove `field` from the store in the runbook, or fix the secret's format."
            raise StoreError(f"{self._name}: is not a JSON object, so it has no field {self.field}", remediation=hint)
        found = data.get(self.field)
        if found is not None and not isinstance(found, str):
            raise StoreError(f"{self._name}: field {self.field} is not a string")
        return Secret(found) if found and found.strip() else None

    def _render(self, old_document: str | None, value: Secret) -> str:
        if self.field is None:
            return value.reveal()
        if old_document is None:
            return json.dumps({self.field: value.reveal()})
        return set_json_field(old_document, self.field, value.reveal())


def set_json_field(document: str, field: str, value: str) -> str:
    """``document`` (a JSON object's text) with the top-level ``field`` set to the string ``value``.

    Only the field's value changes (every occurrence of a duplicated key); every other byte stays.
    A missing field is appended after the last member.
    """
    if _json_object(document) is None:
        raise ValueError("not a JSON object")
    decoder = json.JSONDecoder()
    spans: list[tuple[int, int]] = []
    pos = _skip(document, _skip(document, 0) + 1)  # past "{"
    last_end = None
    while document[pos] != "}":
        key, pos = decoder.raw_decode(document, pos)
        pos = _skip(document, _skip(document, pos) + 1)  # past ":"
        _, last_end = decoder.raw_decode(document, pos)
        if key == field:
            spans.append((pos, last_end))
        pos = _skip(document, last_end)
        if document[pos] == ",":
            pos = _skip(document, pos + 1)
    encoded = json.dumps(value)
    if not spans:
        member = f"{json.dumps(field)}: {encoded}"
        if last_end is None:
            return document[:pos] + member + document[pos:]
        return document[:last_end] + ", " + member + document[last_end:]
    for start, end in reversed(spans):
        document = document[:start] + encoded + document[end:]
    return document


def _skip(text: str, pos: int) -> int:
    """The position of the first non-whitespace character at or after ``pos``."""
    while pos < len(text) and text[pos] in " \t\n\r":
        pos += 1
    return pos


def _json_object(document: str) -> dict[str, Any] | None:
    try:
        data = json.loads(document)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _holding(document: str, secret: Secret) -> list[str]:
    """``""`` when the whole document is the key, ``"#FIELD"`` for each top-level JSON field that is."""
    if secret.matches(document):
        return [""]
    data = _json_object(document) or {}
    return [f"#{name}" for name, item in data.items() if isinstance(item, str) and secret.matches(item)]


def scan(
    secret: Secret, *, region: str | None = None, skipped: list[str] | None = None, client: Any = None
) -> list[str]:
    """Every secret of the account and region whose AWSCURRENT value, or one of its top-level JSON
    fields, is ``secret``: as ``NAME`` or ``NAME#FIELD`` (each usable as an ``aws-sm:`` key source).

    Needs secretsmanager:ListSecrets and GetSecretValue. A secret that cannot be read raises, unless
    a ``skipped`` list is given: then its error line is appended there and the scan goes on.
    """
    api = _Api(region, client)
    hits: list[str] = []
    for entry in api.call("list_secrets", f"(every secret in {region or 'the default region'})"):
        name = entry["Name"]
        try:
            response = api.call(
                "get_secret_value", name, missing_ok=True, SecretId=entry["ARN"], VersionStage="AWSCURRENT"
            )
        except StoreError as exc:
            if skipped is None:
                raise
            skipped.append(exc.message)
            continue
        if response is not None:
            document = response.get("SecretString") or response.get("SecretBinary", b"").decode("utf-8", "replace")
            hits.extend(name + suffix for suffix in _holding(document, secret))
    return sorted(hits)


#: botocore's credential providers (by METHOD) that read only the environment and local files
_LOCAL_PROVIDERS = ("env", "shared-credentials-file", "config-file", "ec2-credentials-file", "boto-config")
#: providers configured in the profile whose credentials come from a call or a process when first used
_PROFILE_PROVIDERS = {"sso": ("sso_session", "sso_start_url"), "login": ("login_session",),
                      "custom-process": ("credential_process",)}
_NO_CREDENTIALS = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE naming a profile of "
                   "~/.aws/credentials or ~/.aws/config")


def local_readiness(what: str, region: str | None = None) -> tuple[list[str], list[str]]:
    """``(missing, notes)`` for boto3's region and credentials, as ``boto3.session.Session()`` would
    resolve them, from the environment and AWS's config files only: botocore's credential chain is
    walked in order, local providers loaded, the others (STS, SSO, a process, the container endpoint,
    instance metadata) only recognised, never called."""
    session = botocore.session.Session()  # what boto3.session.Session() wraps, from the same environment
    try:
        profile = session.get_config_variable("profile") or "default"
        config = session.get_scoped_config()  # ProfileNotFound for an AWS_PROFILE no file defines
        found_region = region or session.get_config_variable("region")
        providers = create_credential_resolver(session).providers
    except boto.ProfileNotFound:
        files = f"{session.get_config_variable('config_file')} or {session.get_config_variable('credentials_file')}"
        return [f"{what}: AWS profile {profile} (AWS_PROFILE) is not in {files} (fix AWS_PROFILE or add the profile)"], []
    except boto.BotoCoreError as exc:  # a config file botocore cannot parse
        return [f"{what}: the AWS configuration cannot be read ({type(exc).__name__}: fix the file it names)"], []
    missing, notes = [], []
    if not found_region:
        hint = " (boto3 does not read AWS_REGION)" if os.environ.get("AWS_REGION") else ""
        missing.append(f"{what}: no AWS region{hint}: set AWS_DEFAULT_REGION, a region in the AWS config profile "
                       "or the store's region in the runbook")
    for provider in providers:
        method = provider.METHOD
        if method in _LOCAL_PROVIDERS:
            try:
                if provider.load() is not None:
                    break
            except boto.BotoCoreError as exc:  # PartialCredentialsError: one of a pair is missing
                missing.append(f"{what}: incomplete AWS credentials ({exc}): set both, or neither")
                break
        elif method == "assume-role" and "role_arn" in config and "web_identity_token_file" not in config:
            break  # assumed when first used, from the profile's source_profile / credential_source
        elif method == "assume-role-with-web-identity" and (token := _web_identity(config, "web_identity_token_file")):
            if not _web_identity(config, "role_arn"):
                missing.append(f"{what}: a web identity token file is set without a role: set AWS_ROLE_ARN")
            elif not os.path.isfile(os.path.expanduser(token)):
                missing.append(f"{what}: the web identity token file {token} does not exist "
                               "(AWS_WEB_IDENTITY_TOKEN_FILE or the profile's web_identity_token_file)")
            else:
                notes.append(f"{what}: AWS credentials come from web identity (the STS exchange is not checked)")
            break
        elif method in _PROFILE_PROVIDERS and any(key in config for key in _PROFILE_PROVIDERS[method]):
            break  # SSO, login or credential_process of the profile: resolved when first used
        elif method == "container-role" and any(os.environ.get(name) for name in (provider.ENV_VAR, provider.ENV_VAR_FULL)):
            notes.append(f"{what}: AWS credentials come from the container credentials endpoint (not checked)")
            break
        elif method == "iam-role" and os.environ.get("AWS_EC2_METADATA_DISABLED", "false").lower() != "true":
            notes.append(f"{what}: AWS credentials not found locally (instance metadata not checked): "
                         + _NO_CREDENTIALS)
            break
    else:
        missing.append(f"{what}: no AWS credentials: {_NO_CREDENTIALS}")
    return missing, notes


def _web_identity(profile: dict[str, Any], name: str) -> str | None:
    """A web identity setting as botocore reads it: the environment first, then the profile."""
    env = {"web_identity_token_file": "AWS_WEB_IDENTITY_TOKEN_FILE", "role_arn": "AWS_ROLE_ARN"}[name]
    return os.environ.get(env) or profile.get(name)


def resolve_reference(target: str) -> Secret:
    """The key behind an ``aws-sm:SECRET_ID[#FIELD]`` key source (boto3's environment for the region)."""
    secret_id, _, field = target.partition("#")
    if not secret_id:
        raise KeySourceError("key source aws-sm: must name a secret: aws-sm:SECRET_ID[#FIELD]")
    value = AwsSecretsManagerStore(secret_id, field or None).read()
    if value is None:
        hint = "Check the secret id, the field and AWS_DEFAULT_REGION."
        raise KeySourceError(f"key source aws-sm:{target}: the secret does not exist or holds no key", remediation=hint)
    return value


@register("aws-secrets-manager")
def _from_runbook(config, loaded) -> AwsSecretsManagerStore:
    return AwsSecretsManagerStore(config.secret_id, config.field, config.region)
