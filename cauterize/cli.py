"""The ``cauterize`` command line (DESIGN.md section 4).

One ``main()`` maps errors to exit codes: 0 done, 1 internal error, 2 invalid input, 3 incomplete,
4 the old key still live, 130 interrupted (SIGINT/SIGTERM: ``interrupts``). Errors print one line
with the remediation hint and no traceback (``CAUTERIZE_DEBUG=1`` shows it). ``--json`` prints one
document on stdout; progress goes to stderr. Heavy imports (Prefect above all) happen inside the
commands that need them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import typer

from cauterize.errors import CauterizeError, InputError, KeySourceError

_STARTED = time.monotonic()

app = typer.Typer(
    name="cauterize",
    help="Incident response for leaked LLM API keys: revoke, rotate, redeploy, locate, purge, evidence, post-mortem.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
)
runbook_app = typer.Typer(help="Validate runbooks and print their schema.", no_args_is_help=True)
app.add_typer(runbook_app, name="runbook")
stores_app = typer.Typer(help="Secret stores: where does the leaked key live?", no_args_is_help=True)
app.add_typer(stores_app, name="stores")


def _register_commands() -> None:
    """Commands that live in their own modules (each imports its heavy parts lazily)."""
    from cauterize import cli_ops
    from cauterize.cli_evidence import evidence
    from cauterize.cli_guard import guard_app
    from cauterize.cli_permissions import permissions
    from cauterize.cli_purge import purge
    from cauterize.cli_watch import watch

    app.add_typer(guard_app, name="guard")
    app.command("purge")(purge)
    app.command("evidence")(evidence)
    cli_ops.register(app)
    app.command("watch")(watch)
    app.command("permissions")(permissions)


_register_commands()


def _emit_json(document: object) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


def key_source(key_env: str | None, key_file: Path | None, key_stdin: bool) -> str:
    """The one KEYSRC option given, as a source reference. A key given where the variable's NAME or
    the file's PATH belongs is refused without echoing it."""
    from cauterize.providers.formats import fits
    from cauterize.secret import looks_like_a_value

    given = [ref for ref in (
        f"env:{key_env}" if key_env else None,
        f"file:{key_file}" if key_file else None,
        "stdin:" if key_stdin else None,
    ) if ref]
    if len(given) != 1:
        raise KeySourceError("give exactly one of --key-env VAR, --key-file PATH, --key-stdin")
    if key_env and (looks_like_a_value(key_env) or fits(key_env)):
        raise KeySourceError("--key-env takes the NAME of the variable that holds the key, not the key itself")
    if key_file and not key_file.exists() and (looks_like_a_value(str(key_file)) or fits(str(key_file))):
        raise KeySourceError("--key-file takes the PATH of a file that holds the key, not the key itself")
    return given[0]


# -- runbook ----------------------------------------------------------------------------------


@runbook_app.command("validate")
def runbook_validate(file: Path = typer.Argument(..., help="The runbook YAML file.")) -> None:
    """Check a runbook; exit 2 with one line naming the field when it is invalid. The check is static
    (CI has no secrets): an env: or file: source that this environment cannot read is a note."""
    import os

    from cauterize.runbook import load_runbook

    loaded = load_runbook(file)
    rb = loaded.runbook
    typer.echo(f"{file}: valid runbook '{rb.name}' ({rb.key.provider}, {len(rb.stores)} store(s))", err=True)
    scheme, _, target = rb.key.source.partition(":")
    if scheme == "env" and not os.environ.get(target):
        typer.echo(f"note: key.source {rb.key.source} is not set here; `respond` refuses until it is", err=True)
    elif scheme == "file" and not loaded.resolve(target).is_file():
        typer.echo(f"note: key.source {rb.key.source} is not a file here; `respond` refuses until it is", err=True)


@runbook_app.command("schema")
def runbook_schema() -> None:
    """Print the JSON Schema of runbooks."""
    from cauterize.runbook import runbook_schema as schema

    typer.echo(schema())


# -- the flow ---------------------------------------------------------------------------------


@app.command()
def demo(
    workdir: Path | None = typer.Option(None, "--workdir", help="Where to build the sandbox world (default: a new temp dir)."),
    as_json: bool = typer.Option(False, "--json", help="Print the incident record on stdout."),
) -> None:
    """Run the whole key-compromised flow against the built-in sandbox."""
    from cauterize.logs import LOGGER, progress_to_stderr
    from cauterize.sandbox.world import build_world, prepare_root

    progress_to_stderr()
    root = prepare_root(workdir)
    LOGGER.info("building the sandbox world in %s", root)
    world = build_world(root)
    try:
        os.environ.update(world.env)
        from cauterize.flows.runner import run_flow

        incident, _ = run_flow(str(world.runbook), mode="demo", prefect_home=root / ".prefect")
        if incident.steps["purge"].status == "ok":
            for line in world.housekeeping():
                LOGGER.info("%s", line)
    finally:
        world.close()
        for name in world.env:
            os.environ.pop(name, None)
    if as_json:
        _emit_json(incident.model_dump(mode="json"))
    else:
        typer.echo(incident.report.get("md", ""))
    typer.echo(f"post-mortem: {incident.report.get('md', '(not rendered)')}", err=True)
    raise typer.Exit(incident.exit_code())


@app.command()
def respond(
    runbook: Path = typer.Argument(..., help="The runbook of the leaked key."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Identify and locate; revoke, mint, write and push nothing."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    new_incident: bool = typer.Option(False, "--new-incident",
                                      help="Respond again even though this key's incident is complete."),
    as_json: bool = typer.Option(False, "--json", help="Print the incident record on stdout."),
) -> None:
    """Run the key-compromised flow for a runbook. One key, one incident: an unfinished incident of the
    key is resumed; a complete one is verified and, if the world agrees, left alone (exit 0)."""
    from cauterize import incident as records
    from cauterize import response
    from cauterize.logs import progress_to_stderr
    from cauterize.runbook import load_runbook

    progress_to_stderr()
    loaded = load_runbook(runbook)
    response.Context.check_key_source(loaded)
    if not (yes or dry_run):
        if not sys.stdin.isatty():
            raise InputError("respond revokes and rewrites for real: pass --yes (or --dry-run) when not on a terminal")
        typer.confirm(f"Revoke and rotate the key of runbook '{loaded.runbook.name}' now?", abort=True, err=True)
    try:
        # the per-key lock, the preflight (exit 2 before any change) and the incident, found or made
        response.open_incident(loaded.path, dry_run=dry_run, new_incident=new_incident, when_contained="raise")
    except records.AlreadyContained as done:
        if as_json:
            _emit_json(records.load(done.incident_dir).model_dump(mode="json"))
        typer.echo(f"cauterize: {done.message}", err=True)
        raise typer.Exit(0) from None
    if sys.stdin.isatty():
        response.set_manual_input(lambda instructions: _ask_for_key(instructions, loaded.runbook.key.provider))
    if not dry_run and loaded.runbook.policy.order == "revoke-first":
        # Contain before Prefect starts (its start-up costs seconds): intake and revoke run here,
        # in process; the flow then resumes the same incident and finds both steps done.
        response.contain(loaded.path, started=_STARTED)
    from cauterize.flows.runner import run_flow

    incident, _ = run_flow(str(loaded.path), dry_run=dry_run, mode="respond")
    if as_json:
        _emit_json(incident.model_dump(mode="json"))
    typer.echo(f"post-mortem: {incident.report.get('md', '(not rendered)')}", err=True)
    raise typer.Exit(incident.exit_code())


def _ask_for_key(instructions: str, provider: str | None = None):
    """The hidden terminal prompt for a key a person created by hand (empty answer: later). The answer
    goes through the key-source parser and, with a provider, its key-format check; a bad paste is
    refused (without echoing it) and asked again."""
    from cauterize.providers.formats import check_key, expected, key_lines
    from cauterize.secret import parse_key_text

    typer.echo(instructions, err=True)
    for _ in range(3):
        value = typer.prompt("Paste the new key (input hidden; empty to stop here)", hide_input=True,
                             default="", show_default=False, err=True)
        if not value.strip():
            return None
        try:
            key = parse_key_text(value, "the pasted key", fits=key_lines(provider), expected=expected(provider))
            return check_key(key, provider, "the pasted key") if provider else key
        except KeySourceError as exc:
            typer.echo(f"cauterize: {exc.message}", err=True)
    return None


@app.command()
def report(
    incident_dir: Path = typer.Argument(..., help="The incident directory (holds incident.json)."),
    fmt: str = typer.Option("md", "--format", help="md or html."),
) -> None:
    """Render the post-mortem of an incident from its record."""
    from cauterize import incident as records
    from cauterize.report import render

    if fmt not in ("md", "html"):
        raise InputError(f"--format must be md or html, not '{fmt}'")
    typer.echo(render(records.load(incident_dir), fmt), nl=False)


@app.command()
def locate(
    key_env: str | None = typer.Option(None, "--key-env", help="Read the key from this environment variable."),
    key_file: Path | None = typer.Option(None, "--key-file", help="Read the key from this file."),
    key_stdin: bool = typer.Option(False, "--key-stdin", help="Read the key from standard input."),
    git: list[str] = typer.Option([], "--git", help="A repository path or URL (repeatable)."),
    path: list[Path] = typer.Option([], "--path", help="A directory tree or file (repeatable)."),
    s3: list[str] = typer.Option([], "--s3", help="s3://BUCKET[/PREFIX], every object version (repeatable)."),
    github_actions: list[str] = typer.Option([], "--github-actions", help="OWNER/NAME: its Actions run logs."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
) -> None:
    """Find every copy of the key (every encoding, inside archives and images) in git history, file
    trees, S3 and CI logs. Exit 3 if a source could not be searched."""

    from cauterize.locate.sources import search
    from cauterize.providers.formats import load_leaked_key

    key = load_leaked_key(key_source(key_env, key_file, key_stdin), None)
    sources = ([("git", g) for g in git] + [("path", str(p)) for p in path] + [("s3", u) for u in s3]
               + [("github-actions", r) for r in github_actions])
    if not sources:
        raise InputError("give at least one --git, --path, --s3 or --github-actions source to search")
    findings, errors, actions, failed = [], [], [], []
    from cauterize.scratch import scratch

    with scratch("cauterize-locate-") as work:
        for kind, target in sources:
            try:
                found = search(kind, target, key, workdir=Path(work))
            except InputError:
                raise
            except CauterizeError as exc:
                failed.append(f"{kind} {target}: {exc.one_line()}")
                continue
            findings.extend(found.findings)
            errors.extend(found.errors)
            actions.extend(found.actions)
    seen = [f.first_seen for f in findings if f.first_seen]
    if as_json:
        _emit_json({
            "fingerprint": key.fingerprint,
            "findings": [f.to_dict() for f in findings],
            "exposure_start": min(seen) if seen else None,
            "errors": errors + failed,
            "actions": actions,
        })
    else:
        for f in findings:
            typer.echo(f"{f.source}\t{f.encoding}\t{f.first_seen or '-'}\t{f.location}")
        typer.echo(f"{len(findings)} cop{'y' if len(findings) == 1 else 'ies'} of {key.fingerprint}", err=True)
        for line in errors:
            typer.echo(f"not searched: {line}", err=True)
        for line in actions:
            typer.echo(f"action: {line}", err=True)
    for line in failed:
        typer.echo(f"cauterize: {line}", err=True)
    if failed:
        raise typer.Exit(3)


@stores_app.command("scan")
def stores_scan(
    runbook: Path | None = typer.Argument(None, help="Also read every store of this runbook."),
    key_env: str | None = typer.Option(None, "--key-env", help="Read the key from this environment variable."),
    key_file: Path | None = typer.Option(None, "--key-file", help="Read the key from this file."),
    key_stdin: bool = typer.Option(False, "--key-stdin", help="Read the key from standard input."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Which secrets hold the leaked key: the runbook's stores, every secret of the AWS region and
    the Vault mount they (or AWS_*/VAULT_ADDR) point at. Exit 3 if a sweep failed."""
    from cauterize.providers.formats import load_leaked_key
    from cauterize.runbook import load_runbook
    from cauterize.stores.discover import discover

    loaded = load_runbook(runbook) if runbook else None
    key = load_leaked_key(key_source(key_env, key_file, key_stdin), None)
    result = discover(key, loaded)
    if as_json:
        _emit_json(result.to_dict())
    else:
        for hit in result.hits:
            typer.echo(hit)
        typer.echo(f"{len(result.hits)} secret(s) hold {key.fingerprint}; searched: {'; '.join(result.scanned) or 'nothing'}",
                   err=True)
    for error in result.errors:
        typer.echo(f"error: {error}", err=True)
    if result.errors:
        raise typer.Exit(3)


# -- one-shot provider commands -----------------------------------------------------------------
# These are the on-call "stop the bleeding" path: no Prefect, no runbook, only the provider's module.

KEYSRC_HELP = {
    "key_env": "Read the key from this environment variable.",
    "key_file": "Read the key from this file.",
    "key_stdin": "Read the key from standard input.",
}


def _provider_for(name: str):
    from cauterize.providers.base import get_provider, settings_for

    return get_provider(name, settings_for(name))


@app.command()
def verify(
    provider: str = typer.Option(..., "--provider", help="openai, anthropic, google, azure-openai or cohere."),
    key_env: str | None = typer.Option(None, "--key-env", help=KEYSRC_HELP["key_env"]),
    key_file: Path | None = typer.Option(None, "--key-file", help=KEYSRC_HELP["key_file"]),
    key_stdin: bool = typer.Option(False, "--key-stdin", help=KEYSRC_HELP["key_stdin"]),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Is the key live? Prints live, dead or unknown, and the identity found at the provider."""
    from cauterize.errors import KeyNotFound
    from cauterize.providers.formats import load_leaked_key

    key = load_leaked_key(key_source(key_env, key_file, key_stdin), provider)
    client = _provider_for(provider)
    notes: list[str] = []
    identity = None
    try:
        verdict = client.check(key)
        try:
            identity = client.identify(key)
            notes.extend(identity.notes)
        except KeyNotFound as exc:
            notes.append(exc.message)
        except InputError as exc:  # no admin credential: liveness alone
            notes.append(f"not identified: {exc.message}")
    finally:
        client.close()
    document = {
        "provider": provider,
        "fingerprint": key.fingerprint,
        "redacted": key.redacted,
        "liveness": verdict.value,
        "reason": verdict.reason,
        "identity": identity.to_dict() if identity else None,
        "notes": notes,
    }
    if as_json:
        _emit_json(document)
        return
    typer.echo(verdict.value)
    if verdict.reason:
        typer.echo(f"why: {verdict.reason}", err=True)
    if identity:
        typer.echo(f"identity: {_describe_identity(identity)}")
    for note in notes:
        typer.echo(f"note: {note}", err=True)


@app.command()
def revoke(
    provider: str = typer.Option(..., "--provider", help="openai, anthropic, google, azure-openai or cohere."),
    key_env: str | None = typer.Option(None, "--key-env", help=KEYSRC_HELP["key_env"]),
    key_file: Path | None = typer.Option(None, "--key-file", help=KEYSRC_HELP["key_file"]),
    key_stdin: bool = typer.Option(False, "--key-stdin", help=KEYSRC_HELP["key_stdin"]),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    confirm_timeout: str | None = typer.Option(
        None, "--confirm-timeout", help="How long the revocation may take to propagate (90s, 5m; default: the provider's)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Revoke the key at the provider now and confirm that it is dead (exit 4 if it still answers
    after the whole confirmation window)."""
    from cauterize.errors import KeyNotFound, ProviderUnavailable, StillLive
    from cauterize.providers.base import Liveness, confirm_liveness, confirm_window
    from cauterize.providers.formats import load_leaked_key
    from cauterize.when import parse_duration

    window = confirm_window(provider, parse_duration(confirm_timeout, "--confirm-timeout") if confirm_timeout else None)

    key = load_leaked_key(key_source(key_env, key_file, key_stdin), provider)
    if not yes:
        if key_stdin or not sys.stdin.isatty():
            raise InputError("revoke acts at once and cannot be undone: pass --yes when not on a terminal")
        typer.confirm(f"Revoke {key.redacted} ({key.fingerprint}) at {provider} now?", abort=True, err=True)
    client = _provider_for(provider)
    action_items: list[str] = []
    try:
        try:
            identity = client.identify(key)
        except KeyNotFound:
            if client.check(key).state is not Liveness.DEAD:
                raise
            identity, action = None, "already-revoked"
        else:
            result = client.revoke(identity)
            action, action_items = result.action, list(result.action_items)
        confirmation = confirm_liveness(
            lambda: client.check(key), want=Liveness.DEAD, window_s=window,
            progress=lambda line: typer.echo(f"cauterize: {line}", err=True),
        )
    finally:
        client.close()
    state = confirmation.verdict.state
    document = {
        "provider": provider,
        "fingerprint": key.fingerprint,
        "redacted": key.redacted,
        "identity": identity.to_dict() if identity else None,
        "action": action,
        "liveness": state.value,
        "confirmation": confirmation.to_dict(),
        "action_items": action_items,
    }
    if as_json:
        _emit_json(document)
    else:
        typer.echo(f"{action}: {_describe_identity(identity) if identity else key.fingerprint}; now {state.value}"
                   + (f" (confirmed after {confirmation.seconds:.1f} s)" if confirmation.confirmed else ""))
        for item in action_items:
            typer.echo(f"action item: {item}", err=True)
    if state is Liveness.LIVE:
        raise StillLive(
            f"{key.fingerprint} still answers after revocation, for the whole {window:.0f} s confirmation window"
        )
    if state is Liveness.UNKNOWN:
        raise ProviderUnavailable(
            f"revoked {key.fingerprint}, but its death could not be confirmed within {window:.0f} s: "
            f"{confirmation.verdict.reason or 'the liveness check failed'}"
        )


def _describe_identity(identity) -> str:
    parts = [identity.key_id or "(no key id)"]
    if identity.project:
        parts.append(f"in {identity.project}")
    if identity.owner_type:
        parts.append(f"owned by {identity.owner_type}" + (f" {identity.owner_id}" if identity.owner_id else ""))
    return " ".join(parts)


# -- entry point ------------------------------------------------------------------------------


def _click_exceptions():
    """The module of ``ClickException`` as typer raises it (recent typer vendors its own click)."""
    try:
        from typer._click import exceptions
    except ImportError:  # older typer: plain click
        from click import exceptions
    return exceptions


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and map every outcome to an exit code; never print a traceback unless asked.
    After SIGINT/SIGTERM (``interrupts``) whatever the interrupt broke on its way out is 130 and
    one line saying how to resume."""
    from cauterize import interrupts

    debug = os.environ.get("CAUTERIZE_DEBUG") == "1"
    os.umask(0o077)  # every file cauterize (or Prefect, or git under it) creates is private
    click = _click_exceptions()
    message = None
    try:
        result = app(args=argv, prog_name="cauterize", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except typer.Abort:
        message, code = "aborted, nothing was done", 2
    except click.ClickException as exc:
        message, code = exc.format_message(), 2
    except typer.Exit as exc:
        code = exc.exit_code
    except CauterizeError as exc:
        if debug:
            raise
        from cauterize.secret import scrub

        message, code = scrub(exc.one_line()), exc.exit_code
    except KeyboardInterrupt:
        message, code = "interrupted; the incident record says which steps are done", interrupts.EXIT_CODE
    except Exception as exc:  # the last boundary: no traceback (locals may hold secrets)
        if debug:
            raise
        message, code = f"internal error ({type(exc).__name__}); rerun with CAUTERIZE_DEBUG=1 for details", 1
    if interrupts.received() is not None:
        interrupts.say()
        return interrupts.EXIT_CODE
    if message:
        typer.echo(f"cauterize: {message}", err=True)
    return code


#: The long-running commands: the first SIGINT or SIGTERM stops them within seconds (exit 130), the
#: second at once; what to do next, for the one line they print then.
INTERRUPTIBLE = {
    "respond": "rerun `{command}` to resume",
    "demo": "rerun `{command}` for a new sandbox world",
    "drill": "rerun `{command}` to drill again",
    "purge": "nothing more was pushed; rerun `{command}` to purge again",
    "revoke": "rerun `{command}` to revoke and confirm again",
}


def entry() -> None:
    import shlex

    from cauterize import interrupts

    args = sys.argv[1:]
    if args and args[0] in INTERRUPTIBLE:
        interrupts.install(INTERRUPTIBLE[args[0]].format(command=shlex.join(["cauterize", *args])))
    code = main()
    if interrupts.received() is not None:
        interrupts.exit_now(code)  # every child gone; no atexit hooks (Prefect's would wait on its server)
    sys.exit(code)


if __name__ == "__main__":
    entry()
