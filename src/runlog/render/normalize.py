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
from bisect import bisect_left, bisect_right
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
_CALL_OPEN = re.compile(r"<tool_call>\s*")
_CALL_CLOSE = re.compile(r"\s*</tool_call>")
# The thinking tags, as ``model.split_think`` reads them (the renderers show what lies between them as thinking).
_THINK_TAG = re.compile(r"<(/?)think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
# Where a generation's own reasoning may open: its start, after the ``assistant`` line a template left there.
_GENERATION_START = re.compile(r"\s*(?:assistant[ \t]*\n\s*)?")


_TEXT_RESPONSE = re.compile(r"<tool_response>\n?(.*?)\n?</tool_response>", re.DOTALL)
# A user turn of a ChatML transcript that holds only tool output (Qwen's templates render every tool result so).
_ONLY_RESPONSES = re.compile(r"\s*(?:<tool_response>.*?</tool_response>\s*)+", re.DOTALL)
_TEXT_TAG = re.compile(r"<tool_call>|<tool_response>")
# The role lines a chat template writes around tool output, left in a text decoded without its special tokens
# (verl's multi-turn ``output``: ``...</tool_call>\nuser\n<tool_response>...</tool_response>\nassistant\n...``):
# the whole gap between a call (or a result) and the response, a ``user`` / ``tool`` line just above the tag;
# and an ``assistant`` line just below a result.
_HEADER_BEFORE = re.compile(r"\s*\n[ \t]*(?:user|tool)[ \t]*\n[ \t]*")
_HEADER_AFTER = re.compile(r"[ \t]*\n[ \t]*assistant[ \t]*(?:\n|\Z)")


def _text_call(content: str, start: int) -> tuple[int, ToolCall] | None:
    """The call of the ``<tool_call>`` block that opens at ``start`` and where the block ends, or None when the
    block is not one JSON object with a name followed by ``</tool_call>``. The JSON is decoded from the tag on
    (``raw_decode``), so a ``</tool_call>`` inside an argument string does not end the block, as a search for
    the first closing tag would. A JSON list of calls is not a call: Hermes / Qwen templates ask for one object
    per block ("For each function call, return a json object ... within <tool_call></tool_call> XML tags"),
    and vLLM's and verl's Hermes parsers read a list as no call."""
    i = _CALL_OPEN.match(content, start).end()  # type: ignore[union-attr]
    found = _object_at(content, i)
    if found is None:
        return None
    obj, end = found
    close = _CALL_CLOSE.match(content, end)
    if close is None or not isinstance(obj.get("name"), str):
        return None
    key = "arguments" if "arguments" in obj else "parameters"
    args = obj.get(key)
    written = content[i:end]
    if not _plain_call(obj, key):
        # Members besides the call's own (``{"name": "f", "parameters": {...}, "extra": 2}``, or both
        # ``arguments`` and ``parameters``): the whole object as written is the arguments, so that nothing the
        # model wrote is lost (as ``chat.tool_call`` keeps a call of a shape it does not know).
        args = written
    elif not isinstance(args, str) and args is not None:
        # The arguments as the model wrote them (1.10, 1E5, a repeated key), not as Python re-serialises them.
        args = _raw_member(written, key) or _json(args)
    call_id = obj.get("id")
    if call_id is not None and not isinstance(call_id, str):
        # An id that is no string as the model wrote it (``true``, ``1.10``), not as Python spells it (``True``).
        call_id = _raw_member(written, "id") or _json(call_id)
    return close.end(), ToolCall(call_id, obj["name"], args)


def _plain_call(obj: dict[str, Any], key: str) -> bool:
    """Whether the call object ``obj`` holds only what a ``ToolCall`` keeps of it: ``name``, its arguments (under
    ``key``), an ``id`` (a string, an integer or null) and ``"type": "function"``. A member written twice is read
    as ``json.loads`` reads it, the last (as a tool parser reads the block)."""
    for name, value in obj.items():
        if name in ("name", key):
            continue
        if name == "id" and (value is None or isinstance(value, str) or type(value) is int):
            continue
        if name == "type" and value == "function":
            continue
        return False
    return True


def _object_at(content: str, i: int) -> tuple[dict[str, Any], int] | None:
    """The JSON object that starts at ``i`` and where it ends, or None where none does. It is decoded in a window
    that doubles till the object, or an error that no more text could mend, lies inside it: the decoder's error
    counts the lines from the start of the string it was given, so decoding the whole text from each of many
    ``<tool_call>{`` tags would take time in the square of its length. Only an unterminated string, or an
    error within a few characters of the window's end (a literal, a number or an escape cut), asks for more."""
    if content[i : i + 1] != "{":
        return None
    size = 1024
    while True:
        window = content[i : i + size]
        try:
            obj, end = _DECODER.raw_decode(window)
        except json.JSONDecodeError as e:
            cut = e.msg.startswith("Unterminated string") or e.pos >= len(window) - 16
            if not cut or i + size >= len(content):
                return None
            size *= 2
            continue
        except RecursionError:
            return None
        return (obj, i + end) if isinstance(obj, dict) else None


def _text_spans(content: str) -> list[tuple[str, int, int, Any]]:
    """The calls, results and template role lines of a model's text, as ``(kind, start, end, value)`` in
    order; everything between them is the model's text. The role lines are dropped only where the text is
    certainly a rendered template: some results in it (one tool turn's) sit between a ``user`` (or ``tool``)
    line and an ``assistant`` line. Elsewhere a line that only says ``user`` may be the model's word, so it
    is kept, and a response it stands before is not taken as a result."""
    spans = _scan_text(content, headers=True)
    kinds = "".join({"before": "u", "result": "r", "after": "a"}.get(kind, "c") for kind, *_ in spans)
    bracketed = re.search("ur+a", kinds) is not None  # a user line, the results of one turn, an assistant line
    return _drop_thought_calls(content, spans if bracketed else _scan_text(content, headers=False))


def _scan_text(content: str, headers: bool) -> list[tuple[str, int, int, Any]]:
    """``_text_spans`` for one reading of the role lines (``headers``: they are the template's). A
    ``<tool_response>`` is a result only where it answers: right after a call or a result, with nothing but
    whitespace (or, with ``headers``, a role line) between, and after a call also the ``</think>`` that ends the
    reasoning it was written in (kept as text); any other is text as written, and a valid call
    inside it is a call. A call inside a result is the tool's output, not a call. A block that is not a call is
    read again from its next ``<tool_call>`` (a tag named in prose, or written twice, before a real block)."""
    spans: list[tuple[str, int, int, Any]] = []
    pos = 0
    while tag := _TEXT_TAG.search(content, pos):
        if tag.group() == "<tool_call>":
            found = _text_call(content, tag.start())
            if found is not None:
                spans.append(("call", tag.start(), found[0], found[1]))
            pos = found[0] if found is not None else tag.end()  # not a call: its tag is text, what follows is read
            continue
        answers = bool(spans) and spans[-1][0] in ("call", "result")  # right after a call or a result
        since = spans[-1][2] if answers else tag.start()
        if answers and spans[-1][0] == "call":
            # A call written in the reasoning, then the reasoning's end, then its result: the ``</think>`` stays
            # text, and the role line below it is the template's.
            for close in _THINK_CLOSE.finditer(content, since, tag.start()):
                if content[since : close.start()].strip():
                    break
                since = close.end()
        gap = content[since : tag.start()]
        header = headers and bool(gap.strip()) and bool(_HEADER_BEFORE.fullmatch(gap))
        block = _TEXT_RESPONSE.match(content, tag.start()) if answers and (header or not gap.strip()) else None
        if block is None:
            pos = tag.end()
            continue
        if header:
            spans.append(("before", since, tag.start(), None))
        spans.append(("result", block.start(), block.end(), block.group(1)))
        pos = block.end()
        after = _HEADER_AFTER.match(content, pos) if headers else None
        if after:
            spans.append(("after", after.start(), after.end(), None))
            pos = after.end()
    return spans


def _drop_thought_calls(content: str, spans: list[tuple[str, int, int, Any]]) -> list[tuple[str, int, int, Any]]:
    """``spans`` less the calls written in the reasoning that no tool result answers: they stay in the text, and
    the thinking block with them stays one turn. A reasoning parser (vLLM's ``qwen3``, ``deepseek_r1``) hands
    the tool parser only the text after the reasoning, so such a call was thought, not made. A call followed by
    a result in its generation (a multi-turn text has one generation between each two results) was run all the
    same, wherever it was written (verl's Hermes parser reads calls anywhere in the text): it stays a call.
    ``_reasoning`` says what the reasoning is; a tag inside a call's JSON is an argument, not a bound of it."""
    if not _THINK_TAG.search(content):
        return spans
    calls = [(start, end) for kind, start, end, _ in spans if kind == "call"]
    starts = [start for start, _ in calls]

    def in_call(p: int) -> bool:
        k = bisect_right(starts, p)
        return k > 0 and p < calls[k - 1][1]

    tags = [(m.start(), m.group(1) == "/") for m in _THINK_TAG.finditer(content) if not in_call(m.start())]
    # The generations: from the text's start, or a result's end, to the next result.
    bounds: list[tuple[int, int]] = []
    since: int | None = 0
    for kind, start, end, _ in spans:
        if kind in ("before", "result") and since is not None:
            bounds.append((since, start))
            since = None
        if kind in ("result", "after"):
            since = end
    if since is not None:
        bounds.append((since, len(content)))
    at = [p for p, _ in tags]
    thought = [
        span
        for lo, hi in bounds
        for span in _reasoning(content, lo, hi, tags[bisect_left(at, lo) : bisect_left(at, hi)])
    ]
    opens = [lo for lo, _ in thought]  # in order, apart

    def in_thought(p: int) -> bool:
        k = bisect_right(opens, p)
        return k > 0 and p < thought[k - 1][1]

    last_result = max((i for i, (kind, *_) in enumerate(spans) if kind in ("before", "result")), default=-1)
    out: list[tuple[str, int, int, Any]] = []
    for i, span in enumerate(spans):
        if span[0] == "call" and i > last_result and in_thought(span[1]):
            continue  # no result follows it: written in the reasoning, not run
        out.append(span)
    return out


def _reasoning(content: str, lo: int, hi: int, tags: list[tuple[int, bool]]) -> list[tuple[int, int]]:
    """The reasoning of the generation ``content[lo:hi]``, as spans, from its think tags (``(where, closing)``,
    those outside calls): a ``<think>`` to the ``</think>`` after it; what precedes a first ``</think>`` that no
    ``<think>`` opened (the template wrote that tag in the prompt); a ``<think>`` left open to the end, only
    where it opens the generation (a model reasons first: a ``<think>`` named in its prose, with no
    ``</think>`` after it, is a word, and the calls after it are made). A ``</think>`` that closes nothing is a
    word too. Model text is hostile: reading too much as reasoning would turn its calls into text."""
    head = _GENERATION_START.match(content, lo).end()  # type: ignore[union-attr]
    out: list[tuple[int, int]] = []
    opened: int | None = None
    first = True
    for p, closing in tags:
        if opened is None and not closing:
            opened = p
        elif opened is not None and closing:
            out.append((opened, p))
            opened = None
        elif closing and first:
            out.append((lo, p))
        first = False
    if opened is not None and opened == head:
        out.append((opened, hi))
    return out


def text_pieces(content: str | None) -> list[tuple[str, Any]]:
    """Assistant text with tool calls written in it, in the order written: ``("text", str)``, ``("call",
    ToolCall)`` for each ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Hermes / Qwen
    templates) and ``("result", str)`` for each ``<tool_response>...</tool_response>`` that answers a call (a
    multi-turn rollout decoded into one string: verl's ``output``). A block that is not a JSON object with a
    name stays in the text, so what the model wrote is never hidden; so do a call written in the reasoning that
    no result answers (``_drop_thought_calls``) and a response that answers no call (prose that names the
    tags). The role lines a rendered template leaves around tool output (``user`` before it, ``assistant``
    after it) are the turns' bounds, not text (``_text_spans`` says when)."""
    if not content or "<tool_call>" not in content:
        return [("text", content)] if content else []
    pieces: list[tuple[str, Any]] = []
    pos = 0
    for kind, start, end, value in [*_text_spans(content), ("end", len(content), len(content), None)]:
        text = content[pos:start].strip("\n")
        if text.strip(" \t\r\n"):  # spaces and newlines alone, between blocks or around them, are their layout
            pieces.append(("text", text))
        if kind in ("call", "result"):
            pieces.append((kind, value))
        pos = end
    return pieces


def text_tool_calls(content: str | None) -> tuple[str | None, list[ToolCall]]:
    """Tool calls written into the text (those of ``text_pieces``): the content without them, and the calls;
    every other character stays. The renderers use ``text_pieces``, which keeps each call in its place."""
    if not content or "<tool_call>" not in content:
        return content, []
    spans = [(start, end, value) for kind, start, end, value in _text_spans(content) if kind == "call"]
    if not spans:
        return content, []
    rest, pos = [], 0
    for start, end, _ in spans:
        rest.append(content[pos:start])
        pos = end
    rest.append(content[pos:])
    return "".join(rest).strip("\n"), [value for _, _, value in spans]


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
        if not calls and role.lower() in chat.MODEL_ROLES and content and "<tool_call>" in content:
            turns.extend(_split_turn(role, m.get("name"), content, m.get("reasoning")))
            continue
        turns.append(Turn(role, m.get("name"), content, m.get("reasoning"), calls))
    return _tool_responses(turns)


_THINK_CLOSE_ONLY = re.compile(r"(?:\s*</think\s*>)+\s*", re.IGNORECASE)


def _split_turn(role: str, speaker: str | None, content: str, reasoning: str | None) -> list[Turn]:
    """A model turn whose text holds tool calls (``text_pieces``), split where each call was written: the text
    before a call and the call, then the text after it as the next turn of the model; a ``<tool_response>`` is
    a tool result in its place. The reasoning goes with the first turn. Text without a call is one turn.
    A turn split off after a call, not after a result, ``continues`` the message (``Turn.continues``): the
    model wrote on after its call (``<tool_call>...</tool_call> I will wait.``), and the result that follows
    the message answers that call (before: the split-off turn closed the call, and left the result unnamed)."""
    pieces = text_pieces(content)
    if not any(kind == "call" for kind, _ in pieces):
        return [Turn(role, speaker, content, reasoning)]
    out: list[Turn] = []
    texts: list[str] = []
    calls: list[ToolCall] = []

    def close() -> None:
        nonlocal texts, calls
        if texts or calls:
            first = not any(t.role == role for t in out)
            # After a result (a multi-turn text, verl's ``output``) the model's next generation is a turn of its own.
            continues = bool(out) and out[-1].result is None
            out.append(Turn(role, speaker, "\n".join(texts), reasoning if first else None, calls, continues=continues))
        texts, calls = [], []

    for kind, value in pieces:
        if kind == "text":
            if calls and _THINK_CLOSE_ONLY.fullmatch(value):
                # The end of the reasoning the call was written in, before its result: the call's turn's own
                # (a turn of ``</think>`` alone split the reasoning and left the result after it unnamed).
                texts.append(value)
                continue
            if calls:
                close()
            texts.append(value)
        elif kind == "call":
            calls.append(value)
        else:
            close()
            out.append(Turn("tool", result=ToolResult(None, None, value, looks_like_error(value))))
    close()
    return out


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
    return from_messages(msgs), True


def _tool_responses(turns: list[Turn]) -> list[Turn]:
    """ChatML puts tool output in a ``tool`` turn, or (Qwen's templates) in a user turn that holds only
    ``<tool_response>`` blocks: results, one per block, for the calls before them (a user turn that follows no
    call is the user's, whatever it holds). The calls are those of the message before it, also where the model
    wrote on after them (``Turn.continues``)."""
    out: list[Turn] = []
    for t in turns:
        if t.role == "tool" and t.result is None:
            t = Turn("tool", result=ToolResult(None, None, t.content, looks_like_error(t.content)))
        elif (
            t.role.lower() == "user"
            and t.content
            and out
            and (out[-1].result is not None or _made_calls(out))
            and _ONLY_RESPONSES.fullmatch(t.content)
        ):
            for block in _TEXT_RESPONSE.finditer(t.content):
                text = block.group(1)
                out.append(Turn("tool", result=ToolResult(None, None, text, looks_like_error(text))))
            continue
        out.append(t)
    return out


def _made_calls(turns: list[Turn]) -> bool:
    """Whether the message that ``turns`` end with made tool calls: its last turn, or one it ``continues``."""
    for t in reversed(turns):
        if t.tool_calls:
            return True
        if not t.continues:
            return False
    return False


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
    if any(_responses_item(x.get("type")) for x in items) or all(x.get("type") == "message" for x in items):
        return from_responses
    if all("role" in x or chat.is_sharegpt(x) or chat.is_gemini(x) for x in items):
        return from_openai_chat  # also reads canonical messages (flat {id, name, arguments} calls), ShareGPT, Gemini
    return None


def _responses_item(kind: Any) -> bool:
    """A Responses item's type other than ``message``: those of ``RESPONSES_TYPES``, and the built-in tools'
    calls and outputs (``mcp_call``, ``web_search_call``, ``computer_call_output``...)."""
    return isinstance(kind, str) and (
        (kind in RESPONSES_TYPES and kind != "message") or kind.endswith(("_call", "_call_output"))
    )


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
