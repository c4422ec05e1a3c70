"""Audit a_report of 2026-12-07: plot, report, inspect and ``summarize --scalars`` on steps far apart and values
near the float64 limit, the report's stderr (reader warnings, matplotlib's glyph warnings), ``plot --window`` and
``--diff`` with a run that cannot be read, and the report's words on empty steps and a last step whose text alone is
unreadable.

Expected figures come from the lines and rows each test writes (``fractions``, ``json``, ``pyarrow``), never from
runlog's own reading. The runs of steps far apart ran for hours before (a loop over every missing step): those
tests stop after a generous limit (``ends_within``) instead of hanging, a guard and not a timing.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import warnings
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("matplotlib", reason="the plots need matplotlib: pip install 'runlog[plot]'")

from runlog import open_run  # noqa: E402
from runlog.analysis.inspect import KeyCadence, lost_step_runs  # noqa: E402
from runlog.plots import make_figure  # noqa: E402
from runlog.writer import RunWriter  # noqa: E402
from test_report_audit2 import corrupt_column  # noqa: E402
from test_report_audit12 import section, text_of  # noqa: E402

BIG = 1e308


@contextlib.contextmanager
def ends_within(seconds: int) -> Iterator[None]:
    """Fail (``TimeoutError``) where the block is still running after ``seconds``: a hang guard, not a timing."""

    def stop(*_: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    before = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)


def notes(fig: object) -> str:
    """Every text of the figure's panels, as shown."""
    return "\n".join(t.get_text().replace(r"\$", "$") for ax in fig.axes for t in ax.texts)  # type: ignore[attr-defined]


def msg(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": "q"}, {"role": "assistant", "content": text}]


def scalar_run(root: Path, values: list[float]) -> Path:
    with RunWriter(root, name=root.name) as w:
        for step, v in enumerate(values):
            w.log_scalars(step, {"k": v})
    return root


# -- 1: summarize --scalars' mean of values near the float64 limit -------------------------------------------------


@pytest.mark.parametrize("values", [[BIG] * 5 + [-BIG], [1.7e308, 1.7e308, -1.0], [-1.5e308, -1.5e308, BIG, 0.5]])
def test_the_mean_of_scalars_near_the_float_limit_is_their_mean(tmp_path: Path, cli, values: list[float]) -> None:
    """Their sum went past float64 (inf), then was clamped into [min, max]: the mean of 1e308 x5 and -1e308 was
    shown as 1e308, the max."""
    root = scalar_run(tmp_path / "r", values)
    res = cli("summarize", root, "--scalars", "--format", "json")
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.stdout)
    truth = float(sum(Fraction(v) for v in values) / len(values))
    assert row["mean"] == pytest.approx(truth, rel=1e-12), (row, truth)
    assert row["min"] == min(values) and row["max"] == max(values) and row["count"] == len(values)


def test_shards_near_the_float_limit_merge_to_their_weighted_mean(tmp_path: Path, cli) -> None:
    """Two processes' values of one step, weighed by their ``__count``: the weighted sum went past float64 and was
    clamped to the larger value."""
    root = tmp_path / "r"
    root.mkdir()
    shards = {0: (1e308, 3), 1: (1.5e308, 1)}
    for p, (v, n) in shards.items():
        (root / f"scalars.p{p}.jsonl").write_text(json.dumps({"step": 0, "k": v, "k__count": n}) + "\n")
    res = cli("summarize", root, "--scalars", "--format", "json")
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.stdout)
    truth = float(sum(Fraction(v) * n for v, n in shards.values()) / sum(n for _, n in shards.values()))
    assert row["last"] == pytest.approx(truth, rel=1e-12) and row["mean"] == pytest.approx(truth, rel=1e-12)


# -- 2, 3: steps far apart ---------------------------------------------------------------------------------------


def test_a_gap_of_a_trillion_steps_is_drawn_and_said(tmp_path: Path) -> None:
    """Samples at steps 0-3 and 10**12: the plot walked every missing step to name the line's own (it never
    ended)."""
    far = 10**12
    root = tmp_path / "far"
    with RunWriter(root, name="far") as w:
        for step in (0, 1, 2, 3, far):
            w.log_samples(step, [{"reward": 0.5 + i / 10, "messages": msg("x")} for i in range(3)])
    with ends_within(120):
        fig = make_figure(open_run(root), "reward")
    assert f"gap: steps 4..{far - 1} missing" in notes(fig), notes(fig)


def brute_runs(cadences: list[KeyCadence], every: int) -> list[list[int]]:
    """``lost_step_runs``' rule step by step: every lost step, each phase's (the step modulo ``every``) sorted and
    cut where two are not ``every`` apart."""
    steps = sorted({x for c in cadences for a, b in c.gaps for x in range(a, b + 1, c.stride)})
    runs: list[list[int]] = []
    for phase in range(every):
        mine: list[list[int]] = []
        for x in (x for x in steps if x % every == phase):
            if mine and x - mine[-1][1] == every:
                mine[-1][1] = x
            else:
                mine.append([x, x])
        runs += mine
    return sorted(runs)


def test_lost_scalar_steps_are_worked_out_by_ranges() -> None:
    """The same runs as step by step, on many small cases (keys of several strides and phases); and a gap of 10**15
    steps, which was an array of every step (``array is too big``: inspect and report exited 3)."""
    rng = random.Random(21)
    for _ in range(3000):
        every = rng.choice([1, 2, 3, 5, 10])
        cadences = []
        for _ in range(rng.randint(0, 4)):
            stride = rng.choice([1, 2, 3, 4, 5, 6, 10, every, every])
            gaps = []
            for _ in range(rng.randint(1, 3)):
                a = rng.randint(-20, 60)
                gaps.append([a, a + rng.randint(0, 8) * stride])
            cadences.append(KeyCadence(stride, gaps, ["k"]))
        assert lost_step_runs(cadences, every) == brute_runs(cadences, every), (every, cadences)
    with ends_within(60):
        assert lost_step_runs([KeyCadence(1, [[4, 10**15]], ["k"])], 1) == [[4, 10**15]]
        assert lost_step_runs([KeyCadence(5, [[0, 5 * 10**15]], ["k"])], 5) == [[0, 5 * 10**15]]


def test_inspect_and_report_of_steps_near_the_end_of_int64(tmp_path: Path, cli) -> None:
    """Scalars at steps 2**62, 2**62 + 1 and 2**63 - 1: inspect and report exited 3 (an array of every step)."""
    root = tmp_path / "huge"
    steps = [2**62, 2**62 + 1, 2**63 - 1]
    with RunWriter(root, name="huge") as w:
        for step in steps:
            w.log_samples(step, [{"reward": 0.5 + i / 10, "messages": msg("x")} for i in range(3)])
            w.log_scalars(step, {"loss": 1.0})
    with ends_within(300):
        res = cli("inspect", root, "--format", "json")
        assert res.exit_code == 0, res.output
        # One key at stride 1 (steps 1 apart): every step between the second and the last was due and is lost.
        assert json.loads(res.stdout)["scalars"]["step_gaps"] == [[steps[1] + 1, steps[2] - 1]]
        res = cli("report", root, "-o", tmp_path / "huge.html")
    assert res.exit_code == 0, res.output
    assert f"{steps[1] + 1}-{steps[2] - 1}" in text_of((tmp_path / "huge.html").read_text())


# -- 4: values near the float64 limit in the figures ------------------------------------------------------------------


@pytest.mark.parametrize("values", [[BIG] * 6, [BIG] * 5 + [-BIG], [1.7976931348623157e308, -1.0, 2.0]])
def test_scalars_near_the_float_limit_are_said_not_drawn(tmp_path: Path, cli, values: list[float]) -> None:
    """matplotlib's axis of such values overflows ("arange: cannot compute length"): exit 3 and no image."""
    root = scalar_run(tmp_path / "r", values)
    res = cli("plot", root, "--what", "scalars", "-o", tmp_path / "s.png")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = make_figure(open_run(root), "scalars")
    too_large = sum(abs(v) > 1e300 for v in values)
    assert f"not drawn: {too_large} value(s) beyond +-1e300 (first: step 0)" in notes(fig), notes(fig)


def big_sample_run(root: Path, steps: list[int]) -> Path:
    rewards = [BIG, -BIG, 1.0, 0.5]
    with RunWriter(root, name=root.name, roles=["a"]) as w:
        for step in steps:
            rows = [
                {"reward": r, "roles": {"a": {"reward": r, "kl": BIG if i == 0 else 0.1}}, "messages": msg(f"x{i}")}
                for i, r in enumerate(rewards)
            ]
            w.log_samples(step, rows)
            w.log_scalars(step, {"k": BIG})
    return root


@pytest.mark.parametrize("steps", [[3], [0, 1, 2, 3]])
def test_rewards_and_kl_near_the_float_limit_draw_and_report(tmp_path: Path, cli, steps: list[int]) -> None:
    """A histogram of +-1e308 rewards: numpy's bins of that range overflow ("Too many bins"); a step's
    distribution: "Axis limits cannot be NaN or Inf". Exit 3 before; now drawn, the values too large counted."""
    root = big_sample_run(tmp_path / "r", steps)
    for what in ("reward", "kl", "hist", "components", "scalars"):
        res = cli("plot", root, "--what", what, "-o", tmp_path / f"{what}.png")
        assert res.exit_code == 0, (what, res.output)
    fig = make_figure(open_run(root), "hist")
    assert "not drawn: 2 beyond +-1e300 reward(s)" in notes(fig), notes(fig)
    res = cli("report", root, "-o", tmp_path / "r.html")
    assert res.exit_code == 0, res.output


# -- 5, 6: the report's stderr -----------------------------------------------------------------------------------------


def torn_run(root: Path, role: str = "solver") -> tuple[Path, int]:
    """A run whose scalars file ends in a torn line; returns it and that line's number."""
    with RunWriter(root, name=root.name, roles=[role]) as w:
        for step in range(4):
            rows = [{"reward": i / 4, "roles": {role: {"reward": i / 4}}, "messages": msg(f"x{i}")} for i in range(4)]
            w.log_samples(step, rows)
            w.log_scalars(step, {"loss": 1.0 / (step + 1)})
    path = root / "scalars.p0.jsonl"
    lines = path.read_text().splitlines()
    with open(path, "a") as fh:
        fh.write('{"step": 4, "loss": 0.')
    return root, len(lines) + 1


def test_the_report_says_reader_warnings_on_stderr(tmp_path: Path, cli) -> None:
    """A torn last line of the scalars file was in the page only; plot and summarize say it on stderr."""
    root, line = torn_run(tmp_path / "run")
    res = cli("report", root, "-o", tmp_path / "r.html")
    assert res.exit_code == 0, res.output
    said = [x for x in res.stderr.splitlines() if x.startswith("warning: scalars.p0.jsonl: ")]
    assert len(said) == 1 and f"line {line}: torn last line" in said[0], res.stderr
    base, _ = torn_run(tmp_path / "base")
    res = cli("report", root, "--against", base, "-o", tmp_path / "a.html")
    assert res.exit_code == 0, res.output
    for who in ("base", "run"):
        assert f"warning: {who}: scalars.p0.jsonl: line {line}: torn last line" in res.stderr, res.stderr


@pytest.mark.parametrize("command", ["report", "plot"])
def test_characters_the_plot_font_lacks_are_said_once(tmp_path: Path, cli, command: str) -> None:
    """A role named 数学🤖: two lines of Python's UserWarning per character and per drawing (24 of them)."""
    root, _ = torn_run(tmp_path / "run", role="数学🤖")
    out = tmp_path / ("r.html" if command == "report" else "r.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = cli(command, root, "-o", out)
    assert res.exit_code == 0, res.output
    assert not [w for w in caught if "Glyph" in str(w.message)], [str(w.message) for w in caught]
    said = [x for x in res.stderr.splitlines() if "could not be drawn in the plot font" in x]
    assert len(said) == 1 and said[0].startswith("note: ") and "🤖" in said[0], res.stderr
    assert "UserWarning" not in res.stderr
    if command == "report":
        assert "数学🤖" in out.read_text(encoding="utf-8")


# -- 7: --window -----------------------------------------------------------------------------------------------------


def test_window_is_checked_whatever_is_drawn(tmp_path: Path, cli) -> None:
    """A run of one step (drawn as distributions) took --window -3, and --what hist --window 0: exit 0."""
    one = tmp_path / "one"
    with RunWriter(one, name="one") as w:
        w.log_samples(5, [{"reward": r, "messages": msg(f"a{r}")} for r in (0.1, 0.5, 0.9)])
    res = cli("plot", one, "--window", "-3", "-o", tmp_path / "x.png")
    assert res.exit_code == 2 and "--window -3: expected a positive number of steps" in res.stderr, res.output
    root, _ = torn_run(tmp_path / "run")
    res = cli("plot", root, "--what", "hist", "--window", "0", "-o", tmp_path / "x.png")
    assert res.exit_code == 2 and "--window 0: expected a positive number of steps" in res.stderr, res.output
    res = cli("plot", root, "--what", "hist", "--window", "3", "-o", tmp_path / "x.png")
    assert res.exit_code == 2 and "--window goes with a line plot" in res.stderr, res.output
    assert not (tmp_path / "x.png").exists()


# -- 8: plot --diff with a run that cannot be read -------------------------------------------------------------------


def unreadable(root: Path) -> Path:
    """The run with every sample file overwritten by bytes that are no Parquet."""
    files = sorted(root.glob("samples/**/*.parquet"))
    assert files
    for f in files:
        f.write_bytes(b"not a parquet file at all")
    return root


def test_plot_diff_with_a_run_that_cannot_be_read_draws_the_other(tmp_path: Path, cli) -> None:
    """``plot A --diff B`` where none of B's files can be read: exit 2 'nothing to draw' and no image, where the
    docs say exit 1 with the image (A's lines)."""
    a, _ = torn_run(tmp_path / "a")
    b = unreadable(torn_run(tmp_path / "b")[0])
    for first, second in ((a, b), (b, a)):
        out = tmp_path / f"{first.name}.png"
        res = cli("plot", first, "--diff", second, "-o", out)
        assert res.exit_code == 1, res.output
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        errors = [x for x in res.stderr.splitlines() if ": b: samples/" in x or x.startswith("error: b: ")]
        assert errors and all(x.startswith("error: ") for x in errors), res.stderr
    c = unreadable(torn_run(tmp_path / "c")[0])
    res = cli("plot", b, "--diff", c, "-o", tmp_path / "none.png")
    assert res.exit_code == 2 and "nothing to draw" in res.stderr, res.output


# -- 9: the report's words ---------------------------------------------------------------------------------------------


def test_a_run_of_empty_steps_names_them(tmp_path: Path, cli) -> None:
    """Steps 0 and 1 logged with no rows: '0 steps of train' named neither, and 'Not in this report' blamed
    'only scalar metrics, or no readable sample file' though neither holds."""
    root = tmp_path / "zero"
    with RunWriter(root, name="zero") as w:
        w.log_samples(0, [])
        w.log_samples(1, {"reward": []})
    rows = {int(f.name.split("_")[1].split(".")[0]): pq.read_metadata(f).num_rows for f in root.glob("samples/*/*")}
    assert rows == {0: 0, 1: 0}
    res = cli("report", root, "-o", tmp_path / "z.html")
    assert res.exit_code == 0, res.output
    page = text_of((tmp_path / "z.html").read_text())
    assert "0 steps of train with rows (steps 0, 1 have no rows)" in page, page[:2000]
    absent = page[page.index("Not in this report:") : page.index("Findings", page.index("Not in this report:"))]
    assert "only scalar metrics" not in absent and "hold no rows" in absent, absent


def test_a_last_step_whose_text_alone_is_unreadable_is_said_so(tmp_path: Path, cli) -> None:
    """Its samples are counted (their numbers read), only its text is not: 'The last step, 5, could not be read'
    said otherwise."""
    root = tmp_path / "run"
    with RunWriter(root, name="t") as w:
        for step in range(6):
            w.log_samples(step, [{"reward": i / 8, "completion": f"answer {i} " * 20} for i in range(8)])
    bad = root / "samples" / "train" / "step_00000005.p0.parquet"
    corrupt_column(bad, "completion")
    assert pq.read_table(bad, columns=["reward"]).num_rows == 8  # its numbers read
    res = cli("report", root, "-o", tmp_path / "t.html")
    assert res.exit_code == 0, res.output
    page = (tmp_path / "t.html").read_text()
    assert "48 samples in train" in text_of(page)
    traj = text_of(section(page, "trajectories"))
    assert "its texts could not be read" in traj and "its samples are counted in the summary" in traj, traj[:1500]
    assert "showing step 4, the last step whose texts can be read" in traj


# -- audit 21, review: the process's warnings left alone by the library's drawing ----------------------------------


def cjk_run(root: Path) -> Path:
    with RunWriter(root, name="cjk", roles=["数学🤖"]) as w:
        for step in range(3):
            w.log_samples(
                step,
                [{"reward": i / 10, "roles": {"数学🤖": {"reward": i / 10}}, "messages": msg("x")} for i in range(3)],
            )
    return root


def filters_now() -> list[tuple[object, ...]]:
    return [
        (f[0], getattr(f[1], "pattern", f[1]), f[2], getattr(f[3], "pattern", f[3]), f[4]) for f in warnings.filters
    ]


def test_figures_drawn_from_threads_leave_the_warning_filters_as_they_were(tmp_path: Path) -> None:
    """A caller's pool drawing figures: the recorder and an 'always' filter stayed installed, and every later
    warning of the process was swallowed."""
    import threading

    from runlog.plots import figure_png

    run = open_run(cjk_run(tmp_path / "cjk"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # matplotlib's glyph warnings, from any thread
        figs = [make_figure(run, what) for what in ("reward", "kl", "reward", "kl")]
        before = filters_now()
        impl, show = warnings._showwarnmsg_impl, warnings.showwarning  # type: ignore[attr-defined]
        for _ in range(4):
            threads = [threading.Thread(target=figure_png, args=(f,)) for f in figs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert filters_now() == before
        assert warnings._showwarnmsg_impl is impl and warnings.showwarning is show  # type: ignore[attr-defined]


def test_a_library_caller_gets_matplotlibs_own_warnings_under_its_filters(tmp_path: Path, monkeypatch) -> None:
    """``save_figure``: the glyph warnings were kept from the caller (only the CLI says them), and matplotlib's
    other warnings re-emitted without their module (a caller's ``module='matplotlib'`` filter no longer matched)."""
    import matplotlib.figure

    from runlog.plots import save_figure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fig = make_figure(open_run(cjk_run(tmp_path / "cjk")), "reward")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_figure(fig, tmp_path / "a.png")
    glyphs = [w for w in caught if "missing from font" in str(w.message)]
    assert glyphs and all(issubclass(w.category, UserWarning) for w in glyphs), [str(w.message) for w in caught]
    # A warning that matplotlib gives while drawing (made one here: a function of a module named matplotlib.*).
    space: dict[str, object] = {
        "__name__": "matplotlib.probe",
        "warnings": warnings,
        "draw": matplotlib.figure.Figure.draw,
    }
    exec(
        "def probe(self, renderer):\n"
        "    warnings.warn('probe overflow', RuntimeWarning)\n"
        "    return draw(self, renderer)",
        space,
    )
    monkeypatch.setattr(matplotlib.figure.Figure, "draw", space["probe"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="matplotlib")
        save_figure(fig, tmp_path / "b.png")
    assert not [w for w in caught if "probe" in str(w.message)], [str(w.message) for w in caught]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_figure(fig, tmp_path / "c.png")
    assert [w for w in caught if "probe" in str(w.message)]  # the probe does warn


# -- audit 21, review: far-apart steps by the routes of other strides and phases ------------------------------------


def test_lost_steps_of_other_strides_and_phases_far_apart() -> None:
    """A key every 2 beside keys every step, steps 0-3 then 10**10 (each of its lost steps listed, exit 3); keys at
    even and at odd steps, both every 2 (the runs cut at every step of the other phase, exit 3)."""
    far = 10**10
    with ends_within(60):
        ones = KeyCadence(1, [[4, far - 1]], ["loss", "acc"])
        assert lost_step_runs([ones, KeyCadence(2, [[4, far - 2]], ["eval"])], 1) == [[4, far - 1]]
        even, odd = KeyCadence(2, [[8, far - 2]], ["a"]), KeyCadence(2, [[9, far - 1]], ["b"])
        assert lost_step_runs([even, odd], 2) == [[8, far - 2], [9, far - 1]]
        # A stride dividing the one read: each of its phases is a run.
        assert lost_step_runs([KeyCadence(1, [[4, far]], ["k"])], 2) == [[4, far], [5, far - 1]]
        # A stride of 4 held by the runs of stride 2 but for its last step.
        assert lost_step_runs([KeyCadence(2, [[8, far - 2]], ["a"]), KeyCadence(4, [[8, far]], ["e"])], 2) == [[8, far]]


def route_run(root: Path, plan: list[tuple[int, dict[str, float]]]) -> Path:
    with RunWriter(root, name=root.name) as w:
        for step, values in plan:
            w.log_scalars(step, values)
    return root


def test_inspect_and_report_of_keys_of_other_strides_far_apart(tmp_path: Path, cli) -> None:
    far = 10**10
    one = route_run(
        tmp_path / "r1",
        [(0, {"loss": 1, "eval": 1}), (1, {"loss": 1}), (2, {"loss": 1, "eval": 1}), (3, {"loss": 1})]
        + [(far, {"loss": 1, "eval": 1})],
    )
    two = route_run(
        tmp_path / "r2",
        [(s, {"a" if s % 2 == 0 else "b": 1.0}) for s in range(8)] + [(far, {"a": 1.0}), (far + 1, {"b": 1.0})],
    )
    for root, gaps in ((one, [[4, far - 1]]), (two, [[8, far - 2], [9, far - 1]])):
        with ends_within(120):
            res = cli("inspect", root, "--format", "json")
            assert res.exit_code == 0, res.output
            assert json.loads(res.stdout)["scalars"]["step_gaps"] == gaps
            res = cli("report", root, "-o", tmp_path / "r.html")
        assert res.exit_code == 0, res.output


# -- audit 21, review: plot --what format with a spec whose roles speak in part ---------------------------------------


def test_plot_format_says_the_spec_roles_that_do_not_speak(tmp_path: Path, cli) -> None:
    """A spec of roles [solver, judge] where the judge speaks in the eval split only: the error where none speaks
    was said, the note where only some do was not."""
    ok = "<think>r</think><answer>x</answer>"
    root = tmp_path / "run"
    with RunWriter(root, durable=False) as w:
        for step in range(4):
            w.log_samples(
                step,
                [{"reward": 1.0, "messages": [*msg("q")[:1], {"role": "assistant", "name": "solver", "content": ok}]}]
                * 3,
            )
            w.log_samples(
                step,
                [{"reward": 1.0, "messages": [{"role": "assistant", "name": "judge", "content": ok}]}] * 2,
                split="eval",
            )
    spec = tmp_path / "s.toml"
    spec.write_text('name = "tags"\ntags = ["think", "answer"]\nroles = ["solver", "judge"]\n')
    res = cli("plot", root, "--what", "format", "--spec", spec, "--split", "train", "-o", tmp_path / "f.png")
    assert res.exit_code == 0, res.output
    said = [x for x in res.stderr.splitlines() if x.startswith("note: ") and "'judge'" in x]
    assert len(said) == 1 and said[0].startswith(f"note: --spec {spec}: its roles name 'judge'"), res.stderr
    assert "speaks in split eval" in said[0] and "those of solver" in said[0], said[0]


# -- audit 21, review: values under 1e300 on a log axis ---------------------------------------------------------------


@pytest.mark.parametrize("what", ["kl", "scalars"])
def test_a_log_axis_up_to_1e299_holds_every_value(tmp_path: Path, what: str) -> None:
    """KL 0.01 ... 1e10 then 1e299: the log axis' margins overflowed, the axis fell back to 1..10 with no point on
    it and no note, and numpy's overflow warning was printed."""
    from runlog.plots import figure_png

    values = [0.01, 0.02, 0.05, 1.0, 1e10, 1e299]
    root = tmp_path / "logbig"
    with RunWriter(root, name="logbig", roles=["a"]) as w:
        for step, kl in enumerate(values):
            w.log_samples(step, [{"reward": 0.5, "roles": {"a": {"reward": 0.5, "kl": kl}}, "messages": msg("x")}] * 2)
            w.log_scalars(step, {"kl": kl})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = make_figure(open_run(root), what)
        figure_png(fig)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    logs = [ax for ax in fig.axes if ax.get_yscale() == "log"]  # type: ignore[attr-defined]
    assert logs
    for ax in logs:
        lo, hi = ax.get_ylim()
        assert 0 < lo <= min(values) and max(values) <= hi < float("inf"), (lo, hi)
        ticks = [t for t in ax.get_yticks() if lo <= t <= hi]
        assert len(ticks) >= 2, ticks


def test_plot_diff_of_runs_without_a_common_step_beside_an_unreadable_one(tmp_path: Path, cli) -> None:
    """``plot A --diff B`` (no step in common) is 'nothing to draw' (exit 2): with an unreadable run beside them it
    drew A and B each on its own steps and exited 1."""

    def run(root: Path, steps: range) -> Path:
        with RunWriter(root, name=root.name, roles=["a"]) as w:
            for step in steps:
                rows = [
                    {"reward": i / 10, "roles": {"a": {"reward": i / 10, "kl": 0.1}}, "messages": msg("x")}
                    for i in range(3)
                ]
                w.log_samples(step, rows)
        return root

    a, b, c = run(tmp_path / "a", range(4)), run(tmp_path / "b", range(10, 14)), run(tmp_path / "c", range(4))
    bad = unreadable(run(tmp_path / "bad", range(4)))
    for extra in ([], [bad]):
        out = tmp_path / "x.png"
        res = cli("plot", a, "--diff", b, *[x for r in extra for x in ("--diff", r)], "-o", out)
        assert res.exit_code == 2 and "nothing to draw" in res.stderr, res.output
        assert not out.exists()
    res = cli("plot", a, "--diff", c, "--diff", bad, "-o", tmp_path / "y.png")
    assert res.exit_code == 1 and (tmp_path / "y.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", res.output
