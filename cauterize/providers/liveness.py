"""Liveness that fails closed: the pieces every provider's ``check`` is built from (DESIGN.md 2).

A key is *dead* only on its provider's documented invalid-credential answer, which each provider
module matches itself (status and body). Everything else is *unknown*, with the reason:

* ``ask`` sends the one liveness request. What keeps cauterize from getting an answer becomes
  ``Verdict.unknown``: ``RateLimited`` (429 after every retry), ``ProviderUnavailable`` (5xx after
  every retry, timeouts, resets, an untrusted TLS certificate), any other ``ProviderError``, and an
  answer httpx cannot read (``httpx.HTTPError``: e.g. a body that does not decode). ``InputError`` is
  not caught: no endpoint to ask, or a key that cannot be put in a header, is bad input for a person
  to fix (exit 2), not an answer about the key.
* ``listing`` reads a 200 as live only when its body is the documented list (``{"data": [...]}``,
  ``{"models": [...]}``): a captive portal's HTML 200, an empty body or other JSON is unknown.
* ``refused`` words any other answer: a 3xx (clients never follow redirects), a 4xx that is not the
  documented invalid-key answer, a 5xx the retries let through.

Reasons name statuses, error codes and the provider's masked message: never a key value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import httpx

from cauterize.errors import ProviderError
from cauterize.providers.base import Verdict

T = TypeVar("T")


def ask(request: Callable[[], T]) -> T | Verdict:
    """The provider's answer, or ``Verdict.unknown`` saying why there was none (see the module)."""
    try:
        return request()
    except ProviderError as exc:
        return Verdict.unknown(exc.message)
    except httpx.HTTPError as exc:
        return Verdict.unknown(f"no readable answer ({type(exc).__name__})")


def listing(response: httpx.Response, route: str, field: str = "data") -> Verdict:
    """A 200 whose body is the documented ``{field: [...]}``: live; any other 200: unknown."""
    try:
        body = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "").split(";")[0].strip()[:60] or "no content type"
        size = len(response.content)
        what = "an empty body" if not size else f"a body that is not JSON ({kind}, {size} bytes)"
        return Verdict.unknown(f"200 from {route} with {what}: not the provider's answer (a proxy or portal?)", 200)
    if isinstance(body, dict) and isinstance(body.get(field), list):
        return Verdict.live(f"200 from {route}")
    return Verdict.unknown(f"200 from {route} without the documented '{field}' list", 200)


def refused(response: httpx.Response, route: str, detail: str = "") -> Verdict:
    """Any answer that is neither the documented success nor the documented invalid-key answer."""
    status = response.status_code
    if 300 <= status < 400:
        return Verdict.unknown(f"{status} from {route}: a redirect, not followed (a proxy or portal?)", status)
    detail = " ".join(detail.split())
    return Verdict.unknown(f"{status} from {route}" + (f": {detail}" if detail else ""), status)


def json_body(response: httpx.Response) -> dict:
    """The body as a JSON object, ``{}`` when it is none."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
