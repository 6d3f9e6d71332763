"""The report pages in a real browser: headless Chromium loads them without a console message and draws them.

Chromium is driven by its command line (no new Python dependency): `--screenshot` renders the page once,
`--enable-logging=stderr --v=0` prints every console message as an `INFO:CONSOLE` line. The pages have no
script, so any console line is a failure: a Content-Security-Policy violation (an external request the page
tried), a broken image, a parse error. A control page that does log proves the detection works.
The flags keep a sandbox-less, network-less machine from hanging on first-run, sync and update work.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from cnnlab.cli import main

CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).is_file()), None)
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0", "--hide-scrollbars",
)  # fmt: skip

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)"),
]


def render(html: Path, png: Path, size: tuple[int, int] = (1280, 2000)) -> list[str]:
    """Screenshot `html` into `png`; returns the console lines Chromium logged."""
    with tempfile.TemporaryDirectory(prefix="cnnlab-chromium-") as profile:
        proc = subprocess.run(
            [
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={size[0]},{size[1]}",
                f"--screenshot={png}",
                html.resolve().as_uri(),
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert png.is_file(), proc.stderr[-2000:]
    return [line for line in proc.stderr.splitlines() if "CONSOLE" in line]


def not_blank(png: Path) -> None:
    """A drawn page: many colours (text anti-aliasing, plots) and a good share of non-white pixels."""
    from PIL import Image

    with Image.open(png) as im:
        rgb = im.convert("RGB")
        w, h = rgb.size
        colours = rgb.getcolors(maxcolors=w * h)
    nonwhite = sum(n for n, c in colours if min(c) < 235)
    assert len(colours) > 500, len(colours)
    assert nonwhite > 0.05 * w * h, nonwhite / (w * h)


def test_console_lines_are_detected(tmp_path):
    page = tmp_path / "control.html"
    page.write_text("<!DOCTYPE html><p>control</p><script>console.error('cnnlab-control')</script>")
    lines = render(page, tmp_path / "control.png", (400, 300))
    assert any("cnnlab-control" in line for line in lines), lines


def test_run_page_in_chromium(evaluated_run, tmp_path):
    out = tmp_path / "run.html"
    assert main(["report", str(evaluated_run), "--out", str(out)]) == 0
    assert render(out, tmp_path / "run.png") == []
    not_blank(tmp_path / "run.png")


def test_experiment_page_in_chromium(experiment_dir, tmp_path):
    out = tmp_path / "experiment.html"
    assert main(["report", str(experiment_dir), "--out", str(out)]) == 0
    assert render(out, tmp_path / "experiment.png") == []
    not_blank(tmp_path / "experiment.png")


def test_an_external_image_would_be_caught(experiment_dir, tmp_path):
    """The page's policy blocks any request; the browser says so on the console, which the tests above read."""
    out = tmp_path / "experiment.html"
    assert main(["report", str(experiment_dir), "--out", str(out)]) == 0
    out.write_text(out.read_text().replace("</main>", '<img src="http://127.0.0.1:9/x.png"></main>'))
    lines = render(out, tmp_path / "tampered.png", (800, 600))
    assert any("Content Security Policy" in line or "Content-Security-Policy" in line for line in lines), lines
