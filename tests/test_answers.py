"""Kept answers (``runlog.cli.answers``): the same ``summarize`` asked again of an unchanged run prints what it
printed before without reading the run; any change to the run, the question or the output's form is
answered afresh, and equals an answer computed with no kept answers at all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog.cli import answers

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_runs" / "debate_grpo"
DAMAGED = ROOT / "sample_runs" / "damaged"
PAST = 1_600_000_000


def _settle(run: Path) -> None:
    """Every file of ``run`` dated long ago: not "just written", so that answers are kept."""
    for p in run.rglob("*"):
        os.utime(p, (PAST, PAST))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    _settle(dst)
    return dst


def _runlog(args: list[str], cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("RUNLOG_CACHE", "RUNLOG_ANSWERS")}
    full.update(RUNLOG_CACHE_DIR=str(cache), **env)
    return subprocess.run(
        [sys.executable, "-m", "runlog", *args], capture_output=True, text=True, env=full, timeout=300, check=False
    )


def _kept(cache: Path) -> list[Path]:
    where = cache / "answers"
    return sorted(where.glob("*.json")) if where.exists() else []


def _printed(entry: dict, stream: int) -> str:
    return "".join(text or "" for s, text in entry["output"] if s == stream)


def _same(a: subprocess.CompletedProcess[str], b: subprocess.CompletedProcess[str]) -> None:
    assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr)


@pytest.fixture(autouse=True)
def _answers_on(monkeypatch):
    monkeypatch.delenv("RUNLOG_ANSWERS", raising=False)  # conftest turns them off for every other test


def test_a_repeat_prints_the_kept_answer_without_reading_the_run(tmp_path, cli, monkeypatch, _probe_cache):
    monkeypatch.setenv("RUNLOG_DEBUG", "1")  # an internal error raised as it is (RUNLOG_* are in the key)
    run = _copy(SAMPLE, tmp_path / "run")
    args = ["summarize", run, "--by", "role", "--by", "step", "-f", "csv"]
    first = cli(*args)
    assert first.exit_code == 0, first.output
    assert len(_kept(_probe_cache)) == 1
    import runlog.run

    def no_reading(*a, **k):
        raise AssertionError("the run was read")

    monkeypatch.setattr(runlog.run, "open_run", no_reading)
    again = cli(*args)
    assert (again.exit_code, again.stdout, again.stderr) == (first.exit_code, first.stdout, first.stderr)
    with pytest.raises(AssertionError, match="the run was read"):
        cli(*args[:-1], "json")  # another question is computed


@pytest.mark.parametrize("change", ["rewrite", "add", "remove", "rename", "touch"])
def test_any_change_to_the_run_is_answered_afresh(tmp_path, change):
    run = _copy(SAMPLE, tmp_path / "run")
    cache = tmp_path / "cache"
    args = ["summarize", str(run), "--by", "role", "--by", "split", "-f", "json"]
    first = _runlog(args, cache)
    assert first.returncode == 0, first.stderr
    assert len(_kept(cache)) == 1
    files = sorted((run / "samples" / "train").glob("*.parquet"))
    victim = files[-1]
    if change == "rewrite":  # the same modification time, other rewards
        table = pq.read_table(victim)
        rows = table.to_pylist()
        for r in rows:
            for role in r["roles"]:
                role["reward"] = (role["reward"] or 0.0) + 1.0
        pq.write_table(table.from_pylist(rows, schema=table.schema), victim)
        os.utime(victim, (PAST, PAST))
    elif change == "add":  # the next step, as a trainer would write it
        table = pq.read_table(victim)
        step = table.column("step")[0].as_py() + 1
        table = table.set_column(table.schema.get_field_index("step"), "step", pa.array([step] * len(table)))
        added = victim.with_name(f"step_{step:08d}.p0.parquet")
        pq.write_table(table, added)
        os.utime(added, (PAST, PAST))
    elif change == "remove":
        victim.unlink()
    elif change == "rename":
        victim.rename(victim.with_name("step_998.p0.parquet"))
    else:  # contents untouched, only the modification time: still another version of the file
        os.utime(victim, (PAST + 10, PAST + 10))
    fresh = _runlog(args, cache)
    unkept = _runlog(args, tmp_path / "other-cache", RUNLOG_ANSWERS="off")
    _same(fresh, unkept)
    if change != "touch":  # the rename is said on stderr (the name's step is not the rows')
        assert (fresh.stdout, fresh.stderr) != (first.stdout, first.stderr)
    assert not (tmp_path / "other-cache" / "answers").exists()


def test_a_run_written_just_now_is_never_kept(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(SAMPLE, run, copy_function=shutil.copyfile)  # modification times: now
    cache = tmp_path / "cache"
    result = _runlog(["summarize", str(run)], cache)
    assert result.returncode == 0, result.stderr
    assert _kept(cache) == []


def test_problems_and_their_exit_code_are_kept_usage_errors_are_not(tmp_path):
    run = _copy(DAMAGED, tmp_path / "damaged")
    cache = tmp_path / "cache"
    first = _runlog(["summarize", str(run), "-f", "csv"], cache)
    assert first.returncode == 1 and "error" in first.stderr.lower()
    assert len(_kept(cache)) == 1
    _same(_runlog(["summarize", str(run), "-f", "csv"], cache), first)
    # stdout and stderr come back in the order they were written: one stream holding both is the same
    env = {k: v for k, v in os.environ.items() if k not in ("RUNLOG_CACHE", "RUNLOG_ANSWERS")}
    both = [sys.executable, "-m", "runlog", "summarize", str(run), "-f", "csv"]
    merged = [
        subprocess.run(both, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**env, "RUNLOG_CACHE_DIR": str(c)})
        for c in (tmp_path / "c2", tmp_path / "c2", tmp_path / "c3")
    ]
    assert merged[0].stdout == merged[1].stdout == merged[2].stdout
    assert len(_kept(tmp_path / "c2")) == 1
    bad = _runlog(["summarize", str(run), "--role", "nobody"], cache)
    assert bad.returncode == 2
    assert len(_kept(cache)) == 1


def test_output_to_a_file_binary_output_and_no_cache_keep_nothing(tmp_path):
    run = _copy(SAMPLE, tmp_path / "run")
    cache = tmp_path / "cache"
    assert _runlog(["summarize", str(run), "-o", str(tmp_path / "out.csv"), "-f", "csv"], cache).returncode == 0
    assert _runlog(["summarize", str(run), "-o", str(tmp_path / "out.parquet"), "-f", "parquet"], cache).returncode == 0
    assert _runlog(["summarize", str(run), "--no-cache"], cache).returncode == 0
    assert _runlog(["summarize", str(run)], cache, RUNLOG_CACHE="off").returncode == 0
    assert _runlog(["summarize", str(run)], cache, RUNLOG_ANSWERS="off").returncode == 0
    assert _kept(cache) == []


def test_the_terminal_width_is_part_of_the_question(tmp_path):
    run = _copy(SAMPLE, tmp_path / "run")
    cache = tmp_path / "cache"
    narrow = _runlog(["summarize", str(run)], cache, COLUMNS="60")
    wide = _runlog(["summarize", str(run)], cache, COLUMNS="200")
    assert len(_kept(cache)) == 2
    _same(_runlog(["summarize", str(run)], cache, COLUMNS="60"), narrow)
    _same(_runlog(["summarize", str(run)], cache, COLUMNS="200"), wide)
    _same(wide, _runlog(["summarize", str(run)], tmp_path / "c2", COLUMNS="200", RUNLOG_ANSWERS="off"))


def test_a_corrupt_or_foreign_entry_is_answered_afresh_and_replaced(tmp_path):
    run = _copy(SAMPLE, tmp_path / "run")
    cache = tmp_path / "cache"
    args = ["summarize", str(run), "-f", "json"]
    first = _runlog(args, cache)
    (entry,) = _kept(cache)
    kept = json.loads(entry.read_bytes())
    assert _printed(kept, 1) == first.stdout
    for damage in (
        b"{not json",
        json.dumps({**kept, "key": "another", "output": [[1, "forged"]]}).encode(),
        json.dumps({**kept, "output": [[3, "forged"]]}).encode(),
        json.dumps({**kept, "code": 2}).encode(),
    ):
        entry.write_bytes(damage)
        again = _runlog(args, cache)
        _same(again, first)
        assert json.loads(entry.read_bytes()) == kept
    data = json.loads(entry.read_bytes())
    data["output"] = [[1, "forged\n"]]
    data["listing"] = ["0" * 64]  # a listing of another run: stale
    entry.write_text(json.dumps(data))
    _same(_runlog(args, cache), first)


def test_only_the_most_recently_used_answers_are_kept(tmp_path):
    where = tmp_path / "answers"
    where.mkdir()
    for i in range(10):
        p = where / f"{i:032x}.json"
        p.write_text("{}")
        os.utime(p, (PAST + i, PAST + i))
    (where / ".abc-x1.tmp").write_text("{}")  # an atomic write under way: not counted, not deleted
    (where / ".abc-x2.tmp").write_text("{}")  # one that never finished, an hour and more ago: deleted
    os.utime(where / ".abc-x2.tmp", (PAST, PAST))
    answers.trim(where, keep=4)
    assert sorted(p.name for p in where.iterdir()) == [".abc-x1.tmp", *(f"{i:032x}.json" for i in range(6, 10))]


def test_the_code_stamp_changes_with_a_library(tmp_path, monkeypatch):
    lib = tmp_path / "lib" / "fake_numbers_lib"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    monkeypatch.setattr(answers, "LIBRARIES", (*answers.LIBRARIES, "fake_numbers_lib"))
    before = answers.code_stamp()
    assert answers.code_stamp() == before
    (lib / "__init__.py").write_text("X = 22\n")
    assert answers.code_stamp() != before


def test_a_closed_pipe_is_not_kept(tmp_path):
    run = _copy(SAMPLE, tmp_path / "run")
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k not in ("RUNLOG_CACHE", "RUNLOG_ANSWERS")}
    env["RUNLOG_CACHE_DIR"] = str(cache)
    cmd = f"{sys.executable} -m runlog summarize {run} --by role --by step -f csv | head -c 10 >/dev/null"
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], env=env, timeout=300, check=False)
    for entry in _kept(cache):  # if the whole answer fit in the pipe before head left, it is whole
        full = _runlog(["summarize", str(run), "--by", "role", "--by", "step", "-f", "csv"], tmp_path / "c2")
        assert _printed(json.loads(entry.read_bytes()), 1) == full.stdout


@pytest.mark.parametrize("statistics", [True, False])
def test_a_file_named_for_one_step_holding_another_is_said_and_counted_at_its_rows_step(tmp_path, statistics):
    """A step file copied by hand under another step's name: its rows are read at their own step (as a
    read of the rows does), so the stored partials group it with that step's other files, and GRPO prompt
    groups split across the two files are one group, as in a read with no cache at all. Without statistics
    for ``step`` in the footer, the column itself tells."""
    run = _copy(SAMPLE, tmp_path / "run")
    cache = tmp_path / "cache"
    args = ["summarize", str(run), "--by", "role", "--by", "split", "-f", "json"]
    assert _runlog(args, cache).returncode == 0  # partials of every step stored
    first = run / "samples" / "train" / "step_00000000.p0.parquet"
    copy = first.with_name("step_00000999.p0.parquet")
    if statistics:
        shutil.copyfile(first, copy)
    else:
        table = pq.read_table(first)
        others = [c for c in table.column_names if c != "step"]
        pq.write_table(table, copy, write_statistics=others)
        assert pq.ParquetFile(copy).metadata.row_group(0).column(table.column_names.index("step")).statistics is None
    os.utime(copy, (PAST, PAST))
    cached = _runlog(args, cache)
    cold = _runlog(args, tmp_path / "c2", RUNLOG_CACHE="off")
    assert cached.returncode == cold.returncode == 0
    said = "step_00000999.p0.parquet: named step 999 but its rows are of step 0: they count at their own steps"
    assert said in cached.stderr and said in cold.stderr
    for a, b in zip(json.loads(cached.stdout), json.loads(cold.stdout), strict=True):
        assert a.keys() == b.keys()
        for k, v in a.items():
            same = v == b[k] if isinstance(v, str) or v is None else v == pytest.approx(b[k], rel=1e-12, abs=1e-12)
            assert same, (a["role"], a["split"], k, v, b[k])
    steps = _runlog(["summarize", str(run), "--by", "step", "--split", "train", "-f", "json"], cache)
    assert 999 not in [r["step"] for r in json.loads(steps.stdout)]


def test_diff_keeps_its_answer_until_either_run_changes(tmp_path):
    a = _copy(SAMPLE, tmp_path / "a")
    b = _copy(SAMPLE, tmp_path / "b")
    cache = tmp_path / "cache"
    for p in (b / "samples" / "train").glob("*.parquet"):  # B: every reward of the solver 0.25 higher
        table = pq.read_table(p)
        rows = table.to_pylist()
        for r in rows:
            for role in r["roles"]:
                if role["role"] == "solver" and role["reward"] is not None:
                    role["reward"] += 0.25
        pq.write_table(table.from_pylist(rows, schema=table.schema), p)
    _settle(b)
    args = ["diff", str(a), str(b), "-f", "json", "--boot", "200"]
    first = _runlog(args, cache)
    assert first.returncode == 0, first.stderr
    assert len(_kept(cache)) == 1
    _same(_runlog(args, cache), first)
    assert _runlog([*args, "--ci", "2"], cache).returncode == 2  # a usage error: not kept
    assert len(_kept(cache)) == 1
    victim = sorted((a / "samples" / "train").glob("*.parquet"))[-1]
    victim.unlink()  # the baseline loses its last step
    fresh = _runlog(args, cache)
    _same(fresh, _runlog(args, tmp_path / "c2", RUNLOG_ANSWERS="off"))
    assert fresh.stdout != first.stdout


def test_an_answer_that_says_the_cache_was_corrupt_is_not_kept(tmp_path):
    run = _copy(SAMPLE, tmp_path / "run")
    cache = tmp_path / "cache"
    assert _runlog(["summarize", str(run)], cache).returncode == 0  # partials stored, one answer kept
    [folder] = (cache / "partials").iterdir()
    (folder / "index.json").write_bytes(b"\x00garbage")
    by_step = ["summarize", str(run), "--by", "step", "-f", "csv"]
    said = _runlog(by_step, cache)
    assert said.returncode == 0 and said.stderr.count("partial cache") == 1
    assert len(_kept(cache)) == 1  # a one-off line: not printed again
    again = _runlog(by_step, cache)
    assert again.stdout == said.stdout and "partial cache" not in again.stderr
    assert len(_kept(cache)) == 2
    _same(_runlog(by_step, cache), again)


def test_a_file_of_several_steps_under_one_step_s_name_tells_its_steps(tmp_path):
    run = _copy(SAMPLE, tmp_path / "run")
    train = run / "samples" / "train"
    tables = [pq.read_table(train / f"step_{s:08d}.p0.parquet") for s in (0, 1)]
    (train / "step_00000001.p0.parquet").unlink()
    pq.write_table(pa.concat_tables(tables), train / "step_00000000.p0.parquet")  # steps 0 and 1, named 0
    _settle(run)
    cache = tmp_path / "cache"
    result = _runlog(["inspect", str(run), "--format", "json"], cache)
    assert "named step 0 but its rows are of steps 0, 1" in result.stderr + result.stdout
    info = json.loads(result.stdout)
    assert info["step_gaps"]["train"] == []  # step 1 is there, in the file named 0
    by_step = json.loads(
        _runlog(["summarize", str(run), "--by", "step", "--split", "train", "-f", "json"], cache).stdout
    )
    cold = json.loads(
        _runlog(
            ["summarize", str(run), "--by", "step", "--split", "train", "-f", "json"],
            tmp_path / "c",
            RUNLOG_CACHE="off",
        ).stdout
    )
    assert [r["step"] for r in by_step][:2] == [0, 1] and [r["reward_count"] for r in by_step] == [
        r["reward_count"] for r in cold
    ]


def test_a_spec_file_is_part_of_the_question(tmp_path):
    run = _copy(SAMPLE, tmp_path / "a")
    cache = tmp_path / "cache"
    spec = tmp_path / "mine.toml"
    spec.write_text('name = "mine"\ntags = ["answer"]\n')
    os.utime(spec, (PAST, PAST))
    args = ["diff", str(run), str(run), "--text", "--spec", str(spec), "-f", "json", "--boot", "100"]
    first = _runlog(args, cache)
    assert first.returncode == 0, first.stderr
    assert len(_kept(cache)) == 1
    spec.write_text('name = "mine"\ntags = ["think"]\n')
    os.utime(spec, (PAST, PAST))
    again = _runlog(args, cache)
    _same(again, _runlog(args, tmp_path / "c2", RUNLOG_ANSWERS="off"))
    assert len(_kept(cache)) == 2


def test_no_working_folder_means_no_answer_not_a_failure(tmp_path):
    run = _copy(SAMPLE, tmp_path / "run")
    gone = tmp_path / "gone"
    gone.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RUNLOG_CACHE", "RUNLOG_ANSWERS")}
    env["RUNLOG_CACHE_DIR"] = str(tmp_path / "cache")
    code = (
        f"import os, sys; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r}); "
        f"sys.argv = ['runlog', 'summarize', {str(run)!r}]; from runlog.cli.app import main; main()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "reward" in proc.stdout.lower()


def test_a_listing_that_changed_during_the_work_is_not_kept(tmp_path):
    run = _copy(SAMPLE, tmp_path / "run")
    q = answers.Question("summarize", {}, [str(run)], [run.resolve()], tmp_path / "answers", [])
    before, racy = q.listing()
    assert not racy and answers._unchanged(q, before)
    extra = run / "samples" / "train" / "extra.parquet"
    shutil.copyfile(sorted((run / "samples" / "train").glob("*.parquet"))[0], extra)
    os.utime(extra, (PAST, PAST))
    assert not answers._unchanged(q, before)
    extra.unlink()
    assert not answers._unchanged(q, before)  # gone again: its folder was modified


def test_a_step_column_that_cannot_stand_for_a_step_leaves_the_file_to_none(tmp_path):
    """Float steps without statistics (NaN, 3.5): the file is read as before, and stands for no one step."""
    from runlog import open_run

    run = _copy(SAMPLE, tmp_path / "run")
    first = run / "samples" / "train" / "step_00000000.p0.parquet"
    table = pq.read_table(first)
    steps = [float("nan")] + [3.5] * (len(table) - 1)
    table = table.set_column(table.schema.get_field_index("step"), "step", pa.array(steps, pa.float64()))
    others = [c for c in table.column_names if c != "step"]
    pq.write_table(table, first, write_statistics=others)
    opened = open_run(run, cache=False)
    info = next(f for f in opened.files if f.path == "samples/train/step_00000000.p0.parquet")
    assert info.readable and info.step is None
    [said] = [p.message for p in opened.problems if p.path == info.path]
    assert said.startswith("named step 0, but its step column holds values that are not whole steps (NaN, 3.5)")
