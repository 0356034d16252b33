"""Prefect tasks of the key-watch: thin bindings of ``cauterize.watchlist``.

Parameters and results are paths, ids, fingerprints and redacted forms: never a key value. The
alerts are published as a Markdown artifact (``key-watch``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from cauterize.watchlist import runbook_paths, watch_runbooks
from cauterize.when import parse_when


@task(name="watch-runbooks", cache_policy=NO_CACHE, persist_result=False)
def watch_task(runbook_dir: str, since: str, bucket: str, baseline_days: int) -> dict:
    """Every organisation the runbooks name, each key against its own baseline; alerts posted."""
    now = datetime.now(UTC)
    result = watch_runbooks(runbook_paths(Path(runbook_dir)), since=parse_when(since, "since", now=now),
                            until=now, bucket=bucket, baseline_days=baseline_days)
    create_markdown_artifact(markdown=markdown(result), key="key-watch",
                             description=f"{len(result['alerts'])} alert(s) over {result['checked_keys']} key(s)")
    return result


def markdown(result: dict) -> str:
    lines = [f"# Key watch: {len(result['alerts'])} alert(s), {result['checked_keys']} key(s) checked", ""]
    if result["alerts"]:
        lines += ["| reason | provider | key | redacted | window | observed | baseline | score |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {a['reason']} | {a['provider']} | `{a['key_id']}` | `{a['redacted'] or '-'}` | "
                  f"{a['window']['start']} to {a['window']['end']} | {a['observed']:,} | {a['baseline']:,} | "
                  f"{a['score']} |" for a in result["alerts"]]
    for path in result["to_start"]:
        lines.append(f"\n- `{path}` opted in to `watch.auto_respond`: key-compromised started")
    for item in result["skipped"]:
        lines.append(f"- skipped `{item['path']}`: {item['reason']}")
    for error in result["errors"]:
        lines.append(f"- **error**: {error}")
    return "\n".join(lines) + "\n"
