"""The HTML post-mortem in a real browser: Debian's headless Chromium takes a screenshot, and the
page must not be blank and must show the chart (the red of the anomalous buckets, in a region of
varied pixels). Chromium is installed by the fixture when missing (needs root and apt)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import full_incident

from cauterize.report import write_reports
from cauterize.secret import Secret

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

CHROMIUM = "/usr/bin/chromium"
SPIKE_RED = (198, 40, 40)  # cauterize.chart's colour of anomalous buckets
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get if it is missing and we may."""
    found = shutil.which("chromium") or (CHROMIUM if os.access(CHROMIUM, os.X_OK) else None)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and cannot be here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "chromium"]
    done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=1500)
    if done.returncode != 0:  # stale package lists: refresh them once
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=600)
        done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=1500)
    if done.returncode != 0 or not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"could not install chromium: {done.stderr.strip()[-300:]}")
    return CHROMIUM


def _screenshot(browser: str, page: Path, out: Path, profile: Path) -> None:
    done = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}", "--window-size=1200,2000",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180, env={**os.environ, "HOME": str(profile)},
    )
    assert out.is_file() and out.stat().st_size > 0, f"no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"


def _rgb(png: Path):
    from matplotlib import image

    return (image.imread(png)[:, :, :3] * 255).round().astype(int)


def test_the_html_post_mortem_shows_its_chart_in_chromium(chromium, tmp_path, make_key):
    numpy = pytest.importorskip("numpy")
    pytest.importorskip("matplotlib")
    incident = full_incident(Secret(make_key()), Secret(make_key()))
    paths = write_reports(incident, tmp_path / "incident")
    shot = tmp_path / "shot.png"
    _screenshot(chromium, Path(paths["html"]), shot, tmp_path / "profile")

    pixels = _rgb(shot)
    assert pixels.shape[:2] == (2000, 1200)
    grey = pixels.mean(axis=2)
    assert grey.std() > 10 and (grey < 200).mean() > 0.01, "the page is blank"

    red = numpy.abs(pixels - numpy.array(SPIKE_RED)).max(axis=2) <= 16
    assert red.sum() > 2000, "the chart's anomalous buckets are not on screen"
    rows, cols = numpy.nonzero(red)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    assert bottom - top > 40 and right - left > 100, "the chart is drawn at a readable size"
    region = pixels[max(0, top - 60): bottom + 60, max(0, left - 300): right + 60].reshape(-1, 3)
    assert len({tuple(p) for p in region[::3]}) > 40, "the chart region has the chart's varied pixels"
    assert region.std(axis=0).mean() > 20
