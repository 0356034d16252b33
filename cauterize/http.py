"""HTTP plumbing shared by every API client: timeouts, bounded retries, quiet logging.

Retries: 429 waits for ``Retry-After`` (seconds or an HTTP date, capped) or backs off
exponentially; 5xx, timeouts and connection errors back off; anything else returns at once
for the caller to map. After the last attempt: ``RateLimited`` or ``ProviderUnavailable``.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from cauterize import interrupts
from cauterize.errors import ProviderUnavailable, RateLimited

# httpx logs every request URL at INFO; URLs can carry identifiers we do not want in logs.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

USER_AGENT = "cauterize/0.1"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    backoff: float = 0.5  # first wait; doubles each time
    max_wait: float = 30.0  # longest single wait, Retry-After included


DEFAULT_POLICY = RetryPolicy()


def new_client(
    base_url: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """A client with a timeout on every call and TLS verification on (the default, never off)."""
    return httpx.Client(
        base_url=base_url.rstrip("/") + "/",
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        timeout=httpx.Timeout(timeout),
        transport=transport,
        follow_redirects=False,
        verify=tls_verify(),
    )


def tls_verify(ca_bundle: str | None = None) -> ssl.SSLContext:
    """Certificate verification, always on: the system's trust store (certifi's), plus a custom CA
    bundle from the runbook or ``CAUTERIZE_CA_BUNDLE``/``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE``."""
    import certifi

    context = ssl.create_default_context(cafile=certifi.where())
    extra = ca_bundle or next(
        (os.environ[name] for name in ("CAUTERIZE_CA_BUNDLE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE") if os.environ.get(name)),
        None,
    )
    if extra:
        try:
            context.load_verify_locations(cafile=extra)
        except (OSError, ssl.SSLError) as exc:
            from cauterize.errors import InputError

            raise InputError(f"CA bundle {extra}: cannot be loaded ({type(exc).__name__})") from None
    return context


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    what: str,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs,
) -> httpx.Response:
    """Send a request with bounded retries. ``what`` names the call in errors (no secrets). No
    attempt starts after SIGINT/SIGTERM (``interrupts``), in any thread."""
    wait = policy.backoff
    for attempt in range(1, policy.attempts + 1):
        interrupts.check()
        last = attempt == policy.attempts
        try:
            response = client.request(method, url, **kwargs)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            if _certificate_refused(exc):
                raise ProviderUnavailable(
                    f"{what}: the server's TLS certificate was not trusted",
                    remediation="If it is signed by a private CA, point SSL_CERT_FILE (or the runbook's "
                    "ca_bundle) at that CA's bundle; verification is never turned off.",
                    retryable=False,
                ) from exc
            if last:
                raise ProviderUnavailable(f"{what}: no answer after {attempt} attempts ({type(exc).__name__})") from exc
            sleep(_jitter(wait, policy))
            wait *= 2
            continue
        if response.status_code == 429:
            if last:
                raise RateLimited(f"{what}: still rate limited (429) after {attempt} attempts")
            told = retry_after_seconds(response)
            sleep(min(told, policy.max_wait) if told is not None else _jitter(wait, policy))
            wait *= 2
            continue
        if response.status_code >= 500:
            if last:
                raise ProviderUnavailable(f"{what}: the provider answered {response.status_code} after {attempt} attempts")
            sleep(_jitter(wait, policy))
            wait *= 2
            continue
        return response
    raise AssertionError("unreachable")  # pragma: no cover


def json_object(response: httpx.Response, what: str) -> dict:
    """The body of a successful answer as a JSON object, or ``ProviderUnavailable`` saying it was not."""
    try:
        body = response.json()
    except ValueError as exc:
        raise ProviderUnavailable(f"{what}: the answer ({response.status_code}) was not JSON") from exc
    if not isinstance(body, dict):
        raise ProviderUnavailable(f"{what}: the answer was not a JSON object")
    return body


def _certificate_refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _jitter(wait: float, policy: RetryPolicy) -> float:
    return min(policy.max_wait, wait * (0.8 + 0.4 * random.random()))
