"""The text metrics and render-trajectory name the same turns the model's. A chat message whose role is
``agent`` was the model's turn in render-trajectory and the W&B tables, and no text at all for the metrics (their
list of model roles was ``assistant`` and ``model``): format adherence 1.0 over 1 text, 2 skipped, where the run
has 3 answers of which 2 follow the format. One list now (``chat.MODEL_ROLES``, ``chat.INPUT_ROLES``).

The expected figures are counted here from the raw messages, never with runlog's code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq

from test_tables_audit11 import FILE, msg, run_of, sample

STRICT = re.compile(r"(?s)\s*<think>.*?</think>\s*<answer>.*?</answer>\s*")
ROWS = [
    sample("s0", [msg("human", "Q <think>x</think>"), msg("agent", "<think>a</think><answer>1</answer>")]),
    sample("s1", [msg("user", "Q"), msg("assistant", "<think>a</think><answer>2</answer>")]),
    sample("s2", [msg("user", "Q"), msg("agent", "no format here")]),
]


def _answers(run: Path) -> list[str]:
    """The last message of each sample, written by the model (its role is not the prompt's)."""
    return [r["messages"][-1]["content"] for r in pq.read_table(run / FILE).to_pylist()]


def test_agent_turns_are_the_models_text(cli, tmp_path: Path) -> None:  # noqa: ANN001
    run = run_of(tmp_path, ROWS)
    answers = _answers(run)
    r = cli("metrics", "format", str(run), "--spec", "think-answer-strict", "--format", "json")
    assert r.exit_code == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["texts"] == len(answers) == 3 and not row.get("no_text")
    assert row["adherence"] == sum(bool(STRICT.fullmatch(a)) for a in answers) / 3
    assert "skipped" not in r.stderr


def test_render_counts_the_agent_turns_as_the_models(cli, tmp_path: Path) -> None:  # noqa: ANN001
    """render-trajectory's statistics counted ``assistant`` turns only: 0 for a conversation whose model turns
    are ``agent`` or ``model`` (Gemini's role); a ``<think>`` in the human's prompt stays text."""
    rows = [
        sample("s0", [msg("human", "Q <think>x</think>"), msg("agent", "<think>a</think><answer>1</answer>")]),
        sample("s1", [msg("user", "Q"), msg("model", "A"), msg("user", "and?"), msg("model", "B")]),
    ]
    run = run_of(tmp_path, rows)
    raw = pq.read_table(run / FILE).to_pylist()
    want = {r["sample_id"]: sum(m["role"] not in ("human", "user") for m in r["messages"]) for r in raw}
    for sid, n in want.items():
        shown = cli("render-trajectory", str(run), "--sample-id", sid, "--format", "json")
        assert shown.exit_code == 0, shown.stderr
        (conv,) = json.loads(shown.stdout)
        assert conv["stats"]["assistant_turns"] == n, conv["stats"]
    (first,) = json.loads(cli("render-trajectory", str(run), "--sample-id", "s0", "--format", "json").stdout)
    assert first["turns"][0]["content"] == "Q <think>x</think>"
