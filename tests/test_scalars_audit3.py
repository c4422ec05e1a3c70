"""Scalar JSONL metrics (audit of the scalars, findings 1-4, 6, 7, 10, 11): re-logged steps, -inf in the report,
numbers written as text, out-of-range and fractional steps, sparse keys' moving averages, key clashes and
weights without their key.

Every expected figure is worked out from the lines each test writes, parsed with plain ``json``, never taken
from runlog's own reading."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from runlog import open_run
from runlog.analysis.scalars import merged_steps, summarize_scalars

NAN_LINE = '{"step": 900, "nan_probe": NaN}'  # a NaN literal: the file goes through the line-by-line reader


def write(path: Path, lines: list[dict[str, Any] | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def warnings(run: Any) -> list[str]:
    return [f"{p.path}: {p.message}" for p in run.warnings]


def row(run: Any, key: str) -> dict[str, Any]:
    return summarize_scalars(run).filter(pl.col("key") == key).to_dicts()[0]


def later_wins(path: Path) -> dict[int, dict[str, float]]:
    """Per step, each key's value on the last line of ``path`` that logs it (plain json)."""
    out: dict[int, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        out.setdefault(rec.pop("step"), {}).update(rec)
    return out


# --- 1. a key logged again at a step of one native shard keeps its later value ----------------------------

RESUMED = [  # crashed after step 3, resumed from step 2, appending to the shard
    {"step": 0, "loss": 4.0},
    {"step": 1, "loss": 3.0},
    {"step": 2, "loss": 100.0},
    {"step": 3, "loss": 200.0},
    {"step": 2, "loss": 2.0},
    {"step": 3, "loss": 1.0},
    {"step": 4, "loss": 0.5},
]


@pytest.mark.parametrize("fast", [True, False], ids=["fast_path", "line_by_line"])
def test_a_step_logged_again_in_one_shard_keeps_the_later_values_and_says_so(tmp_path: Path, fast: bool) -> None:
    """Steps 2 and 3 were averaged with their replays ((200 + 1) / 2 = 100.5, a value no line holds: mean 31.8,
    max 100.5), without a word. Now the later lines count (mean 2.1, max 4.0), and a warning names the file,
    the steps and both lines of each."""
    path = write(tmp_path / "r" / "scalars.p0.jsonl", [*RESUMED, *([] if fast else [NAN_LINE])])
    per_step = later_wins(path)
    want = [per_step[s]["loss"] for s in sorted(per_step) if "loss" in per_step[s]]
    run = open_run(tmp_path / "r")
    got = row(run, "loss")
    assert (got["mean"], got["max"], got["count"]) == (pytest.approx(np.mean(want)), max(want), len(want))
    assert got["mean"] == pytest.approx(2.1) and got["max"] == 4.0
    steps = merged_steps(run).filter(pl.col("key") == "loss").sort("step").collect()
    assert steps["value"].to_list() == want
    said = [w for w in warnings(run) if "logged again" in w]
    assert said == [
        "scalars.p0.jsonl: 2 steps logged again: step 2 at line 5 (first at line 3), step 3 at line 6 (first at "
        "line 4): the later values kept (a resumed run appending to this file?)"
    ]


def test_one_step_logged_again_is_said_in_one_line(cli, tmp_path: Path) -> None:
    """The command's stderr: one line naming the file, the step and both lines; exit 0 (a warning)."""
    lines: list[dict[str, Any] | str] = [{"step": s, "x": float(s)} for s in range(5)]
    lines.append({"step": 2, "x": 9.0})  # line 6
    write(tmp_path / "r" / "scalars.p0.jsonl", lines)
    res = cli("summarize", tmp_path / "r", "--scalars", "-f", "json")
    assert res.exit_code == 0, res.output
    [x] = json.loads(res.stdout)
    assert x["max"] == 9.0 and x["mean"] == pytest.approx(np.mean([0.0, 1.0, 9.0, 3.0, 4.0]))
    said = [line for line in res.stderr.splitlines() if "logged again" in line]
    assert said == [
        "warning: scalars.p0.jsonl: step 2 logged again at line 6 (first at line 3): the later values kept (a "
        "resumed run appending to this file?)"
    ]
    assert "Traceback" not in res.output


def test_replays_keep_their_own_weights_other_keys_and_other_shards(tmp_path: Path) -> None:
    """The later record's value goes with its own ``__count`` (the replaced line's weight does not linger);
    other keys of the replaced line stay (a step's train and eval lines are both read); another process's
    shard of that step is still merged with it (weighted mean), and nothing is said where no key repeats."""
    root = tmp_path / "r"
    p0 = write(
        root / "scalars.p0.jsonl",
        [
            {"step": 0, "x": 2.0, "x__count": 5, "lr": 0.1},
            {"step": 0, "eval/acc": 0.5},  # another key at the same step: no replay
            {"step": 0, "x": 10.0},  # a replay of x (its weight is 1: no __count of its own)
        ],
    )
    p1 = write(root / "scalars.p1.jsonl", [{"step": 0, "x": 4.0, "x__count": 3}])
    shard0, shard1 = later_wins(p0)[0], later_wins(p1)[0]
    assert (shard0["x"], shard0["x__count"]) == (10.0, 5)  # what plain json keeps; the weight is not x's
    want_x = (10.0 * 1 + shard1["x"] * shard1["x__count"]) / (1 + shard1["x__count"])  # 5.5
    run = open_run(root)
    values = {r["key"]: r["last"] for r in summarize_scalars(run).to_dicts()}
    assert values == {"x": pytest.approx(want_x), "lr": 0.1, "eval/acc": 0.5}
    assert [w for w in warnings(run) if "logged again" in w] == [
        "scalars.p0.jsonl: step 0 logged again at line 3 (first at line 1): the later values kept (a resumed "
        "run appending to this file?)"
    ]
    write(root / "scalars.p0.jsonl", [{"step": 0, "x": 2.0}, {"step": 0, "eval/acc": 0.5}])
    assert not [w for w in warnings(open_run(root)) if "logged again" in w]


def test_areal_stats_still_merge_the_records_of_a_step(tmp_path: Path) -> None:
    """AReaL's stats files are left as they are: several records of one global step merge (weighted), said."""
    path = write(
        tmp_path / "r" / "stats.jsonl",
        [{"global_step": 0, "loss": 2.0, "loss__count": 2}, {"global_step": 0, "loss": 5.0, "loss__count": 1}],
    )
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    want = sum(r["loss"] * r["loss__count"] for r in recs) / sum(r["loss__count"] for r in recs)
    run = open_run(tmp_path / "r")
    assert row(run, "loss")["mean"] == pytest.approx(want)
    assert any("merged with it as shards are" in w for w in warnings(run))


# --- 2. the report keeps the sign of an infinity ------------------------------------------------------------


def test_the_report_shows_minus_inf_as_minus_inf(tmp_path: Path) -> None:
    """``num`` printed every infinity as ``inf``: a key at -inf read as +inf in the scalar table."""
    from runlog.report import build_report
    from runlog.report.template import num

    assert ">-inf<" in num(float("-inf")) and ">inf<" in num(float("inf"))
    path = write(
        tmp_path / "r" / "scalars.p0.jsonl",
        ['{"step": 1, "time": 1.0, "inf_key": Infinity}', '{"step": 2, "time": 2.0, "inf_key": -Infinity}'],
    )
    values = [json.loads(x)["inf_key"] for x in path.read_text().splitlines()]  # Python's json reads them
    html = build_report(open_run(tmp_path / "r"))
    cells = re.search(r"<td>inf_key</td>((?:<td>.*?</td>){5})</tr>", html)
    assert cells is not None
    shown = re.findall(r"<td>(?:<span[^>]*>)?(.*?)(?:</span>)?</td>", cells.group(1))
    want = [str(len(values)), *("inf" if v > 0 else "-inf" for v in (values[0], values[-1], min(values), max(values)))]
    assert shown == want  # steps, first, last, min, max


# --- 3. numbers written as text are numbers, said ------------------------------------------------------------


def test_numbers_written_as_text_are_read_and_counted_in_a_warning(tmp_path: Path) -> None:
    """``"nan"`` was read as NaN while ``"0.5"`` was dropped: a key of numbers looked as if it went NaN (count
    0, nan 1). Every number written as text is now read, as TRL's reward columns held as text are, and the
    count is said with the first line; text that is no number is still not mapped."""
    path = write(
        tmp_path / "r" / "scalars.p0.jsonl",
        [
            {"step": 0, "str_val": "0.5", "label": "warmup"},
            {"step": 1, "str_val": " 0.25 "},
            {"step": 2, "str_val": "nan"},
            {"step": 3, "str_val": "1_000"},  # Python's float() reads it; no JSON writer writes it
        ],
    )
    texts = [json.loads(x)["str_val"] for x in path.read_text().splitlines()]
    numbers = [float(t) for t in texts if t.strip() != "1_000"]
    valid = [v for v in numbers if not math.isnan(v)]
    run = open_run(tmp_path / "r")
    got = row(run, "str_val")
    assert (got["count"], got["nan"], got["mean"]) == (len(valid), len(numbers) - len(valid), np.mean(valid))
    assert [w for w in warnings(run) if "as text" in w] == [
        f"scalars.p0.jsonl: {len(numbers)} metric value(s) written as text read as numbers (keys: str_val; first: "
        "line 1, 'str_val': '0.5')"
    ]
    assert "label" not in summarize_scalars(run)["key"].to_list()


# --- 4. a step beyond 64 bits is one line's trouble, not the file's -------------------------------------------


@pytest.mark.parametrize("fast", [True, False], ids=["fast_path", "line_by_line"])
def test_a_step_beyond_64_bits_leaves_out_its_line_only(cli, tmp_path: Path, fast: bool) -> None:
    """A step of 2**63 made the whole file unreadable (exit 1, ``[]``, a raw polars message): now its line is
    said with its number, and steps 0 and 2 are read."""
    lines: list[dict[str, Any] | str] = [{"step": 0, "x": 1.0}, {"step": 2**63, "x": 2.0}, {"step": 2, "x": 3.0}]
    path = write(tmp_path / "r" / "scalars.p0.jsonl", [*lines, *([] if fast else [NAN_LINE])])
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    kept = [r["x"] for r in recs if "x" in r and -(2**63) <= r["step"] < 2**63]
    res = cli("summarize", tmp_path / "r", "--scalars", "-f", "json")
    assert res.exit_code == 0, res.output
    x = next(r for r in json.loads(res.stdout) if r["key"] == "x")
    assert (x["count"], x["mean"], x["first_step"], x["last_step"]) == (len(kept), np.mean(kept), 0, 2)
    said = [line for line in res.stderr.splitlines() if "integer step" in line]
    assert said == [
        f"warning: scalars.p0.jsonl: 1 record(s) without an integer step (line 2: step {2**63} is beyond a 64-bit "
        "integer): left out of every summary, plot, diff and upload (Run.scalars keeps them with a null step)"
    ]


def test_steps_of_other_digits_are_no_steps_and_no_traceback(tmp_path: Path) -> None:
    """``"²"`` passed ``str.isdigit`` and then failed ``int()``: the whole file was unreadable (a ValueError)."""
    write(tmp_path / "r" / "scalars.p0.jsonl", [{"step": "\u00b2", "x": 1.0}, {"step": "7", "x": 2.0}])
    run = open_run(tmp_path / "r")
    assert summarize_scalars(run).select("count", "first_step").row(0) == (1, 7)
    assert any("line 1: step" in w and "without an integer step" in w for w in warnings(run))


# --- 6. a sparse key's moving average counts its own logged steps -------------------------------------------


def bold_line(fig: Any, key: str) -> tuple[list[float], list[float]]:
    [ax] = [a for a in fig.axes if a.get_title() == key]
    [line] = [x for x in ax.get_lines() if x.get_label() == key]
    return list(line.get_xdata()), list(line.get_ydata())


def test_a_sparse_keys_moving_average_counts_its_own_logged_steps(tmp_path: Path) -> None:
    """200 steps of ``train/loss``, ``eval/acc`` every 10 steps (step / 200). The default window was a tenth of
    all keys' steps (20), laid over ``eval/acc``'s 20 points: its bold line ended at their mean over the whole
    run (0.52). The window now counts the steps at which the key was logged, as ``summarize --window`` and
    ``diff`` count theirs ("an eval split logged every 8 steps averages its last N logged steps"): a tenth of
    eval/acc's 20 steps is 2, so the line ends at the mean of its last 2 values (0.97)."""
    from runlog.plots import make_figure

    lines = []
    for step in range(200):
        rec: dict[str, Any] = {"step": step, "train/loss": 1.0 / (1 + step)}
        if step % 10 == 9:
            rec["eval/acc"] = (step + 1) / 200
        lines.append(rec)
    path = write(tmp_path / "r" / "scalars.p0.jsonl", lines)
    acc = [json.loads(x)["eval/acc"] for x in path.read_text().splitlines() if "eval/acc" in x]
    loss = [json.loads(x)["train/loss"] for x in path.read_text().splitlines()]
    run = open_run(tmp_path / "r")
    fig = make_figure(run, "scalars")
    tenth = {len(acc): 2, len(loss): 20}  # a tenth of each key's logged steps (docs: "a tenth of the run")
    x, y = bold_line(fig, "eval/acc")
    assert len(x) == len(acc) and y[-1] == pytest.approx(np.mean(acc[-tenth[len(acc)] :]))  # 0.975, not 0.525
    assert bold_line(fig, "train/loss")[1][-1] == pytest.approx(np.mean(loss[-tenth[len(loss)] :]))
    axes = {a.get_title(): a.get_ylabel() for a in fig.axes}
    assert axes["eval/acc"] == "moving average over 2 logged steps"
    fig = make_figure(run, "scalars", window=5)  # an explicit window: the key's last 5 logged steps
    assert bold_line(fig, "eval/acc")[1][-1] == pytest.approx(np.mean(acc[-5:]))


# --- 7. a record without an integer step: its line, and that it is in no figure ------------------------------


@pytest.mark.parametrize("layout", ["native", "jaxarc"])
def test_records_without_an_integer_step_are_said_with_their_lines(tmp_path: Path, layout: str) -> None:
    """``1 record(s) without an integer step; kept with a null step``: no line, and "kept" where every command
    leaves it out (summarize, plot, diff and upload drop null steps). ``3.0`` and ``"6"`` are steps."""
    steps: list[Any] = [0, 3.5, 3.0, "6", None]
    if layout == "native":
        recs = [{"step": s, "loss": float(i)} for i, s in enumerate(steps)]
        recs[-1].pop("step")
        path = write(tmp_path / "r" / "scalars.p0.jsonl", recs)
    else:
        recs = [{"step": s, "timestamp": 1.0, "metrics": {"loss": float(i)}} for i, s in enumerate(steps)]
        recs[-1].pop("step")
        path = write(tmp_path / "r" / "batch_metrics.jsonl", recs)
    parsed = [json.loads(x) for x in path.read_text().splitlines()]
    whole = [
        (r.get("metrics", r)["loss"])
        for r in parsed
        if isinstance(r.get("step"), (int, float, str)) and float(r["step"]).is_integer()
    ]
    run = open_run(tmp_path / "r")
    got = row(run, "loss")
    assert (got["count"], got["mean"]) == (len(whole), np.mean(whole))
    assert run.scalars.filter(pl.col("step").is_null()).collect().height == len(parsed) - len(whole)
    assert [w for w in warnings(run) if "integer step" in w] == [
        f"{path.name}: 2 record(s) without an integer step (line 2: step 3.5; line 5: no step): left out of every "
        "summary, plot, diff and upload (Run.scalars keeps them with a null step)"
    ]


# --- 10, 11. a key given twice in a record; a weight without its key -----------------------------------------


def test_a_key_given_flat_and_nested_is_said(tmp_path: Path) -> None:
    """``{"a/b": 1, "a": {"b": 2}}``: one value was dropped without a word. The later of the two is kept (as
    before), and said with the first line and key."""
    path = write(
        tmp_path / "r" / "scalars.p0.jsonl",
        [{"step": 0, "a/b": 1.0, "a": {"b": 2.0}}, {"step": 1, "a": {"b": 3.0}, "a/b": 4.0}],
    )
    later = [list(json.loads(x).values())[-1] for x in path.read_text().splitlines()]
    later = [v["b"] if isinstance(v, dict) else v for v in later]
    run = open_run(tmp_path / "r")
    assert merged_steps(run).sort("step").collect()["value"].to_list() == later
    assert [w for w in warnings(run) if "flat and nested" in w] == [
        "scalars.p0.jsonl: 2 record(s) hold a key twice, flat and nested (first: line 1, 'a/b'): the later of the "
        "two in the record kept"
    ]


def test_a_weight_without_its_key_is_said(tmp_path: Path) -> None:
    """``tokens__count`` with no ``tokens``: hidden as a weight everywhere, with nothing to weigh, without a
    word. A fidelity note (``inspect``, the report's Data section) now names it."""
    path = write(
        tmp_path / "r" / "scalars.p0.jsonl", [{"step": s, "loss": 1.0, "tokens__count": 10 * s} for s in range(3)]
    )
    keys = {k for x in path.read_text().splitlines() for k in json.loads(x) if k != "step"}
    orphans = sorted(k for k in keys if k.endswith("__count") and k.removesuffix("__count") not in keys)
    run = open_run(tmp_path / "r")
    assert summarize_scalars(run)["key"].to_list() == sorted(keys - set(orphans))
    assert [n["message"] for n in run.fidelity if "__count" in n["message"]] == [
        f"scalars.p0.jsonl: {len(orphans)} weight key(s) ('k__count', the weight of 'k') without a value of their "
        f"key in the file, shown nowhere: {', '.join(orphans)}"
    ]
