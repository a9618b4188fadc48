"""benchmarks/scale.py's measure: a command's peak RSS is its own, not its parent's."""
from __future__ import annotations

from benchmarks.scale import Launcher

PARENT_MB = 300


def test_a_command_started_from_a_big_process_reports_its_own_peak_rss(tmp_path):
    """A child's ru_maxrss never starts below its parent's size (fork/vfork, then exec), so
    the benchmark, which holds a plan and its seed list, starts commands through a small
    launcher process. Here the parent is made big on purpose."""
    ballast = bytearray(PARENT_MB << 20)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page: resident, not just reserved
    launcher = Launcher()
    try:
        code, figure = launcher.run(["--version"], log=tmp_path / "log")
    finally:
        launcher.close()
    assert code == 0 and "version" in (tmp_path / "log").read_text()
    assert 0 < figure.rss_mb < PARENT_MB / 2
    assert figure.cpu_s > 0
    del ballast
