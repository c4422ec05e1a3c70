"""Follow-ups of the prompt joins and of the default split (tests/test_groups_audit22.py).

Samples without a ``group_id`` join the one id their prompt's other samples carry at their split and step; finding
them reads the prompt text. A plain ``summarize`` (no ``--prompt-groups``) read it too, only to decide whether to
print its ``--prompt-groups`` hint: a numeric question read a text column. ``summarize --prompt-groups``, a fleet and
``diff`` used the joined groups without saying so (doctor and report did). ``doctor --follow`` and ``watch`` chose
``train``, else the first split by name (``eval`` beside ``rl``), where plain doctor reads the training split, and
``plot --diff`` drew the first split by name too.

The truths come from the files (pyarrow) and plain Python: which samples lack an id, which ids their prompt's other
samples carry, each split's steps."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from runlog import open_run
from runlog.writer import RunWriter

PAST = 1_600_000_000
JOINED = "sample(s) without a group_id joined the group of their prompt's group_id"
APART = "sample(s) without a group_id are a prompt group of their own"


def _settle(root: Path) -> None:
    """Every file dated long ago: not being written (a follow and kept answers wait for young files)."""
    for p in root.rglob("*"):
        os.utime(p, (PAST, PAST))


def _mixed(root: Path, steps: int, lone_steps: set[int]) -> Path:
    """Process 0 writes each prompt's samples with their group id (P0-P2 one id each, P3 two ids); process 1
    writes, at ``lone_steps``, other samples of the same prompts without an id, and of P4, which has none."""
    for process in (0, 1):
        with RunWriter(root, durable=False, process_index=process, roles=["solver"], run_id=root.name) as w:
            for step in range(steps):
                rows = []

                def add(prompt: str, gid: str | None, reward: float, rows: list = rows) -> None:
                    row = {"reward": reward, "prompt": prompt, "roles": {"solver": {"reward": reward}}}
                    if gid is not None:
                        row["group_id"] = gid
                    rows.append(row)

                if process == 0:
                    for g in range(3):
                        add(f"P{g}", f"g{g}", 1.0)
                        add(f"P{g}", f"g{g}", 0.0)
                    add("P3", "a", 1.0)
                    add("P3", "b", 0.0)
                elif step in lone_steps:
                    for g in range(3):
                        add(f"P{g}", None, 0.5)
                    add("P3", None, 1.0)
                    add("P3", None, 0.0)
                    add("P4", None, 0.25)
                if rows:
                    w.log_samples(step, rows)
    _settle(root)
    return root


def _truth(root: Path) -> tuple[int, int]:
    """(samples without an id whose prompt's other samples carry one id at their split and step, those whose carry
    several), from the files."""
    rows = []
    for path in sorted(root.glob("samples/*/*.parquet")):
        rows += pq.read_table(path, columns=["split", "step", "prompt", "group_id"]).to_pylist()
    ids: dict[tuple, set[str]] = defaultdict(set)
    for r in rows:
        if r["group_id"] is not None:
            ids[(r["split"], r["step"], r["prompt"])].add(r["group_id"])
    lone = [len(ids[(r["split"], r["step"], r["prompt"])]) for r in rows if r["group_id"] is None]
    return sum(n == 1 for n in lone), sum(n > 1 for n in lone)


def _notes(stderr: str, needle: str) -> list[str]:
    return [line for line in stderr.splitlines() if needle in line]


# ---------------------------------------------------------------------------------------------------------
# A plain summary reads no text column
# ---------------------------------------------------------------------------------------------------------
def _break_prompts(root: Path) -> None:
    """The first bytes of every ``prompt`` column chunk overwritten (its page header): a read of that column fails,
    the footers and every other column stay whole."""
    for path in sorted(root.glob("samples/*/*.parquet")):
        md = pq.ParquetFile(path).metadata
        at = [md.schema.column(i).path for i in range(md.num_columns)].index("prompt")
        for g in range(md.num_row_groups):
            col = md.row_group(g).column(at)
            start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
            with open(path, "r+b") as fh:
                fh.seek(start)
                fh.write(b"\xff" * min(16, col.total_compressed_size))


def test_plain_summarize_of_a_run_mixing_ids_reads_no_prompt_text(tmp_path: Path, cli) -> None:
    root = _mixed(tmp_path / "mixed", 4, {0, 1, 2, 3})
    rewards = sum(pq.read_table(p, columns=["reward"]).num_rows for p in root.glob("samples/*/*.parquet"))
    _break_prompts(root)
    res = cli("summarize", root, "--by", "role", "--format", "json")
    assert res.exit_code == 0, res.output
    assert "error" not in res.stderr, res.stderr  # no file left out: its prompt column was never read
    [solver] = [r for r in json.loads(res.stdout) if r["role"] == "solver"]
    assert solver["reward_count"] == rewards
    assert "add --prompt-groups" in res.stderr  # the hint, from footers
    # The broken column bites where the text is asked for.
    asked = cli("summarize", root, "--by", "role", "--prompt-groups", "--format", "json")
    assert "error" in asked.stderr and "prompt" in asked.stderr, asked.stderr


# ---------------------------------------------------------------------------------------------------------
# The note, once, where the groups are used
# ---------------------------------------------------------------------------------------------------------
def test_summarize_with_prompt_groups_says_the_joins_once_and_a_kept_answer_replays_it(
    tmp_path: Path, cli, monkeypatch
) -> None:
    monkeypatch.delenv("RUNLOG_ANSWERS", raising=False)  # conftest turns kept answers off
    root = _mixed(tmp_path / "mixed", 5, {0, 2, 4})
    joined, apart = _truth(root)
    assert joined and apart
    args = ["summarize", root, "--by", "role", "--prompt-groups", "--format", "csv"]
    first = cli(*args)
    assert first.exit_code == 0, first.output
    [note] = _notes(first.stderr, JOINED)
    assert note.startswith(f"note: {joined} {JOINED}"), note
    assert f"; {apart} {APART}" in note, note
    assert len(_notes(first.stderr, APART)) == 1
    # Over the steps asked only: steps 0-1 hold one of the steps with samples without an id.
    part = cli("summarize", root, "--by", "role", "--prompt-groups", "--steps", "0:1", "--format", "csv")
    [one] = _notes(part.stderr, JOINED)
    assert one.startswith(f"note: {joined // 3} {JOINED}"), one
    # Asked again of the unchanged run: the kept answer, without reading the run, says the note as it was.
    import runlog.run

    def no_reading(*a, **k):
        raise AssertionError("the run was read")

    monkeypatch.setattr(runlog.run, "open_run", no_reading)
    again = cli(*args)
    assert (again.exit_code, again.stdout, again.stderr) == (first.exit_code, first.stdout, first.stderr)


def test_a_fleet_says_each_runs_joins_under_its_name_once(tmp_path: Path, cli) -> None:
    a = _mixed(tmp_path / "runs" / "a", 4, {0, 1, 2, 3})
    b = _mixed(tmp_path / "runs" / "b", 4, {1})
    (ja, pa_), (jb, pb) = _truth(a), _truth(b)
    assert ja != jb
    res = cli("summarize", a, b, "--prompt-groups", "--format", "json")
    assert res.exit_code == 0, res.output
    lines = _notes(res.stderr, JOINED)
    assert len(lines) == 2, res.stderr
    assert [x for x in lines if x.startswith(f"note: run(s) a: {ja} {JOINED}") and f"; {pa_} {APART}" in x]
    assert [x for x in lines if x.startswith(f"note: run(s) b: {jb} {JOINED}") and f"; {pb} {APART}" in x]
    # Without --prompt-groups: the hint, no joins said.
    plain = cli("summarize", a, b, "--format", "json")
    assert not _notes(plain.stderr, JOINED) and "add --prompt-groups" in plain.stderr


def test_a_run_read_in_chunks_says_the_joins_once_without_a_chunks_count(tmp_path: Path) -> None:
    from runlog.fleet import summarize_fleet

    a = _mixed(tmp_path / "a", 4, {0, 1, 2, 3})
    result = summarize_fleet([str(a)], ["run", "role"], prompt_groups=True, task_bytes=1)
    assert len(result.results) > 1  # read in chunks of its steps
    said = [n for n in result.notes if "without a group_id" in n]
    assert len(said) == 1, result.notes
    assert "read in chunks of its steps" in said[0] and JOINED not in said[0], said


def test_diff_says_each_runs_joins_in_its_windows_once(tmp_path: Path, cli) -> None:
    a = _mixed(tmp_path / "a", 6, {0, 1, 2, 3, 4, 5})
    b = _mixed(tmp_path / "b", 6, {0, 3})
    (ja, pa_), (jb, pb) = _truth(a), _truth(b)
    res = cli("diff", a, b, "--format", "json")  # 6 steps, windows of 10: every step is in a window
    assert res.exit_code in (0, 1), res.output
    notes = json.loads(res.stdout)["notes"]
    said = [n for n in notes if JOINED in n]
    assert len(said) == 2, notes
    assert [n for n in said if n.startswith(f"a, in the windows compared: {ja} {JOINED}") and f"; {pa_} {APART}" in n]
    assert [n for n in said if n.startswith(f"b, in the windows compared: {jb} {JOINED}") and f"; {pb} {APART}" in n]
    assert sum(1 for line in res.stderr.splitlines() if JOINED in line) == 2  # each once on stderr too


# ---------------------------------------------------------------------------------------------------------
# One split for doctor, doctor --follow, watch and plot --diff
# ---------------------------------------------------------------------------------------------------------
EVAL_NAME = re.compile(r"(eval|test|val).*|dev|heldout|holdout", re.IGNORECASE)
RL_STEPS = [*range(0, 6), *range(8, 12)]  # steps 6 and 7 missing: a gap only the rl split has


def _rl_eval(root: Path) -> Path:
    with RunWriter(root, durable=False, roles=["solver"], run_id=root.name) as w:
        for step in RL_STEPS:
            rows = [
                {"reward": 0.1 * i + 0.01 * step, "group_id": f"{i // 2}", "roles": {"solver": {"reward": 0.1 * i}}}
                for i in range(8)
            ]
            w.log_samples(step, rows, split="rl")
        for step in (0, 5, 10):
            rows = [
                {"reward": 0.2 * i, "group_id": f"{i // 2}", "roles": {"solver": {"reward": 0.2 * i}}} for i in range(4)
            ]
            w.log_samples(step, rows, split="eval")
    _settle(root)
    return root


def _truth_split(root: Path) -> str:
    steps: dict[str, set[int]] = defaultdict(set)
    for path in sorted(root.glob("samples/*/*.parquet")):
        for r in pq.read_table(path, columns=["split", "step"]).to_pylist():
            steps[r["split"]].add(r["step"])
    pool = [s for s in steps if not EVAL_NAME.fullmatch(s)] or list(steps)
    return "train" if "train" in steps else min(pool, key=lambda s: (-len(steps[s]), s))


def _findings(events: list[dict]) -> set[tuple[str, str]]:
    return {(e["kind"], e["message"]) for e in events}


def test_doctor_follow_and_watch_read_the_split_plain_doctor_reads(tmp_path: Path, cli) -> None:
    root = _rl_eval(tmp_path / "ph")
    want = _truth_split(root)
    assert want == "rl" and sorted(set(range(12)) - set(RL_STEPS)) == [6, 7]
    plain = cli("doctor", root, "--format", "json")
    data = json.loads(plain.stdout)
    assert data["split"] == want
    assert any(f["kind"] == "step_gaps" and "split rl" in f["message"] for f in data["findings"]), data
    follow = cli("doctor", root, "--follow", "--interval", "0.2", "--idle-exit", "1", "--format", "json")
    events = [json.loads(line) for line in follow.stdout.splitlines() if line.startswith("{")]
    found = [e for e in events if e.get("event") == "finding"]
    assert _findings(found) == _findings(data["findings"]), (found, data["findings"])
    watch = cli("watch", root, "--once", "--format", "json")
    steps = [json.loads(line) for line in watch.stdout.splitlines() if line.startswith('{"event": "step"')]
    assert steps and {s["split"] for s in steps} == {want}, watch.stdout
    assert [s["step"] for s in steps] == [RL_STEPS[-1]]  # the last step (--once), rl's: not eval's 10
    gaps = [json.loads(x) for x in watch.stdout.splitlines() if '"kind": "step_gap"' in x]
    assert [(g["path"], g["onset_step"]) for g in gaps] == [("split rl", 6)], watch.stdout


def test_plot_diff_draws_the_split_the_doctor_reads(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plots need matplotlib: pip install 'runlog[plot]'")
    from runlog.analysis.diff import DiffOptions, diff_runs
    from runlog.plots.diff import diff_figure, drawn

    a = _rl_eval(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    want = _truth_split(a)
    d = diff_runs([open_run(a), open_run(b)], options=DiffOptions(series_only=True))
    shown, rows = drawn(d)
    assert shown == want and set(rows["split"].to_list()) == {want}
    assert sorted(set(rows["step"].to_list())) == RL_STEPS
    assert f"({want})" in diff_figure(d)._suptitle.get_text()
    # --split still picks another.
    assert drawn(d, split="eval")[0] == "eval"


def test_a_kept_answer_prints_without_importing_polars(tmp_path):
    """The prompt joins' frame schema was a module constant of polars types: every ``summarize`` imported polars
    as the command loaded (0.1-0.2 s), the kept answer's too, which prints without reading the run (issue 18's
    repeat phase). Checked in a process of its own: a second ``summarize`` of an unchanged run answers from the
    kept answer, and polars is never imported."""
    import subprocess
    import sys

    run = tmp_path / "run"
    with RunWriter(run, durable=False) as w:
        for step in range(3):
            w.log_samples(step, [{"reward": float(i), "group_id": "g"} for i in range(4)])
    old = time.time() - 600  # nothing of the run written lately: a finished run, whose answer is kept
    for f in [run, *run.rglob("*")]:
        os.utime(f, (old, old))
    code = (
        "import sys, runpy\n"
        "sys.argv = ['runlog', 'summarize', sys.argv[1], '--by', 'role', '--format', 'json']\n"
        "try:\n"
        "    runpy.run_module('runlog', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write('polars imported: %s\\n' % ('polars' in sys.modules))\n"
    )
    env = {**os.environ, "RUNLOG_CACHE_DIR": str(tmp_path / "cache"), "RUNLOG_ANSWERS": "on"}
    first = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, env=env)
    again = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, env=env)
    assert first.stdout == again.stdout and first.stdout.strip().startswith("[")
    assert "polars imported: True" in first.stderr  # the first reads the run
    assert "polars imported: False" in again.stderr, again.stderr
