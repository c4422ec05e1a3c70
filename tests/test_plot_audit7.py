"""Seventh audit, ``plot`` and ``-o``: names from the data (scalar keys, roles, components, run names) are cut
to fit their panel wherever they become text in a figure, so that a 300-character name never runs over its
neighbours' titles; and an ``-o FILE`` that cannot be written is one line, ``cannot write FILE: reason``,
exit 2 (the usage/IO code), on every command that has ``-o`` (never exit 1, which says the data had problems).

The figures are drawn in-process (Agg) and measured: every text's window extent, from the canvas's renderer.
"""

from __future__ import annotations

import builtins
import io
import itertools
import os
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install 'runlog[plot]'")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import runlog  # noqa: E402
from runlog import open_run  # noqa: E402
from runlog.analysis.diff import DiffOptions, diff_runs  # noqa: E402
from runlog.cli.app import app  # noqa: E402
from runlog.plots import RunSeries, make_figure  # noqa: E402
from runlog.plots.diff import diff_figure  # noqa: E402

from conftest import SAMPLE_RUNS, commands_with_output  # noqa: E402

# Names as long as a name can be, of narrow and of wide letters (a count of characters alone lets "WWW…" run
# over), beside ordinary ones and ones with markup, an escape and a "$" (mathtext).
LONG = ["L" * 300, "W" * 300, "K" * 300]
ROLES = ["solver", "W" * 300, "[bold]judge[/bold]", "L" * 300, "\x1bansi $x$"]
KEYS = ["train/loss", "K" * 300, "\x1b[31mansi", "W" * 300, "../../evil/key", "m" * 300]
LABEL_CHARS = 48  # figures.LABEL_CHARS: the most characters a name from the data is shown with


def clock():
    return itertools.count(1_700_000_001.0).__next__


def make_run(root: Path, steps: int, name: str = "run") -> Path:
    with runlog.RunWriter(root, name=name, roles=ROLES, process_index=0, clock=clock(), durable=False) as w:
        for step in range(steps):
            rows = [
                {
                    "reward": float(i + step),
                    "sample_id": f"s{step}-{i}",
                    "group_id": f"g{i // 2}",
                    "roles": {
                        r: {"reward": float(i * (k + 1) + step), "kl": 0.01 * (k + 1)} for k, r in enumerate(ROLES)
                    },
                    "reward_components": {"W" * 300: float(i % 2), "fmt": 0.5, "L" * 300: 0.25 * i},
                }
                for i in range(4)
            ]
            w.log_samples(step, rows)
            w.log_scalars(step, {k: float(step * (j + 1)) for j, k in enumerate(KEYS)})
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("plot7")
    return {
        "many": make_run(base / "many", 8, name="W" * 300),
        "other": make_run(base / "other", 8, name="L" * 300),
        "one": make_run(base / "one", 1),
    }


def _figures(runs: dict[str, Path]) -> dict[str, object]:
    many, one = open_run(runs["many"]), open_run(runs["one"])
    d = diff_runs([many, open_run(runs["other"])], ["W" * 300, "L" * 300], options=DiffOptions(series_only=True))
    marks = {"reward": [(3, "collapse of " + "W" * 300)]}
    return {
        "scalars": make_figure(RunSeries(many), "scalars", window=1),
        "reward": make_figure(RunSeries(many), "reward", marks=marks),
        "kl": make_figure(RunSeries(many), "kl"),
        "components": make_figure(RunSeries(many), "components"),
        "hist": make_figure(RunSeries(many), "hist", steps=[0, 3, 7]),
        "one-step reward": make_figure(RunSeries(one), "reward"),
        "one-step kl": make_figure(RunSeries(one), "kl"),
        "one-step components": make_figure(RunSeries(one), "components"),
        "diff": diff_figure(d, "reward"),
    }


def _shown(t: Text) -> str:
    return t.get_text().replace(r"\$", "$")


def _visible(t: Text) -> bool:
    axes = t.axes
    return bool(t.get_visible() and t.get_text() and (axes is None or axes.get_visible()))


def _words(fig) -> list[Text]:  # noqa: ANN001
    """The figure's texts other than tick labels (numbers, which matplotlib keeps beyond the axes' limits too):
    its title and notes, each panel's title, axis labels, notes and onset labels, and the legends' entries."""
    out = [fig._suptitle, *fig.texts] if fig._suptitle is not None else list(fig.texts)
    for ax in fig.axes:
        if ax.get_visible():
            out += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
            if ax.get_legend() is not None:
                out += ax.get_legend().get_texts()
    return [t for t in out if _visible(t)]


@pytest.fixture(scope="module")
def drawn(runs) -> dict[str, tuple[object, object]]:
    out = {}
    for name, fig in _figures(runs).items():
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        out[name] = (fig, canvas.get_renderer())
    return out


NAMES = [
    "scalars",
    "reward",
    "kl",
    "components",
    "hist",
    "one-step reward",
    "one-step kl",
    "one-step components",
    "diff",
]


@pytest.mark.parametrize("name", NAMES)
def test_every_name_from_the_data_is_cut_to_the_limit(drawn, name):
    fig, _ = drawn[name]
    texts = [t for t in fig.findobj(Text) if _visible(t)]
    titles = [ax.title for ax in fig.axes if ax.get_visible() and ax.title.get_text()]
    legends = [t for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert titles or legends, name
    for t in [*titles, *legends]:
        assert len(_shown(t)) <= LABEL_CHARS, (name, _shown(t))
    for t in texts:  # no text anywhere (a note, an onset's label, the figure's title) holds a name in full
        for long in LONG:
            assert long[: LABEL_CHARS + 1] not in _shown(t), (name, _shown(t)[:80])


@pytest.mark.parametrize("name", NAMES)
def test_panel_titles_do_not_run_over_their_neighbours_or_out_of_the_figure(drawn, name):
    fig, renderer = drawn[name]
    width = fig.bbox.width
    titles = [(ax, ax.title) for ax in fig.axes if ax.get_visible() and ax.title.get_text()]
    boxes = [(ax, t.get_window_extent(renderer)) for ax, t in titles]
    for (_, box_a), (_, box_b) in itertools.combinations(boxes, 2):
        assert not box_a.overlaps(box_b), (name, titles)
    for t in _words(fig):
        box = t.get_window_extent(renderer)
        assert box.x0 >= -1 and box.x1 <= width + 1, (name, _shown(t)[:80], box)
    for ax in fig.axes:  # a legend stays inside its panel
        legend = ax.get_legend()
        if legend is not None and ax.get_visible():
            lb, ab = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
            assert lb.x0 >= ab.x0 - 1 and lb.x1 <= ab.x1 + 1, (name, [_shown(t) for t in legend.get_texts()])


def test_the_titles_of_a_one_step_split_still_say_which_role_and_what(drawn):
    fig, _ = drawn["one-step reward"]
    titles = [_shown(ax.title) for ax in fig.axes if ax.get_visible()]
    assert titles[0] == "solver: reward"
    assert titles[2] == "[bold]judge[/bold]: reward"  # markup shown as written
    for t in (titles[1], titles[3]):
        assert "…" in t and t.endswith(": reward")  # cut in the middle: its end (": reward") kept
    assert titles[4] == r"\x1bansi $x$: reward"  # the escape visible, "$" not parsed as mathtext


# ---- -o FILE that cannot be written ------------------------------------------------------------------------

DEBATE = str(SAMPLE_RUNS / "debate_grpo")
# A report of debate_grpo takes seconds (its figures): the page is built before it is written, and what is
# checked here is the writing, so the report is of the smallest sample run.
SMALL = str(SAMPLE_RUNS / "jaxarc")
# command -> (arguments before -o, the suffix its file needs)
COMMANDS = {
    "summarize": ([DEBATE], ""),
    "metrics diversity": ([DEBATE, "--steps", "0:3"], ""),
    "metrics format": ([DEBATE, "--format", "csv"], ""),
    "diff": ([DEBATE, DEBATE], ""),
    "render-trajectory": ([DEBATE, "--steps", "5", "--format", "json"], ""),
    "plot": ([DEBATE, "--what", "reward"], ".png"),
    "report": ([SMALL], ".html"),
}
# Other writers of the same commands: each format writes its file its own way.
EXTRA = [
    ("summarize", [DEBATE, "--format", "parquet"], ""),
    ("summarize", [DEBATE, "--format", "json"], ""),
    ("diff", [DEBATE, DEBATE, "--format", "json"], ""),
    ("render-trajectory", [DEBATE, "--steps", "5", "--format", "markdown"], ""),
    ("render-trajectory", [DEBATE, "--steps", "5", "--format", "html"], ""),
    ("plot", [DEBATE, "--what", "kl"], ".svg"),
]
CASES = [(n, a, s) for n, (a, s) in COMMANDS.items()] + EXTRA
IDS = [f"{n} {' '.join(x for x in a if x not in (DEBATE, SMALL))}{s}".strip() for n, a, s in CASES]


def test_every_command_with_output_is_checked_here():
    assert commands_with_output() == set(COMMANDS)


def _run(name: str, args: list[str], target: str):
    return CliRunner().invoke(app, [*name.split(), *args, "-o", target], env={"COLUMNS": "100", "NO_COLOR": "1"})


def _one_error_line(res) -> str:
    lines = [x for x in res.stderr.splitlines() if x.startswith("Error:")]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return lines[0]


def _unwritable_proc() -> bool:
    try:
        open("/proc/runlog-probe.txt", "w").close()  # noqa: SIM115
    except OSError:
        return os.path.isdir("/proc")
    return False


@pytest.mark.skipif(not _unwritable_proc(), reason="needs a /proc that takes no new files (Linux)")
@pytest.mark.parametrize(("name", "args", "suffix"), CASES, ids=IDS)
def test_a_folder_that_takes_no_new_files(name, args, suffix):
    target = f"/proc/runlog-x{suffix}"
    res = _run(name, args, target)
    assert res.exit_code == 2, (res.exit_code, res.stderr)
    line = _one_error_line(res)
    assert line.startswith(f"Error: cannot write {target}: "), line
    assert "the folder /proc does not take new files" in line  # not "No such file or directory" alone
    assert "[Errno" not in line and "os error" not in line


@pytest.mark.parametrize(("name", "args", "suffix"), CASES, ids=IDS)
def test_a_read_only_folder(name, args, suffix, tmp_path, monkeypatch):
    """Permission denied on the file (a read-only folder): simulated, so that it holds for root too."""
    folder = tmp_path / "ro"
    folder.mkdir()
    target = folder / f"out{suffix}"
    real_open, real_io_open = builtins.open, io.open

    def refuse(real):
        def opener(file, mode="r", *a, **k):  # noqa: ANN001, ANN002, ANN003
            if (
                isinstance(file, str | os.PathLike)
                and Path(os.fspath(file)).parent == folder
                and set(mode) & set("wax+")
            ):
                raise PermissionError(13, "Permission denied", os.fspath(file))
            return real(file, mode, *a, **k)

        return opener

    monkeypatch.setattr(builtins, "open", refuse(real_open))
    monkeypatch.setattr(io, "open", refuse(real_io_open))
    res = _run(name, args, str(target))
    assert res.exit_code == 2, (res.exit_code, res.stderr)
    line = _one_error_line(res)
    assert line == f"Error: cannot write {target}: Permission denied", line
    assert not target.exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize(
    ("name", "args", "suffix"),
    [c for c in CASES if not c[2]],
    ids=[i for c, i in zip(CASES, IDS, strict=True) if not c[2]],
)
def test_a_full_disk(name, args, suffix):
    res = _run(name, args, "/dev/full")
    assert res.exit_code == 2, (res.exit_code, res.stderr)
    assert _one_error_line(res) == "Error: cannot write /dev/full: No space left on device"


@pytest.mark.parametrize(("name", "args", "suffix"), CASES, ids=IDS)
def test_a_missing_folder_and_a_folder_given_as_the_file(name, args, suffix, tmp_path):
    missing = tmp_path / "nope" / f"x{suffix}"
    res = _run(name, args, str(missing))
    assert res.exit_code == 2, (res.exit_code, res.stderr)
    line = _one_error_line(res)
    assert str(missing) in line and f"folder {missing.parent} does not exist" in line, line
    res = _run(name, args, str(tmp_path))
    assert res.exit_code == 2, (res.exit_code, res.stderr)
    line = _one_error_line(res)
    assert str(tmp_path) in line and "folder" in line, line


def test_plot_help_documents_the_exit_code_of_an_output_that_cannot_be_written():
    res = CliRunner().invoke(app, ["plot", "--help"], env={"COLUMNS": "200"})
    text = " ".join(res.stdout.split())
    assert "-o FILE cannot be written" in text
