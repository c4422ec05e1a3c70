"""Every conversation shape runlog meets, mapped into ``model.Turn`` lists.

Shapes (``docs/render.md`` has the mapping of each): runlog's canonical ``messages``; OpenAI chat messages
(tool calls as dicts or JSON strings, ``tool`` results); OpenAI Responses items; Flink
``agent_trajectories`` JSON; a rendered ``trajectory`` string; tool calls written as text
(``<tool_call>{...}</tool_call>``); plain prompt / completion. The chat shapes reuse ``runlog.chat`` (the
readers' own normalisers), so a conversation renders the way ``Run.samples`` holds it.

Nothing here raises on odd data: JSON is parsed with ``json`` only, and a value whose shape is unknown
becomes a turn holding it as ``data`` (shown as a JSON tree).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .. import chat
from .model import ToolCall, ToolResult, Turn, looks_like_error

RESPONSES_TYPES = frozenset(
    {
        "message",
        "reasoning",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
    }
)
_TEXT_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def text_tool_calls(content: str | None) -> tuple[str | None, list[ToolCall]]:
    """Tool calls written into the text as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
    (Hermes / Qwen templates): the content without them, and the calls. A block that is not a JSON object
    with a name stays in the text, so what the model wrote is never hidden."""
    if not content or "<tool_call>" not in content:
        return content, []
    calls: list[ToolCall] = []

    def take(m: re.Match[str]) -> str:
        try:
            obj = json.loads(m.group(1))
        except (ValueError, RecursionError):
            return m.group(0)
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            return m.group(0)
        key = "arguments" if "arguments" in obj else "parameters"
        args = obj.get(key)
        if not isinstance(args, str) and args is not None:
            # The arguments as the model wrote them (1.10, 1E5, a repeated key), not as Python re-serialises them.
            args = _raw_member(m.group(1), key) or _json(args)
        calls.append(ToolCall(_str(obj.get("id")), obj["name"], args))
        return ""

    rest = _TEXT_CALL.sub(take, content)
    return (rest.strip("\n") if calls else content), calls


_DECODER = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")


def _raw_member(text: str, key: str) -> str | None:
    """The text of the last top-level member ``key`` of the JSON object ``text``, exactly as written (None when
    ``text`` is not such an object): each value is skipped by the standard decoder, which tells where it ends."""
    try:
        i = _WS.match(text, 0).end()  # type: ignore[union-attr]
        if text[i : i + 1] != "{":
            return None
        i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
        found = None
        while i < len(text) and text[i] != "}":
            name, i = _DECODER.raw_decode(text, i)
            i = _WS.match(text, i).end()  # type: ignore[union-attr]
            if text[i : i + 1] != ":":
                return None
            start = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
            _, end = _DECODER.raw_decode(text, start)
            if name == key:
                found = text[start:end]
            i = _WS.match(text, end).end()  # type: ignore[union-attr]
            if text[i : i + 1] == ",":
                i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
        return found
    except (ValueError, RecursionError, IndexError):
        return None


def from_messages(messages: Any) -> list[Turn]:
    """Canonical message dicts (``Run.samples.messages`` rows, or ``runlog.chat`` output) to turns."""
    turns: list[Turn] = []
    for m in messages or []:
        if not isinstance(m, dict):
            turns.append(Turn("unknown", data=m))
            continue
        role = m.get("role") or "unknown"
        content = m.get("content")
        if role == "tool":
            result = ToolResult(m.get("tool_call_id"), m.get("name"), content, looks_like_error(content))
            turns.append(Turn("tool", speaker=m.get("name"), result=result))
            continue
        calls = [ToolCall(c.get("id"), c.get("name"), c.get("arguments")) for c in m.get("tool_calls") or []]
        if not calls and role.lower() in chat.MODEL_ROLES:
            content, calls = text_tool_calls(content)
        turns.append(Turn(role, m.get("name"), content, m.get("reasoning"), calls))
    return turns


def from_openai_chat(messages: Any) -> list[Turn]:
    """OpenAI chat messages (``tool_calls`` as dicts or JSON strings; ``tool`` results)."""
    return from_messages(chat.from_openai_chat(messages))


def from_responses(items: Any) -> list[Turn]:
    """OpenAI Responses items (``function_call`` / ``function_call_output`` paired by ``call_id``)."""
    return from_messages(chat.from_responses_items(items))


def from_prompt_completion(prompt: Any, completion: Any) -> list[Turn]:
    """A prompt and a completion: strings, or chat message lists (verifiers writes lists)."""
    turns: list[Turn] = []
    for value, role in ((prompt, "user"), (completion, "assistant")):
        if value is None:
            continue
        if isinstance(value, str):
            turns.extend(from_messages([chat.message(role, value)]))
        else:
            turns.extend(normalize(value))
    return turns


def from_agent_trajectories(value: Any, role_assignments: Any = None) -> tuple[list[Turn], bool]:
    """Flink ``agent_trajectories``: a JSON list of ``{agent_id, turns: [chat messages]}``.

    Returns (turns, known): each agent's turns in order, its speaker named by ``role_assignments``
    (``{"agent_0": "judge", ...}``) as ``judge (agent_0)``. Any other shape gives one turn holding the
    parsed JSON (``known`` False), or the raw text when it is not JSON at all.
    """
    obj = _loads(value)
    if obj is _INVALID:
        return [Turn("data", content=str(value))], False
    assign = _loads(role_assignments) if role_assignments is not None else None
    assign = assign if isinstance(assign, dict) else {}
    agents = obj if isinstance(obj, list) else [obj]
    if not agents or not all(_is_agent(a) for a in agents):
        if isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
            shape = _sniff_list(obj)
            if shape is not None:
                return shape(obj), True
        return [Turn("data", data=obj)], False
    turns: list[Turn] = []
    for a in agents:
        agent_id = a.get("agent_id")
        role = assign.get(agent_id) if agent_id is not None else None
        speaker = f"{role} ({agent_id})" if role and agent_id else (role or _str(agent_id))
        for t in from_openai_chat(a.get("turns") if "turns" in a else a.get("messages")):
            if t.role != "tool" and t.speaker is None:
                t.speaker = speaker
            turns.append(t)
    return turns, True


def from_trajectory_text(text: str) -> tuple[list[Turn], bool]:
    """A rendered transcript. ``<|role name=X id=Y|>`` headers (with ``[tool_call ID NAME ARGS]`` lines)
    and ChatML (``<|im_start|>role ... <|im_end|>``) are split into turns (known True); any other text is
    one ``transcript`` turn, shown as it is. A JSON list of chat messages (OpenAI chat, Responses items,
    ShareGPT: a trainer that wrote ``json.dumps(messages)`` here) is read as that list (known True)."""
    if text.lstrip()[:1] == "[":
        obj = _loads(text)
        if isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
            shape = _sniff_list(obj)
            if shape is not None:
                return shape(obj), True
    msgs = chat.transcript_messages(text)
    if msgs is None:
        return [Turn("transcript", content=text)], False
    return _tool_responses(from_messages(msgs)), True


def _tool_responses(turns: list[Turn]) -> list[Turn]:
    """ChatML puts tool output in a ``tool`` turn (or a user turn with ``<tool_response>``): make results."""
    out = []
    for t in turns:
        if t.role == "tool" and t.result is None:
            t = Turn("tool", result=ToolResult(None, None, t.content, looks_like_error(t.content)))
        out.append(t)
    return out


def normalize(value: Any) -> list[Turn]:
    """Any conversation value, its shape sniffed: a string (a transcript, or JSON of one of the shapes),
    OpenAI chat messages, Responses items, agent trajectories; anything else as a JSON tree."""
    if isinstance(value, str):
        obj = _loads(value) if value.lstrip()[:1] in ("[", "{") else _INVALID
        if obj is _INVALID or isinstance(obj, str):
            return from_trajectory_text(value)[0]
        value = obj
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
        shape = _sniff_list(value)
        if shape is not None:
            return shape(value)
        if all(_is_agent(x) for x in value):
            return from_agent_trajectories(value)[0]
    return [Turn("data", data=value)]


def _sniff_list(items: list[dict[str, Any]]) -> Any:
    if any(x.get("type") in RESPONSES_TYPES - {"message"} for x in items) or all(
        x.get("type") == "message" for x in items
    ):
        return from_responses
    if all("role" in x or chat.is_sharegpt(x) for x in items):
        return from_openai_chat  # also reads canonical messages (flat {id, name, arguments} calls) and ShareGPT
    return None


def _is_agent(x: Any) -> bool:
    return isinstance(x, dict) and isinstance(x.get("turns", x.get("messages")), list) and "role" not in x


_INVALID = object()


def _loads(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return _INVALID


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


def _json(v: Any) -> str | None:
    return None if v is None else chat.compact_json(v)
