"""Conversation normalisation: foreign chat shapes to runlog's canonical message list.

Every reader that has conversations (verifiers, NeMo Gym, TRL, verl) produces the same list of dicts with
exactly the keys of ``schema.PL_MESSAGES``: ``role, name, content, reasoning, tool_calls, tool_call_id``;
``tool_calls`` is a list of ``{id, name, arguments}`` with ``arguments`` a JSON string. Missing values are
None. Model text is hostile: these functions parse JSON and nothing else, and they never raise on odd
shapes: an item they do not understand becomes a message whose content is the item as compact JSON, so
nothing is silently dropped.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

MESSAGE_KEYS = ("role", "name", "content", "reasoning", "tool_calls", "tool_call_id")


def compact_json(obj: Any) -> str:
    """JSON without spaces; values JSON cannot hold are written with ``str`` rather than failing."""
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
    except (ValueError, TypeError, RecursionError):
        return str(obj)


def message(
    role: str,
    content: str | None = None,
    *,
    name: str | None = None,
    reasoning: str | None = None,
    tool_calls: list[dict[str, str | None]] | None = None,
    tool_call_id: str | None = None,
) -> dict[str, Any]:
    """One canonical message (all six keys, always in the same order)."""
    return {
        "role": role,
        "name": name,
        "content": content,
        "reasoning": reasoning,
        "tool_calls": tool_calls,
        "tool_call_id": tool_call_id,
    }


def _opt_str(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float, bool)):
        return str(v)
    return compact_json(v)


def content_text(content: Any) -> str | None:
    """Message content as text: strings as they are, content-part lists joined, anything else as JSON.

    Non-text parts (images, audio, files) become a short ``[type]`` marker: their payload (often base64)
    is not conversation text. For a caller with no place for reasoning, the text of reasoning parts
    (``content_and_reasoning``) is kept in line, where it was, rather than lost; the chat readers here put it
    in the message's ``reasoning``.
    """
    text, _ = _parts(content, keep_reasoning_inline=True)
    return text


def content_and_reasoning(content: Any) -> tuple[str | None, str | None]:
    """Message content as ``(text, reasoning)``: ``content_text``, except that the text of reasoning parts
    (Anthropic's and Magistral's ``{"type": "thinking", "thinking": ...}``, ``{"type": "reasoning", ...}`` as
    inspect_ai writes it, ``reasoning_text``) is the reasoning, one part per line. A redacted part (encrypted:
    ``redacted_thinking``, a redacted ``reasoning`` without a summary) has no text to give: a ``[type]`` marker
    in the reasoning says it was there (not in the text, which format specs read)."""
    return _parts(content, keep_reasoning_inline=False)


# Content parts whose text is the model's reasoning, and the keys that may hold it (first found).
_REASONING_PARTS = frozenset({"thinking", "reasoning", "reasoning_text"})
# Where a Responses ``reasoning`` item holds both its summary and its raw reasoning, a mark line before each
# (``reasoning_text``), so that a reader tells the summary (another model's words) from the reasoning itself.
SUMMARY_MARK, RAW_REASONING_MARK = "[summary_text]", "[reasoning_text]"
# The marks runlog leaves in a reasoning, one a line: a redacted (encrypted) reasoning part's, and the two above.
# runlog's words, not the model's (``texts.reasoning_written`` leaves them out of the reasoning it counts or puts
# back in think tags).
REDACTED_MARKS = (
    "[redacted_thinking]",
    *sorted(f"[{p} (redacted)]" for p in _REASONING_PARTS),
    SUMMARY_MARK,
    RAW_REASONING_MARK,
)
_REASONING_KEYS = ("thinking", "reasoning", "text", "summary", "content")


def _reasoning_part(part: dict[str, Any]) -> str | None:
    """A reasoning part's text (a string, or a list of text parts: Magistral's ``thinking`` chunks), or None
    when it has none (redacted)."""
    if part.get("redacted") is True:  # inspect_ai: the reasoning is encrypted; its summary, if any, is readable
        keys: tuple[str, ...] = ("summary",)
    else:
        keys = _REASONING_KEYS
    for key in keys:
        value = part.get(key)
        if isinstance(value, (list, tuple, dict)):
            value = content_text(value)
        if isinstance(value, str) and value:
            return value
    return None


def _parts(content: Any, *, keep_reasoning_inline: bool) -> tuple[str | None, str | None]:
    if content is None or isinstance(content, str):
        return content, None
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, (list, tuple)):
        return _opt_str(content), None
    # A Responses message's ``output_text`` parts are one text cut in pieces: joined as they are (the OpenAI
    # SDK's ``output_text`` joins them with ""; a newline would add a character the model never wrote).
    # Other parts (chat ``text`` parts, markers) are separate: a newline between them, as vLLM joins them.
    out = ""
    previous = None
    reasoning: list[str] = []
    for part in content:
        piece, kind = None, "text"
        if isinstance(part, str):
            piece = part
        elif isinstance(part, dict):
            ptype = part.get("type")
            text = part.get("text")
            thought = _reasoning_part(part) if ptype in _REASONING_PARTS else None
            if thought is not None:
                if not keep_reasoning_inline:
                    reasoning.append(thought)
                    continue
                piece = thought
            elif ptype in _REASONING_PARTS or ptype == "redacted_thinking":
                if ptype != "redacted_thinking" and part.get("redacted") is not True:
                    continue  # an empty thought: nothing to show
                marker = REDACTED_MARKS[0] if ptype == "redacted_thinking" else f"[{ptype} (redacted)]"
                if not keep_reasoning_inline:
                    # Said where the reasoning is, not in the text: a marker at the head of the answer was read by
                    # the format specs (an answer-only spec failed a message whose own text passes it).
                    reasoning.append(marker)
                    continue
                piece, kind = marker, "marker"
            elif is_tool_part(ptype):
                # A tool call or result where no reader takes it as one (``_anthropic_parts``): kept whole, as
                # JSON, since its name, id and input are conversation, not a payload a marker may stand for.
                piece, kind = compact_json(part), "marker"
            elif isinstance(text, str):
                piece, kind = text, ("output_text" if ptype == "output_text" else "text")
            elif isinstance(part.get("refusal"), str):
                piece = part["refusal"]
            elif _media(part):
                piece, kind = _media_marker(part), "marker"
            else:
                # A part of a kind not read here (Anthropic's ``search_result`` and text ``document``, inspect_ai's
                # ``data``): its fields are conversation, kept as compact JSON rather than a bare ``[type]``.
                piece, kind = compact_json(part), "marker"
        elif part is not None:
            piece, kind = _opt_str(part) or "", "marker"
        if piece is None:
            continue
        if previous is not None and not (kind == previous == "output_text"):
            out += "\n"
        out += piece
        previous = kind
    # Content made only of reasoning parts has no text: None, as a message without content.
    text = out if previous is not None or not reasoning else None
    return text, ("\n".join(reasoning) if reasoning else None)


# Parts whose payload is media (base64, a data URL, a file): a ``[type]`` marker stands for them, as the payload is
# not conversation text. Any other part without text is kept as compact JSON.
_MEDIA_PARTS = frozenset(
    {"image", "image_url", "input_image", "audio", "input_audio", "output_audio", "video", "file", "input_file"}
    | {"inline_data", "computer_screenshot"}
)


def _media(part: dict[str, Any]) -> bool:
    """Whether a content part is media: a known media kind, a base64 ``source`` (Anthropic's image and PDF
    ``document``), or a value that is a base64 data URL (inspect_ai's ``document``)."""
    if part.get("type") in _MEDIA_PARTS:
        return True
    source = part.get("source")
    if isinstance(source, dict) and source.get("type") == "base64":
        return True
    return any(isinstance(v, str) and v.startswith("data:") and ";base64," in v[:200] for v in part.values())


def _media_marker(part: dict[str, Any]) -> str:
    """``[type]``, with the media type where the part gives one beside it (``[inline_data image/png]``)."""
    ptype = part.get("type")
    label = ptype if isinstance(ptype, str) and ptype else "media"
    mime = next((part[k] for k in ("mime_type", "mimeType", "media_type") if isinstance(part.get(k), str)), None)
    return f"[{label} {mime}]" if mime else f"[{label}]"


_NONFINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _json_safe(v: Any, depth: int = 0) -> Any:
    """``v`` as values strict JSON holds: numpy and JAX scalars as numbers and arrays as lists (``tolist``), NaN
    and infinities as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (as the writer's ``config``), tuples
    as lists; anything else left for ``default=str``."""
    if depth > 100:
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else "NaN" if v != v else _NONFINITE[v]
    if v is None or isinstance(v, (str, int)):
        return v
    if isinstance(v, dict):
        return {k: _json_safe(x, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x, depth + 1) for x in v]
    if hasattr(v, "tolist") and hasattr(v, "dtype"):  # numpy (and JAX) scalars and arrays
        try:
            return _json_safe(v.tolist(), depth + 1)
        except Exception:  # noqa: BLE001 - written with ``str`` as before
            return v
    return v


def _arguments(v: Any) -> str | None:
    """Tool-call arguments as a JSON string (a dict is encoded; a string is kept as it was written). Strict
    JSON: numpy and JAX numbers and arrays given in a dict are written as JSON numbers and lists, and NaN and
    infinities as ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (bare ``NaN`` is not JSON)."""
    if v is None or isinstance(v, str):
        return v
    try:
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return compact_json(_json_safe(v))


def tool_call(tc: Any) -> dict[str, str | None]:
    """One tool call: an OpenAI dict ``{id, type, function: {name, arguments}}`` or its JSON encoding; an
    OpenAI custom tool's call ``{id, type: "custom", custom: {name, input}}`` (its input, free text, is kept as
    the arguments as written); flat ``{id, name, arguments}`` / ``{call_id, name, input}``. A call in a shape
    none of these reads (no name and no arguments found, but other keys) keeps the whole item as compact JSON
    in its arguments: nothing is dropped."""
    if isinstance(tc, str):
        try:
            parsed = json.loads(tc)
        except (ValueError, RecursionError):
            # Cut short (a log line truncated inside the arguments): the text is kept as the arguments, and the
            # call's id and name are read from it where they came before the cut, so that the tool's result still
            # answers its call.
            closed = _closed(tc)
            if closed is None:
                return {"id": None, "name": None, "arguments": tc}
            call = tool_call(closed)
            return {"id": _clean(call["id"]), "name": _clean(call["name"]), "arguments": tc}
        tc = parsed
    if not isinstance(tc, dict):
        return {"id": None, "name": None, "arguments": compact_json(tc)}
    fn = tc.get("function")
    if not isinstance(fn, dict):
        fn = tc.get("custom")  # OpenAI custom tools: {type: "custom", custom: {name, input}}
    if not isinstance(fn, dict):
        fn = tc  # flat shapes: {id, name, arguments} or Responses {call_id, name, arguments}
    # A Responses ``function_call`` item has both: ``id`` is the item's (fc_...), ``call_id`` the one its
    # ``function_call_output`` answers; chat tool calls have ``id`` only.
    call_id = _opt_str(tc.get("call_id") if tc.get("call_id") is not None else tc.get("id"))
    # The call's own fields, then those written beside ``function`` (``{function: {name}, arguments}``): a
    # field the nested object lacks is read where it was written rather than dropped.
    outer = {} if fn is tc else {k: v for k, v in tc.items() if k not in ("function", "custom")}
    name = _opt_str(fn.get("name"))
    named_by = "name"
    if name is None and fn is not tc:
        name = _opt_str(outer.get("name"))
    elif name is None and isinstance(tc.get("function"), str) and tc["function"]:
        # inspect_ai's ``ToolCall`` names the function in ``function`` itself: {id, function: "search", arguments}
        name, named_by = tc["function"], "function"
    given = next(((s, k) for s in (fn, outer) for k in _ARGUMENT_KEYS if s.get(k) is not None), None)
    arguments = _arguments(given[0][given[1]]) if given is not None else None
    if arguments is None:
        # Arguments under a key not read here (a shape of another API): never dropped. One such key whose name
        # says it holds the arguments (``kwargs``, ``tool_input``, ``function_args``, ``params``: ``_ARGUMENTS_NAMED``)
        # is the arguments as written, checked as they are (cut-short JSON text fails, as under ``arguments``);
        # other keys are named fields, kept as one JSON object with their names (``{"name": "search", "query":
        # "cats"}``; ``{"name": "sum", "numbers": [1, 2]}``; ``{"code": "[x for x in y]"}``). A call in which
        # nothing was read at all is kept whole.
        rest = {k: v for k, v in {**outer, **fn}.items() if k not in _CALL_BOOKKEEPING and k not in ("name", named_by)}
        held = {k: v for k, v in rest.items() if _unread(v)}
        if name is None and _unread(tc):
            arguments = compact_json(tc)
        elif len(held) == 1 and _ARGUMENTS_NAMED.search(next(iter(held))):
            arguments = _arguments(next(iter(held.values())))
        elif held:
            arguments = compact_json(rest)
    return {"id": call_id, "name": name, "arguments": arguments}


# A key not read as arguments whose name says it holds them (``kwargs``, ``tool_input``, ``function_args``, ``params``).
_ARGUMENTS_NAMED = re.compile(r"(?i)arg|input|param")
# Where a tool call's arguments are, first found: OpenAI chat and Responses, custom tools and Anthropic's
# ``input``, Llama's ``parameters``, Gemini's ``args``.
_ARGUMENT_KEYS = ("arguments", "input", "parameters", "args")


# Keys of a tool call that say nothing of what was called (its id, its kind, its place in a stream).
_CALL_BOOKKEEPING = frozenset({"id", "call_id", "type", "index"})


def _unread(tc: Any, depth: int = 0) -> bool:
    """Whether a tool call in which no name and no arguments were found holds anything else (a shape not
    known): then it is kept whole rather than shown as an empty, unnamed call. Nulls, empty strings, lists
    and objects, and the bookkeeping keys hold nothing."""
    if tc is None or tc == "" or depth > 50:
        return False
    if isinstance(tc, dict):
        return any(_unread(v, depth + 1) for k, v in tc.items() if k not in _CALL_BOOKKEEPING)
    if isinstance(tc, (list, tuple)):
        return any(_unread(v, depth + 1) for v in tc)
    return True


def _closed(text: str) -> dict[str, Any] | None:
    """A JSON object cut short, closed where it was cut (the open string ended, the open objects and lists
    closed) and parsed; cut inside a key or after a colon, closed at the last complete member instead. None
    when neither parses."""
    stack: list[str] = []
    in_string = escaped = False
    last_member: tuple[int, str] | None = None  # where the last complete member ends, and the closers there
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
        elif ch == ",":
            last_member = (i, "".join(reversed(stack)))
    tails = [(text[:-1] if escaped else text) + ('"' if in_string else "") + "".join(reversed(stack))]
    if last_member is not None:
        tails.append(text[: last_member[0]] + last_member[1])
    for tail in tails:
        try:
            parsed = json.loads(tail)
        except (ValueError, RecursionError):
            continue
        if isinstance(parsed, dict):
            return parsed
    return None


def _clean(value: str | None) -> str | None:
    """``value`` unless a cut left half of a surrogate pair in it (it cannot be written as UTF-8)."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _tool_calls(v: Any) -> list[dict[str, str | None]] | None:
    if v is None:
        return None
    if isinstance(v, str):  # a whole list JSON-encoded as one string
        try:
            v = json.loads(v)
        except (ValueError, RecursionError):
            return [tool_call(v)]
    if isinstance(v, dict):
        v = [v]
    if not isinstance(v, (list, tuple)):
        return [tool_call(v)]
    calls = [tool_call(tc) for tc in v if tc is not None]
    return calls or None


# Who speaks in a chat, by the message's role (lower-cased): the model's own turns, and what the model is given (the
# prompt's messages and tool output). One list for every reader of turns: render-trajectory, the W&B tables and
# the text metrics name the same turns the model's. Any other role is a speaker's name (``solver``, ``judge``).
MODEL_ROLES = frozenset({"assistant", "model", "agent"})
INPUT_ROLES = frozenset({"system", "developer", "user", "human", "tool", "function", "ipython"})


def _role(v: Any, default: str = "unknown") -> str:
    return v if isinstance(v, str) and v else default


# ShareGPT's speakers (``{"from": ..., "value": ...}``, as LLaMA-Factory, FastChat and Axolotl write them) and the
# chat role each is; any other speaker (``judge``) is kept as its own role.
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "chatgpt": "assistant",
    "system": "system",
    "observation": "tool",
    "tool": "tool",
    "function_response": "tool",
    "function_call": "assistant",
}


def is_sharegpt(m: Any) -> bool:
    """A ShareGPT turn: ``from`` and ``value`` keys and no chat ``role``."""
    return isinstance(m, dict) and "role" not in m and "from" in m and "value" in m


def _from_sharegpt(m: dict[str, Any]) -> dict[str, Any]:
    """A ShareGPT turn as the OpenAI chat message it stands for: ``gpt`` -> assistant, ``human`` -> user,
    ``observation`` -> tool; a ``function_call`` turn (its value the call as JSON) -> an assistant tool call."""
    speaker = m.get("from")
    value = m.get("value")
    role = _SHAREGPT_ROLES.get(speaker.lower(), speaker) if isinstance(speaker, str) else None
    out = {k: v for k, v in m.items() if k not in ("from", "value")}
    out["role"] = role
    if speaker == "function_call":
        out["content"] = None
        out["tool_calls"] = [value]
    else:
        out["content"] = value
    return out


def messages_in_text(text: str) -> list[dict[str, Any]] | None:
    """The message list a text holds as JSON (``json.dumps(messages)``: a non-empty list of objects that each
    have a ``role``), or None when it holds anything else (a prompt, other JSON). Read as one user message, such
    a text hid every assistant turn and tool call it held. Only text that starts with ``[`` is parsed."""
    if not text.lstrip().startswith("["):
        return None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(parsed, list) and parsed and all(isinstance(m, dict) and "role" in m for m in parsed):
        return parsed
    return None


def from_openai_chat(messages: Any) -> list[dict[str, Any]]:
    """OpenAI chat messages to canonical messages.

    ``tool_calls`` entries may be dicts or JSON-encoded strings (verifiers writes the latter); ``content``
    may be a string, None or a list of content parts; a ``refusal`` (OpenAI's field for a refused answer) is
    content: the content when there is none, else after it on a line of its own (as a refusal content part
    is); ``reasoning_content`` / ``reasoning`` become ``reasoning`` (both, one per line, when a message has two
    different ones; vLLM sends the same text in both); the legacy ``function_call`` field becomes one tool
    call. A ``tool`` message names its call with ``tool_call_id`` (or ``call_id``, as Responses items do);
    one without either (verifiers writes none) is paired with the next unanswered call of the preceding
    assistant message (the next call of the function the result names, when it names one), in order, and its
    ``name`` is filled from the call it answers. ShareGPT turns (``{"from": "gpt", "value": ...}``), Gemini
    ``Content`` dicts (``{role, parts}``: ``_from_gemini``) and Anthropic messages with tool-call and result parts
    (client, server and MCP tools: ``_anthropic_parts``) are read as the chat messages they stand for. A message
    in which nothing is read (no content, reasoning or call under the keys above) keeps its other keys as compact
    JSON in its content: an empty turn would hide what it said. Text is one user message, whatever it holds: a
    reader's prompt that quotes a chat as JSON for a judge to read is that prompt, not the chat (the writer reads a
    ``messages`` cell of JSON text as its list itself: ``messages_in_text``).
    """
    if messages is None:
        return []
    if isinstance(messages, str):
        return [message("user", messages)]
    if isinstance(messages, dict):
        messages = [messages]
    if not isinstance(messages, (list, tuple)):
        return [message("unknown", compact_json(messages))]
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # call id -> function name
    unanswered: list[dict[str, str | None]] = []  # calls of the last assistant message not yet answered
    for m, uses in _expanded(messages):
        if not isinstance(m, dict):
            out.append(message("unknown", m if isinstance(m, str) else compact_json(m)))
            continue
        reasoning = _reasoning_field(m.get("reasoning_content"))
        other = _reasoning_field(m.get("reasoning"))
        if reasoning is None or (other and other != reasoning):
            reasoning = other if not reasoning else f"{reasoning}\n{other}"
        content, in_parts = content_and_reasoning(m.get("content"))  # thinking parts are reasoning too
        reasoning = _join_new(reasoning, in_parts)
        refusal = m.get("refusal")
        if isinstance(refusal, str) and refusal:
            content = refusal if not content else f"{content}\n{refusal}"
        calls = _tool_calls(m.get("tool_calls"))
        legacy = m.get("function_call")
        if legacy is not None:
            calls = (calls or []) + [tool_call(legacy)]
        if uses:
            calls = (calls or []) + [tool_call(u) for u in uses]
        role = _role(m.get("role"))
        name = _opt_str(m.get("name"))
        call_id = _opt_str(m.get("tool_call_id"))
        if call_id is None and role == "tool":
            call_id = _opt_str(m.get("call_id"))  # the Responses name for it, met in chat-shaped tool messages
        if calls:
            unanswered = list(calls)
            names.update({c["id"]: c["name"] for c in calls if c["id"] is not None and c["name"] is not None})
        elif role == "tool":
            answered = next((c for c in unanswered if c["id"] == call_id), None) if call_id is not None else None
            if call_id is None and unanswered:
                # No id (verifiers, ShareGPT, Gemini): the next call of the function the result names, else the
                # next call in order.
                answered = next((c for c in unanswered if name is not None and c["name"] == name), unanswered[0])
                call_id = answered["id"]
            if answered is not None:
                unanswered.remove(answered)
                if name is None:
                    name = answered["name"]
            if name is None and call_id is not None:
                name = names.get(call_id)
        else:
            unanswered = []
        if isinstance(m, dict) and "content" not in m and not calls and reasoning is None:
            # Nothing read, and no content at all (not an empty one): the message says what it says under keys not
            # read here (a shape of another API), kept as compact JSON rather than dropped (an empty turn was shown
            # and written). A message whose content is empty or null said nothing: its metadata (finish_reason,
            # logprobs, a model name, audio) is no text, and metrics would read it as the model's.
            extra = {k: v for k, v in m.items() if k not in _READ_KEYS and _unread(v)}
            if extra:
                content = compact_json(extra)
        out.append(
            message(
                role,
                content,
                name=name,
                reasoning=reasoning,
                tool_calls=calls,
                tool_call_id=call_id,
            )
        )
    return out


def _expanded(messages: Any) -> Iterator[tuple[Any, list[Any]]]:
    """The messages as chat messages, each with the Anthropic ``tool_use`` parts that are its tool calls
    (``_anthropic_parts``); ShareGPT turns as the chat messages they stand for."""
    for m in messages:
        if is_sharegpt(m):
            m = _from_sharegpt(m)
        if is_gemini(m):
            m = _from_gemini(m)
        if isinstance(m, dict):
            yield from _anthropic_parts(m)
        else:
            yield m, []


def is_gemini(m: Any) -> bool:
    """A Gemini (google-genai) ``Content``: ``{role, parts: [...]}`` and no ``content``."""
    return isinstance(m, dict) and m.get("content") is None and isinstance(m.get("parts"), (list, tuple))


def _from_gemini(m: dict[str, Any]) -> dict[str, Any]:
    """A Gemini ``Content`` as the message it stands for, its parts read as Anthropic-style content parts (which
    ``_anthropic_parts`` then makes calls and results of): ``text`` is text (reasoning when ``thought`` is true),
    ``functionCall`` ``{id, name, args}`` a tool call, ``functionResponse`` ``{id, name, response}`` a ``tool``
    message naming its function (paired with the call of that name), ``inlineData`` a ``[inline_data TYPE]``
    marker; any other field of a part (``fileData``, ``executableCode``, ``codeExecutionResult``) is kept as
    compact JSON. Both spellings are read: the REST API's camelCase and the Python SDK's snake_case (whose
    ``model_dump`` writes every field, most of them null). ``thoughtSignature`` is an opaque token, not text."""
    out = {k: v for k, v in m.items() if k != "parts"}
    out["role"] = m.get("role") or "user"  # Gemini: a content without a role is the user's
    out["content"] = [q for p in m["parts"] for q in _gemini_part(p)]
    return out


_GEMINI_SKIPPED = frozenset({"thought", "thoughtSignature", "thought_signature"})


def _gemini_part(p: Any) -> list[Any]:
    if not isinstance(p, dict):
        return [p]
    get = lambda *keys: next((p[k] for k in keys if p.get(k) is not None), None)  # noqa: E731
    out: list[Any] = []
    read = set(_GEMINI_SKIPPED)
    text = get("text")
    if isinstance(text, str):
        out.append(
            {"type": "thinking", "thinking": text} if p.get("thought") is True else {"type": "text", "text": text}
        )
        read.add("text")
    call = get("functionCall", "function_call")
    if isinstance(call, dict):
        out.append({**call, "type": "tool_use"})
        read |= {"functionCall", "function_call"}
    response = get("functionResponse", "function_response")
    if isinstance(response, dict):
        rest = {k: v for k, v in response.items() if k not in ("id", "name") and v is not None}
        value = rest["response"] if list(rest) == ["response"] else rest
        out.append(
            {
                "type": "tool_result",
                "tool_use_id": response.get("id"),
                "name": response.get("name"),
                "content": value if isinstance(value, str) else compact_json(value),
            }
        )
        read |= {"functionResponse", "function_response"}
    data = get("inlineData", "inline_data")
    if isinstance(data, dict):
        mime = data.get("mimeType", data.get("mime_type"))
        out.append({"type": "inline_data", "mime_type": mime if isinstance(mime, str) else None})
        read |= {"inlineData", "inline_data"}
    rest = {k: v for k, v in p.items() if k not in read and _unread(v)}
    if rest:
        out.append(rest)  # kept as compact JSON (``_parts``)
    return out


def _part_type(part: Any) -> Any:
    return part.get("type") if isinstance(part, dict) else None


def _anthropic_parts(m: dict[str, Any]) -> list[tuple[dict[str, Any], list[Any]]]:
    """An Anthropic Messages API message as the chat messages it stands for. ``tool_use`` parts (``{id, name,
    input}``) are the message's tool calls and its other parts its content; each ``tool_result`` part
    (``{tool_use_id, content, is_error}``) is a ``tool`` message of its own, where it was written, and the
    parts around it stay messages of the role they came in (the text after a user's results is a user
    message after them). The message's other fields go with its first part that is not a result; when every
    part is one, its reasoning, refusal or calls are a message of their own after the results (a speaker's
    ``name`` alone is not: results are the tools' words, not the speaker's). A message without such parts is
    returned as it is."""
    content = m.get("content")
    parts = [content] if isinstance(content, dict) else content
    if not isinstance(parts, (list, tuple)) or not any(is_tool_part(_part_type(p)) for p in parts):
        return [(m, [])]
    out: list[tuple[dict[str, Any], list[Any]]] = []
    fields_given = False
    seg: list[Any] = []
    uses: list[Any] = []

    def close() -> None:
        nonlocal fields_given, seg, uses
        if not seg and not uses:
            return
        head = {"role": m.get("role"), "name": m.get("name")} if fields_given else m
        out.append(({**head, "content": seg or None}, uses))
        fields_given, seg, uses = True, [], []

    for part in parts:
        kind = _part_type(part)
        if kind in _CALL_PARTS:
            uses.append(part)
        elif is_tool_part(kind):
            close()
            # A tool message holding result parts keeps its own id (where the part has none) and name.
            result = {**(m if m.get("role") == "tool" else {}), "role": "tool", "content": _result(part)}
            if part.get("tool_use_id") is not None:
                result["tool_call_id"] = part["tool_use_id"]
            if isinstance(part.get("name"), str):  # Gemini's ``functionResponse`` names the function it answers
                result["name"] = part["name"]
            out.append((result, []))
        else:
            seg.append(part)
    close()
    if not fields_given and _unread([m.get(k) for k in _MESSAGE_FIELDS]):
        out.append(({**m, "content": None}, []))
    return out


# Content parts that are tool calls: Anthropic's client tools (``tool_use``), server tools (``server_tool_use``: web
# search, code execution, web fetch) and MCP connector (``mcp_tool_use``), all ``{id, name, input}``. Their results
# are ``tool_result``, ``mcp_tool_result`` and the server tools' ``*_tool_result`` (``web_search_tool_result``,
# ``code_execution_tool_result``...), all ``{tool_use_id, content}``.
_CALL_PARTS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})


def is_tool_part(kind: Any) -> bool:
    """Whether a content part's ``type`` is a tool call or a tool result (``_CALL_PARTS`` and their results)."""
    return isinstance(kind, str) and (kind in _CALL_PARTS or kind == "tool_result" or kind.endswith("_tool_result"))


# The keys of a chat message read here, and bookkeeping that says nothing of what was said (its id, its kind, its
# place in a stream, its status).
_READ_KEYS = frozenset(
    {"role", "name", "content", "reasoning_content", "reasoning", "refusal", "tool_calls", "function_call"}
    | {"tool_call_id", "call_id", "id", "type", "index", "status"}
)
# What a message says besides its content and its speaker's name (read by ``from_openai_chat``).
_MESSAGE_FIELDS = ("reasoning_content", "reasoning", "refusal", "tool_calls", "function_call")


def _result(part: dict[str, Any]) -> str | None:
    """A ``tool_result`` part's text (its ``content`` a string or a list of text and image parts); a result
    marked ``is_error`` says so on a first line of its own, as the canonical message has no field for it
    (``error (is_error)``, read as an error where results are shown)."""
    content = part.get("content")
    text = content_text(content)
    if part.get("is_error") is True:
        head = "error (is_error)"
    elif isinstance(content, dict) and str(content.get("type")).endswith("_error"):
        # A server tool's failure (``{"type": "web_search_tool_result_error", "error_code": ...}``): said as one.
        head = f"error ({content['type']})"
    else:
        return text
    return head if not text else f"{head}\n{text}"


def _reasoning_field(value: Any) -> str | None:
    """A message's ``reasoning`` / ``reasoning_content`` as text: reasoning parts and text parts alike are
    its text (the field holds nothing else)."""
    if value is None or isinstance(value, str):
        return value
    text, thought = content_and_reasoning(value)
    return _join_new(thought, text)


def _join_new(first: str | None, second: str | None) -> str | None:
    """``first`` and ``second`` one per line, or only one of them when the other is empty or the same text
    (vLLM sends the same reasoning in ``reasoning_content`` and ``reasoning``)."""
    if not second or second == first:
        return first if first or not second else second
    return second if not first else f"{first}\n{second}"


def _item_texts(value: Any) -> str:
    """The text parts of a ``reasoning`` item's ``summary`` or ``content`` (a list of parts or a string), one a
    line."""
    parts: list[str] = []
    if isinstance(value, list):
        for p in value:
            if isinstance(p, dict) and isinstance(p.get("text"), str):
                parts.append(p["text"])
            elif isinstance(p, str):
                parts.append(p)
    elif isinstance(value, str):
        parts.append(value)
    return "\n".join(t for t in parts if t)


def reasoning_text(item: dict[str, Any]) -> str:
    """Text of a Responses ``reasoning`` item: its summary parts, its raw reasoning (``content``: the
    ``reasoning_text`` parts vLLM, gpt-oss and OpenAI's reasoning models may give beside the summary), or both.
    Both are kept, the summary first, each after a mark line of its own (``SUMMARY_MARK``, ``RAW_REASONING_MARK``):
    the summary is a shortened retelling, the content what the model wrote, and a reader must tell which is which
    (a first version kept the summary alone, and the raw reasoning was lost without a word). The same text in
    both is given once, unmarked."""
    summary, raw = _item_texts(item.get("summary")), _item_texts(item.get("content"))
    if summary and raw and summary != raw:
        return f"{SUMMARY_MARK}\n{summary}\n{RAW_REASONING_MARK}\n{raw}"
    return summary or raw


def from_responses_items(items: Any) -> list[dict[str, Any]]:
    """OpenAI Responses input/output items to canonical messages.

    ``reasoning`` summaries attach to the next assistant message (or stand alone as an assistant message
    with empty content when none follows); consecutive ``function_call`` items form one assistant message's
    ``tool_calls``; a ``function_call_output`` becomes a ``tool`` message whose ``name`` comes from the
    function call with the same ``call_id``. The built-in tools' items (``mcp_call``, ``web_search_call``,
    ``file_search_call``, ``code_interpreter_call``, ``computer_call``...: any ``*_call``) are tool calls too,
    named by their ``name`` or their kind (``web_search``), their ``arguments`` or else their other fields as
    the arguments; the output such an item carries (``output``, ``outputs``, ``results``, ``error``) is a ``tool``
    message after it, and a ``*_call_output`` item is one as ``function_call_output`` is. Reasoning items
    without any text (encrypted or empty) carry nothing readable and are skipped.
    """
    if items is None:
        return []
    if isinstance(items, str):
        return [message("user", items)]
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, (list, tuple)):
        return [message("unknown", compact_json(items))]

    call_names: dict[str, str] = {}
    for it in items:
        if isinstance(it, dict) and _is_call_item(it.get("type")):
            # Registered by the id the call is written with (its ``call_id``, else its ``id``), which its output
            # names as its ``call_id``.
            cid, name = _opt_str(it.get("call_id") if it.get("call_id") is not None else it.get("id")), _item_name(it)
            if cid is not None and name is not None:
                call_names[cid] = name

    out: list[dict[str, Any]] = []
    pending: list[str] = []  # reasoning text waiting for the next assistant message
    calls_msg: dict[str, Any] | None = None  # the assistant message collecting consecutive function calls

    def take_reasoning() -> str | None:
        text = "\n".join(pending) if pending else None
        pending.clear()
        return text

    def flush_reasoning() -> None:
        if pending:
            out.append(message("assistant", "", reasoning=take_reasoning()))

    for it in items:
        if not isinstance(it, dict):
            flush_reasoning()
            calls_msg = None
            out.append(message("unknown", it if isinstance(it, str) else compact_json(it)))
            continue
        kind = it.get("type")
        if kind is None and "role" in it:
            kind = "message"  # EasyInputMessage: {role, content} without a type
        if kind == "message":
            role = _role(it.get("role"))
            calls_msg = None
            if role == "assistant":
                text, thought = content_and_reasoning(it.get("content"))
                out.append(message(role, text, reasoning=_join_new(take_reasoning(), thought)))
            else:
                flush_reasoning()
                out.append(message(role, content_text(it.get("content")), name=_opt_str(it.get("name"))))
        elif kind == "reasoning":
            text = reasoning_text(it)
            if text:
                pending.append(text)
                calls_msg = None
        elif kind in ("function_call", "custom_tool_call"):
            if calls_msg is None:
                calls_msg = message("assistant", None, reasoning=take_reasoning(), tool_calls=[])
                out.append(calls_msg)
            calls_msg["tool_calls"].append(
                {
                    "id": _opt_str(it.get("call_id") if it.get("call_id") is not None else it.get("id")),
                    "name": _opt_str(it.get("name")),
                    "arguments": _arguments(it.get("arguments", it.get("input"))),
                }
            )
        elif _is_call_item(kind):
            # A built-in tool's call (``mcp_call``, ``web_search_call``, ``code_interpreter_call``...): a tool call
            # named by the item (or its kind), and the output it carries, if any, its result.
            if calls_msg is None:
                calls_msg = message("assistant", None, reasoning=take_reasoning(), tool_calls=[])
                out.append(calls_msg)
            cid = _opt_str(it.get("call_id") if it.get("call_id") is not None else it.get("id"))
            arguments = it.get("arguments")
            if arguments is None:
                arguments = {k: v for k, v in it.items() if k not in _ITEM_BOOKKEEPING and k not in _ITEM_OUTPUTS}
            calls_msg["tool_calls"].append({"id": cid, "name": _item_name(it), "arguments": _arguments(arguments)})
            result = _item_output(it)
            if result is not None:
                calls_msg = None
                out.append(message("tool", result, name=_item_name(it), tool_call_id=cid))
        elif kind in ("function_call_output", "custom_tool_call_output") or (
            isinstance(kind, str) and kind.endswith("_call_output")
        ):
            flush_reasoning()
            calls_msg = None
            cid = _opt_str(it.get("call_id"))
            output = it.get("output")
            result = output if isinstance(output, str) else content_text(output)
            out.append(message("tool", result, name=call_names.get(cid or ""), tool_call_id=cid))
        else:
            flush_reasoning()
            calls_msg = None
            out.append(message(_role(kind), compact_json(it)))
    flush_reasoning()
    return out


# Keys of a built-in tool's call item that say nothing of what was called, and those that hold what it returned.
_ITEM_BOOKKEEPING = frozenset({"id", "call_id", "type", "status", "name"})
_ITEM_OUTPUTS = ("output", "outputs", "results", "result", "error")


def _is_call_item(kind: Any) -> bool:
    """A Responses item that is a tool call: ``function_call``, ``custom_tool_call`` and the built-in tools'
    ``*_call`` (``mcp_call``, ``web_search_call``, ``file_search_call``, ``code_interpreter_call``,
    ``computer_call``, ``image_generation_call``, ``local_shell_call``...)."""
    return isinstance(kind, str) and kind.endswith("_call")


def _item_name(it: dict[str, Any]) -> str | None:
    """A call item's tool: its ``name`` (function and MCP calls), else its kind (``web_search`` for a
    ``web_search_call``)."""
    name = it.get("name")
    if isinstance(name, str):
        return name
    kind = it.get("type")
    if kind in ("function_call", "custom_tool_call") or not isinstance(kind, str):
        return None
    return kind.removesuffix("_call")


def _item_output(it: dict[str, Any]) -> str | None:
    """What a built-in tool's call item carries of its result (``mcp_call``'s ``output`` and ``error``,
    ``code_interpreter_call``'s ``outputs``, ``file_search_call``'s ``results``, ``image_generation_call``'s
    ``result``, base64: a marker), or None when it carries none (the result comes in its own item, or not at
    all). An error is said on a first line of its own (``error: ...``), as results are read."""
    if it.get("type") in ("function_call", "custom_tool_call"):
        return None
    texts: list[str] = []
    error = it.get("error")
    if _unread(error):
        texts.append(f"error: {error if isinstance(error, str) else compact_json(error)}")
    for key in _ITEM_OUTPUTS[:-1]:
        value = it.get(key)
        if not _unread(value):
            continue
        if key == "result" and it.get("type") == "image_generation_call" and isinstance(value, str):
            texts.append(f"[image_generation_call result: {len(value):,} base64 characters]")
        else:
            texts.append(value if isinstance(value, str) else compact_json(value))
    return "\n".join(texts) if texts else None


def last_text(messages: list[dict[str, Any]], role: str) -> str | None:
    """Content of the last message with this role that has content (the prompt of a conversation)."""
    for m in reversed(messages):
        if m.get("role") == role and m.get("content"):
            return m["content"]
    return None


def joined_text(messages: list[dict[str, Any]], role: str = "assistant") -> str | None:
    """Non-empty contents of all messages with this role, joined (the completion of a rollout)."""
    texts = [m["content"] for m in messages if m.get("role") == role and m.get("content")]
    return "\n".join(texts) if texts else None


# -- rendered transcripts -------------------------------------------------------------------------------
# The transcript format of runlog's sample runs and Flink workers: "<|role name=solver id=call_1|>" lines.
_HEADER = re.compile(r"^<\|(?P<role>[A-Za-z_][\w-]*)(?P<attrs>(?: [\w-]+=[^\s|]*)*)\|>$", re.MULTILINE)
_CALL_LINE = re.compile(r"^\[tool_call (?P<id>\S+) (?P<name>\S+) (?P<args>.*)\]$")
# ChatML, what most chat templates render to.
_CHATML = re.compile(r"<\|im_start\|>(?P<role>[^\n]*)\n(?P<body>.*?)(?:<\|im_end\|>|(?=<\|im_start\|>)|\Z)", re.DOTALL)


def transcript_messages(text: str) -> list[dict[str, Any]] | None:
    """A rendered transcript as canonical message dicts (``message``), or None when it has
    neither ``<|role ...|>`` headers nor ChatML blocks from its first non-blank character on."""
    headers = list(_HEADER.finditer(text))
    if headers and not text[: headers[0].start()].strip():
        return _header_messages(text, headers)
    blocks = list(_CHATML.finditer(text))
    if blocks and not text[: blocks[0].start()].strip():
        return [message(b["role"].strip() or "unknown", b["body"].strip("\n")) for b in blocks]
    return None


def _header_messages(text: str, headers: list[re.Match[str]]) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []
    for i, h in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        body = text[h.end() : end].strip("\n")
        attrs = dict(kv.split("=", 1) for kv in h["attrs"].split())
        calls, lines = [], []
        for line in body.split("\n"):
            cm = _CALL_LINE.match(line)
            if cm:
                calls.append({"id": cm["id"], "name": cm["name"], "arguments": cm["args"]})
            else:
                lines.append(line)
        msgs.append(
            message(
                h["role"],
                "\n".join(lines) if lines else None,
                name=attrs.get("name"),
                tool_calls=calls or None,
                tool_call_id=attrs.get("id"),
            )
        )
    return msgs
