from datetime import UTC, datetime, timedelta

from cauterize.evidence import analyze, robust_scores
from cauterize.providers.base import Usage, UsageBucket

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _buckets(values, start=T0):
    return [UsageBucket(start + timedelta(hours=i), start + timedelta(hours=i + 1), v, v // 10, v // 100) for i, v in enumerate(values)]


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
