"""Which text the metrics read, after the third audit (expected figures counted here from the rows written):

- the ``auto`` text is each sample's first assistant speaker's (the agent that answers the prompt), whatever
  order the run lists its roles in (it was the run's first role: a verifier listed first read 0 % format);
- a final turn without content (cut off while reasoning) is the empty text, not an earlier turn's;
- texts without a prompt group are in no group (they were one more group per step).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runlog import open_run
from runlog.analysis.doctor import diagnose
from runlog.analysis.texts import diversity_frame, format_frame, texts_frame
from runlog.writer import RunWriter

GOOD = "<think>work {i}</think><answer>{i}</answer>"
STRICT = re.compile(r"(?s)^\s*<think>.+?</think>\s*<answer>.+?</answer>\s*$")


def debate_rows(step: int, solver_formats: bool, solver_distinct: bool) -> list[dict]:
    """Eight samples in two prompt groups: the solver speaks first, then the verifier (never formatted)."""
    rows = []
    for i in range(8):
        k = i if solver_distinct else i // 4
        solver = GOOD.format(i=k) if solver_formats else f"plain answer {k}"
        rows.append(
            {
                "reward": 1.0,
                "sample_id": f"s{step}-{i}",
                "group_id": f"s{step}-g{i // 4}",
                "solver_reward": 1.0,
                "verifier_reward": 0.5,
                "messages": [
                    {"role": "user", "content": f"task {i // 4}"},
                    {"role": "assistant", "name": "solver", "content": solver},
                    {"role": "assistant", "name": "verifier", "content": "looks fine to me"},
                ],
            }
        )
    return rows


def debate_run(root: Path, roles: list[str], steps: int = 16) -> Path:
    """The solver follows the format and writes distinct texts until step 8, then neither."""
    with RunWriter(root, name="d", roles=roles) as w:
        for step in range(steps):
            w.log_samples(step, debate_rows(step, solver_formats=step < 8, solver_distinct=step < 8))
    return root


@pytest.mark.parametrize("roles", [["solver", "verifier"], ["verifier", "solver"]])
def test_auto_reads_the_first_speaker_whatever_the_role_order(tmp_path: Path, roles: list[str]) -> None:
    root = debate_run(tmp_path / "run", roles)
    run = open_run(root)
    texts = texts_frame(run, "auto")
    expected = [m["content"] for s in range(16) for r in debate_rows(s, s < 8, s < 8) for m in r["messages"][1:2]]
    assert texts["text"].to_list() == expected
    fmt = format_frame(run, "think-answer-strict", ["step"])
    # Independent count: the solver's texts that match the strict think/answer shape, per step.
    want = [sum(bool(STRICT.match(t)) for t in expected[s * 8 : s * 8 + 8]) / 8 for s in range(16)]
    assert fmt["adherence"].to_list() == want
    kinds = {(f.kind, f.onset_step) for f in diagnose(open_run(root)).findings}
    assert ("format_drift", 8) in kinds and ("diversity_collapse", 8) in kinds


def test_an_empty_final_turn_is_the_empty_text_not_an_earlier_one(tmp_path: Path) -> None:
    def sample(msgs: list[dict]) -> dict:
        return {"group_id": "g", "reward": 0.0, "messages": [{"role": "user", "content": "Q"}, *msgs]}

    rows = [
        sample([{"role": "assistant", "content": GOOD.format(i=1)}]),
        sample([{"role": "assistant", "content": GOOD.format(i=2)}]),
        sample([{"role": "assistant", "content": "", "reasoning": "cut at max_tokens"}]),
        sample([{"role": "assistant", "content": None, "reasoning": "long thinking"}]),
        sample(
            [
                {"role": "assistant", "content": GOOD.format(i=5)},
                {"role": "user", "content": "Are you sure?"},
                {"role": "assistant", "content": ""},
            ]
        ),
        # A tool call without words leads up to the answer: the answer is the text.
        sample(
            [
                {"role": "assistant", "content": GOOD.format(i=6)},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "name": "f", "arguments": "{}"}],
                },
                {"role": "tool", "content": "42", "tool_call_id": "c1"},
            ]
        ),
    ]
    with RunWriter(tmp_path / "run") as w:
        w.log_samples(0, rows)
    run = open_run(tmp_path / "run")
    texts = texts_frame(run, "auto")["text"].to_list()
    assert texts == [GOOD.format(i=1), GOOD.format(i=2), "", "", "", GOOD.format(i=6)]
    [row] = format_frame(run, "think-answer-strict", ["step"]).iter_rows(named=True)
    assert row["texts"] == 6 and row["adherence"] == pytest.approx(3 / 6)


def test_texts_without_a_prompt_group_are_in_no_group(tmp_path: Path) -> None:
    rows = [{"group_id": "g", "reward": 1.0, "completion": "same answer here"} for _ in range(4)]
    rows += [{"group_id": None, "reward": 1.0, "completion": f"unrelated answer number {i}"} for i in range(4)]
    with RunWriter(tmp_path / "run") as w:
        w.log_samples(0, rows)
    notes: list[str] = []
    [row] = diversity_frame(open_run(tmp_path / "run"), ["step"], notes=notes).iter_rows(named=True)
    # The one prompt group: four copies of one text.
    assert (row["groups"], row["texts"], row["unique_frac"]) == (1, 4, 0.25)
    assert any(n.startswith("4 text(s) without a prompt group") for n in notes)


def test_a_sample_where_the_policy_does_not_speak_has_no_text(tmp_path: Path) -> None:
    """The policy is the speaker that speaks first in most samples: a sample whose solver turn is missing has
    no text, not the verifier's (which speaks first there)."""
    rows = debate_rows(0, solver_formats=True, solver_distinct=True)
    for r in rows[6:]:
        r["messages"] = [m for m in r["messages"] if m.get("name") != "solver"]
    with RunWriter(tmp_path / "run", roles=["verifier", "solver"]) as w:
        w.log_samples(0, rows)
    run = open_run(tmp_path / "run")
    assert texts_frame(run, "auto")["text"].to_list() == [GOOD.format(i=i) for i in range(6)] + [None, None]
    [row] = format_frame(run, "think-answer-strict", ["step"]).iter_rows(named=True)
    assert (row["texts"], row["adherence"]) == (6, 1.0)
