"""Scalar JSONL metrics (audit of the scalars, findings 5, 8, 9, 12): AReaL stats recognised past their first
line, NaN steps of a diff's scalar windows said, watch on a run of scalars only, a final step of weight 0.

Every expected figure is worked out from the lines each test writes, parsed with plain ``json``, never taken
from runlog's own reading."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from runlog import open_run
from runlog.analysis.diff import DiffOptions, diff_runs
from runlog.analysis.scalars import summarize_scalars


def write(path: Path, lines: list[dict[str, Any] | str | bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b""
    for x in lines:
        if isinstance(x, dict):
            x = json.dumps(x)
        data += (x if isinstance(x, bytes) else x.encode()) + b"\n"
    path.write_bytes(data)
    return path


def plain_values(path: Path, key: str, step_key: str = "step") -> dict[int, list[tuple[float, float]]]:
    """Per step, the (value, weight) of ``key`` on every line of ``path`` that parses (plain json): a null is
    no value, numeric text is its number (as format.md reads it), the weight ``key__count`` (else 1)."""
    out: dict[int, list[tuple[float, float]]] = {}
    for raw in path.read_bytes().splitlines():
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        v = rec.get(key)
        if v is None:
            continue
        out.setdefault(rec[step_key], []).append((float(v), float(rec.get(f"{key}__count", 1))))
    return out


def row(run: Any, key: str) -> dict[str, Any]:
    return summarize_scalars(run).filter(pl.col("key") == key).to_dicts()[0]


# --- 5. AReaL stats recognised from their first few lines ---------------------------------------------------

GOOD = [{"global_step": s, "loss": 1.0 + s, "acc": 0.25 * s} for s in range(1, 5)]
FIRST_LINES: dict[str, str | bytes] = {
    "null_first": '{"global_step": 0, "loss": null, "acc": null}',  # nothing measured yet
    "torn_first": '{"global_step": 0, "loss": 1.0',
    "not_utf8_first": b'{"global_step": 0, "loss": 1.0, "note": "\xff"}',
    "text_numbers_first": '{"global_step": 0, "loss": "1.0", "acc": "0.5"}',
}


@pytest.mark.parametrize("first", sorted(FIRST_LINES))
def test_areal_stats_are_recognised_past_their_first_line(cli, tmp_path: Path, first: str) -> None:
    """One torn, undecodable, all-null or text-number first line hid the whole file (exit 2: no run files
    found); now the file is AReaL stats, read as every other line says, the bad line said with its number."""
    path = write(tmp_path / "r" / "stats.jsonl", [FIRST_LINES[first], *GOOD])
    res = cli("summarize", tmp_path / "r", "--scalars", "-f", "json")
    assert res.exit_code == (1 if first in ("torn_first", "not_utf8_first") else 0), res.output
    got = {r["key"]: r for r in json.loads(res.stdout)}
    for key in ("loss", "acc"):
        per_step = plain_values(path, key, "global_step")
        values = [v for s in sorted(per_step) for v, _ in per_step[s]]
        assert (got[key]["count"], got[key]["mean"]) == (len(values), pytest.approx(np.mean(values)))
        assert got[key]["first_step"] == min(per_step) and got[key]["last_step"] == max(per_step)
    if first in ("torn_first", "not_utf8_first"):
        assert "stats.jsonl: line 1:" in res.stderr
    assert "Traceback" not in res.output and "no known layout" not in res.output


def test_an_areal_file_beside_samples_with_a_null_first_line_is_read(cli, tmp_path: Path) -> None:
    """A verl run with a flat metrics file whose first record has nothing measured yet: the file was 'matches
    no known layout; ignored' (exit 0) and its keys were absent from summarize --scalars."""
    root = tmp_path / "r"
    sample = {"input": "user\nQ\nassistant\n", "output": "A", "score": 1.0, "step": 1}
    write(root / "rollout" / "1.jsonl", [sample])
    stats = write(
        root / "stats.jsonl",
        [{"step": 0, "acc": None}, {"step": 1, "acc": 0.5}, {"step": 2, "acc": 0.75}],
    )
    res = cli("summarize", root, "--scalars", "-f", "json")
    assert res.exit_code == 0, res.output
    assert "no known layout" not in res.stderr
    per_step = plain_values(stats, "acc")
    [acc] = [r for r in json.loads(res.stdout) if r["key"] == "acc"]
    assert acc["mean"] == pytest.approx(np.mean([v for s in per_step for v, _ in per_step[s]]))
    assert acc["count"] == 2


def test_records_with_text_among_the_first_lines_are_still_never_areal_stats(tmp_path: Path) -> None:
    """Looking at more lines must not make a completions log scalars: a text field in any of them rules the
    file out, as it did on the first line."""
    from runlog.formats.areal import ArealStatsLayout
    from runlog.formats.base import Candidate

    path = write(
        tmp_path / "log.jsonl",
        ['{"step": 0, "loss": 1.0', {"step": 1, "loss": 2.0}, {"step": 1, "prompt": "hi", "reward": 1.0}],
    )
    cand = Candidate(tmp_path, path, path.stat().st_size)
    assert not ArealStatsLayout().detect(cand)
    ok = write(tmp_path / "ok.jsonl", ['{"step": 0, "loss": 1.0', {"step": 1, "loss": 2.0}])
    assert ArealStatsLayout().detect(Candidate(tmp_path, ok, ok.stat().st_size))


# --- 8. a diff's scalar windows and their NaN steps ---------------------------------------------------------


def _runs(tmp_path: Path, b_last: dict[str, Any]) -> tuple[Path, Path]:
    """Runs a and b logging eval/acc every 2 steps, 0..18; b's step 18 is ``b_last``."""
    write(tmp_path / "a" / "scalars.p0.jsonl", [{"step": s, "eval/acc": 0.5 + 0.01 * s} for s in range(0, 20, 2)])
    b_lines: list[dict[str, Any] | str | bytes] = [{"step": s, "eval/acc": 0.7 - 0.01 * s} for s in range(0, 18, 2)]
    b_lines.append(json.dumps({"step": 18, **b_last}).replace('"NaN"', "NaN"))
    write(tmp_path / "b" / "scalars.p0.jsonl", b_lines)
    return tmp_path / "a", tmp_path / "b"


def test_a_diff_scalar_window_says_its_nan_steps(tmp_path: Path) -> None:
    """B's eval/acc went NaN at step 18: its end window read '10..18 every 2' with the mean of 4 steps, and no
    note. Now the NaN step stays in the window, out of the mean (as summarize --scalars's mean leaves it
    out), and a note names the key, the window, the run and the step."""
    ra, rb = _runs(tmp_path, {"eval/acc": "NaN"})
    d = diff_runs([open_run(ra), open_run(rb)], ["a", "b"], DiffOptions(window=5, seed=0, boot=200))
    end = d.scalars.filter((pl.col("key") == "eval/acc") & (pl.col("point") == "end")).to_dicts()[0]
    b_per_step: dict[int, float] = {}
    for raw in (rb / "scalars.p0.jsonl").read_text().splitlines():
        rec = json.loads(raw)  # Python's json reads the NaN literal as float('nan')
        b_per_step[rec["step"]] = rec["eval/acc"]
    window = sorted(b_per_step)[-5:]
    assert end["steps"] == "10..18 every 2" and window == [10, 12, 14, 16, 18]
    finite = [b_per_step[s] for s in window if not math.isnan(b_per_step[s])]
    assert end["value"] == pytest.approx(np.mean(finite))
    said = [n for n in d.notes if "NaN" in n and "eval/acc" in n]
    assert len(said) == 1, d.notes
    assert "eval/acc end window: b step 18" in said[0] and "left out of its mean" in said[0]


def test_a_step_of_weight_0_is_in_no_diff_window(tmp_path: Path) -> None:
    """A step whose k__count is 0 holds no value of k: it was a common step with nothing in it (the window
    counted it, its mean had one value fewer); now the window is the last steps holding a value."""
    ra, rb = _runs(tmp_path, {"eval/acc": 9.0, "eval/acc__count": 0})
    d = diff_runs([open_run(ra), open_run(rb)], ["a", "b"], DiffOptions(window=5, seed=0, boot=200))
    end = d.scalars.filter((pl.col("key") == "eval/acc") & (pl.col("point") == "end")).to_dicts()[0]
    b_steps = {s for s, pairs in plain_values(rb / "scalars.p0.jsonl", "eval/acc").items() if pairs[0][1] > 0}
    a_steps = set(plain_values(ra / "scalars.p0.jsonl", "eval/acc"))
    window = sorted(a_steps & b_steps)[-5:]
    assert window == [8, 10, 12, 14, 16]
    assert end["steps"] == "8..16 every 2"
    b_vals = plain_values(rb / "scalars.p0.jsonl", "eval/acc")
    assert end["value"] == pytest.approx(np.mean([b_vals[s][0][0] for s in window]))


# --- 9. watch on a run of scalars only ------------------------------------------------------------------------


def test_watch_says_a_run_holds_only_scalar_metrics(cli, tmp_path: Path) -> None:
    """A JaxARC run watched showed nothing but 'stopped: once' ({"event": "end"} in JSON), as if idle: now one
    note says the run holds only scalar metrics, which watch does not follow, naming the file."""
    root = tmp_path / "jax"
    write(root / "batch_metrics.jsonl", [{"timestamp": 1.0 + s, "step": s, "metrics": {"loss": 1.0}} for s in range(3)])
    res = cli("watch", root, "--once", "--no-doctor", "--format", "json")
    assert res.exit_code == 0, res.output
    events = [json.loads(x) for x in res.stdout.splitlines()]
    notes = [e["message"] for e in events if e["event"] == "note"]
    assert len(notes) == 1 and "only scalar metrics (batch_metrics.jsonl)" in notes[0], events
    assert "does not follow" in notes[0] and events[-1]["event"] == "end"
    res = cli("watch", root, "--once", "--no-doctor")
    said = [x for x in res.stderr.splitlines() if "only scalar metrics" in x]
    assert len(said) == 1 and said[0].startswith("note: ")


def test_the_screen_of_a_scalars_only_run_says_so_within_80_columns(tmp_path: Path) -> None:
    from rich.console import Console

    from runlog.watch import LiveRun
    from runlog.watch.poll import run_lister
    from runlog.watch.screen import Screen

    root = tmp_path / "areal"
    write(root / "stats.jsonl", [{"global_step": s, "loss": 1.0} for s in range(3)])
    live = LiveRun(root)
    live.update(*run_lister(root)())
    plain = io.StringIO()
    Console(file=plain, width=80, no_color=True).print(Screen(live, None, [], interval=1))
    lines = plain.getvalue().splitlines()
    assert all(len(x) <= 80 for x in lines)
    assert any("only scalar metrics (stats.jsonl)" in x for x in lines), lines
    assert not any("waiting for the first step" in x for x in lines)


def test_a_run_with_samples_gets_no_scalars_only_note(tmp_path: Path) -> None:
    from runlog.watch import LiveRun
    from runlog.watch.poll import run_lister

    root = tmp_path / "verl"
    write(root / "rollout" / "1.jsonl", [{"input": "Q", "output": "A", "score": 1.0, "step": 1}])
    write(root / "stats.jsonl", [{"step": 1, "loss": 1.0}])
    live = LiveRun(root)
    events = live.update(*run_lister(root)())
    assert [e for e in events if e.kind == "step"]
    assert not [e for e in events if e.kind == "note" and "scalar" in str(e.data)]


# --- 12. a final step of weight 0 -------------------------------------------------------------------------------

W0 = [{"step": 0, "x": 1.0}, {"step": 1, "x": 2.0}, {"step": 2, "x": 9.0, "x__count": 0, "y": 5.0}]


@pytest.mark.parametrize("layout", ["native", "areal"])
def test_a_final_step_of_weight_0_is_no_step_of_the_key(tmp_path: Path, layout: str) -> None:
    """summarize gave last 2.0 (step 1's value) beside last_step 2 (cli.md: 'last is the value at last_step');
    now the step of weight 0 holds no value of x: last_step is the last step with one, last its value."""
    name = "scalars.p0.jsonl" if layout == "native" else "stats.jsonl"
    path = write(tmp_path / "r" / name, W0)
    run = open_run(tmp_path / "r")
    assert {f.layout for f in run.files if f.kind == "scalars"} == {"runlog" if layout == "native" else "areal"}
    held = {s: pairs for s, pairs in plain_values(path, "x").items() if sum(w for _, w in pairs) > 0}
    last_step = max(held)
    got = row(run, "x")
    assert (got["last_step"], got["first_step"]) == (last_step, min(held)) == (1, 0)
    assert got["last"] == held[last_step][-1][0] == 2.0
    assert row(run, "y")["last_step"] == 2  # the step itself is still the run's


@pytest.mark.parametrize("layout", ["native", "areal"])
def test_upload_never_sends_null_for_a_step_of_weight_0(tmp_path: Path, layout: str) -> None:
    """upload-wandb's step-2 row held "x": null (W&B's history got a null); now x is left out of that row,
    which keeps the step's other keys."""
    from runlog.sinks.plan import build_plan

    name = "scalars.p0.jsonl" if layout == "native" else "stats.jsonl"
    path = write(tmp_path / "r" / name, W0)
    plan = build_plan(open_run(tmp_path / "r"))
    rows = {p.step: p.values for p in plan.payloads()}
    assert all(v is not None for values in rows.values() for v in values.values()), rows
    held = {s: pairs for s, pairs in plain_values(path, "x").items() if sum(w for _, w in pairs) > 0}
    assert {s for s, values in rows.items() if "x" in values} == set(held) == {0, 1}
    assert rows[2]["y"] == json.loads(path.read_text().splitlines()[2])["y"]


def test_summarize_scalars_of_a_run_without_scalars_says_so(tmp_path: Path, cli) -> None:
    from runlog.writer import RunWriter

    with RunWriter(tmp_path / "run", name="noscal") as w:
        w.log_samples(0, [{"reward": 1.0, "completion": "a"}])
    r = cli("summarize", tmp_path / "run", "--scalars", "--format", "csv")
    # Nothing to summarise is a usage error (exit 2), as is the reverse (a run of scalars only without --scalars).
    assert r.exit_code == 2 and r.stdout == "", r.stdout
    assert "this run has no scalar metrics" in r.stderr and "Traceback" not in r.stderr


def test_a_huge_step_is_said_in_a_few_digits(tmp_path: Path) -> None:
    from runlog import open_run

    (tmp_path / "run").mkdir()
    lines = [json.dumps({"step": 0, "a": 1.0}), '{"step": 1e300, "a": 7}']
    (tmp_path / "run" / "scalars.p0.jsonl").write_text("\n".join(lines) + "\n")
    [p] = [p for p in open_run(tmp_path / "run").problems if "64-bit" in p.message]
    assert "(301 digits) is beyond a 64-bit integer" in p.message and len(p.message) < 300, p.message
