"""Watch every key of an organisation: usage anomalies against each key's own baseline, and spend
against a monthly budget.

``watch("openai", settings, since=..., until=...)`` reads, through the provider's admin client,

* OpenAI: every project's keys (``iter_projects``, ``iter_project_api_keys``: ``redacted_value``),
  ``usage/completions`` grouped by ``api_key_id`` over ``[since - baseline_days, until)`` and, with a
  budget, ``costs`` grouped by ``api_key_id`` since the first of the month;
* Anthropic: every key (``iter_api_keys``: ``partial_key_hint``) and the Messages usage report
  grouped by ``api_key_id``; Anthropic reports no cost per key, so spend is estimated from tokens
  at list prices (``cauterize.evidence``), and the result says so.

Each key's series (zero-filled, from its creation on) goes through ``cauterize.evidence.analyze``
with ``[since, until)`` as the window: the same seasonal robust statistics as the evidence step.
A key with an anomalous bucket gets a ``usage-anomaly`` alert; a key whose month-to-date spend
reaches ``BUDGET_ALERT_AT`` (80%) of ``budget_usd_monthly`` gets a ``budget`` alert. A key that
was dormant since its creation and is suddenly used is anomalous: that is how a leak often shows.

``notify(url, result)`` posts them to a Slack-compatible webhook (``cauterize.notify``), key ids only. Nothing here ever holds
a key value: listings give redacted forms, usage gives ids.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from cauterize.errors import InputError, ProviderRejected
from cauterize.evidence import analyze
from cauterize.providers.base import KeyIdentity, ProviderSettings, Usage, UsageBucket, get_provider
from cauterize.secret import Secret

BUDGET_ALERT_AT = 0.8
BUCKET_SECONDS = {"1m": 60, "1h": 3600, "1d": 86400}
_PAGE_LIMIT = {"1m": 1440, "1h": 168, "1d": 31}  # the largest usage page per bucket width


@dataclass
class KeyInfo:
    redacted: str | None
    created: datetime | None = None


@dataclass
class Fleet:
    """Usage of every key over a period, as one provider reports it."""

    keys: dict[str, KeyInfo] = field(default_factory=dict)
    bounds: list[tuple[datetime, datetime]] = field(default_factory=list)
    usage: dict[str, dict[datetime, list[int]]] = field(default_factory=dict)  # id -> start -> [in, out, req]
    costs: dict[str, float] | None = None  # the provider's month-to-date cost per key, None when it has none
    limitations: list[str] = field(default_factory=list)

    def add(self, key_id: str, start: datetime, input_tokens: int, output_tokens: int, requests: int) -> None:
        total = self.usage.setdefault(key_id, {}).setdefault(start, [0, 0, 0])
        total[0] += input_tokens
        total[1] += output_tokens
        total[2] += requests


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime
    bucket: str
    month_start: datetime | None  # set when a budget is checked


Reader = Callable[[Any, Period], Fleet]


def watch(
    provider_name: str,
    settings: ProviderSettings,
    *,
    since: datetime,
    until: datetime,
    bucket: str = "1h",
    baseline_days: int = 14,
    budget_usd_monthly: float | None = None,
    key_budgets: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Alerts for every key of the organisation; see the module docstring. ``key_budgets`` (key id ->
    monthly USD, from the runbooks that own those keys) overrides ``budget_usd_monthly`` per key."""
    since, until = _aware(since), _aware(until)
    reader = READERS.get(provider_name)
    if reader is None:
        raise InputError(
            f"watch reads usage per key from {' and '.join(sorted(READERS))} only, not '{provider_name}': "
            "the other providers report no usage per key"
        )
    if bucket not in BUCKET_SECONDS:
        raise InputError(f"--bucket must be one of {', '.join(BUCKET_SECONDS)}, not '{bucket}'")
    if until <= since:
        raise InputError(f"--until ({until.isoformat()}) must be later than --since ({since.isoformat()})")
    if baseline_days < 0:
        raise InputError(f"--baseline-days must be 0 or more, not {baseline_days}")
    key_budgets = dict(key_budgets or {})
    for amount in [budget_usd_monthly, *key_budgets.values()]:
        if amount is not None and amount <= 0:
            raise InputError(f"the monthly budget must be more than 0 USD, not {amount}")
    baseline_start = since - timedelta(days=baseline_days)
    budgeted = budget_usd_monthly is not None or bool(key_budgets)
    month_start = until.replace(day=1, hour=0, minute=0, second=0, microsecond=0) if budgeted else None
    period = Period(min(baseline_start, month_start or baseline_start), until, bucket, month_start)
    provider = get_provider(provider_name, settings)
    try:
        fleet = reader(provider, period)
    finally:
        provider.close()

    alerts: list[dict[str, Any]] = []
    estimated = False
    key_ids = sorted(set(fleet.keys) | set(fleet.usage))
    for key_id in key_ids:
        info = fleet.keys.get(key_id) or KeyInfo(None)
        series = _series(fleet, key_id, info.created)
        recent = Usage(tuple(b for b in series if b.end > baseline_start))
        result = analyze(recent, window_start=since, window_end=until, provider=provider_name)
        alert = _anomaly_alert(provider_name, key_id, info, result)
        if alert:
            alerts.append(alert)
        budget = key_budgets.get(key_id, budget_usd_monthly)
        if budget is not None and month_start is not None:
            spend, was_estimated = _spend(fleet, key_id, series, month_start, until, provider_name)
            estimated = estimated or (was_estimated and spend is not None)
            if spend is not None and spend >= BUDGET_ALERT_AT * budget:
                window = {"start": month_start.isoformat(), "end": until.isoformat()}
                ratio = round(spend / budget, 3)
                alerts.append(_alert(provider_name, key_id, info, "budget", window, round(spend, 2), budget, ratio))
    limitations = list(fleet.limitations)
    if estimated:
        limitations.append(
            f"spend is estimated from tokens at list prices (cauterize.evidence.PRICES): {provider_name} "
            "reports no cost per key"
        )
    unlisted = [k for k in key_ids if k not in fleet.keys]
    if unlisted:
        limitations.append(
            f"{len(unlisted)} key id(s) with usage are not in the key listing (deleted?): no redacted form"
        )
    return {
        "provider": provider_name,
        "window": {
            "since": since.isoformat(),
            "until": until.isoformat(),
            "bucket": bucket,
            "baseline_start": baseline_start.isoformat(),
            "baseline_days": baseline_days,
        },
        "budget_usd_monthly": budget_usd_monthly,
        "checked_keys": len(key_ids),
        "alerts": alerts,
        "limitations": limitations,
    }


def _series(fleet: Fleet, key_id: str, created: datetime | None) -> list[UsageBucket]:
    """Every bucket of the period for one key, zeros where it had no usage, from its creation on,
    or from its first usage if the provider reports any earlier (a creation time is the listing's
    word, usage the meter's: usage is never dropped)."""
    own = fleet.usage.get(key_id, {})
    first = min(own, default=None)
    begin = created if created is None or first is None else min(created, first)
    return [
        UsageBucket(start, end, *own.get(start, (0, 0, 0)))
        for start, end in fleet.bounds
        if begin is None or end > begin
    ]


def _anomaly_alert(provider: str, key_id: str, info: KeyInfo, result: dict[str, Any]) -> dict[str, Any] | None:
    flagged = [row for row in result["buckets"] if row["anomalous"]]
    if not flagged:
        return None
    by_requests = result["baseline"]["metric"] == "requests"
    observed = sum(row["requests"] if by_requests else row["input_tokens"] + row["output_tokens"] for row in flagged)
    expected = sum(row["expected"] for row in flagged)
    window = {"start": flagged[0]["start"], "end": flagged[-1]["end"]}
    score = max(row["score"] for row in flagged)
    return _alert(provider, key_id, info, "usage-anomaly", window, observed, round(expected, 1), score)


def _spend(
    fleet: Fleet, key_id: str, series: list[UsageBucket], month_start: datetime, until: datetime, provider: str
) -> tuple[float | None, bool]:
    """(month-to-date spend, whether it is an estimate): the provider's cost, else tokens at list price."""
    if fleet.costs is not None:
        return fleet.costs.get(key_id, 0.0), False
    month = Usage(tuple(b for b in series if b.start >= month_start))
    if not month.buckets:
        return 0.0, False
    totals = analyze(month, window_start=month_start, window_end=until, provider=provider)["totals"]
    return totals["cost_usd"], True


def _alert(
    provider: str,
    key_id: str,
    info: KeyInfo,
    reason: str,
    window: dict[str, str],
    observed: float,
    baseline: float,
    score: float,
) -> dict[str, Any]:
    return {
        "provider": provider,
        "key_id": key_id,
        "redacted": info.redacted,
        "reason": reason,
        "window": window,
        "observed": observed,
        "baseline": baseline,
        "score": score,
    }


# ---- the providers' admin APIs --------------------------------------------------------------


def _openai_fleet(provider: Any, period: Period) -> Fleet:
    """Keys of every active project, completions usage by key, and (with a budget) costs by key."""
    admin, fleet = provider.admin, Fleet()
    for project in admin.iter_projects(include_archived=False):
        for key in admin.iter_project_api_keys(project["id"]):
            fleet.keys[key["id"]] = KeyInfo(key.get("redacted_value"), _from_unix(key.get("created_at")))
    for item in admin.iter_usage_completions(
        start_time=_unix(period.start),
        end_time=_unix(period.end),
        bucket_width=period.bucket,
        group_by=["api_key_id"],
        limit=_PAGE_LIMIT[period.bucket],
    ):
        start = _from_unix(item["start_time"])
        assert start is not None
        fleet.bounds.append((start, _from_unix(item["end_time"]) or start))
        for result in item.get("results") or []:
            if result.get("api_key_id"):
                fleet.add(
                    result["api_key_id"],
                    start,
                    result.get("input_tokens") or 0,
                    result.get("output_tokens") or 0,
                    result.get("num_model_requests") or 0,
                )
    fleet.limitations.append("OpenAI: completions usage only (embeddings, images and audio are not counted)")
    if period.month_start is not None:
        try:
            costs: dict[str, float] = defaultdict(float)
            for item in admin.iter_costs(
                start_time=_unix(period.month_start), end_time=_unix(period.end), group_by=["api_key_id"], limit=180
            ):
                for result in item.get("results") or []:
                    amount = float((result.get("amount") or {}).get("value") or 0)
                    costs[result.get("api_key_id") or ""] += amount
            costs.pop("", None)
            fleet.costs = dict(costs)
        except ProviderRejected as exc:
            fleet.limitations.append(f"OpenAI costs were not available ({exc.message}): spend is estimated")
    return fleet


def _anthropic_fleet(provider: Any, period: Period) -> Fleet:
    """Every key not archived, and Messages usage by key (tokens; Anthropic counts no requests)."""
    from cauterize.providers.anthropic import _input_tokens  # the provider's own token accounting

    admin, fleet = provider.admin, Fleet()
    for key in admin.iter_api_keys():
        if key.get("status") != "archived":
            fleet.keys[key["id"]] = KeyInfo(key.get("partial_key_hint"), _from_iso(key.get("created_at")))
    unattributed = 0
    for item in admin.iter_messages_usage_report(
        starting_at=_rfc3339(period.start),
        ending_at=_rfc3339(period.end),
        bucket_width=period.bucket,
        group_by=["api_key_id"],
        limit=_PAGE_LIMIT[period.bucket],
    ):
        start = _from_iso(item["starting_at"])
        assert start is not None
        fleet.bounds.append((start, _from_iso(item["ending_at"]) or start))
        for result in item.get("results") or []:
            if result.get("api_key_id"):
                fleet.add(result["api_key_id"], start, _input_tokens(result), result.get("output_tokens") or 0, 0)
            else:
                unattributed += 1
    if unattributed:
        fleet.limitations.append("Anthropic: Console and Workbench usage carries no key id and is not watched")
    return fleet


READERS: dict[str, Reader] = {"openai": _openai_fleet, "anthropic": _anthropic_fleet}


# ---- notification and auto-response ---------------------------------------------------------


def alert_message(result: dict[str, Any]) -> tuple[str, dict[str, object]]:
    """The text and fields of the alert notification: key ids, reasons and numbers; no redacted forms."""
    alerts = result["alerts"]
    text = f"cauterize watch: {len(alerts)} alert(s) for {result['provider']} ({result['checked_keys']} key(s) checked)"
    fields: dict[str, object] = {
        f"{a['reason']} {a['key_id']}": f"{a['window']['start']} to {a['window']['end']}: observed "
        f"{a['observed']:,} vs baseline {a['baseline']:,} (score {a['score']})"
        for a in alerts[:50]
    }
    return text, fields


def notify(url: str | Secret, result: dict[str, Any], *, transport: httpx.BaseTransport | None = None) -> bool:
    """Post the alerts of ``result`` to a Slack-compatible incoming webhook (``{"text": ...}``, through
    ``cauterize.notify``); True when the webhook took it. The URL is a credential: never logged."""
    from cauterize import notify as webhook

    text, fields = alert_message(result)
    return webhook.notify(url, text, fields, transport=transport)


def runbooks_to_start(alerts: Iterable[dict[str, Any]], watched: Iterable[tuple[str, KeyIdentity]]) -> list[str]:
    """The runbooks (of those opted in with ``watch.auto_respond``, given as ``(runbook, identity of its
    key)``) whose key alerted: each should start ``key-compromised``."""
    alerted = {(a["provider"], a["key_id"]) for a in alerts}
    return [runbook for runbook, identity in watched if (identity.provider, identity.key_id) in alerted]


def _aware(moment: datetime) -> datetime:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _unix(moment: datetime) -> int:
    return int(moment.timestamp())


def _rfc3339(moment: datetime) -> str:
    return _aware(moment).isoformat().replace("+00:00", "Z")


def _from_unix(stamp: Any) -> datetime | None:
    return datetime.fromtimestamp(int(stamp), UTC) if stamp is not None else None


def _from_iso(value: Any) -> datetime | None:
    try:
        return _aware(datetime.fromisoformat(str(value))) if value else None
    except ValueError:
        return None
