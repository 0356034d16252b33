"""Preflight: before the first change, resolve every reference the runbook's steps need.

``check(loaded)`` builds the provider client and every store of the runbook without a single network
call and asks each what it lacks (``Provider.missing``, ``stores.readiness``): admin credentials,
subscriptions, store credentials and endpoints, files and binaries, the repositories to search and
purge. The result says which steps can run. Containment (intake and revoke; under rotate-first also
rotate and redeploy, which revoke then waits for) that cannot run is exit 2 before anything changes;
any other step that cannot run is printed and then fails on its own when it runs, truthfully. A store
that is down is not found here (no network): its step finds it, and never delays revocation under
revoke-first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cauterize import incident as records
from cauterize.errors import CauterizeError, InputError

#: the steps containment needs, by policy order (rotate-first revokes only once the replacement is everywhere)
CONTAINMENT = {"revoke-first": ("intake", "revoke"), "rotate-first": ("intake", "rotate", "redeploy", "revoke")}


@dataclass
class Preflight:
    """What each step lacks (``problems``: step -> one-line reasons) and advisory ``notes``."""

    problems: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in records.STEPS})
    notes: list[str] = field(default_factory=list)

    def blocked(self, steps: tuple[str, ...] | list[str]) -> list[str]:
        """The reasons, each once, that stop any of ``steps``."""
        return list(dict.fromkeys(reason for step in steps for reason in self.problems[step]))

    def runnable(self) -> list[str]:
        return [name for name in records.STEPS if not self.problems[name]]

    def lines(self) -> list[str]:
        """One line of what can run, one per step that cannot (and why), then the notes."""
        lines = [f"preflight: can run {', '.join(self.runnable()) or 'nothing'}"]
        lines += [f"preflight: {name} cannot run: {'; '.join(reasons)}" for name, reasons in self.problems.items()
                  if reasons]
        lines += [f"preflight note: {note}" for note in self.notes]
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"runnable": self.runnable(), "problems": {k: v for k, v in self.problems.items() if v},
                "notes": self.notes}


def check(loaded: Any, *, transport: httpx.BaseTransport | None = None) -> Preflight:
    """The preflight of a runbook (``loaded``: a ``LoadedRunbook``); no network call, nothing changed."""
    result = Preflight()
    _provider(loaded, transport, result)
    _stores(loaded, result)
    _repositories(loaded, result)
    return result


def require_containment(result: Preflight, order: str, done: set[str]) -> None:
    """Exit 2 (InputError naming every reason) when a containment step not yet ``done`` cannot run."""
    steps = [step for step in CONTAINMENT.get(order, CONTAINMENT["revoke-first"]) if step not in done]
    reasons = result.blocked(steps)
    if reasons:
        raise InputError(
            f"containment cannot run ({', '.join(s for s in steps if result.problems[s])}): " + "; ".join(reasons),
            remediation="Set what is named above and rerun; nothing was changed at any provider or store.",
        )


def _provider(loaded: Any, transport: httpx.BaseTransport | None, result: Preflight) -> None:
    from cauterize.providers.base import get_provider, settings_for

    rb = loaded.runbook
    name = rb.key.provider
    try:
        provider = get_provider(name, settings_for(name, rb.providers.get(name), base_dir=loaded.base_dir,
                                                   transport=transport))
    except CauterizeError as exc:  # an admin credential source that cannot be read, an unknown provider
        reasons = [exc.one_line()]
    else:
        try:
            reasons = list(getattr(provider, "missing", lambda: [])())
        finally:
            provider.close()
    # the admin API serves identification, revocation, the mint and the usage evidence alike
    for step in ("intake", "revoke", "rotate", "evidence"):
        result.problems[step] += reasons


def _stores(loaded: Any, result: Preflight) -> None:
    from cauterize.stores import open_store
    from cauterize.stores.base import readiness

    for index, config in enumerate(loaded.runbook.stores):
        try:
            reasons, notes = readiness(open_store(config, loaded))  # each line names its store
        except CauterizeError as exc:
            reasons, notes = [f"store {index} ({config.type}): {exc.one_line()}"], []
        result.notes += notes
        if index == 0:
            result.problems["rotate"] += reasons  # the mint is written to the primary store at once
        result.problems["redeploy"] += reasons


def _repositories(loaded: Any, result: Preflight) -> None:
    for repo in loaded.runbook.locate.git:
        target = loaded.resolve_repo(repo)
        if "://" in target or target.startswith("git@"):
            continue  # a remote: reached when its step runs
        if not Path(target).exists():
            reason = f"repository {target} does not exist here"
            result.problems["locate"].append(reason)
            result.problems["purge"].append(reason)
    for path in loaded.runbook.locate.paths:
        if not loaded.resolve(path).exists():
            result.notes.append(f"locate path {loaded.resolve(path)} does not exist here")
