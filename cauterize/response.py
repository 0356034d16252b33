"""The key-compromised response, one function per step of DESIGN.md section 2.

Each step reads the incident record, does its work, and leaves the record saying exactly what
happened (``incident.step`` saves at every transition). Steps take the incident directory, not
key values: the old key is re-read from its source reference, the new key from the primary store.
A step already ``ok`` is not run again, so a rerun after a crash resumes where it stopped.

The Prefect tasks in ``tasks/`` are thin bindings of ``run_step``; the CLI can run the same steps
without Prefect.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from cauterize import faults, interrupts
from cauterize import incident as records
from cauterize.errors import (
    KeySourceError,
    CauterizeError,
    InputError,
    KeyNotFound,
    ManualStepRequired,
    MissingPermission,
    ProviderUnavailable,
    StillLive,
    StoreError,
)
from cauterize.incident import AlreadyContained, Incident, IncidentStore, KeyRecord, StepRecord, utcnow
from cauterize.locate.sources import search
from cauterize.logs import LOGGER
from cauterize.providers.base import (
    KeyIdentity,
    Liveness,
    MintedKey,
    Confirmation,
    Provider,
    Verdict,
    confirm_liveness,
    confirm_window,
    get_provider,
    settings_for,
)
from cauterize.providers.formats import load_leaked_key
from cauterize.runbook import LoadedRunbook, load_runbook
from cauterize.scopes import CarriedScopes, carried_scopes
from cauterize.secret import Secret
from cauterize.stores import open_store

#: Which steps a step needs to have succeeded (``ok``) before it can run.
NEEDS: dict[str, tuple[str, ...]] = {
    "intake": (),
    "revoke": ("intake",),
    "rotate": ("intake",),
    "redeploy": ("rotate",),
    "locate": ("intake",),
    "purge": ("locate",),
    "evidence": ("intake",),
    "report": (),
}
#: Under rotate-first the old key is revoked only once its replacement is everywhere: that is the
#: policy's promise (no downtime). A failed mint (an org policy forbids keys, a missing permission)
#: then leaves the old key live and the run incomplete, and the record says so.
ROTATE_FIRST_NEEDS = {"revoke": ("intake", "rotate", "redeploy")}


def needs(name: str, incident: Incident) -> tuple[str, ...]:
    """The steps ``name`` needs to have succeeded, under the incident's policy."""
    if incident.order == "rotate-first" and not incident.dry_run:
        return ROTATE_FIRST_NEEDS.get(name, NEEDS[name])
    return NEEDS[name]



@dataclass
class Context:
    """Everything a step needs, rebuilt from the record at the start of each step."""

    loaded: LoadedRunbook
    incident: Incident
    directory: Path
    transport: httpx.BaseTransport | None = None
    inputs: dict = field(default_factory=dict)  # what an orchestrator computed for the step
    _provider: Provider | None = None

    @property
    def runbook(self):
        return self.loaded.runbook

    @staticmethod
    def check_key_source(loaded: LoadedRunbook) -> str:
        """Read the leaked key once to fail fast on a bad source; returns its fingerprint."""
        return load_leaked_key(loaded.runbook.key.source, loaded.runbook.key.provider, base_dir=loaded.base_dir).fingerprint

    def save(self) -> None:
        records.save(self.incident, self.directory)

    def old_key(self) -> Secret:
        return leaked_key(self.loaded, self.incident)

    def provider(self) -> Provider:
        if self._provider is None:
            name = self.runbook.key.provider
            settings = settings_for(
                name, self.runbook.providers.get(name), base_dir=self.loaded.base_dir, transport=self.transport
            )
            self._provider = get_provider(name, settings)
        return self._provider

    def confirm_window(self) -> float:
        """How long a revocation may take to propagate: the runbook's ``confirm_timeout``, else the provider's."""
        from cauterize.when import parse_duration

        value = getattr(self.runbook.providers.get(self.incident.provider), "confirm_timeout", None)
        return confirm_window(self.incident.provider, None if value is None else parse_duration(value, "confirm_timeout"))

    def identity(self) -> KeyIdentity | None:
        data = self.incident.old_key.identity
        return KeyIdentity.from_dict(data) if data else None

    def carried_scopes(self) -> CarriedScopes | None:
        """What intake read limits the old key's reach; the replacement carries the same."""
        data = self.incident.old_key.scopes
        return CarriedScopes.from_dict(data) if isinstance(data, dict) else None

    def stores(self):
        return [open_store(config, self.loaded) for config in self.runbook.stores]

    @contextmanager
    def scratch(self) -> Iterator[Path]:
        """A private working directory for one step (mirror clones...), removed afterwards."""
        path = Path(tempfile.mkdtemp(dir=records.work_dir(self.directory)))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        if self._provider is not None:
            self._provider.close()


# -- opening an incident --------------------------------------------------------------------------


def open_incident(
    runbook_path: str | Path,
    *,
    mode: str = "respond",
    dry_run: bool = False,
    incidents_dir: str | Path | None = None,
    new_incident: bool = False,
    when_contained: str = "resume",
    transport: httpx.BaseTransport | None = None,
) -> Path:
    """One key, one incident: find the incident of this runbook and key and resume it, or create one.

    In order: validate the runbook and read the key; take the per-key lock (a second responder gets
    ``IncidentLocked``, exit 0, naming the holder); resume the unfinished incident of the same kind
    (dry run or not). Else, a complete incident of this key is verified against the world: where the
    world disagrees it is resumed (its contradicted steps reopened), where it agrees the caller decides:
    ``when_contained="raise"`` (the CLI) raises ``AlreadyContained`` (exit 0), ``"resume"`` (the flow,
    deployments, the webhook) resumes it, which redoes nothing. ``new_incident`` opens a new one anyway.
    Before an incident is created or containment resumed, the preflight resolves every reference the
    steps need; containment that cannot run is exit 2 with nothing changed. No provider or store is
    changed here."""
    loaded = load_runbook(runbook_path)
    rb = loaded.runbook
    key = load_leaked_key(rb.key.source, rb.key.provider, base_dir=loaded.base_dir)
    root = Path(incidents_dir) if incidents_dir else loaded.resolve(rb.report.dir)
    records.hold_key_lock(root, rb.name, key.fingerprint)
    if key.fingerprint not in _LEAKED:
        _LEAKED.setdefault(key.fingerprint, key)
    # a drill's key is the one the last drill minted: only a response refuses to take a replacement for a leak
    replaced = None if new_incident or mode == "drill" else records.minted_by(root, rb.name, key.fingerprint)
    if replaced is not None:
        raise AlreadyContained(
            f"the key source {rb.key.source} now holds the replacement that incident {replaced.name} minted, "
            "not the leaked key: nothing was done (pass --new-incident if the replacement itself leaked)",
            replaced,
        )
    store = IncidentStore(root)
    existing = None if new_incident else store.find_open(rb.name, key.fingerprint)
    if existing is not None and records.load(existing).dry_run != dry_run:
        existing = None
    if existing is None and not new_incident:
        existing = _contained(loaded, root, key.fingerprint, dry_run, when_contained, transport)
    _preflight(loaded, key.fingerprint, dry_run, records.load(existing) if existing is not None else None, transport)
    if existing is not None:
        incident = records.load(existing)
        records.acquire_lock(existing)
        records.note_key_lock(root, rb.name, key.fingerprint, existing)
        if incident.events and incident.events[-1].message != "resumed":
            incident.log(None, "resumed")
            records.save(incident, existing)
        return existing
    now = utcnow()
    incident = Incident(
        id=store.new_id(rb.name, key.fingerprint, now),
        runbook=rb.name,
        runbook_path=str(loaded.path),
        mode=mode,
        dry_run=dry_run,
        created_at=now,
        updated_at=now,
        provider=rb.key.provider,
        order=rb.policy.order,
        old_key=KeyRecord(fingerprint=key.fingerprint, redacted=key.redacted, source=rb.key.source),
    )
    incident.preflight = _PREFLIGHTS.get((str(loaded.path), key.fingerprint))
    incident.log(None, f"opened for {key.fingerprint} ({mode}{', dry run' if dry_run else ''})")
    directory = store.create(incident)
    records.acquire_lock(directory)
    records.note_key_lock(root, rb.name, key.fingerprint, directory)
    return directory


def _contained(loaded: LoadedRunbook, root: Path, fingerprint: str, dry_run: bool, when: str,
               transport: httpx.BaseTransport | None) -> Path | None:
    """The complete incident of this key, verified against the world now (None: there is none).
    Where the world disagrees its contradicted steps are reopened and it is returned, to resume."""
    from cauterize.verification import summary, verify

    latest = records.latest_complete(root, loaded.runbook.name, fingerprint, dry_run=dry_run)
    if latest is None or dry_run:
        return None if latest is None or when == "raise" else latest
    incident = records.load(latest)
    ctx = Context(loaded, incident, latest, transport)
    try:
        result = verify(ctx)
    finally:
        ctx.close()
    records.save(incident, latest)
    if result["reopened"] or not incident.verified:
        if result["reopened"]:
            incident.steps["report"].status = "pending"
            records.save(incident, latest)
        return latest  # the world disagrees with the record: resume it
    if when == "raise":
        raise AlreadyContained(
            f"already contained: incident {latest.name} ({summary(result)}); nothing was done",
            latest,
        )
    return latest


def leaked_key(loaded: LoadedRunbook, incident: Incident) -> Secret:
    """The leaked key, read again from its source. A source that now holds another key (a store the
    redeploy wrote reads the replacement) is never taken for the leak, which would revoke the healthy
    key: this process uses the leaked key it read earlier, another process refuses."""
    key = load_leaked_key(loaded.runbook.key.source, loaded.runbook.key.provider, base_dir=loaded.base_dir)
    expected = incident.old_key.fingerprint
    if key.fingerprint == expected:
        _LEAKED[expected] = key
    elif expected in _LEAKED:
        if expected not in _WARNED:
            _WARNED.add(expected)
            LOGGER.warning(
                "key source %s now reads another key (the replacement?): this run uses the leaked key %s it "
                "read at its start; a rerun in another process cannot, so copy the leaked key to a file: source",
                loaded.runbook.key.source, expected,
            )
        return _LEAKED[expected]
    if key.fingerprint != expected:
        new = incident.new_key
        what = "the replacement this incident minted" if new and new.fingerprint == key.fingerprint else \
            f"another key ({key.fingerprint})"
        raise KeySourceError(
            f"key source {loaded.runbook.key.source} no longer holds the leaked key {expected}: it reads {what}; "
            "nothing was done with it",
            remediation="Point key.source at a copy of the leaked key (e.g. a file:), not at a store the response "
            "rewrites, and rerun.",
        )
    return key


#: the leaked keys this process read from their sources (fingerprint -> key): a source the response
#: rewrites holds the replacement afterwards; the value is in memory anyway (the redaction registry)
_LEAKED: dict[str, Secret] = {}
_WARNED: set[str] = set()
#: the preflight of each (runbook, key) this process checked, printed once
_PREFLIGHTS: dict[tuple[str, str], dict] = {}


def _preflight(loaded: LoadedRunbook, fingerprint: str, dry_run: bool, incident: Incident | None,
               transport: httpx.BaseTransport | None) -> None:
    """Resolve every reference the steps need before any change (``preflight.py``): print what can
    run, once per process; exit 2 when containment that is not done yet cannot run."""
    from cauterize import preflight

    key = (str(loaded.path), fingerprint)
    if key in _PREFLIGHTS:
        return
    result = preflight.check(loaded, transport=transport)
    for line in result.lines():
        LOGGER.info("%s", line)
    done = {name for name, step in incident.steps.items() if step.status in records.DONE} if incident else set()
    if dry_run:
        done |= {"revoke", "rotate", "redeploy"}  # a dry run changes nothing: it only needs to identify
    order = incident.order if incident is not None else loaded.runbook.policy.order
    preflight.require_containment(result, order, done)
    _PREFLIGHTS[key] = result.to_dict()


def contain(runbook_path: str | Path, *, started: float) -> Path:
    """Open (or resume) the incident and run intake and revoke at once, in this process.

    ``started`` is ``time.monotonic()`` at command start; ``metrics.time_to_contain_s`` records
    how long the old key stayed live after it. A failure is recorded and left for the flow, which
    runs the steps that do not need it."""
    import time

    directory = open_incident(runbook_path)
    for name in ("intake", "revoke"):
        try:
            run_step(name, directory)
        except CauterizeError:
            break
    incident = records.load(directory)
    if incident.steps["revoke"].status == "ok" and "time_to_contain_s" not in incident.metrics:
        incident.metrics["time_to_contain_s"] = round(time.monotonic() - started, 3)
        records.save(incident, directory)
    return directory


def order_of(incident_dir: Path) -> list[str]:
    """The steps in the order the runbook's policy asks for."""
    incident = records.load(incident_dir)
    if incident.order == "rotate-first":
        return ["intake", "rotate", "redeploy", "revoke", "locate", "purge", "evidence", "report"]
    return list(records.STEPS)


# -- running one step -----------------------------------------------------------------------------


def run_step(
    name: str, incident_dir: str | Path, *, transport: httpx.BaseTransport | None = None, **inputs
) -> dict:
    """Run one step on the incident and return its public summary (no secret in it).

    Raises the step's error after recording it, so an orchestrator sees the failure too; after a
    signal (``interrupts``) no step starts."""
    interrupts.check()
    directory = Path(incident_dir)
    incident = records.load(directory)
    record = incident.steps[name]
    if record.status in records.DONE:
        return _summary(name, record)
    deps = needs(name, incident)
    blocked = [dep for dep in deps if incident.steps[dep].status not in records.DONE]
    unneeded = [dep for dep in deps if incident.steps[dep].status == "skipped"]
    if blocked or unneeded:
        # blocked: a step it needs did not succeed; skipped: one it needs was not needed (dry run, policy)
        record.status = "blocked" if blocked else "skipped"
        record.summary = (f"not run: {', '.join(blocked)} did not finish" if blocked
                          else f"not needed: {', '.join(unneeded)} was skipped")
        record.details = {"blocked_by": blocked} if blocked else {"skipped_with": unneeded}
        incident.log(name, record.summary)
        records.save(incident, directory)
        _announce(name, record)
        return _summary(name, record)
    ctx = Context(load_runbook(incident.runbook_path), incident, directory, transport, inputs)
    try:
        with records.step(incident, directory, name) as rec:
            rec.details = {"reopened": True} if rec.details.get("reopened") else {}
            STEPS[name](ctx, rec)
    finally:
        ctx.close()
        _announce(name, incident.steps[name])
    faults.point(name)
    return _summary(name, incident.steps[name])


def verify_outcome(incident_dir: str | Path, *, transport: httpx.BaseTransport | None = None) -> list[str]:
    """Verified at the end, whatever the record says (``verification.py``): ask the world, keep the
    answer in the record, reopen the steps it contradicts and the report (rendered again from the
    verified record). Returns the reopened response steps, in order, for the orchestrator to run
    again. A dry run changed nothing: it is not verified."""
    from cauterize.verification import verify

    directory = Path(incident_dir)
    incident = records.load(directory)
    if incident.dry_run:
        return []
    ctx = Context(load_runbook(incident.runbook_path), incident, directory, transport)
    try:
        result = verify(ctx)
    finally:
        ctx.close()
    incident.steps["report"].status = "pending"
    records.save(incident, directory)
    return list(result["reopened"])


def _announce(name: str, record: StepRecord) -> None:
    detail = record.error or record.summary or ""
    LOGGER.info("%-9s %-8s %s", name, record.status, detail)


def needs_run(name: str, incident_dir: str | Path) -> bool:
    """Whether ``run_step`` would do work for this step (not done, dependencies met)."""
    incident = records.load(Path(incident_dir))
    record = incident.steps[name]
    if record.status in records.DONE:
        return False
    return all(incident.steps[dep].status == "ok" for dep in needs(name, incident))


def _summary(name: str, record: StepRecord) -> dict:
    return {"step": name, "status": record.status, "summary": record.summary}


# -- the steps ------------------------------------------------------------------------------------


def intake(ctx: Context, rec: StepRecord) -> None:
    key = ctx.old_key()
    provider = ctx.provider()
    verdict = provider.check(key)
    ctx.incident.old_key.liveness = verdict.value
    rec.details["liveness"] = {"state": verdict.value, "reason": verdict.reason}
    try:
        identity = provider.identify(key)
    except KeyNotFound:
        if verdict.state is Liveness.DEAD:
            rec.summary = "the key is already dead and no longer listed: already revoked"
            return
        raise
    ctx.incident.old_key.identity = identity.to_dict()
    where = f" in {identity.project}" if identity.project else ""
    rec.summary = f"{identity.key_id}{where}, owned by {identity.owner_type or 'unknown'}; {verdict}"
    for note in identity.notes:
        ctx.incident.log("intake", note)
    _preflight_mint(ctx, rec, provider, identity)


def _preflight_mint(ctx: Context, rec: StepRecord, provider: Provider, identity: KeyIdentity) -> None:
    """Under rotate-first (and in a dry run) learn before anything changes whether the replacement
    can be minted at all (Google: an org policy against key creation), where the provider can tell
    without minting. Revoke-first does not wait for it: containment comes first."""
    check = getattr(provider, "preflight_mint", None)
    if check is None or (ctx.incident.order != "rotate-first" and not ctx.incident.dry_run):
        return
    problems = check(identity)
    rec.details["mint_preflight"] = problems
    for problem in problems:
        ctx.incident.log("intake", f"mint preflight: {problem['message']}")
        if problem.get("blocking"):
            ctx.incident.add_action("rotate", problem["message"])


def revoke(ctx: Context, rec: StepRecord) -> None:
    identity = ctx.identity()
    if ctx.incident.dry_run:
        rec.status = "skipped"
        rec.summary = f"dry run: would revoke {identity.key_id if identity else 'the key'}"
        return
    key = ctx.old_key()
    provider = ctx.provider()
    if identity is None:
        rec.summary = "already revoked before the response"
    else:
        result = provider.revoke(identity)
        rec.details["action"] = result.action
        rec.summary = f"{result.action}: {identity.key_id}"
        for item in result.action_items:
            ctx.incident.add_action("revoke", item)
    confirmation = _confirm(ctx, lambda: provider.check(key), want=Liveness.DEAD)
    rec.details["confirmation"] = confirmation.to_dict()
    ctx.incident.metrics["revoke_confirm_s"] = round(confirmation.seconds, 3)
    state = confirmation.verdict.state
    ctx.incident.old_key.liveness = state.value
    if state is Liveness.LIVE:
        rec.details["still_live"] = True
        raise StillLive(
            f"the old key {key.fingerprint} still answers after revocation, for the whole "
            f"{confirmation.window_s:.0f} s confirmation window ({confirmation.attempts} checks)"
        )
    if state is Liveness.UNKNOWN:
        rec.details.pop("still_live", None)
        raise ProviderUnavailable(
            f"could not confirm that {key.fingerprint} is dead within {confirmation.window_s:.0f} s: "
            f"{confirmation.verdict.reason or 'the liveness check failed'}"
        )
    rec.details.pop("still_live", None)
    ctx.incident.revoked_at = ctx.incident.revoked_at or utcnow()
    rec.summary += f"; dead after {confirmation.seconds:.1f} s ({confirmation.verdict.reason})"
    _remember_fingerprint(ctx, key.fingerprint)


def _remember_fingerprint(ctx: Context, fingerprint: str) -> None:
    """Add the leaked fingerprint to the organisation's list that `cauterize guard` refuses
    (``CAUTERIZE_LEAKED_FINGERPRINTS``, else ``leaked-fingerprints`` beside the incidents)."""
    import os

    from cauterize.guard import LEAKED_ENV, add_leaked_fingerprint

    path = Path(os.environ[LEAKED_ENV]) if os.environ.get(LEAKED_ENV) else ctx.directory.parent / "leaked-fingerprints"
    add_leaked_fingerprint(fingerprint, path)
    ctx.incident.add_action(
        "revoke",
        f"install the commit guard in every repository that held the key (`cauterize guard install --repo PATH`, "
        f"with {LEAKED_ENV}={path}): it refuses provider key shapes and this fingerprint",
    )


def rotate(ctx: Context, rec: StepRecord) -> None:
    """Mint the replacement and write it to the primary store as one transaction.

    The record names the mint before it starts (``pending_mint``) and the new key's fingerprint
    before the store write, so a run killed at any point resumes without a second live key: a
    minted key that never reached the store is found and revoked, one that did is kept."""
    if ctx.incident.dry_run:
        rec.status, rec.summary = "skipped", "dry run: would mint a replacement"
        return
    stores = ctx.stores()
    if not stores:
        raise InputError(
            "the runbook lists no store: a minted key must be written to a store at once",
            remediation="Add the store the application reads the key from under `stores:`.",
        )
    primary, provider = stores[0], ctx.provider()
    if _resume_rotation(ctx, rec, primary, provider):
        return
    identity = ctx.identity()
    if identity is None:
        # Intake could not identify the key (already revoked and no longer listed): only the
        # runbook's project hint says where its replacement belongs; without one a person decides.
        hint = getattr(ctx.runbook.providers.get(ctx.incident.provider), "project", None)
        if not hint:
            minted = _minted_by_a_person(ctx, provider, ManualStepRequired(
                f"the leaked key was not identified at {ctx.incident.provider} (it was revoked before this response "
                "and is no longer listed), so where its replacement belongs is unknown: create the replacement by "
                f"hand and paste it, or set providers.{ctx.incident.provider}.project and rerun",
            ))
            _store_minted(ctx, rec, primary, provider, minted, None)
            return
        identity = KeyIdentity(provider=ctx.incident.provider, key_id=None, project=hint,
                               notes=("the leaked key was not identified: the runbook's project hint is used",))
    name = f"cauterize-{ctx.incident.id[:15].lower()}"
    ctx.incident.pending_mint = {"name": name, "started_at": utcnow().isoformat(), "like": identity.to_dict()}
    ctx.save()
    carried = _carried(ctx, provider, ctx.identity())
    try:
        minted = provider.mint(identity, name, carried)
    except ManualStepRequired as exc:
        ctx.incident.pending_mint = None  # nothing was minted: no orphan to look for on a rerun
        minted = _minted_by_a_person(ctx, provider, exc)
    except MissingPermission as exc:
        # The admin credential may not mint: a limitation of this step, not a failed response. A
        # person creates the replacement (or grants the permission and reruns).
        ctx.incident.pending_mint = None
        rec.details["limitation"] = {"permission": exc.permission, "message": exc.message}
        request = ManualStepRequired(
            f"the admin credential may not create the replacement ({exc.message}): create it by hand in the "
            f"provider's console and paste it, or grant {exc.permission or 'the permission named'} and rerun",
            remediation=exc.remediation,
        )
        minted = _minted_by_a_person(ctx, provider, request)
    _store_minted(ctx, rec, primary, provider, minted, carried)


def _store_minted(ctx: Context, rec: StepRecord, primary, provider: Provider, minted: MintedKey,
                  carried: CarriedScopes | None) -> None:
    """Record the replacement, write it to the primary store (revoked again if that fails: never a
    minted key no store holds), and check it is live."""
    faults.point("mint")
    ctx.incident.new_key = KeyRecord(
        fingerprint=minted.secret.fingerprint,
        redacted=minted.secret.redacted,
        source="store:0",
        identity=minted.identity.to_dict(),
        scopes=list(minted.scopes) if minted.scopes is not None else None,
    )
    if carried is not None and not carried.known:
        ctx.incident.add_action("rotate", carried.summary())
    elif carried is not None and carried.scopes and minted.scopes is not None and minted.scopes != carried.scopes:
        ctx.incident.add_action(
            "rotate",
            f"the replacement {minted.identity.key_id} could not be given the revoked key's scopes "
            f"({', '.join(carried.scopes)}): it is unrestricted; restrict it in the OpenAI console "
            "(API keys, Edit, Restricted)",
        )
    ctx.save()
    try:
        write = primary.write(minted.secret)
    except CauterizeError:
        _unmint(ctx, provider, minted.identity)  # never leave a minted key that no store holds
        ctx.incident.new_key = None
        raise
    faults.point("primary-store")
    ctx.incident.pending_mint = None
    ctx.save()
    _confirm_new_key(ctx, provider, minted.secret)
    rec.details["primary_store"] = write.store
    _note_lingering(ctx, "rotate", write)
    rec.summary = f"minted {minted.identity.key_id} ({minted.secret.fingerprint}), written to {write.store}"


def _carried(ctx: Context, provider: Provider, identity: KeyIdentity | None) -> CarriedScopes | None:
    """What limits the old key's reach, read once and kept in the record. Read here rather than at
    intake so that containment never waits for it: after a revocation the audit log still says
    (a deleted service account's role included); only with audit logging off is the role lost."""
    if identity is None:
        return None
    if ctx.incident.old_key.scopes is None:
        carried = carried_scopes(provider, identity)
        ctx.incident.old_key.scopes = carried.to_dict()
        for note in carried.notes:
            ctx.incident.log("rotate", note)
        ctx.save()
    return ctx.carried_scopes()


def _resume_rotation(ctx: Context, rec: StepRecord, primary, provider: Provider) -> bool:
    """After a crash: keep a replacement the primary store took; revoke one that it never took.
    Returns True when the rotation is already complete."""
    pending, recorded = ctx.incident.pending_mint, ctx.incident.new_key
    if pending is None and recorded is None:
        return False
    current = primary.read()
    if recorded is not None and current is not None and current.fingerprint == recorded.fingerprint:
        ctx.incident.pending_mint = None
        _confirm_new_key(ctx, provider, current)
        rec.summary = f"{current.fingerprint} was minted and stored before the interruption; kept"
        return True
    orphans = []
    if recorded is not None and recorded.identity:
        orphans.append(KeyIdentity.from_dict(recorded.identity))
    elif pending is not None:
        finder = getattr(provider, "find_minted", None)
        like = KeyIdentity.from_dict(pending["like"])
        if finder is not None:
            orphans.extend(finder(like, pending["name"]))
        else:
            ctx.incident.add_action(
                "rotate",
                f"a run was interrupted while minting at {pending['started_at']}: check the provider for an "
                "orphaned replacement key and revoke it",
            )
    for orphan in orphans:
        _unmint(ctx, provider, orphan)
        ctx.incident.log("rotate", f"revoked the replacement {orphan.key_id or orphan.owner_id} an interrupted run minted")
    ctx.incident.new_key = ctx.incident.pending_mint = None
    ctx.save()
    return False


def _confirm_new_key(ctx: Context, provider: Provider, secret: Secret) -> None:
    confirmation = _confirm(ctx, lambda: provider.check(secret), want=Liveness.LIVE)
    ctx.incident.new_key.liveness = confirmation.verdict.value
    ctx.incident.metrics["new_key_live_s"] = round(confirmation.seconds, 3)
    if not confirmation.confirmed:
        raise ProviderUnavailable(
            f"the new key {secret.fingerprint} does not answer as live within {confirmation.window_s:.0f} s "
            f"({confirmation.verdict})"
        )


#: How a person hands over a key the provider cannot mint by API (Anthropic, Cohere): the CLI sets a
#: hidden terminal prompt, the flow's pause form sets its own. None: nobody can answer now.
ManualInput = Callable[[str], "Secret | None"]
_manual_input: ManualInput | None = None


def set_manual_input(ask: ManualInput | None) -> None:
    global _manual_input
    _manual_input = ask


def _minted_by_a_person(ctx: Context, provider: Provider, request: ManualStepRequired) -> MintedKey:
    """Ask for the key a person created by hand; check it is new and live, identify it if possible."""
    ctx.incident.add_action("rotate", request.message)
    if _manual_input is None:
        raise request
    supplied = _manual_input(request.message)
    if supplied is None:
        raise request
    if supplied == ctx.old_key():
        raise InputError("the key supplied as the replacement is the leaked key itself")
    verdict = provider.check(supplied)
    if verdict.state is not Liveness.LIVE:
        raise InputError(f"the key supplied as the replacement ({supplied.fingerprint}) is {verdict}, not live")
    try:
        identity = provider.identify(supplied)
    except CauterizeError:
        identity = KeyIdentity(provider=ctx.incident.provider, key_id=None, notes=("supplied by a person",))
    ctx.incident.steps["rotate"].details["manual"] = True
    return MintedKey(supplied, identity)


def _unmint(ctx: Context, provider: Provider, identity: KeyIdentity) -> None:
    try:
        provider.revoke(identity)
    except ManualStepRequired:
        ctx.incident.add_action("rotate", f"revoke the replacement {identity.key_id or ''} by hand: no store took it")


def redeploy(ctx: Context, rec: StepRecord) -> None:
    stores = ctx.stores()
    new = stores[0].read()
    if new is None or ctx.incident.new_key is None or new.fingerprint != ctx.incident.new_key.fingerprint:
        raise StoreError(f"{stores[0].describe()} does not hold the new key; rerun to mint again")
    done = []
    written = [{"store": stores[0].describe(), "fingerprint": new.fingerprint}]
    try:
        for store in stores[1:]:
            current = store.read()
            if current is not None and current.fingerprint == new.fingerprint:
                written.append({"store": store.describe(), "fingerprint": new.fingerprint, "unchanged": True})
                continue
            write = store.write(new)
            done.append(write)
            check = store.read()
            if check is None and getattr(store, "write_only", False):
                pass  # GitHub Actions secrets never return values: the acknowledged write is the proof
            elif check is None or check.fingerprint != new.fingerprint:
                raise StoreError(f"{store.describe()}: read-back does not hold the new key")
            written.append({"store": write.store, "fingerprint": new.fingerprint, "version": write.version})
            if len(done) == 1:
                faults.point("first-store")
    except CauterizeError:
        for write in reversed(done):
            if write.undo is not None:
                write.undo()
        ctx.incident.log("redeploy", f"rolled back {len(done)} store(s)")
        raise
    for write in done:
        _note_lingering(ctx, "redeploy", write)
    rec.details["stores"] = written
    rec.summary = f"{len(written)} store(s) hold {new.fingerprint}"


def _note_lingering(ctx: Context, step: str, write) -> None:
    """Where the store's own history still holds the old value becomes an action item."""
    for item in write.lingering:
        ctx.incident.add_action(step, item)


def locate_sources(incident_dir: str | Path) -> list[dict]:
    """The sources the runbook asks to search, as plain data an orchestrator can map over."""
    loaded = load_runbook(records.load(Path(incident_dir)).runbook_path)
    config = loaded.runbook.locate
    return (
        [{"kind": "git", "target": loaded.resolve_repo(repo)} for repo in config.git]
        + [{"kind": "path", "target": str(loaded.resolve(path))} for path in config.paths]
        + [{"kind": "s3", "target": url} for url in config.s3]
        + [{"kind": "github-actions", "target": repo} for repo in config.github_actions]
    )


def scan_source(incident_dir: str | Path, source: dict) -> dict:
    """Search one source for the old key (read-only; the key is read from its reference here).

    Returns ``{"source", "findings", "errors", "actions", "failed"}``: ``errors`` are what could not
    be read (expired logs, unreadable files), ``actions`` what to do beyond the findings (a public
    bucket), ``failed`` the one-line reason the source as a whole could not be searched. Never raises
    a CauterizeError, so one bad source does not stop the others (an interrupt stops them all)."""
    interrupts.check()
    directory = Path(incident_dir)
    incident = records.load(directory)
    loaded = load_runbook(incident.runbook_path)
    key = leaked_key(loaded, incident)
    result = {"source": source, "findings": [], "errors": [], "actions": [], "failed": None}
    scratch = Path(tempfile.mkdtemp(dir=records.work_dir(directory)))
    try:
        found = search(source["kind"], source["target"], key, workdir=scratch)
        result.update(findings=[f.to_dict() for f in found.findings], errors=found.errors, actions=found.actions)
    except CauterizeError as exc:
        result["failed"] = f"{source['kind']} {source['target']}: {exc.one_line()}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def locate(ctx: Context, rec: StepRecord) -> None:
    """Record every copy found. The flow maps ``scan_source`` over the sources concurrently and
    passes the results in; run alone (CLI, tests), the step scans them one after the other."""
    results = ctx.inputs.get("results")
    if results is None:
        results = [scan_source(ctx.directory, source) for source in locate_sources(ctx.directory)]
    findings = [finding for result in results for finding in result["findings"]]
    for result in results:
        for error in result["errors"]:
            ctx.incident.log("locate", f"not searched: {error}")
        for action in result.get("actions", []):
            ctx.incident.add_action("locate", action)
    ctx.incident.findings = findings
    seen = [datetime.fromisoformat(f["first_seen"]) for f in findings if f.get("first_seen")]
    if seen:
        ctx.incident.exposure_start = min(seen)
    _discover_other_stores(ctx, ctx.old_key(), rec)
    rec.details["sources"] = [f"{r['source']['kind']} {r['source']['target']}" for r in results]
    rec.details["unreadable"] = sum(len(r["errors"]) for r in results)
    rec.summary = f"{len(findings)} cop{'y' if len(findings) == 1 else 'ies'} in {len(results)} source(s)"
    failed = [r["failed"] for r in results if r["failed"]]
    if failed:
        raise CauterizeError(
            f"{len(failed)} of {len(results)} source(s) could not be searched: {failed[0]}",
            remediation="Fix access to the sources named in the record and rerun; the findings so far are kept.",
        )


def _discover_other_stores(ctx: Context, key: Secret, rec: StepRecord) -> None:
    """Secrets outside the runbook that still hold the leaked key (same AWS region, Vault mount)."""
    from cauterize.stores.discover import discover

    sweepable = ("aws-secrets-manager", "vault-kv2", "gcp-secret-manager", "azure-key-vault")
    if not any(store.type in sweepable for store in ctx.runbook.stores):
        return
    found = discover(key, ctx.loaded)
    rec.details["other_secrets"] = found.hits
    for hit in found.hits:
        ctx.incident.add_action("locate", f"{hit} also holds the leaked key: add it to the runbook's stores and rerun")
    for error in found.errors:
        ctx.incident.log("locate", f"store sweep incomplete: {error}")


def purge(ctx: Context, rec: StepRecord) -> None:
    from cauterize.purge import purge_repo, remote_of

    repos = sorted({f["repo"] for f in ctx.incident.findings if f["source"] == "git" and f.get("repo")})
    if not repos:
        rec.status, rec.summary = "skipped", "no copy in any git history"
        return
    policy, approved = ctx.runbook.policy.purge, ctx.inputs.get("push_approved")
    push = not ctx.incident.dry_run and (policy == "push" or (policy == "ask" and approved is True))
    key = ctx.old_key()
    results = []
    with ctx.scratch() as work:
        for repo in repos:
            remote = remote_of(repo)
            result = purge_repo(remote, key, workdir=work, push=push)
            results.append(result.to_dict())
            for item in result.action_items:
                ctx.incident.add_action("purge", item)
            if remote != repo:
                ctx.incident.add_action("purge", f"re-clone {repo}: this working copy still holds the old history")
    ctx.incident.purge = results
    rewritten = sum(r["commits_rewritten"] for r in results)
    if not push and policy == "ask" and approved is None and not ctx.incident.dry_run:
        raise ManualStepRequired(
            f"approve the force-push of {rewritten} rewritten commit(s) in {len(results)} repo(s)",
            remediation="Approve or reject it in the Prefect pause form (or run `cauterize purge --push`), then rerun.",
        )
    if not push:
        rec.status = "skipped"
        rec.summary = f"dry run: would rewrite {rewritten} commit(s) in {len(results)} repo(s)"
        if approved is False:
            rec.summary = f"push rejected by a person: {rec.summary}"
        ctx.incident.add_action("purge", "history still holds the key: rerun with policy.purge: push (or `cauterize purge --push`)")
        return
    unverified = [r["repo"] for r in results if not r["verified"]]
    if unverified:
        raise CauterizeError(f"a fresh clone of {', '.join(unverified)} still holds the key")
    rec.summary = f"rewrote {rewritten} commit(s) in {len(results)} repo(s); fresh clones are clean"


def evidence(ctx: Context, rec: StepRecord) -> None:
    from cauterize.evidence import evidence_for

    identity = ctx.identity()
    if identity is None or not identity.key_id:
        rec.status, rec.summary = "skipped", "the key was not identified at the provider: no per-key usage to collect"
        return
    end = ctx.incident.revoked_at or utcnow()
    start = ctx.incident.exposure_start
    limitations = []
    if start is None:
        start = end - timedelta(days=1)
        limitations.append("no exposure start was found: the window is the last 24 hours before revocation")
    bucket = ctx.runbook.evidence.bucket
    if start >= end:  # a copy first seen after the revocation: look at the day before it
        start = end - timedelta(days=1)
        limitations.append("every copy was first seen after the revocation: the window is the last 24 hours before it")
    try:
        result = evidence_for(ctx.provider(), identity, start, end, bucket, ctx.runbook.evidence.baseline_days)
    except MissingPermission as exc:
        # A restricted admin credential may not read usage: the step records the limitation (the
        # record and the post-mortem name it) instead of failing the response.
        limitation = f"usage could not be read: {exc.message}"
        ctx.incident.evidence = {
            "window": {"start": start.isoformat(), "end": end.isoformat()},
            "totals": {}, "bucket": bucket, "unavailable": True, "limitations": [*limitations, limitation],
        }
        rec.details["limitation"] = {"permission": exc.permission, "message": exc.message}
        ctx.incident.add_action(
            "evidence",
            f"grant the admin credential {exc.permission or 'the permission named in the record'} and collect the "
            f"evidence with `cauterize evidence --provider {ctx.incident.provider} ... --since {start.isoformat()}`",
        )
        rec.summary = f"limited: {limitation}"
        return
    result["limitations"] = limitations + result["limitations"]
    result["bucket"] = bucket
    ctx.incident.evidence = result
    totals = result["totals"]
    rec.summary = (
        f"{totals['requests']} requests, {totals['input_tokens'] + totals['output_tokens']} tokens in the window; "
        f"{result['anomalous_buckets']} anomalous bucket(s)"
    )


def report(ctx: Context, rec: StepRecord) -> None:
    """Render the post-mortem from the verified record: when no verification followed the last
    step (an orchestrator that did not call ``verify_outcome``), verify here first."""
    from cauterize.report import write_reports
    from cauterize.verification import stale, verify

    if not ctx.incident.dry_run and stale(ctx.incident):
        verify(ctx)
    rec.status, rec.ended_at = "ok", utcnow()
    rec.summary = "postmortem.md and postmortem.html"
    ctx.incident.report = write_reports(ctx.incident, ctx.directory)


STEPS: dict[str, Callable[[Context, StepRecord], None]] = {
    "intake": intake,
    "revoke": revoke,
    "rotate": rotate,
    "redeploy": redeploy,
    "locate": locate,
    "purge": purge,
    "evidence": evidence,
    "report": report,
}


def _confirm(ctx: Context, check: Callable[[], Verdict], *, want: Liveness) -> Confirmation:
    """Poll over the provider's confirmation window, with progress on the log (stderr in the CLI)."""
    return confirm_liveness(
        check, want=want, window_s=ctx.confirm_window(), progress=lambda line: LOGGER.info("confirm   %s", line)
    )
