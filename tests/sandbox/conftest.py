"""Fixtures for the sandbox emulators: OpenAI's published OpenAPI spec, an emulator, a client."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cauterize.sandbox.openai import OpenAIEmulator

SPEC_PATH = Path(__file__).resolve().parents[2] / ".." / "shared" / "specs" / "openai-openapi.yaml"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader reads the 3 MB spec in ~1 s
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=loader)


def _map_discriminators(spec: dict[str, Any]) -> None:
    """Give implicit ``discriminator``s an explicit mapping.

    ``UsageTimeBucket.results`` discriminates on ``object`` (``organization.usage.completions.result``)
    without a mapping; validators then look for a schema named after the value and fail. The mapping
    is derived from each candidate schema's own ``object`` enum, so the spec's meaning is unchanged.
    """
    schemas = spec["components"]["schemas"]

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            disc = node.get("discriminator")
            options = node.get("oneOf") or node.get("anyOf")
            if isinstance(disc, dict) and "mapping" not in disc and options:
                mapping = {}
                for option in options:
                    ref = option.get("$ref", "")
                    target = schemas.get(ref.rsplit("/", 1)[-1], {})
                    for value in target.get("properties", {}).get(disc["propertyName"], {}).get("enum", []):
                        mapping[value] = ref
                disc["mapping"] = mapping
            for child in node.values():
                visit(child)
        elif isinstance(node, list):
            for child in node:
                visit(child)

    visit(schemas)


@pytest.fixture(scope="session")
def openai_spec_dict() -> dict[str, Any]:
    if not SPEC_PATH.is_file():
        pytest.skip(f"OpenAI's OpenAPI spec is not at {SPEC_PATH} (shared/specs/openai-openapi.yaml)")
    spec = _load_yaml(SPEC_PATH)
    _map_discriminators(spec)
    return spec


@pytest.fixture(scope="session")
def openai_spec(openai_spec_dict):
    """The spec as an ``openapi_core.OpenAPI`` (loaded once; the 3 MB spec itself is not re-validated)."""
    openapi_core = pytest.importorskip("openapi_core")
    config = openapi_core.Config(spec_validator_cls=None)
    return openapi_core.OpenAPI.from_dict(openai_spec_dict, config=config, base_uri=SPEC_PATH.as_uri())


@pytest.fixture
def emulator() -> OpenAIEmulator:
    """An empty organisation whose clock stands still at 2026-03-01 12:00 UTC."""
    return OpenAIEmulator(now=lambda: NOW)


@pytest.fixture
def admin_key(emulator) -> str:
    return emulator.add_admin_key()


@pytest.fixture
def api(emulator, admin_key):
    """An httpx client on the emulator, authenticated with the admin key, at OpenAI's real base URL."""
    with httpx.Client(
        transport=httpx.MockTransport(emulator),
        base_url="https://api.openai.com/v1",
        headers={"Authorization": f"Bearer {admin_key}"},
    ) as client:
        yield client
