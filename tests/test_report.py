from datetime import timedelta

import pytest

from cauterize.incident import ActionItem, Incident, KeyRecord, utcnow
from cauterize.report import duration, render
from cauterize.secret import Secret


def _incident(secret: Secret, **extra) -> Incident:
    now = utcnow()
    return Incident(
        id="20261126T000000Z-rb-abcdef12", runbook="rb", runbook_path="/x/rb.yaml", created_at=now, updated_at=now,
        provider="openai", order="revoke-first",
        old_key=KeyRecord(fingerprint=secret.fingerprint, redacted=secret.redacted), **extra,
    )


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_an_empty_record_renders(fmt, leaked_key):
    text = render(_incident(Secret(leaked_key)), fmt)
    assert "not identified" in text and "incomplete" in text.lower()
    assert leaked_key not in text


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_a_full_record_renders_every_section(fmt, leaked_key):
    secret = Secret(leaked_key)
    now = utcnow()
    incident = _incident(
        secret,
        exposure_start=now - timedelta(days=2, hours=3),
        revoked_at=now,
        findings=[{"source": "git", "location": "app:config.py@abc", "encoding": "raw", "reachable": True,
                   "first_seen": "2026-11-24T00:00:00Z", "repo": "app"}],
        purge=[{"repo": "app", "commits_rewritten": 2, "refs_changed": ["refs/heads/main"], "pushed": True,
                "verified": True, "refused_refs": ["refs/pull/1/head"], "leftovers": []}],
        evidence={"window": {"start": "a", "end": "b"}, "totals": {"requests": 5, "input_tokens": 1000,
                  "output_tokens": 10, "cost_usd": 1.5}, "baseline": {"median_tokens": 3, "buckets": 4},
                  "anomalous_buckets": 1, "excess_tokens": 900, "limitations": ["cost is daily only"],
                  "buckets": [{"start": "s", "requests": 5, "input_tokens": 1000, "output_tokens": 10,
                               "anomalous": True, "score": 9.1}]},
        action_items=[ActionItem(step="purge", text="re-clone app <script>")],
    )
    for name in incident.steps:
        incident.steps[name].status = "ok"
    text = render(incident, fmt)
    assert "contained" in text.lower() and "2 d 3 h" in text and "refs/pull/1/head" in text and "$1.50" in text
    assert ("&lt;script&gt;" in text) == (fmt == "html")
    assert leaked_key not in text


def test_duration():
    now = utcnow()
    assert duration(None, now) == "—"
    assert duration(now - timedelta(minutes=61), now) == "1 h 1 min"
