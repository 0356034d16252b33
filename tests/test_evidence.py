import random
from datetime import UTC, datetime, timedelta

import pytest

from cauterize.errors import InputError
from cauterize.evidence import PRICES, analyze, evidence_for, robust_scores
from cauterize.providers.base import KeyIdentity, Usage, UsageBucket

T0 = datetime(2026, 11, 1, tzinfo=UTC)
MONDAY = datetime(2026, 3, 2, tzinfo=UTC)


def _buckets(values, start=T0):
    return [UsageBucket(start + timedelta(hours=i), start + timedelta(hours=i + 1), v, v // 10, v // 100) for i, v in enumerate(values)]


def seasonal_usage(seed=1, *, start=MONDAY, days=16, spike=None, noise=0.3):
    """Hourly office-hours usage (weekdays 08-19 UTC busy, nights and weekends quiet) with
    multiplicative noise; ``spike`` = (from, to) adds abuse to every hour in it."""
    rng = random.Random(seed)
    buckets = []
    for hour in (start + timedelta(hours=h) for h in range(days * 24)):
        busy = 8 <= hour.hour < 19 and hour.weekday() < 5
        tokens = int((4000 if busy else 400) * rng.uniform(1 - noise, 1 + noise))
        requests = int((20 if busy else 2) * rng.uniform(0.5, 1.5))
        if spike and spike[0] <= hour < spike[1]:
            tokens, requests = tokens + rng.randint(30_000, 80_000), requests + rng.randint(100, 300)
        buckets.append(UsageBucket(hour, hour + timedelta(hours=1), tokens, tokens // 4, requests))
    return Usage(tuple(buckets), ("provider says hello",))


def _flagged(result):
    return [datetime.fromisoformat(b["start"]) for b in result["buckets"] if b["anomalous"]]


def test_spike_in_the_window_is_flagged_and_totalled():
    baseline = [1000 + (i % 5) * 20 for i in range(48)]
    window = [1010, 1030, 25000, 990]
    usage = Usage(tuple(_buckets(baseline + window)))
    start = T0 + timedelta(hours=48)
    result = analyze(usage, window_start=start, window_end=start + timedelta(hours=4))
    assert [b["anomalous"] for b in result["buckets"]] == [False, False, True, False]
    assert result["totals"]["input_tokens"] == sum(window)
    assert result["anomalous_buckets"] == 1 and result["excess_tokens"] > 20000
    assert result["baseline"]["buckets"] == 48


def test_no_baseline_is_a_stated_limitation():
    usage = Usage(tuple(_buckets([5, 6])))
    result = analyze(usage, window_start=T0, window_end=T0 + timedelta(hours=2))
    assert not any(b["anomalous"] for b in result["buckets"])
    assert any("baseline" in item for item in result["limitations"])


def test_flat_baseline_does_not_flag_noise():
    _, _, scores = robust_scores([100] * 20, [101, 99, 104])
    assert max(scores) < 3.5
    flat = Usage(tuple(_buckets([1000] * (15 * 24) + [1000, 1030, 985, 1049] * 12)))
    start = T0 + timedelta(days=15)
    assert analyze(flat, window_start=start, window_end=start + timedelta(hours=48))["anomalous_buckets"] == 0


@pytest.mark.parametrize("offset", range(7))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_office_hours_do_not_look_anomalous(seed, offset):
    """Normal days, whichever weekday the window starts on: a flat baseline would flag every
    office hour against the nights; the seasonal one flags (almost) nothing."""
    start = MONDAY + timedelta(days=offset)
    usage = seasonal_usage(seed, start=start)
    since = start + timedelta(days=14)
    result = analyze(usage, window_start=since, window_end=since + timedelta(days=2), provider="openai")
    assert result["anomalous_buckets"] <= 1, _flagged(result)
    assert "weekday or weekend" in result["baseline"]["seasonality"]
    naive = robust_scores([b.input_tokens + b.output_tokens for b in usage.buckets[: 14 * 24]],
                          [b.input_tokens + b.output_tokens for b in usage.buckets[14 * 24:]])[2]
    assert sum(score > 3.5 for score in naive) > 5 or offset in (5, 6), "the flat baseline is the naive one"


@pytest.mark.parametrize("seed", range(1, 9))
def test_a_36_hour_spike_is_flagged_with_at_most_a_couple_of_false_positives(seed):
    since = MONDAY + timedelta(days=14)
    spike = (since + timedelta(hours=6), since + timedelta(hours=42))
    usage = seasonal_usage(seed, spike=spike)
    result = analyze(usage, window_start=since, window_end=since + timedelta(days=2), provider="openai")
    flagged = set(_flagged(result))
    expected = {spike[0] + timedelta(hours=h) for h in range(36)}
    assert expected <= flagged
    assert len(flagged - expected) <= 2
    window = [b for b in usage.buckets if since <= b.start < since + timedelta(days=2)]
    assert result["totals"] == {
        "input_tokens": sum(b.input_tokens for b in window),
        "output_tokens": sum(b.output_tokens for b in window),
        "requests": sum(b.requests for b in window),
        "cost_usd": result["totals"]["cost_usd"],
    }
    assert result["first_anomaly"] == spike[0].isoformat() and result["last_anomaly"] == spike[1].isoformat()
    spike_tokens = sum(b.input_tokens + b.output_tokens for b in window if spike[0] <= b.start < spike[1])
    assert 0.8 * spike_tokens < result["excess_tokens"] < spike_tokens
    assert result["excess_requests"] > 36 * 100 * 0.8


def test_cost_is_an_estimate_from_the_price_table_and_says_so():
    since = MONDAY + timedelta(days=14)
    usage = seasonal_usage(4, spike=(since, since + timedelta(hours=36)))
    result = analyze(usage, window_start=since, window_end=since + timedelta(days=2), provider="anthropic")
    price_in, price_out = PRICES["anthropic"]["claude-sonnet-4-5"]
    totals = result["totals"]
    assert totals["cost_usd"] == pytest.approx((totals["input_tokens"] * price_in + totals["output_tokens"] * price_out) / 1e6,
                                               abs=1e-3)
    assert result["cost"] == {"source": "estimate", "model": "claude-sonnet-4-5", "usd_per_million_tokens": [3.0, 15.0]}
    assert any(item.startswith("cost is an estimate") and "claude-sonnet-4-5" in item for item in result["limitations"])
    assert 0 < result["excess_cost_usd"] < totals["cost_usd"]
    cheaper = analyze(usage, window_start=since, window_end=since + timedelta(days=2), provider="openai", model="gpt-4o-mini")
    assert cheaper["totals"]["cost_usd"] < totals["cost_usd"] and cheaper["cost"]["model"] == "gpt-4o-mini"
    with pytest.raises(InputError, match="gpt-4o"):
        analyze(usage, window_start=since, window_end=since + timedelta(days=1), provider="openai", model="gpt-0")


def test_the_providers_cost_is_used_where_given():
    days = [UsageBucket(T0 + timedelta(days=d), T0 + timedelta(days=d + 1), 1000, 100, 10, 0.5) for d in range(20)]
    days[-1] = UsageBucket(days[-1].start, days[-1].end, 90_000, 9_000, 900, 45.0)
    result = analyze(Usage(tuple(days)), window_start=T0 + timedelta(days=18), window_end=T0 + timedelta(days=20),
                     provider="openai")
    assert result["totals"]["cost_usd"] == 45.5 and result["cost"]["source"] == "provider"
    assert not any("estimate" in item for item in result["limitations"])
    assert result["anomalous_buckets"] == 1 and result["excess_cost_usd"] == pytest.approx(45.0 * (99_000 - 1_100) / 99_000, rel=1e-3)


def test_requests_only_providers_are_scored_on_requests_without_cost():
    counts = [UsageBucket(T0 + timedelta(hours=h), T0 + timedelta(hours=h + 1), requests=5 + h % 3) for h in range(15 * 24)]
    counts += [UsageBucket(T0 + timedelta(hours=h), T0 + timedelta(hours=h + 1), requests=400) for h in range(15 * 24, 15 * 24 + 3)]
    start = T0 + timedelta(days=15)
    result = analyze(Usage(tuple(counts)), window_start=start, window_end=start + timedelta(hours=3), provider="google")
    assert result["baseline"]["metric"] == "requests" and result["anomalous_buckets"] == 3
    assert result["totals"]["cost_usd"] is None and any(item.startswith("no cost") for item in result["limitations"])


def test_weekend_traffic_at_weekday_levels_is_flagged_once_the_baseline_spans_two_weeks():
    usage = seasonal_usage(5, start=MONDAY, days=15)
    saturday = MONDAY + timedelta(days=19)
    busy = tuple(UsageBucket(saturday + timedelta(hours=h), saturday + timedelta(hours=h + 1), 4000, 1000, 20)
                 for h in range(8, 19))
    usage = Usage(usage.buckets + busy)
    result = analyze(usage, window_start=saturday, window_end=saturday + timedelta(days=1))
    assert result["anomalous_buckets"] == 11
    assert {b["slot"] for b in result["buckets"]} == {f"weekend {h:02d}:00" for h in range(8, 19)}


def test_a_short_baseline_falls_back_and_says_so():
    usage = seasonal_usage(6, days=3)
    since = MONDAY + timedelta(days=2)
    result = analyze(usage, window_start=since, window_end=since + timedelta(days=1))
    assert result["baseline"]["global_fallbacks"] == 24 and {b["slot"] for b in result["buckets"]} == {"all"}
    assert any("whole baseline" in item for item in result["limitations"])
    assert any("less than two weeks" in item for item in result["limitations"])
    assert "provider says hello" in result["limitations"]


class _Recorder:
    """A provider that serves fixed usage and records what it was asked for."""

    name = "openai"

    def __init__(self, usage):
        self.usage_served, self.calls = usage, []

    def usage(self, identity, start, end, bucket):
        self.calls.append((identity.key_id, start, end, bucket))
        return self.usage_served


def test_evidence_for_asks_for_the_baseline_and_the_window():
    since = MONDAY + timedelta(days=14)
    provider = _Recorder(seasonal_usage(7))
    result = evidence_for(provider, KeyIdentity("openai", "key_x"), since, since + timedelta(days=2), "1h", 14)
    assert provider.calls == [("key_x", MONDAY, since + timedelta(days=2), "1h")]
    assert result["bucket"] == "1h" and result["window"]["baseline_days"] == 14
    assert result["window"]["baseline_start"] == MONDAY.isoformat()
    assert result["cost"]["source"] == "estimate"
    for args, option in (((since, since, "1h", 14), "--until"), ((since, since + timedelta(1), "5m", 14), "--bucket"),
                         ((since, since + timedelta(1), "1h", -1), "--baseline-days")):
        with pytest.raises(InputError, match=option):
            evidence_for(provider, KeyIdentity("openai", "key_x"), *args)


def _new_key_usage(prior_idle_hours: int) -> list[UsageBucket]:
    """240 hours of ordinary use with a 36-hour spike, after ``prior_idle_hours`` of no use at all."""
    rng = random.Random(7)
    rows = []
    for hour in range(-prior_idle_hours, 240):
        start = T0 + timedelta(hours=hour)
        tokens = 0 if hour < 0 else rng.randint(90_000, 110_000) if 100 <= hour < 136 else rng.randint(800, 1_200)
        rows.append(UsageBucket(start, start + timedelta(hours=1), tokens, tokens // 4, tokens // 500))
    return rows


@pytest.mark.parametrize("idle", [0, 48])
def test_a_new_key_is_scored_against_its_own_window_and_only_the_spike_is_flagged(idle):
    result = analyze(Usage(tuple(_new_key_usage(idle))), window_start=T0, window_end=T0 + timedelta(hours=240),
                     provider="openai")
    flags = [row["anomalous"] for row in result["buckets"]]
    assert sum(flags[100:136]) == 36
    assert sum(flags[:100]) + sum(flags[136:]) <= 5
    assert result["anomaly"]["method"] == "window" and result["anomaly"]["baseline_buckets"] == idle
    assert "fewer than" in result["anomaly"]["reason"] and result["anomaly"]["threshold"] == 3.5


def test_a_window_too_short_to_score_itself_flags_nothing_and_says_so():
    rows = _new_key_usage(0)[98:104]  # six hours, three of them the spike's start
    result = analyze(Usage(tuple(rows)), window_start=rows[0].start, window_end=rows[-1].end, provider="openai")
    assert result["anomaly"]["method"] == "none" and result["anomalous_buckets"] == 0


def test_with_enough_history_the_seasonal_baseline_is_used():
    rows = _new_key_usage(0)
    result = analyze(Usage(tuple(rows)), window_start=T0 + timedelta(hours=96), window_end=T0 + timedelta(hours=240),
                     provider="openai")
    assert result["anomaly"]["method"] == "seasonal"
    assert sum(row["anomalous"] for row in result["buckets"][4:40]) == 36
