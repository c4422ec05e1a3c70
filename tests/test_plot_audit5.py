"""``runlog plot``, fifth audit: ``--keys`` checks and draws the same names; ``--diff --what kl`` on runs
without KL says so. Expected values come from the written scalars lines (json), not from runlog."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install 'runlog[plot]'")

import runlog  # noqa: E402
from runlog import open_run  # noqa: E402
from runlog.plots import make_figure  # noqa: E402


def clock():
    """A writer's clock: one second later at each call."""
    return itertools.count(1_700_000_001.0).__next__


def make_run(root: Path, *, kl: bool, roles: bool = True) -> Path:
    """Steps 0-5, 4 samples each; scalars ``train/loss`` and ``grad_global_norm`` (which runlog aliases to
    ``grad/global_norm``, the name the figure, ``diff`` and W&B show)."""
    with runlog.RunWriter(root, roles=["solver"] if roles else None, process_index=0, clock=clock(),
                          durable=False) as w:  # fmt: skip
        for step in range(6):
            rows = []
            for i in range(4):
                r = 0.1 * step + 0.05 * i
                row: dict = {"reward": r, "sample_id": f"s{step}-{i}", "group_id": f"g{step}"}
                if roles:
                    row["roles"] = {"solver": {"reward": r, **({"kl": 0.01 * (step + 1)} if kl else {})}}
                rows.append(row)
            w.log_samples(step, rows)
            w.log_scalars(step, {"train/loss": 1.0 / (step + 1), "grad_global_norm": 0.5 + step})
    return root


def logged(root: Path, key: str) -> list[float]:
    lines = [json.loads(x) for x in (root / "scalars.p0.jsonl").read_text().splitlines() if x.strip()]
    return [x[key] for x in sorted(lines, key=lambda x: x["step"]) if key in x]


def drawn_lines(fig) -> list[list[float]]:
    return [list(map(float, line.get_ydata())) for ax in fig.axes for line in ax.get_lines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("plot5")
    return {
        "kl": make_run(base / "with_kl", kl=True),
        "nokl": make_run(base / "no_kl", kl=False),
        "nokl2": make_run(base / "no_kl_2", kl=False),
        "noroles": make_run(base / "no_roles", kl=False, roles=False),
        "noroles2": make_run(base / "no_roles_2", kl=False, roles=False),
    }


@pytest.mark.parametrize("glob", ["grad/*", "grad/global_norm", "grad_global_norm", "grad_*"])
def test_keys_by_the_shown_or_the_logged_name_draw_the_key(cli, runs, tmp_path, glob):
    """``--keys 'grad/*'`` (the figure's, diff's and W&B's name) was refused (exit 2), and
    ``--keys grad_global_norm`` (the name the error suggested) wrote an empty figure with exit 0. Both names
    now select the key: exit 0 and a panel with the logged values."""
    root = runs["kl"]
    out = tmp_path / "s.png"
    res = cli("plot", root, "--what", "scalars", "--keys", glob, "--window", "1", "-o", out)
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 0
    fig = make_figure(open_run(root), "scalars", keys=[glob], window=1)
    want = logged(root, "grad_global_norm")
    assert any(np.allclose(y, want) for y in drawn_lines(fig)), drawn_lines(fig)
    assert not any("no scalar metrics" in t.get_text() for ax in fig.axes for t in ax.texts)


def test_keys_matching_nothing_is_a_usage_error_naming_the_shown_keys(cli, runs, tmp_path):
    """A glob that matches no key: exit 2, one line that lists the keys by the names the figure shows."""
    res = cli("plot", runs["kl"], "--what", "scalars", "--keys", "nokey*", "-o", tmp_path / "s.png")
    assert res.exit_code == 2
    assert res.stderr.startswith("Error: --keys 'nokey*': matches none of the 2 scalar key(s)")
    assert "grad/global_norm" in res.stderr and "grad_global_norm" not in res.stderr
    assert not (tmp_path / "s.png").exists()


@pytest.mark.parametrize("pair", [("nokl", "nokl2"), ("noroles", "noroles2")])
def test_diff_kl_of_runs_without_kl_says_there_is_no_kl(cli, runs, tmp_path, pair):
    """Two runs without KL share every step and role (``--what reward`` draws), but ``--what kl`` said
    "nothing in common". Now: exit 2, saying that neither run has KL values."""
    a, b = (runs[k] for k in pair)
    ok = cli("plot", a, "--diff", b, "--what", "reward", "-o", tmp_path / "r.png")
    assert ok.exit_code == 0, ok.output
    res = cli("plot", a, "--diff", b, "--what", "kl", "-o", tmp_path / "k.png")
    assert res.exit_code == 2
    assert "neither run has KL values" in res.stderr and "nothing in common" not in res.stderr, res.stderr


def test_diff_kl_names_the_run_without_kl(cli, runs, tmp_path):
    """One run with KL, one without: the message names the one without."""
    res = cli("plot", runs["kl"], "--diff", runs["nokl"], "--what", "kl", "--name", "A", "--name", "B",
              "-o", tmp_path / "k.png")  # fmt: skip
    assert res.exit_code == 2
    assert "B has no KL values" in res.stderr and "nothing in common" not in res.stderr, res.stderr
    both = cli("plot", runs["kl"], "--diff", runs["kl"], "--what", "kl", "-o", tmp_path / "kk.png")
    assert both.exit_code == 0, both.output
