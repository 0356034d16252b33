"""Usage evidence over the exposure window, against a seasonal baseline, with robust anomaly statistics.

Each bucket of the window is compared with the baseline buckets (those that end before the window)
of the same *slot*: the same hour of the day (UTC), and the same kind of day (weekday or weekend)
once the baseline spans two weeks. A slot with fewer than ``MIN_SLOT_POINTS`` baseline buckets falls
back to the hour alone, then to the whole baseline. So office-hours traffic is compared with office
hours, and nights with nights.

The score is the modified z-score ``0.6745 * (x - median) / MAD`` (Iglewicz and Hoaglin) of the
bucket's tokens (its requests when the provider reports no tokens); above ``THRESHOLD`` the bucket is
flagged. Only rises are flagged. The MAD has a floor, so a flat baseline does not flag noise and a
slot of four buckets that happen to agree does not flag the fifth: the baseline's typical relative
deviation from its slot median (at least 5%) times the median, the square root of the median (as
for counts), 5% of the whole baseline's median, and 1.

Excess is what a flagged bucket holds above its slot's median. Cost is the provider's where it
reports one per bucket; otherwise tokens are priced with ``PRICES`` (list prices in USD per million
tokens), and the output says it is an estimate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Any

from cauterize.errors import InputError
from cauterize.providers.base import KeyIdentity, Provider, Usage, UsageBucket

THRESHOLD = 3.5
MIN_SLOT_POINTS = 4
#: Baseline buckets with usage needed for the seasonal comparison; with fewer (a new key, a window
#: that starts where the data starts) the window is scored against its own median and MAD.
MIN_BASELINE = 8
#: Window buckets needed to score the window against itself; with fewer nothing is scored.
MIN_WINDOW = 8
WEEKLY_AFTER = timedelta(days=14)
BUCKETS = ("1m", "1h", "1d")
Slot = tuple[str | None, int | None]  # (weekday | weekend | None, hour of day | None); (None, None): all
Pricing = tuple[str, tuple[float, float]]  # (model, (USD per million input tokens, per million output))
#: At most this many baseline buckets just before the window are kept (``context``, in columns: the
#: record stays small), for the chart.
CONTEXT_MAX = 72

#: List prices, USD per million (input, output) tokens, from the providers' pricing pages
#: (openai.com/api/pricing, anthropic.com/pricing; standard tier, no batch or cache discounts),
#: as of 2025. Used only where the provider reports no cost for the key.
PRICES: dict[str, dict[str, tuple[float, float]]] = {
    "openai": {
        "gpt-5": (1.25, 10.00),
        "gpt-5-mini": (0.25, 2.00),
        "gpt-4.1": (2.00, 8.00),
        "gpt-4.1-mini": (0.40, 1.60),
        "gpt-4.1-nano": (0.10, 0.40),
        "gpt-4o": (2.50, 10.00),
        "gpt-4o-mini": (0.15, 0.60),
        "o3": (2.00, 8.00),
        "o4-mini": (1.10, 4.40),
    },
    "anthropic": {
        "claude-opus-4-1": (15.00, 75.00),
        "claude-opus-4-5": (5.00, 25.00),
        "claude-sonnet-4-5": (3.00, 15.00),
        "claude-sonnet-4": (3.00, 15.00),
        "claude-haiku-4-5": (1.00, 5.00),
        "claude-3-5-haiku": (0.80, 4.00),
    },
}
PRICES["azure-openai"] = PRICES["openai"]  # Azure's global standard deployments list the same prices
#: The model assumed when usage is not split by model: a mid-priced one, neither the cheapest nor the dearest.
DEFAULT_MODEL = {"openai": "gpt-4o", "azure-openai": "gpt-4o", "anthropic": "claude-sonnet-4-5"}


def robust_scores(baseline: Iterable[float], values: Iterable[float]) -> tuple[float, float, list[float]]:
    """(median, MAD, modified z-score of each value) against one flat baseline."""
    base = list(baseline)
    mid, mad, floor = _spread(base, scale=median(base) if base else 0.0)
    return mid, mad, [0.6745 * (x - mid) / floor for x in values]


def _spread(values: Sequence[float], *, scale: float, relative: float = 0.05) -> tuple[float, float, float]:
    """(median, MAD, the MAD with its floor) of ``values``; ``scale`` is the whole baseline's median,
    ``relative`` the typical deviation of a bucket from its slot's median, as a fraction of it."""
    if not values:
        return 0.0, 0.0, 1.0
    mid = median(values)
    mad = median([abs(x - mid) for x in values])
    return mid, mad, max(mad, max(relative, 0.05) * mid, math.sqrt(max(mid, 0.0)), 0.05 * scale, 1.0)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _slots(bucket: UsageBucket, weekly: bool) -> list[Slot]:
    """The slots a bucket belongs to, most specific first; ``(None, None)`` is the whole baseline."""
    start = _aware(bucket.start).astimezone(UTC)
    hour = start.hour if bucket.end - bucket.start < timedelta(days=1) else None
    day = "weekend" if start.weekday() >= 5 else "weekday"
    keys: list[Slot] = []
    if weekly:
        keys.append((day, hour))
    if hour is not None:
        keys.append((None, hour))
    keys.append((None, None))
    return keys


def _slot_name(slot: Slot) -> str:
    day, hour = slot
    return " ".join(part for part in (day, f"{hour:02d}:00" if hour is not None else None) if part) or "all"


class _Baseline:
    """Baseline buckets grouped by slot, with the statistics of each slot computed once."""

    def __init__(self, buckets: list[UsageBucket], metric: str, *, flat: bool = False):
        self.metric = metric
        self.buckets = buckets
        self.flat = flat
        span = (buckets[-1].end - buckets[0].start) if buckets else timedelta(0)
        self.weekly = span >= WEEKLY_AFTER and not flat
        self.groups: dict[Slot, list[UsageBucket]] = {}
        for bucket in buckets:
            for slot in [(None, None)] if flat else _slots(bucket, self.weekly):
                self.groups.setdefault(slot, []).append(bucket)
        self.scale = median([self.value(b) for b in buckets]) if buckets else 0.0
        self._stats: dict[Slot, dict[str, float]] = {}
        self.relative = 0.0  # no floor from the pooled deviation while it is being measured
        self.relative = self._pooled_relative_deviation()

    def _pooled_relative_deviation(self) -> float:
        """The median of ``|x - slot median| / slot median`` over the whole baseline: one noise level
        for every slot, steadier than the MAD of a slot of four buckets."""
        deviations = []
        for bucket in self.buckets:
            mid = self.stats(self.slot_for(bucket))["median"]
            if mid > 0:
                deviations.append(abs(self.value(bucket) - mid) / mid)
        self._stats.clear()
        return median(deviations) if deviations else 0.0

    def seasonality(self) -> str:
        if self.flat:
            return "none (the window against itself)"
        hourly = any(b.end - b.start < timedelta(days=1) for b in self.buckets[:1])
        parts = (["hour of day (UTC)"] if hourly else []) + (["weekday or weekend"] if self.weekly else [])
        return ", ".join(parts) or "none (the whole baseline)"

    def value(self, bucket: UsageBucket) -> float:
        return float(bucket.requests if self.metric == "requests" else bucket.input_tokens + bucket.output_tokens)

    def slot_for(self, bucket: UsageBucket) -> Slot:
        for slot in _slots(bucket, self.weekly):
            if len(self.groups.get(slot, ())) >= MIN_SLOT_POINTS or slot == (None, None):
                return slot
        return (None, None)  # pragma: no cover  (the whole baseline is always last)

    def stats(self, slot: Slot) -> dict[str, float]:
        if slot not in self._stats:
            group = self.groups.get(slot, [])
            mid, mad, floor = _spread([self.value(b) for b in group], scale=self.scale, relative=self.relative)
            self._stats[slot] = {
                "median": mid,
                "mad": mad,
                "floor": floor,
                "input": median([b.input_tokens for b in group]) if group else 0.0,
                "output": median([b.output_tokens for b in group]) if group else 0.0,
                "requests": median([b.requests for b in group]) if group else 0.0,
            }
        return self._stats[slot]


def price_of(provider: str | None, model: str | None = None) -> Pricing | None:
    """``(model, (usd per million input, output))`` to estimate cost with, or None when unknown."""
    table = PRICES.get(provider or "")
    if not table:
        return None
    chosen = model or DEFAULT_MODEL[provider or ""]
    if chosen not in table:
        known = ", ".join(sorted(table))
        raise InputError(f"no list price for model '{chosen}' at {provider}: expected one of {known}")
    return chosen, table[chosen]


def _priced(input_tokens: float, output_tokens: float, price: tuple[float, float]) -> float:
    return (input_tokens * price[0] + output_tokens * price[1]) / 1e6


def analyze(
    usage: Usage,
    *,
    window_start: datetime,
    window_end: datetime,
    provider: str | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """Split the buckets into baseline (ending before the window) and window (overlapping it), total
    the window, flag its anomalous buckets against their seasonal slot and estimate the excess.

    Returns the ``evidence`` section of the incident record (and ``cauterize evidence --json``).
    ``provider`` and ``model`` choose the list price used where the provider reports no cost."""
    start, end = _aware(window_start), _aware(window_end)
    ordered = sorted(usage.buckets, key=lambda b: _aware(b.start))
    base_buckets = [b for b in ordered if _aware(b.end) <= start]
    window = [b for b in ordered if _aware(b.start) < end and _aware(b.end) > start]
    has_tokens = any(b.input_tokens or b.output_tokens for b in ordered)
    metric = "tokens" if has_tokens or not any(b.requests for b in ordered) else "requests"
    baseline = _Baseline(base_buckets, metric)
    method, reason = _method(baseline, window)
    if method == "window":  # too little history: each bucket against the window's own median and MAD
        baseline = _Baseline(window, metric, flat=True)
    scored = method != "none"
    pricing = price_of(provider, model) if has_tokens else None
    limitations = list(usage.limitations)

    rows, fallbacks, excess_requests = [], 0, 0
    excess_cost: float | None = 0.0
    for bucket in window:
        slot = baseline.slot_for(bucket)
        stats = baseline.stats(slot)
        value = baseline.value(bucket)
        score = 0.6745 * (value - stats["median"]) / stats["floor"] if scored else 0.0
        anomalous = scored and score > THRESHOLD
        if method == "seasonal" and slot != _slots(bucket, baseline.weekly)[0] and slot == (None, None):
            fallbacks += 1
        row, extra_requests, extra_cost = _row(bucket, slot, stats, score, anomalous, pricing)
        rows.append(row)
        if anomalous:
            excess_requests += extra_requests
            excess_cost = None if extra_cost is None or excess_cost is None else excess_cost + extra_cost

    cost, cost_source = _window_cost(window, pricing)
    flagged = [row for row in rows if row["anomalous"]]
    limitations += _limitations(baseline, window, start, end, fallbacks, cost_source, pricing, provider)
    return {
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "totals": {
            "input_tokens": sum(b.input_tokens for b in window),
            "output_tokens": sum(b.output_tokens for b in window),
            "requests": sum(b.requests for b in window),
            "cost_usd": round(cost, 4) if cost is not None else None,
        },
        "cost": {
            "source": cost_source,
            "model": pricing[0] if pricing and cost_source in ("estimate", "mixed") else None,
            "usd_per_million_tokens": list(pricing[1]) if pricing and cost_source in ("estimate", "mixed") else None,
        },
        "buckets": rows,
        "context": {
            "start": [b.start.isoformat() for b in base_buckets[-CONTEXT_MAX:]],
            "seconds": [int((b.end - b.start).total_seconds()) for b in base_buckets[-CONTEXT_MAX:]],
            "tokens": [b.input_tokens + b.output_tokens for b in base_buckets[-CONTEXT_MAX:]],
            "requests": [b.requests for b in base_buckets[-CONTEXT_MAX:]],
        },
        "baseline": {
            "buckets": len(base_buckets),
            "start": base_buckets[0].start.isoformat() if base_buckets else None,
            "end": base_buckets[-1].end.isoformat() if base_buckets else None,
            "metric": baseline.metric,
            "seasonality": baseline.seasonality(),
            "median_tokens": median([b.input_tokens + b.output_tokens for b in base_buckets]) if base_buckets else 0,
            "mad_tokens": baseline.stats((None, None))["mad"] if baseline.metric == "tokens" else None,
            "threshold": THRESHOLD,
            "min_slot_points": MIN_SLOT_POINTS,
            "global_fallbacks": fallbacks,
        },
        "anomaly": {"method": method, "reason": reason, "threshold": THRESHOLD, "score": "modified z-score",
                    "baseline_buckets": len(base_buckets), "baseline_buckets_with_usage": sum(1 for b in base_buckets if baseline.value(b) > 0)
                    if method == "seasonal" else _with_usage(base_buckets),
                    "min_baseline": MIN_BASELINE},
        "anomalous_buckets": len(flagged),
        "first_anomaly": flagged[0]["start"] if flagged else None,
        "last_anomaly": flagged[-1]["end"] if flagged else None,
        "excess_tokens": sum(row["excess_tokens"] for row in flagged),
        "excess_requests": excess_requests,
        "excess_cost_usd": round(excess_cost, 4) if excess_cost is not None and flagged else None,
        "limitations": limitations,
    }


def _with_usage(buckets: list[UsageBucket]) -> int:
    return sum(1 for b in buckets if b.input_tokens or b.output_tokens or b.requests)


def _method(baseline: _Baseline, window: list[UsageBucket]) -> tuple[str, str]:
    """``seasonal`` (against the history before the window), ``window`` (the window against its own
    robust median and MAD: a change-point view) or ``none``, and why."""
    history = sum(1 for bucket in baseline.buckets if baseline.value(bucket) > 0)
    if history >= MIN_BASELINE:
        return "seasonal", (f"{history} baseline buckets with usage before the window: each bucket is compared "
                            "with the same hour (and kind of day) before it")
    if len(window) >= MIN_WINDOW:
        return "window", (f"only {history} baseline buckets with usage before the window (fewer than "
                          f"{MIN_BASELINE}: a new key, or data that starts with the window): each bucket is compared "
                          "with the window's own median and MAD, so a rise against the window's usual level is "
                          "flagged, and a window that is abused throughout is not")
    return "none", (f"only {history} baseline buckets with usage and {len(window)} window buckets: too few to "
                    "score; no bucket is flagged")


def _row(
    bucket: UsageBucket, slot: Slot, stats: dict[str, float], score: float, anomalous: bool, pricing: Pricing | None
) -> tuple[dict[str, Any], int, float | None]:
    """One bucket's row of the record, and its excess requests and cost (None: no price known)."""
    tokens = bucket.input_tokens + bucket.output_tokens
    excess_in = max(0, round(bucket.input_tokens - stats["input"])) if anomalous else 0
    excess_out = max(0, round(bucket.output_tokens - stats["output"])) if anomalous else 0
    if not anomalous:
        excess_cost: float | None = 0.0
    elif bucket.cost_usd is not None:
        excess_cost = bucket.cost_usd * (excess_in + excess_out) / tokens if tokens else 0.0
    elif pricing is not None:
        excess_cost = _priced(excess_in, excess_out, pricing[1])
    else:
        excess_cost = None
    row = {
        "start": bucket.start.isoformat(),
        "end": bucket.end.isoformat(),
        "input_tokens": bucket.input_tokens,
        "output_tokens": bucket.output_tokens,
        "requests": bucket.requests,
        "cost_usd": bucket.cost_usd,
        "anomalous": anomalous,
        "score": round(score, 2),
        "slot": _slot_name(slot),
        "expected": round(stats["median"], 1),
        "excess_tokens": excess_in + excess_out,
    }
    return row, max(0, round(bucket.requests - stats["requests"])) if anomalous else 0, excess_cost


def _window_cost(window: list[UsageBucket], pricing: Pricing | None) -> tuple[float | None, str | None]:
    """The window's cost and where it comes from: ``provider``, ``estimate``, ``mixed`` or None."""
    given = [b for b in window if b.cost_usd is not None]
    missing = [b for b in window if b.cost_usd is None]
    if window and not missing:
        return sum(b.cost_usd or 0.0 for b in given), "provider"
    if pricing is None:
        return (sum(b.cost_usd or 0.0 for b in given), "provider") if given else (None, None)
    estimate = sum(_priced(b.input_tokens, b.output_tokens, pricing[1]) for b in missing)
    return sum(b.cost_usd or 0.0 for b in given) + estimate, "mixed" if given else "estimate"


def _limitations(
    baseline: _Baseline, window: list[UsageBucket], start: datetime, end: datetime, fallbacks: int,
    cost_source: str | None, pricing: Pricing | None, provider: str | None,
) -> list[str]:
    notes = []
    if not baseline.buckets:
        notes.append("no baseline usage before the exposure window: anomalies cannot be judged")
    elif not baseline.weekly:
        notes.append("the baseline spans less than two weeks: weekdays and weekends are not told apart")
    if fallbacks:
        notes.append(
            f"{fallbacks} window bucket(s) were compared with the whole baseline: their hour of the day "
            f"had fewer than {MIN_SLOT_POINTS} baseline buckets"
        )
    if window and (_aware(window[0].start) < start or _aware(window[-1].end) > end):
        notes.append("the window does not fall on bucket boundaries: totals include the whole first and last bucket")
    if cost_source in ("estimate", "mixed") and pricing:
        model, (price_in, price_out) = pricing
        part = "where the provider reported no cost, " if cost_source == "mixed" else ""
        notes.append(
            f"cost is an estimate: {part}tokens priced at {model} list prices (${price_in:g} input, "
            f"${price_out:g} output per million tokens, cauterize.evidence.PRICES); the usage is not split "
            "by model, and cached or batch discounts are not applied"
        )
    elif cost_source is None and window:
        notes.append(f"no cost: {provider or 'the provider'} reports none for this key and has no price table here")
    return notes


def evidence_for(
    provider: Provider,
    identity: KeyIdentity,
    since: datetime,
    until: datetime,
    bucket: str = "1h",
    baseline_days: int = 14,
    *,
    model: str | None = None,
) -> dict[str, Any]:
    """Usage of the key over ``[since - baseline_days, until)`` from the provider, analysed with
    ``[since, until)`` as the exposure window. Shared by ``cauterize evidence`` and the flow."""
    since, until = _aware(since), _aware(until)
    if bucket not in BUCKETS:
        raise InputError(f"--bucket must be one of {', '.join(BUCKETS)}, not '{bucket}'")
    if until <= since:
        raise InputError(f"--until ({until.isoformat()}) must be later than --since ({since.isoformat()})")
    if baseline_days < 0:
        raise InputError(f"--baseline-days must be 0 or more, not {baseline_days}")
    baseline_start = since - timedelta(days=baseline_days)
    usage = provider.usage(identity, baseline_start, until, bucket)
    name = getattr(provider, "name", None) or identity.provider
    result = analyze(usage, window_start=since, window_end=until, provider=name, model=model)
    result["window"].update(baseline_start=baseline_start.isoformat(), baseline_days=baseline_days)
    result["bucket"] = bucket
    return result
