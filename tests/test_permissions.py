"""`cauterize permissions RUNBOOK --format F`: every format, `all`, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from cauterize.errors import InputError
from cauterize.permissions import FORMATS, GCP_GOOGLE_PROVIDER, derive, github_repo, render, secret_arns
from cauterize.runbook import load_runbook

# Runs the real entry point; registers the command first if cli.py does not (yet) do it itself.
_ENTRY = """
import sys
from cauterize.cli import app, main
from cauterize.cli_permissions import permissions
if not any((c.name or getattr(c.callback, "__name__", "")) == "permissions" for c in app.registered_commands):
    app.command("permissions")(permissions)
sys.exit(main(sys.argv[1:]))
"""

EVERYTHING = """\
version: 1
name: everything
key: {provider: openai, source: 'aws-sm:prod/leaked#OPENAI_API_KEY'}
policy: {purge: push}
providers:
  openai: {admin_key: 'vault:secret/admin/openai#KEY', mint: manual}
  google: {project: demo-project}
  azure-openai: {subscription: 0000-sub, resource_group: rg-ai, account: ai-prod}
stores:
  - {type: aws-secrets-manager, secret_id: prod/openai, field: OPENAI_API_KEY, region: eu-west-1}
  - {type: vault-kv2, mount: kv, path: apps/chat, field: OPENAI_API_KEY}
  - {type: sops, path: secrets.enc.yaml, key_path: '["openai"]'}
  - {type: github-actions, repo: org/app, name: OPENAI_API_KEY, environment: production}
  - {type: kubernetes, namespace: prod, secret: chat, key: OPENAI_API_KEY, restart: deployment/chat}
  - {type: dotenv, path: .env, variable: OPENAI_API_KEY}
locate:
  git: [https://github.com/org/app.git, git@github.com:org/infra.git, /srv/repos/local]
  s3: [s3://logs-bucket]
  github_actions: [org/ci]
"""

SOPS_FILE = {
    "openai": "ENC[AES256_GCM,data:AAAA,iv:BBBB,tag:CCCC,type:str]",
    "sops": {
        "kms": [{"arn": "arn:aws:kms:eu-west-1:123456789012:key/1111-2222",
                 "role": "arn:aws:iam::123456789012:role/sops"}],
        "gcp_kms": [{"resource_id": "projects/p/locations/global/keyRings/r/cryptoKeys/sops"}],
        "azure_kv": [{"vault_url": "https://vault1.vault.azure.net", "name": "sops", "version": "v1"}],
        "hc_vault": [{"vault_address": "http://127.0.0.1:8200", "engine_path": "transit", "key_name": "sops"}],
        "version": "3.9.0",
    },
}


@pytest.fixture
def everything(tmp_path):
    (tmp_path / "secrets.enc.yaml").write_text(yaml.safe_dump(SOPS_FILE))
    path = tmp_path / "runbook.yaml"
    path.write_text(EVERYTHING)
    return path


def _cauterize(*args):
    return subprocess.run([sys.executable, "-c", _ENTRY, *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120, stdin=subprocess.DEVNULL)


def test_aws_policy_is_scoped_to_the_runbooks_resources(everything):
    policy = derive(load_runbook(everything))["aws-iam"].document
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["RotateRunbookSecrets"]["Resource"] == ["arn:aws:secretsmanager:eu-west-1:*:secret:prod/openai-??????"]
    assert by_sid["ReadKeySources"] == {"Sid": "ReadKeySources", "Effect": "Allow",
                                        "Action": ["secretsmanager:GetSecretValue"],
                                        "Resource": ["arn:aws:secretsmanager:*:*:secret:prod/leaked-??????"]}
    assert by_sid["SopsKmsDecrypt"]["Resource"] == ["arn:aws:kms:eu-west-1:123456789012:key/1111-2222"]
    assert by_sid["SopsKmsRoles"]["Action"] == ["sts:AssumeRole"]
    assert by_sid["LocateS3LogsBucketObjects"]["Resource"] == ["arn:aws:s3:::logs-bucket/*"]
    assert "Condition" not in by_sid["LocateS3LogsBucketList"]  # the whole bucket is searched
    assert all(s["Resource"] != "*" and s["Resource"] != ["*"] for s in policy["Statement"])
    account = derive(load_runbook(everything), aws_account="123456789012")["aws-iam"].document
    assert account["Statement"][0]["Resource"] == ["arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/openai-??????"]


def test_vault_policy_paths_and_capabilities(everything):
    text = render(derive(load_runbook(everything)), "vault")
    assert 'path "kv/data/apps/chat" {\n  capabilities = ["create", "read", "update"]\n}' in text
    assert 'path "kv/metadata/apps/chat" {\n  capabilities = ["read"]\n}' in text
    assert "kv/destroy" not in text and "*" not in text
    assert 'path "secret/data/admin/openai" {\n  capabilities = ["read"]\n}' in text  # the admin key's source
    assert 'path "transit/decrypt/sops" {\n  capabilities = ["update"]\n}' in text  # the sops file's key
    wide = render(derive(load_runbook(everything), discovery=True), "vault")
    assert 'path "kv/metadata/*" {\n  capabilities = ["list"]\n}' in wide
    assert 'path "kv/data/*" {\n  capabilities = ["read"]\n}' in wide


def test_gcp_azure_github_kubernetes_and_providers(everything):
    sections = derive(load_runbook(everything))
    role = yaml.safe_load(sections["gcp-iam"].document)
    assert role["includedPermissions"] == sorted([*GCP_GOOGLE_PROVIDER, "cloudkms.cryptoKeyVersions.useToDecrypt"])
    azure = sections["azure"].document
    assert "Microsoft.CognitiveServices/accounts/regenerateKey/action" in azure["Actions"]
    assert azure["DataActions"] == ["Microsoft.KeyVault/vaults/keys/decrypt/action"]
    assert azure["AssignableScopes"] == ["/subscriptions/0000-sub/resourceGroups/rg-ai"]
    assert any("accounts/ai-prod" in note for note in sections["azure"].notes)
    github = sections["github"].document
    assert github["per_repository"] == {
        "org/app": {"contents": "write", "environments": "write", "secrets": "write"},
        "org/ci": {"actions": "read"},
        "org/infra": {"contents": "write"},
    }
    assert github["fine_grained_token"]["permissions"] == {
        "actions": "read", "contents": "write", "environments": "write", "metadata": "read", "secrets": "write"}
    assert github["classic_token_scopes"] == ["repo", "workflow"]
    (role,) = yaml.safe_load_all(sections["kubernetes"].document)
    assert role["metadata"] == {"name": "cauterize-everything", "namespace": "prod"}
    assert [(r["resources"], r["resourceNames"], r["verbs"]) for r in role["rules"]] == [
        (["secrets"], ["chat"], ["get", "patch"]), (["deployments"], ["chat"], ["patch"])]
    providers = sections["providers"].document
    assert set(providers) == {"openai", "google", "azure-openai"}
    assert not any("service_accounts" in call for call in providers["openai"]["steps"]["rotate"]["calls"])  # manual
    # the exact admin-key scopes, IAM permissions and Azure actions of each step
    openai = providers["openai"]["steps"]
    assert openai["intake"]["scopes"] == ["api.management.read"]
    assert "api.management.write" in openai["revoke"]["scopes"] and openai["evidence"]["scopes"] == ["api.usage.read"]
    google = providers["google"]["steps"]
    assert "iam.serviceAccountKeys.create" in google["rotate"]["permissions"]
    assert "orgpolicy.policy.get" in google["intake"]["permissions"]
    assert "serviceusage.operations.get" in google["revoke"]["permissions"]
    assert google["evidence"]["permissions"] == ["monitoring.timeSeries.list"]
    assert set(GCP_GOOGLE_PROVIDER) == {p for step in google.values() for p in step["permissions"]}
    azure_steps = providers["azure-openai"]["steps"]
    assert azure_steps["revoke"]["actions"] == ["Microsoft.CognitiveServices/accounts/regenerateKey/action"]
    assert all(set(step["actions"]) <= set(azure["Actions"]) for step in azure_steps.values())


def test_a_small_runbook_needs_few_sections(tmp_path):
    path = tmp_path / "runbook.yaml"
    path.write_text("version: 1\nname: tiny\nkey: {provider: anthropic, source: env:K}\n"
                    "stores: [{type: dotenv, path: .env, variable: K}]\n")
    sections = derive(load_runbook(path))
    assert set(sections) == {"providers"}
    assert render(sections, "vault") == ""


def test_unreadable_sops_metadata_is_a_note(tmp_path):
    path = tmp_path / "runbook.yaml"
    path.write_text("version: 1\nname: sops\nkey: {provider: openai, source: env:K}\n"
                    "stores: [{type: sops, path: missing.enc.yaml, key_path: '[\"k\"]'}]\n")
    notes = derive(load_runbook(path))["providers"].notes
    assert any("missing.enc.yaml" in note for note in notes)


def test_render_refuses_an_unknown_format():
    with pytest.raises(InputError, match="--format"):
        render({}, "terraform")


@pytest.mark.parametrize(("location", "repo"), [
    ("https://github.com/org/app.git", "org/app"), ("https://github.com/org/app", "org/app"),
    ("git@github.com:org/app.git", "org/app"), ("ssh://git@github.com/org/app.git", "org/app"),
    ("https://gitlab.com/org/app.git", None), ("/srv/repos/app", None),
])
def test_github_repo(location, repo):
    assert github_repo(location) == repo


def test_secret_arns():
    assert secret_arns("prod/openai", None, None) == ["arn:aws:secretsmanager:*:*:secret:prod/openai-??????"]
    full = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/openai-AbC123"
    assert secret_arns(full, None, None) == [full]
    assert secret_arns(full[:-7], None, None) == [full[:-7] + "-??????"]


# ---- the command line -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "all"])
def test_cli_each_format_prints_only_its_document(everything, fmt):
    done = _cauterize("permissions", str(everything), "--format", fmt)
    assert done.returncode == 0, done.stderr
    assert done.stdout == render(derive(load_runbook(everything)), fmt)
    if fmt in ("aws-iam", "azure", "github", "providers"):
        json.loads(done.stdout)
    elif fmt in ("gcp-iam", "kubernetes"):
        list(yaml.safe_load_all(done.stdout))
    assert "note:" not in done.stdout


def test_cli_all_prints_every_section(everything):
    done = _cauterize("permissions", str(everything))
    assert done.returncode == 0, done.stderr
    headers = [line for line in done.stdout.splitlines() if line.startswith("# ---- ")]
    assert headers == [f"# ---- {f} ----" for f in FORMATS if f != "all"]


def test_cli_unknown_format_and_bad_runbook_exit_2(tmp_path, everything):
    done = _cauterize("permissions", str(everything), "--format", "terraform")
    assert done.returncode == 2 and "--format" in done.stderr and done.stdout == ""
    done = _cauterize("permissions", str(tmp_path / "nope.yaml"))
    assert done.returncode == 2 and "no such file" in done.stderr
    done = _cauterize("permissions", str(everything), "--aws-account", "12")
    assert done.returncode == 2 and "--aws-account" in done.stderr


def test_cli_a_format_the_runbook_does_not_need(tmp_path):
    path = tmp_path / "runbook.yaml"
    path.write_text("version: 1\nname: tiny\nkey: {provider: anthropic, source: env:K}\n")
    done = _cauterize("permissions", str(path), "--format", "aws-iam")
    assert done.returncode == 0 and done.stdout == "" and "needs no aws-iam permissions" in done.stderr
