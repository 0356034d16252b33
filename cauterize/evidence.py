"""Usage evidence over the exposure window, against a baseline, with robust anomaly statistics.

Anomalies use the median and the median absolute deviation (MAD) of the baseline buckets:
the modified z-score ``0.6745 * (x - median) / MAD`` (Iglewicz and Hoaglin); a bucket above
``THRESHOLD`` is flagged. A floor on the MAD keeps a perfectly flat baseline from flagging noise.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from statistics import median
from typing import Any

from cauterize.providers.base import Usage, UsageBucket

THRESHOLD = 3.5


def robust_scores(baseline: Iterable[float], values: Iterable[float]) -> tuple[float, float, list[float]]:
    """(median, MAD, modified z-score of each value) against the baseline."""
    base = list(baseline)
    mid = median(base) if base else 0.0
    mad = median([abs(x - mid) for x in base]) if base else 0.0
    floor = max(mad, 0.05 * mid, 1.0)
    return mid, mad, [0.6745 * (x - mid) / floor for x in values]


def _tokens(bucket: UsageBucket) -> int:
    return bucket.input_tokens + bucket.output_tokens


def analyze(usage: Usage, *, window_start: datetime, window_end: datetime) -> dict[str, Any]:
    """Split the buckets into baseline (before the window) and window, total the window and
    flag its anomalous buckets. Returns the ``evidence`` section of the incident record."""
    baseline = [b for b in usage.buckets if b.end <= window_start]
    window = [b for b in usage.buckets if b.start < window_end and b.end > window_start]
    mid, mad, scores = robust_scores((_tokens(b) for b in baseline), (_tokens(b) for b in window))
    buckets = []
    excess = 0
    for bucket, score in zip(window, scores):
        anomalous = bool(baseline) and score > THRESHOLD
        if anomalous:
            excess += max(0, int(_tokens(bucket) - mid))
        buckets.append(
            {
                "start": bucket.start.isoformat(),
                "end": bucket.end.isoformat(),
                "input_tokens": bucket.input_tokens,
                "output_tokens": bucket.output_tokens,
                "requests": bucket.requests,
                "cost_usd": bucket.cost_usd,
                "anomalous": anomalous,
                "score": round(score, 2),
            }
        )
    costs = [b.cost_usd for b in window if b.cost_usd is not None]
    limitations = list(usage.limitations)
    if not baseline:
        limitations.append("no baseline usage before the exposure window: anomalies cannot be judged")
    return {
        "window": {"start": window_start.isoformat(), "end": window_end.isoformat()},
        "totals": {
            "input_tokens": sum(b.input_tokens for b in window),
            "output_tokens": sum(b.output_tokens for b in window),
            "requests": sum(b.requests for b in window),
            "cost_usd": round(sum(costs), 4) if costs else None,
        },
        "buckets": buckets,
        "baseline": {
            "buckets": len(baseline),
            "median_tokens": mid,
            "mad_tokens": mad,
            "threshold": THRESHOLD,
        },
        "anomalous_buckets": sum(1 for b in buckets if b["anomalous"]),
        "excess_tokens": excess,
        "limitations": limitations,
    }
