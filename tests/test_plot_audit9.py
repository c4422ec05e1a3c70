"""Ninth audit, ``plot``: what a figure draws equals the data (read here with pyarrow and numpy, never with
runlog's own code), and what it does not draw is said in the panel, never cut out of a title or left out.

- Text drawn in a panel that carries data (a speaker's name, a ``--spec``) is escaped as every label is: a
  speaker ``$x^{$`` failed the drawing (exit 3), ``$\\frac{a}{b}$`` was typeset as a fraction.
- KL on a log axis: the moving average is over the real values (zeros included); only the points <= 0 are
  left out of the drawing, and counted in the panel (zeros were dropped before the average: 3x too high).
  Scalars on a log axis do the same (an lr warm-up logged as 0).
- A line breaks at a gap in the steps (no line from step 9 to step 20), the panel names the gap, and the
  moving average is labelled "logged steps", as ``summarize --window`` documents it.
- Format's "first failing rule" bars total the share of texts that fail (7 rules: 0.875, not 0.75).
- NaN and +-inf rewards are counted in the panels (a histogram's title, cut to its figure, lost them); a role
  whose rewards are all NaN is named.
- ``--diff``: a compared run is drawn only on the steps where the baseline has a value of that role; a step
  mean of +-inf is said.
- ``--what hist --steps N`` of an unreadable file names the file (it said the step did not exist).
- ``--by none`` with a figure that has no pooled form is a usage error; the help says the window's cap and
  which SD the band is; ``-o FILE/x.png`` where FILE is a file says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install 'runlog[plot]'")

import runlog  # noqa: E402
from runlog import open_run  # noqa: E402
from runlog.analysis.diff import DiffOptions, diff_runs  # noqa: E402
from runlog.plots import figure_png, make_figure  # noqa: E402
from runlog.plots.diff import diff_figure  # noqa: E402

NOTE = "runlog-note"  # figures.NOTE_GID: the panel's note of what it does not draw


def notes(ax) -> str:  # noqa: ANN001
    """The panel's note as shown (``$`` unescaped)."""
    return "\n".join(t.get_text().replace(r"\$", "$") for t in ax.texts if t.get_gid() == NOTE)


def texts(ax) -> list[str]:  # noqa: ANN001
    return [t.get_text() for t in ax.texts]


def named_line(ax, label: str) -> np.ndarray:  # noqa: ANN001
    [line] = [x for x in ax.lines if x.get_label() == label]
    return line.get_xydata()


def trailing_mean(values: list[float], w: int) -> np.ndarray:
    """The mean of the last ``w`` values (logged steps), shorter at the start."""
    return np.array([np.mean(values[max(0, i - w + 1) : i + 1]) for i in range(len(values))])


def raw_samples(root: Path, split: str = "train") -> list[dict]:
    """Every sample row of the run's Parquet files of ``split``, read with pyarrow."""
    rows = []
    for f in sorted((root / "samples" / split).glob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return rows


def role_means(root: Path, role: str, key: str = "reward", split: str = "train") -> dict[int, float]:
    """Per step: the mean of ``role``'s finite-or-inf values (null and NaN left out), with numpy."""
    per: dict[int, list[float]] = {}
    for row in raw_samples(root, split):
        for r in row["roles"] or []:
            if r["role"] == role and r[key] is not None and not math.isnan(r[key]):
                per.setdefault(row["step"], []).append(r[key])
    return {s: float(np.mean(v)) for s, v in sorted(per.items())}


# ---- runs built here ------------------------------------------------------------------------------------------


def speaker_run(root: Path, speaker: str) -> Path:
    """Messages with no assistant turn: each names its speaker in ``role`` (the note names the speakers)."""
    (root / "samples" / "train").mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "run_id": "d", "name": "d"}))
    msg = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    for s in range(3):
        t = pa.table(
            {
                "schema_version": pa.array([2] * 4, pa.int32()),
                "step": [s] * 4,
                "split": ["train"] * 4,
                "sample_id": [f"s{s}-{i}" for i in range(4)],
                "group_id": ["g"] * 4,
                "reward": [1.0, 0.0, 1.0, 0.5],
                "messages": pa.array(
                    [[{"role": "user", "content": "q"}, {"role": speaker, "content": f"answer {i}"}] for i in range(4)],
                    msg,
                ),
            }
        ).replace_schema_metadata({"runlog.schema_version": "2"})
        pq.write_table(t, root / "samples" / "train" / f"step_{s:08d}.p0.parquet")
    return root


def kl_zero_run(root: Path) -> Path:
    """KL exactly 0 at steps 0-3 (the policy is its reference), then 1e-4 * 10^(k/2): a log axis; one role
    whose rewards are all NaN."""
    (root / "samples" / "train").mkdir(parents=True)
    meta = {"format": "runlog", "schema_version": 2, "run_id": "b", "name": "b", "roles": ["solver", "allnan"]}
    (root / "run.json").write_text(json.dumps(meta))
    role_t = pa.list_(pa.struct([("role", pa.string()), ("reward", pa.float64()), ("kl", pa.float64())]))
    schema = pa.schema(
        [
            ("schema_version", pa.int32()),
            ("step", pa.int64()),
            ("split", pa.string()),
            ("sample_id", pa.string()),
            ("reward", pa.float64()),
            ("roles", role_t),
        ],
        metadata={"runlog.schema_version": "2"},
    )
    for s in range(12):
        kl = 0.0 if s < 4 else 10 ** (-4 + (s - 4) * 0.5)
        roles = [
            {"role": "solver", "reward": float(s), "kl": kl},
            {"role": "allnan", "reward": float("nan"), "kl": None},
        ]
        t = pa.table(
            {
                "schema_version": pa.array([2], pa.int32()),
                "step": [s],
                "split": ["train"],
                "sample_id": [f"s{s}"],
                "reward": [float(s)],
                "roles": pa.array([roles], role_t),
            },
            schema=schema,
        )
        pq.write_table(t, root / "samples" / "train" / f"step_{s:08d}.p0.parquet")
    return root


GAP_STEPS = list(range(10)) + list(range(20, 30))


def gap_run(root: Path) -> Path:
    """Train steps 0..9 and 20..29 (10..19 missing); role ``late`` from step 5; a NaN solver reward at step 3
    and a +inf one at step 4."""
    rng = np.random.default_rng(0)
    with runlog.RunWriter(root, name="gaps", roles=["solver", "late"], durable=False) as w:
        for s in GAP_STEPS:
            rows = []
            for i in range(8):
                sr = float(rng.normal(s / 10, 0.3))
                roles = {"solver": {"reward": sr, "kl": 0.01 * (s + 1)}}
                if s >= 5:
                    roles["late"] = {"reward": float(rng.normal(-1, 0.1)), "kl": 0.1}
                if i == 0 and s == 3:
                    roles["solver"]["reward"] = float("nan")
                if i == 1 and s == 4:
                    roles["solver"]["reward"] = float("inf")
                rows.append({"reward": sr, "roles": roles, "group_id": f"g{s}-{i // 4}"})
            w.log_samples(s, rows)
    return root


def late_run(root: Path) -> Path:
    """Steps 0..29 without a gap, role ``late`` from step 0 (the gap run's ``late`` starts at step 5)."""
    rng = np.random.default_rng(1)
    with runlog.RunWriter(root, name="other", roles=["solver", "late"], durable=False) as w:
        for s in range(30):
            w.log_samples(
                s,
                [
                    {
                        "reward": 0.0,
                        "roles": {
                            "solver": {"reward": float(rng.normal(s / 10 + 0.5, 0.3)), "kl": 0.02},
                            "late": {"reward": float(rng.normal(0, 0.2)), "kl": 0.2},
                        },
                    }
                    for _ in range(6)
                ],
            )
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    from conftest import own_probe_cache

    base = tmp_path_factory.mktemp("plot9")
    with own_probe_cache(tmp_path_factory):
        return {
            "gaps": gap_run(base / "gaps"),
            "other": late_run(base / "other"),
            "kl0": kl_zero_run(base / "kl0"),
        }


# ---- 1: data in a panel's text is escaped, and fits the panel ----------------------------------------------------


@pytest.mark.parametrize("what", ["diversity", "format"])
def test_a_speaker_of_broken_mathtext_is_drawn_literally(tmp_path, cli, what):
    """``$x^{$`` failed at drawing (exit 3): the note is drawn as written, and the command exits 0."""
    root = speaker_run(tmp_path / "d", "$x^{$")
    fig = make_figure(open_run(root), what)
    assert figure_png(fig).startswith(b"\x89PNG")
    [ax] = [a for a in fig.axes if a.texts]
    [shown] = texts(ax)
    assert r"\$x^{\$" in shown and "$x^{$" in shown.replace(r"\$", "$")
    res = cli("plot", root, "--what", what, "-o", tmp_path / "x.png")
    assert res.exit_code == 0, res.output


def test_a_speaker_of_valid_mathtext_is_not_typeset_and_the_note_fits_its_panel(tmp_path):
    root = speaker_run(tmp_path / "d", r"$\frac{a}{b}$")
    fig = make_figure(open_run(root), "diversity")
    [ax] = fig.axes
    [t] = ax.texts
    assert r"\$\frac{a}{b}\$" in t.get_text()  # every "$" escaped: mathtext never parses it
    figure_png(fig)
    renderer = fig.canvas.get_renderer()
    box, panel = t.get_window_extent(renderer), fig.bbox
    assert panel.x0 <= box.x0 and box.x1 <= panel.x1  # wrapped: it ran past the figure on one line
    assert t.get_text().count("\n") >= 1


def test_a_spec_with_mathtext_in_a_one_step_split_is_drawn_literally(tmp_path):
    """``one_step_words`` carries the ``--spec`` as given."""
    with runlog.RunWriter(tmp_path / "one", name="one", durable=False) as w:
        w.log_samples(0, [{"reward": 1.0, "completion": f"<think>a</think><answer>{i}</answer>"} for i in range(4)])
    from runlog.plots import RunSeries

    spec = tmp_path / "sp$x^{$.toml"  # the --spec as given is in the words: a path with "$" in it
    spec.write_text('name = "tags"\nrequire = ["<answer>"]\n')
    s = RunSeries(open_run(tmp_path / "one"), format_spec=str(spec))
    fig = make_figure(s, "format")
    figure_png(fig)  # it failed at drawing
    [shown] = texts(fig.axes[0])
    assert "sp$x^{$.toml" in shown.replace("\n", "").replace(r"\$", "$")
    assert "$" not in shown.replace(r"\$", "")


# ---- 2 and 13: a log axis averages the real values, and says what it does not draw ---------------------------------


def test_kl_on_a_log_axis_averages_the_zeros_and_says_they_are_not_drawn(runs):
    root = runs["kl0"]
    truth = role_means(root, "solver", "kl")
    steps = list(truth)
    ma = trailing_mean(list(truth.values()), 3)
    fig = make_figure(open_run(root), "kl", window=3)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    xy = named_line(ax, "solver")
    assert xy[:, 0].tolist() == steps
    drawn = xy[:, 1]
    assert np.isnan(drawn[:4]).all()  # MA of zeros: 0, no place on a log axis
    np.testing.assert_allclose(drawn[4:], ma[4:], rtol=1e-12)  # 3.33e-5 at step 4 (it drew 1e-4)
    assert "log axis: 4 step value(s) <= 0 not drawn (first: step 0)" in notes(ax)
    assert "3 logged steps" in ax.get_ylabel()


def test_scalars_on_a_log_axis_say_the_zeros_they_do_not_draw(tmp_path):
    root = tmp_path / "s"
    root.mkdir()
    (root / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "run_id": "s", "name": "s"}))
    lr = [0.0 if s < 3 else 1e-7 * 10 ** (s / 5) for s in range(20)]
    (root / "scalars.p0.jsonl").write_text("".join(json.dumps({"step": s, "lr": v}) + "\n" for s, v in enumerate(lr)))
    fig = make_figure(open_run(root), "scalars", keys=["lr"], window=1)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    [line] = [x for x in ax.lines if x.get_label() == "lr"]
    xy = line.get_xydata()
    assert xy[:, 0].tolist() == list(range(3, 20))  # the zeros are not drawn at the bottom of the axis ...
    np.testing.assert_allclose(xy[:, 1], lr[3:], rtol=1e-12)
    assert "3 step value(s) <= 0 not drawn" in notes(ax)  # ... and are said


# ---- 3: gaps break the line; the window counts logged steps ----------------------------------------------------------


def test_a_gap_in_the_steps_breaks_the_line_and_is_named(runs):
    root = runs["gaps"]
    truth = role_means(root, "late")
    ma = trailing_mean(list(truth.values()), 3)  # over the last 3 logged steps, as summarize --window
    fig = make_figure(open_run(root), "reward", window=3)
    ax = fig.axes[0]
    xy = named_line(ax, "late")
    real = ~np.isnan(xy[:, 1])
    assert xy[real, 0].tolist() == list(truth)
    np.testing.assert_allclose(xy[real, 1], ma, rtol=1e-12)
    # Between step 9 and step 20, a break (a NaN point), not a line.
    at = xy[:, 0].tolist().index(9.0)
    assert np.isnan(xy[at + 1, 1]) and xy[at + 2, 0] == 20.0
    assert ax.get_ylabel() == "mean reward (moving average over 3 logged steps)"
    assert "gap: steps 10..19 missing" in notes(ax)
    # The raw line breaks there too.
    raw = [x.get_xydata() for x in ax.lines if x.get_label().startswith("_")]
    for xy in raw:
        if 9.0 in xy[:, 0] and 20.0 in xy[:, 0]:
            i = xy[:, 0].tolist().index(9.0)
            assert np.isnan(xy[i + 1, 1])


def test_the_band_is_the_rolling_sd_of_the_step_means_and_absent_over_one_step(runs):
    root = runs["gaps"]
    truth = list(role_means(root, "late").values())
    fig = make_figure(open_run(root), "reward", window=3)
    ax = fig.axes[0]
    late = named_line(ax, "late")
    colour = [x for x in ax.lines if x.get_label() == "late"][0].get_color()
    [band] = [c for c in ax.collections if np.allclose(c.get_facecolor()[0][:3], _rgb(colour))]
    xs = np.concatenate([p.vertices[:, 0] for p in band.get_paths()])
    assert late[0, 0] not in xs  # one value in the window: no band of width 0 at the first step
    sd = np.std(truth[:2], ddof=1)  # step 6: the SD of the first two step means
    top = max(v[1] for p in band.get_paths() for v in p.vertices if v[0] == 6.0)
    np.testing.assert_allclose(top, np.mean(truth[:2]) + sd, rtol=1e-12)


def _rgb(colour: str) -> tuple[float, ...]:
    from matplotlib.colors import to_rgb

    return to_rgb(colour)


# ---- 4: format's bars total the failing share ------------------------------------------------------------------------

SEVEN = {
    "one_think": "no tags",
    "one_answer": "<think>a</think>",
    "order": "x <think>a</think><answer>b</answer>",
    "think_not_empty": "<think> </think><answer>b</answer>",
    "answer_not_empty": "<think>a</think><answer> </answer>",
    "cite_outside_answer": "<think><cite>a</cite></think><answer>b</answer>",
    "cite_unbalanced": "<think>a</think><answer><cite>b</answer>",
    "pass": "<think>a</think><answer>b</answer>",
}


def test_the_first_failing_rule_bars_total_the_share_that_fails(tmp_path):
    with runlog.RunWriter(tmp_path / "f", name="f", durable=False) as w:
        for s in range(3):
            w.log_samples(s, [{"reward": 1.0, "completion": t} for t in SEVEN.values()])
    fig = make_figure(open_run(tmp_path / "f"), "format", window=1)
    tops: dict[int, float] = {}
    for p in fig.axes[1].patches:
        x = round(p.get_x() + p.get_width() / 2)
        tops[x] = tops.get(x, 0.0) + p.get_height()
    assert tops == pytest.approx({0: 7 / 8, 1: 7 / 8, 2: 7 / 8})  # 0.75: a seventh rule was left out
    adherence = named_line(fig.axes[0], "adherence")[:, 1]
    np.testing.assert_allclose(adherence, 1 / 8)
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "think_not_empty" in legend or any(x.startswith("other (") for x in legend)


def test_more_failing_rules_than_bars_are_in_an_other_bar(tmp_path):
    """Nine rules, each first to fail for one text: six bars and "other (3 rules)" (custom specs can have more
    rules than bars)."""
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "nine"\nrequire = [' + ", ".join(f'"t{i}x"' for i in range(9)) + "]\n")
    texts9 = [" ".join(f"t{j}x" for j in range(i)) for i in range(10)]  # text i fails rule i first (9: passes)
    with runlog.RunWriter(tmp_path / "f", name="f", durable=False) as w:
        for s in range(2):
            w.log_samples(s, [{"reward": 1.0, "completion": t} for t in texts9])
    from runlog.plots import RunSeries

    s = RunSeries(open_run(tmp_path / "f"), format_spec=str(spec))
    fmt = s.format
    assert fmt is not None
    fig = make_figure(s, "format", window=1)
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    failing = sum(c.startswith("failed/") and bool(fmt[c].sum()) for c in fmt.columns)
    assert failing == 9
    assert legend[-1] == "other (3 rules)" and len(legend) == 7
    tops: dict[int, float] = {}
    for p in fig.axes[1].patches:
        x = round(p.get_x() + p.get_width() / 2)
        tops[x] = tops.get(x, 0.0) + p.get_height()
    share = 1 - fmt["adherence"].to_numpy()
    assert list(tops.values()) == pytest.approx(share.tolist())


# ---- 5 and 6: what is not drawn is said in the panels ---------------------------------------------------------------


def _counts(root: Path, step: int) -> tuple[int, int]:
    """NaN and +inf role rewards at ``step``, with pyarrow."""
    vals = [r["reward"] for row in raw_samples(root) if row["step"] == step for r in row["roles"] or []]
    vals = [v for v in vals if v is not None]
    return sum(math.isnan(v) for v in vals), sum(v == math.inf for v in vals)


@pytest.mark.parametrize("steps", [[4], [3, 4], [3, 4, 5]])
def test_a_histogram_says_its_nan_and_infinite_rewards_in_the_panel(runs, steps):
    root = runs["gaps"]
    fig = make_figure(open_run(root), "hist", steps=steps)
    for ax, step in zip(fig.axes, steps, strict=False):
        nan, inf = _counts(root, step)
        want = ", ".join(x for x in (f"{nan} NaN" if nan else "", f"{inf} +inf" if inf else "") if x)
        assert notes(ax) == (f"not drawn: {want} reward(s)" if want else ""), (step, notes(ax))
    assert "not drawn" not in fig._suptitle.get_text()


def test_a_role_whose_rewards_are_all_nan_is_named(runs):
    fig = make_figure(open_run(runs["kl0"]), "reward")
    ax = fig.axes[0]
    assert "allnan: no valid reward at any step (12 NaN)" in notes(ax)


def test_the_nan_rewards_left_out_of_the_step_means_are_counted(runs):
    root = runs["gaps"]
    nan = sum(_counts(root, s)[0] for s in GAP_STEPS)
    fig = make_figure(open_run(root), "reward")
    assert f"{nan} NaN reward(s) left out of the step means (first: solver, step 3)" in notes(fig.axes[0])


def test_a_one_step_distribution_counts_what_it_does_not_draw(tmp_path):
    rewards = [0.1 * i for i in range(47)] + [float("nan")] * 2 + [float("inf")]
    with runlog.RunWriter(tmp_path / "e", name="e", roles=["solver"], durable=False) as w:
        w.log_samples(7, [{"reward": r, "roles": {"solver": {"reward": r}}} for r in rewards])
    fig = make_figure(open_run(tmp_path / "e"), "reward")
    finite = np.array([r for r in rewards if math.isfinite(r)])
    [note] = texts(fig.axes[0])
    assert note == f"n={len(finite)}, mean={finite.mean():.4g}\nnot drawn: 2 NaN, 1 +inf"


# ---- 7 and 8: --diff -----------------------------------------------------------------------------------------------


def test_diff_draws_a_compared_run_only_where_the_baseline_has_the_role(runs):
    base, other = runs["gaps"], runs["other"]
    d = diff_runs([open_run(base), open_run(other)], ["A", "C"], options=DiffOptions(series_only=True))
    fig = diff_figure(d, "reward")
    [ax] = [a for a in fig.axes if a.get_title() == "late"]
    base_steps = sorted(set(role_means(base, "late")) & set(role_means(other, "late")))
    line = named_line(ax, "C")
    line = line[~np.isnan(line[:, 1])]  # the breaks at steps not in both runs (a NaN point each)
    xs = line[:, 0].tolist()
    assert xs == base_steps  # it drew steps 0-4, where the baseline has no "late"
    np.testing.assert_allclose(line[:, 1], [role_means(other, "late")[s] for s in base_steps])


def test_diff_says_a_step_mean_of_inf(runs):
    d = diff_runs([open_run(runs["gaps"]), open_run(runs["other"])], ["A", "C"], options=DiffOptions(series_only=True))
    fig = diff_figure(d, "reward")
    [ax] = [a for a in fig.axes if a.get_title() == "solver"]
    step = min(s for s, m in role_means(runs["gaps"], "solver").items() if m == math.inf)
    assert f"not drawn: 1 value(s) +inf (first: A (baseline), step {step})" in notes(ax)


# ---- 9: --steps of an unreadable file ------------------------------------------------------------------------------


def test_hist_steps_of_an_unreadable_file_names_the_file(runs, tmp_path, cli):
    import shutil

    root = tmp_path / "t"
    shutil.copytree(runs["gaps"], root)
    [f] = (root / "samples" / "train").glob("step_00000023*.parquet")
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    rel = f.relative_to(root).as_posix()
    res = cli("plot", root, "--what", "hist", "--steps", "23", "-o", tmp_path / "x.png")
    assert res.exit_code == 0, res.output  # it said "--steps 23: this run has steps 0..29", exit 2
    assert rel in res.stderr
    fig = make_figure(open_run(root), "hist", steps=[23])
    assert rel in texts(fig.axes[0])[0].replace("\n", " ")


# ---- 10-12, 14: options, help, -o ----------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["hist", "components", "format"])
def test_by_none_without_a_pooled_form_is_a_usage_error(runs, tmp_path, cli, what):
    res = cli("plot", runs["gaps"], "--what", what, "--by", "none", "-o", tmp_path / "x.png")
    assert res.exit_code == 2 and "--by none" in res.stderr, res.output
    assert not (tmp_path / "x.png").exists()


def test_by_none_still_pools_reward(runs, tmp_path, cli):
    res = cli("plot", runs["gaps"], "--what", "reward", "--by", "none", "-o", tmp_path / "x.png")
    assert res.exit_code == 0, res.output


def test_plot_help_says_the_window_cap_and_which_sd_the_band_is(cli):
    text = " ".join(cli("plot", "--help").output.split())
    assert "at most 25" in text
    assert "logged steps" in text
    assert "standard deviation of the per-step means" in text


def test_save_figure_under_a_file_says_it_is_a_file(runs, tmp_path):
    """``save_figure`` (the library twin): ``e.png/x.png`` where ``e.png`` is a file said "folder e.png does not
    exist". (The CLI checks ``-o`` earlier, in ``cli.options``.)"""
    from runlog.errors import UsageError
    from runlog.plots import save_figure

    (tmp_path / "e.png").write_bytes(b"x")
    fig = make_figure(open_run(runs["gaps"]), "reward")
    with pytest.raises(UsageError, match=r"e\.png is a file, not a folder"):
        save_figure(fig, tmp_path / "e.png" / "x.png")
