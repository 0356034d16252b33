"""The post-mortem, rendered from the incident record alone (Markdown and HTML)."""

from __future__ import annotations

from pathlib import Path

import jinja2

from cauterize import incident as incidents
from cauterize.incident import Incident, write_private


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
    env.filters["when"] = lambda value: value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"
    env.filters["num"] = lambda value: f"{value:,}" if isinstance(value, (int, float)) else "—"
    env.globals["duration"] = duration
    return env


def duration(start, end) -> str:
    """``3 d 4 h 5 min`` between two datetimes, or an em dash when either is unknown."""
    if not start or not end:
        return "—"
    minutes = max(0, int((end - start).total_seconds() // 60))
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{mins} min"]
    return " ".join(part for part in parts if part)


def render(incident: Incident, fmt: str) -> str:
    template = environment().get_template(f"postmortem.{fmt}.j2")
    return template.render(incident=incident, steps=incidents.STEPS)


def write_reports(incident: Incident, incident_dir: Path) -> dict[str, str]:
    """Render both formats next to the record; returns ``{"md": path, "html": path}``."""
    paths = {}
    for fmt in ("md", "html"):
        path = Path(incident_dir) / f"postmortem.{fmt}"
        write_private(path, render(incident, fmt), what=f"the post-mortem ({fmt})")
        paths[fmt] = str(path)
    return paths
