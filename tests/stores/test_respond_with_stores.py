"""Issue 4's acceptance: a leaked OpenAI key living in AWS Secrets Manager (a JSON field), Vault KV v2
and a .env file; `cauterize respond --yes --json` heals all three against real moto and OpenBao."""

import json
import os
import subprocess
import sys

import pytest

from cauterize.sandbox.openai import OpenAIEmulator
from cauterize.sandbox.server import serve

pytestmark = pytest.mark.slow


def _cauterize(*args, env, timeout=300):
    return subprocess.run(
        [sys.executable, "-c", "from cauterize.cli import entry; entry()", *args],
        capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def org():
    emulator = OpenAIEmulator()
    admin = emulator.add_admin_key()
    project = emulator.add_project("app")
    _, leaked = emulator.add_user_key(project, name="leaked")
    with serve(emulator) as app:
        yield emulator, f"{app.url}/v1", admin, leaked


def test_respond_rotates_aws_vault_and_dotenv(tmp_path, org, secretsmanager, secret_name, vault_client, kv_path):
    emulator, base_url, admin, leaked = org
    document = '{"DATABASE_URL": "postgres://db/app", "OPENAI_API_KEY": "%s", "FEATURE": true}' % leaked
    secretsmanager.create_secret(Name=secret_name, SecretString=document)
    vault_client.secrets.kv.v2.create_or_update_secret(
        path=kv_path, mount_point="secret", secret={"OPENAI_API_KEY": leaked, "REGION": "eu"}
    )
    stray = secret_name + "-copy"
    secretsmanager.create_secret(Name=stray, SecretString=leaked)  # a copy the runbook does not know
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"# app\nLOG=info\nOPENAI_API_KEY={leaked}\nPORT=8080\n")
    runbook = tmp_path / "runbook.yaml"
    runbook.write_text(
        "version: 1\nname: stores-acceptance\n"
        "key: {provider: openai, source: env:LEAKED}\n"
        "stores:\n"
        f"  - {{type: aws-secrets-manager, secret_id: {secret_name}, field: OPENAI_API_KEY}}\n"
        f"  - {{type: vault-kv2, mount: secret, path: {kv_path}, field: OPENAI_API_KEY}}\n"
        "  - {type: dotenv, path: .env, variable: OPENAI_API_KEY}\n"
    )
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_ADMIN_KEY": admin, "LEAKED": leaked,
           "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": ""}

    scan = _cauterize("stores", "scan", str(runbook), "--key-env", "LEAKED", "--json", env=env)
    assert scan.returncode == 0, scan.stderr
    hits = json.loads(scan.stdout)["hits"]
    assert f"aws-sm:{secret_name}#OPENAI_API_KEY" in hits and f"vault:secret/{kv_path}#OPENAI_API_KEY" in hits

    done = _cauterize("respond", str(runbook), "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)
    new_fp = record["new_key"]["fingerprint"]
    from cauterize.secret import fingerprint_of

    current = json.loads(secretsmanager.get_secret_value(SecretId=secret_name, VersionStage="AWSCURRENT")["SecretString"])
    previous = json.loads(secretsmanager.get_secret_value(SecretId=secret_name, VersionStage="AWSPREVIOUS")["SecretString"])
    assert fingerprint_of(current["OPENAI_API_KEY"]) == new_fp
    assert current["DATABASE_URL"] == "postgres://db/app" and current["FEATURE"] is True
    assert previous["OPENAI_API_KEY"] == leaked

    data = vault_client.secrets.kv.v2.read_secret_version(path=kv_path, mount_point="secret", raise_on_deleted_version=True)
    assert fingerprint_of(data["data"]["data"]["OPENAI_API_KEY"]) == new_fp and data["data"]["data"]["REGION"] == "eu"

    new = current["OPENAI_API_KEY"]
    assert dotenv.read_text() == f"# app\nLOG=info\nOPENAI_API_KEY={new}\nPORT=8080\n"
    assert not emulator.is_live(leaked) and emulator.is_live(new)
    lingering = [item["text"] for item in record["action_items"]]
    assert any("AWSPREVIOUS" in text for text in lingering), lingering
    assert any(text.startswith(f"aws-sm:{stray} also holds the leaked key") for text in lingering), lingering
    assert leaked not in done.stdout + done.stderr and new not in done.stdout + done.stderr
