"""The normalised conversation: one model of turns that every input shape is mapped into.

Renderers (terminal, HTML, Markdown, JSON) only ever see these dataclasses, so a new input shape needs a
normaliser and nothing else. The JSON form (``Conversation.to_dict``) is documented in ``docs/render.md``
and versioned by ``JSON_SCHEMA``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

from ..chat import INPUT_ROLES, MODEL_ROLES, compact_json

JSON_SCHEMA = "runlog.conversation/1"

# What a renderer shows after cutting a long text; the number is what was cut.
TRUNCATION_MARKER = "… [truncated {n} chars]"

_THINK_TAG = re.compile(r"<(/?)think>", re.IGNORECASE)
# What may stand before a ``<think>`` that opens a generation: white space, and the role line a rendered template
# leaves (``assistant``), as ``normalize`` reads the start of a generation.
_GENERATION_START = re.compile(r"\s*(?:assistant[ \t]*\n\s*)?")
# A key ``pretty_arguments`` writes bare in its block view: letters, digits, ``_ . -`` (no space, no newline, no
# control or formatting character, nothing that could be read as the start of another line); others are quoted.
_PLAIN_KEY = re.compile(r"\w[\w.\-]*")
# Tool output that reports a failure. A heuristic (tools do not flag errors in any standard way): the text
# starts like an error, holds a Python traceback, or is a JSON object with a non-empty "error".
_ERROR_START = re.compile(r"^\s*(error|exception|traceback|\w+error\b|\w+exception\b)", re.IGNORECASE)


@dataclass
class ToolCall:
    """A call the model made: ``arguments`` is kept as the JSON text the model wrote (it may not parse)."""

    id: str | None
    name: str | None
    arguments: str | None
    # The arguments were valid JSON before ``--max-chars`` cut them (the cut text does not parse: that is not
    # the model's doing, and is not said as if it were).
    valid_before_cut: bool = False

    def parsed_arguments(self) -> tuple[bool, Any]:
        """(True, value) when the arguments are valid JSON, else (False, None): renderers then show the
        raw text, so a malformed call stays visible as the model wrote it. Valid as RFC 8259 says (as
        ``metrics format --spec tool-call-json`` checks them): ``NaN``, ``Infinity`` and ``-Infinity``, which
        Python's ``json`` reads, are not JSON, and a tool's strict parser refuses them."""
        if self.arguments is None:
            return False, None
        try:
            return True, json.loads(self.arguments, parse_constant=_not_json)
        except (ValueError, RecursionError):
            return False, None


def _not_json(constant: str) -> Any:
    """``json.loads``' ``parse_constant``: refuses ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON)."""
    raise ValueError(f"{constant} is not JSON")


@dataclass
class ToolResult:
    """What a tool returned to the model, paired with the call it answers when that is known."""

    call_id: str | None
    name: str | None
    content: str | None
    is_error: bool = False


@dataclass
class Turn:
    """One message of the conversation.

    ``role`` is the chat role (system, user, assistant, tool, ...); ``speaker`` who spoke when several
    agents share a role (solver / verifier / judge). A tool turn carries its ``result`` (and no content);
    ``data`` holds a JSON value whose shape runlog does not know, shown as a tree rather than dropped.
    """

    role: str
    speaker: str | None = None
    content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    result: ToolResult | None = None
    data: Any = None
    # Whether the reasoning repeats what the content holds (decided on the texts before any cut), or None
    # (not decided: ``shown_reasoning`` looks at the texts as they are).
    reasoning_in_content: bool | None = None
    # The text a model's message holds after a tool call it wrote as text (``normalize._split_turn``), shown as a
    # turn of its own so that the call stays in its place, but the same message: the calls before it stay open
    # for the results after it (``result_names``), and the stats do not count it as another turn.
    continues: bool = False

    def chars(self) -> int:
        n = len(self.content or "") + len(self.reasoning or "")
        n += sum(len(c.arguments or "") for c in self.tool_calls)
        if self.result is not None:
            n += len(self.result.content or "")
        if self.data is not None:
            # A value of unknown shape counts as its text, written as compact JSON (``chat.compact_json``).
            n += len(compact_json(self.data))
        return n


@dataclass
class RoleResult:
    role: str | None
    reward: float | None
    kl: float | None


@dataclass
class Reward:
    """The reward breakdown: total, named components, and per-role reward and KL."""

    total: float | None = None
    components: list[tuple[str, float | None]] = field(default_factory=list)
    roles: list[RoleResult] = field(default_factory=list)


@dataclass
class Stats:
    turns: int
    assistant_turns: int
    tool_calls: int
    tool_errors: int
    chars: int


@dataclass
class Conversation:
    """One sample, normalised. ``source`` names the input it was built from (see ``docs/render.md``)."""

    turns: list[Turn]
    source: str
    sample_id: str | None = None
    step: int | None = None
    split: str | None = None
    group_id: str | None = None
    env_name: str | None = None
    layout: str | None = None
    file: str | None = None
    reward: Reward | None = None
    exception: str | None = None
    notes: list[str] = field(default_factory=list)
    chars_before_cut: int | None = None  # the texts' length before ``--max-chars`` (the stats say the sample's)
    exception_cut: bool = False  # ``--max-chars`` cut the exception (its head and tail kept)
    # Which row of its id in its file the sample is (``select.OCCURRENCE``): ids recur where a trainer writes the
    # prompt's id for every sample of a group. With ``file`` and ``sample_id``, what tells one sample from another.
    occurrence: int | None = None

    @property
    def stats(self) -> Stats:
        own = [t for t in self.turns if not t.continues]  # one turn per message (``Turn.continues``)
        return Stats(
            turns=len(own),
            assistant_turns=sum(is_model_turn(t) for t in own),  # the model's turns, speakers' too
            tool_calls=sum(len(t.tool_calls) for t in self.turns),
            tool_errors=sum(1 for t in self.turns if t.result is not None and t.result.is_error),
            chars=self.chars_before_cut if self.chars_before_cut is not None else sum(t.chars() for t in self.turns),
        )

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON form (``docs/render.md``): plain JSON types, NaN and infinities as null."""
        st = self.stats
        reward = None
        if self.reward is not None:
            reward = {
                "total": self.reward.total,
                "components": [{"name": n, "value": v} for n, v in self.reward.components],
                "roles": [{"role": r.role, "reward": r.reward, "kl": r.kl} for r in self.reward.roles],
            }
        return {
            "schema": JSON_SCHEMA,
            "sample_id": self.sample_id,
            "step": self.step,
            "split": self.split,
            "group_id": self.group_id,
            "env_name": self.env_name,
            "layout": self.layout,
            "file": self.file,
            "source": self.source,
            "turns": [_turn_dict(t) for t in self.turns],
            "reward": reward,
            "exception": self.exception,
            "stats": {
                "turns": st.turns,
                "assistant_turns": st.assistant_turns,
                "tool_calls": st.tool_calls,
                "tool_errors": st.tool_errors,
                "chars": st.chars,
            },
            "notes": list(self.notes),
        }


def shown(v: float) -> str:
    """A reward or other figure of one sample as the renderers show it: 10 significant digits where they give
    the value back exactly (0.99999 is not 1, 0.1234549 not 0.1235, where summary tables round to 4), else the
    shortest text that does (``repr``): 0.3 and 0.30000000001 differ past the 10th digit, and two different
    values never read alike. A float32 value read as float64 is shown as that float64 (0.30000001192092896):
    0.3 written as a float64 elsewhere in the run is another value, and must read as one."""
    text = f"{v:.10g}"
    try:
        if float(text) == v:
            return text
    except (ValueError, OverflowError):  # nan, inf: written as Python writes them
        return text
    return str(v) if isinstance(v, int) else repr(float(v))


def _turn_dict(t: Turn) -> dict[str, Any]:
    return {
        "role": t.role,
        "speaker": t.speaker,
        "content": t.content,
        "reasoning": t.reasoning,
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in t.tool_calls],
        "result": None
        if t.result is None
        else {
            "call_id": t.result.call_id,
            "name": t.result.name,
            "content": t.result.content,
            "is_error": t.result.is_error,
        },
        "data": t.data,
        # The rest of the message before it (text written after a text tool call): ``stats`` counts one turn.
        "continues": t.continues,
    }


def pretty_arguments(call: ToolCall) -> tuple[bool, str]:
    """(valid JSON?, display text). Objects are indented JSON, except that a multi-line string value (code,
    usually) is shown as a block under its key, because escaped ``\\n`` make code unreadable. That view writes
    a plain key bare (``_PLAIN_KEY``) and any other as a JSON string: a key holding a newline written bare
    wrote lines of its own (``→ rm_everything  call_fake``, read as a second call). Arguments that do not
    parse are returned exactly as written."""
    ok, value = call.parsed_arguments()
    if not ok:
        return call.valid_before_cut, call.arguments or ""
    if not _reserialises_faithfully(call.arguments or ""):
        # A key given twice (``{"path": "/tmp/a", "path": "/etc/passwd"}``: parsers keep the last) or a number
        # JSON would write otherwise (``2.50``, ``1e3``): shown exactly as the model wrote it.
        return True, call.arguments or ""
    if isinstance(value, dict) and any(isinstance(v, str) and "\n" in v for v in value.values()):
        lines = []
        for key, v in value.items():
            k = key if _PLAIN_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
            if isinstance(v, str) and "\n" in v:
                # Blank lines at the end of the value are shown, under YAML's ``|+`` (keep them); a value that
                # ends with one newline or none is ``|``.
                body = v.rstrip("\n")
                ends = len(v) - len(body)
                lines.append(f"{k}: |{'+' if ends > 1 else ''}")
                lines.extend("  " + line for line in body.split("\n"))
                lines.extend("" for _ in range(ends - 1))
            else:
                lines.append(f"{k}: {json.dumps(v, ensure_ascii=False)}")
        return True, "\n".join(lines)
    return True, json.dumps(value, indent=2, ensure_ascii=False)


def _reserialises_faithfully(text: str) -> bool:
    """Whether valid JSON ``text`` loses nothing when parsed and written again: no object repeats a key, and
    every number is written as Python writes the value it parses to."""
    faithful = [True]

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(items)
        if len(out) != len(items):
            faithful[0] = False
        return out

    def number(token: str) -> float:
        value = float(token)
        if json.dumps(value) != token:
            faithful[0] = False
        return value

    try:
        json.loads(text, object_pairs_hook=pairs, parse_float=number, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return False
    return faithful[0]


def figure_text(v: float | None) -> str:
    """A figure as every renderer writes it: ``shown``, and ``null``, ``NaN``, ``inf`` / ``-inf``."""
    if v is None:
        return "null"
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return shown(v)


def shown_reasoning(turn: Turn) -> str | None:
    """The reasoning to show beside the content: None when the content already shows it, that is when the
    content is the reasoning or holds it as a thinking block (``<think>REASONING</think>``; writers often
    keep the ``<think>`` text in both places, and showing it twice only adds noise). Anything less is shown:
    a reasoning that is only a piece of the answer ("4" in "The answer is 4") is still the model's reasoning,
    and hiding it would lose it from every format but JSON."""
    r = turn.reasoning
    if not r or not r.strip():
        return None
    if turn.reasoning_in_content is not None:  # decided before the texts were cut
        return None if turn.reasoning_in_content else r
    return None if reasoning_repeats_content(r, turn.content) else r


def reasoning_repeats_content(reasoning: str, content: str | None) -> bool:
    """Whether ``content`` is ``reasoning`` (but for surrounding white space) or holds it as one of its
    thinking blocks (``split_think``: ``<think>...</think>``, an unclosed ``<think>`` at the end, or the text
    before a lone ``</think>``), or as all of them one after another."""
    if not content:
        return False
    want = reasoning.strip()
    if content.strip() == want:
        return True
    blocks = [_THINK_TAG.sub("", s).strip() for s, thinking in split_think(content) if thinking]
    return want in blocks or (len(blocks) > 1 and "\n".join(blocks) == want)


def looks_like_error(text: str | None) -> bool:
    """Whether a tool output reports a failure (see ``_ERROR_START``); used to highlight it."""
    if not text:
        return False
    if "Traceback (most recent call last)" in text or _ERROR_START.match(text):
        return True
    stripped = text.lstrip()
    if stripped.startswith("{") and '"error"' in stripped:
        try:
            obj = json.loads(stripped)
        except (ValueError, RecursionError):
            return False
        return isinstance(obj, dict) and bool(obj.get("error"))
    return False


def split_think(text: str) -> list[tuple[str, bool]]:
    """``text`` as (segment, is_thinking) pairs, the ``<think>`` tags kept in the thinking segments.

    The reasoning is what a reasoning parser (vLLM's ``deepseek_r1``, ``qwen3``) takes from a generation, read
    as ``normalize`` reads calls in the reasoning (``docs/render.md``, conversations 5): a ``<think>`` up to the
    first ``</think>`` after it (a ``<think>`` inside is a word of the reasoning); what precedes a ``</think>``
    that is the text's first tag (chat templates that put ``<think>`` in the prompt); a ``<think>`` left open to
    the end only where it opens the text, white space and a template's ``assistant`` line aside (a truncated
    generation: a model reasons first). A ``<think>`` named in prose with no ``</think>`` after it, and a
    ``</think>`` that closes nothing and is not the first tag, are words of the answer: read as reasoning, they
    made ``--no-think`` hide the answer after them.
    """
    out: list[tuple[str, bool]] = []
    pos = 0
    opened: int | None = None
    for k, m in enumerate(_THINK_TAG.finditer(text)):
        closing = m.group(1) == "/"
        if opened is None and not closing:
            opened = m.start()
        elif opened is not None and closing:
            out += [(text[pos:opened], False), (text[opened : m.end()], True)]
            pos, opened = m.end(), None
        elif closing and k == 0:
            out.append((text[: m.end()], True))
            pos = m.end()
    head = _GENERATION_START.match(text)
    if opened is not None and head is not None and head.end() == opened:
        out += [(text[pos:opened], False), (text[opened:], True)]
        pos = len(text)
    out.append((text[pos:], False))
    return [(s, k) for s, k in out if s]


# runlog's own kinds of turn whose speaker is not known (a JSON value of unknown shape, a transcript not split
# into turns): neither the model's (``chat.MODEL_ROLES``) nor its input's (``chat.INPUT_ROLES``).
UNKNOWN_ROLES = frozenset({"data", "transcript", "unknown"})


def is_model_turn(turn: Turn) -> bool:
    """Whether the model said ``turn``: a model role (``MODEL_ROLES``), or a role that names a speaker
    (``<|solver|>``, ``<|judge|>`` in a transcript: a multi-agent run's speakers, whose turns are the model's),
    that is any role but the input's (``INPUT_ROLES``) and runlog's unknown kinds (``UNKNOWN_ROLES``)."""
    role = turn.role.lower()
    return role in MODEL_ROLES or (turn.result is None and role not in INPUT_ROLES | UNKNOWN_ROLES)


def turn_segments(turn: Turn, content: str | None = None) -> list[tuple[str, bool]]:
    """``split_think`` of a turn's content, for the model's own turns only: a ``<think>`` written in a system
    prompt, a user message or a tool result is text, not reasoning."""
    text = turn.content if content is None else content
    if not text:
        return []
    if turn.role.lower() not in MODEL_ROLES:
        return [(text, False)]
    return split_think(text)


def strip_think(text: str | None) -> str | None:
    if text is None:
        return None
    return "".join(s for s, thinking in split_think(text) if not thinking).strip("\n")


def truncate(text: str | None, limit: int | None) -> str | None:
    """``text`` cut to ``limit`` characters with a visible marker saying how much was cut."""
    if text is None or limit is None or len(text) <= limit:
        return text
    return text[:limit] + TRUNCATION_MARKER.format(n=len(text) - limit)


def truncate_ends(text: str | None, limit: int | None, sep: str = "\n") -> str | None:
    """``text`` cut to ``limit`` characters kept at both ends, the marker between them, on a line of its own
    (``sep``): for a traceback, whose last line says what failed (``ValueError: ...``) and whose first where it
    began, a cut that kept only the head lost the error itself; for a label (``sep=" "``), ids that share a long
    prefix (a run name, a path) differ at their end, and must still read apart."""
    if text is None or limit is None or len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    marker = TRUNCATION_MARKER.format(n=len(text) - limit)
    return text[:head] + sep + marker + " …" + sep + (text[len(text) - tail :] if tail else "")


# The longest label (a sample id, a tool name, a call id, a role...) the terminal and the report show: a
# 2 MB sample id was printed whole. JSON and the HTML browser keep labels whole.
LABEL_CHARS = 300


def cut_shown(text: str | None, limit: int | None = LABEL_CHARS) -> str:
    """A label as shown (``one_line``: its control and invisible characters as escapes, ``\\x1b``), cut to
    ``limit`` characters as shown, kept at both ends, ``… [truncated K chars]`` between them (K: the label's
    own characters left out), as the trajectory cards cut theirs (``cut_labels``): ids that share
    a long prefix still read apart. Cut after the escapes are made, so that a label of 300 ESC characters is
    not shown in 1,200, and between two characters' escapes, never through one. A label the cards cut already
    (its ``limit`` characters and the marker) is kept as it is: cut again, its marker would count the
    characters of the first cut's marker ("[truncated 29 chars]" for 49,700). Shown already, the result goes
    through ``e`` or ``e1`` unchanged (neither touches an escape's backslash)."""
    from .safe import one_line

    if text is None:
        return ""
    if limit is None or _was_cut(text, limit):
        return one_line(text)
    if len(text) <= limit and len(shown := one_line(text)) <= limit:
        return shown
    folded = text.replace("\r\n", "\n")  # as ``safe`` folds them
    head: list[str] = []
    used, i = 0, 0
    while i < len(folded) and used + len(w := one_line(folded[i])) <= limit // 2:
        head.append(w)
        used, i = used + len(w), i + 1
    tail: list[str] = []
    used, j = 0, len(folded)
    while j > i and used + len(w := one_line(folded[j - 1])) <= limit - limit // 2:
        tail.append(w)
        used, j = used + len(w), j - 1
    if j == i:  # every character kept (CRLF folded to fit): nothing to say cut
        return "".join(head) + "".join(reversed(tail))
    marker = TRUNCATION_MARKER.format(n=j - i)
    return "".join(head) + " " + marker + " … " + "".join(reversed(tail))


ESCAPE_CHARS = 10  # the longest escape ``one_line`` writes for one character: ``\\U000e0041``


def _was_cut(text: str, limit: int) -> bool:
    """Whether ``text`` is a label cut to ``limit`` (``truncate_ends(label, limit, " ")``, or ``cut``, whose
    ends may be up to an escape shorter)."""
    head, tail = limit // 2, limit - limit // 2
    for at in range(head, max(-1, head - ESCAPE_CHARS), -1):
        m = _CUT_MARK.match(text, at)
        if m is not None:
            return tail - ESCAPE_CHARS < len(text) - m.end() <= tail
    return False


_CUT_MARK = re.compile(" " + re.escape(TRUNCATION_MARKER).replace(r"\{n\}", r"\d+") + " … ")


def cut_labels(conv: Conversation, limit: int = LABEL_CHARS) -> Conversation:
    """A copy of ``conv`` with each label (sample id, split, group, env, file, roles, speakers, tool names
    and call ids, reward component and role names, notes) cut to ``limit`` characters kept at both ends, for the
    outputs that are read rather than kept: the terminal and the report. Cut as shown (``cut_shown``, the report's too:
    control and invisible characters as their escapes, never cut through one), so that a label of 300 ESC
    characters is not shown in 1,200; a label that fits as shown is kept as it is (its output escapes it)."""
    from .safe import one_line

    def cut(s: str | None) -> str | None:
        if s is None or (len(s) <= limit and len(one_line(s)) <= limit):
            return s
        return cut_shown(s, limit)

    turns = []
    for t in conv.turns:
        result = t.result
        if result is not None:
            result = replace(result, call_id=cut(result.call_id), name=cut(result.name))
        calls = [replace(c, id=cut(c.id), name=cut(c.name)) for c in t.tool_calls]
        turns.append(replace(t, role=cut(t.role) or "", speaker=cut(t.speaker), tool_calls=calls, result=result))
    reward = conv.reward
    if reward is not None:
        reward = replace(
            reward,
            components=[(cut(n) or "", v) for n, v in reward.components],
            roles=[replace(r, role=cut(r.role)) for r in reward.roles],
        )
    return replace(
        conv,
        turns=turns,
        sample_id=cut(conv.sample_id),
        split=cut(conv.split),
        group_id=cut(conv.group_id),
        env_name=cut(conv.env_name),
        file=cut(conv.file),
        reward=reward,
        notes=[cut(n) or "" for n in conv.notes],
    )


def result_names(turns: list[Turn]) -> dict[int, str]:
    """Tool results that do not name their tool, named from the call they answer. ``{turn index: tool name}``.

    The pairing is ``chat.from_openai_chat``'s, so that a conversation read from a chat file and one read from
    canonical messages name their results alike: the calls a result can answer are those of the last turn that
    made calls, while only tool results have followed it (any other turn leaves them unanswered for good); a
    result with a ``call_id`` answers the call with that id (named from any call of the conversation with it),
    one without answers the first of them not answered yet (of the function it names, when it names one). A
    result the rule pairs with no call stays unnamed: a call the conversation had left (the model asked again,
    the user changed the task) is not what it answers. A turn that ``continues`` its message (the text written
    after a text tool call) is that message's: it leaves its calls open, and adds its own calls to them."""
    by_id: dict[str, str] = {}
    open_calls: list[ToolCall] = []
    out: dict[int, str] = {}
    for i, t in enumerate(turns):
        r = t.result
        if t.tool_calls:
            open_calls = [*open_calls, *t.tool_calls] if t.continues else list(t.tool_calls)
            by_id.update({c.id: c.name for c in t.tool_calls if c.id is not None and c.name})
            continue
        if r is None:
            if not t.continues:
                open_calls = []
            continue
        if r.call_id is not None:
            call = next((c for c in open_calls if c.id == r.call_id), None)
        else:  # the next call of the function the result names (Gemini's), else the next call
            call = next((c for c in open_calls if r.name and c.name == r.name), open_calls[0] if open_calls else None)
        if call is not None:
            open_calls.remove(call)
        if not r.name:
            name = (call.name if call is not None else None) or (
                by_id.get(r.call_id) if r.call_id is not None else None
            )
            if name:
                out[i] = name
    return out


def prepared(conv: Conversation, *, max_chars: int | None = None, no_think: bool = False) -> Conversation:
    """A copy with the display options applied (thinking removed, then each text truncated), so that every
    output format shows the same thing."""

    def text(s: str | None, model: bool = True) -> str | None:
        return truncate(strip_think(s) if no_think and model else s, max_chars)

    turns = []
    names = result_names(conv.turns)
    for i, t in enumerate(conv.turns):
        result = t.result
        if result is not None:
            # An error's output (a traceback, usually) keeps its end too: the line that says what failed.
            cut_result = truncate_ends if result.is_error else truncate
            result = replace(result, name=names.get(i, result.name), content=cut_result(result.content, max_chars))
        # What the texts say is decided on them whole, before any cut: whether the arguments parse, whether
        # the reasoning repeats the content.
        calls = [
            replace(c, arguments=truncate(c.arguments, max_chars), valid_before_cut=c.parsed_arguments()[0])
            for c in t.tool_calls
        ]
        turns.append(
            replace(
                t,
                content=text(t.content, t.role.lower() in MODEL_ROLES),
                reasoning=None if no_think else truncate(t.reasoning, max_chars),
                tool_calls=calls,
                result=result,
                reasoning_in_content=bool(t.reasoning) and shown_reasoning(t) is None,
            )
        )
    cut = replace(conv, turns=turns, exception=truncate_ends(conv.exception, max_chars))
    cut.chars_before_cut = conv.stats.chars
    cut.exception_cut = cut.exception != conv.exception
    return cut
