"""How the foreign rollout layouts (verifiers, NeMo Gym, inspect_ai) recognise their files, and what a run of
several of their files says.

The real public dumps in ``../shared/realdata`` (skipped when that folder is absent) are read in place;
modified copies are written to ``tmp_path``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import runlog.storage
from runlog import open_run
from runlog.formats.base import BAD_LINE, UNKNOWN_VERSION, UNREADABLE, WARNING, Candidate
from runlog.formats.inspect_ai import InspectAi
from runlog.formats.nemo_gym import NemoGym
from runlog.formats.verifiers import Verifiers

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
VERIFIERS_FILE = REALDATA / "verifiers_math_python_gpt5nano_results.jsonl"
NEMO_FILE = REALDATA / "nemo_gym_tool_call_multireward_rollouts.jsonl"
INSPECT_JSON = REALDATA / "inspect_ai_security_guide_eval_log.json"


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        pytest.skip(f"real data file {path.name} not found in {REALDATA} (the shared/realdata checkout)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write(path: Path, records: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def _lengthen(layout: str, rec: dict[str, Any], n: int) -> None:
    """Make one record's final answer ``n`` characters longer (a long, valid first record)."""
    if layout == "verifiers":
        rec["completion"][-1]["content"] += "x" * n
    else:
        rec["response"]["output"][-1]["content"][0]["text"] += "x" * n


def _cand(path: Path) -> Candidate:
    return Candidate(path.parent, path, path.stat().st_size)


SOURCES = {"verifiers": (VERIFIERS_FILE, 15), "nemo_gym": (NEMO_FILE, 5)}


# -- a first record longer than the sniffed head --------------------------------------------------------------
@pytest.mark.parametrize("layout", ["verifiers", "nemo_gym"])
def test_first_record_longer_than_the_head_is_detected(tmp_path: Path, layout: str) -> None:
    source, rows = SOURCES[layout]
    recs = _records(source)
    _lengthen(layout, recs[0], 70_000)
    path = _write(tmp_path / "one" / "results.jsonl", recs)
    assert path.read_bytes().index(b"\n") > Candidate.HEAD_BYTES
    run = open_run(path)
    assert [(f.layout, f.rows) for f in run.files] == [(layout, rows)]
    assert not run.problems
    # In a folder with other data its rollouts are read, not ignored with a warning.
    other = VERIFIERS_FILE if layout == "nemo_gym" else NEMO_FILE
    _write(tmp_path / "mixed" / "a.jsonl", recs)
    _write(tmp_path / "mixed" / "b.jsonl", _records(other))
    run = open_run(tmp_path / "mixed")
    assert sorted(f.layout for f in run.files) == ["nemo_gym", "verifiers"]
    assert not [p for p in run.problems if "no known layout" in p.message]
    assert run.samples.select(pl.len()).collect().item() == 20


def test_detection_reads_the_first_lines_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long first line is read whole, but never the whole (large) file."""
    recs = _records(VERIFIERS_FILE)
    _lengthen("verifiers", recs[0], 100_000)
    path = _write(tmp_path / "results.jsonl", recs + recs * 200)  # ~ 100 KB first line, then a few MB
    asked: list[int] = []
    real = runlog.storage.read_head

    def spy(p: Any, n: int) -> bytes:
        asked.append(n)
        return real(p, n)

    monkeypatch.setattr(runlog.storage, "read_head", spy)
    c = _cand(path)
    assert Verifiers().detect(c)
    assert max(asked) <= 512 * 1024 < c.size


def test_first_line_over_the_sniff_bound_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recs = _records(VERIFIERS_FILE)
    _lengthen("verifiers", recs[0], 300_000)
    _write(tmp_path / "run" / "results.jsonl", recs)
    _write(tmp_path / "run" / "rollouts.jsonl", _records(NEMO_FILE))
    monkeypatch.setattr(Candidate, "MAX_SNIFF_BYTES", 256 * 1024)
    run = open_run(tmp_path / "run")
    assert [f.layout for f in run.files] == ["nemo_gym"]
    (problem,) = [p for p in run.problems if p.path == "results.jsonl"]
    assert problem.kind == UNREADABLE
    assert "first line is longer than" in problem.message and "--layout" in problem.message


# -- damage on the first line --------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["no_reward", "not_json"])
@pytest.mark.parametrize("index", [0, 1])
def test_damaged_first_line_costs_that_line_only(tmp_path: Path, damage: str, index: int) -> None:
    recs: list[Any] = list(_records(VERIFIERS_FILE))
    if damage == "no_reward":
        del recs[index]["reward"]
    else:
        recs[index] = '{"id": 0, "prompt": ['
    path = _write(tmp_path / "results.jsonl", recs)
    run = open_run(path)
    assert [f.layout for f in run.files] == ["verifiers"]
    if damage == "no_reward":
        assert run.files[0].rows == 15
        (p,) = run.problems
        assert p.kind == WARNING and f"first: line {index + 1}" in p.message
    else:
        assert run.files[0].rows == 14
        p, renamed = run.problems  # the rollouts after the skipped line are named by their line
        assert p.kind == BAD_LINE and f"line {index + 1}:" in p.message
        assert renamed.kind == WARNING and renamed.message.startswith(f"{14 - index} rollout(s) after a line")


def test_damaged_first_line_nemo_gym(tmp_path: Path) -> None:
    recs: list[Any] = list(_records(NEMO_FILE))
    recs[0] = "{not json"
    run = open_run(_write(tmp_path / "rollouts.jsonl", recs))
    assert [(f.layout, f.rows) for f in run.files] == [("nemo_gym", 4)]
    assert [(p.kind, p.message.startswith("line 1:")) for p in run.problems] == [(BAD_LINE, True)]


def test_detection_looks_at_five_lines_at_most(tmp_path: Path) -> None:
    recs: list[Any] = list(_records(VERIFIERS_FILE))
    path = _write(tmp_path / "results.jsonl", ["{}"] * 5 + recs)
    assert not Verifiers().detect(_cand(path))
    path = _write(tmp_path / "results.jsonl", ["{}", "", "[1]", "x"] + recs)
    assert Verifiers().detect(_cand(path))


# -- several results files in one folder ---------------------------------------------------------------------
def test_prompt_groups_of_two_results_files_hold_one_prompt_each(tmp_path: Path) -> None:
    """Two checkpoints' vf-eval results (an ``id`` that is not the example's, so groups are derived from the
    prompts), the second with its rows in another order: a group never holds two prompts, and the pooling
    is said."""
    recs = _records(VERIFIERS_FILE)
    _write(tmp_path / "ckpt_a.jsonl", recs)
    _write(tmp_path / "ckpt_b.jsonl", [dict(r, reward=0.0) for r in recs[::-1]])
    run = open_run(tmp_path)
    df = run.samples.select("source", "group_id", "prompt").collect()
    per_group = df.group_by("group_id").agg(pl.col("prompt").n_unique().alias("prompts"), pl.len().alias("rows"))
    assert per_group.height == 5
    assert per_group["prompts"].to_list() == [1] * 5
    assert per_group["rows"].to_list() == [6] * 5
    pooled = [p for p in run.problems if "more than one verifiers file" in p.message]
    assert len(pooled) == 1 and pooled[0].kind == WARNING
    assert "ckpt_a.jsonl" in pooled[0].message and "ckpt_b.jsonl" in pooled[0].message


def test_one_results_file_split_in_two_is_not_warned(tmp_path: Path) -> None:
    recs = _records(VERIFIERS_FILE)  # `id` k on rows 3k..3k+2: a split at a multiple of 3 shares no id
    _write(tmp_path / "part1.jsonl", recs[:6])
    _write(tmp_path / "part2.jsonl", recs[6:])
    run = open_run(tmp_path)
    assert not run.problems
    df = run.samples.select("group_id", "prompt").collect()
    assert df.height == 15
    per_group = df.group_by("group_id").agg(pl.col("prompt").n_unique())
    assert per_group.height == 5 and per_group["prompt"].to_list() == [1] * 5
    # One file alone keeps its numbering (prompt-N in order of first appearance).
    one = open_run(tmp_path / "part2.jsonl").samples.select("group_id").collect()["group_id"].to_list()
    assert one[:5] == ["prompt-0", "prompt-1", "prompt-2", "prompt-3", "prompt-4"]


@pytest.mark.parametrize("layout", ["verifiers", "nemo_gym"])
def test_copied_results_file_is_warned(tmp_path: Path, layout: str) -> None:
    source, rows = SOURCES[layout]
    recs = _records(source)
    _write(tmp_path / "results.jsonl", recs)
    _write(tmp_path / "results.bak.jsonl", recs)
    run = open_run(tmp_path)
    assert run.samples.select(pl.len()).collect().item() == 2 * rows
    (p,) = run.problems
    assert p.kind == WARNING
    assert f"{rows} sample id(s) occur in more than one {layout} file at the same step" in p.message
    assert "results.jsonl" in p.message and "results.bak.jsonl" in p.message


# -- inspect_ai: a version that is not an integer -------------------------------------------------------------
@pytest.mark.parametrize("version", ["2", 2.5, "two"])
def test_inspect_ai_version_not_an_integer_is_unknown_schema_version(tmp_path: Path, version: Any, cli: Any) -> None:
    if not INSPECT_JSON.exists():
        pytest.skip(f"real data file {INSPECT_JSON.name} not found in {REALDATA} (the shared/realdata checkout)")
    log = json.loads(INSPECT_JSON.read_text(encoding="utf-8"))
    log["version"] = version
    path = tmp_path / "log.json"
    path.write_text(json.dumps(log), encoding="utf-8")
    assert InspectAi().detect(_cand(path))
    run = open_run(path)
    assert [f.layout for f in run.files] == ["inspect_ai"]
    assert [(p.kind, p.path) for p in run.problems] == [(UNKNOWN_VERSION, "log.json")]
    result = cli("inspect", path)
    assert result.exit_code == 1, result.output


def test_inspect_ai_detection_still_needs_the_log_shape(tmp_path: Path) -> None:
    for text in (
        '{"version": [2], "status": "success", "eval": {}}',
        '{"status": "success", "version": 2, "eval": {}}',
    ):
        path = tmp_path / "log.json"
        path.write_text(text, encoding="utf-8")
        assert not InspectAi().detect(_cand(path))
    assert not NemoGym().detect(_cand(path))
