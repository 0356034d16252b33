"""The daily key-watch over a set of runbooks: what the ``key-watch`` deployment and
``cauterize watch --runbook-dir`` run.

``watch_runbooks(paths, since=..., until=...)``

1. loads each runbook (one that does not load is skipped, with its one-line error) and, for the
   providers that report usage per key (OpenAI, Anthropic), reads the key it names from its source
   and identifies it at the provider: that key id is what an alert is matched against;
2. runs ``cauterize.watch.watch`` once per organisation (provider, admin key, base URL), every key
   of it compared with its own baseline, each runbook's ``watch.budget_usd_monthly`` applied to
   its own key;
3. posts alerts to the runbooks' ``notify`` webhooks: an alert on a runbook's key to that
   runbook's webhook, an alert on a key no runbook names to every webhook of that organisation;
4. returns the runbooks that opted in with ``watch: {auto_respond: true}`` and whose key alerted
   (``to_start``); starting ``key-compromised`` for them is the flow's job (flows/key_watch.py).
   By default a person decides: nothing is started for a runbook that did not opt in.

The result holds ids, fingerprints, redacted forms and paths: never a key value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from cauterize.errors import CauterizeError, InputError
from cauterize.providers.base import KeyIdentity, ProviderSettings, get_provider, settings_for
from cauterize.providers.formats import load_leaked_key
from cauterize.runbook import LoadedRunbook, load_runbook
from cauterize.secret import KeySource, Secret
from cauterize.watch import READERS, notify, runbooks_to_start, watch


@dataclass(frozen=True)
class Watched:
    """One runbook's key, as the watch sees it."""

    path: Path
    name: str
    provider: str
    key_id: str | None
    fingerprint: str | None
    auto_respond: bool
    budget: float | None
    notify: Secret | None
    settings: ProviderSettings

    @property
    def organisation(self) -> tuple[str, str | None, str | None]:
        admin = self.settings.admin_key
        return self.provider, admin.fingerprint if admin else None, self.settings.base_url

    def to_dict(self) -> dict[str, Any]:
        return {"runbook": self.name, "path": str(self.path), "provider": self.provider, "key_id": self.key_id,
                "fingerprint": self.fingerprint, "auto_respond": self.auto_respond, "budget_usd_monthly": self.budget}


def runbook_paths(directory: Path) -> list[Path]:
    """The runbooks of a directory (``*.yaml``, ``*.yml``), sorted."""
    if not directory.is_dir():
        raise InputError(f"--runbook-dir {directory}: not a directory")
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])


def watch_runbooks(
    paths: Iterable[Path],
    *,
    since: datetime,
    until: datetime,
    bucket: str = "1h",
    baseline_days: int = 14,
    transport: httpx.BaseTransport | None = None,
    post: Callable[[Secret, dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Watch every organisation the runbooks name; see the module docstring."""
    watched: list[Watched] = []
    skipped: list[dict[str, str]] = []
    for path in paths:
        try:
            item = _watched(load_runbook(path), transport)
        except CauterizeError as exc:
            skipped.append({"path": str(path), "reason": exc.message})
            continue
        if item is None:
            skipped.append({"path": str(path), "reason": "its provider reports no usage per key"})
        else:
            watched.append(item)
            if item.key_id is None:
                skipped.append({"path": str(path), "reason": "its key was not found at the provider: not matched"})
    organisations: dict[tuple, list[Watched]] = {}
    for item in watched:
        organisations.setdefault(item.organisation, []).append(item)

    results: list[dict[str, Any]] = []
    for members in organisations.values():
        budgets = {w.key_id: w.budget for w in members if w.key_id and w.budget}
        try:
            result = watch(members[0].provider, members[0].settings, since=since, until=until, bucket=bucket,
                           baseline_days=baseline_days, key_budgets=budgets)
        except CauterizeError as exc:  # one organisation's failure does not hide the others' alerts
            result = {"provider": members[0].provider, "checked_keys": 0, "alerts": [], "limitations": [],
                      "error": exc.message, "remediation": exc.remediation}
        result["runbooks"] = [w.name for w in members]
        results.append(result)
        result["notified"] = _notify(members, result, post or notify)

    alerts = [alert for result in results for alert in result["alerts"]]
    opted_in = [(str(w.path), _identity(w)) for w in watched if w.auto_respond and w.key_id]
    return {
        "alerts": alerts,
        "checked_keys": sum(result["checked_keys"] for result in results),
        "organisations": results,
        "runbooks": [w.to_dict() for w in watched],
        "skipped": skipped,
        "to_start": runbooks_to_start(alerts, opted_in),
        "notify_failed": sum(r["notified"]["failed"] for r in results),
        "errors": [f"{r['provider']} ({', '.join(r['runbooks'])}): {r['error']}" for r in results if r.get("error")],
    }


def _watched(loaded: LoadedRunbook, transport: httpx.BaseTransport | None) -> Watched | None:
    runbook = loaded.runbook
    provider_name = runbook.key.provider
    if provider_name not in READERS:
        return None
    settings = settings_for(provider_name, runbook.providers.get(provider_name), base_dir=loaded.base_dir,
                            transport=transport)
    key = load_leaked_key(runbook.key.source, provider_name, base_dir=loaded.base_dir)
    provider = get_provider(provider_name, settings)
    try:
        identity = provider.identify(key)
        key_id = identity.key_id
    except CauterizeError as exc:
        if exc.exit_code == 2:
            raise
        key_id = None
    finally:
        provider.close()
    section = runbook.watch
    reference = section.notify or (runbook.notify.url if runbook.notify else None)
    url = KeySource.parse(reference).load(base_dir=loaded.base_dir) if reference else None
    return Watched(loaded.path, runbook.name, provider_name, key_id, key.fingerprint, section.auto_respond,
                   section.budget_usd_monthly, url, settings)


def _identity(item: Watched) -> KeyIdentity:
    return KeyIdentity(item.provider, item.key_id)


def _notify(members: list[Watched], result: dict[str, Any], post: Callable[[Secret, dict[str, Any]], bool]
            ) -> dict[str, int]:
    """Each webhook gets the alerts on its runbooks' keys and on keys no runbook names."""
    owned = {w.key_id for w in members if w.key_id}
    hooks: dict[str, tuple[Secret, set[str]]] = {}
    for w in members:
        if w.notify is not None:
            hooks.setdefault(w.notify.fingerprint, (w.notify, set()))[1].add(w.key_id or "")
    sent = failed = 0
    for url, keys in hooks.values():
        alerts = [a for a in result["alerts"] if a["key_id"] in keys or a["key_id"] not in owned]
        if not alerts:
            continue
        if post(url, {**result, "alerts": alerts}):
            sent += 1
        else:
            failed += 1
    return {"sent": sent, "failed": failed}
