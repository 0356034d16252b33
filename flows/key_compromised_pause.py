"""People in the loop: Prefect pause forms for the steps only a person can do.

Called from a flow (a pause must be, not from a task):

- ``hand_over_key(incident_dir)`` after the rotate step: when the provider has no mint API
  (Anthropic, Cohere) the step is ``waiting``; the flow pauses with ``NewKeyForm`` (the key as a
  ``SecretStr``, shown as a password field in the Prefect UI). Once resumed with the key, the flow
  reads it, **deletes that flow-run input through the Prefect client at once**, and hands the value
  to the rotate step in this process (``response.set_manual_input``): it is never a task parameter,
  a result, a log line or an artifact. The rotate step then checks it (new, live) and writes it to
  the primary store like a minted key.
- ``approve(incident_dir, step, question)``: an approve/reject choice with a reason
  (``ApprovalForm``), recorded in the incident's events; ``approve_push`` asks it when the purge
  step waits for a person (a push the runbook does not pre-approve: ``policy.purge: ask``).
- ``settle(incident_dir)`` at the end of key-compromised: both of the above, then the steps their
  answers unblock, then the post-mortem again. Containment and cleanup never wait for a person.

Pauses happen only on a Prefect server (``PREFECT_API_URL``): on the ephemeral server of a one-off
command nobody could open the form, so the step just waits (exit 3) or the CLI's hidden prompt asks.
A pause nobody answers within ``timeout_s`` leaves the step ``waiting`` (the record says so), the
flow run goes on with the other steps (it is put back to Running: Prefect would otherwise fail it),
the exit code is 3, and a rerun resumes there and asks again.

The key is in Prefect's database only for the seconds between the resume and the delete (the pause
polls every ``POLL_INTERVAL_S``); no table holds it afterwards. The database engine may keep the
freed bytes on disk until they are overwritten (SQLite: its WAL file and free pages; Postgres: dead
tuples until VACUUM): run the server's database on a disk you would trust with the key, or VACUUM
it after an incident.
"""

from __future__ import annotations

from typing import Literal

from cauterize.tasks.report import announce, note
from cauterize.tasks.steps import response_step, verify_outcome
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field, SecretStr

from cauterize import incident as records
from cauterize import response
from cauterize.errors import CauterizeError
from cauterize.providers.formats import check_key, expected, key_lines
from cauterize.secret import parse_key_text

PAUSE_TIMEOUT_S = 3600
POLL_INTERVAL_S = 2


class NewKeyForm(RunInput):
    """The replacement key a person created in the provider's console."""

    key: SecretStr = Field(
        description="Paste the new key. It is checked, written to the primary store, and deleted from Prefect at once."
    )


class ApprovalForm(RunInput):
    """A person's decision on a step that needs one."""

    decision: Literal["approve", "reject"] = Field(description="approve: do it now; reject: leave it undone.")
    reason: str = Field(min_length=3, max_length=500, description="Why (recorded in the incident and the post-mortem).")


def hand_over_key(incident_dir: str, *, timeout_s: int = PAUSE_TIMEOUT_S) -> bool:
    """If rotate waits for a person, pause for the key and run rotate with it; True when it ran."""
    incident = records.load(incident_dir)
    waiting = incident.steps["rotate"]
    if waiting.status != "waiting" or not people_can_answer():
        return False
    announce(incident_dir, "manual")
    instructions = (
        f"**{incident.runbook}**: {waiting.error or 'create the replacement key by hand'}\n\n"
        f"Old key: `{incident.old_key.redacted}` ({incident.old_key.fingerprint}). "
        f"This form expires in {timeout_s // 60} min; the step then stays waiting until the next run."
    )
    answer = _pause(NewKeyForm.with_initial_data(description=instructions), incident_dir, "rotate", timeout_s)
    if answer is None:
        return False
    try:  # the one key-source parser and the provider's key shapes, as for every other source
        secret = check_key(parse_key_text(answer.key.get_secret_value(), "the pause form",
                                          fits=key_lines(incident.provider), expected=expected(incident.provider)),
                           incident.provider, "the pause form")
    except CauterizeError as exc:
        secret = None
        refused = exc.one_line()
    try:
        _forget(answer)
    except Exception as exc:  # noqa: BLE001  (the rotation goes on; a person deletes the input)
        note(incident_dir, "rotate", f"delete the Prefect flow-run input {answer.metadata.key} of flow run "
                                     f"{answer.metadata.receiver}: it holds the new key ({type(exc).__name__})",
             action=True)
    del answer
    if secret is None:
        note(incident_dir, "rotate", f"the key pasted into the pause form was refused: {refused}; rotate still waits")
        return False
    response.set_manual_input(lambda _instructions: secret)
    try:
        response_step("rotate", incident_dir, return_state=True)
    finally:
        response.set_manual_input(None)
    note(incident_dir, "rotate", f"a person handed over {secret.fingerprint} through the Prefect pause form")
    return True


def approve(incident_dir: str, step: str, question: str, *, timeout_s: int = PAUSE_TIMEOUT_S) -> bool | None:
    """Ask a person to approve or reject ``step``; True/False, None when nobody answered."""
    announce(incident_dir, "manual")
    form = ApprovalForm.with_initial_data(description=question, decision="reject")
    answer = _pause(form, incident_dir, step, timeout_s)
    if answer is None:
        return None
    approved = answer.decision == "approve"
    note(incident_dir, step, f"{'approved' if approved else 'rejected'} by a person: {answer.reason}")
    return approved


def approve_push(incident_dir: str, *, timeout_s: int = PAUSE_TIMEOUT_S) -> bool | None:
    """When purge waits for a person (``policy.purge: ask``): approve the force-push of rewritten
    history (True), reject it (False), or None (nothing to ask, or nobody answered)."""
    incident = records.load(incident_dir)
    if incident.steps["purge"].status != "waiting" or not people_can_answer():
        return None
    repos = sorted({f["repo"] for f in incident.findings if f.get("source") == "git" and f.get("repo")})
    question = (
        f"**{incident.runbook}**: rewrite the history of {', '.join(repos) or 'the affected repositories'} with "
        f"git-filter-repo and force-push every ref? Copies of {incident.old_key.fingerprint} were found there; "
        "everyone must re-clone afterwards."
    )
    return approve(incident_dir, "purge", question, timeout_s=timeout_s)


def settle(incident_dir: str, *, timeout_s: int = PAUSE_TIMEOUT_S) -> bool:
    """After the flow's steps: ask the people the waiting steps need (the new key, the push), run
    what their answers unblock, and render the post-mortem again. True when anything changed."""
    changed = hand_over_key(incident_dir, timeout_s=timeout_s)
    decision = approve_push(incident_dir, timeout_s=timeout_s)
    if decision is not None:
        response_step("purge", incident_dir, push_approved=decision, return_state=True)
        changed = True
    if changed:
        for step in response.order_of(incident_dir):
            if step != "report" and response.needs_run(step, incident_dir):
                response_step(step, incident_dir, return_state=True)
        for again in verify_outcome(incident_dir):  # the world wins over the record
            response_step(again, incident_dir, return_state=True)
        response_step("report", incident_dir, return_state=True)
    return changed


def people_can_answer() -> bool:
    """A pause form needs a Prefect server people can reach: not the ephemeral server of a one-off
    ``cauterize respond`` (which asks on the terminal instead, or exits 3 with the step waiting)."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def _pause(form: type[RunInput], incident_dir: str, step: str, timeout_s: int):
    try:
        return pause_flow_run(wait_for_input=form, timeout=timeout_s, poll_interval=POLL_INTERVAL_S)
    except FlowPauseTimeout:
        _back_to_running(f"nobody answered the {step} form within {timeout_s} s")
        note(incident_dir, step, f"nobody answered the pause form within {timeout_s} s: the step still waits; "
                                 "rerun to be asked again")
        return None


def _forget(answer: RunInput) -> None:
    """Delete the answered form (the key) from Prefect's database."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.delete_flow_run_input(answer.metadata.receiver, answer.metadata.key)


def _back_to_running(message: str) -> None:
    """An expired pause: Prefect refuses any later state but Failed; the flow still has steps to
    record, so its run is forced back to Running (the record says what waits)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(context.flow_run.id, Running(message=message), force=True)
