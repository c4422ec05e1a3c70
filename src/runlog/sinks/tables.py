"""Trajectory tables in the spirit of ``full_trajectories`` (seed 004): which samples, and what each row holds.

W&B rejects a table whose column mixes types, skips a history row over about 10 MB at upload and refuses a
log call over 25 MB; so every column here has one type (missing numbers are ``None``, W&B's optional
number; missing text is ``""``), each text cell is cut to a budget with a visible marker, and the rows of
one step are trimmed until the step fits its byte budget.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:  # ``runlog.render`` is imported where a table row is built: a run without samples never needs it
    from ..render.model import Conversation, Turn

# W&B's documented limits: rows per logged table, bytes per history row, bytes per log call.
MAX_TABLE_ROWS = 10_000
MAX_ROW_BYTES = 10 * 1024 * 1024
MAX_LOG_BYTES = 25 * 1024 * 1024
# What runlog allows itself per step, below those limits (JSON escaping can grow text).
TABLE_BYTES_BUDGET = 16 * 1024 * 1024
ROW_BYTES_BUDGET = 8 * 1024 * 1024

BASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("step", "int"),
    ("sample", "str"),
    ("pick", "str"),
    ("input", "str"),
    ("prompt", "str"),
    ("full_trajectory", "str"),
    ("rewards", "str"),
    ("total_reward", "float"),
    ("turns", "int"),
    ("tool_calls", "int"),
    ("tool_responses", "int"),
    ("exception", "str"),
)
TEXT_COLUMNS = ("input", "prompt", "full_trajectory", "rewards", "exception")


@dataclass
class TableData:
    """One logged table: fixed columns, each of one type (``int``, ``float`` or ``str``)."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    row_cuts: list[int] = field(default_factory=list)  # per row (``add``): its text cells cut to the cell budget
    dropped_rows: int = 0  # rows left out to keep the step under its byte budget

    def add(self, row: list[Any], cut: int = 0) -> None:
        """Append a row, with how many of its cells were cut (``table_row``)."""
        del self.row_cuts[len(self.rows) :]  # of rows dropped since
        self.row_cuts += [0] * (len(self.rows) - len(self.row_cuts))  # rows appended to ``rows`` itself
        self.rows.append(row)
        self.row_cuts.append(cut)

    @property
    def cut_cells(self) -> int:
        """The text cells cut to the cell budget in the rows the table holds (not in rows ``fit_step_budget``
        dropped since: those are not logged)."""
        return sum(self.row_cuts[: len(self.rows)])

    def nbytes(self) -> int:
        """An estimate of the serialised size (UTF-8 text plus JSON overhead per cell)."""
        return sum(_row_nbytes(row) for row in self.rows)


def table_columns(components: Sequence[str], roles: Sequence[str]) -> tuple[list[str], list[str]]:
    """Column names and types: the base columns, one per reward component, one per role's reward. Control and
    invisible characters of a component's or role's name are shown as escapes, as in the cells (``escaped_names``:
    a name whose escaped spelling is another column's gets a suffix, never two columns of one name)."""
    names = [f"component/{c}" for c in components] + [f"role/{r}" for r in roles]
    base = [c for c, _ in BASE_COLUMNS]
    esc = escaped_names(base + names)
    cols = base + [esc.get(n, n) for n in names]
    types = [t for _, t in BASE_COLUMNS] + ["float"] * (len(components) + len(roles))
    return cols, types


def escaped_names(names: Iterable[str]) -> dict[str, str]:
    """The names among ``names`` that hold control or invisible characters, with the spelling W&B gets: those
    characters shown as escapes (``\\x1b``, ``\\u202e``), as every runlog output shows them. Where that spelling
    is already taken (another name of ``names`` is spelled so, a literal ``k\\x1b``, or another escaped name
    reads the same) a suffix ``~`` and a hash of the raw name is added: a distinct spelling that stays the same
    from one upload to the next, so no two series share a name and no raw control character is sent."""
    from ..textsafe import visible

    pool = set(names)
    taken = set(pool)
    out: dict[str, str] = {}
    for k in sorted(pool):
        if k.isprintable():
            continue
        shown = visible(k, keep_newlines=False)
        if shown == k:
            continue
        if shown in taken:
            digest = hashlib.sha256(k.encode("utf-8", "surrogatepass")).hexdigest()
            n = 6
            while f"{shown}~{digest[:n]}" in taken:
                n += 2
            shown = f"{shown}~{digest[:n]}"
        taken.add(shown)
        out[k] = shown
    return out


def pick_samples(
    ids: Sequence[str], rewards: Sequence[float | None], n: int, *, seed: int, key: str
) -> list[tuple[str, str]]:
    """Up to ``n`` (sample_id, pick) pairs: the best quarter and the worst quarter by reward, the rest drawn at
    random with a seed derived from ``seed`` and ``key`` (split and step). Deterministic: the same inputs,
    in any order, give the same picks, so a resumed upload logs what an uninterrupted one would have.
    With ids that repeat, use ``pick_indices`` with a unique identity per sample."""
    return [(ids[i], pick) for i, pick in pick_indices(ids, rewards, n, seed=seed, key=key)]


def pick_indices(
    ids: Sequence[Any], rewards: Sequence[float | None], n: int, *, seed: int, key: str
) -> list[tuple[int, str]]:
    """``pick_samples`` as (index, pick) pairs; ``ids`` are sortable identities (a sample id, or a tuple that
    starts with it), unique for a deterministic choice. Never more than ``n`` pairs: with ``n`` 0 none, with
    ``n`` 1 the best sample alone (the one a shrinking budget keeps longest, ``fit_step_budget``), with 2 the best
    and the worst, from 3 on at least one of each and the rest at random."""
    if n <= 0:
        return []
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    if len(ids) <= n:
        return [(i, "all") for i in order]
    # Ranked as ``render-trajectory --best/--worst`` ranks (``render.select._pick``): every reward but NaN and
    # null, +inf the highest and -inf the lowest, ties by identity.
    ranked = {i: float(r) for i in order if _ranked(r := rewards[i])}
    valid = list(ranked)
    k = max(1, n // 4)
    best = sorted(valid, key=lambda i: (-ranked[i], ids[i]))[: min(k, n)]
    chosen = set(best)
    worst = [i for i in sorted(valid, key=lambda i: (ranked[i], ids[i])) if i not in chosen][: min(k, n - len(best))]
    chosen.update(worst)
    rest = [i for i in order if i not in chosen]
    drawn = random.Random(f"runlog:{seed}:{key}").sample(rest, min(len(rest), n - len(chosen)))
    return [(i, "best") for i in best] + [(i, "worst") for i in worst] + [(i, "random") for i in drawn]


def table_row(
    row: dict[str, Any], pick: str, components: Sequence[str], roles: Sequence[str], max_chars: int
) -> tuple[list[Any], int]:
    """One table row from a ``Run.samples`` row, built from the render model (the same conversation that
    ``render-trajectory`` shows, ``model.prepared``: its tool results named as there) as plain text; returns the
    row and how many cells were cut."""
    from ..render.model import prepared, truncate
    from ..render.safe import one_line, safe
    from ..render.sample import conversation_from_row

    conv = prepared(conversation_from_row(row))
    reward = conv.reward
    comps = dict(reward.components) if reward else {}
    role_rewards = {r.role: r.reward for r in reward.roles} if reward else {}
    st = conv.stats
    cut = 0
    texts = {
        "input": safe(row.get("prompt") if isinstance(row.get("prompt"), str) else _first_user(conv.turns)),
        "prompt": plain_turns(
            _prompt_turns(conv.turns, row.get("prompt_turns") if conv.source == "messages" else None)
        ),
        "full_trajectory": plain_turns(conv.turns),
        "rewards": reward_text(conv),
        "exception": safe(conv.exception),
    }
    for name, text in texts.items():
        short = truncate(text, max_chars) or ""
        cut += short != text
        texts[name] = short
    step = row.get("step")
    out: list[Any] = [
        int(step if step is not None else -1),
        one_line(str(row.get("sample_id") or "")),  # a label: escapes as the column names, newlines too
        pick,
        texts["input"],
        texts["prompt"],
        texts["full_trajectory"],
        texts["rewards"],
        _num(reward.total if reward else None),
        st.turns,
        st.tool_calls,
        sum(1 for t in conv.turns if t.result is not None),
        texts["exception"],
    ]
    out += [_num(comps.get(c)) for c in components]
    out += [_num(role_rewards.get(r)) for r in roles]
    return out, cut


def fit_budget(table: TableData, budget: int) -> TableData:
    """Drop rows from the end (random picks first, then worst, best last) until the table fits ``budget``
    bytes and W&B's row limit; the dropped count is kept for the report."""
    fit_step_budget([table], budget)
    return table


# Which rows go first when a step's tables are over budget: random picks (and ``all``), then worst, best last.
_DROP_ORDER = {"random": 0, "all": 0, "worst": 1, "best": 2}


def fit_step_budget(tables: Sequence[TableData], budget: int) -> None:
    """Fit the tables of one step (one per split) into one shared ``budget`` of bytes, and each into W&B's
    row limit, by dropping rows from the ends of the tables: every split's random picks go before any
    split's worst, and every worst before any best; within a kind, the largest table gives first. So no
    split is emptied while another keeps rows of a kind that would have been dropped sooner."""
    sizes = [[_row_nbytes(r) for r in t.rows] for t in tables]
    for t, sz in zip(tables, sizes, strict=True):
        while len(t.rows) > MAX_TABLE_ROWS:
            t.rows.pop()
            sz.pop()
            t.dropped_rows += 1
    totals = [sum(sz) for sz in sizes]
    total = sum(totals)
    pick_col = [t.columns.index("pick") if "pick" in t.columns else None for t in tables]

    def rank(i: int) -> tuple[int, int]:
        c = pick_col[i]
        kind = tables[i].rows[-1][c] if c is not None else "random"
        return _DROP_ORDER.get(kind, 0), -totals[i]

    while total > budget:
        live = [i for i, t in enumerate(tables) if t.rows]
        if not live:
            break
        i = min(live, key=rank)
        tables[i].rows.pop()
        n = sizes[i].pop()
        totals[i] -= n
        total -= n
        tables[i].dropped_rows += 1


def _row_nbytes(row: Sequence[Any]) -> int:
    return sum(len(v.encode("utf-8", "replace")) + 8 if isinstance(v, str) else 24 for v in row)


# A line that runlog writes to mark the structure of a conversation: a turn's head (``[role · speaker]``, ``[tool ·
# NAME] [CALL_ID] (error)``) or a marker at the start of a line. A line of the model's (or a tool's) text that reads
# as one is written with a ``\`` before it, so that a model cannot forge a user turn or a tool call in the text.
_HEAD = re.compile(r"\[[^\[\]\n]*\](?: \[[^\[\]\n]*\])?(?: \(error\))?")
_MARKERS = ("-> tool call ", "(reasoning) ", "(reasoning)", "(data) ", "(arguments are not valid JSON)")


def quote_line(line: str) -> str:
    """``line`` as a line of text under a turn's head: one ``\\`` more before a line that would read as runlog's own
    (a head, a marker, or such a line already quoted), so the quoting is undone by taking one ``\\`` off."""
    rest = line.lstrip("\\").strip()
    if _HEAD.fullmatch(rest) or rest.startswith(_MARKERS):
        return "\\" + line
    return line


def _quoted(text: str) -> list[str]:
    # Split where ``render.safe`` ends a line: at a CRLF too (it writes one as a newline, where a lone CR is an
    # escape), so that a ``\r\n[user]\r\n`` is quoted as the line it becomes.
    return [quote_line(line) for line in text.replace("\r\n", "\n").split("\n")]


def plain_turns(turns: Sequence[Turn]) -> str:
    """A conversation as plain text: one block per turn, ``[role · speaker]`` then its text, tool calls and
    tool results. Give it the turns of ``model.prepared``, whose tool results are named as ``render-trajectory``
    names them. Each reasoning line is marked ``(reasoning)``: the text has no other way to say where the
    reasoning ends and the answer begins. Calls and results carry their call ids (``-> tool call search
    [call_A]: {...}``, ``[tool · search] [call_A]``), so two results of one tool answered out of order are told
    apart. Control and invisible characters are shown as escapes (``render.safe``), and newlines in a label. A line
    of text that reads as a head or a marker is quoted with a ``\\`` (``quote_line``): the model cannot write a
    turn of its own into the text."""
    from ..chat import compact_json
    from ..render.model import pretty_arguments, shown_reasoning
    from ..render.safe import one_line, safe

    blocks = []
    for t in turns:
        result = t.result
        speaker = (result.name or t.speaker) if result is not None else t.speaker
        head = f"[{one_line(t.role)}" + (f" · {one_line(speaker)}" if speaker else "") + "]"
        if result is not None and result.call_id is not None:
            head += f" [{one_line(result.call_id)}]"
        if result is not None and result.is_error:
            head += " (error)"
        lines = [head]
        reasoning = shown_reasoning(t)
        if reasoning:
            lines += [f"(reasoning) {line}".rstrip(" ") for line in safe(reasoning).split("\n")]
        if t.content:
            lines += _quoted(t.content)
        for c in t.tool_calls:
            ok, args = pretty_arguments(c)
            ident = f" [{one_line(c.id)}]" if c.id is not None else ""
            first, *more = args.split("\n")
            lines.append(f"-> tool call {one_line(c.name or '(unnamed tool)')}{ident}: {first}")
            lines += [quote_line(line) for line in more]
            if not ok and c.arguments:
                lines.append("(arguments are not valid JSON)")
        if result is not None:
            lines += _quoted(result.content or "")
        if t.data is not None:
            lines.append(f"(data) {compact_json(t.data)}")
        blocks.append("\n".join(lines))
    return safe("\n\n".join(blocks))


def reward_text(conv: Conversation) -> str:
    """``total 0.3 | correctness 0 | format 1 | solver 0.3 (kl 0.039) | ...``: each figure as ``render-trajectory``
    writes it (``model.shown``: exact, 0.99999 is not 1), NaN as ``NaN``."""
    from ..render.safe import safe

    r = conv.reward
    if r is None:
        return ""
    parts = [f"total {_fmt(r.total)}"]
    parts += [f"{safe(n)} {_fmt(v)}" for n, v in r.components]
    parts += [f"{safe(x.role or 'unknown')} {_fmt(x.reward)} (kl {_fmt(x.kl)})" for x in r.roles]
    return " | ".join(parts)


def _prompt_turns(turns: Sequence[Turn], known: Any = None) -> list[Turn]:
    """The turns the model was given. ``known``: the row's ``prompt_turns`` (how many leading messages are the
    prompt: verifiers, NeMo Gym), given where the turns are its ``messages``, one turn each: those turns, a
    few-shot example's assistant turns and the question after them included. Else the turns before the model's
    first answer: the first turn the model said (``model.is_model_turn``: an assistant, or a speaker's role such
    as ``solver``) ends them, and so does a turn of unknown shape (a transcript not split into turns holds the
    answers too)."""
    from ..render.model import UNKNOWN_ROLES, is_model_turn

    if isinstance(known, int) and not isinstance(known, bool) and known >= 0:
        return list(turns[:known])  # a count past the messages: every one the prompt's, as the texts read it
    out = []
    for t in turns:
        if is_model_turn(t) or t.role.lower() in UNKNOWN_ROLES:
            break
        out.append(t)
    return out


def _first_user(turns: Sequence[Turn]) -> str | None:
    return next((t.content for t in turns if t.role == "user" and t.content), None)


def _ranked(v: object) -> TypeGuard[int | float]:
    """A reward that ranks: a number, +-inf included; not NaN, null or a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def _num(v: Any) -> float | None:
    """A float, or None (W&B's optional number) for a missing value; NaN stays NaN."""
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _fmt(v: float | None) -> str:
    """A figure as the terminal writes it (``render.model.figure_text``)."""
    from ..render.model import figure_text

    return figure_text(v)
