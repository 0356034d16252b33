"""``cauterize watch``: usage anomalies and budget alerts for every key of the organisation.

    cauterize watch --provider P [--since T] [--until T] [--bucket 1m|1h|1d] [--baseline-days N]
                    [--budget-usd USD] [--runbook FILE] [--json]
    cauterize watch --runbook-dir DIR [--since T] ... [--json]

With ``--runbook-dir`` it watches every organisation the directory's runbooks name, each runbook's
budget on its own key, and lists the runbooks that opted in to ``watch.auto_respond`` and whose key
alerted (the ``key-watch`` deployment starts ``key-compromised`` for them; this command only says
so: a person decides). See ``cauterize.watchlist``.

T is ISO-8601 or a time ago (``24h``, ``7d``; see ``cauterize.when.parse_when``); ``--since``
defaults to 24 hours ago, the span of a daily run. The admin credential comes from the provider's
environment (``OPENAI_ADMIN_KEY``, ``ANTHROPIC_ADMIN_KEY``, ``*_BASE_URL``), or from ``--runbook``'s
``providers`` section, whose ``watch`` section also gives the monthly budget and the ``notify``
webhook (a key source reference: the URL carries a token; else the runbook's ``notify.url``).
Alerts are posted there, ids only. Registered in ``cli.py`` as ``app.command("watch")(watch)``.
Exit 0 with or without alerts; 3 when the alerts could not be posted (after printing them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer


def watch(
    provider: str | None = typer.Option(None, "--provider", help="openai or anthropic (usage per key)."),
    since: str = typer.Option("24h", "--since", help="Start of the recent window: ISO-8601 or a time ago (24h, 7d)."),
    until: str | None = typer.Option(None, "--until", help="End of the recent window; default now."),
    bucket: str = typer.Option("1h", "--bucket", help="Bucket width: 1m, 1h or 1d."),
    baseline_days: int = typer.Option(14, "--baseline-days", help="Days of usage before --since to compare with."),
    budget_usd: float | None = typer.Option(None, "--budget-usd", help="Monthly budget per key; alert at 80%."),
    runbook: Path | None = typer.Option(None, "--runbook", help="Read providers and watch (budget, notify) from it."),
    runbook_dir: Path | None = typer.Option(None, "--runbook-dir", help="Watch every runbook of this directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the alerts as one JSON document."),
) -> None:
    """Pull usage for every key, compare each with its own baseline, and flag anomalies and keys
    past 80% of the monthly budget."""
    from cauterize.cli import _emit_json
    from cauterize.errors import InputError, ProviderUnavailable
    from cauterize.providers.base import settings_for
    from cauterize.watch import notify
    from cauterize.watch import watch as run_watch
    from cauterize.when import parse_when

    now = datetime.now(UTC)
    start = parse_when(since, "--since", now=now)
    end = parse_when(until, "--until", now=now) if until else now
    if runbook_dir is not None:
        if provider or runbook or budget_usd is not None:
            raise InputError("--runbook-dir takes providers and budgets from the runbooks: drop --provider, "
                             "--runbook and --budget-usd")
        _watch_directory(runbook_dir, start, end, bucket, baseline_days, as_json)
        return
    if provider is None:
        raise InputError("--provider is required (openai or anthropic), unless --runbook-dir is given")
    settings, budget, notify_url = settings_for(provider), budget_usd, None
    if runbook is not None:
        settings, runbook_budget, notify_url = _from_runbook(runbook, provider)
        budget = budget if budget is not None else runbook_budget
    result = run_watch(
        provider, settings, since=start, until=end, bucket=bucket, baseline_days=baseline_days,
        budget_usd_monthly=budget,
    )
    if as_json:
        _emit_json(result)
    else:
        for alert in result["alerts"]:
            typer.echo(alert_line(alert))
    typer.echo(f"{result['checked_keys']} key(s) checked, {len(result['alerts'])} alert(s)", err=True)
    for item in result["limitations"]:
        typer.echo(f"limitation: {item}", err=True)
    if notify_url is not None and result["alerts"]:
        if not notify(notify_url, result):
            raise ProviderUnavailable("the alerts could not be posted to the runbook's notify webhook",
                                      remediation="Check the webhook URL's key source and that the webhook takes "
                                      "JSON; the alerts above are complete.")
        typer.echo("alerts posted to the runbook's notify webhook", err=True)


def _watch_directory(directory: Path, start: datetime, end: datetime, bucket: str, baseline_days: int,
                     as_json: bool) -> None:
    from cauterize.cli import _emit_json
    from cauterize.errors import ProviderUnavailable
    from cauterize.watchlist import runbook_paths, watch_runbooks

    result = watch_runbooks(runbook_paths(directory), since=start, until=end, bucket=bucket,
                            baseline_days=baseline_days)
    if as_json:
        _emit_json(result)
    else:
        for alert in result["alerts"]:
            typer.echo(alert_line(alert))
    typer.echo(f"{len(result['runbooks'])} runbook(s), {result['checked_keys']} key(s) checked, "
               f"{len(result['alerts'])} alert(s)", err=True)
    for item in result["skipped"]:
        typer.echo(f"skipped {item['path']}: {item['reason']}", err=True)
    for path in result["to_start"]:
        typer.echo(f"auto_respond: the key of {path} alerted; the key-watch deployment starts key-compromised "
                   f"for it (by hand: cauterize respond {path})", err=True)
    for error in result["errors"]:
        typer.echo(f"error: {error}", err=True)
    if result["errors"] or result["notify_failed"]:
        raise ProviderUnavailable(
            f"the watch is incomplete: {len(result['errors'])} organisation(s) could not be read, "
            f"{result['notify_failed']} webhook(s) refused the alerts",
            remediation="Check the admin credentials and webhook URLs named above; the alerts printed are complete "
            "for the rest.",
        )


def alert_line(alert: dict[str, Any]) -> str:
    """One alert, for a terminal."""
    unit = "USD" if alert["reason"] == "budget" else "tokens"
    return (
        f"{alert['reason']}\t{alert['key_id']}\t{alert['redacted'] or '-'}\t"
        f"{alert['window']['start']} to {alert['window']['end']}\t"
        f"{alert['observed']:,} {unit} vs {alert['baseline']:,}\tscore {alert['score']}"
    )


def _from_runbook(path: Path, provider: str) -> tuple[Any, float | None, Any]:
    """(provider settings, monthly budget, notify URL as a Secret) from a runbook's sections."""
    from cauterize.providers.base import settings_for
    from cauterize.runbook import load_runbook
    from cauterize.secret import KeySource

    loaded = load_runbook(path)
    config = loaded.runbook.providers.get(provider)
    settings = settings_for(provider, config, base_dir=loaded.base_dir)
    section = getattr(loaded.runbook, "watch", None)  # runbook field `watch` (issue 10)
    budget = getattr(section, "budget_usd_monthly", None)
    # watch.notify, else the runbook's own notify webhook (notify.url)
    reference = getattr(section, "notify", None) or getattr(getattr(loaded.runbook, "notify", None), "url", None)
    url = KeySource.parse(reference).load(base_dir=loaded.base_dir) if reference else None
    return settings, budget, url
