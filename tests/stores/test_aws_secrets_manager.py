"""AWS Secrets Manager store against moto's real server (see conftest.py)."""

from __future__ import annotations

import json

import pytest
from botocore.stub import Stubber

from cauterize.errors import KeySourceError, StoreError
from cauterize.runbook import AwsSecretsManagerStore as StoreConfig
from cauterize.secret import Secret, load_key
from cauterize.stores import aws_secrets_manager
from cauterize.stores.aws_secrets_manager import AwsSecretsManagerStore, scan, set_json_field
from cauterize.stores.base import open_store


def _document(key: str) -> str:
    # Odd spacing, a float written with an exponent, a nested object, non-ASCII escapes: all must survive.
    head = '{ "DATABASE_URL":"postgres://app@db/app",  "OPENAI_API_KEY" : "'
    return head + key + '",\n "ratio": 1.0e0, "nested": {"a": [1, 2]}, "name": "\\u00e9t\\u00e9" }'


def _current(client, secret_id: str) -> str:
    # Always name the stage: moto's server answers a stage-less GetSecretValue with the version it last
    # created or put as current, not with the version UpdateSecretVersionStage moved AWSCURRENT to.
    return client.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")["SecretString"]


def _stages(client, secret_id: str) -> dict[str, list[str]]:
    return client.describe_secret(SecretId=secret_id)["VersionIdsToStages"]


def test_json_field_write_keeps_every_other_byte_and_moves_the_stages(secretsmanager, secret_name, make_key):
    old, new = make_key(), make_key()
    old_version = secretsmanager.create_secret(Name=secret_name, SecretString=_document(old))["VersionId"]
    store = AwsSecretsManagerStore(secret_name, "OPENAI_API_KEY")
    assert store.read() == Secret(old)

    write = store.write(Secret(new))

    current = secretsmanager.get_secret_value(SecretId=secret_name, VersionStage="AWSCURRENT")
    assert current["SecretString"] == _document(new)
    assert current["VersionId"] == write.version != old_version
    assert _stages(secretsmanager, secret_name) == {write.version: ["AWSCURRENT"], old_version: ["AWSPREVIOUS"]}
    previous = secretsmanager.get_secret_value(SecretId=secret_name, VersionStage="AWSPREVIOUS")
    assert previous["SecretString"] == _document(old)
    assert write.lingering == [
        f"aws-secrets-manager {secret_name}: version {old_version} (AWSPREVIOUS) still holds the old value"
    ]
    assert store.read() == Secret(new)
    assert old not in repr(write) and new not in repr(write)


def test_undo_moves_awscurrent_back_to_the_old_version(secretsmanager, secret_name, make_key):
    old, new = make_key(), make_key()
    old_version = secretsmanager.create_secret(Name=secret_name, SecretString=old)["VersionId"]
    store = AwsSecretsManagerStore(secret_name)  # no field: the whole secret is the key
    write = store.write(Secret(new))
    assert _current(secretsmanager, secret_name) == new

    write.undo()

    assert store.read() == Secret(old)
    assert _stages(secretsmanager, secret_name) == {old_version: ["AWSCURRENT"], write.version: ["AWSPREVIOUS"]}


def test_a_missing_secret_is_created_and_undo_deletes_it(secretsmanager, secret_name, make_key):
    new = make_key()
    store = AwsSecretsManagerStore(secret_name, "OPENAI_API_KEY")
    assert store.read() is None

    write = store.write(Secret(new))

    assert json.loads(_current(secretsmanager, secret_name)) == {"OPENAI_API_KEY": new}
    assert write.details["created"] and write.lingering == []
    write.undo()
    assert store.read() is None


def test_a_missing_field_is_added_and_nothing_lingers(secretsmanager, secret_name, make_key):
    new = make_key()
    secretsmanager.create_secret(Name=secret_name, SecretString='{"OTHER": "x"}')
    write = AwsSecretsManagerStore(secret_name, "OPENAI_API_KEY").write(Secret(new))
    assert _current(secretsmanager, secret_name) == f'{{"OTHER": "x", "OPENAI_API_KEY": "{new}"}}'
    assert write.lingering == []


def test_another_writer_moving_awscurrent_mid_write_is_refused(secretsmanager, secret_name, make_key):
    old, theirs, new = make_key(), make_key(), make_key()
    secretsmanager.create_secret(Name=secret_name, SecretString=old)

    class Racing:
        """The real client, except that another writer rotates right after our AWSPENDING put."""

        def __getattr__(self, name):
            return getattr(secretsmanager, name)

        def put_secret_value(self, **params):
            result = secretsmanager.put_secret_value(**params)
            secretsmanager.put_secret_value(SecretId=secret_name, SecretString=theirs)  # becomes AWSCURRENT
            return result

    with pytest.raises(StoreError) as caught:
        AwsSecretsManagerStore(secret_name, client=Racing()).write(Secret(new))
    assert "UpdateSecretVersionStage" in caught.value.message and "another writer" in caught.value.remediation
    assert _current(secretsmanager, secret_name) == theirs
    assert not [v for v, stages in _stages(secretsmanager, secret_name).items() if "AWSPENDING" in stages]


def test_a_field_on_a_non_json_secret_is_a_store_error_without_the_value(secretsmanager, secret_name, make_key):
    old = make_key()
    secretsmanager.create_secret(Name=secret_name, SecretString=old)
    with pytest.raises(StoreError) as caught:
        AwsSecretsManagerStore(secret_name, "OPENAI_API_KEY").write(Secret(make_key()))
    assert "is not a JSON object" in caught.value.message
    assert old not in caught.value.one_line()
    assert _current(secretsmanager, secret_name) == old


def test_an_unreachable_endpoint_is_a_one_line_store_error(aws_env, monkeypatch, secret_name, make_key):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard: nothing listens
    key = make_key()
    with pytest.raises(StoreError) as caught:
        AwsSecretsManagerStore(secret_name, "OPENAI_API_KEY").write(Secret(key))
    line = caught.value.one_line()
    assert secret_name in line and "EndpointConnectionError" in line and "AWS_ENDPOINT_URL" in line
    assert "\n" not in line and key not in line and caught.value.retryable


def test_access_denied_names_the_code_and_the_iam_actions(aws_env, secretsmanager, secret_name, make_key):
    """moto's server does not enforce IAM: botocore's own Stubber plays the AccessDenied answer."""
    key = make_key()
    with Stubber(secretsmanager) as stubber:
        stubber.add_client_error("describe_secret", service_error_code="AccessDeniedException", http_status_code=400)
        with pytest.raises(StoreError) as caught:
            AwsSecretsManagerStore(secret_name, client=secretsmanager).write(Secret(key))
    error = caught.value
    assert error.message == f"aws-secrets-manager {secret_name}: DescribeSecret failed (AccessDeniedException)"
    for action in ("GetSecretValue", "PutSecretValue", "UpdateSecretVersionStage", "DescribeSecret"):
        assert f"secretsmanager:{action}" in error.remediation
    assert key not in error.one_line() and not error.retryable


def test_resolve_reference_with_and_without_a_field(secretsmanager, secret_name, make_key):
    key = make_key()
    secretsmanager.create_secret(Name=secret_name, SecretString=_document(key))
    secretsmanager.create_secret(Name=secret_name + "-plain", SecretString=key + "\n")
    assert aws_secrets_manager.resolve_reference(f"{secret_name}#OPENAI_API_KEY") == Secret(key)
    assert load_key(f"aws-sm:{secret_name}-plain") == Secret(key)  # through the key source dispatch
    with pytest.raises(KeySourceError, match="does not exist or holds no key"):
        aws_secrets_manager.resolve_reference(f"{secret_name}#ABSENT")
    with pytest.raises(KeySourceError):
        load_key(f"aws-sm:{secret_name}-never-created")


def test_scan_finds_the_secrets_holding_the_fingerprint_and_no_other(secretsmanager, secret_name, make_key):
    leaked, other = make_key(), make_key()
    secretsmanager.create_secret(Name=secret_name, SecretString=_document(leaked))
    secretsmanager.create_secret(Name=secret_name + "-plain", SecretString=leaked)
    secretsmanager.create_secret(Name=secret_name + "-other", SecretString=_document(other))
    secretsmanager.create_secret(Name=secret_name + "-binary", SecretBinary=b"\x00\xff")

    hits = scan(Secret(leaked))

    assert hits == [f"{secret_name}#OPENAI_API_KEY", f"{secret_name}-plain"]
    assert scan(Secret(other), region="us-east-1") == [f"{secret_name}-other#OPENAI_API_KEY"]


def test_the_registry_opens_the_store_from_its_runbook_config(secret_name):
    config = StoreConfig(type="aws-secrets-manager", secret_id=secret_name, field="K", region="eu-west-1")
    store = open_store(config, None)
    assert isinstance(store, AwsSecretsManagerStore)
    assert store.describe() == f"aws-secrets-manager {secret_name} K"


@pytest.mark.parametrize(
    "document, expected",
    [
        ('{"K": "old", "K": "old2"}', '{"K": "new", "K": "new"}'),
        ("  {}  ", '  {"K": "new"}  '),
        ('{"a": {"K": "nested"}, "K" :"old"}', '{"a": {"K": "nested"}, "K" :"new"}'),
        ('{"b": "\\"}", "c": null}', '{"b": "\\"}", "c": null, "K": "new"}'),
    ],
)
def test_set_json_field_changes_only_the_top_level_value(document, expected):
    assert set_json_field(document, "K", "new") == expected
