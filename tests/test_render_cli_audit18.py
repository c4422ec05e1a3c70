"""render-trajectory: a role of the run that the selected steps do not log is no match (exit 1), said after the
run's problems, as any other no match is (the reason the selection came out empty may be among them)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from runlog.cli.app import app

SAMPLE_RUNS = Path(__file__).resolve().parents[1] / "sample_runs"


def test_a_role_not_logged_at_the_steps_is_said_after_the_runs_problems() -> None:
    res = CliRunner().invoke(
        app, ["render-trajectory", str(SAMPLE_RUNS / "flink_mixed"), "--steps", "3", "--best", "1", "--role", "judge"]
    )
    assert res.exit_code == 1, res.output
    problem = res.stderr.index("CSV fallback file")
    said = res.stderr.index("role 'judge' is not logged at the selected steps")
    assert problem < said, res.stderr
    assert "Traceback" not in res.output


def test_json_marks_the_turn_that_continues_its_message() -> None:
    """A review: the JSON showed 4 turns (2 assistant) beside stats of 3 turns and 1 assistant turn, with nothing
    to tell which turn continued its message."""
    import json

    from runlog.render import to_json
    from runlog.render.model import Conversation
    from runlog.render.normalize import normalize

    turns = normalize(
        [
            {"role": "user", "content": "2+2?"},
            {
                "role": "assistant",
                "content": '<tool_call>{"name": "calc", "arguments": {"x": "2+2"}}</tool_call> waiting',
            },
            {"role": "tool", "content": "4"},
        ]
    )
    conv = Conversation(turns=turns, source="messages", sample_id="s", step=0, split="train")
    [data] = json.loads(to_json([conv]))
    flags = [t["continues"] for t in data["turns"]]
    assert flags.count(True) == 1 and data["stats"]["turns"] == len(flags) - 1, data
