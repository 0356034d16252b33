"""The post-mortem, rendered from the incident record alone (Markdown and HTML), plus the people's words.

The sections are those of the Google SRE post-mortem: title, status, summary, impact, root causes,
trigger, resolution, detection, action items, lessons learned, timeline. ``facts()`` turns the record
into plain values for them; the templates (``templates/postmortem.{md,html}.j2``) only lay them out.
A record that stopped early (no identity, no findings, no evidence) still renders: each section says
what is not known.

Lessons learned come from ``lessons.md`` next to the record: created once with prompts, never
overwritten, merged into every rendering, so re-rendering never loses what people wrote there.
The usage chart is drawn from the record's evidence: embedded in the HTML as a ``data:`` URI (the
page is self-contained) and written as ``usage.png`` next to the Markdown, which links it.
"""

from __future__ import annotations

import base64
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from cauterize import incident as incidents
from cauterize.incident import Incident, read_private, write_private
from cauterize.scopes import CarriedScopes

LESSONS = "lessons.md"
CHART = "usage.png"
RESOLUTION_STEPS = ("revoke", "rotate", "redeploy", "purge")
_WIDTHS = {"1m": "one-minute", "1h": "hourly", "1d": "daily"}
_DETECTED_BY = {
    "respond": "a responder or an alert started the key-compromised response",
    "drill": "a scheduled rotation drill (no real leak)",
    "demo": "the sandbox demo (`cauterize demo`)",
}


def environment() -> jinja2.Environment:
    import cauterize.templates

    root = Path(cauterize.templates.__file__).parent
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(root),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["when"] = lambda value: _format(value, "%Y-%m-%d %H:%M UTC")
    env.filters["stamp"] = lambda value: _format(value, "%Y-%m-%d %H:%M:%S")
    env.filters["num"] = lambda value: f"{round(value):,}" if isinstance(value, (int, float)) else "—"
    env.filters["usd"] = lambda value: f"${value:,.2f}" if isinstance(value, (int, float)) else "—"
    env.filters["cell"] = lambda value: str(value if value is not None else "").replace("|", "/").replace("\n", " ")
    env.filters["code"] = _code_spans
    env.globals["duration"] = duration
    return env


def _code_spans(text: str) -> Markup:
    """Plain text with Markdown `code spans`, as safe HTML with ``<code>`` elements."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def _time(value: datetime | str | None) -> datetime | None:
    """An aware datetime from a datetime or an ISO-8601 string (None when absent or unreadable)."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _format(value: datetime | str | None, pattern: str) -> str:
    moment = _time(value)
    return moment.strftime(pattern) if moment else (str(value) if value else "—")


def duration(start: datetime | str | None, end: datetime | str | None) -> str:
    """``3 d 4 h 5 min`` between two times, or an em dash when either is unknown."""
    start, end = _time(start), _time(end)
    if not start or not end:
        return "—"
    minutes = max(0, int((end - start).total_seconds() // 60))
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{mins} min"]
    return " ".join(part for part in parts if part)


# -- lessons learned: the sidecar people write ------------------------------------------------------


def ensure_lessons(incident: Incident, incident_dir: Path) -> Path:
    """``lessons.md`` in the incident directory, created with prompts if it is not there yet."""
    path = Path(incident_dir) / LESSONS
    if not os.path.lexists(path):  # a link planted there is refused when it is read, never written through
        prompts = environment().get_template("lessons.md.j2").render(incident=incident)
        write_private(path, prompts, what="the lessons-learned file")
    return path


def lessons_of(incident_dir: Path | None) -> tuple[str, bool]:
    """(the sidecar's Markdown without its title and prompts, headings demoted under the report's
    section; whether people wrote anything in it yet)."""
    path = Path(incident_dir) / LESSONS if incident_dir else None
    if path is None or not os.path.lexists(path):
        return "", False
    text = re.sub(r"<!--.*?-->", "", read_private(path).decode("utf-8", errors="replace"), flags=re.DOTALL)
    lines = [line for line in text.splitlines() if not re.match(r"#\s", line)]  # the file's own title
    written = any(line.strip() and not line.lstrip().startswith("#") for line in lines)
    out = []
    for index, line in enumerate(lines):
        out.append("#" + line if re.match(r"#{2,5}\s", line) else line)
        following = next((rest for rest in lines[index + 1:] if rest.strip()), "#")
        if line.startswith("#") and following.startswith("#"):  # a heading nobody wrote under yet
            out.append("\n_Not written yet._")
    body = "\n".join(out)
    body = re.sub(r"\n{3,}", "\n\n", body).strip()
    return body, written


def _lessons_html(markdown: str) -> Markup:
    from markdown_it import MarkdownIt

    return Markup(MarkdownIt("commonmark", {"html": False}).render(markdown))  # raw HTML is escaped


# -- the usage chart ------------------------------------------------------------------------------


def chart_png(incident: Incident) -> tuple[bytes | None, str | None]:
    """(the chart of the record's evidence as PNG, or None; why there is none)."""
    from cauterize.chart import has_chart, usage_chart

    if not has_chart(incident.evidence):
        return None, "no usage buckets were collected"
    try:
        return usage_chart(incident.evidence or {}, fmt="png"), None
    except ImportError:
        return None, "matplotlib is not installed"
    except (ValueError, KeyError, TypeError) as exc:  # a record from an older or partial evidence step
        return None, f"the evidence in the record cannot be drawn ({type(exc).__name__})"


# -- the facts of each section ----------------------------------------------------------------------


def facts(incident: Incident) -> dict[str, Any]:
    """Plain values for every section, from the record alone; absent parts are None or empty."""
    ident = incident.old_key.identity or {}
    ev = incident.evidence or {}
    findings = sorted((_with(f, _FINDING) for f in incident.findings),
                      key=lambda f: _time(f["first_seen"]) or datetime.max.replace(tzinfo=UTC))
    first = next((f for f in findings if f.get("first_seen")), None)
    open_steps = [(name, incident.steps[name].status) for name in incidents.STEPS
                  if incident.steps[name].status not in incidents.DONE]
    repos = sorted({f["repo"] for f in findings if f.get("source") == "git" and f.get("repo")})
    evidence = _evidence(ev)
    return {
        "ident": {key: ident.get(key) for key in ("key_id", "project", "owner_type", "owner_id", "name")},
        "notes": list(ident.get("notes") or []),
        "status": "dry run" if incident.dry_run else ("contained" if incident.complete and incident.verified else "incomplete"),
        "verification": _verification(incident),
        "open_steps": open_steps,
        "evidence": evidence,
        "findings": findings,
        "causes": [_cause(f) for f in findings],
        "first_finding": first,
        "repos": repos,
        "detected_by": _DETECTED_BY.get(incident.mode, incident.mode),
        "resolution": [(name, incident.steps[name]) for name in RESOLUTION_STEPS],
        "done": [text for name, text in (("revoke", "revoked the key"), ("rotate", "minted a replacement"),
                 ("redeploy", "redeployed it to every store"), ("purge", f"rewrote the history of {len(repos)} repo(s)"))
                 if incident.steps[name].status == "ok"],
        "stores": [_with(st, {"store": "?", "version": None, "unchanged": False})
                   for st in incident.steps["redeploy"].details.get("stores") or []],
        "purge": [_with(p, _PURGE) for p in incident.purge],
        "timeline": _timeline(incident, first, ev),
        "actions": _actions(incident, repos, ident, open_steps),
        **_reach(incident),
    }


def _verification(incident: Incident) -> str | None:
    """One sentence on what the world said at the end (verification.py), or None before it."""
    from cauterize.verification import summary

    result = incident.verification
    if incident.dry_run or not result:
        return None
    when = _format(_time(result.get("at")), "%Y-%m-%d %H:%M:%S UTC")
    sentence = f"Verified at {when}: {summary(result)}."
    if result.get("why"):
        sentence += f" The world disagreed with the record ({'; '.join(result['why'])})."
    if not result.get("contained"):
        sentence += " The old key was not confirmed dead: treat the leak as live."
    return sentence


def _reach(incident: Incident) -> dict[str, str | None]:
    """The revoked key's permissions and what the replacement carried over (scopes.py)."""
    data = incident.old_key.scopes
    if not isinstance(data, dict):
        return {"permissions": None, "carried": None}
    carried = CarriedScopes.from_dict(data)
    if carried.provider == "anthropic":
        permissions = f"workspace `{carried.workspace}`" if carried.workspace else "the whole organisation"
    elif carried.provider != "openai":
        permissions = None
    elif carried.scopes is None:
        permissions = "unknown (no audit event says how it was restricted)"
    else:
        permissions = ", ".join(f"`{scope}`" for scope in carried.scopes) or "all permissions (unrestricted)"
    if carried.role:
        permissions = f"{permissions}; service account role {carried.role}"
    sentence = None
    if incident.steps["rotate"].status == "ok":
        by_hand = incident.steps["rotate"].details.get("manual") and carried.provider == "openai"
        given = incident.new_key.scopes if incident.new_key else None
        if by_hand:
            sentence = (f"The replacement was created by a person: check that it has the revoked key's permissions "
                        f"({permissions}).")
        elif carried.scopes and isinstance(given, list) and tuple(given) != carried.scopes:
            sentence = (f"The replacement could not be given the revoked key's scopes ({permissions}): it is "
                        "unrestricted until a person restricts it (an action item).")
        else:
            sentence = carried.summary()
    return {"permissions": permissions, "carried": sentence}


_FINDING = dict.fromkeys(("source", "location", "repo", "commit", "ref", "path", "reachable", "encoding", "first_seen"))
_PURGE = {"repo": "?", "commits_rewritten": 0, "refs_changed": [], "pushed": False, "verified": False,
          "refused_refs": [], "leftovers": [], "why": "", "verified_by": [], "commits_dropped": [],
          "signed_commits_unsigned": 0, "signed_tags_unsigned": 0, "refs_renamed": []}
_BUCKET = dict.fromkeys(("start", "requests", "input_tokens", "output_tokens", "expected", "score"))


def _with(data: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """A row of the record with every field the templates read (older or partial records lack some)."""
    return {**defaults, **{key: value for key, value in data.items() if value is not None or key not in defaults}}


_ANOMALY_METHOD = {
    "seasonal": "each bucket against the same hour (and kind of day) before the window",
    "window": "each bucket against the window's own median (too little history before it)",
    "none": "not scored (too little usage to compare)",
}


def _evidence(ev: dict[str, Any]) -> dict[str, Any] | None:
    if not ev:
        return None
    totals = {"input_tokens": None, "output_tokens": None, "requests": None, "cost_usd": None, **(ev.get("totals") or {})}
    tokens = (totals["input_tokens"] or 0) + (totals["output_tokens"] or 0)
    buckets = ev.get("buckets") or []
    return {
        "window": {"start": None, "end": None, **(ev.get("window") or {})},
        "totals": totals,
        "tokens": tokens,
        "cost_source": (ev.get("cost") or {}).get("source") or ("provider" if totals["cost_usd"] is not None else None),
        "bucket": ev.get("bucket") or "bucket",
        "unit": {"1m": "minute", "1h": "hour", "1d": "day"}.get(ev.get("bucket") or "", "bucket"),
        "width": _WIDTHS.get(ev.get("bucket") or "", ""),
        "baseline": {"buckets": 0, "median_tokens": None, "seasonality": None, **(ev.get("baseline") or {})},
        "anomalous": ev.get("anomalous_buckets") or 0,
        "anomaly_method": _ANOMALY_METHOD.get((ev.get("anomaly") or {}).get("method") or "seasonal"),
        "first_anomaly": ev.get("first_anomaly"),
        "last_anomaly": ev.get("last_anomaly"),
        "excess_tokens": ev.get("excess_tokens"),
        "excess_requests": ev.get("excess_requests"),
        "excess_cost_usd": ev.get("excess_cost_usd"),
        "top": [_with(b, _BUCKET) for b in sorted((b for b in buckets if b.get("anomalous")),
                                                    key=lambda b: -(b.get("score") or 0))[:10]],
        "limitations": list(ev.get("limitations") or []),
    }


def _cause(finding: dict[str, Any]) -> str:
    """How one copy got where it was found, in a sentence."""
    source, where = finding.get("source"), finding.get("path") or finding.get("location")
    encoding = finding.get("encoding") or "raw"
    form = "in plain text" if encoding == "raw" else f"{encoding}-encoded"
    if source == "git":
        commit = (finding.get("commit") or "")[:12] or "an unknown commit"
        reach = ("still reachable from " + (finding.get("ref") or "a ref")) if finding.get("reachable") else (
            "in history no ref reaches any more" if finding.get("reachable") is False else "reachability unknown")
        return f"committed {form} to `{where}` in `{finding.get('repo')}` by commit {commit}; {reach}"
    if source == "file":
        return f"stored {form} in the file `{where}`"
    if source == "s3":
        return f"stored {form} in the S3 object `{finding.get('location')}`"
    if source == "ci-log":
        return f"printed {form} to the CI log `{finding.get('location')}`"
    return f"found {form} at `{finding.get('location')}`"


def _timeline(incident: Incident, first: dict[str, Any] | None, ev: dict[str, Any]) -> list[dict[str, Any]]:
    """Every event of the record, with the moments the evidence and findings establish, in order."""
    rows = [{"at": e.at, "step": e.step, "message": e.message, "derived": False} for e in incident.events]
    derived = []
    if first is not None:
        derived.append((first.get("first_seen"), "locate", f"the key is first seen: {_cause(first)}"))
    if ev.get("first_anomaly"):
        derived.append((ev["first_anomaly"], "evidence", "first anomalous usage bucket begins"))
    if ev.get("last_anomaly"):
        derived.append((ev["last_anomaly"], "evidence", "last anomalous usage bucket ends"))
    rows += [{"at": _time(at), "step": step, "message": text, "derived": True} for at, step, text in derived if _time(at)]
    return sorted(rows, key=lambda row: row["at"])


def _kind(step: str, text: str) -> str:
    lowered = text.lower()
    if any(word in lowered for word in ("scanner", "pre-commit", "guard", "secret store")):
        return "prevent"
    if any(word in lowered for word in ("alert", "monitor", "watch", "budget")):
        return "detect"
    return "process" if step == "report" else "mitigate"


def _actions(
    incident: Incident, repos: list[str], ident: dict[str, Any], open_steps: list[tuple[str, str]]
) -> list[dict[str, str]]:
    """Every follow-up the steps recorded, the unfinished steps, then the standard prevention items."""
    rows = [{"owner": "on-call", "type": _kind(item.step, item.text), "status": "done" if item.done else "open",
             "text": item.text, "source": item.step} for item in incident.action_items]
    for name, status in open_steps:
        record = incident.steps[name]
        detail = f": {record.error}" + (f" ({record.remediation})" if record.remediation else "") if record.error else ""
        rows.append({"owner": "on-call", "type": "mitigate", "status": "open",
                     "text": f"finish the {name} step ({status}){detail}", "source": name})
    owner = f"key owner ({ident['owner_id']})" if ident.get("owner_id") else "team owning the key"
    for repo in repos or [None]:
        where = f"`{repo}`" if repo else "every repository the team commits to"
        rows.append({"owner": f"owners of {repo}" if repo else owner, "type": "prevent", "status": "open",
                     "text": f"install a pre-commit secret scanner in {where} (`cauterize guard install`)",
                     "source": "standard"})
    if incident.findings:
        rows.append({"owner": owner, "type": "prevent", "status": "open", "source": "standard",
                     "text": "read the key from a secret store at run time; never write it into code, config or logs"})
    rows.append({"owner": "platform team", "type": "detect", "status": "open", "source": "standard",
                 "text": f"alert on usage anomalies and spend of every {incident.provider} key "
                         f"(schedule `cauterize watch --provider {incident.provider}`)"})
    rows.append({"owner": "incident commander", "type": "process", "status": "open", "source": "standard",
                 "text": f"hold the post-mortem review and record its lessons in `{LESSONS}`"})
    return rows


# -- rendering --------------------------------------------------------------------------------------


def render(
    incident: Incident, fmt: str, incident_dir: Path | None = None, *, chart: bytes | None = None
) -> str:
    """The post-mortem as Markdown (``md``) or self-contained HTML (``html``). ``incident_dir`` is
    where ``lessons.md`` (and ``usage.png``) live; by default, where the record says the report was
    last written, if the record is still there (else the lessons section points to the file)."""
    if incident_dir is None and incident.report.get("md"):
        last = Path(incident.report["md"]).parent
        incident_dir = last if (last / incidents.RECORD_NAME).is_file() else None
    note = None
    if chart is None:
        chart, note = chart_png(incident)
    lessons, written = lessons_of(incident_dir)
    context = {
        "incident": incident,
        "steps": incidents.STEPS,
        "f": facts(incident),
        "chart_file": CHART if chart else None,
        "chart_uri": ("data:image/png;base64," + base64.b64encode(chart).decode()) if chart else None,
        "chart_note": note,
        "lessons": lessons,
        "lessons_html": _lessons_html(lessons) if fmt == "html" and written else None,
        "lessons_written": written,
        "lessons_file": LESSONS,
    }
    env = environment()
    prose = env.overlay(trim_blocks=False, lstrip_blocks=False).get_template("_summary.txt.j2")
    context["summary"] = " ".join(prose.render(**context).split())
    return env.get_template(f"postmortem.{fmt}.j2").render(**context)


def write_reports(incident: Incident, incident_dir: Path) -> dict[str, str]:
    """Render both formats next to the record (with ``usage.png`` and ``lessons.md``); returns the
    paths as ``{"md", "html", "lessons"[, "chart"]}``."""
    directory = Path(incident_dir)
    paths = {"lessons": str(ensure_lessons(incident, directory))}
    chart, _ = chart_png(incident)
    if chart is not None:
        write_private(directory / CHART, chart, what="the usage chart")
        paths["chart"] = str(directory / CHART)
    for fmt in ("md", "html"):
        path = directory / f"postmortem.{fmt}"
        write_private(path, render(incident, fmt, directory, chart=chart), what=f"the post-mortem ({fmt})")
        paths[fmt] = str(path)
    return paths
