"""The IAM policy of `cauterize permissions --format aws-iam` lists exactly the AWS operations the
code makes: the aws-secrets-manager store's write, read, undo and scan, and the S3 reads of
locate, each run against moto with a botocore ``before-call`` hook recording every operation."""

from __future__ import annotations

import fnmatch
import json
import uuid

import boto3
from botocore.config import Config

from cauterize.locate.s3 import scan_s3
from cauterize.permissions import S3_LOCATE, SECRETS_MANAGER_DISCOVER, SECRETS_MANAGER_ROTATE, derive
from cauterize.runbook import load_runbook
from cauterize.secret import Secret
from cauterize.stores.aws_secrets_manager import AwsSecretsManagerStore, scan


def _recording(service: str, **kwargs):
    """A boto3 client whose every API call's operation name is appended to ``client.observed``."""
    client = boto3.session.Session().client(service, **kwargs)
    observed: list[str] = []
    client.meta.events.register("before-call", lambda model, **_: observed.append(model.name))
    client.observed = observed
    return client


def _policy(tmp_path, secret_name, *, discovery=False, s3=""):
    runbook = tmp_path / "runbook.yaml"
    runbook.write_text(
        "version: 1\nname: aws-least-privilege\nkey: {provider: openai, source: env:LEAKED}\n"
        f"stores:\n  - {{type: aws-secrets-manager, secret_id: {secret_name}, field: OPENAI_API_KEY}}\n"
        + (f"locate:\n  s3: [{s3}]\n" if s3 else "")
    )
    return derive(load_runbook(runbook), discovery=discovery)["aws-iam"].document


def _statement(policy, sid):
    return next(s for s in policy["Statement"] if s["Sid"] == sid)


def test_rotation_actions_are_exactly_those_the_store_calls(tmp_path, aws_env, secretsmanager, secret_name, make_key):
    client = _recording("secretsmanager")
    old, new = make_key(), make_key()

    fresh = AwsSecretsManagerStore(secret_name + "-new", "OPENAI_API_KEY", client=client)
    created = fresh.write(Secret(new))  # DescribeSecret (missing), CreateSecret, GetSecretValue
    created.undo()  # DeleteSecret
    secretsmanager.create_secret(Name=secret_name, SecretString=json.dumps({"OPENAI_API_KEY": old, "A": 1}))
    store = AwsSecretsManagerStore(secret_name, "OPENAI_API_KEY", client=client)
    written = store.write(Secret(new))  # Describe, Get, Put (AWSPENDING), Get, UpdateSecretVersionStage x2, Get
    written.undo()  # UpdateSecretVersionStage
    assert store.read().fingerprint == Secret(old).fingerprint  # GetSecretValue
    rotation = set(client.observed)

    client.observed.clear()
    assert secret_name + "#OPENAI_API_KEY" in scan(Secret(old), client=client)  # ListSecrets, GetSecretValue...
    sweep = set(client.observed)

    assert rotation == set(SECRETS_MANAGER_ROTATE)
    assert sweep == set(SECRETS_MANAGER_DISCOVER)
    policy = _policy(tmp_path, secret_name)
    assert _statement(policy, "RotateRunbookSecrets")["Action"] == sorted(f"secretsmanager:{op}" for op in rotation)
    assert not any(s["Sid"].startswith("Discover") for s in policy["Statement"])  # the sweep is opt-in
    wide = _policy(tmp_path, secret_name, discovery=True)
    granted = {a for s in wide["Statement"] for a in s["Action"] if a.startswith("secretsmanager:")}
    assert granted == {f"secretsmanager:{op}" for op in rotation | sweep}


def test_the_arn_pattern_matches_the_secret_and_no_other(tmp_path, aws_env, secretsmanager, secret_name):
    arn = secretsmanager.create_secret(Name=secret_name, SecretString="x")["ARN"]
    sibling = secretsmanager.create_secret(Name=secret_name + "-copy", SecretString="x")["ARN"]
    nested = secretsmanager.create_secret(Name=secret_name + "/nested", SecretString="x")["ARN"]
    (pattern,) = _statement(_policy(tmp_path, secret_name), "RotateRunbookSecrets")["Resource"]
    assert fnmatch.fnmatchcase(arn, pattern)
    assert not fnmatch.fnmatchcase(sibling, pattern) and not fnmatch.fnmatchcase(nested, pattern)


def test_locate_s3_actions_are_exactly_those_the_scan_makes(tmp_path, aws_env, make_key):
    client = _recording("s3", config=Config(s3={"addressing_style": "path"}))
    bucket = f"leaks-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    leaked = make_key()
    client.put_object(Bucket=bucket, Key="app/.env", Body=f"KEY={leaked}\n".encode())
    client.put_object(Bucket=bucket, Key="app/.env", Body=b"KEY=rotated\n")
    client.observed.clear()

    result = scan_s3(f"s3://{bucket}/app/", Secret(leaked), client=client)
    assert result.findings
    observed = set(client.observed)
    assert observed == set(S3_LOCATE)
    policy = _policy(tmp_path, "unused", s3=f"s3://{bucket}/app/")
    granted = {a for s in policy["Statement"] if s["Sid"].startswith("LocateS3") for a in s["Action"]}
    assert granted == {action for op in observed for action in S3_LOCATE[op]}
    listing = next(s for s in policy["Statement"] if s["Sid"].endswith("List"))
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["app/*"]}}
    objects = next(s for s in policy["Statement"] if s["Sid"].endswith("Objects"))
    assert objects["Resource"] == [f"arn:aws:s3:::{bucket}/app/*"]
