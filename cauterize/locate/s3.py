"""Find every copy of a key in an S3 bucket: every object and every noncurrent version, and say
whether the bucket is public.

``scan_s3("s3://BUCKET[/PREFIX]", secret)`` pages through ``ListObjectVersions`` (delete markers
skipped), reads each version with ``GetObject(VersionId=...)`` and runs the matcher over its body
(gzip and the other containers the matcher opens included). Each object is read up to
``MAX_OBJECT_BYTES`` (a ``Range`` request, so no more is transferred); a larger object is scanned
that far and named in ``errors``. A version that cannot be read (access denied, KMS, archived to
Glacier) is named in ``errors`` and the scan goes on; a bucket that cannot be listed raises ``S3Error``.

``bucket_exposure`` gives the reasons a bucket is, or may be made, public: ACL grants to
``AllUsers``/``AuthenticatedUsers`` (unless the public access block ignores public ACLs), a policy
``GetBucketPolicyStatus`` calls public (unless the block restricts public buckets), and a missing
or partial bucket public access block. The account-level block (``s3control``) is not read, so
a bucket flagged only for its missing block may still be covered by the account's.

Endpoint, region and credentials come from boto3's own environment (``AWS_ENDPOINT_URL``,
``AWS_DEFAULT_REGION``, ``AWS_PROFILE``...). botocore errors become ``S3Error`` in one place,
``_translated``. Object names are shown with any form of the key replaced by its fingerprint.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore import exceptions as boto
from botocore.config import Config

from cauterize.errors import CauterizeError, InputError
from cauterize.locate.findings import Finding
from cauterize.locate.matcher import Matcher
from cauterize.secret import Secret

#: Most bytes read from one object version; a larger one is scanned this far and reported.
MAX_OBJECT_BYTES = 256 << 20
IAM_ACTIONS = (
    "s3:ListBucketVersions",
    "s3:GetObjectVersion",
    "s3:GetBucketAcl",
    "s3:GetBucketPolicyStatus",
    "s3:GetBucketPublicAccessBlock",
)
_GRANT = (
    f"Grant {', '.join(IAM_ACTIONS)} on the bucket (and kms:Decrypt on its KMS key if objects use one), then rerun."
)
_PUBLIC_GROUPS = {
    "http://acs.amazonaws.com/groups/global/AllUsers": "AllUsers (anyone)",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers": "AuthenticatedUsers (any AWS account)",
}
_BLOCK_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
_ABSENT = {"NoSuchBucketPolicy", "NoSuchPublicAccessBlockConfiguration"}
_HINTS = {
    "NoSuchBucket": "Check the bucket name and the account AWS credentials point at.",
    "InvalidObjectState": "The version is archived (Glacier or Deep Archive): restore it to scan it.",
}
_RETRYABLE = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling"}
_NETWORK = (boto.EndpointConnectionError, boto.ConnectTimeoutError, boto.ReadTimeoutError)
_CONFIG = Config(connect_timeout=5, read_timeout=60)  # retries: boto3's environment (AWS_MAX_ATTEMPTS...)
# Bucket names: 3-63 of a-z 0-9 . - starting and ending with a letter or digit (legacy upper case too).
_URL = re.compile(r"^s3://(?P<bucket>[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9])(?:/(?P<prefix>.*))?$")


class S3Error(CauterizeError):
    """An S3 call failed: the source could not be scanned completely."""

    exit_code = 3  # the operation could not complete: incomplete, not an internal error
    remediation = _GRANT


@dataclass
class S3Result:
    """What a scan of one ``s3://`` URL found: copies of the key, why the bucket is public
    (empty: not public as far as the bucket's own settings say) and what could not be read."""

    url: str
    bucket: str
    findings: list[Finding] = field(default_factory=list)
    public_reasons: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://BUCKET[/PREFIX]`` as ``(bucket, prefix)``; ``InputError`` if it is not one."""
    match = _URL.match(url.strip())
    if match is None or ".." in match["bucket"]:
        raise InputError(f"S3 URL {url!r}: expected s3://BUCKET[/PREFIX] with a valid bucket name")
    return match["bucket"], match["prefix"] or ""


def new_s3_client() -> Any:
    """A boto3 S3 client from boto3's own environment, with connect and read timeouts."""
    import boto3

    with _translated("s3", "client"):
        return boto3.session.Session().client("s3", config=_CONFIG)


def scan_s3(url: str, secret: Secret, *, client: Any = None, max_bytes: int = MAX_OBJECT_BYTES) -> S3Result:
    """Every copy of ``secret`` in every object version under ``url``, and the bucket's exposure.

    One finding per (version, encoding): ``location`` ``s3://BUCKET/KEY?versionId=ID`` (no query
    for an unversioned bucket's ``null`` version), ``path`` the object key, ``first_seen`` that
    version's LastModified, ``reachable`` True for the latest version and False for noncurrent
    ones (a version behind a delete marker is noncurrent). Raises ``InputError`` for a malformed
    URL and ``S3Error`` when the bucket cannot be listed; everything else lands in ``errors``.
    """
    bucket, prefix = parse_s3_url(url)
    client = client if client is not None else new_s3_client()
    matcher = Matcher(secret)
    result = S3Result(url, bucket)
    result.public_reasons = bucket_exposure(bucket, client, errors=result.errors)
    for version in _versions(client, bucket, prefix):
        result.findings.extend(_scan_version(client, bucket, version, matcher, max_bytes, result.errors))
    return result


def bucket_exposure(bucket: str, client: Any, *, errors: list[str] | None = None) -> list[str]:
    """Why ``bucket`` is, or may be made, public (one short sentence each; empty if neither).

    Calls ``GetPublicAccessBlock``, ``GetBucketAcl`` and ``GetBucketPolicyStatus``. With ``errors``
    a check that fails is named there and the others still run; without, its ``S3Error`` is raised.
    """
    reasons: list[str] = []
    block: dict[str, bool] = {}
    with _collected(errors):
        with _translated(bucket, "GetPublicAccessBlock"):
            block = _absent_as_empty(lambda: client.get_public_access_block(Bucket=bucket)).get(
                "PublicAccessBlockConfiguration", {}
            )
        missing = [flag for flag in _BLOCK_FLAGS if not block.get(flag)]
        if len(missing) == len(_BLOCK_FLAGS):
            reasons.append("no public access block on the bucket: an ACL or policy can make it public")
        elif missing:
            reasons.append(f"partial public access block: {', '.join(missing)} off")
    with _collected(errors), _translated(bucket, "GetBucketAcl"):
        if not block.get("IgnorePublicAcls"):
            for grant in client.get_bucket_acl(Bucket=bucket).get("Grants", []):
                group = _PUBLIC_GROUPS.get(grant.get("Grantee", {}).get("URI", ""))
                if group:
                    reasons.append(f"ACL grants {grant.get('Permission', '?')} to {group}")
    with _collected(errors), _translated(bucket, "GetBucketPolicyStatus"):
        status = _absent_as_empty(lambda: client.get_bucket_policy_status(Bucket=bucket))
        if status.get("PolicyStatus", {}).get("IsPublic") and not block.get("RestrictPublicBuckets"):
            reasons.append("bucket policy is public (GetBucketPolicyStatus IsPublic)")
    return reasons


def _versions(client: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object version under ``prefix`` (delete markers are listed apart and skipped)."""
    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
    with _translated(bucket, "ListObjectVersions"):
        for page in pages:
            yield from page.get("Versions", [])


def _scan_version(
    client: Any, bucket: str, version: dict[str, Any], matcher: Matcher, max_bytes: int, errors: list[str]
) -> list[Finding]:
    key, version_id = version["Key"], version.get("VersionId") or "null"
    location = matcher.redact(f"s3://{bucket}/{key}" + ("" if version_id == "null" else f"?versionId={version_id}"))
    size = int(version.get("Size", 0))
    request: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id != "null":
        request["VersionId"] = version_id
    if size > max_bytes:
        request["Range"] = f"bytes=0-{max_bytes - 1}"
        errors.append(f"{location}: {size} bytes, only the first {max_bytes} scanned (MAX_OBJECT_BYTES)")
    try:
        with _translated(bucket, "GetObject"):
            body = client.get_object(**request)["Body"]
            try:
                data = _read(body, max_bytes)
            finally:
                body.close()
    except S3Error as exc:
        errors.append(f"{location}: not scanned: {exc.one_line()}")
        return []
    encodings = {match.encoding for match in matcher.scan(data)}
    encodings |= {match.encoding for match in matcher.find(key.encode())}  # the object's name itself
    modified: datetime = version["LastModified"]
    first_seen = modified.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        Finding(
            source="s3",
            location=location,
            path=matcher.redact(key),
            reachable=bool(version.get("IsLatest")),
            encoding=encoding,
            first_seen=first_seen,
            kind="file",
        )
        for encoding in sorted(encodings)
    ]


def _read(body: Any, limit: int, chunk: int = 1 << 20) -> bytes:
    """Up to ``limit`` bytes of a streaming body, read a chunk at a time."""
    data = bytearray()
    while len(data) < limit:
        piece = body.read(min(chunk, limit - len(data)))
        if not piece:
            break
        data += piece
    return bytes(data)


def _absent_as_empty(call: Any) -> dict[str, Any]:
    """The call's answer, or ``{}`` when S3 says the configuration does not exist."""
    try:
        return call()
    except boto.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _ABSENT:
            return {}
        raise


@contextmanager
def _collected(errors: list[str] | None) -> Iterator[None]:
    """With an ``errors`` list, an ``S3Error`` inside becomes one line there; without, it is raised."""
    try:
        yield
    except S3Error as exc:
        if errors is None:
            raise
        errors.append(exc.one_line())


@contextmanager
def _translated(bucket: str, operation: str) -> Iterator[None]:
    """The one place botocore errors become ``S3Error``: bucket, operation and AWS error code only."""
    what = f"s3 {bucket}: {operation}"
    try:
        yield
    except boto.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        raise S3Error(
            f"{what} failed ({code})", remediation=_HINTS.get(code, _GRANT), retryable=code in _RETRYABLE
        ) from exc
    except boto.NoCredentialsError as exc:
        hint = "Provide AWS credentials the way boto3 finds them (AWS_PROFILE, AWS_ACCESS_KEY_ID, a role)."
        raise S3Error(f"{what} failed (no AWS credentials)", remediation=hint) from exc
    except boto.NoRegionError as exc:
        raise S3Error(f"{what} failed (no region)", remediation="Set AWS_DEFAULT_REGION.") from exc
    except boto.BotoCoreError as exc:
        network = isinstance(exc, _NETWORK)
        hint = (
            "Check connectivity to S3 (AWS_ENDPOINT_URL if set, proxies, VPC endpoint), then rerun."
            if network
            else _GRANT
        )
        raise S3Error(f"{what} failed ({type(exc).__name__})", remediation=hint, retryable=network) from exc


__all__ = ["IAM_ACTIONS", "MAX_OBJECT_BYTES", "S3Error", "S3Result", "bucket_exposure", "parse_s3_url", "scan_s3"]
