"""A scalar record's ``time`` that JSON reads as infinity (``1e400``, ``Infinity``) or NaN is no time: read
without one and said in the file's warning, as an int beyond the float64 range is (it was kept as ``inf``, and
an upload then put the step at the upload's own wall-clock time without a word)."""

from __future__ import annotations

import json

from runlog import open_run
from runlog.analysis.summarize import summarize_scalars


def test_a_time_read_as_infinity_or_nan_is_no_time_and_said(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lines = [
        '{"step": 0, "time": 1000, "loss": 1}',
        '{"step": 1, "time": 1e400, "loss": 2}',
        '{"step": 2, "time": NaN, "loss": 3}',
        '{"step": 3, "time": -Infinity, "loss": 4}',
        '{"step": 4, "time": 1004.5, "loss": 5}',
    ]
    (run / "scalars.jsonl").write_text("\n".join(lines) + "\n")
    expected_losses = [json.loads(line)["loss"] for line in lines]
    r = open_run(run)
    [warning] = [p for p in r.problems if "time" in p.message]
    assert warning.message.startswith("3 record(s) hold a time that is no number of the float64 range"), warning
    assert "first: line 2, 'time': Infinity" in warning.message
    table = summarize_scalars(r)
    [row] = table.filter(table["key"] == "loss").to_dicts()
    assert row["count"] == len(expected_losses) and row["mean"] == sum(expected_losses) / len(expected_losses)
    times = r.scalars.select("step", "time").collect().sort("step")
    assert times["time"].to_list() == [1000.0, None, None, None, 1004.5]
