"""Audit a12 of ``runlog plot`` (and the report's plots). Each test builds its run with ``RunWriter`` and
computes the figure it expects from the raw files (pyarrow, numpy) or from the values written:

- F1: a role logged less often than the others (a judge every other step) is drawn: its line breaks only at
  its own missing steps, on its own cadence (it had a legend entry and no visible line).
- F6: a role's own missing steps are named in the panel (only the steps missing for every role were).
- F4: the light per-step line breaks at a step where a role has no valid value, and the panel names it.
- F5: the KL and components panels count the NaN values left out of their step means, as the reward's.
- F2: more roles than the palette has: no two roles drawn alike; ``assistant`` is not green.
- F3: ``-o x.pdf`` on a full disk: ``cannot write ...: No space left on device``, exit 2 (it was exit 3).
- F7: ``-o FOLDER`` proposes an image name; sample files of 0 rows are said as such; onsets at one step are
  one label.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib.colors as mc
import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install 'runlog[plot]'")

from runlog import open_run  # noqa: E402
from runlog.plots import RunSeries, make_figure  # noqa: E402
from runlog.writer import RunWriter  # noqa: E402

NOTE = "runlog-note"  # figures.NOTE_GID


def notes(ax) -> str:  # noqa: ANN001
    return "\n".join(t.get_text().replace(r"\$", "$") for t in ax.texts if t.get_gid() == NOTE)


def line_of(ax, label: str):  # noqa: ANN001, ANN201
    [line] = [x for x in ax.lines if x.get_label() == label]
    return line


def segments(y: np.ndarray) -> int:
    """How many segments a matplotlib line of points ``y`` draws (a NaN breaks it)."""
    ok = ~np.isnan(np.asarray(y, dtype=float))
    return int(np.sum(ok[1:] & ok[:-1]))


def raw_rows(root: Path, split: str = "train") -> list[dict]:
    rows = []
    for f in sorted((root / "samples" / split).glob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return rows


def sparse_run(root: Path) -> Path:
    """60 steps: solver every step, judge at even steps only."""
    with RunWriter(root, name="sparse", roles=["solver", "judge"]) as w:
        for s in range(60):
            rows = []
            for i in range(4):
                roles = {"solver": {"reward": 0.2 + 0.01 * s + 0.01 * i, "kl": 0.01}}
                if s % 2 == 0:
                    roles["judge"] = {"reward": 0.8 - 0.005 * s + 0.01 * i, "kl": 0.02}
                rows.append({"reward": 1.0, "roles": roles})
            w.log_samples(s, rows)
    return root


def holey_run(root: Path) -> Path:
    """20 steps: judge absent at steps 6 and 7; verifier's rewards all NaN at step 12; NaN KL values and NaN
    component values here and there."""
    with RunWriter(root, name="holey", roles=["solver", "verifier", "judge"]) as w:
        for s in range(20):
            rows = []
            for i in range(4):
                roles = {
                    "solver": {"reward": 0.1 * i + 0.01 * s, "kl": math.nan if (s + i) % 7 == 0 else 0.01 * i},
                    "verifier": {"reward": math.nan if s == 12 else 0.5 + 0.01 * s, "kl": 0.02},
                }
                if s not in (6, 7):
                    roles["judge"] = {"reward": 0.3, "kl": math.nan if s == 3 and i == 0 else 0.03}
                comp = {"correct": math.nan if (s + i) % 5 == 0 else 1.0, "fmt": 0.5}
                rows.append({"reward": 1.0, "roles": roles, "reward_components": comp})
            w.log_samples(s, rows)
    return root


# ---- F1: a role logged every other step --------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["reward", "kl"])
def test_a_role_logged_every_other_step_is_drawn_as_a_line(tmp_path: Path, what: str) -> None:
    root = sparse_run(tmp_path / "run")
    key = "reward" if what == "reward" else "kl"
    per: dict[int, list[float]] = {}
    for row in raw_rows(root):
        for r in row["roles"]:
            if r["role"] == "judge":
                per.setdefault(row["step"], []).append(r[key])
    truth = {s: float(np.mean(v)) for s, v in per.items()}
    assert sorted(truth) == list(range(0, 60, 2))
    ax = make_figure(open_run(root), what, window=1).axes[0]
    xy = line_of(ax, "judge").get_xydata()
    finite = xy[~np.isnan(xy[:, 1])]
    # Every judge step drawn, at its mean, and joined: 30 points, 29 segments (there were 0).
    assert dict(zip(finite[:, 0].astype(int).tolist(), finite[:, 1].tolist(), strict=True)) == pytest.approx(truth)
    assert segments(xy[:, 1]) == len(truth) - 1
    # The moving average too (the default window): one unbroken bold line.
    ax = make_figure(open_run(root), what).axes[0]
    assert segments(line_of(ax, "judge").get_ydata()) == len(truth) - 1
    assert "judge" not in notes(ax)  # no step of its own cadence is missing: nothing to say


def test_a_lone_point_between_breaks_gets_a_marker(tmp_path: Path) -> None:
    """A role present at one step between two absences: a point no segment reaches, drawn as a marker."""
    with RunWriter(tmp_path / "run", name="lone", roles=["solver", "judge"]) as w:
        for s in range(40):
            roles = {"solver": {"reward": 0.5}}
            if s < 10 or s == 20 or s >= 30:
                roles["judge"] = {"reward": 0.1}
            w.log_samples(s, [{"reward": 1.0, "roles": roles}])
    ax = make_figure(open_run(tmp_path / "run"), "reward", window=3).axes[0]
    line = line_of(ax, "judge")
    x = np.asarray(line.get_xdata(), dtype=float)
    assert line.get_marker() == "o"
    assert [int(x[i]) for i in line.get_markevery()] == [20]
    assert "judge: steps 10..19, 21..29 missing" in notes(ax)


# ---- F6 and F4: a role's own missing steps, a step without a valid value -----------------------------------------


def test_a_roles_own_missing_steps_and_its_step_without_a_valid_value_are_named_and_break_the_line(
    tmp_path: Path,
) -> None:
    root = holey_run(tmp_path / "run")
    rows = raw_rows(root)
    judge_steps = {row["step"] for row in rows for r in row["roles"] if r["role"] == "judge"}
    verifier_valid = {
        row["step"] for row in rows for r in row["roles"] if r["role"] == "verifier" and not math.isnan(r["reward"])
    }
    assert sorted(set(range(20)) - judge_steps) == [6, 7] and sorted(set(range(20)) - verifier_valid) == [12]
    ax = make_figure(open_run(root), "reward", window=3).axes[0]
    said = notes(ax)
    assert "verifier: no valid value at step 12" in said, said
    assert "judge: steps 6..7 missing" in said, said
    # The light line (no label) of each role: no segment over a step it has no value at.
    colours = {mc.to_hex(line_of(ax, r).get_color()): r for r in ("solver", "verifier", "judge")}
    over = {}
    for line in ax.lines:
        if line.get_label().startswith("_") and line.get_linewidth() < 2:
            xy = line.get_xydata()
            over[colours[mc.to_hex(line.get_color())]] = [
                (int(a[0]), int(b[0]))
                for a, b in zip(xy[:-1], xy[1:], strict=True)
                if not np.isnan(a[1]) and not np.isnan(b[1]) and b[0] - a[0] > 1
            ]
    assert over == {"solver": [], "verifier": [], "judge": []}


# ---- F5: NaN KL and component values counted -------------------------------------------------------------------


def test_kl_and_components_panels_count_their_nan_values(tmp_path: Path) -> None:
    root = holey_run(tmp_path / "run")
    rows = raw_rows(root)
    kl_nan = [
        (row["step"], r["role"]) for row in rows for r in row["roles"] if r["kl"] is not None and math.isnan(r["kl"])
    ]
    comp_nan = [
        (row["step"], c["name"])
        for row in rows
        for c in row["reward_components"] or []
        if c["value"] is not None and math.isnan(c["value"])
    ]
    assert kl_nan and comp_nan
    order = {"solver": 0, "verifier": 1, "judge": 2}
    first_step, first_role = min(kl_nan, key=lambda x: (x[0], order[x[1]]))
    ax = make_figure(open_run(root), "kl", window=1).axes[0]
    said = f"{len(kl_nan)} NaN KL value(s) left out of the step means (first: {first_role}, step {first_step})"
    assert said in notes(ax), notes(ax)
    step, name = min(comp_nan)
    ax = make_figure(open_run(root), "components", window=1).axes[0]
    said = f"{len(comp_nan)} NaN component value(s) left out of the step means (first: {name}, step {step})"
    assert said in notes(ax), notes(ax)


# ---- F2: distinct looks for any number of roles ----------------------------------------------------------------


def test_more_roles_than_colours_are_never_drawn_alike_and_assistant_is_not_green(tmp_path: Path) -> None:
    roles = [f"agent{i}" for i in range(9)] + ["assistant", "judge", "Judge", "solver"]
    roles += [f"extra{i}" for i in range(20)]
    with RunWriter(tmp_path / "run", name="many", roles=roles) as w:
        for s in range(5):
            w.log_samples(s, [{"reward": 1.0, "roles": {r: {"reward": float(i)} for i, r in enumerate(roles)}}])
    ax = make_figure(open_run(tmp_path / "run"), "reward", window=1).axes[0]
    legend = ax.get_legend()
    looks = {}
    for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
        looks[text.get_text()] = (mc.to_hex(handle.get_color()), str(handle.get_linestyle()), handle.get_marker())
    assert sorted(looks) == sorted(roles)
    assert len(set(looks.values())) == len(roles)
    # Each legend entry is its role's line (the value written is its index).
    for i, r in enumerate(roles):
        assert np.nanmean(line_of(ax, r).get_ydata()) == i
    greens = {"#008000", "#00ff00"}
    assert looks["assistant"][0] not in greens
    assert looks["judge"][0] == "#af87ff" and looks["solver"][0] == "#0087ff"  # fixed colours kept


# ---- F3: a PDF on a full disk ----------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("suffix", ["pdf", "svg", "png"])
def test_an_image_on_a_full_disk_is_one_line_and_exit_2(tmp_path: Path, cli, suffix: str) -> None:  # noqa: ANN001
    root = sparse_run(tmp_path / "run")
    target = tmp_path / f"full.{suffix}"
    target.symlink_to("/dev/full")
    res = cli("plot", root, "-o", target)
    assert res.exit_code == 2, res.output
    assert f"Error: cannot write {target}: No space left on device" in res.stderr, res.stderr
    assert "internal error" not in res.stderr


# ---- F7 --------------------------------------------------------------------------------------------------------


def test_a_folder_given_as_o_proposes_an_image_name(tmp_path: Path, cli) -> None:  # noqa: ANN001
    root = sparse_run(tmp_path / "run")
    folder = tmp_path / "out.png"
    folder.mkdir()
    res = cli("plot", root, "-o", folder)
    assert res.exit_code == 2
    assert f"give an image file name (for example {folder / 'plot.png'})" in res.stderr, res.stderr
    assert ".txt" not in res.stderr


def test_sample_files_of_no_rows_are_said_as_such(tmp_path: Path) -> None:
    with RunWriter(tmp_path / "run", name="empty", roles=["solver"]) as w:
        for s in range(5):
            w.log_samples(s, [])
    files = sorted((tmp_path / "run" / "samples").rglob("*.parquet"))
    assert len(files) == 5 and all(pq.ParquetFile(f).metadata.num_rows == 0 for f in files)
    for what in ("kl", "reward"):
        said = " ".join(t.get_text() for t in make_figure(open_run(tmp_path / "run"), what).axes[0].texts)
        assert "5 sample file(s) of split train hold no rows" in said.replace("\n", " "), said
        assert "no readable sample file" not in said


def test_onsets_at_one_step_are_one_label_and_close_ones_do_not_overprint(tmp_path: Path) -> None:
    root = sparse_run(tmp_path / "run")
    marks = [(0, "nan_rewards (judge)"), (0, "nan_rewards (solver)"), (1, "kl_spike (solver)"), (40, "late")]
    fig = make_figure(RunSeries(open_run(root)), "reward", marks={"reward": marks})
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_gid() != NOTE]
    assert sorted(t.get_text() for t in labels) == sorted(
        ["nan_rewards (judge)\nnan_rewards (solver)", "kl_spike (solver)", "late"]
    )
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b)
