"""inspect_ai samples to runlog's canonical values: scores to a reward and named components, messages (with
their tool calls and results, attachments resolved) to canonical messages, the final output and the error to
text. Pure functions of parsed JSON; the files themselves are read by ``formats/inspect_ai.py``."""

from __future__ import annotations

import json
import math
from typing import Any

from .. import chat

ATTACHMENT = "attachment://"
# inspect_ai's ``value_to_float``: the letter grades, then yes/no and true/false, then numeric strings.
_GRADES = {"C": 1.0, "P": 0.5, "I": 0.0, "N": 0.0}
_WORDS = {"yes": 1.0, "true": 1.0, "no": 0.0, "false": 0.0}


# ---------------------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------------------


def score_float(value: Any) -> float | None:
    """A score value as inspect_ai's ``value_to_float`` reads it (C=1, P=0.5, I=N=0, yes/true=1, no/false=0,
    numeric strings); None for null and for strings it cannot convert (inspect_ai would log a warning and
    use 0: runlog keeps them unknown rather than invent a score)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an int beyond the float64 range: infinity of its sign, as JSON's 1e400 is read
            return math.inf if value > 0 else -math.inf
    if not isinstance(value, str):
        return None
    if value in _GRADES:
        return _GRADES[value]
    low = value.strip().lower()
    if low in _WORDS:
        return _WORDS[low]
    try:
        f = float(low)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def map_scores(
    scores: Any, reward_key: str | None = None
) -> tuple[float | None, list[dict[str, Any]] | None, list[str]]:
    """``(reward, components, unmapped scorer names)``. The reward is the value of the scorer ``reward_key`` (the
    task's first scorer, from the log's header), or of the sample's first score when it is None (a log that
    names no scorers); every scorer is a component named after it (dict values give ``scorer/key``, lists
    ``scorer/index``)."""
    if not isinstance(scores, dict) or not scores:
        return None, None, []
    if reward_key is None:
        reward_key = next(iter(scores))
    comps: list[dict[str, Any]] = []
    unmapped: list[str] = []
    reward: float | None = None
    for scorer, score in scores.items():
        value = score.get("value") if isinstance(score, dict) else score
        if isinstance(value, dict):
            parts = [(f"{scorer}/{k}", v) for k, v in value.items()]
        elif isinstance(value, list):
            parts = [(f"{scorer}/{k}", v) for k, v in enumerate(value)]
        else:
            parts = [(str(scorer), value)]
            if scorer == reward_key:
                reward = score_float(value)
        for name, v in parts:
            f = score_float(v)
            if f is None:
                if v is not None:
                    unmapped.append(name)
                continue
            comps.append({"name": name, "value": f})
    return reward, comps or None, unmapped


# ---------------------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------------------


def resolve_attachments(obj: Any, attachments: dict[str, Any]) -> Any:
    """``obj`` with every ``attachment://<hash>`` string that ``attachments`` holds replaced by its content."""
    if not attachments:
        return obj
    if isinstance(obj, str):
        if obj.startswith(ATTACHMENT):
            hit = attachments.get(obj[len(ATTACHMENT) :])
            return hit if isinstance(hit, str) else obj
        return obj
    if isinstance(obj, list):
        return [resolve_attachments(v, attachments) for v in obj]
    if isinstance(obj, dict):
        return {k: resolve_attachments(v, attachments) for k, v in obj.items()}
    return obj


def as_text(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _args(v: Any) -> str | None:
    return v if v is None or isinstance(v, str) else chat.compact_json(v)


def inspect_tool_call(tc: Any) -> dict[str, str | None]:
    """An inspect_ai ``ToolCall`` ``{id, function: name, arguments: {...}}``; other shapes go to ``chat``. A call
    whose arguments did not parse has ``arguments: {}`` and the model's text in ``parse_error``: its arguments
    are that text (``_unparsed``), so that the call reads as not valid JSON, as the model wrote it."""
    if isinstance(tc, dict) and isinstance(tc.get("function"), str):
        cid = tc.get("id")
        error = tc.get("parse_error")
        return {
            "id": None if cid is None else str(cid),
            "name": tc["function"],
            "arguments": _unparsed(error) if isinstance(error, str) and error else _args(tc.get("arguments")),
        }
    return chat.tool_call(tc)


# inspect_ai's ``parse_tool_call`` writes: "Error parsing the following tool call arguments:\n\n{raw}\n\nError
# details: {error}".
_PARSE_HEAD = "Error parsing the following tool call arguments:\n\n"
_PARSE_TAIL = "\n\nError details:"


def _unparsed(parse_error: str) -> str:
    """The model's arguments text out of a ``parse_error``; the whole message where that text cannot be told
    apart, or where it is valid JSON after all (inspect also fails arguments that parse to no object): never
    text that reads as valid arguments."""
    raw = None
    if parse_error.startswith(_PARSE_HEAD) and _PARSE_TAIL in parse_error:
        raw = parse_error[len(_PARSE_HEAD) : parse_error.rindex(_PARSE_TAIL)]
    if raw is None or not raw.strip():
        return parse_error
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        return raw
    return parse_error


def _content(content: Any, notes: set[str]) -> tuple[str | None, str | None, list[dict[str, Any]]]:
    """Message content as ``(text, reasoning, server-side tool uses)``: text parts joined, reasoning parts
    moved to ``reasoning`` (redacted ones give their summary, or nothing), other media as ``[type]``."""
    if content is None or isinstance(content, str):
        return content, None, []
    parts = content if isinstance(content, list) else [content]
    texts: list[str] = []
    reasoning: list[str] = []
    uses: list[dict[str, Any]] = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "reasoning":
            text = as_text(part.get("summary")) if part.get("redacted") else as_text(part.get("reasoning"))
            if text:
                reasoning.append(text)
            elif part.get("redacted"):
                notes.add("redacted reasoning without a summary is not mapped")
        elif kind == "tool_use":
            uses.append(part)
        else:
            text = chat.content_text([part])
            if text:
                texts.append(text)
    return ("\n".join(texts) if texts or not uses else None), ("\n".join(reasoning) or None), uses


def _tool_result(content: str | None, error: Any) -> str | None:
    """A tool message's text, with its ``error`` ({type, message}) written first so that it shows as one."""
    if not isinstance(error, dict):
        return content
    head = f"error ({error.get('type') or 'unknown'}): {error.get('message') or ''}".rstrip()
    return head if not content else f"{head}\n{content}"


def inspect_messages(raw: Any, notes: set[str]) -> list[dict[str, Any]]:
    """inspect_ai ``ChatMessage`` dicts to canonical messages. Tool results keep their ``tool_call_id`` and
    get the called function's name (``function``, else the name of the call with that id); server-side tool
    uses inside assistant content (``tool_use`` parts) become tool calls followed by their results."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        return chat.from_openai_chat(raw)
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for m in raw:
        if not isinstance(m, dict):
            out.append(chat.message("unknown", m if isinstance(m, str) else chat.compact_json(m)))
            continue
        role = m.get("role")
        if not (isinstance(role, str) and role):
            role = "unknown"
        text, reasoning, uses = _content(m.get("content"), notes)
        legacy = as_text(m.get("reasoning"))  # logs from before reasoning became a content part
        if legacy:
            reasoning = legacy if reasoning is None else f"{legacy}\n{reasoning}"
        if role == "tool":
            cid = m.get("tool_call_id")
            cid = None if cid is None else str(cid)
            name = as_text(m.get("function")) or names.get(cid or "")
            out.append(chat.message("tool", _tool_result(text, m.get("error")), name=name, tool_call_id=cid))
            continue
        calls = [inspect_tool_call(tc) for tc in m.get("tool_calls") or [] if tc is not None] or None
        used = [
            {"id": as_text(u.get("id")), "name": as_text(u.get("name")), "arguments": _args(u.get("arguments"))}
            for u in uses
        ]
        if used:
            calls = (calls or []) + used
        for c in calls or []:
            if c["id"] is not None and c["name"] is not None:
                names[c["id"]] = c["name"]
        out.append(chat.message(role, text, reasoning=reasoning, tool_calls=calls))
        for u in uses:
            result = u.get("result")
            result = result if result is None or isinstance(result, str) else chat.compact_json(result)
            error = u.get("error")
            error = {"type": "tool_use", "message": error} if isinstance(error, str) and error else None
            out.append(
                chat.message(
                    "tool", _tool_result(result, error), name=as_text(u.get("name")), tool_call_id=as_text(u.get("id"))
                )
            )
    return out


def final_text(output: Any, notes: set[str]) -> str | None:
    """The text of the sample's final model output (``output.choices[0].message``, else ``completion``)."""
    if not isinstance(output, dict):
        return None
    choices = output.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict):
            text, _, _ = _content(message.get("content"), notes)
            if text:
                return text
    return as_text(output.get("completion")) or None


def error_text(error: Any) -> str | None:
    """``EvalError`` ``{message, traceback}``: the traceback when there is one (it ends with the message)."""
    if error is None:
        return None
    if isinstance(error, dict):
        tb, msg = as_text(error.get("traceback")), as_text(error.get("message"))
        if tb and msg and msg not in tb:
            return f"{msg}\n{tb}"
        return tb or msg or chat.compact_json(error)
    return error if isinstance(error, str) else chat.compact_json(error)
