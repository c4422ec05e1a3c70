"""Audit a20 (diff): a role listed twice read as repeated ids, scalar values left out unsaid, and the docs' recipe.

- F1: a sample whose ``roles`` list holds ``solver`` twice (every (step, sample_id) still unique) made diff warn
  ``repeated_sample_ids`` for every id of the windows, where ``doctor`` and ``inspect --deep`` found none: the ids
  were counted by (id, role). They are now counted by sample, as doctor counts them, and a note says that each
  entry of a role listed twice is a value, counted in ``n``.
- F2: a scalar value that is no number (``"loss": "abc"``) was left out of diff's window, and of ``summarize
  --scalars``, without a word (only ``inspect`` listed the reader's note): both now say it.
- F3: docs/diff.md gave ``--steps START:END`` as the summarize command whose numbers a window's are; against a
  run logged every 2 steps it counts steps the window leaves out. The recipe the docs give now matches.
The truth is duckdb over the files, json over the lines, and how the inputs were built."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import duckdb
import pytest

from runlog import open_run
from runlog.analysis.diff import DiffOptions, diff_runs

from conftest import ROOT, make_flink_run, native_rows, native_run_of

WINDOW = 10
TWICE = ("solver", "judge", "solver")  # each sample lists solver twice


def _run(root: Path, roles: tuple[str, ...], steps: range = range(20), n: int = 8) -> Path:
    rows = [r for s in steps for r in native_rows(s, n, roles=roles)]
    return native_run_of(root, rows, roles=tuple(dict.fromkeys(roles)))


def _sql(run: Path, query: str) -> list[tuple]:
    """``query`` over every sample file of ``run`` (``t``), read by duckdb."""
    files = [str(f) for f in sorted(run.rglob("*.parquet"))]
    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet({files!r})")
    return con.execute(query).fetchall()


def _diff(a: Path, b: Path):  # noqa: ANN202
    return diff_runs([open_run(a), open_run(b)], ["A", "B"], DiffOptions(window=WINDOW, boot=200))


@pytest.fixture
def no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNLOG_CACHE", "off")


def test_a_role_listed_twice_in_a_sample_is_no_repeated_id(tmp_path: Path, no_cache: None, cli) -> None:  # noqa: ANN001
    """F1: every sample of B lists solver twice, every (step, sample_id) once (duckdb): no warning; the window's n
    counts both entries (the role's values, as summarize counts them), and a note says so."""
    a, b = _run(tmp_path / "a", ("solver", "judge")), _run(tmp_path / "b", TWICE)
    [(rows, distinct)] = _sql(b, "SELECT count(*), count(DISTINCT (step, sample_id)) FROM t")
    assert rows == distinct == 160
    d = _diff(a, b)
    assert d.warnings == []
    # n: the solver entries of the end window with a valid reward, every one of them.
    [(entries,)] = _sql(
        b,
        "SELECT count(*) FROM (SELECT step, unnest(roles) AS r FROM t) WHERE step BETWEEN 10 AND 19 "
        "AND r.role = 'solver' AND r.reward IS NOT NULL AND NOT isnan(r.reward)",
    )
    [end] = d.points.filter(
        (d.points["role"] == "solver") & (d.points["metric"] == "reward") & (d.points["point"] == "end")
    ).to_dicts()
    assert end["n"] == entries == 160 and end["baseline_n"] == 80
    # The note: the samples of the windows (here every step) that list solver more than once.
    [(listed,)] = _sql(b, "SELECT count(*) FROM t WHERE len(list_filter(roles, lambda r: r.role = 'solver')) > 1")
    said = [n for n in d.notes if "list the role more than once" in n]
    assert said == [
        f"B in split train, role solver: {listed} sample(s) of the windows list the role more than once (step(s) 0, "
        "1, 2, 3, 4, ... (20 steps)): each entry is a value, counted in n and in the means, as summarize --by role "
        "counts it"
    ]
    r = cli("diff", a, b, "--name", "A", "--name", "B")
    assert r.exit_code == 0 and "repeated_sample_ids" not in r.stderr
    assert f"note: {said[0]}" in r.stderr.splitlines()
    doctor = cli("doctor", b, "--format", "json")
    assert "repeated_sample_ids" not in doctor.stdout


def test_a_copied_shard_of_such_samples_counts_its_samples(tmp_path: Path, no_cache: None) -> None:
    """F1: B's shard of step 15 copied under another process index, its samples listing solver twice: 8 ids of
    2 samples each, 8 extra samples (duckdb), not the 24 rows of solver beyond the first per id."""
    a, b = _run(tmp_path / "a", ("solver", "judge")), _run(tmp_path / "b", TWICE)
    [src] = (b / "samples" / "train").glob("step_*00015.p0.parquet")
    shutil.copy(src, src.with_name(src.name.replace(".p0.", ".p1.")))
    [(ids, extra)] = _sql(
        b,
        "SELECT count(*), sum(n - 1) FROM (SELECT count(*) AS n FROM t GROUP BY step, sample_id) WHERE n > 1",
    )
    assert (ids, extra) == (8, 8)
    [warning] = _diff(a, b).warnings
    assert warning.startswith(f"B: repeated_sample_ids: {ids} sample id(s) occur more than once within their step")
    assert f"({extra} extra sample(s); step(s) 15 (train))" in warning


def test_a_copied_flink_file_is_still_a_repeated_id(tmp_path: Path, no_cache: None) -> None:
    """F1: a Flink sample gives one row per role column (three here), none twice: a copy of step 3's file is
    counted by sample (4 ids, 4 extra: duckdb), as before."""
    a = make_flink_run(tmp_path / "a")
    b = make_flink_run(tmp_path / "b")
    src = b / "flink_logs" / "batch_debug_data_train_3.parquet"
    (b / "flink_logs" / "copy").mkdir()
    shutil.copy(src, b / "flink_logs" / "copy" / src.name)
    [(ids, extra)] = _sql(
        b,
        "SELECT count(*), sum(n - 1) FROM (SELECT count(*) AS n FROM t GROUP BY unique_sample_id) WHERE n > 1",
    )
    assert (ids, extra) == (4, 4)
    d = _diff(a, b)
    [warning] = d.warnings
    assert f"B: repeated_sample_ids: {ids} sample id(s)" in warning and f"({extra} extra sample(s);" in warning
    assert not [n for n in d.notes if "list the role more than once" in n]


def test_the_window_cache_keeps_the_roles_listed_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """F1: a diff answered from its kept windows says the note, and no warning, as the one computed afresh."""
    from runlog.analysis.diff import window_cache

    a, b = _run(tmp_path / "a", ("solver", "judge")), _run(tmp_path / "b", TWICE)
    past = time.time() - 3600  # files written seconds ago are not kept (a writer may be at work on them)
    for f in tmp_path.rglob("*"):
        os.utime(f, (past, past))
    cold = _diff(a, b)  # computes and keeps the windows
    restored: list[bool] = []
    real = window_cache.restore

    def spy(side, path, o):  # noqa: ANN001, ANN202
        restored.append(real(side, path, o))
        return restored[-1]

    monkeypatch.setattr(window_cache, "restore", spy)
    warm = _diff(a, b)
    assert restored == [True, True]
    assert warm.warnings == cold.warnings == []
    assert warm.notes == cold.notes and any("list the role more than once" in n for n in warm.notes)


def _scalars_run(root: Path, text_at: int | None) -> Path:
    """A run of 12 steps of samples and a scalar ``loss`` of 1.0 at steps 0..11, written as ``"abc"`` at
    ``text_at``."""
    run = _run(root, ("solver",), steps=range(12))
    lines = [{"step": s, "loss": "abc" if s == text_at else 1.0} for s in range(12)]
    (run / "scalars.p0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run


def test_a_scalar_value_that_is_no_number_is_said(tmp_path: Path, no_cache: None, cli) -> None:
    """F2: step 6 of B's loss is ``"abc"``: the start window holds the other 10 of steps 0..10 (json's truth),
    and diff and summarize --scalars each say what was not mapped, naming the file and the key."""
    a, b = _scalars_run(tmp_path / "a", None), _scalars_run(tmp_path / "b", 6)
    numbers = [r["step"] for r in map(json.loads, (b / "scalars.p0.jsonl").read_text().splitlines())
               if isinstance(r["loss"], float)]  # fmt: skip
    assert 6 not in numbers and numbers[:WINDOW] == [0, 1, 2, 3, 4, 5, 7, 8, 9, 10]
    d = _diff(a, b)
    start = d.scalars.filter(d.scalars["point"] == "start").to_dicts()
    assert [r["steps"] for r in start] == ["0..10 (10 steps)"]
    said = "B: scalars.p0.jsonl: 1 non-numeric metric values not mapped (keys: loss): in no scalar window"
    assert [n for n in d.notes if n.startswith(said)] and not [n for n in d.notes if n.startswith("A: ")]
    r = cli("diff", a, b, "--name", "A", "--name", "B", "--format", "json")
    assert any(n.startswith(said) for n in json.loads(r.stdout)["notes"])
    assert any(line.startswith(f"note: {said}") for line in r.stderr.splitlines())
    s = cli("summarize", b, "--scalars")
    assert s.exit_code == 0
    assert "note: scalars.p0.jsonl: 1 non-numeric metric values not mapped (keys: loss): in no row of this table" in (
        s.stderr.splitlines()
    )
    assert "not mapped" not in cli("summarize", a, "--scalars").stderr


def test_the_docs_summarize_recipe_gives_the_windows_numbers(tmp_path: Path, no_cache: None, cli) -> None:
    """F3: the command docs/diff.md gives for a window's numbers, filled in for the end window of a run against
    one logged every 2 steps (``10..28 every 2``), gives its mean and count: duckdb's over those steps."""
    a = _run(tmp_path / "a", ("solver", "judge"), steps=range(30))
    c = _run(tmp_path / "c", ("solver", "judge"), steps=range(0, 30, 2))
    d = _diff(a, c)
    [end] = d.points.filter(
        (d.points["role"] == "solver") & (d.points["metric"] == "reward") & (d.points["point"] == "end")
    ).to_dicts()
    steps = list(range(10, 30, 2))
    assert end["baseline_steps"] == "10..28 every 2"
    [(mean, count)] = _sql(
        a,
        "SELECT avg(r.reward), count(r.reward) FROM (SELECT step, unnest(roles) AS r FROM t) "
        f"WHERE r.role = 'solver' AND step IN ({', '.join(map(str, steps))})",
    )
    assert end["baseline"] == pytest.approx(mean, rel=1e-12) and end["baseline_n"] == count
    text = (ROOT / "docs" / "diff.md").read_text()
    [recipe] = re.findall(r"the numbers of\s+`(runlog summarize RUN [^`]+)`", text)
    args = recipe.split()[2:]
    filled = [
        {"RUN": str(a), "SPLIT": "train", "START:END": "10:28", "S1,S2,...": ",".join(map(str, steps))}.get(x, x)
        for x in args
    ]
    r = cli("summarize", *filled, "--format", "json")
    assert r.exit_code == 0, r.stderr
    [row] = [x for x in json.loads(r.stdout) if x["role"] == "solver"]
    assert row["reward_mean"] == pytest.approx(mean, rel=1e-12) and row["reward_count"] == count
