"""Why Google may refuse a new service-account key: before the mint (``preflight``) and when it does (``refusal``).

Two organization policy constraints forbid creating service-account keys: the legacy boolean
``iam.disableServiceAccountKeyCreation`` and the managed ``iam.managed.disableServiceAccountKeyCreation``
(enforced by default in organizations created since 3 May 2024: resource-manager/docs/
secure-by-default-organizations). Both are evaluated; lifting one leaves the other in force. A service
account also holds at most 10 user-managed keys (iam/docs/keys-create-delete).

* ``preflight`` reads each constraint's effective policy on the key's project (Org Policy v2
  ``GET /v2/projects/{p}/policies/{constraint}:getEffectivePolicy``, permission
  ``orgpolicy.policy.get``). Both constraints are boolean (a managed constraint is "set to true or
  false"), so a rule with ``enforce: true`` forbids; an effective policy has its conditions already
  evaluated. It also counts the account's user-managed keys. A check that got no answer says so and
  does not block: "could not be checked" never reads as "allowed" nor as "forbidden".
* ``refusal`` reads IAM's 400 ``FAILED_PRECONDITION`` to ``keys.create``. An organization policy
  answers "Key creation is not allowed on this service account." with a ``google.rpc.PreconditionFailure``
  whose violation ``type`` is ``constraints/<constraint>`` (iam/docs/troubleshoot-org-policies); the
  10-key limit answers a bare "Precondition check failed." (firebase/firebase-tools#6192), so the
  account's keys are counted to tell the two apart.

Problems are ``{"blocking": bool, "message": str}``: ``blocking`` when the mint would fail as things
stand, not blocking when it could not be checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cauterize.errors import (
    AdminAuthError,
    CauterizeError,
    InputError,
    KeyNotFound,
    ManualStepRequired,
    MissingPermission,
    ProviderError,
    ProviderRejected,
)
from cauterize.providers.google_api import GoogleRejected

LEGACY = "iam.disableServiceAccountKeyCreation"
MANAGED = "iam.managed.disableServiceAccountKeyCreation"
CONSTRAINTS = (LEGACY, MANAGED)
MAX_USER_KEYS = 10
Problem = dict[str, Any]


def preflight(
    effective_policy: Callable[[str, str], dict],
    count_keys: Callable[[], int],
    project: str | None,
    account: str,
) -> list[Problem]:
    """What would make creating a key for ``account`` fail; ``[]`` when nothing would.

    ``effective_policy(project, constraint)`` is the Org Policy call, ``count_keys()`` the number of the
    account's user-managed keys (``keys.list``)."""
    problems: list[Problem] = []
    if not project or project == "-":
        problems.append(_unchecked(CONSTRAINTS, "the key's project", "the key's identity names no project"))
    else:
        unanswered: dict[str, list[str]] = {}
        for constraint in CONSTRAINTS:
            try:
                policy = effective_policy(project, constraint)
            except (ProviderError, InputError) as exc:
                unanswered.setdefault(_why(exc), []).append(constraint)
                continue
            enforced = [rule for rule in (policy.get("spec") or {}).get("rules") or [] if _true(rule.get("enforce"))]
            if any(not rule.get("condition") for rule in enforced):
                problems.append({"blocking": True, "message": forbidden(constraint, project, account)})
            elif enforced:
                problems.append(
                    {
                        "blocking": False,
                        "message": f"the organization policy {constraint} is enforced on project {project} under a "
                        f"condition: creating a key for {account} may be refused",
                    }
                )
        for why, names in unanswered.items():
            problems.append(_unchecked(tuple(names), f"project {project}", why))
    try:
        held = count_keys()
    except (ProviderError, InputError) as exc:
        problems.append(
            {"blocking": False, "message": f"the keys of {account} could not be counted ({_why(exc)}): "
             f"Google refuses an 11th user-managed key"}
        )
    else:
        if held >= MAX_USER_KEYS:
            problems.append({"blocking": True, "message": ten_keys(account, held)})
    return problems


def refusal(exc: GoogleRejected, account: str, project: str | None, count_keys: Callable[[], int]) -> CauterizeError:
    """The error a 400 FAILED_PRECONDITION to ``keys.create`` stands for (see the module)."""
    constraints = [v.type.removeprefix("constraints/") for v in exc.violations if v.type.startswith("constraints/")]
    if not constraints and "not allowed" in exc.message.lower():  # the sentence without its details
        constraints = list(CONSTRAINTS)
    if constraints:
        named = " and ".join(dict.fromkeys(constraints))
        return ManualStepRequired(
            forbidden(named, project, account) + " (400 FAILED_PRECONDITION). "
            + _replace_by_hand(named, project, account),
            remediation="Provide the replacement once a policy exception is granted (or move the application to "
            "workload identity federation or impersonation), then rerun; cauterize never changes organization "
            "policies.",
        )
    try:
        held: int | None = count_keys()
    except CauterizeError:
        held = None
    if held is not None and held >= MAX_USER_KEYS:
        return ProviderRejected(exc.message, remediation=ten_keys(account, held))
    counted = f"it holds {held}" if held is not None else "its keys could not be counted"
    return ProviderRejected(
        exc.message,
        remediation=f"Google gave no reason. It answers this when a service account already holds {MAX_USER_KEYS} "
        f"user-managed keys ({counted}): check the keys of {account}, then rerun.",
    )


def forbidden(constraint: str, project: str | None, account: str) -> str:
    where = f"project {project}" if project and project != "-" else "the service account's project"
    return (
        f"the organization policy constraint {constraint} forbids creating service-account keys in {where}: "
        f"Google refuses a new key for {account}"
    )


def ten_keys(account: str, held: int) -> str:
    return (
        f"{account} holds {held} user-managed keys and Google allows {MAX_USER_KEYS}: a replacement cannot be "
        f"created while they all exist (under rotate-first the leaked key is one of them). Delete unused keys of "
        f"{account} (gcloud iam service-accounts keys list / delete), then rerun."
    )


def _replace_by_hand(constraint: str, project: str | None, account: str) -> str:
    where = f"project {project}" if project else "the project"
    return (
        f"A person must provide the replacement, or the policy must change: ask an Organization Policy "
        f"Administrator (roles/orgpolicy.policyAdmin) for an exception to {constraint} on {where}, create a key "
        f"for {account} and paste its JSON file; or give the application a short-lived credential instead of a key "
        f"(workload identity federation, or service account impersonation: gcloud auth print-access-token "
        f"--impersonate-service-account={account}) and finish the rotation by hand."
    )


def _unchecked(constraints: tuple[str, ...], where: str, why: str) -> Problem:
    names = " and ".join(constraints)
    return {
        "blocking": False,
        "message": f"the organization policy {names} on {where} could not be checked ({why}): if it is enforced, "
        "Google refuses the replacement key and a person must provide one",
    }


def _why(exc: CauterizeError) -> str:
    if isinstance(exc, MissingPermission):
        return f"the admin credential lacks {exc.permission or 'the permission'}"
    if isinstance(exc, AdminAuthError):
        return "the admin credential was rejected"
    if isinstance(exc, KeyNotFound) or "(404" in exc.message:
        return "Google did not find it (404)"
    if "SERVICE_DISABLED" in exc.message:
        return "the API is not enabled in the project"
    return exc.message[:200]


def _true(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")
