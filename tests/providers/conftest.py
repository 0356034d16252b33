"""Fixtures for provider tests: an OpenAI emulator behind ``httpx.MockTransport`` and the provider on it.

Every key is generated at run time by the emulator; no key-shaped literal is committed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cauterize.providers.base import ProviderSettings
from cauterize.providers.openai import OpenAIProvider
from cauterize.sandbox.openai import OpenAIEmulator
from cauterize.secret import Secret


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def emulator(clock) -> OpenAIEmulator:
    return OpenAIEmulator(now=clock)


@pytest.fixture
def admin_key(emulator) -> str:
    return emulator.add_admin_key()


@pytest.fixture
def sleeps() -> list[float]:
    """Every wait the retry loop asked for (nothing really sleeps)."""
    return []


@pytest.fixture
def make_provider(emulator, admin_key, sleeps):
    """``make_provider(**settings)``: the openai provider on the emulator, closed after the test."""
    made: list[OpenAIProvider] = []

    def make(**overrides) -> OpenAIProvider:
        fields = {"admin_key": Secret(admin_key), "transport": httpx.MockTransport(emulator), **overrides}
        provider = OpenAIProvider(ProviderSettings(**fields), sleep=sleeps.append)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


@pytest.fixture
def provider(make_provider) -> OpenAIProvider:
    return make_provider()
