"""The Prefect Secret block store against a real Prefect server (``prefect server start``).

The server runs once for this module, on a free loopback port, with its own PREFECT_HOME and
SQLite database in a temp directory, analytics off, and basic auth on (PREFECT_SERVER_API_AUTH_STRING),
so the store's credentials path is exercised too. Keys are generated at run time.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cauterize.errors import KeySourceError, StoreError
from cauterize.runbook import PrefectSecretStore as PrefectSecretConfig
from cauterize.secret import KeySource, Secret
from cauterize.stores import open_store
from cauterize.stores.prefect_secret import PrefectSecretStore, prefect_settings, resolve_reference

pytestmark = pytest.mark.slow


class PrefectServer:
    def __init__(self, url: str, auth: str):
        self.url, self.auth = url, auth
        header = "Basic " + base64.b64encode(auth.encode()).decode()
        self.api = httpx.Client(base_url=url, headers={"Authorization": header}, timeout=30)

    def create_secret_block(self, name: str, value: str) -> dict:
        """What `Secret(value=...).save(name)` does, through the REST API."""
        block_type = self.api.get("/block_types/slug/secret").json()
        filter_body = {"block_schemas": {"block_type_id": {"any_": [block_type["id"]]}}, "limit": 1}
        (schema,) = self.api.post("/block_schemas/filter", json=filter_body).json()
        body = {
            "name": name,
            "data": {"value": value},
            "block_type_id": block_type["id"],
            "block_schema_id": schema["id"],
        }
        response = self.api.post("/block_documents/", json=body)
        assert response.status_code == 201, response.text
        return response.json()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    prefect = Path(sys.executable).parent / "prefect"
    if not prefect.exists():
        pytest.skip("the prefect CLI is not installed in this venv: `pip install -e '.[test]'`")
    home = tmp_path_factory.mktemp("prefect-home")
    port, auth = _free_port(), f"cauterize:{secrets.token_urlsafe(16)}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_API_AUTH_STRING": auth,
    }
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-services", "--no-ui"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, ended as one below
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"prefect server exited with {process.returncode}: see {home / 'server.log'}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prefect server did not answer /api/health in 90 s: see {home / 'server.log'}")
            time.sleep(0.25)
        yield PrefectServer(url, auth)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.fixture
def prefect_env(prefect_server, monkeypatch):
    """The environment a responder's shell has: PREFECT_API_URL and the server's auth string."""
    for name in ("PREFECT_API_KEY", "PREFECT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_API_URL", prefect_server.url)
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", prefect_server.auth)
    return prefect_server


def block_name() -> str:
    return f"openai-{secrets.token_hex(4)}"


def test_write_updates_an_existing_block_reads_back_and_undo_restores(prefect_env, make_key):
    name, old, new = block_name(), make_key(), make_key()
    created = prefect_env.create_secret_block(name, old)
    store = PrefectSecretStore(name)
    assert store.read() == Secret(old)

    write = store.write(Secret(new))

    assert store.read() == Secret(new)
    assert write.details == {"block": name, "block_document_id": created["id"], "created": False}
    assert write.version and write.lingering == []
    raw = prefect_env.api.get(f"/block_documents/{created['id']}", params={"include_secrets": "true"}).json()
    assert raw["data"] == {"value": new}
    hidden = prefect_env.api.get(f"/block_documents/{created['id']}").json()
    assert new not in str(hidden), "the server obfuscates the value without include_secrets"

    write.undo()
    assert store.read() == Secret(old)


def test_write_creates_a_missing_block_and_undo_deletes_it(prefect_env, make_key):
    name, value = block_name(), make_key()
    store = PrefectSecretStore(name)
    assert store.read() is None
    write = store.write(Secret(value))
    assert write.details["created"] is True
    assert store.read() == Secret(value)
    write.undo()
    assert store.read() is None


def test_resolve_reference_and_the_prefect_secret_key_source(prefect_env, make_key):
    name, value = block_name(), make_key()
    prefect_env.create_secret_block(name, value)
    assert resolve_reference(name) == Secret(value)
    assert KeySource.parse(f"prefect-secret:{name}").load() == Secret(value)


def test_a_wrong_block_name_is_a_clear_key_source_error(prefect_env):
    with pytest.raises(KeySourceError) as info:
        KeySource.parse("prefect-secret:no-such-block").load()
    assert "prefect-secret:no-such-block" in info.value.message and prefect_env.url in info.value.message
    assert "prefect block ls" in info.value.remediation


def test_prefect_itself_reads_what_the_store_wrote(prefect_env, tmp_path, make_key):
    name, value = block_name(), make_key()
    PrefectSecretStore(name).write(Secret(value))
    code = (
        "import sys; from prefect.blocks.system import Secret; "
        "sys.stdout.write('same' if Secret.load(sys.argv[1]).get() == sys.stdin.read() else 'different')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, name],
        input=value,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PREFECT_HOME": str(tmp_path)},
    )
    assert done.stdout == "same", done.stderr[-2000:]


def test_without_the_auth_string_the_server_says_401(prefect_env, monkeypatch, make_key):
    monkeypatch.delenv("PREFECT_API_AUTH_STRING")
    with pytest.raises(StoreError, match="cannot read the block: Prefect answered 401 \\(Unauthorized\\)") as info:
        PrefectSecretStore(block_name()).read()
    assert "PREFECT_API_AUTH_STRING" in info.value.remediation


def test_the_registry_opens_the_store(prefect_env, make_key):
    name, value = block_name(), make_key()
    prefect_env.create_secret_block(name, value)
    assert open_store(PrefectSecretConfig(type="prefect-secret", block=name), None).read() == Secret(value)


def test_a_json_block_is_not_read_as_a_key(prefect_env):
    name = block_name()
    prefect_env.create_secret_block(name, {"username": "u"})  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="holds a JSON dict, not one key"):
        PrefectSecretStore(name).read()


def test_settings_come_from_the_active_profile_when_the_environment_has_none(tmp_path, monkeypatch):
    for name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING", "PREFECT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    (tmp_path / "profiles.toml").write_text(
        'active = "prod"\n[profiles.prod]\nPREFECT_API_URL = "http://prefect.internal:4200/api"\n'
        '[profiles.other]\nPREFECT_API_URL = "http://elsewhere/api"\n'
    )
    assert prefect_settings() == {"PREFECT_API_URL": "http://prefect.internal:4200/api"}
    monkeypatch.setenv("PREFECT_PROFILE", "other")
    assert PrefectSecretStore("b").api_url == "http://elsewhere/api"


def test_no_api_url_anywhere_is_a_store_error(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    with pytest.raises(StoreError, match="PREFECT_API_URL is not set"):
        PrefectSecretStore("b").read()


def test_a_cloud_api_key_is_sent_as_a_bearer_token(make_key):
    seen: list[httpx.Request] = []

    def cloud(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404, json={"detail": "Block document not found"})

    api_key = "pnu_" + secrets.token_hex(18)
    store = PrefectSecretStore(
        "b",
        api_url="https://api.prefect.cloud/api/accounts/a/workspaces/w",
        api_key=api_key,
        transport=httpx.MockTransport(cloud),
    )
    assert store.read() is None
    assert seen[0].headers["authorization"] == f"Bearer {api_key}"
    assert seen[0].url.path == "/api/accounts/a/workspaces/w/block_types/slug/secret/block_documents/name/b"


def test_a_422_answer_never_reaches_the_message(make_key):
    value = make_key()

    def echoing(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"id": "d", "data": {"value": "old"}, "updated": "t"})
        body = {"exception_message": "Invalid request received.", "request_body": request.content.decode()}
        return httpx.Response(422, json=body)

    store = PrefectSecretStore("b", api_url="http://prefect.local/api", transport=httpx.MockTransport(echoing))
    with pytest.raises(StoreError, match="422 \\(Invalid request received.\\)") as info:
        store.write(Secret(value))
    assert value not in info.value.one_line()
