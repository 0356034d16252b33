"""Shared fixtures. Keys are generated at run time: no key-shaped literal is ever committed."""

from __future__ import annotations

import secrets

import pytest


def generate_key(prefix: str = "sk-proj-", length: int = 48) -> str:
    return prefix + secrets.token_urlsafe(length)


@pytest.fixture
def make_key():
    """A factory of fresh fake keys: ``make_key()``, ``make_key("sk-svcacct-")``."""
    return generate_key


@pytest.fixture
def leaked_key(make_key) -> str:
    return make_key()
