"""Every store's static readiness: ``missing()`` (blocking) and ``notes()`` (advisory), before anything changes.

Each store is first checked in an environment configured the way its own tests configure it (moto,
OpenBao, the emulators, a temp dir, sops with age), where nothing may be missing; then with one piece
taken away, which must give one line naming it. No check may make a request: the emulators must have
recorded none, and endpoints that could be called (AWS, instance metadata, Vault, Prefect) point at a
port that listens but never answers, which must see no connection, and the check must stay fast.
Credentials are generated at run time; HOME is a fresh directory, so nothing of the machine's leaks in.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import yaml

from cauterize.sandbox.azure_key_vault import AzureKeyVaultEmulator, make_tls_files, serve_tls
from cauterize.sandbox.gcp_secret_manager import GcpSecretManagerEmulator
from cauterize.sandbox.github import GitHubEmulator
from cauterize.sandbox.kubernetes import KubernetesEmulator
from cauterize.sandbox.server import serve
from cauterize.stores import readiness
from cauterize.stores.aws_secrets_manager import AwsSecretsManagerStore
from cauterize.stores.azure_key_vault import AzureKeyVaultStore
from cauterize.stores.dotenv import DotenvStore
from cauterize.stores.gcp_secret_manager import TOKEN_ENV, GcpSecretManagerStore
from cauterize.stores.github_actions import GithubActionsStore
from cauterize.stores.kubernetes import KubernetesStore
from cauterize.stores.prefect_secret import PrefectSecretStore
from cauterize.stores.sops import SopsStore
from cauterize.stores.vault import VaultKv2Store

FAST = 0.5  # seconds: a check that tried the network would wait on the silent port far longer

_ISOLATED = ("AWS_", "VAULT_", "PREFECT_", "SOPS_", "AZURE_", "CLOUDSDK_", "KUBERNETES_SERVICE_")
_ALSO = ("GITHUB_TOKEN", "GITHUB_API_URL", "KUBECONFIG", "XDG_CONFIG_HOME", "GOOGLE_APPLICATION_CREDENTIALS",
         "NO_GCE_CHECK")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path) -> Path:
    """No store setting of the machine or of another test: a fresh HOME and none of the stores' variables."""
    for name in list(os.environ):
        if name.startswith(_ISOLATED) or name in _ALSO:
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def silent() -> Iterator[SimpleNamespace]:
    """A loopback port that accepts connections into its backlog and never answers: ``contacted()``
    says whether anything connected (a request to it would hang until its timeout)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)

    def contacted() -> bool:
        try:
            connection, _ = sock.accept()
        except BlockingIOError:
            return False
        connection.close()
        return True

    yield SimpleNamespace(url=f"http://127.0.0.1:{sock.getsockname()[1]}", contacted=contacted)
    sock.close()


def timed(store) -> tuple[list[str], list[str]]:
    """``readiness(store)``, which must return well within FAST: the best of three tries, so a busy
    machine does not fail it (a check waiting on the silent port would be slow every time)."""
    elapsed = []
    for _ in range(3):
        started = time.monotonic()
        result = readiness(store)
        elapsed.append(time.monotonic() - started)
        if elapsed[-1] < FAST:
            break
    assert min(elapsed) < FAST, f"a readiness check took {min(elapsed):.2f} s: long enough to have waited on the network"
    return result


def one_line(lines: list[str], *words: str) -> str:
    """The single line of ``lines``; it must name every word."""
    assert len(lines) == 1, lines
    assert all(word in lines[0] for word in words), lines[0]
    assert "\n" not in lines[0]
    return lines[0]


def as_unprivileged(check: Callable[[], list[str]]) -> list[str]:
    """``check()`` as a user who owns none of the files: this one, unless it is root (who may write
    anywhere); then in a forked child running as nobody."""
    if os.geteuid() != 0:
        return check()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, run the check, report, and leave without pytest's teardown
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write, json.dumps(check()).encode())
        except BaseException as exc:  # reported to the parent, which fails the test
            os.write(write, json.dumps({"error": repr(exc)}).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        answer = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert not isinstance(answer, dict), answer
    return answer


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory anyone may enter (tmp_path may not be, for nobody)."""
    path = Path(tempfile.mkdtemp(prefix="cauterize-preflight-"))
    path.chmod(0o755)
    yield path
    for sub in path.rglob("*"):
        if sub.is_dir():
            sub.chmod(0o755)
    shutil.rmtree(path)


def test_readiness_of_a_store_without_checks_is_empty():
    class Bare:
        kind = "bare"

    assert readiness(Bare()) == ([], [])


# ---- AWS Secrets Manager (moto) -------------------------------------------------------------------


@pytest.fixture
def aws(aws_env, monkeypatch, silent) -> SimpleNamespace:
    """moto's environment; instance metadata and (for the missing pieces) the endpoint on the silent port."""
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", silent.url)
    return SimpleNamespace(endpoint=aws_env, silent=silent, store=lambda **kw: AwsSecretsManagerStore("prod/openai", **kw))


def test_aws_configured_on_moto_is_ready(aws, secretsmanager):
    store = aws.store(field="OPENAI_API_KEY")
    assert timed(store) == ([], [])
    assert store.read() is None, "and the store really works from this environment"


def test_aws_checks_make_no_call(aws, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.silent.url)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")  # the last resort would be instance metadata, on the silent port too
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    missing, notes = timed(aws.store())
    assert missing == []
    one_line(notes, "credentials not found locally (instance metadata not checked)")
    assert not aws.silent.contacted()


@pytest.mark.parametrize(
    "unset, extra, words",
    [
        (["AWS_DEFAULT_REGION"], {}, ["no AWS region", "AWS_DEFAULT_REGION"]),
        (["AWS_DEFAULT_REGION"], {"AWS_REGION": "eu-west-1"}, ["boto3 does not read AWS_REGION"]),
        (["AWS_SECRET_ACCESS_KEY"], {}, ["incomplete AWS credentials", "AWS_SECRET_ACCESS_KEY"]),
        (["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"], {"AWS_EC2_METADATA_DISABLED": "true"},
         ["no AWS credentials", "AWS_ACCESS_KEY_ID"]),
        ([], {"AWS_PROFILE": "incident"}, ["AWS profile incident", "AWS_PROFILE"]),
        (["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"], {"AWS_WEB_IDENTITY_TOKEN_FILE": "/nonexistent/token"},
         ["web identity token", "AWS_ROLE_ARN"]),
    ],
)
def test_aws_each_missing_piece_is_one_line(aws, monkeypatch, unset, extra, words):
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.silent.url)
    for name in unset:
        monkeypatch.delenv(name)
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    missing, _ = timed(aws.store())
    one_line(missing, "aws-secrets-manager prod/openai", *words)
    assert not aws.silent.contacted()


def test_aws_region_and_credentials_from_the_runbook_and_shared_files(aws, monkeypatch, tmp_path):
    for name in ("AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    credentials = tmp_path / "no-aws-credentials"  # the file aws_env names
    credentials.write_text(f"[incident]\naws_access_key_id = {secrets.token_hex(10)}\n"
                           f"aws_secret_access_key = {secrets.token_hex(20)}\n")
    one_line(timed(aws.store(region="eu-west-1"))[0], "no AWS credentials")
    monkeypatch.setenv("AWS_PROFILE", "incident")
    assert timed(aws.store(region="eu-west-1")) == ([], [])
    one_line(timed(aws.store())[0], "no AWS region")


def test_aws_web_identity_is_a_note(aws, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    token = tmp_path / "web-identity-token"
    token.write_text(secrets.token_urlsafe(32))
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/cauterize")
    missing, notes = timed(aws.store())
    assert missing == []
    one_line(notes, "web identity", "not checked")
    assert not aws.silent.contacted()


# ---- Vault KV v2 (OpenBao) ------------------------------------------------------------------------


def test_vault_configured_on_openbao_is_ready(vault_env, kv_path):
    store = VaultKv2Store("secret", kv_path, "OPENAI_API_KEY")
    assert timed(store) == ([], [])
    assert store.read() is None, "and the store really works from this environment"


def test_vault_token_file_counts_like_hvac_reads_it(vault_env, monkeypatch, clean_environment, kv_path):
    _, token = vault_env
    monkeypatch.delenv("VAULT_TOKEN")
    store = VaultKv2Store("secret", kv_path, "OPENAI_API_KEY")
    one_line(timed(store)[0], "no Vault token", "VAULT_TOKEN", ".vault-token")
    (clean_environment / ".vault-token").write_text("")
    one_line(timed(store)[0], "no Vault token")
    (clean_environment / ".vault-token").write_text(token + "\n")
    assert timed(store) == ([], [])
    assert store.read() is None, "hvac found the same token"


@pytest.mark.parametrize("unset, words", [("VAULT_ADDR", ["VAULT_ADDR"]), ("VAULT_TOKEN", ["VAULT_TOKEN"])])
def test_vault_each_missing_piece_is_one_line_without_a_call(vault_env, monkeypatch, silent, unset, words):
    monkeypatch.setenv("VAULT_ADDR", silent.url)
    monkeypatch.delenv(unset)
    missing, notes = timed(VaultKv2Store("secret", "openai", "OPENAI_API_KEY"))
    one_line(missing, "vault-kv2 secret/openai", *words)
    assert notes == [] and not silent.contacted()


# ---- dotenv (a temp dir) --------------------------------------------------------------------------


def test_dotenv_existing_file_is_ready(tmp_path):
    path = tmp_path / ".env"
    path.write_text("OPENAI_API_KEY=placeholder\n")
    assert readiness(DotenvStore(path, "OPENAI_API_KEY")) == ([], [])


def test_dotenv_missing_file_or_directory_is_a_note_as_the_write_creates_them(tmp_path):
    for path in (tmp_path / ".env", tmp_path / "srv" / "app" / ".env"):
        missing, notes = readiness(DotenvStore(path, "OPENAI_API_KEY"))
        assert missing == []
        one_line(notes, str(path), "does not exist yet")


def test_dotenv_path_through_a_file_is_one_line(tmp_path):
    (tmp_path / "srv").write_text("not a directory")
    missing, _ = readiness(DotenvStore(tmp_path / "srv" / "app" / ".env", "OPENAI_API_KEY"))
    one_line(missing, f"{tmp_path / 'srv'} is not a directory")
    missing, _ = readiness(DotenvStore(tmp_path, "OPENAI_API_KEY"))
    one_line(missing, "is a directory")


def test_dotenv_unwritable_directory_and_unreadable_file_are_one_line(shared_dir):
    locked, open_ = shared_dir / "locked", shared_dir / "open"
    for directory in (locked, open_):
        directory.mkdir()
        (directory / ".env").write_text("OPENAI_API_KEY=placeholder\n")
        (directory / ".env").chmod(0o644)
    open_.chmod(0o777)
    locked.chmod(0o555)
    one_line(as_unprivileged(DotenvStore(locked / ".env", "OPENAI_API_KEY").missing), str(locked), "not writable")
    one_line(as_unprivileged(DotenvStore(locked / "new" / ".env", "OPENAI_API_KEY").missing), str(locked),
             "missing directories")
    assert as_unprivileged(DotenvStore(open_ / ".env", "OPENAI_API_KEY").missing) == []
    (open_ / ".env").chmod(0o600)
    one_line(as_unprivileged(DotenvStore(open_ / ".env", "OPENAI_API_KEY").missing), "not readable")


# ---- sops (the sops binary and age) ---------------------------------------------------------------

needs_age = pytest.mark.skipif(shutil.which("age-keygen") is None, reason="age-keygen is not installed")
KEY_PATH = '["openai"]["api_key"]'


@pytest.fixture
def sops_file(tmp_path, monkeypatch) -> SimpleNamespace:
    """An age identity made now, a creation rule for it, and a file sops encrypted to it."""
    from cauterize.stores.sops import sops_binary

    key_file = tmp_path / "age.key"
    subprocess.run(["age-keygen", "-o", str(key_file)], check=True, capture_output=True)
    recipient = next(line.split(": ", 1)[1] for line in key_file.read_text().splitlines() if "public key" in line)
    (tmp_path / ".sops.yaml").write_text(yaml.safe_dump({"creation_rules": [{"age": recipient}]}))
    path = tmp_path / "secrets.enc.yaml"
    path.write_text(yaml.safe_dump({"openai": {"api_key": "placeholder"}}))
    subprocess.run([sops_binary(), "encrypt", "--in-place", str(path)], cwd=tmp_path, check=True, capture_output=True)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))
    return SimpleNamespace(path=path, key_file=key_file, store=SopsStore(path, KEY_PATH))


@needs_age
def test_sops_configured_with_age_is_ready(sops_file):
    assert readiness(sops_file.store) == ([], [])


@needs_age
def test_sops_each_missing_piece_is_one_line(sops_file, monkeypatch, tmp_path, clean_environment):
    one_line(SopsStore(tmp_path / "absent.enc.yaml", KEY_PATH).missing(), "the file does not exist")

    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(tmp_path / "moved.key"))
    one_line(sops_file.store.missing(), "SOPS_AGE_KEY_FILE", "moved.key")

    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    one_line(sops_file.store.missing(), "no age identity", "SOPS_AGE_KEY_FILE", "sops/age/keys.txt")
    default = clean_environment / ".config" / "sops" / "age" / "keys.txt"  # where sops looks by default
    default.parent.mkdir(parents=True)
    shutil.copy(sops_file.key_file, default)
    assert readiness(sops_file.store) == ([], [])

    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"openai": {"api_key": "placeholder"}}))
    one_line(SopsStore(plain, KEY_PATH).missing(), "no sops metadata")


@needs_age
def test_sops_binary_missing_from_path_is_one_line(sops_file, monkeypatch, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setattr(sys, "executable", str(empty / "python"))  # nothing beside "this Python" either
    monkeypatch.setenv("PATH", str(empty))
    one_line(sops_file.store.missing(), "sops binary is not found", "PATH")


@needs_age
def test_sops_unwritable_directory_is_one_line(shared_dir, monkeypatch):
    directory = shared_dir / "deploy"
    directory.mkdir()
    path = directory / "secrets.enc.yaml"
    path.write_text(yaml.safe_dump({"openai": {"api_key": "ENC[...]"}, "sops": {"age": [{"recipient": "age1x"}]}}))
    path.chmod(0o644)
    monkeypatch.setenv("SOPS_AGE_KEY", "present")  # an identity is configured; its value is never read
    directory.chmod(0o555)
    one_line(as_unprivileged(SopsStore(path, KEY_PATH).missing), str(directory), "not writable")


def test_sops_keys_only_sops_can_try_are_notes(tmp_path):
    path = tmp_path / "secrets.enc.json"
    metadata = {"kms": [{"arn": "arn:aws:kms:us-east-1:123456789012:key/example"}], "age": [{"recipient": "age1x"}]}
    path.write_text(json.dumps({"openai": {"api_key": "ENC[...]"}, "sops": metadata}))
    missing, notes = readiness(SopsStore(path, KEY_PATH))
    assert missing == []
    assert len(notes) == 2 and any("AWS KMS" in note and "not checked" in note for note in notes)
    assert any("no age identity" in note for note in notes), "age without an identity is advisory beside KMS"


# ---- GitHub Actions (the GitHub emulator) ---------------------------------------------------------


@pytest.fixture
def github() -> GitHubEmulator:
    emulator = GitHubEmulator()
    emulator.add_repo("org/app")
    return emulator


def test_github_actions_token_given_or_in_the_environment_is_ready(github, monkeypatch):
    transport = httpx.MockTransport(github)
    assert readiness(GithubActionsStore("org/app", "OPENAI_API_KEY", token=github.add_token(),
                                        transport=transport)) == ([], [])
    monkeypatch.setenv("GITHUB_TOKEN", github.add_token())
    assert readiness(GithubActionsStore("org/app", "OPENAI_API_KEY", transport=transport)) == ([], [])
    assert github.requests == []


def test_github_actions_without_a_token_is_one_line(github):
    store = GithubActionsStore("org/app", "OPENAI_API_KEY", transport=httpx.MockTransport(github))
    one_line(store.missing(), "github-actions org/app OPENAI_API_KEY", "GITHUB_TOKEN", "Secrets: read and write")
    assert github.requests == []


# ---- Kubernetes (the apiserver emulator) ----------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[SimpleNamespace]:
    emulator = KubernetesEmulator()
    emulator.add_secret("prod", "openai", {"OPENAI_API_KEY": "placeholder"})
    with serve(emulator) as app:
        yield SimpleNamespace(emulator=emulator, url=app.url)


def kubeconfig(path: Path, server: str, *, user: dict | None = None, current: str = "sandbox") -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": {"server": server}}],
        "users": [{"name": "cauterize", "user": user if user is not None else {"token": secrets.token_hex(16)}}],
        "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "cauterize", "namespace": "prod"}}],
        "current-context": current,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_kubernetes_configured_kubeconfig_is_ready(cluster, monkeypatch, tmp_path):
    token = cluster.emulator.add_token("system:serviceaccount:ops:cauterize")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kubeconfig", cluster.url, user={"token": token})))
    store = KubernetesStore("prod", "openai", "OPENAI_API_KEY")
    assert readiness(store) == ([], [])
    assert cluster.emulator.requests == []
    assert store.read() is not None, "and the store really works from this environment"


def test_kubernetes_each_missing_piece_is_one_line(cluster, monkeypatch, tmp_path):
    store = KubernetesStore("prod", "openai", "OPENAI_API_KEY")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    one_line(store.missing(), "no kubeconfig", "KUBERNETES_SERVICE_HOST")

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    if not os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token"):
        one_line(store.missing(), "in a cluster", "serviceaccount/token")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")

    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "other-context", cluster.url, current="prod")))
    one_line(store.missing(), "kubeconfig", "prod", "current-context")

    https = cluster.url.replace("http://", "https://")
    user = {"client-certificate": "certs/client.crt", "client-key": "certs/client.key"}
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "certs-config", https, user=user)))
    missing = store.missing()
    assert len(missing) == 2 and all("does not exist" in line for line in missing)
    assert str(tmp_path / "certs" / "client.crt") in missing[0], "relative to the kubeconfig's directory"

    plugin = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "cauterize-no-such-plugin"}}
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "exec-config", cluster.url, user=plugin)))
    one_line(store.missing(), "exec credential plugin", "cauterize-no-such-plugin")
    plugin["exec"]["command"] = sys.executable
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "exec-config", cluster.url, user=plugin)))
    assert store.missing() == []
    one_line(store.notes(), "exec plugin", "not run")
    assert cluster.emulator.requests == []


# ---- Prefect Secret blocks --------------------------------------------------------------------------


def test_prefect_api_url_from_the_environment_or_a_profile_is_ready(monkeypatch, tmp_path, silent):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    one_line(PrefectSecretStore("openai-api-key").missing(), "prefect-secret openai-api-key", "PREFECT_API_URL")
    (tmp_path / "prefect-home").mkdir()
    (tmp_path / "prefect-home" / "profiles.toml").write_text(
        f'active = "incident"\n[profiles.incident]\nPREFECT_API_URL = "{silent.url}/api"\n')
    assert readiness(PrefectSecretStore("openai-api-key")) == ([], [])
    monkeypatch.setenv("PREFECT_API_URL", f"{silent.url}/api")
    assert readiness(PrefectSecretStore("openai-api-key")) == ([], [])
    assert not silent.contacted()


def test_prefect_cloud_without_an_api_key_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.setenv("PREFECT_API_URL", "https://api.prefect.cloud/api/accounts/a/workspaces/w")
    one_line(PrefectSecretStore("openai-api-key").missing(), "Prefect Cloud", "PREFECT_API_KEY")
    monkeypatch.setenv("PREFECT_API_KEY", secrets.token_hex(16))
    assert PrefectSecretStore("openai-api-key").missing() == []


# ---- GCP Secret Manager (the emulator) ------------------------------------------------------------


@pytest.fixture
def gsm() -> Iterator[SimpleNamespace]:
    emulator = GcpSecretManagerEmulator()
    emulator.add_secret("prod-project", "openai-api-key", "placeholder")
    with serve(emulator) as app:
        yield SimpleNamespace(emulator=emulator, url=app.url,
                              store=lambda: GcpSecretManagerStore("prod-project", "openai-api-key", endpoint=app.url))


def test_gcp_access_token_or_adc_is_ready(gsm, monkeypatch, tmp_path):
    monkeypatch.setenv(TOKEN_ENV, gsm.emulator.add_token())
    assert readiness(gsm.store()) == ([], [])
    monkeypatch.delenv(TOKEN_ENV)
    adc = tmp_path / "gcloud" / "application_default_credentials.json"
    adc.parent.mkdir()
    adc.write_text("{}")  # only its presence is checked, never its content
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(adc.parent))
    assert readiness(gsm.store()) == ([], [])
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    assert readiness(gsm.store()) == ([], [])
    assert gsm.emulator.requests == []


def test_gcp_each_missing_piece_is_one_line(gsm, monkeypatch, tmp_path):
    missing, notes = readiness(gsm.store())
    assert missing == []
    one_line(notes, "not found locally", "metadata server not checked", TOKEN_ENV)
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    one_line(gsm.store().missing(), "no Google credentials", "NO_GCE_CHECK")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "moved.json"))
    one_line(gsm.store().missing(), "GOOGLE_APPLICATION_CREDENTIALS", "moved.json")
    assert gsm.emulator.requests == []


# ---- Azure Key Vault (the emulator over TLS) ------------------------------------------------------


@pytest.fixture
def key_vault(tmp_path) -> Iterator[SimpleNamespace]:
    emulator = AzureKeyVaultEmulator()
    emulator.add_secret("openai-api-key", "placeholder")
    with serve_tls(emulator, make_tls_files(tmp_path / "tls")) as app:
        yield SimpleNamespace(emulator=emulator, url=app.url,
                              store=lambda url=app.url: AzureKeyVaultStore(url, "openai-api-key"))


def test_azure_service_principal_in_the_environment_is_ready(key_vault, monkeypatch, tmp_path):
    monkeypatch.setenv("AZURE_TENANT_ID", secrets.token_hex(8))
    monkeypatch.setenv("AZURE_CLIENT_ID", secrets.token_hex(8))
    monkeypatch.setenv("AZURE_CLIENT_SECRET", secrets.token_hex(16))
    assert readiness(key_vault.store()) == ([], [])
    monkeypatch.delenv("AZURE_CLIENT_SECRET")
    monkeypatch.setenv("AZURE_CLIENT_CERTIFICATE_PATH", str(tmp_path / "moved.pem"))
    one_line(key_vault.store().missing(), "AZURE_CLIENT_CERTIFICATE_PATH", "moved.pem")
    assert key_vault.emulator.requests == []


def test_azure_each_missing_piece_is_one_line(key_vault):
    missing, notes = readiness(key_vault.store())
    assert missing == []
    one_line(notes, "no Azure service principal", "AZURE_CLIENT_ID", "managed identity", "not checked")
    one_line(key_vault.store(key_vault.url.replace("https://", "http://")).missing(), "https://")
    assert key_vault.emulator.requests == []
