"""`fleetrel report --format html`: one self-contained page, checked in headless Chromium."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fleetrel import load_plan, run
from fleetrel.testing import THROTTLE, FakeIoT, run_virtual
from fleetrel.where import Where
from support import write_plan


def journal_of_a_run(tmp_path: Path) -> Path:
    """A two-wave run with throttles and two failures, on virtual time."""
    versions = [str(i) for i in range(30)]
    plan = load_plan(write_plan(tmp_path / "p.yaml", versions, package="fw", waves=[10], rate=20, burst=4,
                                abort={"max_failure_ratio": 0.5, "min_finished": 5}))
    iot = FakeIoT({f"fw/{v}": "DRAFT" for v in versions if v not in ("17", "23")}, latency=0.05)
    for v in ("3", "4", "12"):
        iot.script(f"fw/{v}", THROTTLE)

    async def go_on(wave: int, waves: int) -> bool:
        return True

    journal = tmp_path / "j.jsonl"
    run_virtual(lambda: run(plan, Where(journal_path=journal), client=iot, before_wave=go_on))
    return journal


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("no chromium: apt-get install chromium (.ci/run does)")
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)


def test_the_page_is_self_contained_and_draws_its_charts(tmp_path):
    journal = journal_of_a_run(tmp_path)
    page = tmp_path / "run.html"
    out = subprocess.run([sys.executable, "-m", "fleetrel", "report", str(journal), "--format", "html", "-o", str(page)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    html = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing fetched from anywhere
    assert "<script" not in html

    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile").stdout
    for chart in ("timeline", "targets", "failures"):
        assert f'<svg id="{chart}"' in dom
    assert dom.count('class="admitted"') >= 1 and dom.count('class="throttled"') >= 1
    assert dom.count('class="rate"') == 1
    assert 'class="wave"' in dom and "wave 2" in dom
    assert "ResourceNotFoundException" in dom
    assert dom.count('<tr class="failed">') == 2 and dom.count('<tr class="succeeded">') == 28

    png = tmp_path / "shot.png"
    chromium("--window-size=1000,800", "--hide-scrollbars", f"--screenshot={png}", page.as_uri(),
             profile=tmp_path / "profile")
    from PIL import Image

    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, bars and lines: not a blank page
    greens = sum(count for count, (r, g, b) in colours if g > 150 and r < 150 and b < 150)
    assert greens > 2000  # the answered calls' bars were painted


def test_a_journal_that_is_not_one_is_refused(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("hello\n")
    out = subprocess.run([sys.executable, "-m", "fleetrel", "report", str(bad), "--format", "html",
                          "-o", str(tmp_path / "x.html")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "not a fleetrel journal" in out.stderr
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "x.html.partial").exists()
