import io
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from test_evidence import MONDAY, seasonal_usage

from cauterize.chart import has_chart, usage_chart
from cauterize.evidence import analyze

pytest.importorskip("matplotlib")

SPIKE_RED = (198, 40, 40)


def _evidence(spike=True):
    since = MONDAY + timedelta(days=14)
    usage = seasonal_usage(3, spike=(since + timedelta(hours=6), since + timedelta(hours=42)) if spike else None)
    result = analyze(usage, window_start=since, window_end=since + timedelta(days=2), provider="openai")
    return {**result, "bucket": "1h"}


def _pixels(png: bytes):
    from matplotlib import image

    return (image.imread(io.BytesIO(png), format="png")[:, :, :3] * 255).round().astype(int)


def _close_to(pixels, colour, tolerance=12):
    import numpy

    return (numpy.abs(pixels - numpy.array(colour)).max(axis=2) <= tolerance).sum()


def test_png_shows_usage_with_the_anomalies_in_red():
    png = usage_chart(_evidence())
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pixels = _pixels(png)
    assert pixels.shape[:2] == (400, 1000)
    assert len({tuple(p) for p in pixels.reshape(-1, 3)[::7]}) > 50, "not a blank image"
    assert _close_to(pixels, SPIKE_RED) > 5000, "anomalous buckets are drawn in red"


def test_no_red_without_anomalies():
    evidence = _evidence(spike=False)
    assert evidence["anomalous_buckets"] <= 1
    if evidence["anomalous_buckets"] == 0:
        assert _close_to(_pixels(usage_chart(evidence)), SPIKE_RED) == 0


def test_svg_is_text_without_key_material_or_dates_of_rendering(leaked_key):
    evidence = _evidence()
    svg = usage_chart(evidence, fmt="svg").decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "exposure window" in svg and "anomalous (36)" in svg
    assert leaked_key not in svg and "<dc:date>" not in svg
    assert usage_chart(evidence, fmt="svg") == usage_chart(evidence, fmt="svg"), "deterministic"


def test_nothing_to_draw_is_refused():
    assert not has_chart(None) and not has_chart({"buckets": [], "context": {"start": []}})
    with pytest.raises(ValueError, match="no usage"):
        usage_chart({"buckets": []})
    with pytest.raises(ValueError, match="format"):
        usage_chart(_evidence(), fmt="gif")


def test_requests_only_evidence_is_charted_as_requests():
    evidence = _evidence()
    evidence["baseline"] = {**evidence["baseline"], "metric": "requests"}
    assert "Requests per hour" in usage_chart(evidence, fmt="svg").decode()


def test_headless_without_pyplot_or_a_display(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    env["MPLCONFIGDIR"] = str(tmp_path)
    code = (
        "import sys; from cauterize.chart import usage_chart\n"
        "b = {'start': '2026-03-01T00:00:00+00:00', 'end': '2026-03-01T01:00:00+00:00', 'input_tokens': 5,"
        " 'output_tokens': 1, 'requests': 1, 'anomalous': True, 'expected': 1}\n"
        "png = usage_chart({'buckets': [b], 'window': {'start': b['start'], 'end': b['end']}})\n"
        "assert png.startswith(b'\\x89PNG') and 'matplotlib.pyplot' not in sys.modules\n"
        "import matplotlib; print(matplotlib.get_backend())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
