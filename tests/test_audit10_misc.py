"""Tenth audit, small items found by hand: what a figure's axes say is what they count."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install 'runlog[plot]'")

import runlog  # noqa: E402
from runlog import open_run  # noqa: E402
from runlog.plots import make_figure  # noqa: E402


def _ticks_are_whole(ax) -> bool:  # noqa: ANN001
    fig = ax.figure
    fig.canvas.draw()
    ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    return bool(ticks) and all(float(t).is_integer() for t in ticks)


@pytest.mark.parametrize("what", ["hist", "reward"])
def test_a_count_axis_of_few_samples_is_ticked_at_whole_numbers(tmp_path, what):
    """Three samples at a step: the histogram's 'samples' axis was ticked 0.0, 0.5, ... 3.0."""
    with runlog.RunWriter(tmp_path / "r", name="r", roles=["solver"], durable=False) as w:
        for step in range(2 if what == "hist" else 1):
            rewards = [0.1, 0.1, 0.9] if what == "hist" else [0.1 * i for i in range(9)] + [0.15, 0.25]
            w.log_samples(step, [{"reward": r, "roles": {"solver": {"reward": r}}} for r in rewards])
    fig = make_figure(open_run(tmp_path / "r"), what)
    counted = [ax for ax in fig.axes if ax.get_ylabel() == "samples"]
    assert counted
    assert all(_ticks_are_whole(ax) for ax in counted), [list(ax.get_yticks()) for ax in counted]


def _speaker_run(root):  # noqa: ANN001, ANN202
    """Messages that name their speakers (``name``) with no roles in a manifest."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "samples" / "train").mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "run_id": "d", "name": "d"}))
    msg = pa.list_(pa.struct([("role", pa.string()), ("name", pa.string()), ("content", pa.string())]))
    turns = [
        {"role": "user", "name": None, "content": "q"},
        {"role": "assistant", "name": "prover", "content": "x y"},
        {"role": "assistant", "name": "critic", "content": "ok"},
    ]
    t = pa.table(
        {
            "schema_version": pa.array([2, 2], pa.int32()),
            "step": [0, 0],
            "split": ["train", "train"],
            "sample_id": ["a", "b"],
            "reward": [1.0, 0.0],
            "messages": pa.array([turns, turns], msg),
        }
    ).replace_schema_metadata({"runlog.schema_version": "2"})
    pq.write_table(t, root / "samples" / "train" / "step_00000000.p0.parquet")
    return root, [m["name"] or m["role"] for m in turns]


def test_an_unknown_speaker_lists_the_speakers_of_the_messages(tmp_path, cli):
    """A run without manifest roles whose messages name their speakers: the error said the roles were
    '(none recorded)', naming nobody the user could pick."""
    root, speakers = _speaker_run(tmp_path / "r")
    res = cli("metrics", "diversity", root, "--text", "role:provr")
    assert res.exit_code == 2, res.output
    assert "(did you mean 'prover'?)" in res.output
    assert f"messages are spoken by {', '.join(speakers)}" in res.output
    assert "none recorded" not in res.output
    ok = cli("metrics", "diversity", root, "--text", "role:prover", "--format", "json")
    assert ok.exit_code == 0, ok.output
