"""What a review of this session's docs found the code did otherwise: a speaker of the prompt's turns only, a
native ``prompt_turns`` that is no whole number, doctor's words for a single writer still open."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest

import runlog
from runlog import schema as S


def _verifiers_run(path: Path) -> None:
    few = [
        {"role": "user", "content": "1+1"},
        {"role": "assistant", "name": "teacher", "content": "<think>\na\n</think>\n<answer>2</answer>"},
        {"role": "user", "content": "2+2"},
    ]
    comp = [{"role": "assistant", "name": "solver", "content": "<answer>4</answer>"}]
    path.mkdir(parents=True)
    rows = [{"id": 0, "prompt": few, "completion": comp, "reward": 1.0, "task": "default"} for _ in range(4)]
    (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_speaker_of_the_prompt_only_is_said_so(tmp_path, cli):
    """'teacher' speaks only in the few-shot prompt: the error said it speaks nowhere, suggested 'teacher' and
    listed it among the speakers."""
    _verifiers_run(tmp_path / "v")
    r = cli("metrics", "format", tmp_path / "v", "--text", "role:teacher")
    assert r.exit_code == 2
    assert "'teacher' speaks only in the selected samples' prompts" in r.stderr
    assert "did you mean" not in r.stderr and "spoken by solver" in r.stderr
    ok = cli("metrics", "format", tmp_path / "v", "--text", "role:solver", "--format", "json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)[0]["texts"] == 4


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        ([0, 2, -1, 99, None], pl.Int64),
        ([2.5, 2.0, math.nan, math.inf, -1.0], pl.Float64),
        ([True, False], pl.Boolean),
        (["2", "x"], pl.String),
        ([2**40, 3], pl.Int64),
    ],
)
def test_prompt_turns_that_is_no_whole_count_reads_as_null(values, dtype):
    """A native file's own column may hold anything: 2.5 was read as 2 and true as 1 (a cast), changing which
    turns are the policy's; -1 was kept."""
    lf = pl.LazyFrame({"reward": [1.0] * len(values), "prompt_turns": pl.Series(values, dtype=dtype)})
    got = S.conform_samples(lf).collect()["prompt_turns"].to_list()

    def whole(v):
        ok = isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and math.isfinite(v)
        return min(int(v), 2**31 - 1) if ok and v >= 0 and float(v).is_integer() else None

    assert got == [whole(v) for v in values]


def test_doctor_says_a_lone_open_writer_is_still_writing(tmp_path):
    """No process closed, and the one writer holds its lock: 'still writing (its writer is open)', as inspect
    says, not 'still being written, or was killed'."""
    from runlog.analysis.doctor import diagnose

    w = runlog.RunWriter(tmp_path / "run", name="r", durable=False)
    try:
        w.log_samples(0, {"reward": [1.0, 0.0]})
        w.flush()
        found = diagnose(runlog.open_run(tmp_path / "run")).findings
    finally:
        w.close()
    said = [f.message for f in found if f.evidence.get("problem_kind") == "writer_not_closed"]
    assert said and "still writing (its writer is open)" in said[0] and "killed" not in said[0], said
