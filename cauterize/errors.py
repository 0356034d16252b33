"""One error tree for cauterize. Every error carries ``retryable`` and a ``remediation`` sentence.

    CauterizeError
    ├── InputError                 bad input: exit 2, one line, no traceback
    │   ├── RunbookError           the runbook file is missing, malformed or invalid
    │   ├── KeySourceError         a key source reference cannot be read
    │   └── IncidentDirError       an incident directory or file cauterize did not make: a link, another
    │                              user's, or writable by others (refused, never followed)
    ├── ProviderError              a provider API call failed
    │   ├── AdminAuthError         the admin credential was rejected (401/403)
    │   │   └── MissingPermission  it is valid but lacks a scope/permission this call needs (403)
    │   ├── RateLimited            429 after every retry
    │   ├── ProviderUnavailable    5xx, timeout or connection failure after every retry
    │   ├── KeyNotFound            the leaked key could not be matched to a key id
    │   └── ProviderRejected       any other 4xx answer
    ├── ManualStepRequired         a person must act (no API for it); the step waits
    ├── StoreError                 a secret store could not be read or written
    ├── GitError                   a git or git-filter-repo command failed
    ├── PurgeError                 a purge could not be completed or verified
    ├── StillLive                  the old key still answers after revocation: exit 4
    └── SecretLeakError            cauterize was about to write a key value somewhere

Exit codes (DESIGN.md section 4): InputError 2; provider, store, git and purge failures 3
(incomplete); StillLive 4; anything else 1.

Foreign exceptions (httpx, botocore, hvac, subprocess) are translated at one boundary per
adapter, with ``raise ... from exc``. Messages name fingerprints, never key values.
"""

from __future__ import annotations


class CauterizeError(Exception):
    """Base of every error cauterize raises on purpose."""

    exit_code = 1
    retryable = False
    remediation = "See the incident record for the step that failed and rerun `cauterize respond`."

    def __init__(self, message: str, *, remediation: str | None = None, retryable: bool | None = None):
        super().__init__(message)
        if remediation is not None:
            self.remediation = remediation
        if retryable is not None:
            self.retryable = retryable

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__

    def one_line(self) -> str:
        """The message and the remediation hint on one line, for a terminal at 3 a.m."""
        text = " ".join(self.message.split())
        hint = " ".join(self.remediation.split()) if self.remediation else ""
        return f"{text} ({hint})" if hint else text


class InputError(CauterizeError):
    exit_code = 2
    remediation = "Fix the input named above and run the command again."


class RunbookError(InputError):
    remediation = "Fix the runbook field named above; `cauterize runbook schema` prints every field."


class KeySourceError(InputError):
    remediation = "Key sources are env:VAR, file:PATH or stdin: (never the key itself)."


class IncidentDirError(InputError):
    remediation = "Make the incident directory private to this user (chmod 700, chown to this user) and rerun."


class ProviderError(CauterizeError):
    exit_code = 3  # the operation could not complete: incomplete, not an internal error
    remediation = "Check the provider's status page and the admin credential, then rerun."


class AdminAuthError(ProviderError):
    remediation = "Check the admin key variable named in the runbook: it must be an admin key of this organisation."


class MissingPermission(AdminAuthError):
    """The admin credential is valid but restricted: this call needs a scope or permission it lacks
    (OpenAI ``Missing scopes: api.usage.read``, Anthropic ``permission_error``, Google
    ``PERMISSION_DENIED``, Azure ``AuthorizationFailed``). Outside containment it is a limitation of
    the step that needed it, not a failed response. ``permission`` names what is missing, when known."""

    remediation = "Grant the admin credential the permission named above (`cauterize permissions RUNBOOK` lists them)."

    def __init__(self, message: str, *, permission: str | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.permission = permission


class RateLimited(ProviderError):
    retryable = True
    remediation = "The provider is rate limiting cauterize; rerun in a minute (the record keeps what is done)."


class ProviderUnavailable(ProviderError):
    retryable = True
    remediation = "The provider did not answer; check connectivity and its status page, then rerun."


class KeyNotFound(ProviderError):
    remediation = (
        "The key is not listed by this admin credential: check the organisation and project, "
        "or revoke it in the provider's console."
    )


class ProviderRejected(ProviderError):
    pass


class ManualStepRequired(CauterizeError):
    exit_code = 3
    remediation = "A person must complete this step; the record says what to do. Rerun afterwards to resume."


class StoreError(CauterizeError):
    exit_code = 3  # the operation could not complete: incomplete, not an internal error
    remediation = "Check the store's credentials and path in the runbook; the record lists which stores hold which key."


class GitError(CauterizeError):
    exit_code = 3  # the operation could not complete: incomplete, not an internal error
    remediation = "Check that the repository path or URL is right and readable, then rerun."


class PurgeError(CauterizeError):
    exit_code = 3  # the operation could not complete: incomplete, not an internal error
    remediation = ("Nothing was pushed. Remove the copies named above by hand (or from the files they are in), "
                   "then rerun `cauterize purge`.")


class StillLive(CauterizeError):
    exit_code = 4
    remediation = "Revoke the key by hand in the provider's console now, then rerun to confirm."


class SecretLeakError(CauterizeError):
    remediation = "This is a bug in cauterize: nothing was written. Please report it with the fingerprint only."
