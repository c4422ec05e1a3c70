"""``runlog plot``: real images of the promised size, not blank, in the format the suffix names; missing
data is said in the picture, not an error; bad options are usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install 'runlog[plot]'")

from matplotlib.image import imread  # noqa: E402

from runlog import open_run  # noqa: E402
from runlog.plots import WHATS, RunSeries, make_figure, save_figure  # noqa: E402
from runlog.plots.figures import DPI  # noqa: E402
from test_doctor import make_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] / "sample_runs"


@pytest.fixture(scope="module")
def blowup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("plot_runs"), "kl_blowup")


def pixels(path: Path):
    img = imread(str(path))
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    return img


def assert_not_blank(path: Path) -> None:
    img = pixels(path)[..., :3]
    assert img.std() > 0.05, f"{path} looks blank (pixel std {img.std():.4f})"
    # More than a frame and a title: a good share of the pixels are neither white nor one colour.
    assert (img.mean(axis=2) < 0.95).mean() > 0.01


@pytest.mark.parametrize("what", WHATS)
def test_every_plot_is_a_real_png_of_the_right_size(tmp_path: Path, what: str, blowup: Path) -> None:
    series = RunSeries(open_run(blowup))
    fig = make_figure(series, what)
    out = save_figure(fig, tmp_path / f"{what}.png")
    w, h = fig.get_size_inches()
    img = pixels(out)
    assert img.shape[:2] == (round(h * DPI), round(w * DPI))
    assert_not_blank(out)


def test_cli_writes_png_svg_pdf_by_suffix(cli, tmp_path: Path) -> None:
    run = ROOT / "debate_grpo"
    for suffix, magic in ((".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")):
        out = tmp_path / f"kl{suffix}"
        res = cli("plot", run, "--what", "kl", "-o", out)
        assert res.exit_code == 0, res.output
        assert out.read_bytes().startswith(magic)
        assert res.stdout == "" and res.stderr.splitlines()[-1].startswith(f"wrote {out} (")
    assert b"<svg" in (tmp_path / "kl.svg").read_bytes()


def test_histograms_at_chosen_steps(cli, tmp_path: Path) -> None:
    out = tmp_path / "hist.png"
    res = cli("plot", ROOT / "debate_grpo", "--what", "hist", "--steps", "0,16,31", "-o", out)
    assert res.exit_code == 0, res.output
    img = pixels(out)
    assert img.shape[1] > img.shape[0]  # three panels side by side
    assert_not_blank(out)
    bad = cli("plot", ROOT / "debate_grpo", "--what", "hist", "--steps", "0,999", "-o", out)
    assert bad.exit_code == 2 and "999" in bad.stderr


def test_missing_data_is_drawn_as_a_message_not_an_error(cli, tmp_path: Path) -> None:
    """Flink debug data has no completion texts and no prompt groups; JaxARC has no samples at all."""
    for run, what in ((ROOT / "flink_mixed", "diversity"), (ROOT / "flink_mixed", "format"), (ROOT / "jaxarc", "kl")):
        out = tmp_path / f"{run.name}-{what}.png"
        res = cli("plot", run, "--what", what, "-o", out)
        # The image is written either way; a run with no sample file holds nothing a KL figure draws from (exit 1,
        # as docs/cli.md says; a figure of the note alone passed a CI step as a plot of the run).
        assert res.exit_code == (1 if run.name == "jaxarc" else 0), res.output
        assert_not_blank(out)
    res = cli("plot", ROOT / "jaxarc", "--what", "scalars", "--keys", "reward_*", "-o", tmp_path / "s.png")
    assert res.exit_code == 0, res.output


def test_usage_errors(cli, tmp_path: Path) -> None:
    run = ROOT / "debate_grpo"
    res = cli("plot", run, "--what", "reward", "-o", tmp_path / "x.jpg")
    assert res.exit_code == 2 and ".jpg" in res.stderr and res.stderr.startswith("Error:")
    res = cli("plot", run, "--what", "nonsense", "-o", tmp_path / "x.png")
    assert res.exit_code == 2 and "--what" in res.stderr
    res = cli("plot", run, "--what", "reward", "--by", "group", "-o", tmp_path / "x.png")
    assert res.exit_code == 2
    assert not (tmp_path / "x.png").exists()


def test_infinite_rewards_are_counted_not_drawn_and_nothing_fails(tmp_path: Path, cli) -> None:
    """An inf reward made the histogram's range infinite: ``plot --what hist`` and ``report`` failed with an
    internal error (exit 3), and ``diff`` printed numpy's raw RuntimeWarning. The finite values are drawn,
    the infinite ones counted in each step's panel (-inf at 4 steps, +inf at 2: 6; in the panels since a title
    is cut to its figure), and diff is quiet."""
    from runlog import RunWriter

    with RunWriter(tmp_path / "run", roles=["solver"], durable=False) as w:
        for step in range(4):
            rewards = [float("inf") if step % 2 == 0 else 0.9, -float("inf")] + [0.1 * i for i in range(6)]
            w.log_samples(
                step,
                [
                    {"reward": r, "group_id": f"g{i // 4}", "roles": {"solver": {"reward": r, "kl": 0.01}}}
                    for i, r in enumerate(rewards)
                ],
            )
    fig = make_figure(RunSeries(open_run(tmp_path / "run")), "hist", steps=[0, 1, 2, 3])
    notes = [t.get_text() for ax in fig.axes[:4] for t in ax.texts if t.get_gid() == "runlog-note"]
    assert notes == ["not drawn: 1 +inf, 1 -inf reward(s)", "not drawn: 1 -inf reward(s)"] * 2
    res = cli("plot", tmp_path / "run", "--what", "hist", "-o", tmp_path / "h.png")
    assert res.exit_code == 0 and "internal error" not in res.stderr, res.stderr
    res = cli("report", tmp_path / "run", "-o", tmp_path / "r.html")
    assert res.exit_code in (0, 1) and "internal error" not in res.stderr, res.stderr
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = cli("diff", tmp_path / "run", tmp_path / "run")
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert res.exit_code == 0 and "Traceback" not in res.output


def test_plotted_scalars_merge_process_shards_as_summarize_does(tmp_path: Path) -> None:
    """Two processes log ``train/reward/mean`` at each step, one over 30 samples (1.0), one over 10 (0.0):
    the plot and the report drew 0.5, a plain mean, where ``summarize --scalars`` says 0.75 (the
    ``__count`` weights, seed 002's convention); a shard's NaN made no NaN either."""
    import json
    import math

    from runlog.analysis.scalars import summarize_scalars
    from runlog.plots import scalar_frame

    root = tmp_path / "run"
    root.mkdir()
    for p, (value, count, loss) in enumerate([(1.0, 30, 1.0), (0.0, 10, float("nan"))]):
        lines = [
            {"step": s, "time": 1.0 + s, "train/reward/mean": value, "train/reward/mean__count": count, "loss2": loss}
            for s in range(3)
        ]
        (root / f"scalars.p{p}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    run = open_run(root)
    frame = scalar_frame(run)
    assert frame["key"].unique().sort().to_list() == ["loss2", "train/reward/mean"]  # companions left out
    reward = frame.filter(frame["key"] == "train/reward/mean")["value"].to_list()
    assert reward == [0.75, 0.75, 0.75] == [(1.0 * 30 + 0.0 * 10) / 40] * 3
    assert all(math.isnan(v) for v in frame.filter(frame["key"] == "loss2")["value"].to_list())
    summary = summarize_scalars(run, aliases={})
    assert summary.filter(summary["key"] == "train/reward/mean")["mean"].to_list() == [0.75]


def test_line_plots_say_what_they_cannot_draw_and_average_as_summarize(tmp_path: Path) -> None:
    """A role's mean reward is +inf at step 2: the line plots dropped it without a word, and the moving
    average drew the mean of the finite steps where ``summarize --window`` prints inf. Now the average has
    a gap wherever summarize's is not finite, equals it elsewhere, and the panel says what was not drawn."""
    import json
    import math

    from runlog import RunWriter
    from runlog.analysis.summarize import summarize

    with RunWriter(tmp_path / "run", roles=["solver"], durable=False) as w:
        for step in range(6):
            rewards = [float("inf") if step == 2 else 0.5, 0.1 * step, 0.2]
            w.log_samples(step, {"reward": rewards, "solver_reward": rewards, "solver_kl": [0.01] * 3})
            w.log_scalars(step, {"loss": float("nan") if step == 4 else 1.0 / (1 + step)})
    run = open_run(tmp_path / "run")
    want = summarize(run, ["step", "role"], window=3)["reward_mean_ma"].to_list()
    assert math.isinf(want[2]) and math.isinf(want[4]) and math.isfinite(want[5])
    fig = make_figure(run, "reward", window=3)
    [ax] = fig.axes
    [avg] = [line for line in ax.get_lines() if line.get_label() == "solver"]
    for got, expect in zip(avg.get_ydata(), want, strict=True):
        assert (math.isnan(got) and not math.isfinite(expect)) or got == pytest.approx(expect, rel=1e-12)
    assert [t.get_text() for t in ax.texts] == ["not drawn: 1 value(s) +inf (first: step 2)"]
    fig = make_figure(run, "scalars", window=1)
    assert "not drawn: 1 value(s) NaN (first: step 4)" in [t.get_text() for a in fig.axes for t in a.texts]
    lines = [json.loads(x) for x in (tmp_path / "run" / "scalars.p0.jsonl").read_text().splitlines()]
    assert sum(1 for x in lines if isinstance(x.get("loss"), float) and math.isnan(x["loss"])) == 1


def test_diversity_panels_say_over_all_texts_when_no_group_holds_two(tmp_path: Path) -> None:
    """Each sample its own prompt group: the figure said "per group" / "within groups" where the figures are
    over all texts of a step (what ``metrics diversity`` notes)."""
    from runlog import RunWriter
    from runlog.analysis.texts import diversity_frame

    with RunWriter(tmp_path / "run", roles=["solver"], durable=False) as w:
        for step in range(3):
            texts = [f"answer {step} {i}" if i else "same words" for i in range(4)]
            w.log_samples(
                step, {"reward": [0.5] * 4, "completion": texts, "group_id": [f"g{step}-{i}" for i in range(4)]}
            )
    run = open_run(tmp_path / "run")
    div = diversity_frame(run)
    assert "groups" not in div.columns or div["groups"].is_null().all()  # what metrics' note is said from
    fig = make_figure(run, "diversity", window=1)
    titles = [a.get_title() for a in fig.axes]
    assert "(all texts of a step: no group of two)" in fig._suptitle.get_text()
    assert not any("group" in t for t in titles), titles
