"""``runlog watch``'s terminal screen, audited: the trend fit never overflows (a reward of 1e200 was an
``OverflowError`` and "internal error" on a terminal) and ignores infinite and NaN values; figures have 4
significant digits as every other table; long role names sharing a prefix stay apart; a best and a worst
sample that would read alike are shown with the digits that tell them apart."""

from __future__ import annotations

import io
import math
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from runlog import RunWriter
from runlog.watch import LiveRun
from runlog.watch.live import RoleStep, StepStats
from runlog.watch.poll import run_lister
from runlog.watch.screen import SampleLine, Screen, _fit, extremes, num, nums_apart, sparkline, trend_text
from watch_helpers import child_env

from conftest import ROOT

INF, NAN = math.inf, math.nan


def _live(tmp_path: Path, series: dict[str, list[float]]) -> LiveRun:
    live = LiveRun(tmp_path / "run")
    live.role_order = list(series)
    steps = len(next(iter(series.values())))
    for s in range(steps):
        roles = {role: RoleStep(values[s], 0.01 * (s + 1), 4) for role, values in series.items()}
        live.steps[s] = StepStats(s, 4, roles, time.time())  # type: ignore[arg-type]
    return live


def _plain(screen: Screen, width: int = 80) -> list[str]:
    buf = io.StringIO()
    Console(file=buf, width=width, no_color=True).print(screen)
    return buf.getvalue().splitlines()


# -- 2: the trend fit at any size of value ------------------------------------------------------------------
def test_the_trend_of_huge_values_does_not_overflow():
    assert trend_text([1e200 * (s + 1) for s in range(4)]) == "↑+3e+200"
    assert trend_text([-1e200 * (s + 1) for s in range(4)]) == "↓-3e+200"
    # a change beyond the largest float is no trend, not an error
    assert trend_text([-1.7e308, 0.0, 1.7e308]) == ""
    assert sparkline([-1.7e308, 1.7e308, 0.0]) == "▁█▅"
    assert trend_text([5e-324, 1e-323, 1.5e-323]).startswith("↑+")  # subnormals


def test_the_trend_is_scale_free():
    values = [0.5, 0.61, 0.58, 0.7, 0.66, 0.81]
    fit = _fit(values)
    assert fit is not None
    for scale in (2.0**-600, 2.0**600, 2.0**1000):
        big = _fit([v * scale for v in values])
        assert big is not None and big[1] == fit[1] and big[0] == fit[0] * scale


def test_infinite_and_nan_values_are_left_out_of_the_trend_and_the_sparkline():
    with_bad = [1.0, INF, 2.0, NAN, 3.0, -INF, 4.5]
    without = [1.0, None, 2.0, None, 3.0, None, 4.5]
    assert trend_text(with_bad) == trend_text(without) != ""
    assert sparkline(with_bad) == sparkline(without)
    assert trend_text([INF, -INF, NAN, 1.0]) == "" and sparkline([INF, NAN]) == "  "


def test_the_screen_draws_huge_infinite_and_nan_rewards(tmp_path):
    live = _live(tmp_path, {"a": [1e200, 2e200, 3e200, 4e200], "b": [INF, NAN, -INF, 1.0], "c": [1.7e308] * 4})
    lines = _plain(Screen(live, None, [], interval=1))
    assert all(len(x) <= 80 for x in lines)
    [a] = [x for x in lines if x.startswith("a ")]
    assert "4e+200" in a and "↑+3e+200" in a and "…" not in a


def test_watch_on_a_terminal_with_rewards_of_1e200(tmp_path):
    """The audit's case through the CLI on a pseudo-terminal: it was ``Error: internal error: OverflowError``,
    exit 3."""
    run = tmp_path / "run"
    with RunWriter(run, roles=["a"]) as w:
        for s in range(4):
            w.log_samples(s, {"reward": [1.0, 2.0], "a_reward": [1e200 * (s + 1), 1e200], "a_kl": [0.1, 0.2]})
    master, slave = pty.openpty()
    env = child_env() | {"COLUMNS": "80", "LINES": "30", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runlog", "watch", str(run), "--once", "--no-doctor"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=ROOT,
    )
    os.close(slave)
    out = b""
    end = time.monotonic() + 60
    while time.monotonic() < end:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=30) == 0, out
    text = out.decode(errors="replace")
    assert "internal error" not in text and "Traceback" not in text
    assert "2.5e+200" in text and "q quits" in text


# -- 8: digits, names, best and worst -----------------------------------------------------------------------
def test_figures_have_4_significant_digits_as_the_step_lines(tmp_path):
    from runlog.cli.watch_cmd import _num

    for v in (12345678.9, 0.80912, -0.0233712, 5.7612e-05, 1234.5, 0.0):
        assert num(v) == _num(v)
    assert num(12345678.9) == "1.235e+07" and num(0.80912) == "0.8091"
    live = _live(tmp_path, {"solver": [0.1, 0.2, 12345678.9]})
    [line] = [x for x in _plain(Screen(live, None, [], interval=1)) if x.startswith("solver ")]
    assert "1.235e+07" in line


def test_long_role_names_sharing_a_prefix_stay_apart(tmp_path):
    names = ["verifier_xxxxx_alpha", "verifier_xxxxx_beta"]
    live = _live(tmp_path, {n: [0.1, 0.2, 0.3] for n in names})
    lines = _plain(Screen(live, None, [], interval=1))
    shown = [x.split(" ")[0] for x in lines if x.startswith("verifi")]
    assert len(shown) == 2 and len(set(shown)) == 2 and all("…" in s for s in shown)
    assert shown[0].endswith("alpha") and shown[1].endswith("beta")
    # names alike at both ends: the column widens until they differ
    names = ["verifier_aaaaaaaa_x_reward_model", "verifier_bbbbbbbb_x_reward_model"]
    live = _live(tmp_path, {n: [0.1, 0.2, 0.3] for n in names})
    lines = _plain(Screen(live, None, [], interval=1))
    shown = [x.split(" ")[0] for x in lines if x.startswith("verifi")]
    assert len(set(shown)) == 2 and all(len(x) <= 80 for x in lines)
    header = next(x for x in lines if x.startswith("role "))
    row = next(x for x in lines if x.startswith("verifi"))
    assert header.index("reward") == row.index(" ", len(shown[0])) + 1  # the header still aligned


def test_a_best_and_a_worst_that_would_read_alike_show_the_digits_that_tell_them_apart(tmp_path):
    assert nums_apart([0.050005, 0.049995]) == ["0.05001", "0.04999"]  # 4 digits tell these apart
    assert nums_apart([0.0500005, 0.0499995]) == ["0.050001", "0.050000"]
    assert nums_apart([2.0, 2.0001]) == ["2.0000", "2.0001"]
    assert nums_apart([1.0, 1.0]) == ["1", "1"] and nums_apart([0.9, None]) == ["0.9", "-"]
    a, b = 0.1, math.nextafter(0.1, 1.0)
    assert len(set(nums_apart([a, b]))) == 2
    # the audit's run: best 0.050005 and worst 0.049995 both read 0.05
    run = tmp_path / "run"
    with RunWriter(run) as w:
        w.log_samples(0, {"sample_id": ["a", "b"], "reward": [0.050005, 0.049995], "completion": ["x", "y"]})
    live = LiveRun(run)
    live.update(*run_lister(run)())
    samples = extremes(live)
    assert [s.reward for s in samples] == [0.050005, 0.049995]
    lines = _plain(Screen(live, None, samples, interval=1))
    best = next(x for x in lines if x.startswith("best "))
    worst = next(x for x in lines if x.startswith("worst "))
    assert best.split()[1] != worst.split()[1]
    assert float(best.split()[1]) > float(worst.split()[1])
    assert best.index(" a ") == worst.index(" b ")  # the ids stay in one column
    screen = Screen(live, None, [SampleLine("best", 2.0, "a", "x"), SampleLine("worst", 1.0, "b", "y")], interval=1)
    assert [x.split()[1] for x in _plain(screen) if x.startswith(("best ", "worst "))] == ["2", "1"]


def test_the_trend_column_holds_the_trend_of_the_window_shown(tmp_path):
    """The widths are those of the figures drawn: a series flat over its last steps but huge before shows the
    window's trend whole, aligned with the header."""
    live = _live(tmp_path, {"a": [1e200 * (s + 1) for s in range(30)] + [0.5] * 10, "b": [0.1] * 40})
    lines = _plain(Screen(live, None, [], interval=1))
    assert all(len(x) <= 80 and "…" not in x for x in lines)
    a = next(x for x in lines if x.startswith("a "))
    header = next(x for x in lines if x.startswith("role "))
    # the KL column starts under its header
    assert "↓-3.6e+201" in a and header.index("KL") == a.index("▁", a.index("e+201"))
