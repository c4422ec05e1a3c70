"""``runlog plot A --diff B`` and ``runlog report B --against A``: the overlay figure (one line per run per role
panel, the baseline dashed, a band each) and the report's comparison section (both run names, the per-role
verdicts, hostile names escaped)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the plots need matplotlib: pip install 'runlog[plot]'")

from typer.testing import CliRunner  # noqa: E402

from runlog import open_run  # noqa: E402
from runlog.analysis.diff import DiffOptions, diff_runs  # noqa: E402
from runlog.cli.app import app  # noqa: E402
from runlog.plots.diff import diff_figure  # noqa: E402
from test_diff import LIFT, write_run  # noqa: E402

HOSTILE = 'B<img src=x onerror=alert(1)>"$x$'


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("diffplots")
    a = write_run(root / "A", seed=1)
    b = write_run(root / HOSTILE, seed=2, lift=LIFT)
    c = write_run(root / "C", seed=3, stride=2)
    return a, b, c


def test_overlay_has_one_line_per_run_per_role_panel_and_the_baseline_dashed(runs) -> None:
    a, b, c = runs
    d = diff_runs([open_run(p) for p in runs], options=DiffOptions(boot=200))
    fig = diff_figure(d, "reward")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert sorted(ax.get_title() for ax in axes) == ["judge", "solver"]
    for ax in axes:
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        assert set(lines) == {"A (baseline)", HOSTILE.replace("$", r"\$"), "C"}  # mathtext never parses a name
        assert lines["A (baseline)"].get_linestyle() == "--"
        # drawn over the others: where the runs agree, the dashed baseline still shows
        assert all(
            lines["A (baseline)"].get_zorder() > ln.get_zorder() for k, ln in lines.items() if k != "A (baseline)"
        )
        assert all(ln.get_linestyle() == "-" for k, ln in lines.items() if k != "A (baseline)")
        assert len({ln.get_color() for ln in lines.values()}) == 3  # one colour per run
        assert len(ax.collections) == 3  # a confidence band per run
        # C logged every other step: only the steps it shares with the baseline are drawn
        assert list(lines["C"].get_xdata()) == list(range(0, 40, 2))
    kl = diff_figure(d, "kl")
    assert all(len(ax.get_lines()) == 3 for ax in kl.axes if ax.get_visible())


def test_the_series_only_diff_draws_what_the_whole_diff_draws(runs) -> None:
    """``plot --diff`` skips the windows, the bootstrap and the scalars (``series_only``): the series it draws
    and the notes on what is compared are those of the whole diff."""
    from runlog.analysis.diff import diff_series

    opened = [open_run(p) for p in runs]
    whole = diff_runs(opened, options=DiffOptions(boot=200))
    lean = diff_runs(opened, options=DiffOptions(boot=200, series_only=True))
    for metric in ("reward", "kl"):
        assert diff_series(lean, metric).equals(diff_series(whole, metric))
    assert lean.overlap.equals(whole.overlap) and lean.common == whole.common
    assert set(lean.notes) <= set(whole.notes) and lean.notes
    assert lean.points.height == lean.roles.height == 0 < whole.points.height


def test_plot_diff_writes_a_png(runs, tmp_path: Path) -> None:
    a, b, _ = runs
    out = tmp_path / "diff.png"
    res = CliRunner().invoke(app, ["plot", str(a), "--diff", str(b), "--what", "reward", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = CliRunner().invoke(app, ["plot", str(a), "--diff", str(b), "--what", "hist", "-o", str(out)])
    assert res.exit_code == 2 and "--diff draws --what reward or kl" in res.output


def test_report_against_has_the_comparison_section_escaped(runs, tmp_path: Path) -> None:
    a, b, _ = runs
    out = tmp_path / "r.html"
    res = CliRunner().invoke(app, ["report", str(b), "--against", str(a), "-o", str(out)])
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert "<img src=x" not in page
    start = page.index('<h2 id="comparison">')
    section = page[start : page.index('<h2 id="findings">')]
    assert html.escape(HOSTILE, quote=True) in section and "<b>A</b>" in section
    rows = {
        re.sub("<[^>]+>", "", cells[1]): re.sub("<[^>]+>", "", cells[7])
        for cells in (re.findall(r"<td[^>]*>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", section))
        if cells
    }
    assert rows == {"solver": "ahead", "judge": "tie"}
    assert 'id="comparison-reward"' in section and 'id="comparison-kl"' in section
    assert 'href="#comparison"' in page


def test_plot_diff_names_label_the_runs_as_diff_does(runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--name`` labels the legend and the title, the baseline first; runs past the names keep theirs."""
    import runlog.plots.diff as plots_diff

    a, b, c = runs
    drawn = []
    real = plots_diff.diff_figure

    def keep(d, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        fig = real(d, *args, **kwargs)
        drawn.append(fig)
        return fig

    monkeypatch.setattr(plots_diff, "diff_figure", keep)
    out = tmp_path / "named.png"
    argv = ["plot", str(a), "--diff", str(b), "--diff", str(c), "--name", "base", "-n", "<b>lifted</b>", "-o", str(out)]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 0, res.output
    [fig] = drawn
    for ax in (ax for ax in fig.axes if ax.get_visible()):
        assert [ln.get_label() for ln in ax.get_lines()] == ["base (baseline)", "<b>lifted</b>", "C"]
    assert fig._suptitle.get_text().endswith("base vs <b>lifted</b> vs C")
    # As diff --name: more names than runs, and --name without --diff, are usage errors (exit 2, one line).
    res = CliRunner().invoke(app, ["plot", str(a), "--diff", str(b), "-n", "x", "-n", "y", "-n", "z", "-o", str(out)])
    assert res.exit_code == 2 and "--name given 3 times for 2 runs" in res.output
    res = CliRunner().invoke(app, ["plot", str(a), "--name", "x", "-o", str(out)])
    assert res.exit_code == 2 and "--name labels the runs of --diff" in res.output


def test_the_overlay_shows_a_split_where_runs_compare(tmp_path: Path) -> None:
    """debate_grpo against flink_mixed: their eval splits share one step and no role, so the figure shows
    train (both runs drawn in every panel); a run without samples gives one panel saying why, wrapped."""
    from conftest import ROOT

    runs = [open_run(ROOT / "sample_runs" / name) for name in ("debate_grpo", "flink_mixed")]
    fig = diff_figure(diff_runs(runs, options=DiffOptions(boot=100)), "reward")
    assert "(train)" in fig._suptitle.get_text()
    for ax in (ax for ax in fig.axes if ax.get_visible()):
        assert [ln.get_label() for ln in ax.get_lines()] == ["debate_grpo (baseline)", "flink_mixed"]
    empty = [open_run(ROOT / "sample_runs" / name) for name in ("debate_grpo", "jaxarc")]
    fig = diff_figure(diff_runs(empty, options=DiffOptions(boot=100)), "reward")
    [text] = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "jaxarc has no samples" in text and "layouts differ" not in text
    assert max(len(line) for line in text.splitlines()) <= 60


def test_report_against_compares_the_reports_split_only(tmp_path: Path) -> None:
    """The report covers one split (train by default), but its comparison listed eval's rows too."""
    from runlog import RunWriter

    for name, lift in (("base", 0.0), ("cand", 0.1)):
        with RunWriter(tmp_path / name, roles=["solver"], durable=False) as w:
            for s in range(12):
                r = [0.2 + lift + 0.01 * i for i in range(8)]
                w.log_samples(s, {"reward": r, "solver_reward": r}, split="train")
                if s % 4 == 0:
                    w.log_samples(s, {"reward": r, "solver_reward": r}, split="eval")
    out = tmp_path / "r.html"
    res = CliRunner().invoke(
        app, ["report", str(tmp_path / "cand"), "--against", str(tmp_path / "base"), "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    page = out.read_text()
    section = page[page.index('<h2 id="comparison">') : page.index('<h2 id="findings">')]
    splits = {
        re.sub("<[^>]+>", "", cells[0])
        for cells in (re.findall(r"<td[^>]*>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", section))
        if cells
    }
    assert splits == {"train"}
