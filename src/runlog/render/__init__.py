"""Render trajectories: normalise any conversation shape into one model, select samples cheaply, and draw
them for a terminal (rich), as one self-contained HTML page, as Markdown, or as JSON.

The library twin of ``runlog render-trajectory``::

    from runlog import open_run
    from runlog.render import Criteria, conversations, to_json

    run = open_run("sample_runs/debate_grpo")
    convs, selection = conversations(run, Criteria(steps="5", best=1))
    print(to_json(convs, indent=2))
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from ..run import Run
from ..textsafe import INVISIBLE_CHARS
from .model import (
    JSON_SCHEMA,
    Conversation,
    Reward,
    RoleResult,
    Stats,
    ToolCall,
    ToolResult,
    Turn,
    prepared,
)
from .normalize import (
    from_agent_trajectories,
    from_messages,
    from_openai_chat,
    from_prompt_completion,
    from_responses,
    from_trajectory_text,
    normalize,
    text_tool_calls,
)
from .sample import SOURCES, conversation_from_row
from .select import Criteria, Selection, select_samples


def conversations(
    run: Run, criteria: Criteria, *, source: str = "auto", max_chars: int | None = None, no_think: bool = False
) -> tuple[list[Conversation], Selection]:
    """The selected samples of ``run`` as display-ready conversations, and the selection itself."""
    sel = select_samples(run, criteria)
    convs = [prepared(conversation_from_row(r, source), max_chars=max_chars, no_think=no_think) for r in sel.rows]
    return convs, sel


def to_json(convs: Iterable[Conversation], *, indent: int | None = None, lines: bool = False) -> str:
    """A JSON array of conversations in the ``runlog.conversation/1`` form (``docs/render.md``); ``lines``:
    one conversation per line (JSON Lines)."""
    data: list[dict[str, Any]] = []
    for c in convs:
        d = c.to_dict()
        gone: dict[str, str] = {}
        d = _finite(d, "", gone)
        d["not_finite"] = gone  # JSON has no NaN: the null of a failed grade is told from a null here
        data.append(d)
    if lines:
        text = "\n".join(json.dumps(d, ensure_ascii=False, allow_nan=False, default=str) for d in data)
    else:
        text = json.dumps(data, indent=indent, ensure_ascii=False, allow_nan=False, default=str)
    # These characters can only be inside a JSON string, where their \uXXXX escape is valid JSON and the same
    # value: a lone surrogate (invalid UTF-8 read with surrogateescape), which could not be encoded at all, and
    # DEL, the C1 controls (CSI, OSC) and bidi / zero-width / tag characters, which would act on (or hide in) a
    # terminal that shows the JSON (json escapes the C0 controls itself).
    return _ESCAPED.sub(lambda m: _json_escape(m.group()), text)


# DEL, the C1 controls, and what ``textsafe.visible`` shows as escapes (bidi controls, zero-width and tag
# characters, lone surrogates).
_ESCAPED = re.compile(f"[\x7f-\x9f{INVISIBLE_CHARS}]")


def _json_escape(ch: str) -> str:
    """``ch`` as a JSON escape: ``\\uXXXX``, or the UTF-16 surrogate pair beyond the BMP (JSON has no longer
    escape), which parses back to the same character."""
    n = ord(ch)
    if n <= 0xFFFF:
        return f"\\u{n:04x}"
    n -= 0x10000
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"


def _finite(v: Any, where: str = "", gone: dict[str, str] | None = None) -> Any:
    """NaN and infinities (a reward, a value inside unknown-shape ``data``) as null: JSON has no NaN. Each one
    is recorded in ``gone`` by its path (``reward.total``, ``reward.roles.0.reward``) as ``NaN``, ``inf`` or
    ``-inf``."""
    if isinstance(v, float) and not math.isfinite(v):
        if gone is not None:
            gone[where] = "NaN" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return None
    if isinstance(v, dict):
        return {k: _finite(x, f"{where}.{k}" if where else str(k), gone) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x, f"{where}.{i}" if where else str(i), gone) for i, x in enumerate(v)]
    return v


__all__ = [
    "JSON_SCHEMA",
    "SOURCES",
    "Conversation",
    "Criteria",
    "Reward",
    "RoleResult",
    "Selection",
    "Stats",
    "ToolCall",
    "ToolResult",
    "Turn",
    "conversation_from_row",
    "conversations",
    "from_agent_trajectories",
    "from_messages",
    "from_openai_chat",
    "from_prompt_completion",
    "from_responses",
    "from_trajectory_text",
    "normalize",
    "prepared",
    "select_samples",
    "text_tool_calls",
    "to_json",
]
