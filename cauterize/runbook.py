"""Runbooks: the strict pydantic models of ``runbooks/*.yaml`` (DESIGN.md section 6).

Unknown keys are rejected everywhere, so a typo never silently disables a step. Relative paths
are resolved against the runbook file's directory. ``load_runbook`` turns every failure into a
``RunbookError`` whose one line names the file and the field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cauterize.errors import RunbookError
from cauterize.secret import ALL_SCHEMES

PROVIDERS = ("openai", "anthropic", "google", "azure-openai", "cohere")
_SOURCE_RE = re.compile("^(" + "|".join(re.escape(s) for s in ALL_SCHEMES) + "):")


def _check_source(value: str) -> str:
    if not _SOURCE_RE.match(value):
        raise ValueError("must be a key source reference: " + ", ".join(f"{s}:..." for s in ALL_SCHEMES))
    scheme, _, target = value.partition(":")
    if scheme != "stdin" and not target:
        raise ValueError(f"'{scheme}:' names nothing after the colon")
    return value


SourceRef = Annotated[str, Field(description="env:VAR | file:PATH | stdin: | vault:MOUNT/PATH#FIELD | aws-sm:ID[#FIELD] | prefect-secret:BLOCK")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeySpec(Strict):
    provider: Literal["openai", "anthropic", "google", "azure-openai", "cohere"]
    source: SourceRef

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        return _check_source(value)


class Policy(Strict):
    order: Literal["revoke-first", "rotate-first"] = "revoke-first"
    purge: Literal["dry-run", "push", "ask"] = "dry-run"  # ask: a person approves the push (Prefect pause form)


class ProviderConfig(Strict):
    """How to reach a provider's admin API. Unset fields fall back to the provider's documented
    environment variables (``OPENAI_ADMIN_KEY``, ``OPENAI_BASE_URL``, ...)."""

    admin_key: SourceRef | None = None  # admin key, or the admin credential (token, credentials JSON)
    base_url: str | None = None  # the admin / management API
    data_url: str | None = None  # the data plane, where liveness is checked (Azure endpoint, token URL...)
    project: str | None = None  # OpenAI project hint; Google project id
    subscription: str | None = None  # Azure
    resource_group: str | None = None  # Azure
    account: str | None = None  # Azure OpenAI resource name
    mint: Literal["service-account", "api", "manual"] = "service-account"
    revoke: Literal["default", "disable", "delete", "inactive", "archived", "key", "service-account"] = "default"
    service_account: str | None = None  # OpenAI: where a user key's replacement is minted (svc_acct_...)
    #: how long a revocation may take to propagate (90s, 5m...); default: the provider's (providers/base.py)
    confirm_timeout: str | float | None = None

    @field_validator("confirm_timeout")
    @classmethod
    def _duration(cls, value: str | float | None) -> str | float | None:
        from cauterize.errors import InputError
        from cauterize.when import parse_duration

        if value is None:
            return None
        try:
            seconds = parse_duration(value, "confirm_timeout")
        except InputError as exc:
            raise ValueError(exc.message.removeprefix("confirm_timeout: ")) from None
        if seconds > 3600:
            raise ValueError("must be at most 1h: a containment that waits longer needs a person")
        return value

    @field_validator("admin_key")
    @classmethod
    def _admin(cls, value: str | None) -> str | None:
        return value if value is None else _check_source(value)

    @field_validator("base_url", "data_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s):// URL")
        return value


class AwsSecretsManagerStore(Strict):
    type: Literal["aws-secrets-manager"]
    secret_id: str
    field: str | None = None
    region: str | None = None


class VaultKv2Store(Strict):
    type: Literal["vault-kv2"]
    mount: str = "secret"
    path: str
    field: str
    destroy_old_versions: bool = False


class DotenvStore(Strict):
    type: Literal["dotenv"]
    path: str
    variable: str

    @field_validator("variable")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", value):
            raise ValueError("must be a variable name (letters, digits, underscores)")
        return value


class SopsStore(Strict):
    type: Literal["sops"]
    path: str
    key_path: str


class GithubActionsStore(Strict):
    type: Literal["github-actions"]
    repo: str
    name: str
    environment: str | None = None


class KubernetesStore(Strict):
    type: Literal["kubernetes"]
    namespace: str = "default"
    secret: str
    key: str
    restart: str | None = None


class PrefectSecretStore(Strict):
    type: Literal["prefect-secret"]
    block: str


class GcpSecretManagerStore(Strict):
    type: Literal["gcp-secret-manager"]
    project: str
    secret: str
    destroy_old_versions: bool = False
    endpoint: str | None = None


class AzureKeyVaultStore(Strict):
    type: Literal["azure-key-vault"]
    vault_url: str = Field(pattern=r"^https://")
    name: str = Field(pattern=r"^[0-9a-zA-Z-]{1,127}$")


STORE_MODELS = (
    AwsSecretsManagerStore,
    VaultKv2Store,
    DotenvStore,
    SopsStore,
    GithubActionsStore,
    KubernetesStore,
    PrefectSecretStore,
    GcpSecretManagerStore,
    AzureKeyVaultStore,
)
STORE_TYPES = tuple(model.model_fields["type"].annotation.__args__[0] for model in STORE_MODELS)
Store = Annotated[Union[STORE_MODELS], Field(discriminator="type")]  # noqa: UP007  (a tuple of models)


class DrillConfig(Strict):
    """A rotation drill (``cauterize drill RUNBOOK``, and ``cauterize serve --runbook-dir`` on
    ``schedule``): the rotate-first path on a key that exists for drills. Production stores are
    touched only with ``stores: production``. Point ``key`` at the drill's primary store (the
    first of ``stores``): it then holds the key the last drill minted."""

    key: SourceRef
    stores: Literal["production"] | list[Store]
    schedule: str = "0 3 * * 1"  # cron, UTC: Mondays 03:00

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return _check_source(value)

    @field_validator("stores")
    @classmethod
    def _stores(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("name at least one store (the first is the drill's primary store), or 'production'")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError("must be a cron expression of five fields, e.g. '0 3 * * 1'")
        return value


class NotifyConfig(Strict):
    """A Slack-compatible incoming webhook told at start, at each manual step and at the end
    (fingerprints only). The URL is a credential: a source reference, never a literal."""

    url: SourceRef

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_source(value)


class TriggersConfig(Strict):
    """Which GitHub secret-scanning alerts start this runbook (``cauterize webhook``). A runbook
    without ``triggers`` is never started by an alert."""

    github_secret_types: list[str] = []  # empty: the provider's documented types (openai_api_key, ...)
    repositories: list[str] = []  # OWNER/NAME or patterns (org/*); empty: any repository

    @field_validator("github_secret_types")
    @classmethod
    def _types(cls, values: list[str]) -> list[str]:
        for value in values:
            if not re.fullmatch(r"[a-z0-9_]+", value):
                raise ValueError(f"'{value}' is not a GitHub secret type (e.g. openai_api_key)")
        return values

    @field_validator("repositories")
    @classmethod
    def _repos(cls, values: list[str]) -> list[str]:
        for value in values:
            if not re.fullmatch(r"[\w.*?\[\]-]+/[\w.*?\[\]-]+", value):
                raise ValueError(f"'{value}' must be OWNER/NAME (wildcards allowed: org/*)")
        return values


class LocateConfig(Strict):
    git: list[str] = []
    paths: list[str] = []
    s3: list[str] = []
    github_actions: list[str] = []  # repositories (org/app) whose Actions run logs are searched
    concurrency: int = Field(4, ge=1, le=64)  # sources scanned at once by the flow

    @field_validator("github_actions")
    @classmethod
    def _repos(cls, values: list[str]) -> list[str]:
        for value in values:
            if not re.fullmatch(r"[\w.-]+/[\w.-]+", value):
                raise ValueError(f"'{value}' must be a GitHub repository as OWNER/NAME")
        return values

    @field_validator("s3")
    @classmethod
    def _s3(cls, values: list[str]) -> list[str]:
        for value in values:
            if not value.startswith("s3://") or len(value) <= 5:
                raise ValueError(f"'{value}' must be an s3://BUCKET[/PREFIX] URL")
        return values


class EvidenceConfig(Strict):
    baseline_days: int = Field(14, ge=0, le=90)
    bucket: Literal["1m", "1h", "1d"] = "1h"


class WatchConfig(Strict):
    auto_respond: bool = False  # start key-compromised on an alert; by default a person decides
    budget_usd_monthly: float | None = Field(None, gt=0)  # alert at 80% of it
    notify: SourceRef | None = None  # a Slack-compatible webhook URL, read from a source reference

    @field_validator("notify")
    @classmethod
    def _notify(cls, value: str | None) -> str | None:
        return value if value is None else _check_source(value)


class ReportConfig(Strict):
    dir: str = "incidents"


class Runbook(Strict):
    version: Literal[1]
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    key: KeySpec
    policy: Policy = Policy()
    providers: dict[str, ProviderConfig] = {}
    stores: list[Store] = []
    locate: LocateConfig = LocateConfig()
    evidence: EvidenceConfig = EvidenceConfig()
    watch: WatchConfig = WatchConfig()
    report: ReportConfig = ReportConfig()
    drill: DrillConfig | None = None
    notify: NotifyConfig | None = None
    triggers: TriggersConfig | None = None

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, value: dict[str, ProviderConfig]) -> dict[str, ProviderConfig]:
        for name in value:
            if name not in PROVIDERS:
                raise ValueError(f"unknown provider '{name}' (expected one of {', '.join(PROVIDERS)})")
        return value

    def provider_config(self) -> ProviderConfig:
        return self.providers.get(self.key.provider, ProviderConfig())


class LoadedRunbook(BaseModel):
    """A validated runbook and where it came from (relative paths resolve against ``base_dir``)."""

    model_config = ConfigDict(frozen=True)

    runbook: Runbook
    path: Path

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    def resolve_repo(self, value: str) -> str:
        """A git location: URLs stay as they are, paths resolve against the runbook."""
        if re.match(r"^[a-z][a-z0-9+.-]*://", value) or re.match(r"^[\w.-]+@[\w.-]+:", value):
            return value
        return str(self.resolve(value))


_FILE_FIX = ("Point at a runbook file: YAML with version: 1, name, key (runbooks/ has examples; "
             "`cauterize runbook schema` prints every field).")


def load_runbook(path: str | Path) -> LoadedRunbook:
    """Read and validate a runbook file; every failure is one ``RunbookError`` line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RunbookError(f"runbook {path}: no such file", remediation=_FILE_FIX) from None
    except IsADirectoryError:
        raise RunbookError(f"runbook {path}: is a directory, not a runbook file", remediation=_FILE_FIX) from None
    except OSError as exc:
        raise RunbookError(f"runbook {path}: cannot be read ({exc.strerror})", remediation=_FILE_FIX) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RunbookError(f"runbook {path}: is not UTF-8 text", remediation=_FILE_FIX) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        if isinstance(exc, yaml.reader.ReaderError):  # a control character such as NUL: no problem_mark
            where, problem = f" at byte {exc.position}", f"control character {exc.character!r} is not allowed"
        else:
            problem = getattr(exc, "problem", None) or "invalid YAML"
        raise RunbookError(f"runbook {path}: YAML syntax error{where}: {problem}",
                           remediation="Fix the YAML at that position (a linter such as yamllint shows it).") from None
    if data is None:
        raise RunbookError(f"runbook {path}: the file is empty", remediation=_FILE_FIX)
    if not isinstance(data, dict):
        raise RunbookError(f"runbook {path}: must be a YAML mapping with version, name, key, ...")
    try:
        runbook = Runbook.model_validate(data)
    except ValidationError as exc:
        raise RunbookError(f"runbook {path}: {describe_validation_error(exc)}") from None
    return LoadedRunbook(runbook=runbook, path=path.resolve())


def describe_validation_error(exc: ValidationError) -> str:
    """The first error as ``field.path: what is wrong`` (+ how many more), on one line."""
    errors = exc.errors(include_url=False, include_input=False)
    # A typo shows as an unknown field plus a missing one: name the typo first.
    errors.sort(key=lambda error: error["type"] != "extra_forbidden")
    first = errors[0]
    loc = ".".join(str(part) for part in first["loc"] if not _is_union_tag(part))
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown field (not allowed here)"
    elif first["type"] == "missing":
        message = "required field is missing"
    elif first["type"] == "union_tag_invalid":
        message = "unknown store type; expected one of " + ", ".join(STORE_TYPES)
    elif first["type"] == "literal_error":
        message = message.replace("Input should be", "must be")
    message = message.removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc or '(top level)'}: {message}{more}"


def _is_union_tag(part: object) -> bool:
    return isinstance(part, str) and part in STORE_TYPES


def runbook_schema() -> str:
    """The JSON Schema of a runbook, for editors and CI linting."""
    schema = Runbook.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "cauterize runbook"
    return json.dumps(schema, indent=2, sort_keys=True)
