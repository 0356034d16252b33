"""The usage chart of the post-mortem: usage per bucket, the exposure window shaded, anomalies marked.

Drawn from the record's ``evidence`` section alone (its window buckets, the baseline buckets just
before the window in ``context``, and each bucket's seasonal ``expected`` value), so it can be
redrawn from ``incident.json`` at any time. Numbers and dates only: no key material reaches it.

matplotlib is imported here, lazily, and used through ``Figure`` and the Agg canvas directly: no
pyplot and its figure registry, no global backend switch, no display needed.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

FORMATS = ("png", "svg")
_UNITS = {"1m": "minute", "1h": "hour", "1d": "day"}
_BLUE, _RED, _GREY, _SHADE = "#3b6ea8", "#c62828", "#7a7a7a", "#f4c7c3"


def _when(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _value(bucket: dict[str, Any], metric: str) -> float:
    if metric == "requests":
        return float(bucket.get("requests") or 0)
    return float((bucket.get("input_tokens") or 0) + (bucket.get("output_tokens") or 0))


def _human(value: float, _position: object = None) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.0f}"


def has_chart(evidence: dict[str, Any] | None) -> bool:
    """Whether the evidence holds anything to draw."""
    return bool(evidence and (evidence.get("buckets") or (evidence.get("context") or {}).get("start")))


def _context(evidence: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    """The baseline buckets before the window, from the record's columns, as rows like the window's."""
    columns = evidence.get("context") or {}
    rows = []
    for start, seconds, tokens, requests in zip(columns.get("start") or [], columns.get("seconds") or [],
                                                columns.get("tokens") or [], columns.get("requests") or [], strict=True):
        end = (_when(start) + timedelta(seconds=seconds)).isoformat()
        rows.append({"start": start, "end": end, "input_tokens": tokens, "output_tokens": 0, "requests": requests})
    return rows


def usage_chart(evidence: dict[str, Any], *, fmt: str = "png", width: float = 10.0, height: float = 4.0) -> bytes:
    """The chart of one ``evidence`` section as PNG or SVG bytes. Raises ValueError when the
    evidence holds no bucket (``has_chart`` says so beforehand) or ``fmt`` is unknown."""
    if fmt not in FORMATS:
        raise ValueError(f"chart format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if not has_chart(evidence):
        raise ValueError("no usage buckets to chart")
    from matplotlib import dates as mdates
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    metric = (evidence.get("baseline") or {}).get("metric") or "tokens"
    window = list(evidence.get("buckets") or [])
    context = _context(evidence, metric)
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()

    every = context + window
    starts = [_when(b["start"]) for b in every]
    ends = [_when(b["end"]) for b in every]
    widths = [(end - start).total_seconds() / 86400 for start, end in zip(starts, ends, strict=True)]
    values = [_value(b, metric) for b in every]
    colours = [_RED if b.get("anomalous") else (_GREY if i < len(context) else _BLUE) for i, b in enumerate(every)]
    axes.bar(starts, values, width=widths, align="edge", color=colours, linewidth=0)

    bounds = evidence.get("window") or {}
    if bounds.get("start") and bounds.get("end"):
        axes.axvspan(_when(bounds["start"]), _when(bounds["end"]), color=_SHADE, alpha=0.45, zorder=0,
                     label="exposure window")
    expected = [(_when(b["start"]), _when(b["end"]), float(b["expected"])) for b in window if "expected" in b]
    if expected:
        xs = [point for start, end, _ in expected for point in (start, end)]
        ys = [value for _, _, value in expected for _ in (0, 1)]
        axes.plot(xs, ys, color="#1d1d1f", linewidth=1, linestyle="--", label="baseline (same hour, median)")
    flagged = [(s, v) for s, v, b in zip(starts, values, every, strict=True) if b.get("anomalous")]
    if flagged:
        axes.scatter([s for s, _ in flagged], [v for _, v in flagged], marker="v", color=_RED, s=14, zorder=3,
                     label=f"anomalous ({len(flagged)})")
    handles, _ = axes.get_legend_handles_labels()
    handles += [Patch(color=_BLUE, label="usage in the window")]
    if context:
        handles.append(Patch(color=_GREY, label="usage before the window"))

    unit = _UNITS.get(str(evidence.get("bucket") or ""), "bucket")
    axes.set_title(f"{'Requests' if metric == 'requests' else 'Tokens (input + output)'} per {unit}, UTC",
                   loc="left", fontsize=11)
    axes.yaxis.set_major_formatter(FuncFormatter(_human))
    locator = mdates.AutoDateLocator(tz=UTC)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    axes.set_xlim(min(starts), max(ends))
    axes.set_ylim(bottom=0)
    axes.grid(axis="y", color="#e4e4e4", linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    axes.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.9, edgecolor="none")

    out = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    with rc_context({"svg.hashsalt": "cauterize"}):  # stable element ids: the same evidence, the same bytes
        figure.savefig(out, format=fmt, metadata=metadata)
    return out.getvalue()
