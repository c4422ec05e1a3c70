"""AReaL stats and JaxARC batch metrics: steps, repeated steps, nulls and detection (audit 3).

Every expectation is counted by hand from the lines each test writes, not from runlog's own reading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from runlog import open_run
from runlog.analysis import scalars as S
from runlog.formats import scalars_jsonl
from runlog.formats.areal import ArealStatsLayout
from runlog.formats.base import WARNING, Candidate, FileInfo, RunContext
from runlog.formats.jaxarc import JaxArcLayout
from runlog.formats.scalars_jsonl import _fast_flat_scalars


def write(path: Path, records: list[dict[str, Any] | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def probe(layout: Any, path: Path) -> tuple[FileInfo, RunContext]:
    ctx = RunContext(path.parent)
    info = layout.probe(Candidate(path.parent, path, path.stat().st_size), ctx)
    return info, ctx


def warnings(ctx: RunContext) -> list[str]:
    return [p.message for p in ctx.problems if p.kind == WARNING]


def scalar_row(run: Any, key: str) -> dict[str, Any]:
    df = S.summarize_scalars(run)
    return df.filter(pl.col("key") == key).to_dicts()[0]


# --- AReaL: global_step is the step (defect 3) ------------------------------------------------------------

EPOCHS = [  # StatsLogger.commit(epoch, step, global_step, ...): `step` restarts every epoch
    {"epoch": 0, "step": 0, "global_step": 0, "r/avg": 0.0, "r/avg__count": 8},
    {"epoch": 0, "step": 1, "global_step": 1, "r/avg": 1.0, "r/avg__count": 8},
    {"epoch": 1, "step": 0, "global_step": 2, "r/avg": 2.0, "r/avg__count": 8},
    {"epoch": 1, "step": 1, "global_step": 3, "r/avg": 3.0, "r/avg__count": 8},
]


@pytest.mark.parametrize("fast", [True, False], ids=["fast_path", "line_by_line"])
def test_areal_global_step_is_the_step_and_not_a_metric(tmp_path: Path, fast: bool) -> None:
    records: list[dict[str, Any] | str] = list(EPOCHS)
    if not fast:  # a NaN literal sends the file through the line-by-line reader
        records.append('{"epoch": 1, "step": 2, "global_step": 4, "r/avg": NaN, "r/avg__count": 8}')
    path = write(tmp_path / "r" / "stats.jsonl", records)
    info, ctx = probe(ArealStatsLayout(), path)
    assert info.steps == ([0, 1, 2, 3] if fast else [0, 1, 2, 3, 4])
    assert info.frame is not None
    keys = set(info.frame["key"])
    assert keys == {"epoch", "r/avg", "r/avg__count"}  # neither global_step nor the per-epoch step
    assert not warnings(ctx)  # one record per global step: nothing repeated
    assert any("'global_step' read as the step" in n["message"] for n in ctx.fidelity)
    if fast:
        row = scalar_row(open_run(tmp_path / "r"), "r/avg")
        assert (row["count"], row["last"], row["first_step"], row["last_step"]) == (4, 3.0, 0, 3)


@pytest.mark.parametrize("fast", [True, False], ids=["fast_path", "line_by_line"])
def test_areal_several_records_of_one_step_are_said(tmp_path: Path, fast: bool) -> None:
    records: list[dict[str, Any] | str] = [
        {"step": 0, "r": 1.0},
        {"step": 1, "r": 2.0},
        {"step": 0, "r": 3.0},
        {"step": 1, "r": 4.0},
        {"step": 2, "r": 5.0},
    ]
    if not fast:
        records.append('{"step": 3, "r": NaN}')
    path = write(tmp_path / "stats.jsonl", records)
    _, ctx = probe(ArealStatsLayout(), path)
    said = [w for w in warnings(ctx) if "already logged" in w]
    # lines 3 and 4 log steps 0 and 1 again: 2 records, the first at line 3
    assert len(said) == 1 and said[0].startswith("2 record(s)") and "line 3, step 0" in said[0]


def test_areal_repeat_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "stats.jsonl"
    path.write_text('{"step": 0, "r": 1}\n\n{"step": 0, "r": 2}\n', encoding="utf-8")
    _, ctx = probe(ArealStatsLayout(), path)
    assert any("line 3, step 0" in w for w in warnings(ctx))


# --- AReaL detection: text fields are samples, never scalars (defect 5) -----------------------------------


@pytest.mark.parametrize("text_key", ["prompt", "completion", "messages", "response"])
def test_records_with_text_fields_are_not_areal(tmp_path: Path, text_key: str) -> None:
    rec: dict[str, Any] = {"step": 5, "advantage": 0.1, **{f"reward_{i}": 1.0 for i in range(9)}}
    rec[text_key] = "some text"
    path = write(tmp_path / "completions.jsonl", [rec, rec])
    assert not ArealStatsLayout().detect(Candidate(tmp_path, path, path.stat().st_size))


def test_trl_completions_jsonl_is_no_areal_run(tmp_path: Path) -> None:
    recs: list[dict[str, Any] | str] = [
        {"step": 5, "prompt": "Q", "completion": f"a{i}", "advantage": 0.1 * i, **{f"r{j}": 1.0 for j in range(9)}}
        for i in range(3)
    ]
    write(tmp_path / "completions" / "completions_00005.jsonl", recs)
    try:
        run = open_run(tmp_path)
    except Exception as exc:  # noqa: BLE001  (no layout reads it: said, not guessed)
        assert "match no known layout" in str(exc)
    else:
        assert all(f.layout != "areal" for f in run.files)


# --- AReaL nulls: both paths agree (defect 7) -------------------------------------------------------------


def test_areal_null_values_are_no_value_on_both_paths(tmp_path: Path) -> None:
    base = [{"step": s, "a": float(s), "c": 1, "b": None} for s in (1, 2)]
    fast = write(tmp_path / "fast" / "stats.jsonl", list(base))
    slow = write(tmp_path / "slow" / "stats.jsonl", [*base, '{"step": 3, "a": NaN, "c": 1, "b": null}'])
    f_info, _ = probe(ArealStatsLayout(), fast)
    s_info, _ = probe(ArealStatsLayout(), slow)
    assert f_info.frame is not None and s_info.frame is not None
    sort = ["record", "key"]
    # the slow file's first two lines are the fast file: the same rows, 2 records x 2 non-null keys
    assert f_info.frame.sort(sort).height == 4
    assert s_info.frame.filter(pl.col("record") < 2).sort(sort).equals(f_info.frame.sort(sort))
    assert "b" not in set(s_info.frame["key"])


def test_fast_and_line_by_line_readers_give_identical_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "stats.jsonl", [*EPOCHS, {"epoch": 1, "step": 2, "global_step": 4, "r/avg": None}])
    cand = Candidate(tmp_path, path, path.stat().st_size)
    fast = _fast_flat_scalars(cand, ("global_step", "step"), True)
    assert fast is not None  # the fast path takes this file
    # the line-by-line reader on the same file (the fast path made to refuse it)
    monkeypatch.setattr(scalars_jsonl, "_fast_flat_scalars", lambda *a, **k: None)
    slow, _ = probe(ArealStatsLayout(), path)
    assert slow.frame is not None
    assert slow.frame.sort(["record", "key"]).equals(fast[0].sort(["record", "key"]))
    assert slow.steps == fast[2] == [0, 1, 2, 3, 4]


# --- JaxARC (defects 4 and 8) -----------------------------------------------------------------------------


def test_jaxarc_resumed_steps_are_said_and_the_later_record_replaces(tmp_path: Path) -> None:
    recs: list[dict[str, Any] | str] = [
        {"timestamp": 1000 + s, "step": s, "metrics": {"reward_mean": v}}
        for s, v in [(0, 0.0), (10, 1.0), (20, 2.0), (10, 5.0), (20, 6.0), (30, 7.0)]
    ]
    path = write(tmp_path / "r" / "batch_metrics.jsonl", recs)
    info, ctx = probe(JaxArcLayout(), path)
    said = [w for w in warnings(ctx) if "logged again" in w]
    assert len(said) == 1 and "10, 20" in said[0] and "line 4" in said[0]
    assert info.frame is not None
    got = dict(zip(info.frame["step"], info.frame["value"], strict=True))
    assert got == {0: 0.0, 10: 5.0, 20: 6.0, 30: 7.0}  # the resumed run's values, one per step
    row = scalar_row(open_run(tmp_path / "r"), "reward_mean")
    assert (row["count"], row["mean"], row["last"]) == (4, pytest.approx((0 + 5 + 6 + 7) / 4), 7.0)


def test_jaxarc_records_without_a_metrics_object_are_said(tmp_path: Path) -> None:
    recs: list[dict[str, Any] | str] = [
        {"timestamp": 1, "step": 0, "metrics": {"loss": 1.0}},
        {"timestamp": 2, "step": 1, "metrics": None},
        {"timestamp": 3, "step": 2, "metrics": [1, 2]},
        {"timestamp": 4, "step": 3, "metrics": {"loss": 0.5}},
    ]
    path = write(tmp_path / "batch_metrics.jsonl", recs)
    info, ctx = probe(JaxArcLayout(), path)
    said = [w for w in warnings(ctx) if "'metrics'" in w]
    assert len(said) == 1 and said[0].startswith("2 record(s)") and "line 2" in said[0]
    assert info.rows == 4 and info.frame is not None and info.frame.height == 2
