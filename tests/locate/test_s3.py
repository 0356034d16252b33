"""S3 locate against moto's real server: every version, every encoding, and public buckets flagged.

The server is started once for this module (the same way tests/stores/conftest.py does it): a
subprocess on a free loopback port with a private home, killed with the module, or with pytest.
"""

from __future__ import annotations

import base64
import ctypes
import gzip
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest

from cauterize.errors import InputError
from cauterize.locate.s3 import S3Error, bucket_exposure, parse_s3_url, scan_s3
from cauterize.secret import Secret

FULL_BLOCK = {
    flag: True for flag in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
}


def _preexec():
    if sys.platform == "linux":  # SIGTERM the server if pytest dies without its teardown
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        return lambda: prctl(1, signal.SIGTERM)
    return None


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory) -> Iterator[str]:
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        pytest.skip("moto_server is not installed: `pip install -e '.[test]'` provides it")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home = tmp_path_factory.mktemp("moto-s3")
    env = {"HOME": str(home), "TMPDIR": str(home), "PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
    with (home / "moto.log").open("wb") as log:
        process = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(port)],
            env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_preexec(),  # noqa: PLW1509
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start: {(home / 'moto.log').read_text(errors='replace')[-2000:]}")
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def s3(moto_url, monkeypatch, tmp_path):
    """boto3's environment pointed at moto (fake credentials, no retries) and a client to arrange buckets."""
    import boto3

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    return boto3.session.Session().client("s3")


def _bucket(s3, *, versioned: bool = False, acl: str | None = None, block: dict | None = None) -> str:
    name = f"leak-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name, **({"ACL": acl} if acl else {}))
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    if block:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
    return name


def _versions(s3, bucket: str, key: str) -> list[dict]:
    return [v for v in s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"] if v["Key"] == key]


def _iso(version: dict) -> str:
    return version["LastModified"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _assert_no_value(result, value: str) -> None:
    text = json.dumps([f.to_dict() for f in result.findings]) + json.dumps(result.errors + result.public_reasons)
    assert value not in text


def test_every_version_every_encoding_and_not_the_decoy(s3, make_key):
    value, decoy = make_key(), make_key()
    bucket = _bucket(s3, versioned=True, block=FULL_BLOCK)
    s3.put_object(Bucket=bucket, Key="app/.env", Body=f"OPENAI_API_KEY={value}\n".encode())
    s3.put_object(Bucket=bucket, Key="app/.env", Body=b"OPENAI_API_KEY=redacted\n")  # overwritten: old version holds it
    wrapped = base64.b64encode(secrets.token_bytes(7) + value.encode() + b"\n").decode()
    s3.put_object(Bucket=bucket, Key="app/secret.json", Body=json.dumps({"kind": "Secret", "data": {"k": wrapped}}))
    s3.put_object(Bucket=bucket, Key="logs/run.log.gz", Body=gzip.compress(f"auth with {value}\n".encode()))
    s3.put_object(Bucket=bucket, Key="logs/other.txt", Body=f"KEY={decoy}\n".encode())
    s3.put_object(Bucket=bucket, Key="gone.txt", Body=f"{value}".encode())
    s3.delete_object(Bucket=bucket, Key="gone.txt")  # a delete marker on top: the version is noncurrent

    result = scan_s3(f"s3://{bucket}", Secret(value))

    assert result.errors == [] and result.public_reasons == []
    found = {(f.path, f.encoding, f.reachable) for f in result.findings}
    assert found == {
        ("app/.env", "raw", False),
        ("app/secret.json", "base64", True),
        ("logs/run.log.gz", "raw", True),
        ("gone.txt", "raw", False),
    }
    old, current = sorted(_versions(s3, bucket, "app/.env"), key=lambda v: v["IsLatest"])
    env_finding = next(f for f in result.findings if f.path == "app/.env")
    assert env_finding.location == f"s3://{bucket}/app/.env?versionId={old['VersionId']}"
    assert env_finding.first_seen == _iso(old)
    assert current["VersionId"] not in env_finding.location
    assert all(f.source == "s3" and f.kind == "file" and f.first_seen.endswith("Z") for f in result.findings)
    _assert_no_value(result, value)


def test_prefix_limits_the_scan_and_unversioned_objects_have_no_version_in_location(s3, make_key):
    value = make_key()
    bucket = _bucket(s3, block=FULL_BLOCK)
    s3.put_object(Bucket=bucket, Key="in/a.txt", Body=value.encode())
    s3.put_object(Bucket=bucket, Key="out/b.txt", Body=value.encode())

    result = scan_s3(f"s3://{bucket}/in/", Secret(value))

    assert [(f.location, f.reachable) for f in result.findings] == [(f"s3://{bucket}/in/a.txt", True)]


def test_size_cap_scans_the_head_and_reports_the_rest(s3, make_key):
    value = make_key()
    bucket = _bucket(s3, block=FULL_BLOCK)
    s3.put_object(Bucket=bucket, Key="big.bin", Body=value.encode() + b"\0" * 4096)

    result = scan_s3(f"s3://{bucket}", Secret(value), max_bytes=1024)

    assert [f.path for f in result.findings] == ["big.bin"]
    assert len(result.errors) == 1 and "only the first 1024 scanned" in result.errors[0]


def test_a_key_in_an_object_name_is_found_and_never_shown(s3, make_key):
    value = make_key()
    bucket = _bucket(s3, block=FULL_BLOCK)
    s3.put_object(Bucket=bucket, Key=f"cache/{value}.json", Body=b"{}")

    result = scan_s3(f"s3://{bucket}", Secret(value))

    assert len(result.findings) == 1
    assert result.findings[0].path == f"cache/[{Secret(value).fingerprint}].json"
    _assert_no_value(result, value)


def test_public_read_acl_is_flagged(s3, make_key):
    bucket = _bucket(s3, acl="public-read")

    reasons = scan_s3(f"s3://{bucket}", Secret(make_key())).public_reasons

    assert "ACL grants READ to AllUsers (anyone)" in reasons
    assert any("no public access block" in reason for reason in reasons)


def test_public_policy_and_partial_block_are_flagged(s3):
    bucket = _bucket(s3, block={**FULL_BLOCK, "BlockPublicPolicy": False, "RestrictPublicBuckets": False})
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))

    reasons = bucket_exposure(bucket, s3)

    assert reasons == [
        "partial public access block: BlockPublicPolicy, RestrictPublicBuckets off",
        "bucket policy is public (GetBucketPolicyStatus IsPublic)",
    ]


def test_full_public_access_block_is_not_flagged_even_with_a_public_acl(s3):
    assert bucket_exposure(_bucket(s3, block=FULL_BLOCK), s3) == []
    assert bucket_exposure(_bucket(s3, acl="public-read", block=FULL_BLOCK), s3) == []  # ignored by IgnorePublicAcls


def test_missing_bucket_is_one_line_s3_error(s3, make_key):
    with pytest.raises(S3Error) as caught:
        scan_s3(f"s3://leak-missing-{uuid.uuid4().hex[:8]}", Secret(make_key()))
    assert caught.value.exit_code == 3
    assert "NoSuchBucket" in caught.value.one_line() and "\n" not in caught.value.one_line()


def test_exposure_checks_that_fail_are_errors_not_silence(s3):
    missing = f"leak-missing-{uuid.uuid4().hex[:8]}"
    errors: list[str] = []
    assert bucket_exposure(missing, s3, errors=errors) == []
    assert len(errors) == 3 and all("NoSuchBucket" in error for error in errors)
    with pytest.raises(S3Error, match="GetPublicAccessBlock"):
        bucket_exposure(missing, s3)


def test_s3_error_remediation_names_every_permission():
    for action in ("ListBucketVersions", "GetObjectVersion", "GetBucketAcl", "GetBucketPolicyStatus"):
        assert f"s3:{action}" in S3Error("x").remediation


@pytest.mark.parametrize(
    "url", ["bucket", "s3:/bucket", "s3://", "s3://ab", "s3://Bad_bucket!/x", "https://b.s3.amazonaws.com"]
)
def test_malformed_url_is_input_error(url):
    with pytest.raises(InputError):
        parse_s3_url(url)


def test_url_parts():
    assert parse_s3_url("s3://my-bucket") == ("my-bucket", "")
    assert parse_s3_url("s3://my-bucket/logs/2024/") == ("my-bucket", "logs/2024/")
