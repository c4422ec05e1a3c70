"""Flink conversations: ``agent_trajectories`` (and the rendered ``trajectory``) to canonical messages.

Flink's ``BatchDebugData`` (seed 000) holds each trajectory twice: ``trajectory``, a rendered multi-turn
string, and ``agent_trajectories``, JSON dumps of the agents' messages. The JSON is the faithful one (the
rendered string may leave tool calls out), so it is read first, in any of the shapes Flink writes:

- a JSON list of chat messages (OpenAI style: ``role, name, content, tool_calls, tool_call_id``; content a
  string or a list of content parts; tool-call arguments a JSON string or an object);
- a list of agents ``{agent_id, turns | messages: [...]}``, or a dict keyed by agent
  (``{"agent_0": [...]}`` / ``{"solver": {"turns": [...]}}``); the agent's role comes from the agent's own
  ``role`` field, ``role_assignments`` (``{"agent_0": "judge"}``), or its key when that is a role name;
- any of these JSON-encoded once more (a JSON string inside the string).

Each assistant message's ``name`` is its debate role (solver / verifier / judge): a name that is an agent
id is mapped through ``role_assignments``; a message whose ``role`` is itself a debate role
(``{"role": "solver"}``) becomes an assistant message with that name. Tool results are paired with the
call they answer (``runlog.chat.from_openai_chat``).

Per-agent JSON has no order across agents and usually no system or user message: the rendered string,
when it parses, gives the order of the speakers and the prompt; without it the agents follow one another
in the order written. A v0 agent (no role) is the speaker whose turns have its texts, all of them, whitespace
aside (``_match_speakers``; agents that say the same are matched by agent id, never by the order written);
one matched to no speaker keeps its agent id, its turns after the transcript's speakers (``_merge``).
The JSON's turns are the turns where they exist: a header line a model wrote inside its text splits it in
the rendered string, not in the JSON, and is no turn. A turn of the rendered string that the JSON has no turn
for is kept, read from the string, and a JSON turn the string does not show follows its turns; both are
counted (``Conversation.from_transcript``, ``Conversation.unplaced``), so that readers can say where the
two sources disagree (``_order``).

When ``agent_trajectories`` is absent, empty, or not JSON of a known shape, the messages are parsed from
the rendered ``trajectory`` (``<|role name=X id=Y|>`` headers with ``[tool_call ID NAME ARGS]`` lines, or
ChatML): :func:`conversation` says which source it used and why, so that readers can count the fallbacks.
Nothing here raises on odd data.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import chat

# Chat roles proper; any other role name in a message or a transcript header is a speaker (a debate role).
CHAT_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function", "ipython"})
_AGENT_LISTS = ("turns", "messages", "trajectory", "conversation", "history")
_AGENT_IDS = ("agent_id", "agent", "agent_name", "id", "name")
_MAX_NESTING = 3  # JSON inside a JSON string, at most this deep

# Why the JSON was not used (``Conversation.fallback``).
ABSENT = "absent"  # null, blank, or an empty list / object
UNPARSEABLE = "unparseable"  # not JSON, or JSON of no known shape

_INVALID = object()


@dataclass
class Conversation:
    """The canonical view of one Flink sample's conversation."""

    messages: list[dict[str, Any]] | None
    prompt: str | None  # the first user message with text
    completion: str | None  # the assistant turns of the first assistant speaker, joined with newlines
    source: str | None  # "agent_trajectories", "trajectory", or None (no conversation)
    fallback: str | None = None  # ABSENT / UNPARSEABLE when agent_trajectories was not used
    # Agents whose turns read alike to more than one speaker: matched by agent id, or else left unmatched
    # (``_match_speakers``); readers count these samples.
    ambiguous: bool = False
    # Model speakers named by their agent ids alone (agents without a role, none matched to a transcript's
    # speaker: a v0 file without a rendered trajectory): nothing says which role an id plays, and an id may play
    # another in another file; readers count which speaks first (``flink_text._Fallbacks.record_ids``).
    by_id: bool = False
    # Where the rendered string and the JSON disagree: assistant turns of the string that no JSON turn says
    # (read from the string, in its order), and JSON turns the string does not show (after its turns).
    from_transcript: int = 0
    unplaced: int = 0

    @property
    def prompt_key(self) -> str | None:
        """A short stable digest of the prompt (the derived ``group_id`` holds it)."""
        if self.prompt is None:
            return None
        return hashlib.sha1(self.prompt.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def conversation(agent_trajectories: Any, trajectory: Any, role_assignments: Any = None) -> Conversation:
    """One sample's messages, prompt and completion, from ``agent_trajectories`` or else the rendered
    ``trajectory``. Never raises: a shape that makes the JSON reader fail counts as unparseable."""
    assign = _assignments(role_assignments)
    parsed: list[Any] = []

    def transcript() -> list[dict[str, Any]] | None:
        """The rendered string's messages, parsed once and only when needed."""
        if not parsed:
            parsed.append(transcript_messages(trajectory, assign))
        return parsed[0]

    try:
        messages, fallback, merged = agent_messages(agent_trajectories, assign, transcript)
    except Exception:  # noqa: BLE001  (hostile JSON must cost this sample its JSON, never the read)
        messages, fallback, merged = None, UNPARSEABLE, Merged()
    source: str | None = "agent_trajectories"
    if messages is None:
        messages = transcript()
        source = "trajectory" if messages is not None else None
    if not messages:
        return Conversation(None, None, None, None, fallback)
    prompt, completion = first_prompt(messages), completion_text(messages)
    if source != "agent_trajectories":
        merged = Merged()
    return Conversation(
        messages,
        prompt,
        completion,
        source,
        fallback,
        merged.ambiguous,
        merged.by_id,
        merged.from_transcript,
        merged.unplaced,
    )


def first_prompt(messages: list[dict[str, Any]]) -> str | None:
    """The first user message that has text."""
    return next((m["content"] for m in messages if m.get("role") == "user" and m.get("content")), None)


def completion_text(messages: list[dict[str, Any]]) -> str | None:
    """The policy's generated text for the sample: the non-empty contents of the assistant messages of the
    first assistant speaker (the agent that answers the prompt: the solver of a debate), joined with
    newlines. Other speakers' turns stay in ``messages``."""
    assistants = [m for m in messages if m.get("role") == "assistant"]
    if not assistants:
        return None
    first = assistants[0].get("name")
    texts = [m["content"] for m in assistants if m.get("name") == first and m.get("content")]
    return "\n".join(texts) if texts else None


# -- the rendered string ----------------------------------------------------------------------------------
def transcript_messages(text: Any, assign: dict[str, str] | None = None) -> list[dict[str, Any]] | None:
    """Canonical messages of a rendered ``trajectory``, or None when it is not a structured transcript.
    A header whose role is not a chat role (``<|solver|>``) is an assistant message named by it."""
    if not isinstance(text, str) or not text.strip():
        return None
    msgs = chat.transcript_messages(text)
    if msgs is None:
        return None
    return [_speaker(m, assign or {}) for m in msgs]


def _speaker(m: dict[str, Any], assign: dict[str, str]) -> dict[str, Any]:
    """Assistant messages named by their debate role: a speaker role becomes ``assistant`` + name; an agent
    id as name is replaced by the role ``role_assignments`` gives it."""
    role, name = m.get("role"), m.get("name")
    if isinstance(role, str) and role not in CHAT_ROLES and role != "unknown":
        m = {**m, "role": "assistant", "name": name or role}
    if m.get("role") == "assistant" and isinstance(m.get("name"), str) and m["name"] in assign:
        m = {**m, "name": assign[m["name"]]}
    return m


# -- agent_trajectories -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Merged:
    """What merging per-agent JSON told besides the messages (``_merge``): agents whose texts did not tell which
    speaker they are (``_match_speakers``), agents left named by their ids, and where the rendered string and the
    JSON disagree (``_order``)."""

    ambiguous: bool = False
    by_id: bool = False
    from_transcript: int = 0
    unplaced: int = 0


def agent_messages(
    value: Any, assign: dict[str, str], transcript: Callable[[], list[dict[str, Any]] | None] = lambda: None
) -> tuple[list[dict[str, Any]] | None, str | None, Merged]:
    """(messages, None, merged) from ``agent_trajectories``, or (None, ABSENT / UNPARSEABLE, Merged());
    ``transcript`` gives the rendered string's messages (for the order and prompt of per-agent JSON)."""
    obj = _loads(value)
    if obj is None or obj == [] or obj == {} or (isinstance(obj, str) and not obj.strip()):
        return None, ABSENT, Merged()
    if obj is _INVALID or isinstance(obj, str):
        return None, UNPARSEABLE, Merged()
    agents = _agents(obj)
    merged = Merged()
    if agents is not None:
        messages, merged = _merge(agents, assign, transcript())
    elif isinstance(obj, (dict, list)) and all(_is_message(m) for m in (obj if isinstance(obj, list) else [obj])):
        messages = _chat(obj if isinstance(obj, list) else [obj], assign, None)
    else:
        return None, UNPARSEABLE, Merged()
    if not messages:
        return None, ABSENT, Merged()
    if not any(m["role"] in ("system", "user", "developer") for m in messages):
        messages = _transcript_prefix(transcript()) + messages
    return messages, None, merged


def _loads(value: Any) -> Any:
    for _ in range(_MAX_NESTING):
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text or text[0] not in '[{"':
            return value if not text else _INVALID
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return _INVALID
    return value


def _assignments(value: Any) -> dict[str, str]:
    obj = _loads(value)
    if not isinstance(obj, dict):
        return {}
    return {str(k): v for k, v in obj.items() if isinstance(v, str) and v}


def _is_message(x: Any) -> bool:
    return isinstance(x, dict) and isinstance(x.get("role"), str) and _agent_list(x) is None


def _agent_list(x: Any) -> list[Any] | None:
    """The message list of an agent container (``{agent_id, turns: [...]}``, the list possibly JSON-encoded),
    else None."""
    if not isinstance(x, dict):
        return None
    for key in _AGENT_LISTS:
        v = x.get(key)
        if isinstance(v, str) and v.lstrip()[:1] == "[":
            v = _loads(v)
        if isinstance(v, list):
            return v
    return None


def _agents(obj: Any) -> list[tuple[str | None, str | None, list[Any]]] | None:
    """(agent id, role, raw messages) of each agent when ``obj`` is per-agent JSON, else None."""
    if isinstance(obj, dict) and "agents" in obj:
        obj = _loads(obj["agents"])
    if isinstance(obj, dict) and _agent_list(obj) is not None:
        obj = [obj]  # one agent (or one trajectory) wrapped in an object
    if isinstance(obj, list) and obj and all(_agent_list(a) is not None for a in obj):
        return [(_agent_id(a), _own_role(a), _agent_list(a) or []) for a in obj]
    if isinstance(obj, dict) and obj and not _is_message(obj):
        out: list[tuple[str | None, str | None, list[Any]]] = []
        for key, v in obj.items():
            v = _loads(v)
            msgs = v if isinstance(v, list) else _agent_list(v)
            if msgs is not None:
                out.append((str(key), _own_role(v), msgs))
            elif isinstance(v, (dict, list)):
                return None  # not an agent, not a scalar: an unknown shape
        return out or None
    return None


def _agent_id(a: dict[str, Any]) -> str | None:
    return next((str(a[k]) for k in _AGENT_IDS if isinstance(a.get(k), (str, int)) and a.get(k) != ""), None)


def _own_role(a: Any) -> str | None:
    """An agent container's own ``role`` field when it names a speaker (not a chat role)."""
    role = a.get("role") if isinstance(a, dict) else None
    return role if isinstance(role, str) and role and role not in CHAT_ROLES else None


def _transcript_prefix(transcript: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The system / user messages of the rendered string before its first assistant turn."""
    prefix: list[dict[str, Any]] = []
    for m in transcript or []:
        if m["role"] == "assistant":
            break
        if m["role"] != "tool":
            prefix.append(m)
    return prefix


def _chat(raw: list[Any], assign: dict[str, str], default_name: str | None) -> list[dict[str, Any]]:
    """Raw chat messages to canonical ones, with speakers as names (see the module docstring)."""
    prepared = []
    for m in raw:
        if isinstance(m, dict):
            m = dict(m)
            role = m.get("role")
            if isinstance(role, str) and role not in CHAT_ROLES:
                m["role"], m["name"] = "assistant", m.get("name") or role
            if m.get("name") is None:
                m["name"] = next((m[k] for k in ("agent_id", "agent", "speaker") if isinstance(m.get(k), str)), None)
            if m.get("role") == "assistant" and m.get("name") is None:
                m["name"] = default_name
        prepared.append(m)
    return [_speaker(m, assign) for m in chat.from_openai_chat(prepared)]


def _merge(
    agents: list[tuple[str | None, str | None, list[Any]]],
    assign: dict[str, str],
    transcript: list[dict[str, Any]] | None,
) -> tuple[list[dict[str, Any]], Merged]:
    """One conversation from per-agent message lists: the shared system / user messages first, then each
    assistant turn (with the tool results that follow it) in the order of the transcript's speakers
    (``_order``).

    An agent with no role of its own (v0 files have no ``role_assignments``) takes the speaker whose turns
    have its texts (``_match_speakers``); where one agent and one speaker are left unmatched, they are each
    other. Turns the transcript does not place (an agent still unmatched) follow, agent by agent: per-agent
    JSON has no order across agents, so the order it is written in decides nothing before the transcript's
    (a review found the judge read as the policy when the agents were written in reverse). Also returned
    (``Merged``): whether the texts left agents alike (``_match_speakers``), whether an agent with a turn is left
    named by its id (no role, no transcript speaker: which role it plays is not known), and the turns where the
    transcript and the JSON disagree."""
    speakers = [m for m in transcript or [] if m.get("role") == "assistant"]
    found: list[tuple[str | None, list[dict[str, Any]]]] = []
    named: list[tuple[int, str | None]] = []  # agents with no role of their own: (index, agent id)
    for agent_id, role, raw in agents:
        role = role or assign.get(agent_id or "")
        msgs = _chat(raw, assign, role)
        if role is None:
            named.append((len(found), agent_id))
        found.append((role, msgs))
    # One speaker an agent, by all of its turns: agents whose first turns read alike (a solver and a judge both
    # opening with "<answer>4</answer>") were matched in the order written, and the judge's later turn read as
    # the policy's completion.
    taken = {role for role, _ in found if role is not None}
    matched, ambiguous = _match_speakers([(k, agent_id, found[k][1]) for k, agent_id in named], transcript, taken)
    for k, role in matched.items():
        found[k] = (role, found[k][1])
    unmatched = [k for k, _ in named if found[k][0] is None and any(m["role"] == "assistant" for m in found[k][1])]
    ids = dict(named)
    per_agent = [(role or ids.get(k) or "agent", msgs) for k, (role, msgs) in enumerate(found)]
    if len(unmatched) == 1:
        taken = {role for role, _ in per_agent}
        free = list(dict.fromkeys(str(m["name"]) for m in speakers if m.get("name") and m["name"] not in taken))
        if len(free) == 1:
            per_agent[unmatched[0]] = (free[0], per_agent[unmatched[0]][1])
            unmatched = []
    for k, agent_id in named:
        role, msgs = per_agent[k]
        for m in msgs:
            if m["role"] == "assistant" and m.get("name") in (None, agent_id):
                m["name"] = role
    prefix: list[dict[str, Any]] = []
    queues: dict[str, list[list[dict[str, Any]]]] = {}
    for role, msgs in per_agent:
        i = 0
        while i < len(msgs) and msgs[i]["role"] in ("system", "user", "developer"):
            key = (msgs[i]["role"], msgs[i]["content"])
            if key not in {(p["role"], p["content"]) for p in prefix}:
                prefix.append(msgs[i])
            i += 1
        queues.setdefault(role, []).extend(_units(msgs[i:]))
    turns, from_transcript, unplaced = _order(transcript or [], queues, [role for role, _ in per_agent])
    return [*prefix, *turns], Merged(ambiguous, bool(unmatched), from_transcript, unplaced)


@dataclass
class _Said:
    """A turn of the rendered string that no JSON turn was found for: the turn and the tool results after it."""

    messages: list[dict[str, Any]]
    name: str
    text: str


def _order(
    transcript: list[dict[str, Any]], queues: dict[str, list[list[dict[str, Any]]]], roles: list[str]
) -> tuple[list[dict[str, Any]], int, int]:
    """The agents' turns (``queues``: each role's units, in its order) in the order of the rendered string's
    turns, with (turns read from the string, JSON turns the string does not show).

    A turn of the string takes the first unit of its speaker that shows its text (``_shown``), and the
    speaker's units before that one (a string that leaves out a tool-calling turn). A unit whose text holds a
    line that reads as a header (a model that writes ``<|assistant name=judge|>``) is several turns of the
    string: they are its, not turns (before, the next of them took the judge's real turn, out of order). Where
    no unit of the speaker shows the text: a turn whose text lies inside the text of the unit placed just
    before, after a header line there, is that unit's; else the speaker's next unit, where no later turn of the
    speaker shows it (the same turn, rendered otherwise); else the JSON has no turn for it, and it is read from
    the string (before, it was dropped: a judge without an agent in the JSON, a solver's second turn). The
    units no turn placed follow, agent by agent; a turn read from the string that one of them (or a unit placed
    before its own turn) shows is that unit's, not a turn of its own (agents named by their ids)."""
    first = next((k for k, m in enumerate(transcript) if m.get("role") == "assistant"), len(transcript))
    rest = transcript[first:]
    texts = [_plain(m.get("content")) for m in rest]
    shown: dict[str, list[list[str]]] = {}

    def shows(unit: list[dict[str, Any]], at: int) -> int:
        """How many turns of the string from ``at`` are ``unit`` (0: none)."""
        content = _assistant_text(unit)
        if content not in shown:
            shown[content] = _shown(content)
        return next((len(f) for f in shown[content] if texts[at : at + len(f)] == f), 0)

    def name_at(at: int) -> str | None:
        """The speaker of the string's turn ``at``; None for other turns, and for a model turn that names none
        (ChatML's plain ``assistant``: which agent spoke is not told, so it places nothing and is read from
        nothing; the units follow in their own order, as before)."""
        m = rest[at]
        return (str(m.get("name") or "") or None) if m.get("role") == "assistant" else None

    pieces: list[list[dict[str, Any]] | _Said] = []
    spare: list[tuple[str, list[dict[str, Any]]]] = []  # units placed before their speaker's turn shown
    last: str | None = None  # the text of a unit placed without the string showing it
    at = 0
    while at < len(rest):
        name = name_at(at)
        if name is None:  # the string's other turns: the JSON's units hold their own context and results
            at += 1
            continue
        queue = queues.get(name, [])
        hit = next(((k, n) for k, unit in enumerate(queue) if (n := shows(unit, at))), None)
        if hit is not None:
            k, width = hit
            spare += [(name, unit) for unit in queue[:k]]
            pieces += queue[: k + 1]
            del queue[: k + 1]
            at, last = at + width, None
            continue
        if last is not None and texts[at] and _inside_after_header(texts[at], last):
            at += 1
            continue
        later = range(at + 1, len(rest))
        if queue and not any(name_at(j) == name and shows(queue[0], j) for j in later):
            last = _assistant_text(queue[0])
            pieces.append(queue.pop(0))
            at += 1
            continue
        end = at + 1
        while end < len(rest) and rest[end].get("role") == "tool":
            end += 1
        pieces.append(_Said(rest[at:end], name, texts[at]))
        at, last = end, None
    speakers = {name_at(j) for j in range(len(rest))} - {None}
    left = [(role, unit) for role in roles for unit in queues.pop(role, [])]
    pool = spare + left
    out: list[dict[str, Any]] = []
    from_transcript = 0
    for piece in pieces:
        if not isinstance(piece, _Said):
            out += piece
            continue
        said = next(
            (
                j
                for j, (role, unit) in enumerate(pool)
                if (role == piece.name or role not in speakers) and piece.text in _forms(_assistant_text(unit))
            ),
            None,
        )
        if said is None:
            out += piece.messages
            from_transcript += 1
        else:
            pool.pop(said)
    for _role, unit in left:
        out += unit
    unshown = {id(unit) for _, unit in pool}
    unplaced = sum(1 for _, unit in left if id(unit) in unshown and any(m["role"] == "assistant" for m in unit))
    # A string with model turns that name no speaker shows turns no unit is placed by: what it leaves out is not told.
    unnamed = any(m.get("role") == "assistant" and not m.get("name") for m in rest)
    return out, from_transcript, unplaced if speakers and not unnamed else 0


def _units(msgs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Consecutive turns of one agent: each assistant message with the non-assistant messages just before
    it (context it was given) and the tool results after it."""
    units: list[list[dict[str, Any]]] = []
    pending: list[dict[str, Any]] = []
    for m in msgs:
        if m["role"] == "assistant":
            units.append([*pending, m])
            pending = []
        elif m["role"] == "tool" and units and not pending:
            units[-1].append(m)
        else:
            pending.append(m)
    if pending:
        units.append(pending)
    return units


def _shown(text: str) -> list[list[str]]:
    """The turns of a rendered string that may show one turn's text, as lists of ``_plain`` texts: one of its
    ``_forms``; or, where the text holds a line that reads as a header of the string (``<|judge|>``,
    ``<|im_start|>``: a model may write one), the turns the string's parser reads in it."""
    out = [[f] for f in dict.fromkeys(_forms(text))]
    if "<|" in text:
        for form in dict.fromkeys((text, _THINK.sub(" ", text))):
            for head in ("<|assistant|>\n", "<|im_start|>assistant\n"):
                parts = [_plain(m.get("content")) for m in chat.transcript_messages(head + form) or []]
                if len(parts) > 1 and parts not in out:
                    out.append(parts)
    return out


def _inside_after_header(text: str, unit_text: str) -> bool:
    """Whether a turn's text (``_plain``) lies inside ``unit_text`` after a line there that reads as a header:
    the turn is that unit's, split off by a header its speaker wrote."""
    at = next((m.end() for m in _HEADER_LINE.finditer(unit_text)), None)
    return at is not None and text in _plain(unit_text[at:])


_HEADER_LINE = re.compile(r"^<\|[A-Za-z_][\w-]*(?: [\w-]+=[^\s|]*)*\|>$|<\|im_start\|>", re.MULTILINE)


def _assistant_text(unit: list[dict[str, Any]]) -> str:
    return next((m.get("content") or "" for m in unit if m["role"] == "assistant"), "")


def _forms(text: Any) -> tuple[str, str]:
    """The forms of a turn's text a transcript may show: whitespace aside, and without its reasoning too."""
    return _plain(text), _unthought(text)


def _plain(text: Any) -> str:
    """A turn's text with its runs of whitespace as one space and none at its ends: what a per-agent turn
    and the rendered transcript's turn of it share (the transcript drops a final newline, may re-space)."""
    return " ".join(text.split()) if isinstance(text, str) else ""


# At most this many agents whose texts claim the same speakers are matched by trying every assignment (a
# debate has two to four); a larger knot of alike agents is left unmatched (said as ambiguous).
_MAX_KNOT = 6


def _match_speakers(
    agents: list[tuple[int, str | None, list[dict[str, Any]]]],
    transcript: list[dict[str, Any]] | None,
    taken: set[str],
) -> tuple[dict[int, str], bool]:
    """The transcript speaker (not ``taken`` by an agent with a role) of each agent with no role of its own
    (``(index, agent id, messages)``; agents of v0 files have no ``role_assignments``), by ALL of its turns:
    an agent scores, against a speaker, the number of its assistant texts that the speaker says (each of the
    speaker's turns counted once), whitespace aside (``_plain``: model output often ends in a newline the
    transcript leaves out) or else without its ``<think>`` blocks (``_unthought``: a renderer that leaves the
    reasoning out); texts equal whitespace aside count before those equal only without reasoning. Each
    speaker is one agent's, and the assignment with the highest total is taken: a solver and a judge that
    both open with "<answer>4</answer>" are told apart by their later turns, whatever order they are
    written in.

    Where two assignments score alike (agents that say the same texts, their reasoning aside), the texts
    cannot tell: the agents are matched by their ids in order (``agent_0`` the first to speak), never by
    the order written; agents without distinct ids, or more than ``_MAX_KNOT`` of them, are left unmatched.
    Returns (index -> speaker, whether such a tie was met)."""
    said: dict[str, list[str]] = {}
    for m in transcript or []:
        name = m.get("name")
        if m["role"] == "assistant" and name and str(name) not in taken:
            text = _plain(m.get("content"))
            said.setdefault(str(name), []).extend([text] if text else [])
    order = {s: j for j, s in enumerate(said)}  # the speakers in the order they first speak
    options: dict[int, dict[str, tuple[int, int]]] = {}
    for k, _agent_id, msgs in agents:
        texts = [m["content"] for m in msgs if m["role"] == "assistant" and _plain(m.get("content"))]
        scores = {s: _score(texts, said[s]) for s in said} if texts else {}
        options[k] = {s: w for s, w in scores.items() if w[0] > 0}
    ids = {k: agent_id for k, agent_id, _ in agents}
    matched: dict[int, str] = {}
    ambiguous = False
    for knot in _knots(options):
        best = _best_assignments(knot, options)
        if best is None:  # too many alike agents to try every assignment
            ambiguous = True
            continue
        agreed = {k: best[0][i] for i, k in enumerate(knot) if all(b[i] == best[0][i] for b in best)}
        if len(agreed) < len(knot):
            ambiguous = True
            names = [ids[k] for k in knot]
            if all(isinstance(n, str) for n in names) and len(set(names)) == len(names):
                # The first of the best assignments when the agents go in id order and the speakers in the
                # order they first speak: the lowest id takes the first speaker its texts allow.
                rank = sorted(range(len(knot)), key=lambda i: _id_key(str(names[i])))
                keys = [[order.get(b[i] or "", len(order)) for i in rank] for b in best]
                pick = best[min(range(len(best)), key=keys.__getitem__)]
                agreed = dict(zip(knot, pick, strict=True))
        matched.update({k: s for k, s in agreed.items() if s is not None})
    return matched, ambiguous


def _score(texts: list[str], said: list[str]) -> tuple[int, int]:
    """(texts of an agent the speaker says, of them equal whitespace aside): each turn of ``said`` (already
    ``_plain``) matched once, texts equal whitespace aside before those equal only without reasoning."""
    left: dict[str, int] = {}
    for t in said:
        left[t] = left.get(t, 0) + 1
    plain = 0
    rest = []
    for t in texts:
        p = _plain(t)
        if left.get(p, 0) > 0:
            left[p] -= 1
            plain += 1
        else:
            rest.append(t)
    unthought = 0
    for t in rest:
        u = _unthought(t)
        if u and left.get(u, 0) > 0:
            left[u] -= 1
            unthought += 1
    return plain + unthought, plain


def _knots(options: dict[int, dict[str, tuple[int, int]]]) -> list[list[int]]:
    """The agents in groups that claim speakers in common (connected through shared speakers), each in the
    order given; an agent that claims no speaker is in none."""
    parent = {k: k for k in options}

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    first: dict[str, int] = {}
    for k, claims in options.items():
        for s in claims:
            if s in first:
                parent[root(k)] = root(first[s])
            else:
                first[s] = k
    knots: dict[int, list[int]] = {}
    for k, claims in options.items():
        if claims:
            knots.setdefault(root(k), []).append(k)
    return list(knots.values())


def _best_assignments(
    knot: list[int], options: dict[int, dict[str, tuple[int, int]]]
) -> list[tuple[str | None, ...]] | None:
    """Every assignment of the knot's agents to distinct speakers they claim (or none) with the highest total
    score; None for a knot of more than ``_MAX_KNOT`` agents."""
    if len(knot) > _MAX_KNOT:
        return None
    best: list[tuple[str | None, ...]] = []
    top = (-1, -1)

    def walk(i: int, used: tuple[str | None, ...], total: tuple[int, int]) -> None:
        nonlocal best, top
        if i == len(knot):
            if total > top:
                top, best = total, [used]
            elif total == top:
                best.append(used)
            return
        for s, w in options[knot[i]].items():
            if s not in used:
                walk(i + 1, (*used, s), (total[0] + w[0], total[1] + w[1]))
        walk(i + 1, (*used, None), total)

    walk(0, (), (0, 0))
    return best


def _id_key(agent_id: str) -> tuple[tuple[int, int | str], ...]:
    """An agent id's sort key with its numbers as numbers (``agent_2`` before ``agent_10``)."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", agent_id) if p)


_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


def _unthought(text: Any) -> str:
    """``_plain`` of a turn's text without its closed ``<think>`` blocks."""
    return _plain(_THINK.sub(" ", text)) if isinstance(text, str) else ""
