"""inspect_ai logs now say where the generation starts (``prompt_turns``), as verifiers and NeMo Gym do: a few-shot
input's assistant turn (an example answer) was read as the model's text by the text metrics. With a badly
formatted example in the input, ``--text assistant`` (every assistant turn of a sample) joined the example to each
answer: adherence 0.0 where 2 of the 3 answers follow the format; now 2/3, over the turns the model generated.

The expected figures come from the log written here (json), never from runlog's code."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from test_inspect_ai import write_eval_log, write_json_log

STRICT = re.compile(r"(?s)\s*<think>.*?</think>\s*<answer>.*?</answer>\s*")
FEW_SHOT = [
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},  # the example answer: no think/answer tags
    {"role": "user", "content": "3+3?"},
]


def _sample(sid: int, answer: str) -> dict[str, Any]:
    messages = [
        {"role": "system", "content": "Think, then answer."},  # added by a system_message solver
        *FEW_SHOT[:2],
        {"role": "user", "content": "Q: 3+3? Reply as <think>..</think><answer>..</answer>"},  # a prompt_template
        {"role": "assistant", "content": answer, "source": "generate"},
    ]
    return {
        "id": sid,
        "epoch": 1,
        "input": FEW_SHOT,
        "target": "6",
        "messages": messages,
        "output": {"model": "m", "choices": [{"message": {"role": "assistant", "content": answer}}]},
        "scores": {"match": {"value": "C"}},
    }


ANSWERS = ["<think>3 and 3</think><answer>6</answer>", "<think>x</think><answer>6</answer>", "six"]


@pytest.mark.parametrize("kind", ["json", "eval"])
def test_few_shot_turns_are_the_prompts(cli, tmp_path: Path, kind: str) -> None:  # noqa: ANN001
    samples = [_sample(i, a) for i, a in enumerate(ANSWERS)]
    path = tmp_path / "logs" / f"task.{kind}"
    (write_json_log if kind == "json" else write_eval_log)(path, samples)
    # The truth: per sample, the assistant turns after the input's (the input holds one example answer).
    generated = [
        [m["content"] for m in s["messages"] if m["role"] == "assistant"][
            sum(m["role"] == "assistant" for m in s["input"]) :
        ]
        for s in samples
    ]
    assert [len(g) for g in generated] == [1, 1, 1]
    r = cli(
        "metrics",
        "format",
        str(path.parent),
        "--spec",
        "think-answer-strict",
        "--text",
        "assistant",
        "--format",
        "json",
    )
    assert r.exit_code == 0, r.stderr
    (row,) = json.loads(r.stdout)
    texts = [g[-1] for g in generated]
    assert row["texts"] == len(texts)
    assert row["adherence"] == sum(bool(STRICT.fullmatch(t)) for t in texts) / len(texts)
