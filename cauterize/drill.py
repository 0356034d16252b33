"""Rotation drills: the rotate-first path on a key that exists for drills, measured and kept as history.

A drill runs the response steps on a *derived* runbook: the runbook's ``drill:`` key and stores
(production stores only when ``drill.stores: production``), policy ``rotate-first``, nothing to
locate or purge. The derived runbook is written beside the drill incidents (paths made absolute),
so a drill incident resumes like any other and never shares a record with a real incident (its
name ends in ``-drill``). ``--sandbox`` drills the throwaway world of ``cauterize demo``.

After the steps, ``verify`` reads every store back and asks the provider whether the new key
answers and the old one does not; ``finish`` measures from the record's timestamps (start = the
incident opened):

    time_to_contain_s    start -> the old key is dead (revoke confirmed)
    time_to_recover_s    start -> the new key is in every store (redeploy read it back)
    revoke_confirm_s     the revocation's propagation: delete -> the provider answered dead
    steps                each step's seconds

and appends one JSON line to ``drills.jsonl`` beside the incidents, flagging a regression when a
measure exceeds ``FACTOR`` x the median of the last ``WINDOW`` good drills (with at least
``MIN_HISTORY`` of them, and by at least ``MIN_DELTA_S``, so sub-second noise is not a regression).
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from cauterize import incident as records
from cauterize.errors import InputError
from cauterize.incident import IncidentStore, write_private
from cauterize.providers.formats import load_leaked_key
from cauterize.runbook import LoadedRunbook, load_runbook

HISTORY = "drills.jsonl"
RESULT = "drill.json"
REPORT = "drill.md"
NOT_DRILLED = ("locate", "purge", "evidence")
MEASURES = ("time_to_contain_s", "time_to_recover_s", "revoke_confirm_s")
WINDOW, FACTOR, MIN_HISTORY, MIN_DELTA_S = 5, 1.5, 3, 0.5
#: Store fields that are file paths relative to the runbook (they must survive the move).
_PATH_FIELDS = {"dotenv": ("path",), "sops": ("path",)}


# -- the derived runbook and the incident ---------------------------------------------------------


def drill_runbook(loaded: LoadedRunbook, *, sandbox: bool = False) -> dict[str, Any]:
    """The runbook a drill runs, as plain data. ``sandbox``: the runbook is a throwaway world's, so
    its own key and stores are the drill's."""
    rb = loaded.runbook
    data = rb.model_dump(mode="json", exclude_none=True)
    drill = getattr(rb, "drill", None)
    if sandbox:
        key, stores = rb.key.source, data["stores"]
    elif drill is None:
        raise InputError(
            f"runbook {loaded.path.name} has no drill: section; production keys are never drilled",
            remediation="Add drill: {key: <a drill key source>, stores: [...]} (or run `cauterize drill --sandbox`).",
        )
    else:
        key = drill.key
        stores = data["stores"] if drill.stores == "production" else data["drill"]["stores"]
    data.update(
        name=f"{rb.name[:58]}-drill",
        key={"provider": rb.key.provider, "source": key},
        stores=[_absolute_store(store, loaded) for store in stores],
        policy={"order": "rotate-first", "purge": "dry-run"},
        locate={},
        report={"dir": str(loaded.resolve(rb.report.dir))},
    )
    for section in ("drill", "triggers"):
        data.pop(section, None)
    return _absolute_sources(data, loaded)


def _absolute_store(store: dict[str, Any], loaded: LoadedRunbook) -> dict[str, Any]:
    fields = _PATH_FIELDS.get(store["type"], ())
    return {name: str(loaded.resolve(value)) if name in fields else value for name, value in store.items()}


def _absolute_sources(value: Any, loaded: LoadedRunbook) -> Any:
    """Every ``file:`` source reference, made absolute (the derived runbook lives elsewhere)."""
    if isinstance(value, dict):
        return {name: _absolute_sources(item, loaded) for name, item in value.items()}
    if isinstance(value, list):
        return [_absolute_sources(item, loaded) for item in value]
    if isinstance(value, str) and value.startswith("file:"):
        return "file:" + str(loaded.resolve(value.removeprefix("file:")))
    return value


def open_drill(runbook_path: str | Path, *, sandbox: bool = False, incidents_dir: str | Path | None = None) -> Path:
    """Write the derived runbook and open (or resume) the drill incident; returns its directory."""
    from cauterize import response
    from cauterize.providers.base import Liveness, get_provider, settings_for

    loaded = load_runbook(runbook_path)
    data = drill_runbook(loaded, sandbox=sandbox)
    root = Path(incidents_dir).resolve() if incidents_dir else Path(data["report"]["dir"])
    data["report"]["dir"] = str(root)
    derived = root / ".drill-runbooks" / f"{data['name']}.yaml"
    write_private(derived, yaml.safe_dump(data, sort_keys=False), what="the drill runbook")
    drilled = load_runbook(derived)
    key = load_leaked_key(drilled.runbook.key.source, drilled.runbook.key.provider, base_dir=drilled.base_dir)
    if IncidentStore(root).find_open(drilled.runbook.name, key.fingerprint) is None:
        name = drilled.runbook.key.provider
        provider = get_provider(name, settings_for(name, drilled.runbook.providers.get(name), base_dir=drilled.base_dir))
        try:
            dead = provider.check(key).state is Liveness.DEAD
        finally:
            provider.close()
        if dead:
            raise InputError(
                f"the drill key {key.fingerprint} is dead: the last drill revoked it",
                remediation="Set drill.key to the key the last drill minted (its primary store holds it); a source the "
                "drill itself rewrites cannot confirm the old key's revocation, so copy it (file: or env:).",
            )
    directory = response.open_incident(derived, mode="drill", incidents_dir=root)
    incident = records.load(directory)
    for name in NOT_DRILLED:
        step = incident.steps[name]
        if step.status == "pending":
            step.status, step.summary = "skipped", "not part of a rotation drill"
    records.save(incident, directory)
    return directory


# -- after the steps ------------------------------------------------------------------------------


def verify(incident_dir: str | Path) -> dict[str, Any]:
    """Does the new key work everywhere? Every store read back, the new key live, the old one dead
    (``verification.observe``, the same look at the world that ends every response)."""
    from cauterize import response
    from cauterize.providers.base import Liveness
    from cauterize.verification import observe

    directory = Path(incident_dir)
    incident = records.load(directory)
    ctx = response.Context(load_runbook(incident.runbook_path), incident, directory)
    try:
        seen = observe(ctx)
    finally:
        ctx.close()
    result: dict[str, Any] = {
        "stores": [{k: v for k, v in store.items() if k != "primary"} for store in seen["stores"]],
        "new_key": (seen["new_key"] or {}).get("state"),
        "old_key": seen["old_key"]["state"],
    }
    result["ok"] = (
        bool(result["stores"])
        and all(store["holds_new_key"] is not False and not store.get("unreadable") for store in result["stores"])
        and result["new_key"] == Liveness.LIVE.value
        and result["old_key"] == Liveness.DEAD.value
    )
    return result


def measure(incident: records.Incident) -> dict[str, Any]:
    """Seconds from the record's timestamps: contain, recover and each step."""
    start = incident.created_at

    def since(moment) -> float | None:
        return round((moment - start).total_seconds(), 3) if moment else None

    revoke, redeploy = incident.steps["revoke"], incident.steps["redeploy"]
    steps = {
        name: round((rec.ended_at - rec.started_at).total_seconds(), 3)
        for name, rec in incident.steps.items()
        if rec.started_at and rec.ended_at
    }
    return {
        "time_to_contain_s": since(incident.revoked_at or revoke.ended_at) if revoke.status == "ok" else None,
        "time_to_recover_s": since(redeploy.ended_at) if redeploy.status == "ok" else None,
        "revoke_confirm_s": incident.metrics.get("revoke_confirm_s") if revoke.status == "ok" else None,
        "steps": steps,
    }


def read_history(root: str | Path, runbook: str | None = None) -> list[dict[str, Any]]:
    """Earlier drills (oldest first), of one runbook when named; unreadable lines are skipped."""
    path = Path(root) / HISTORY
    if not os.path.lexists(path):
        return []
    entries = []
    for line in records.read_private(path).decode("utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and (runbook is None or entry.get("runbook") == runbook):
            entries.append(entry)
    return entries


def append_history(root: str | Path, entry: dict[str, Any]) -> None:
    """One JSON line per drill, appended (0600); refused if it would hold a live secret."""
    records.append_private(Path(root) / HISTORY, json.dumps(entry, sort_keys=True) + "\n", what="the drill history")


def regression(current: dict[str, Any], previous: list[dict[str, Any]]) -> dict[str, Any]:
    """Compare a drill's measures with the median of the last ``WINDOW`` good drills."""
    good = [entry for entry in previous if entry.get("ok")][-WINDOW:]
    result: dict[str, Any] = {"baseline_drills": len(good), "regressed": [], "medians": {}}
    if len(good) < MIN_HISTORY:
        result["note"] = f"{len(good)} earlier good drill(s): at least {MIN_HISTORY} are needed to compare"
        return result
    for name in MEASURES:
        values = [entry[name] for entry in good if isinstance(entry.get(name), (int, float))]
        value = current.get(name)
        if not values or not isinstance(value, (int, float)):
            continue
        median = statistics.median(values)
        result["medians"][name] = median
        if value > FACTOR * median and value - median >= MIN_DELTA_S:
            result["regressed"].append(name)
    return result


def finish(incident_dir: str | Path, verification: dict[str, Any]) -> dict[str, Any]:
    """Measure the drill, compare it with the history, record it; returns the drill's summary."""
    directory = Path(incident_dir)
    incident = records.load(directory)
    measures = measure(incident)
    root = directory.parent
    previous = read_history(root, incident.runbook)
    ok = bool(verification.get("ok")) and incident.complete
    summary: dict[str, Any] = {
        "incident": str(directory),
        "runbook": incident.runbook,
        "provider": incident.provider,
        "at": incident.created_at.isoformat(),
        "ok": ok,
        **measures,
        "old_key": incident.old_key.fingerprint,
        "new_key": incident.new_key.fingerprint if incident.new_key else None,
        "verification": verification,
        "exit_code": 0 if ok else (incident.exit_code() or 3),
    }
    summary["regression"] = regression(summary, previous)
    for name in MEASURES:
        if summary[name] is not None:
            incident.metrics[name] = summary[name]
    incident.log(None, f"drill {'ok' if ok else 'incomplete'}: " + ", ".join(
        f"{name} {summary[name]}" for name in MEASURES) + _flag(summary["regression"]))
    records.save(incident, directory)
    write_private(directory / RESULT, json.dumps(summary, indent=2) + "\n", what="the drill result")
    append_history(root, {name: value for name, value in summary.items() if name != "verification"})
    write_private(directory / REPORT, render_markdown(summary, previous), what="the drill report")
    return summary


def _flag(result: dict[str, Any]) -> str:
    return f"; REGRESSION in {', '.join(result['regressed'])}" if result["regressed"] else ""


def render_markdown(summary: dict[str, Any], previous: list[dict[str, Any]]) -> str:
    """The drill report: measures, verification, per-step seconds and the trend of earlier drills."""
    def num(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, (int, float)) else "—"

    flag = summary["regression"]
    lines = [
        f"# Rotation drill: {summary['runbook']}",
        "",
        (f"**{'OK' if summary['ok'] else 'INCOMPLETE'}** at {summary['at']} ({summary['provider']}); "
         f"old key {summary['old_key']}, new key {summary['new_key'] or '—'}"),
        "",
        "| measure | seconds | median of earlier drills |",
        "|---|---|---|",
    ]
    for name in MEASURES:
        lines.append(f"| {name} | {num(summary[name])} | {num(flag['medians'].get(name))} |")
    lines += ["", f"Regression: {', '.join(flag['regressed']) or 'none'}"
              + (f" ({flag['note']})" if flag.get("note") else f" (baseline: {flag['baseline_drills']} drills)"), ""]
    lines += ["## Steps", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {name} | {num(seconds)} |" for name, seconds in summary["steps"].items()]
    verification = summary["verification"]
    lines += ["", "## Verification", "",
              f"new key: {verification.get('new_key')}, old key: {verification.get('old_key')}", ""]
    for store in verification.get("stores", []):
        state = {True: "holds the new key", False: "does NOT hold the new key", None: "write-only"}[store["holds_new_key"]]
        if store.get("unreadable"):
            state = store.get("note") or "could not be read"
        lines.append(f"- {store['store']}: {state}")
    lines += ["", "## Trend", "", "| drill | ok | contain s | recover s | revocation confirmed s |", "|---|---|---|---|---|"]
    for entry in [*previous[-9:], summary]:
        lines.append(f"| {entry.get('at', '—')} | {'yes' if entry.get('ok') else 'no'} | "
                     f"{num(entry.get('time_to_contain_s'))} | {num(entry.get('time_to_recover_s'))} | "
                     f"{num(entry.get('revoke_confirm_s'))} |")
    return "\n".join(lines) + "\n"


# -- the sandbox ----------------------------------------------------------------------------------


@contextmanager
def sandbox_world(root: str | Path) -> Iterator[Path]:
    """A throwaway demo world under ``root/world`` (replaced each time) with its environment set for
    the duration; yields the world's runbook. Keep drill incidents outside it (``root/incidents``)."""
    from cauterize.sandbox.world import build_world, prepare_root

    world = build_world(prepare_root(Path(root) / "world"))
    saved = {name: os.environ.get(name) for name in world.env}
    os.environ.update(world.env)
    try:
        yield world.runbook
    finally:
        world.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
