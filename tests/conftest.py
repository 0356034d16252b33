"""Shared fixtures. Keys are generated at run time: no key-shaped literal is ever committed."""

from __future__ import annotations

import secrets

import pytest


def generate_key(prefix: str = "sk-proj-", length: int = 48) -> str:
    """A fresh fake key of the real shape for a provider prefix (sk-proj-, sk-svcacct-, sk-admin-,
    sk-ant-api03-, sk-ant-admin01-: the emulators' generators); other prefixes get random text."""
    from cauterize.sandbox import anthropic, openai

    for kind in ("proj", "svcacct", "admin"):
        if prefix == f"sk-{kind}-":
            return openai.new_key_value(kind)
    if prefix.startswith("sk-ant-"):
        return anthropic.new_key_value(prefix[len("sk-ant-"):-1])
    return prefix + secrets.token_urlsafe(length)


@pytest.fixture
def make_key():
    """A factory of fresh fake keys: ``make_key()``, ``make_key("sk-svcacct-")``."""
    return generate_key


@pytest.fixture
def leaked_key(make_key) -> str:
    return make_key()
