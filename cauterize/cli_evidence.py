"""``cauterize evidence``: what the leaked key was used for over the exposure window.

    cauterize evidence --provider P KEYSRC --since T [--until T] [--bucket 1m|1h|1d]
                       [--baseline-days N] [--model M] [--json]

T is ISO-8601 (``2026-03-01T12:00Z``, ``2026-03-01``; no zone means UTC) or a time ago (``36h``,
``7d``, ``90m``, ``2w``, optionally followed by ``ago``; ``now``). Registered in ``cli.py`` as
``app.command("evidence")(evidence)``. Bad values are an ``InputError`` naming the option (exit 2).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from cauterize.errors import InputError
from cauterize.when import parse_when


def evidence(
    provider: str = typer.Option(..., "--provider", help="openai, anthropic, google, azure-openai or cohere."),
    key_env: str | None = typer.Option(None, "--key-env", help="Read the key from this environment variable."),
    key_file: Path | None = typer.Option(None, "--key-file", help="Read the key from this file."),
    key_stdin: bool = typer.Option(False, "--key-stdin", help="Read the key from standard input."),
    since: str = typer.Option(..., "--since", help="Exposure start: ISO-8601, or a time ago such as 36h or 7d."),
    until: str | None = typer.Option(None, "--until", help="Exposure end (revocation); default now."),
    bucket: str = typer.Option("1h", "--bucket", help="Bucket width: 1m, 1h or 1d."),
    baseline_days: int = typer.Option(14, "--baseline-days", help="Days of usage before --since to compare with."),
    model: str | None = typer.Option(None, "--model", help="Price estimated costs at this model's list price."),
    as_json: bool = typer.Option(False, "--json", help="Print the evidence as one JSON document."),
) -> None:
    """Usage and cost of the key over the exposure window, its anomalous buckets against a seasonal
    baseline, and what the provider cannot tell (always printed)."""
    from cauterize.cli import _emit_json, key_source
    from cauterize.evidence import BUCKETS, evidence_for, price_of
    from cauterize.providers.base import get_provider, settings_for
    from cauterize.providers.formats import load_leaked_key

    now = datetime.now(UTC)
    start = parse_when(since, "--since", now=now)
    end = parse_when(until, "--until", now=now) if until else now
    if bucket not in BUCKETS:
        raise InputError(f"--bucket must be one of {', '.join(BUCKETS)}, not '{bucket}'")
    if baseline_days < 0:
        raise InputError(f"--baseline-days must be 0 or more, not {baseline_days}")
    if end <= start:
        raise InputError(f"--until ({end.isoformat()}) must be later than --since ({start.isoformat()})")
    if model is not None:
        try:
            if price_of(provider, model) is None:
                raise InputError(f"there is no price table for {provider}")
        except InputError as exc:
            raise InputError(f"--model: {exc.message}") from None
    key = load_leaked_key(key_source(key_env, key_file, key_stdin), provider)
    client = get_provider(provider, settings_for(provider))
    try:
        identity = client.identify(key)
        result = evidence_for(client, identity, start, end, bucket, baseline_days, model=model)
    finally:
        client.close()
    document = {"provider": provider, "fingerprint": key.fingerprint, "redacted": key.redacted,
                "identity": identity.to_dict(), **result}
    if as_json:
        _emit_json(document)
        for item in result["limitations"]:
            typer.echo(f"limitation: {item}", err=True)
        return
    for line in summary_lines(document):
        typer.echo(line)


def summary_lines(document: dict[str, Any]) -> list[str]:
    """The human summary of ``evidence --json``'s document; limitations last, always."""
    totals, window = document["totals"], document["window"]
    identity = document.get("identity") or {}
    lines = [
        (
            f"key {document.get('redacted', '')} ({document.get('fingerprint', '')}), "
            f"{document.get('provider', '')} id {identity.get('key_id') or '?'}"
        ),
        f"window {window['start']} to {window['end']} ({document.get('bucket', '?')} buckets)",
        f"totals: {totals['requests']:,} requests, {totals['input_tokens']:,} input and "
        f"{totals['output_tokens']:,} output tokens" + _cost(totals.get("cost_usd"), document.get("cost")),
    ]
    baseline = document["baseline"]
    if baseline["buckets"]:
        lines.append(f"baseline: {baseline['buckets']} bucket(s) before the window, by {baseline['seasonality']}")
    if document["anomalous_buckets"]:
        excess = document.get("excess_cost_usd")
        lines.append(
            f"anomalous: {document['anomalous_buckets']} bucket(s) from {document['first_anomaly']} to "
            f"{document['last_anomaly']}; about {document['excess_tokens']:,} tokens"
            + (f" (${excess:,.2f})" if excess is not None else "") + " above the baseline"
        )
        top = sorted((b for b in document["buckets"] if b["anomalous"]), key=lambda b: -b["score"])[:5]
        for row in top:
            lines.append(f"  {row['start']}  {row['input_tokens'] + row['output_tokens']:>12,} tokens  "
                         f"expected {row['expected']:,.0f}  score {row['score']}")
    else:
        lines.append("anomalous: none against the baseline")
    lines.extend(f"limitation: {item}" for item in document["limitations"])
    return lines


def _cost(value: float | None, cost: dict[str, Any] | None) -> str:
    if value is None:
        return "; cost unknown"
    source = (cost or {}).get("source")
    return f"; ${value:,.2f}" + (" (estimate)" if source in ("estimate", "mixed") else "")
