"""A ``Run.samples`` row to a ``Conversation``: which column the conversation is read from, and the reward.

A row may hold the conversation several times (Flink writes a rendered ``trajectory`` and per-agent
``agent_trajectories``). ``auto`` takes the most complete one that parses, in ``AUTO_ORDER``; a named
source is taken as asked, so two views of one sample can be compared.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import UsageError
from .model import Conversation, Reward, RoleResult, Turn
from .normalize import from_agent_trajectories, from_messages, from_prompt_completion, from_trajectory_text

SOURCES = ("auto", "messages", "trajectory", "agent_trajectories", "prompt")
# The structured transcript and canonical messages hold the whole conversation (system and user turns
# too); Flink's per-agent JSON has only each agent's own turns, and a free-text transcript no structure.
AUTO_ORDER = (
    "messages",
    "trajectory:structured",
    "agent_trajectories:known",
    "trajectory",
    "prompt",
    "agent_trajectories",
)


def conversation_from_row(row: dict[str, Any], source: str = "auto") -> Conversation:
    """Normalise one sample row (canonical column names). Never raises on the row's content."""
    if source not in SOURCES:
        raise UsageError(f"unknown conversation source {source!r}; choose one of {', '.join(SOURCES)}")
    turns, used, notes = _turns(row, source)
    return Conversation(
        turns=turns,
        source=used,
        sample_id=_opt(row.get("sample_id")),
        step=row.get("step"),
        split=_opt(row.get("split")),
        group_id=_opt(row.get("group_id")),
        env_name=_opt(row.get("env_name")),
        layout=_opt(row.get("layout")),
        file=_opt(row.get("source")),
        reward=reward_of(row),
        exception=row.get("exception"),
        notes=notes,
        occurrence=row.get("__occurrence"),  # select.OCCURRENCE_COLUMN, where the row was chosen by select
    )


def _turns(row: dict[str, Any], source: str) -> tuple[list[Turn], str, list[str]]:
    order = AUTO_ORDER if source == "auto" else (source,)
    for candidate in order:
        column, _, need = candidate.partition(":")
        turns = _try(row, column, need)
        if turns is not None:
            return turns, column, []
    if source != "auto":
        return [], source, [f"column {source!r} is empty for this sample"]
    return [], "none", ["no conversation column holds data for this sample"]


def _try(row: dict[str, Any], column: str, need: str) -> list[Turn] | None:
    if column == "messages":
        msgs = row.get("messages")
        return from_messages(msgs) if msgs else None
    if column == "prompt":
        prompt, completion = row.get("prompt"), row.get("completion")
        return from_prompt_completion(prompt, completion) if (prompt or completion) else None
    value = row.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if column == "trajectory":
        turns, known = from_trajectory_text(value) if isinstance(value, str) else ([Turn("data", data=value)], False)
    else:
        turns, known = from_agent_trajectories(value, row.get("role_assignments"))
    if need and not known:
        return None
    return turns


def reward_of(row: dict[str, Any]) -> Reward | None:
    """The reward breakdown from the canonical ``reward``, ``reward_components`` and ``roles`` columns."""
    components = [
        (str(c.get("name")), _float(c.get("value"))) for c in row.get("reward_components") or [] if isinstance(c, dict)
    ]
    roles = [
        RoleResult(_opt(r.get("role")), _float(r.get("reward")), _float(r.get("kl")))
        for r in row.get("roles") or []
        if isinstance(r, dict)
    ]
    total = _float(row.get("reward"))
    if total is None and not components and not roles and "reward" not in row:
        return None
    return Reward(total, components, roles)


def _float(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return None


def _opt(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    return str(v)
