"""Real local servers for the store tests: moto's server (AWS) and an OpenBao dev server (Vault).

Each server is started once per session as a subprocess on a free loopback port, with a private
home and temp directory, and terminated at the end. Tests isolate themselves by unique names
(secret ids, KV paths, mounts) rather than by restarting servers. The function-scoped ``aws_env``
and ``vault_env`` point the process environment at them, the way a responder's shell would.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _binary(name: str) -> str:
    """A console script of this venv (next to the interpreter), else one on PATH."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"`{name}` is not installed: `pip install -e '.[test]'` provides it")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _parent_death_signal() -> Callable[[], None] | None:
    """Linux: a ``preexec_fn`` giving the server SIGTERM when pytest dies without its teardown
    (pytest-timeout ends it with ``os._exit``; a CI runner may SIGKILL it), so no server outlives it.
    ``prctl`` is looked up here, in the parent: the child only makes the one C call before ``exec``."""
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


@contextmanager
def _serve(argv: list[str], home: Path, ready: Callable[[], bool], name: str) -> Iterator[subprocess.Popen]:
    """Run a server until the session ends; wait (up to 30 s) until ``ready()``."""
    env = {"HOME": str(home), "TMPDIR": str(home), "PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
    log_path = home / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_parent_death_signal(),  # noqa: PLW1509 - one C call, see _parent_death_signal
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}: {log_path.read_text(errors='replace')[-2000:]}")
            try:
                if ready():
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not answer within 30 s: {log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> Iterator[str]:
    """moto's AWS server on a free loopback port: yields its endpoint URL."""
    argv = [_binary("moto_server"), "-H", "127.0.0.1", "-p", str(port := _free_port())]
    url = f"http://127.0.0.1:{port}"
    home = tmp_path_factory.mktemp("moto-home")
    with _serve(argv, home, lambda: _get(f"{url}/moto-api/")[0] == 200, "moto_server"):
        yield url


@pytest.fixture(scope="session")
def openbao(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """An OpenBao dev server (in memory, ``secret/`` is KV v2) on a free loopback port: yields (addr, root token)."""
    token = "root-" + secrets.token_hex(16)
    address = f"127.0.0.1:{_free_port()}"
    argv = [_binary("bao"), "server", "-dev", f"-dev-root-token-id={token}", f"-dev-listen-address={address}"]
    addr = f"http://{address}"

    def ready() -> bool:
        if _get(f"{addr}/v1/sys/health")[0] != 200:
            return False
        status, body = _get(f"{addr}/v1/sys/mounts", {"X-Vault-Token": token})
        return status == 200 and b'"secret/"' in body

    home = tmp_path_factory.mktemp("openbao-home")  # the dev server writes ~/.vault-token
    with _serve(argv, home, ready, "openbao"):
        yield addr, token


@pytest.fixture
def aws_env(moto_server, monkeypatch, tmp_path) -> str:
    """boto3's environment pointed at moto with fake credentials and no retries; returns the endpoint."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    return moto_server


@pytest.fixture
def secretsmanager(aws_env):
    """A boto3 Secrets Manager client on moto, to arrange and inspect secrets."""
    import boto3

    return boto3.session.Session().client("secretsmanager")


@pytest.fixture
def secret_name() -> str:
    return f"test/{uuid.uuid4().hex[:12]}/openai"


@pytest.fixture
def vault_env(openbao, monkeypatch) -> tuple[str, str]:
    """The Vault CLI's environment pointed at the OpenBao dev server as root; returns (addr, token)."""
    addr, token = openbao
    for name in ("VAULT_NAMESPACE", "VAULT_CACERT", "VAULT_CAPATH", "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAULT_ADDR", addr)
    monkeypatch.setenv("VAULT_TOKEN", token)
    return openbao


@pytest.fixture
def vault_client(vault_env):
    """An hvac client on the dev server as root, to arrange and inspect secrets."""
    import hvac

    addr, token = vault_env
    return hvac.Client(url=addr, token=token, timeout=10)


@pytest.fixture
def kv_path() -> str:
    return f"test-{uuid.uuid4().hex[:12]}/openai"


@pytest.fixture
def kv_mount(vault_client) -> Iterator[str]:
    """A fresh, empty KV v2 mount of its own (for scans), removed afterwards."""
    mount = f"kv-{uuid.uuid4().hex[:10]}"
    vault_client.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    yield mount
    vault_client.sys.disable_secrets_engine(mount)
