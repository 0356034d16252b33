"""Verified at the end, whatever the record says: the world wins over the record.

Before a run reports the key contained, ``response.verify_outcome`` asks the provider once more whether the
old key is dead, reads the new key back from every store of the runbook and asks whether it is live.
The answer is kept in the record (``incident.verification``). Where the world contradicts a step the
record calls ``ok`` (the old key answers again, a store lost the new key, the new key was revoked),
that step and those that follow from it are reopened, so the orchestrator runs them again:

    old key live again             -> revoke
    primary store lost the new key,
    or the new key is dead         -> rotate, redeploy (the record forgets the dead replacement)
    another store lost the new key -> redeploy

"Could not ask" (unknown, an unreadable store) reopens nothing: there is nothing to redo, but the
run is not reported as contained (exit 3), and the record says why.
"""

from __future__ import annotations

from typing import Any

from cauterize import incident as records
from cauterize.errors import CauterizeError
from cauterize.incident import Incident, utcnow
from cauterize.providers.base import Liveness

#: which steps a contradiction reopens, in the record's step order
_REOPENS = {"old-key": ("revoke",), "new-key": ("rotate", "redeploy"), "store": ("redeploy",)}


def observe(ctx) -> dict[str, Any]:
    """What the world says now: the old key's verdict, each store's current key, the new key's verdict.

    ``ctx`` is a ``cauterize.response.Context``. Nothing is changed anywhere."""
    incident: Incident = ctx.incident
    provider = ctx.provider()
    old = provider.check(ctx.old_key())
    seen: dict[str, Any] = {"old_key": {"state": old.value, "reason": old.reason}, "stores": [], "new_key": None}
    expected = incident.new_key.fingerprint if incident.new_key else None
    value = None
    for index, store in enumerate(ctx.stores()):
        entry: dict[str, Any] = {"store": store.describe(), "primary": index == 0}
        try:
            current = store.read()
        except CauterizeError as exc:
            entry.update(holds_new_key=None, unreadable=True, note=f"could not be read: {exc.message}")
        else:
            if current is None and getattr(store, "write_only", False):
                entry.update(holds_new_key=None, note="write-only: the acknowledged write is the only proof")
            else:
                entry["holds_new_key"] = expected is not None and current is not None and current.fingerprint == expected
                if entry["holds_new_key"]:
                    value = value or current
        seen["stores"].append(entry)
    if value is not None:
        new = provider.check(value)
        seen["new_key"] = {"state": new.value, "reason": new.reason}
    return seen


def judge(incident: Incident, seen: dict[str, Any]) -> dict[str, Any]:
    """The verdict on ``seen``: contained, recovered, and the steps the world contradicts."""
    steps = incident.steps
    reopen: list[str] = []
    reasons: list[str] = []
    old_state = seen["old_key"]["state"]
    if old_state == Liveness.LIVE.value and steps["revoke"].status == "ok":
        reopen += _REOPENS["old-key"]
        reasons.append("the provider answers live for the old key although the record says it was revoked")
    rotated = steps["rotate"].status == "ok"
    recovered: bool | None = None
    if rotated or steps["redeploy"].status == "ok":
        primary = next((s for s in seen["stores"] if s["primary"]), None)
        new_state = (seen["new_key"] or {}).get("state")
        if primary is not None and primary["holds_new_key"] is False:
            reopen += _REOPENS["new-key"]
            reasons.append(f"the primary store {primary['store']} no longer holds the new key")
        elif new_state == Liveness.DEAD.value:
            reopen += _REOPENS["new-key"]
            reasons.append("the new key is dead at the provider")
        elif steps["redeploy"].status == "ok":
            lost = [s["store"] for s in seen["stores"] if s["holds_new_key"] is False]
            if lost:
                reopen += _REOPENS["store"]
                reasons.append(f"{', '.join(lost)} no longer hold(s) the new key")
        recovered = (
            not reopen
            and new_state == Liveness.LIVE.value
            and all(s["holds_new_key"] is not False and not s.get("unreadable") for s in seen["stores"])
        )
    reopened = [name for name in records.STEPS if name in reopen]
    return {
        "at": utcnow().isoformat(),
        **seen,
        "contained": old_state == Liveness.DEAD.value,
        "recovered": recovered,
        "reopened": reopened,
        "why": reasons,
    }


def verify(ctx) -> dict[str, Any]:
    """Observe and judge, then apply the result to ``ctx.incident`` (not saved; ``ctx`` is a
    ``response.Context``, passed in so this module needs none of response.py): the verification is
    kept, contradicted steps are reopened (``pending``, ``details.reopened``) and the record forgets
    what they had established (the revocation time, a dead replacement)."""
    incident: Incident = ctx.incident
    try:
        seen = observe(ctx)
    except CauterizeError as exc:
        seen = {"old_key": {"state": Liveness.UNKNOWN.value, "reason": exc.one_line()}, "stores": [], "new_key": None}
    result = judge(incident, seen)
    incident.verification = result
    for name in result["reopened"]:
        record = incident.steps[name]
        record.status, record.summary = "pending", None
        record.details = {**record.details, "reopened": True}
        record.details.pop("still_live", None)
        if name == "revoke":
            incident.revoked_at = None
        if name == "rotate":
            incident.new_key = None  # the replacement is gone or dead: mint again
    if result["why"]:
        incident.log(None, f"verification: {'; '.join(result['why'])}: reopened {', '.join(result['reopened'])}")
    else:
        incident.log(None, "verification: " + summary(result))
    return result


def summary(result: dict[str, Any]) -> str:
    """One line for the log and the post-mortem."""
    old = result["old_key"]
    parts = [f"old key {old['state']}" + (f" ({old['reason']})" if old.get("reason") else "")]
    if result.get("new_key"):
        parts.append(f"new key {result['new_key']['state']}")
    held = [s for s in result["stores"] if s["holds_new_key"]]
    if result["stores"]:
        parts.append(f"{len(held)} of {len(result['stores'])} store(s) hold the new key")
    return "; ".join(parts)


def stale(incident: Incident) -> bool:
    """Whether the record changed since it was last verified (a step ended after it)."""
    at = (incident.verification or {}).get("at")
    if not at:
        return True
    from datetime import datetime

    verified = datetime.fromisoformat(at)
    return any(
        record.ended_at is not None and record.ended_at > verified
        for name, record in incident.steps.items()
        if name != "report"
    )
