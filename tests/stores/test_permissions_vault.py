"""The Vault policy of `cauterize permissions RUNBOOK --format vault`, loaded into a real OpenBao dev
server: a token holding only that policy rotates the runbook's secret, and is refused everywhere else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import hvac
import pytest

from cauterize.errors import StoreError
from cauterize.permissions import derive, render
from cauterize.runbook import load_runbook
from cauterize.sandbox.openai import OpenAIEmulator
from cauterize.sandbox.server import serve
from cauterize.secret import Secret, fingerprint_of
from cauterize.stores.vault import VaultKv2Store

# Runs the real entry point; registers the commands first if cli.py does not (yet) do it itself.
_ENTRY = """
import sys
from cauterize.cli import app, main
from cauterize.cli_permissions import permissions
if not any((c.name or getattr(c.callback, "__name__", "")) == "permissions" for c in app.registered_commands):
    app.command("permissions")(permissions)
sys.exit(main(sys.argv[1:]))
"""


def _cauterize(*args, env, timeout=300):
    return subprocess.run(
        [sys.executable, "-c", _ENTRY, *args],
        capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def _runbook(tmp_path, kv_path, *, destroy=False, extra=""):
    path = tmp_path / "runbook.yaml"
    path.write_text(
        "version: 1\nname: vault-least-privilege\n"
        "key: {provider: openai, source: env:LEAKED}\n"
        "stores:\n"
        f"  - {{type: vault-kv2, mount: secret, path: {kv_path}, field: OPENAI_API_KEY, "
        f"destroy_old_versions: {str(destroy).lower()}}}\n" + extra
    )
    return path


def _token_with_only(vault_client, policy: str) -> str:
    name = f"cauterize-{uuid.uuid4().hex[:8]}"
    vault_client.sys.create_or_update_policy(name=name, policy=policy)
    created = vault_client.auth.token.create(policies=[name], no_default_policy=True, ttl="10m")
    return created["auth"]["client_token"]


def _store(vault_env, token, path, *, destroy=False):
    client = hvac.Client(url=vault_env[0], token=token, timeout=10)
    return VaultKv2Store("secret", path, "OPENAI_API_KEY", destroy, client=client)


def test_the_policy_allows_the_rotation_and_nothing_else(tmp_path, vault_env, vault_client, kv_path, make_key):
    old, new = make_key(), make_key()
    vault_client.secrets.kv.v2.create_or_update_secret(
        path=kv_path, mount_point="secret", secret={"OPENAI_API_KEY": old, "REGION": "eu"})
    policy = render(derive(load_runbook(_runbook(tmp_path, kv_path, destroy=True))), "vault")
    token = _token_with_only(vault_client, policy)

    written = _store(vault_env, token, kv_path, destroy=True).write(Secret(new))
    current = vault_client.secrets.kv.v2.read_secret_version(path=kv_path, mount_point="secret",
                                                             raise_on_deleted_version=True)["data"]["data"]
    assert fingerprint_of(current["OPENAI_API_KEY"]) == Secret(new).fingerprint and current["REGION"] == "eu"
    assert written.details["destroyed_versions"] == [1] and "destroy_error" not in written.details
    assert written.lingering == []

    elsewhere = f"{kv_path}-other"
    with pytest.raises(StoreError, match="403"):
        _store(vault_env, token, elsewhere).write(Secret(new))
    with pytest.raises(StoreError, match="403"):
        _store(vault_env, token, elsewhere).read()
    with pytest.raises(StoreError, match="403"):  # a sibling path under the same prefix is not granted either
        _store(vault_env, token, kv_path + "/nested").write(Secret(new))
    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=vault_env[0], token=token).sys.create_or_update_policy(name="escalate", policy=policy)
    assert vault_client.secrets.kv.v2.read_secret_metadata(path=kv_path, mount_point="secret")["data"][
        "current_version"] == 2


def test_without_destroy_old_versions_the_token_cannot_destroy(tmp_path, vault_env, vault_client, kv_path, make_key):
    old, new = make_key(), make_key()
    vault_client.secrets.kv.v2.create_or_update_secret(path=kv_path, mount_point="secret",
                                                       secret={"OPENAI_API_KEY": old})
    policy = render(derive(load_runbook(_runbook(tmp_path, kv_path))), "vault")
    assert "/destroy/" not in policy
    token = _token_with_only(vault_client, policy)

    written = _store(vault_env, token, kv_path).write(Secret(new))  # the runbook's own store: no destroy asked
    assert written.lingering and written.details["destroyed_versions"] == []
    written.undo()  # rollback writes the previous data back as a new version: allowed
    assert _store(vault_env, vault_client.token, kv_path).read().fingerprint == Secret(old).fingerprint

    greedy = _store(vault_env, token, kv_path, destroy=True).write(Secret(new))
    assert "403" in greedy.details["destroy_error"] and greedy.lingering  # refused, and reported as lingering


def test_key_sources_in_vault_are_readable_only(tmp_path, vault_env, vault_client, kv_path, make_key):
    source = f"{kv_path}-admin"
    vault_client.secrets.kv.v2.create_or_update_secret(path=source, mount_point="secret",
                                                       secret={"OPENAI_ADMIN_KEY": make_key("sk-admin-")})
    runbook = _runbook(tmp_path, kv_path, extra=f"providers:\n  openai: {{admin_key: 'vault:secret/{source}#OPENAI_ADMIN_KEY'}}\n")
    policy = render(derive(load_runbook(runbook)), "vault")
    token = _token_with_only(vault_client, policy)
    reader = hvac.Client(url=vault_env[0], token=token)
    assert reader.secrets.kv.v2.read_secret_version(path=source, mount_point="secret", raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.Forbidden):
        reader.secrets.kv.v2.create_or_update_secret(path=source, mount_point="secret", secret={"x": "y"})


def test_discovery_adds_the_sweep_of_the_mount(tmp_path, vault_env, vault_client, kv_path, make_key):
    leaked = make_key()
    stray = f"{kv_path}-stray"
    vault_client.secrets.kv.v2.create_or_update_secret(path=stray, mount_point="secret", secret={"K": leaked})
    loaded = load_runbook(_runbook(tmp_path, kv_path))
    from cauterize.stores.vault import scan

    narrow = hvac.Client(url=vault_env[0], token=_token_with_only(vault_client, render(derive(loaded), "vault")))
    with pytest.raises(StoreError, match="403"):
        scan(Secret(leaked), client=narrow)
    wide = hvac.Client(url=vault_env[0],
                       token=_token_with_only(vault_client, render(derive(loaded, discovery=True), "vault")))
    assert f"secret/{stray}#K" in scan(Secret(leaked), client=wide)


@pytest.mark.slow
def test_respond_redeploys_with_a_token_holding_only_the_generated_policy(tmp_path, vault_env, vault_client, kv_path):
    emulator = OpenAIEmulator()
    admin = emulator.add_admin_key()
    project = emulator.add_project("app")
    _, leaked = emulator.add_user_key(project, name="leaked")
    vault_client.secrets.kv.v2.create_or_update_secret(
        path=kv_path, mount_point="secret", secret={"OPENAI_API_KEY": leaked, "REGION": "eu"})
    runbook = _runbook(tmp_path, kv_path)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": ""}

    printed = _cauterize("permissions", str(runbook), "--format", "vault", env=env)
    assert printed.returncode == 0, printed.stderr
    token = _token_with_only(vault_client, printed.stdout)
    with serve(emulator) as app:
        env.update({"OPENAI_BASE_URL": f"{app.url}/v1", "OPENAI_ADMIN_KEY": admin, "LEAKED": leaked,
                    "VAULT_TOKEN": token})
        done = _cauterize("respond", str(runbook), "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)
    data = vault_client.secrets.kv.v2.read_secret_version(path=kv_path, mount_point="secret",
                                                          raise_on_deleted_version=True)["data"]["data"]
    assert fingerprint_of(data["OPENAI_API_KEY"]) == record["new_key"]["fingerprint"] and data["REGION"] == "eu"
    assert not emulator.is_live(leaked)
    with pytest.raises(StoreError, match="403"):
        _store(vault_env, token, f"{kv_path}-elsewhere").write(Secret(data["OPENAI_API_KEY"]))
    assert leaked not in done.stdout + done.stderr
