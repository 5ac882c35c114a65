"""Open the report in headless Chromium: it renders, and a script from the data does not run.

Needs the Debian package `chromium` (`apt-get update && apt-get install -y chromium`).
"""

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from acgate.report import write_report

CHROMIUM = Path("/usr/bin/chromium")
INJECTED = (
    "<script>document.title='pwned'</script>"
    "<img id=\"injected\" src=x onerror=\"document.title='pwned'\">"
)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium not installed: apt-get update && apt-get install -y chromium",
)


def _chromium(tmp_path, *args):
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1200,1600", *args,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


def _title(dom):
    match = re.search(r"<title>(.*?)</title>", dom, re.S)
    return match.group(1) if match else None


def test_chromium_runs_scripts_from_a_file_page(tmp_path):
    """Control: the same page with the payload unescaped does change the title here."""
    page = tmp_path / "control.html"
    page.write_text(f"<html><head><title>control</title></head><body>{INJECTED}</body></html>")
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert _title(dom) == "pwned"


def test_report_renders_and_a_script_from_the_data_does_not_run(tmp_path, digits_scan):
    images, labels, is_poison, result = digits_scan
    texts = [f"text {i}" for i in range(len(labels))]
    for row in np.flatnonzero(is_poison):
        texts[row] = f"flagged {INJECTED}"
    files = write_report(result, tmp_path / "report.html", texts=texts, images=images,
                         activations=images.reshape(len(images), -1), title="chromium check",
                         scan_info={"dataset": "digits.parquet", "dataset_sha256": "cd" * 32},
                         created="2026-12-03 10:00:00 UTC")

    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", files.html_path.as_uri())
    with Image.open(shot) as image:
        assert image.size == (1200, 1600)
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    assert pixels.var() > 0
    # The verdict banner (#c0392b) is on screen.
    red = (np.abs(pixels - [0xC0, 0x39, 0x2B]).sum(axis=2) < 30).sum()
    assert red > 10_000

    dom = _chromium(tmp_path, "--dump-dom", files.html_path.as_uri())
    assert _title(dom) == "chromium check"
    assert "flagged &lt;script&gt;document.title='pwned'&lt;/script&gt;&lt;img id=\"injected\"" \
        in dom
    assert "<script" not in dom
    assert not re.search(r"<img[^>]*id=\"injected\"", dom)  # no injected element
    # One card per class as the browser built the DOM, each with its flagged count, and the
    # run's metadata.
    assert len(re.findall(r'<article class="card[^"]*" id="class-\d+">', dom)) == 3
    for label in (0, 1, 2):
        n = int((labels == label).sum())
        flagged = int(is_poison[labels == label].sum())
        assert f"{flagged} of {n} flagged" in dom
    assert "dataset SHA-256" in dom and "2026-12-03 10:00:00 UTC" in dom
