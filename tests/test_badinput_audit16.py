"""Audit a16, bad-input matrix (F1-F4) and a new user's round (finding 5).

F2: ``plot`` of a run with a copied shard said nothing, where summarize, diff, inspect and doctor warn that its
rows count twice. F3: ``render-trajectory --steps 5`` said nothing of a truncated file at step 3 (only the
files of the steps selected were opened), though docs/cli.md says files that could not be read are listed.
F4: ``plot`` exited 0 when no sample file of the run could be read (an image of a note alone passed a CI step).
F1: a scalars line of many keys (one record of 500,000 among records of 30) took polars 35 s to read, one
column per key; the careful reader reads it in a few seconds, to the same frame. N5: a fleet's scalars-only run
was a row of count 0 under ``--by run --split train``, and left out with a note under ``--by run --by role``.

Runs are copies of the bundled sample runs, damaged here; expected counts come from the files (pyarrow, json).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog.formats import scalars_jsonl
from runlog.formats.base import Candidate, FileInfo, RunContext
from runlog.formats.scalars_jsonl import STEP_KEYS, _fast_flat_scalars, probe_flat_scalars

SAMPLE_RUNS = Path(__file__).resolve().parents[1] / "sample_runs"
SHARD = "samples/train/step_00000003.p0.parquet"
TWICE = "its rows count twice"

pytest.importorskip("matplotlib")


def _copy(tmp_path: Path, name: str = "debate_grpo") -> Path:
    run = tmp_path / name
    shutil.copytree(SAMPLE_RUNS / name, run)
    return run


def _truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


# -- F2: plot says a copied shard, as summarize does ------------------------------------------------------------


def test_plot_warns_that_a_copied_shard_counts_twice(cli, tmp_path: Path) -> None:  # noqa: ANN001
    run = _copy(tmp_path)
    shutil.copy(run / SHARD, run / "samples/train/step_3.p0.parquet")
    summary = cli("summarize", run, "--format", "json")
    said = [line for line in summary.stderr.splitlines() if TWICE in line]
    assert len(said) == 1 and "step_3.p0.parquet" in said[0]
    r = cli("plot", run, "-o", tmp_path / "p.png")
    assert r.exit_code == 0, r.stderr
    assert [line for line in r.stderr.splitlines() if TWICE in line] == said  # the same line, word for word


def test_plot_diff_warns_of_a_compared_runs_copied_shard(cli, tmp_path: Path) -> None:  # noqa: ANN001
    run = _copy(tmp_path)
    shutil.copy(run / SHARD, run / "samples/train/step_3.p0.parquet")
    r = cli("plot", SAMPLE_RUNS / "debate_grpo", "--diff", run, "-n", "base", "-n", "copy", "-o", tmp_path / "p.png")
    assert r.exit_code == 0, r.stderr
    said = [line for line in r.stderr.splitlines() if TWICE in line]
    assert len(said) == 1 and said[0].startswith("warning: copy: samples/train/step_3.p0.parquet: ")


# -- F4: plot exits 1 when no file it draws from could be read --------------------------------------------------


def test_plot_exits_1_when_no_sample_file_can_be_read(cli, tmp_path: Path) -> None:  # noqa: ANN001
    run = _copy(tmp_path)
    files = sorted(run.glob("samples/*/*.parquet"))
    for f in files:
        _truncate(f)
    out = tmp_path / "p.png"
    r = cli("plot", run, "-o", out)
    assert r.exit_code == 1, r.stderr
    assert out.stat().st_size > 0  # the image is written: it says why it is empty
    assert "note: no sample file of this run could be read (see the errors): the figure holds no data" in r.stderr
    assert f"and {len(files) - 5:,} more file(s)" in r.stderr  # every file is in an error line
    # The scalars are read: their figure has its data, exit 0.
    assert cli("plot", run, "--what", "scalars", "-o", out).exit_code == 0


def test_plot_still_exits_0_when_some_files_cannot_be_read(cli, tmp_path: Path) -> None:  # noqa: ANN001
    run = _copy(tmp_path)
    _truncate(run / SHARD)
    r = cli("plot", run, "-o", tmp_path / "p.png")
    assert r.exit_code == 0, r.stderr
    assert f"error: {SHARD}: unreadable Parquet" in r.stderr
    assert "could be read" not in r.stderr


# -- F3: render-trajectory lists the problems of files at other steps ------------------------------------------


def test_render_lists_an_unreadable_file_of_another_step(cli, tmp_path: Path) -> None:  # noqa: ANN001
    run = _copy(tmp_path)
    _truncate(run / SHARD)
    shown = cli("render-trajectory", run, "--steps", "5", "--format", "json")
    assert shown.exit_code == 0, shown.stderr  # rendered: 0, as documented
    assert {c["step"] for c in json.loads(shown.stdout)} == {5}
    errors = [line for line in shown.stderr.splitlines() if line.startswith("error:")]
    assert errors == [line for line in cli("summarize", run).stderr.splitlines() if line.startswith("error:")]
    assert errors and errors[0].startswith(f"error: {SHARD}: unreadable Parquet")
    none = cli("render-trajectory", run, "--steps", "5", "--sample-id", "nope", "--format", "json")
    assert none.exit_code == 1
    assert f"error: {SHARD}: unreadable Parquet" in none.stderr


def test_render_lists_a_flink_file_of_another_version_at_another_step(cli, tmp_path: Path) -> None:  # noqa: ANN001
    run = _copy(tmp_path, "flink_mixed")
    path = run / "flink_logs/batch_debug_data_train_10.parquet"
    table = pq.read_table(path)
    i = table.schema.get_field_index("schema_version")
    column = pa.array([2] * table.num_rows, table.schema.field(i).type)
    pq.write_table(table.set_column(i, table.schema.field(i), column), path)
    r = cli("render-trajectory", run, "--steps", "3", "--format", "json")
    assert r.exit_code == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if "batch_debug_data_train_10.parquet" in line]
    assert lines == [
        "error: flink_logs/batch_debug_data_train_10.parquet: unknown schema version 2 for a Flink file (Flink "
        "files are v0 or v1; v2 is runlog's native layout); file skipped"
    ]


# -- F1: a wide, sparse scalars file is read carefully, to the same frame --------------------------------------


def _wide(tmp_path: Path, keys: int) -> tuple[Path, list[dict]]:
    run = tmp_path / "wide"
    run.mkdir()
    records = [{"step": s, "loss": 1.0 / (s + 1), "lr": 1e-5} for s in range(20)]
    records[7].update({f"layer/{i:05d}": float(i) for i in range(keys)})
    (run / "scalars.p0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run, records


def _probe(run: Path) -> tuple[FileInfo, RunContext]:
    path = run / "scalars.p0.jsonl"
    cand = Candidate(run, path, path.stat().st_size)
    ctx = RunContext(run)
    info = FileInfo("scalars.p0.jsonl", path, "runlog", "jsonl", "scalars", cand.size)
    probe_flat_scalars(cand, ctx, info, "runlog", repeats="replace")
    return info, ctx


def test_a_wide_sparse_scalars_file_skips_polars_and_gives_the_same_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = 3_000  # past WIDE_KEYS (1,000), in one record of 20
    run, records = _wide(tmp_path, keys)
    path = run / "scalars.p0.jsonl"
    assert _fast_flat_scalars(Candidate(run, path, path.stat().st_size), STEP_KEYS, False) is None
    info, _ = _probe(run)
    frame = info.frame.sort("step", "key")
    assert frame.height == sum(len(r) - 1 for r in records) == 2 * 20 + keys
    assert info.steps == list(range(20))
    layer = frame.filter(frame["key"] == "layer/02999")
    assert layer["step"].to_list() == [7] and layer["value"].to_list() == [2999.0]
    # The same frame as polars' path gives (forced past the check): the check changes the path, not the figures.
    monkeypatch.setattr(scalars_jsonl, "WIDE_KEYS", 10 * keys)
    assert _fast_flat_scalars(Candidate(run, path, path.stat().st_size), STEP_KEYS, False) is not None
    fast, _ = _probe(run)
    cols = ["step", "key", "value", "source", "record"]
    assert fast.frame.sort("step", "key").select(cols).equals(frame.select(cols))


def test_keys_spread_over_many_lines_are_told_after_parsing(tmp_path: Path) -> None:
    """No one line is wide, but the file is: 2,000 keys, each held by one record of 20."""
    run = tmp_path / "spread"
    run.mkdir()
    lines = [json.dumps({"step": s, **{f"k/{s}/{i}": 1.0 for i in range(100)}}) for s in range(20)]
    (run / "scalars.p0.jsonl").write_text("\n".join(lines) + "\n")
    path = run / "scalars.p0.jsonl"
    assert _fast_flat_scalars(Candidate(run, path, path.stat().st_size), STEP_KEYS, False) is None
    info, _ = _probe(run)
    assert info.frame.height == 2_000


def test_a_dense_file_of_many_keys_keeps_the_fast_path(tmp_path: Path) -> None:
    """2,000 keys in every one of 40 records: polars' path, the faster there."""
    run = tmp_path / "dense"
    run.mkdir()
    lines = [json.dumps({"step": s, **{f"k/{i}": float(s + i) for i in range(2_000)}}) for s in range(40)]
    (run / "scalars.p0.jsonl").write_text("\n".join(lines) + "\n")
    path = run / "scalars.p0.jsonl"
    assert _fast_flat_scalars(Candidate(run, path, path.stat().st_size), STEP_KEYS, False) is not None


# -- N5: a fleet's run of no row is left out, and said, in every view -------------------------------------------

NO_ROW = "note: run(s) with no row, not in the table: jaxarc "


@pytest.mark.parametrize("by", [["--by", "run"], ["--by", "run", "--by", "role"], ["--by", "run", "--by", "step"]])
def test_a_scalars_only_run_of_a_fleet_is_said_not_shown(cli, by: list[str]) -> None:  # noqa: ANN001
    fleet = [SAMPLE_RUNS / "jaxarc", SAMPLE_RUNS / "debate_grpo"]
    r = cli("summarize", *fleet, *by, "--split", "train", "--format", "json")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert {row["run"] for row in rows} == {"debate_grpo"}
    assert sum(line.startswith(NO_ROW) for line in r.stderr.splitlines()) == 1
