"""``render-trajectory``'s terminal output, pinned at fixed widths (60, 80 and 100 columns, plain and in
colour), as rich's own tests pin theirs; role colours that are the same everywhere; rewards colour-coded;
tool panels titled with the tool's name; nothing cut with "…" in narrow terminals.

After an intended change regenerate the golden files with ``RUNLOG_UPDATE_GOLDEN=1 pytest
tests/test_render_terminal.py`` and review the diff.
"""

from __future__ import annotations

import re
from io import StringIO

import pytest
from rich.console import Console
from rich.text import Text

from runlog.render import Conversation, Reward, RoleResult, ToolCall, ToolResult, Turn
from runlog.render.colours import (
    CHAT_ROLE_COLOURS,
    PALETTE,
    REWARD_HIGH,
    REWARD_NEGATIVE,
    REWARD_ZERO,
    reward_style,
    role_class,
    role_colour,
    role_hex,
)
from runlog.render.model import prepared
from runlog.render.terminal import fmt, render_all, reward_table, turn_title
from test_render import check_golden, debate_run, one, terminal


def coloured(convs: list[Conversation], width: int) -> str:
    buf = StringIO()
    Console(file=buf, width=width, force_terminal=True, color_system="256", highlight=False).print(render_all(convs))
    return buf.getvalue()


def rich_number(colour: str) -> int:
    from rich.color import Color

    return Color.parse(colour).number


@pytest.mark.parametrize("width", [60, 80, 100])
def test_debate_pinned_at_fixed_widths(tmp_path, width):
    conv = one(debate_run(tmp_path), sample_ids=("s1-debate",))
    check_golden(f"debate_{width}", terminal([conv], width=width))


def test_debate_pinned_in_colour(tmp_path):
    conv = one(debate_run(tmp_path), sample_ids=("s1-debate",))
    out = coloured([conv], 80)
    check_golden("debate_80_colour", out)
    # The solver's colour is the same in its panels' titles and in the reward table.
    solver = f"38;5;{rich_number(role_colour('solver'))}"
    lines = [line for line in out.splitlines() if "solver" in line and "debate" not in line]
    assert len(lines) >= 3 and all(solver in line for line in lines)


def test_tool_panel_is_titled_with_the_tools_name(tmp_path):
    out = terminal([one(debate_run(tmp_path), sample_ids=("s1-debate",))], width=80)
    assert "╭─ python · result ─" in out and "call call_1" not in out and "─ call_1 ─╯" in out
    # A tool message that does not name its tool takes the name of the call it answers.
    conv = prepared(
        Conversation(
            [
                Turn("assistant", tool_calls=[ToolCall("c1", "search", "{}"), ToolCall(None, "python", "{}")]),
                Turn("tool", result=ToolResult("c1", None, "found")),
                Turn("tool", result=ToolResult(None, None, "4")),
            ],
            "messages",
        )
    )
    assert [turn_title(t).plain for t in conv.turns[1:]] == ["search · result", "python · result"]
    error = Turn("tool", result=ToolResult("c", "python", "Traceback (most recent call last):", True))
    assert turn_title(error).plain == "python · error"


def test_role_colours_are_distinct_and_stable():
    assert len({role_colour(r) for r in ("solver", "verifier", "judge")}) == 3
    assert role_colour("judge (agent_0)") == role_colour("judge") == role_colour("Judge")
    # Any other name: a palette colour chosen by its name only (the same in every process and command).
    assert role_colour("proposer") == role_colour("proposer") in PALETTE
    assert role_class("proposer") == f"rc{PALETTE.index(role_colour('proposer'))}"
    assert role_hex("solver").startswith("#") and len(role_hex("solver")) == 7
    # Red and green say something about rewards: never a role's colour.
    assert not {"red", "green", "bold red"} & set(PALETTE)
    assert set(CHAT_ROLE_COLOURS) == {"system", "user", "assistant", "tool"}


def test_rewards_are_colour_coded():
    assert reward_style(1.0) == REWARD_HIGH and reward_style(2.0) == REWARD_HIGH
    assert reward_style(0.0) == REWARD_ZERO and reward_style(-0.5) == REWARD_NEGATIVE
    assert reward_style(0.5) == "" and reward_style(None) == ""
    assert fmt(-1.0, reward=True).style == REWARD_NEGATIVE and fmt(-1.0).style == ""  # KL is not a reward
    conv = Conversation([], "none", reward=Reward(0.0, [("format", 1.0)], [RoleResult("judge", -1.0, 0.5)]))
    t = reward_table(conv)
    cells = [c for col in t.columns for c in col._cells]
    styles = {c.plain: c.style for c in cells if isinstance(c, Text)}
    assert styles["0"] == REWARD_ZERO and styles["1"] == REWARD_HIGH and styles["-1"] == REWARD_NEGATIVE
    assert styles["0.5"] == ""  # the KL column is not coloured


@pytest.mark.parametrize("width", [30, 40, 50])
def test_narrow_terminals_cut_no_label(width):
    """Two tables side by side would cut "correct_answer_reward_func" at 50 columns: they are stacked (and a
    label wider than the terminal is folded onto the next line, never cut)."""
    conv = Conversation(
        [Turn("user", content="2+2?"), Turn("assistant", content="4")],
        "messages",
        reward=Reward(
            1.0,
            [("correct_answer_reward_func", 1.0), ("total_tool_calls", 0.0)],
            [RoleResult("solver", 1.0, 0.01), RoleResult("verifier", -0.5, 0.02)],
        ),
    )
    out = terminal([conv], width=width)
    assert "…" not in out
    assert re.search(r"^trajectory\s*$", out, re.M), "the trajectory table under the reward table"
    assert max(len(line) for line in out.splitlines()) <= width
    if width >= 50:  # narrower, it folds (a three-column table needs 42 columns here)
        assert "correct_answer_reward_func" in out and "assistant turns" in out
    wide = terminal([conv], width=100)
    assert re.search(r"^reward\s+trajectory", wide, re.M), "side by side when they fit"
