"""Usage and cost reports of the OpenAI emulator, and the query parsing its routes share.

``GET /v1/organization/usage/completions`` and ``GET /v1/organization/costs`` answer with a page of
time buckets (``{object: "page", data: [bucket], has_more, next_page}``) the way OpenAI does
(provider-apis.md 1.4 and 7.1): buckets align to the ``bucket_width`` boundary, ``start_time`` is
inclusive and ``end_time`` exclusive, ``limit`` has per-width defaults and maxima, ``page`` is an
opaque cursor, and group-by fields that were not asked for come back as ``null``.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

#: bucket width -> (seconds, default limit, maximum limit)
USAGE_WIDTHS = {"1m": (60, 60, 1440), "1h": (3600, 24, 168), "1d": (86400, 7, 31)}
COST_WIDTHS = {"1d": (86400, 7, 180)}
#: group_by values; ``api_source`` (and ``user_id`` for costs) as the 2026 SDK sends them
USAGE_GROUPS = ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier", "api_source")
COST_GROUPS = ("project_id", "user_id", "line_item", "api_key_id", "api_source")

#: USD per million tokens (input, output); plausible list prices, for the emulator only.
PRICES = {"gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00), "gpt-4.1": (2.00, 8.00), "gpt-4.1-mini": (0.40, 1.60)}
DEFAULT_PRICE = (1.00, 4.00)
_FILTER_FIELDS = {"project_ids": "project_id", "user_ids": "user_id", "api_key_ids": "api_key_id", "models": "model"}


class InvalidParam(ValueError):
    """A query parameter the API would refuse with 400 ``invalid_request_error``."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class Query:
    """A raw query string read the way OpenAI reads it.

    Arrays arrive repeated (``k=a&k=b``) or bracketed (``k[]=a``); nested objects as ``k[sub]=v``.
    Unknown parameters are ignored.
    """

    def __init__(self, raw: str):
        self.raw = raw
        self.pairs = parse_qsl(raw, keep_blank_values=True)

    def get(self, name: str) -> str | None:
        return next((value for key, value in self.pairs if key == name), None)

    def getlist(self, name: str) -> list[str]:
        names = {name, name + "[]", name.removesuffix("[]")}
        return [value for key, value in self.pairs if key in names]

    def nested(self, name: str) -> dict[str, str]:
        prefix = name + "["
        return {
            key[len(prefix) : -1]: value for key, value in self.pairs if key.startswith(prefix) and key.endswith("]")
        }

    def integer(self, name: str, default: int | None = None, *, required: bool = False) -> int | None:
        raw = self.get(name)
        if raw is None or raw == "":
            if required:
                raise InvalidParam(f"Missing required parameter: '{name}'.", name)
            return default
        try:
            return int(raw)
        except ValueError:
            raise InvalidParam(f"Invalid value for '{name}': expected an integer.", name) from None

    def boolean(self, name: str) -> bool | None:
        raw = self.get(name)
        if raw is None or raw == "":
            return None
        if raw.lower() in ("true", "1"):
            return True
        if raw.lower() in ("false", "0"):
            return False
        raise InvalidParam(f"Invalid value for '{name}': expected a boolean.", name)


@dataclass(frozen=True)
class UsageRecord:
    """Completions usage of one key at one instant (what the emulator aggregates)."""

    at: int
    project_id: str
    api_key_id: str | None
    user_id: str | None
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    input_cached_tokens: int = 0
    requests: int = 0
    batch: bool = False
    service_tier: str = "default"
    api_source: str = "unlabeled"  # or "agents_api"

    def cost_items(self) -> list[tuple[str, float, int]]:
        """``(line_item, usd, tokens)`` for the input and output side."""
        price_in, price_out = PRICES.get(self.model, DEFAULT_PRICE)
        return [
            (f"{self.model}, input", self.input_tokens * price_in / 1e6, self.input_tokens),
            (f"{self.model}, output", self.output_tokens * price_out / 1e6, self.output_tokens),
        ]


@dataclass(frozen=True)
class _Window:
    start: int
    end: int
    seconds: int
    bounds: list[tuple[int, int]]
    next_page: str | None


def completions_page(records: Iterable[UsageRecord], query: Query, now: int) -> dict[str, Any]:
    """The answer of ``GET /organization/usage/completions``."""
    window = _window(query, now, USAGE_WIDTHS)
    group_by = _group_by(query, USAGE_GROUPS)
    batch = query.boolean("batch")
    wanted = _filters(query, ("project_ids", "user_ids", "api_key_ids", "models"))
    sums: dict[tuple[int, tuple], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for record in _in_window(records, window):
        if not _passes(record, wanted) or (batch is not None and record.batch != batch):
            continue
        key = (_bucket_index(record, window), tuple(getattr(record, field) for field in group_by))
        total = sums[key]
        total["input_tokens"] += record.input_tokens
        total["output_tokens"] += record.output_tokens
        total["input_cached_tokens"] += record.input_cached_tokens
        total["num_model_requests"] += record.requests
    return _page(window, sums, group_by, USAGE_GROUPS, _completions_result)


def costs_page(records: Iterable[UsageRecord], query: Query, now: int) -> dict[str, Any]:
    """The answer of ``GET /organization/costs`` (``bucket_width`` is ``1d`` only)."""
    window = _window(query, now, COST_WIDTHS)
    group_by = _group_by(query, COST_GROUPS)
    wanted = _filters(query, ("project_ids", "api_key_ids"))
    line_items = set(query.getlist("line_items"))
    sums: dict[tuple[int, tuple], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for record in _in_window(records, window):
        if not _passes(record, wanted):
            continue
        for line_item, usd, tokens in record.cost_items():
            if line_items and line_item not in line_items:
                continue
            fields = {
                "project_id": record.project_id,
                "user_id": record.user_id,
                "line_item": line_item,
                "api_key_id": record.api_key_id,
                "api_source": record.api_source,
            }
            key = (_bucket_index(record, window), tuple(fields[field] for field in group_by))
            sums[key]["value"] += usd
            sums[key]["quantity"] += tokens
    return _page(window, sums, group_by, COST_GROUPS, _costs_result)


def _completions_result(total: dict[str, int], fields: dict[str, Any]) -> dict[str, Any]:
    cached = total["input_cached_tokens"]
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": total["input_tokens"],
        "output_tokens": total["output_tokens"],
        "input_cached_tokens": cached,
        "input_cache_write_tokens": 0,
        "input_uncached_tokens": total["input_tokens"] - cached,
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "num_model_requests": total["num_model_requests"],
        **fields,
    }


def _costs_result(total: dict[str, float], fields: dict[str, Any]) -> dict[str, Any]:
    by_line_item = fields.get("line_item") is not None
    return {
        "object": "organization.costs.result",
        "amount": {"value": round(total["value"], 8), "currency": "usd"},
        **fields,
        "quantity": total["quantity"] if by_line_item else None,
        "quantity_unit": "tokens" if by_line_item else None,
    }


def _window(query: Query, now: int, widths: dict[str, tuple[int, int, int]]) -> _Window:
    start = query.integer("start_time", required=True)
    assert start is not None
    end = query.integer("end_time", now)
    assert end is not None
    if end <= start:
        raise InvalidParam("'end_time' must be later than 'start_time'.", "end_time")
    width = query.get("bucket_width") or "1d"
    if width not in widths:
        raise InvalidParam(f"Invalid 'bucket_width': expected one of {', '.join(widths)}.", "bucket_width")
    seconds, default_limit, max_limit = widths[width]
    limit = query.integer("limit", default_limit)
    assert limit is not None
    if not 1 <= limit <= max_limit:
        raise InvalidParam(f"Invalid 'limit' for bucket_width {width}: must be between 1 and {max_limit}.", "limit")
    first = start - start % seconds
    cursor = query.get("page")
    if cursor:
        first = _decode_page(cursor, first, seconds)
    bounds = []
    edge = first
    while edge < end and len(bounds) < limit:
        bounds.append((edge, edge + seconds))
        edge += seconds
    return _Window(start, end, seconds, bounds, _encode_page(edge) if edge < end else None)


def _group_by(query: Query, allowed: tuple[str, ...]) -> tuple[str, ...]:
    fields = query.getlist("group_by")
    for field in fields:
        if field not in allowed:
            raise InvalidParam(f"Invalid 'group_by' value '{field}': expected one of {', '.join(allowed)}.", "group_by")
    return tuple(field for field in allowed if field in fields)


def _filters(query: Query, names: tuple[str, ...]) -> dict[str, set[str]]:
    """Array filters keyed by the record field they test."""
    return {_FILTER_FIELDS[name]: set(values) for name in names if (values := query.getlist(name))}


def _passes(record: UsageRecord, wanted: dict[str, set[str]]) -> bool:
    return all(getattr(record, field) in values for field, values in wanted.items())


def _in_window(records: Iterable[UsageRecord], window: _Window) -> Iterable[UsageRecord]:
    if not window.bounds:
        return []
    low = max(window.start, window.bounds[0][0])
    high = min(window.end, window.bounds[-1][1])
    return (record for record in records if low <= record.at < high)


def _bucket_index(record: UsageRecord, window: _Window) -> int:
    return (record.at - window.bounds[0][0]) // window.seconds


def _page(
    window: _Window, sums: dict, group_by: tuple[str, ...], dimensions: tuple[str, ...], render
) -> dict[str, Any]:
    by_bucket: dict[int, list] = defaultdict(list)
    for (index, values), total in sorted(sums.items(), key=lambda item: repr(item[0])):
        fields = dict.fromkeys(dimensions)
        fields.update(zip(group_by, values))
        by_bucket[index].append(render(total, fields))
    buckets = [
        {"object": "bucket", "start_time": start, "end_time": end, "results": by_bucket.get(index, [])}
        for index, (start, end) in enumerate(window.bounds)
    ]
    return {"object": "page", "data": buckets, "has_more": window.next_page is not None, "next_page": window.next_page}


def _encode_page(edge: int) -> str:
    token = base64.urlsafe_b64encode(json.dumps({"t": edge}).encode()).decode().rstrip("=")
    return "page_" + token


def _decode_page(cursor: str, first: int, seconds: int) -> int:
    try:
        token = cursor.removeprefix("page_")
        edge = int(json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["t"])
    except (ValueError, KeyError, TypeError):
        raise InvalidParam("Invalid 'page' cursor.", "page") from None
    if edge < first or (edge - first) % seconds:
        raise InvalidParam("Invalid 'page' cursor for this query.", "page")
    return edge
