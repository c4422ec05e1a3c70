"""Fleet summaries and plots (audit 19): a run pooling layouts or tasks is said by a fleet's summarize and metrics
and by plot, as by summarize of the run alone; plot --diff exits 1 where a glob's match is skipped, as diff;
plot --what scalars and summarize --scalars of a run without scalars say so (exit 1 and 2); a scalar key's
line breaks are all explained; histograms count null rewards and say a step logged with no rows; a fleet's copy
warning names the manifest that exists. Expected figures come from the files themselves (json, pyarrow), never
from runlog."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from conftest import REALDATA, make_native_run, native_rows, need_realdata, write_native_samples

VERIFIERS = ("verifiers_math_python_gpt5nano_results.jsonl", "verifiers_math_python_gpt5nano_metadata.json")
INSPECT = ("inspect_ai_popularity_eval_log.json", "inspect_ai_security_guide_eval_log.json")


def _mixed(folder: Path, files: tuple[str, ...] = (*VERIFIERS, *INSPECT)) -> Path:
    """Loose dumps side by side (a verifiers results file beside inspect_ai logs of two tasks): one run."""
    need_realdata(*files)
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        shutil.copy(REALDATA / name, folder / name)
    return folder


def _verifiers_rows() -> int:
    with open(REALDATA / VERIFIERS[0], encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def _inspect_tasks() -> dict[str, int]:
    """Each inspect_ai log's task and its number of samples, from the JSON."""
    out = {}
    for name in INSPECT:
        log = json.loads((REALDATA / name).read_text(encoding="utf-8"))
        out[log["eval"]["task"]] = len(log["samples"])
    return out


def _notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("note: ")]


# -- 1: the layouts and tasks a run pools, said by a fleet and by plot ---------------------------------------------


def test_fleet_summarize_and_metrics_name_a_run_that_pools_layouts_and_tasks(cli, tmp_path: Path) -> None:
    """summarize 'ROOT/*' and metrics format 'ROOT/*' pooled a run's verifiers and inspect_ai samples (two tasks)
    in its rows and said nothing; summarize of the run alone says so. Each now says it, naming the run."""
    _mixed(tmp_path / "fleet" / "mixed")
    make_native_run(tmp_path / "fleet" / "a")
    tasks = _inspect_tasks()
    layouts = f"verifiers ({_verifiers_rows():,} rows), inspect_ai ({sum(tasks.values()):,} rows)"
    envs = ", ".join(f"{t} ({n} rows)" for t, n in sorted(tasks.items(), key=lambda kv: (-kv[1], kv[0])))
    for args in (["summarize"], ["metrics", "format"]):
        r = cli(*args, tmp_path / "fleet" / "*", "--format", "csv")
        said = [n for n in _notes(r.stderr) if n.startswith("note: mixed: ")]
        assert len(said) == 1, (args, r.stderr)
        assert f"holds samples of 2 layouts, {layouts}" in said[0], said[0]
        assert f"its inspect_ai samples are of 2 envs (tasks), {envs}" in said[0], said[0]
        assert not any(n.startswith("note: a: ") for n in _notes(r.stderr))  # one layout of one task: nothing


def test_a_run_read_in_chunks_is_said_once(tmp_path: Path) -> None:
    """A big run is cut into chunks of steps: its inspect_ai eval logs (two tasks) are in one chunk, its native
    train files in the others. Its eval rows pool the two tasks: said once, naming the run (its train rows,
    of one layout and task, pool nothing)."""
    from runlog.analysis.filters import Filters
    from runlog.fleet import summarize_fleet

    run = make_native_run(tmp_path / "big", steps=range(6), scalars=False)
    _mixed(run, INSPECT)
    tasks = _inspect_tasks()
    result = summarize_fleet([str(run)], ["run", "role"], filters=Filters(), task_bytes=4096)
    assert result.units > 2  # read in chunks
    said = [n for n in result.notes if n.startswith("big: ")]
    assert len(said) == 1, result.notes
    envs = ", ".join(f"{t} ({n} rows)" for t, n in sorted(tasks.items(), key=lambda kv: (-kv[1], kv[0])))
    assert f"big: split eval's inspect_ai samples are of 2 envs (tasks), {envs}" in said[0], said


def test_fleet_of_one_chunked_run_pooling_two_layouts_in_one_split(tmp_path: Path) -> None:
    """Native eval files beside inspect_ai eval logs, cut into chunks: split eval holds both layouts; the note
    counts the native rows of every chunk, not of the chunk that holds the logs."""
    from runlog.analysis.filters import Filters
    from runlog.fleet import summarize_fleet

    run = tmp_path / "big"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "roles": ["solver"]}))
    for step in range(6):
        write_native_samples(
            run / "samples" / "eval" / f"step_{step:08d}.p0.parquet", native_rows(step, 5, "eval", ("solver",))
        )
    _mixed(run, INSPECT)
    native = sum(pq.read_metadata(f).num_rows for f in run.glob("samples/eval/*.parquet"))
    result = summarize_fleet([str(run)], ["run", "role"], filters=Filters(), task_bytes=4096)
    assert result.units > 2
    said = [n for n in result.notes if n.startswith("big: ")]
    assert len(said) == 1, result.notes
    assert f"runlog ({native:,} rows), inspect_ai ({sum(_inspect_tasks().values())} rows)" in said[0], said[0]


def _captured(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures ``runlog plot`` saves."""
    import runlog.plots

    figures: list[Any] = []
    save = runlog.plots.save_figure

    def keep(fig: Any, path: Any) -> Any:
        figures.append(fig)
        return save(fig, path)

    monkeypatch.setattr(runlog.plots, "save_figure", keep)
    return figures


def _texts(fig: Any) -> list[str]:
    return [t.get_text().replace(r"\$", "$").replace("\n", " ") for ax in fig.axes for t in ax.texts]


@pytest.mark.parametrize("what", ["reward", "hist"])
def test_plot_says_the_layouts_and_tasks_its_figure_pools(cli, tmp_path: Path, monkeypatch, what: str) -> None:
    """plot of a folder of loose dumps drew one histogram "n=21" of three tasks, silently: stderr and the
    figure's note now say which layouts and tasks it pools."""
    figures = _captured(monkeypatch)
    run = _mixed(tmp_path / "mixed")
    r = cli("plot", run, "--what", what, "-o", tmp_path / "p.png")
    assert r.exit_code == 0, r.stderr
    layouts = f"this run holds samples of 2 layouts, verifiers ({_verifiers_rows()} rows), inspect_ai"
    assert any(layouts in n for n in _notes(r.stderr)), r.stderr
    assert any(layouts in " ".join(t.split()) for t in _texts(figures[0])), _texts(figures[0])


# -- 2: plot --diff with a glob whose match is skipped -------------------------------------------------------------


def test_plot_diff_exits_1_where_a_glob_match_is_skipped_as_diff_does(cli, tmp_path: Path) -> None:
    make_native_run(tmp_path / "f" / "a")
    make_native_run(tmp_path / "f" / "b")
    (tmp_path / "f" / "d").mkdir()  # an empty folder: no run
    glob = str(tmp_path / "f" / "*")
    assert cli("diff", tmp_path / "f" / "a", glob).exit_code == 1
    r = cli("plot", tmp_path / "f" / "a", "--diff", glob, "-o", tmp_path / "d.png")
    assert r.exit_code == 1, r.stderr
    assert "d: run skipped" in r.stderr and (tmp_path / "d.png").stat().st_size > 0


# -- 3: no scalars ------------------------------------------------------------------------------------------------


def test_plot_scalars_of_a_run_without_scalars_says_so_and_exits_1(cli, tmp_path: Path) -> None:
    run = make_native_run(tmp_path / "r", scalars=False)
    assert not list(run.glob("scalars*"))
    r = cli("plot", run, "--what", "scalars", "-o", tmp_path / "s.png")
    assert r.exit_code == 1, r.stderr
    assert "note: this run has no scalar metrics" in r.stderr and "the figure holds no data" in r.stderr


def test_plot_scalars_whose_every_line_is_broken_exits_1(cli, tmp_path: Path) -> None:
    run = make_native_run(tmp_path / "r", scalars=False)
    (run / "scalars.p0.jsonl").write_text('{"step": 1, "loss": 1\n')
    with pytest.raises(json.JSONDecodeError):
        json.loads((run / "scalars.p0.jsonl").read_text())
    r = cli("plot", run, "--what", "scalars", "-o", tmp_path / "s.png")
    assert r.exit_code == 1, r.stderr
    assert "error: scalars.p0.jsonl: line 1" in r.stderr and "the figure holds no data" in r.stderr


def test_summarize_scalars_of_a_run_without_scalars_is_a_usage_error(cli, tmp_path: Path) -> None:
    """An empty table and exit 0 read as an answer; the reverse (a scalars-only run without --scalars) exits 2."""
    run = make_native_run(tmp_path / "r", scalars=False)
    r = cli("summarize", run, "--scalars", "--format", "csv")
    assert r.exit_code == 2, r.stderr
    assert r.stdout.strip() == ""
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "this run has no scalar metrics" in errors[0] and str(run) in errors[0]


# -- 4: a scalar key's breaks, all said ----------------------------------------------------------------------------


def test_scalar_panel_says_lost_records_and_records_without_the_key(tmp_path: Path) -> None:
    """Key c every 2 steps: absent from the records at 20..30 (they exist), and at 50..58 no record at all
    (lost). The line breaks at both; the note named only the lost steps."""
    from runlog import open_run
    from runlog.plots import make_figure

    records = []
    for step in range(100):
        if 50 <= step <= 59:
            continue  # records lost
        rec: dict[str, Any] = {"step": step, "b": float(step)}
        if step % 2 == 0 and not 20 <= step <= 30:
            rec["c"] = -float(step)
        records.append(rec)
    run = tmp_path / "s"
    run.mkdir()
    (run / "scalars.p0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with_record = {r["step"] for r in records}
    c_steps = sorted(r["step"] for r in records if "c" in r)
    due = [s for s in range(c_steps[0], c_steps[-1] + 1, 2) if s not in c_steps]
    kept = [s for s in due if s in with_record]
    lost = [s for s in due if s not in with_record]
    assert (kept[0], kept[-1], lost[0], lost[-1]) == (20, 30, 50, 58)
    fig = make_figure(open_run(run), "scalars", window=1)
    [ax] = [a for a in fig.axes if a.get_title() == "c"]
    note = " ".join(" ".join(t.get_text() for t in ax.texts).split())
    assert f"steps {lost[0]}..{lost[-1]} every 2 missing" in note, note
    assert f"steps {kept[0]}..{kept[-1]} every 2: its file has records without it" in note, note


# -- 5: histograms -------------------------------------------------------------------------------------------------


def test_histogram_note_counts_null_rewards_too(tmp_path: Path) -> None:
    from runlog import open_run
    from runlog.plots import make_figure

    run = tmp_path / "h"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "roles": ["solver"]}))
    odd = [math.nan, math.inf, -math.inf, None]
    for step in range(3):
        rows = native_rows(step, 6, roles=("solver",))
        if step == 1:
            for row, value in zip(rows, odd, strict=False):
                row["roles"] = [{**row["roles"][0], "reward": value}]
        write_native_samples(run / "samples" / "train" / f"step_{step:08d}.p0.parquet", rows)
    table = pq.read_table(run / "samples" / "train" / "step_00000001.p0.parquet").to_pylist()
    rewards = [role["reward"] for row in table for role in row["roles"]]
    nulls = sum(v is None for v in rewards)
    nans = sum(v is not None and math.isnan(v) for v in rewards)
    assert (nulls, nans) == (1, 1)
    fig = make_figure(open_run(run), "hist", steps=[1])
    note = " ".join(" ".join(_texts(fig)).split())
    assert f"not drawn: {nans} NaN, 1 +inf, 1 -inf, {nulls} null reward(s)" in note, note


def test_histogram_of_a_step_logged_with_no_rows_says_so(cli, tmp_path: Path, monkeypatch) -> None:
    """--steps 17 where step 17 was logged with no rows: "no such step" (exit 2) read as a step never logged."""
    figures = _captured(monkeypatch)
    run = make_native_run(tmp_path / "r", steps=range(20), scalars=False)
    empty = run / "samples" / "train" / "step_00000017.p0.parquet"
    write_native_samples(empty, [])
    assert pq.read_metadata(empty).num_rows == 0
    r = cli("plot", run, "--what", "hist", "--steps", "17", "-o", tmp_path / "h.png")
    assert r.exit_code == 0, r.stderr
    assert "no such step" not in r.stderr
    assert any("logged with no rows" in t for t in _texts(figures[0])), _texts(figures[0])
    # A step never logged is still a usage error.
    assert cli("plot", run, "--what", "hist", "--steps", "25", "-o", tmp_path / "h.png").exit_code == 2


# -- 6: the copy warning names the manifest that exists ------------------------------------------------------------


def test_copy_warning_of_a_glob_names_the_manifest_of_the_run_folder(cli, tmp_path: Path) -> None:
    """'f/*' matches g, which discovery reads as its one run g/x: the warning named g/run.json (no such file)
    and, comparing g's files by g's names, missed that g/x is an identical copy of a."""
    make_native_run(tmp_path / "f" / "a")
    shutil.copytree(tmp_path / "f" / "a", tmp_path / "f" / "g" / "x")
    r = cli("summarize", tmp_path / "f" / "*", "--by", "run", "--format", "csv")
    warned = [line for line in r.stderr.splitlines() if "run_id" in line]
    assert len(warned) == 1, r.stderr
    assert warned[0].startswith("warning: g/x/run.json: an identical copy of run a"), warned[0]
    assert (tmp_path / "f" / "g" / "x" / "run.json").is_file()
