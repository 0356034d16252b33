"""The smallest permissions cauterize needs for one runbook, in each platform's own policy format.

``derive(loaded)`` returns one ``Section`` per platform the runbook touches; ``render(sections, fmt)``
prints one (or ``all``). Each grants what the modules call, on the runbook's resources only:

* ``aws-iam``: ``SECRETS_MANAGER_ROTATE`` on the runbook's secrets (``arn:aws:secretsmanager:REGION:
  ACCOUNT:secret:ID-??????``: AWS appends six random characters), ``GetSecretValue`` on ``aws-sm:`` key
  sources, the S3 reads of ``locate.s3``, ``kms:Decrypt`` on the KMS keys of sops files.
* ``vault`` (HCL): per vault-kv2 store ``MOUNT/data/PATH`` read/create/update, ``MOUNT/metadata/PATH``
  read, ``MOUNT/destroy/PATH`` update with ``destroy_old_versions``; read on ``vault:`` key sources;
  update on the transit key of a sops file.
* ``gcp-iam``: a custom role (``gcloud iam roles create --file``); ``azure``: a custom role definition.
* ``github``: a fine-grained token's permissions per repository, and the classic scopes that would do.
* ``kubernetes``: a Role per namespace; ``providers``: each admin credential and the endpoints it calls.

``discovery=True`` adds the locate step's sweep for other copies of the key (every secret of the AWS
region, every path of the Vault mount): broad, so it is opt-in. Nothing here reads a key: sops files
are read for their public ``sops`` metadata only, never decrypted.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import yaml

from cauterize.errors import InputError

FORMATS = ("aws-iam", "vault", "gcp-iam", "azure", "github", "kubernetes", "providers", "all")

#: The Secrets Manager operations ``cauterize.stores.aws_secrets_manager`` makes to read, write and
#: undo (IAM action ``secretsmanager:<Operation>``); tests/stores/test_permissions_aws.py observes them.
SECRETS_MANAGER_ROTATE = ("CreateSecret", "DeleteSecret", "DescribeSecret", "GetSecretValue", "PutSecretValue",
                          "UpdateSecretVersionStage")  # Create: a secret not there yet; Delete: undo of that
#: ... and in ``scan``, the locate step's sweep for other secrets holding the key.
SECRETS_MANAGER_DISCOVER = ("GetSecretValue", "ListSecrets")
#: The S3 operations of ``cauterize.locate.s3`` -> the IAM actions they need.
S3_LOCATE = {
    "ListObjectVersions": ("s3:ListBucketVersions",),
    "GetPublicAccessBlock": ("s3:GetBucketPublicAccessBlock",),
    "GetBucketAcl": ("s3:GetBucketAcl",),
    "GetBucketPolicyStatus": ("s3:GetBucketPolicyStatus",),
    "GetObject": ("s3:GetObject", "s3:GetObjectVersion"),  # every version is read by its VersionId
}
#: Per response step, the IAM permissions the google provider uses: a service-account key file (IAM
#: keys), a Google API key (API Keys v2), the org-policy preflight of a mint, and Monitoring.
GOOGLE_STEPS: dict[str, tuple[str, ...]] = {
    "intake": ("iam.serviceAccountKeys.get", "apikeys.keys.lookup", "apikeys.keys.get",
               # the mint preflight (rotate-first, dry run): the org policy and the account's key count
               "orgpolicy.policy.get", "iam.serviceAccountKeys.list"),
    "revoke": ("iam.serviceAccountKeys.disable", "iam.serviceAccountKeys.delete", "apikeys.keys.get",
               "apikeys.keys.delete", "serviceusage.operations.get"),
    "rotate": ("iam.serviceAccountKeys.create", "iam.serviceAccountKeys.list", "iam.serviceAccountKeys.delete",
               "apikeys.keys.get", "apikeys.keys.create", "apikeys.keys.getKeyString", "apikeys.keys.delete",
               "serviceusage.operations.get"),
    "evidence": ("monitoring.timeSeries.list",),
}
GCP_GOOGLE_PROVIDER = tuple(sorted({p for permissions in GOOGLE_STEPS.values() for p in permissions}))
AZURE_OPENAI_PROVIDER = (
    "Microsoft.CognitiveServices/accounts/read",  # identify: the accounts in scope
    "Microsoft.CognitiveServices/accounts/listKeys/action",  # identify, mint
    "Microsoft.CognitiveServices/accounts/regenerateKey/action",  # revoke
    "Microsoft.Insights/metrics/read",  # evidence
)
_VAULT_CAPS = ("create", "read", "update", "patch", "delete", "list")


@dataclass
class Section:
    name: str
    document: Any  # a JSON-able dict, or text (HCL, YAML)
    notes: list[str] = field(default_factory=list)


def derive(loaded: Any, *, aws_account: str | None = None, discovery: bool = False) -> dict[str, Section]:
    """Every section the runbook of ``loaded`` (a ``LoadedRunbook``) needs, keyed by format name."""
    rb, sops = loaded.runbook, _sops_metadata(loaded)
    built = [_aws(rb, sops, aws_account, discovery), _vault(rb, sops, discovery), _gcp(rb, sops), _azure(rb, sops),
             _github(rb), _kubernetes(rb), _providers(rb)]
    sections = {section.name: section for section in built if section is not None}
    for name in ("aws-iam", "vault", "gcp-iam", "azure", "providers"):
        if name in sections:
            sections[name].notes += sops["notes"]
    return sections


def render(sections: dict[str, Section], fmt: str) -> str:
    """One section as its platform reads it; ``all``: every section under a ``#`` header, with its notes."""
    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    if fmt != "all":
        return _text(sections[fmt]) if fmt in sections else ""
    parts, seen = [], set()
    for name in FORMATS[:-1]:
        if name in sections:
            notes = [n for n in sections[name].notes if n not in seen]
            seen.update(notes)
            parts.append(f"# ---- {name} ----\n" + "".join(f"# note: {n}\n" for n in notes) + _text(sections[name]))
    return "\n".join(parts)


def _text(section: Section) -> str:
    return section.document if isinstance(section.document, str) else json.dumps(section.document, indent=2) + "\n"


# ---- AWS ------------------------------------------------------------------------------------


def secret_arns(secret_id: str, region: str | None, account: str | None) -> list[str]:
    """The ARN pattern of a Secrets Manager secret named (or given as an ARN) in a runbook."""
    if secret_id.startswith("arn:"):
        return [secret_id if re.search(r":secret:.+-[A-Za-z0-9]{6}$", secret_id) else secret_id + "-??????"]
    return [f"arn:aws:secretsmanager:{region or '*'}:{account or '*'}:secret:{secret_id}-??????"]


def _aws(rb: Any, sops: dict[str, Any], account: str | None, discovery: bool) -> Section | None:
    statements: list[dict[str, Any]] = []
    notes: list[str] = []
    stores = [s for s in rb.stores if s.type == "aws-secrets-manager"]
    if stores:
        arns = sorted({arn for s in stores for arn in secret_arns(s.secret_id, s.region, account)})
        statements.append(_allow("RotateRunbookSecrets", [f"secretsmanager:{a}" for a in SECRETS_MANAGER_ROTATE], arns))
        notes.append("a secret encrypted with a customer-managed KMS key also needs kms:Decrypt and "
                     "kms:GenerateDataKey on that key")
    sources = [target.partition("#")[0] for scheme, target in _sources(rb) if scheme == "aws-sm"]
    if sources:
        arns = sorted({arn for secret_id in sources for arn in secret_arns(secret_id, None, account)})
        statements.append(_allow("ReadKeySources", ["secretsmanager:GetSecretValue"], arns))
    if stores and discovery:
        statements.append(_allow("DiscoverListSecrets", ["secretsmanager:ListSecrets"], ["*"]))
        every = sorted({f"arn:aws:secretsmanager:{s.region or '*'}:{account or '*'}:secret:*" for s in stores})
        statements.append(_allow("DiscoverReadSecrets", ["secretsmanager:GetSecretValue"], every))
    elif stores:
        notes.append("without --discovery the locate step cannot sweep the region for other secrets holding the "
                     "key (ListSecrets, GetSecretValue on every secret): it records that sweep as failed")
    statements += _s3_statements(rb.locate.s3)
    if sops["kms"]:
        statements.append(_allow("SopsKmsDecrypt", ["kms:Decrypt"], sorted(sops["kms"])))
    if sops["roles"]:
        statements.append(_allow("SopsKmsRoles", ["sts:AssumeRole"], sorted(sops["roles"])))
    if not statements:
        return None
    return Section("aws-iam", {"Version": "2012-10-17", "Statement": statements}, notes)


def _allow(sid: str, actions: list[str], resources: list[str], **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(set(actions)), "Resource": resources, **extra}


def _s3_statements(urls: list[str]) -> list[dict[str, Any]]:
    prefixes: dict[str, set[str]] = defaultdict(set)
    for url in urls:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        prefixes[bucket].add(prefix)
    statements = []
    exposure = sorted(a for op, actions in S3_LOCATE.items() if op not in ("GetObject", "ListObjectVersions")
                      for a in actions)
    for bucket, wanted in sorted(prefixes.items()):
        sid, arn = "LocateS3" + re.sub(r"[^A-Za-z0-9]", "", bucket.title()), f"arn:aws:s3:::{bucket}"
        wanted = {""} if "" in wanted else wanted
        listed = {} if wanted == {""} else {"Condition": {"StringLike": {"s3:prefix": [p + "*" for p in sorted(wanted)]}}}
        statements.append(_allow(sid + "List", list(S3_LOCATE["ListObjectVersions"]), [arn], **listed))
        statements.append(_allow(sid + "Exposure", exposure, [arn]))
        statements.append(_allow(sid + "Objects", list(S3_LOCATE["GetObject"]), [f"{arn}/{p}*" for p in sorted(wanted)]))
    return statements


# ---- Vault ----------------------------------------------------------------------------------


def _vault(rb: Any, sops: dict[str, Any], discovery: bool) -> Section | None:
    rules: dict[str, set[str]] = defaultdict(set)
    why: dict[str, str] = {}

    def grant(path: str, caps: list[str], reason: str) -> None:
        rules[path].update(caps)
        why.setdefault(path, reason)

    stores = [s for s in rb.stores if s.type == "vault-kv2"]
    for s in stores:
        mount, path = s.mount.strip("/"), s.path.strip("/")
        where = f"store vault-kv2 {mount}/{path}"
        grant(f"{mount}/data/{path}", ["read", "create", "update"], f"{where}: read, write with check-and-set, read back")
        grant(f"{mount}/metadata/{path}", ["read"], f"{where}: the current version and the older ones")
        if s.destroy_old_versions:
            grant(f"{mount}/destroy/{path}", ["update"], f"{where}: destroy the versions holding the old key")
    for scheme, target in _sources(rb):
        if scheme == "vault":
            mount, _, path = target.partition("#")[0].strip("/").partition("/")
            grant(f"{mount}/data/{path}", ["read"], f"key source vault:{mount}/{path}")
    for engine, key in sorted(sops["transit"]):
        grant(f"{engine.strip('/')}/decrypt/{key}", ["update"], f"sops file: transit key {key}")
    for mount in sorted({s.mount.strip("/") for s in stores}) if discovery else []:
        grant(f"{mount}/metadata/*", ["list"], f"locate: sweep every secret of the mount {mount}")
        grant(f"{mount}/data/*", ["read"], f"locate: sweep every secret of the mount {mount}")
    if not rules:
        return None
    text = "\n".join(
        f'# {why[path]}\npath "{path}" {{\n  capabilities = {json.dumps([c for c in _VAULT_CAPS if c in caps])}\n}}\n'
        for path, caps in sorted(rules.items())
    )
    load = f"load it with `bao policy write cauterize-{rb.name} FILE` (or `vault policy write`)"
    notes = [load + ", in the namespace of VAULT_NAMESPACE if one is set"]
    if any(not s.destroy_old_versions for s in stores):
        notes.append("undoing a write to a path that held no secret before destroys the version written, which "
                     "needs update on MOUNT/destroy/PATH: granted only with destroy_old_versions")
    if stores and not discovery:
        notes.append("without --discovery the locate step cannot sweep the mount for other copies of the key")
    return Section("vault", text, notes)


# ---- GCP and Azure --------------------------------------------------------------------------


def _gcp(rb: Any, sops: dict[str, Any]) -> Section | None:
    permissions: set[str] = set()
    notes: list[str] = []
    if "google" in _providers_used(rb):
        permissions.update(GCP_GOOGLE_PROVIDER)
        notes.append("bind the role on the leaked key's service account (iam.serviceAccountKeys.*) and on the "
                     "project (monitoring.timeSeries.list)")
    if sops["gcp_kms"]:
        permissions.add("cloudkms.cryptoKeyVersions.useToDecrypt")
        notes.append("bind it on the sops Cloud KMS key(s) only: " + ", ".join(sorted(sops["gcp_kms"])))
    if not permissions:
        return None
    role = {"title": f"cauterize responder ({rb.name})", "description": f"Least privilege for runbook {rb.name}",
            "stage": "GA", "includedPermissions": sorted(permissions)}
    return Section("gcp-iam", yaml.safe_dump(role, sort_keys=False), notes)


def _azure(rb: Any, sops: dict[str, Any]) -> Section | None:
    actions: list[str] = []
    data_actions: list[str] = []
    assign: list[str] = []
    config = rb.providers.get("azure-openai")
    subscription = getattr(config, "subscription", None) or "SUBSCRIPTION_ID"
    scope = f"/subscriptions/{subscription}"
    if getattr(config, "resource_group", None):
        scope += f"/resourceGroups/{config.resource_group}"
    if "azure-openai" in _providers_used(rb):
        actions += AZURE_OPENAI_PROVIDER
        account = getattr(config, "account", None)
        assign.append(f"{scope}/providers/Microsoft.CognitiveServices/accounts/{account}" if account and
                      "/resourceGroups/" in scope else scope)
    if sops["azure_kv"]:
        data_actions.append("Microsoft.KeyVault/vaults/keys/decrypt/action")
        assign += [f"the Key Vault key {key} (sops)" for key in sorted(sops["azure_kv"])]
    if not assign:
        return None
    role = {"Name": f"cauterize responder ({rb.name})", "IsCustom": True,
            "Description": f"Least privilege for runbook {rb.name}", "Actions": actions, "NotActions": [],
            "DataActions": data_actions, "NotDataActions": [], "AssignableScopes": [scope]}
    notes = ["assign it at the narrowest scope: " + "; ".join(assign)]
    if "SUBSCRIPTION_ID" in scope:
        notes.append("replace SUBSCRIPTION_ID, or set the runbook's providers.azure-openai.subscription")
    return Section("azure", role, notes)


# ---- GitHub and Kubernetes ------------------------------------------------------------------


def github_repo(location: str) -> str | None:
    """``OWNER/NAME`` of a github.com remote URL, else None."""
    match = re.match(r"^(?:https://(?:[^@/]+@)?github\.com/|git@github\.com:|ssh://git@github\.com/)"
                     r"([\w.-]+/[\w.-]+?)(?:\.git)?/?$", location)
    return match.group(1) if match else None


def _github(rb: Any) -> Section | None:
    repos: dict[str, dict[str, str]] = defaultdict(dict)
    for s in rb.stores:
        if s.type == "github-actions":
            repos[s.repo]["secrets"] = "write"  # public key and metadata (read), the secret (write)
            if s.environment:
                repos[s.repo]["environments"] = "write"
    for repo in rb.locate.github_actions:
        repos[repo]["actions"] = "read"  # run lists and logs
    push = rb.policy.purge == "push"
    for repo in filter(None, map(github_repo, rb.locate.git)):
        repos[repo]["contents"] = "write" if push else repos[repo].get("contents", "read")
    if not repos:
        return None
    union = {"metadata": "read"}
    for granted in repos.values():
        for name, level in granted.items():
            union[name] = "write" if "write" in (level, union.get(name)) else "read"
    document = {"fine_grained_token": {"repositories": sorted(repos), "permissions": dict(sorted(union.items()))},
                "per_repository": {repo: dict(sorted(p.items())) for repo, p in sorted(repos.items())},
                "classic_token_scopes": ["repo", "workflow"] if push else ["repo"]}
    notes = ["GITHUB_TOKEN: a fine-grained token limited to these repositories is the least privilege"]
    if push:
        notes.append("a force-push rewriting files under .github/workflows also needs Workflows: write")
    return Section("github", document, notes)


def _kubernetes(rb: Any) -> Section | None:
    namespaces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    kinds = {"deployment": "deployments", "statefulset": "statefulsets", "daemonset": "daemonsets"}
    for s in rb.stores:
        if s.type == "kubernetes":
            rules = namespaces[s.namespace]
            rules.append({"apiGroups": [""], "resources": ["secrets"], "resourceNames": [s.secret],
                          "verbs": ["get", "patch"]})
            if s.restart:
                kind, _, name = s.restart.partition("/")
                rules.append({"apiGroups": ["apps"], "resources": [kinds.get(kind, kind)], "resourceNames": [name],
                              "verbs": ["patch"]})
    if not namespaces:
        return None
    roles = [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
              "metadata": {"name": f"cauterize-{rb.name}", "namespace": ns}, "rules": rules}
             for ns, rules in sorted(namespaces.items())]
    notes = ["bind each Role to the identity of KUBECONFIG's context with a RoleBinding"]
    return Section("kubernetes", yaml.safe_dump_all(roles, sort_keys=False), notes)


# ---- provider admin credentials -------------------------------------------------------------
#
# Per provider: the admin credential, and per response step the calls it makes and the exact
# scope / permission / action each needs. A restricted credential without one of them limits that
# step (MissingPermission): containment (intake, revoke) fails, the other steps record the limitation.

_OPENAI_CALLS = {
    "intake": ["GET /organization/projects", "GET /organization/projects/{p}/api_keys[/{id}]",
               "GET /organization/admin_api_keys (a leaked admin key)"],
    "revoke": ["DELETE /organization/projects/{p}/api_keys/{id}",
               "DELETE /organization/projects/{p}/service_accounts/{id} (revoke: service-account, or an older API)",
               "DELETE /organization/admin_api_keys/{id} (a leaked admin key)"],
    "rotate": ["POST /organization/projects/{p}/service_accounts/{id}/api_keys (same service account)",
               "POST /organization/projects/{p}/service_accounts[/{id}] (a new account and its role)",
               "GET /organization/audit_logs (the leaked key's scopes and role)"],
    "evidence": ["GET /organization/usage/completions", "GET /organization/costs"],
}


def _openai_steps(config: Any) -> dict[str, dict[str, list[str]]]:
    from cauterize.providers.openai import ADMIN_SCOPES

    scopes = {**ADMIN_SCOPES, "intake": ADMIN_SCOPES["identify"],
              "rotate": ADMIN_SCOPES["rotate"] + ADMIN_SCOPES.get("audit", [])}
    steps = {step: {"calls": calls, "scopes": scopes[step]} for step, calls in _OPENAI_CALLS.items()}
    if getattr(config, "mint", None) == "manual":
        steps["rotate"] = {"calls": ["GET /organization/audit_logs (the leaked key's scopes and role)"],
                           "scopes": ADMIN_SCOPES.get("audit", [])}
    return steps


_ANTHROPIC_STEPS = {
    "intake": {"calls": ["GET /v1/organizations/api_keys (every page and status)"]},
    "revoke": {"calls": ["POST /v1/organizations/api_keys/{id} {status: inactive|archived}"]},
    "rotate": {"calls": ["GET /v1/organizations/api_keys/{id} (the workspace the replacement must join)"]},
    "evidence": {"calls": ["GET /v1/organizations/usage_report/messages (group_by api_key_id)"]},
}
_AZURE_STEPS = {
    "intake": {"calls": ["GET .../providers/Microsoft.CognitiveServices/accounts", "POST .../accounts/{a}/listKeys"],
               "actions": ["Microsoft.CognitiveServices/accounts/read",
                           "Microsoft.CognitiveServices/accounts/listKeys/action"]},
    "revoke": {"calls": ["POST .../accounts/{a}/regenerateKey {keyName}"],
               "actions": ["Microsoft.CognitiveServices/accounts/regenerateKey/action"]},
    "rotate": {"calls": ["POST .../accounts/{a}/listKeys (the regenerated slot is the replacement)"],
               "actions": ["Microsoft.CognitiveServices/accounts/listKeys/action"]},
    "evidence": {"calls": ["GET {account}/providers/Microsoft.Insights/metrics"],
                 "actions": ["Microsoft.Insights/metrics/read"]},
}


def _google_steps() -> dict[str, dict[str, list[str]]]:
    return {step: {"calls": [f"permission {p}" for p in permissions], "permissions": list(permissions)}
            for step, permissions in GOOGLE_STEPS.items()}


_ADMIN: dict[str, tuple[str, Any]] = {
    "openai": ("an OpenAI Admin API key (sk-admin-...) of the organization; a restricted one needs the scopes below "
               "(give it an expiry and keep it in a secret store)", _openai_steps),
    "anthropic": ("an Anthropic Admin API key (sk-ant-admin01-...) made by an organization admin; Admin keys have no "
                  "narrower scopes", lambda config: _ANTHROPIC_STEPS),
    "google": ("an OAuth access token, or a service-account key, holding the gcp-iam custom role (the permissions "
               "below)", lambda config: _google_steps()),
    "azure-openai": ("an Entra ID access token for https://management.azure.com holding the azure custom role "
                     "(the actions below)", lambda config: _AZURE_STEPS),
    "cohere": ("none: Cohere has no admin API; a person revokes and creates keys at dashboard.cohere.com",
               lambda config: {}),
}


def _providers(rb: Any) -> Section:
    document = {}
    for name in sorted(_providers_used(rb)):
        credential, steps = _ADMIN[name]
        per_step = steps(rb.providers.get(name))
        calls = list(dict.fromkeys(call for step in per_step.values() for call in step["calls"]))
        document[name] = {"credential": credential, "steps": per_step, "calls": calls}
    return Section("providers", document)


def _providers_used(rb: Any) -> set[str]:
    return {rb.key.provider, *rb.providers}


def _sources(rb: Any) -> list[tuple[str, str]]:
    """``(scheme, target)`` of every key source reference in the runbook (key, admin keys, watch.notify)."""
    refs = [rb.key.source, *(getattr(c, "admin_key", None) for c in rb.providers.values())]
    refs.append(getattr(getattr(rb, "watch", None), "notify", None))
    return [(ref.partition(":")[0], ref.partition(":")[2]) for ref in refs if ref]


def _sops_metadata(loaded: Any) -> dict[str, Any]:
    """The KMS keys named in each sops file's public ``sops`` section (the file is not decrypted)."""
    found: dict[str, Any] = {name: set() for name in ("kms", "roles", "gcp_kms", "azure_kv", "transit")}
    found["notes"] = []
    for store in (s for s in loaded.runbook.stores if s.type == "sops"):
        try:
            meta = (yaml.safe_load(loaded.resolve(store.path).read_text(encoding="utf-8")) or {}).get("sops") or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
            meta = {}
        for entry in meta.get("kms") or []:
            found["kms"].add(entry.get("arn"))
            found["roles"].add(entry.get("role"))
        found["gcp_kms"].update(entry.get("resource_id") for entry in meta.get("gcp_kms") or [])
        found["azure_kv"].update(f"{e.get('vault_url', '').rstrip('/')}/keys/{e.get('name')}"
                                 for e in meta.get("azure_kv") or [])
        found["transit"].update((e.get("engine_path") or "transit", e.get("key_name")) for e in meta.get("hc_vault") or [])
        if not meta:
            found["notes"].append(f"sops file {store.path}: no readable sops metadata: grant decrypt on its keys by hand")
    for name in ("kms", "roles", "gcp_kms"):
        found[name].discard(None)
    found["transit"] = {pair for pair in found["transit"] if pair[1]}
    return found
