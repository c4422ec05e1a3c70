"""Terminal rendering: a conversation as rich renderables (one panel per turn).

Every string from the data goes through ``safe`` (control and invisible characters made visible) and into
a ``rich.text.Text``, never into markup: ``[bold red]`` in model output is printed as those characters, and
no escape sequence from the data reaches the terminal. Styles come only from this module.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ..schema import NULL_ROLE_LABEL
from .colours import reward_style, role_colour
from .model import (
    MODEL_ROLES,
    Conversation,
    ToolCall,
    Turn,
    cut_labels,
    figure_text,
    pretty_arguments,
    shown_reasoning,
    turn_segments,
)
from .safe import one_line, safe

MAX_TREE_NODES = 400
# Gap between the reward and the trajectory tables when they stand side by side.
SUMMARY_GAP = 4


@dataclass
class ConversationView:
    """A conversation that draws itself: ``console.print(ConversationView(conv))``."""

    conv: Conversation
    show_think: bool = True

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # Labels cut at LABEL_CHARS (a 2 MB sample id was printed whole); --format json keeps them whole.
        conv = cut_labels(self.conv)
        yield header(conv)
        for turn in conv.turns:
            yield TurnPanel(turn, self.show_think)
        if conv.exception:
            yield Panel(Text(safe(conv.exception)), title=Text("exception", style="bold red"), border_style="red")
        yield summary(conv)


def render_all(convs: Iterable[Conversation], *, show_think: bool = True) -> Group:
    """Several conversations one after another, separated by a blank line."""
    parts: list[RenderableType] = []
    for i, conv in enumerate(convs):
        if i:
            parts.append(Text(""))
        parts.append(ConversationView(conv, show_think))
    return Group(*parts)


def header(conv: Conversation) -> Group:
    """A rule, then the sample's identity and total reward (wrapped, never cut), then its file."""
    t = Text()
    t.append("sample ", style="bold")
    t.append(one_line(conv.sample_id or "?"), style="bold cyan")
    for label, value in (("step", conv.step), ("split", conv.split), ("env", conv.env_name), ("group", conv.group_id)):
        if value is not None:
            t.append(f"  {label} ")
            t.append(one_line(str(value)), style="bold")
    if conv.reward is not None:
        t.append("  reward ")
        t.append_text(fmt(conv.reward.total, reward=True))
    parts: list[RenderableType] = [Rule(style="cyan"), t]
    if conv.file:
        parts.append(Text(f"{one_line(conv.file)}  (conversation from {one_line(conv.source)})", style="dim"))
    return Group(*parts)


def turn_colour(turn: Turn) -> str:
    """A model turn takes its speaker's colour (solver, verifier, judge...), any other turn its role's."""
    if turn.speaker and turn.role.lower() in MODEL_ROLES:
        return role_colour(turn.speaker)
    return role_colour(turn.role)


def turn_title(turn: Turn, width: int | None = None) -> Text:
    """``role · speaker``; a tool result is titled with the tool's name (``python · result``). With ``width``,
    a title longer than that has its name (or speaker) cut in the middle, marked ``…``, so that its end stays
    (``· error``, and the end of a long MCP tool name, where two names differ): rich crops a panel's title
    without a mark."""
    # Each part carries its own style: a Panel lets a title's base style override the styles of its parts.
    result = turn.result
    if result is not None:
        name = one_line(result.name or turn.speaker or "tool")
        tail = Text()
        if result.is_error:
            tail.append(" · error", style="bold red")
        else:
            tail.append(" · result", style="dim")
        head = Text()
        name_style = f"bold {role_colour('tool')}"
    else:
        head = Text()
        head.append(one_line(turn.role), style=f"bold {role_colour(turn.role)}")
        name = one_line(turn.speaker) if turn.speaker else ""
        if name:
            head.append(" · ")
        tail = Text()
        name_style = f"bold {turn_colour(turn)}"
    if width is not None and head.cell_len + len(name) + tail.cell_len > width:
        room = width - head.cell_len - tail.cell_len - 1
        # With no room for a name, its mark alone (the head itself past the width is cut by rich).
        name = name[: (room + 1) // 2] + "…" + name[len(name) - room // 2 :] if room >= 2 else "…"
    title = head.copy()
    if name:
        title.append(name, style=name_style)
    title.append_text(tail)
    return title


@dataclass
class TurnPanel:
    """A turn's panel at the width it is drawn at: a title too long for it is cut with a mark, and then written
    whole as the panel's first line (``turn_title``)."""

    turn: Turn
    show_think: bool = True

    def panel(self, width: int) -> Panel:
        room = max(width - 6, 1)  # rich keeps a title within the corners, a space each side and one more
        full = turn_title(self.turn)
        if full.cell_len <= room:
            return turn_panel(self.turn, self.show_think)
        return turn_panel(self.turn, self.show_think, title=turn_title(self.turn, room), label=full)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.panel(options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.panel(options.max_width))


def turn_panel(turn: Turn, show_think: bool = True, *, title: Text | None = None, label: Text | None = None) -> Panel:
    """A turn in a panel titled ``turn_title``, or ``title`` with the whole ``label`` as its first line."""
    body: list[RenderableType] = []
    if label is not None:
        body.append(label)
    reasoning = shown_reasoning(turn)
    if reasoning and show_think:
        body.append(ReasoningView(safe(reasoning)))
    if turn.content:
        body.append(content_text(turn, show_think))
    for call in turn.tool_calls:
        body.append(call_text(call))
    result = turn.result
    if result is not None:
        body.append(Text(safe(result.content or ""), style="red" if result.is_error else ""))
    if turn.data is not None:
        body.append(json_tree(turn.data))
    subtitle = None
    if result is not None and result.call_id:
        subtitle = Text(one_line(result.call_id), style="dim")
    border = "red" if result is not None and result.is_error else turn_colour(turn)
    empty = not body or (label is not None and len(body) == 1)
    if empty:
        body.append(Text("(empty)", style="dim"))
    return Panel(
        Group(*body),
        title=turn_title(turn) if title is None else title,
        title_align="left",
        subtitle=subtitle,
        subtitle_align="right",
        border_style=border,
    )


@dataclass
class ReasoningView:
    """A turn's reasoning, ``reasoning: TEXT`` when it is one line at the width given, else in a box of its
    own titled ``reasoning``: in plain text (``-o FILE``, a pipe) only the dim style told wrapped or multi-line
    reasoning from the answer under it, and the box's border marks every line of it and where it ends."""

    text: str  # already ``safe``

    def renderable(self, width: int) -> RenderableType:
        line = Text("reasoning: ", style="dim bold") + Text(self.text, style="dim italic")
        if "\n" not in self.text and "\t" not in self.text and line.cell_len <= width:
            return line
        return Panel(
            Text(self.text, style="dim italic"),
            title=Text("reasoning", style="dim bold"),
            title_align="left",
            border_style="dim",
        )

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.renderable(options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.renderable(options.max_width))


def content_text(turn: Turn, show_think: bool = True) -> Text:
    """A turn's content with the model's ``<think>`` blocks dimmed (or left out)."""
    out = Text()
    for segment, thinking in turn_segments(turn):
        if thinking:
            if show_think:
                out.append(safe(segment), style="dim italic")
        else:
            out.append(safe(segment))
    return out


def call_text(call: ToolCall) -> Text:
    """``→ name  id`` and the arguments (``model.pretty_arguments``)."""
    t = Text("→ ", style="bold yellow")
    t.append(one_line(call.name or "(unnamed tool)"), style="bold yellow")
    if call.id:
        t.append(f"  {one_line(call.id)}", style="dim")
    ok, args = pretty_arguments(call)
    if args:
        t.append("\n" + safe(args))
    if not ok and call.arguments:
        t.append("\n(arguments are not valid JSON)", style="red")
    return t


def tree_nodes(value: Any) -> int:
    """How many nodes ``json_tree`` draws for ``value`` uncapped: one per key or item, nested ones included."""
    count = 0
    stack = list(value.values()) if isinstance(value, dict) else list(value) if isinstance(value, list) else [value]
    while stack:
        v = stack.pop()
        count += 1
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return count


def json_tree(value: Any, label: str = "data (shape not recognised: shown as JSON)") -> Tree:
    """An unknown JSON value as a tree, capped at ``MAX_TREE_NODES`` nodes; past the cap, a last line says how many
    were left out and where the whole value is (``-f json``, ``-f html``)."""
    tree = Tree(Text(label, style="bold"))
    budget = [MAX_TREE_NODES]

    def add(node: Tree, key: str, v: Any) -> None:
        if budget[0] <= 0:
            return
        budget[0] -= 1
        if isinstance(v, dict):
            child = node.add(Text(one_line(key) + " {}", style="cyan"))
            for k, x in v.items():
                add(child, str(k), x)
        elif isinstance(v, list):
            child = node.add(Text(one_line(key) + f" [{len(v)}]", style="cyan"))
            for i, x in enumerate(v):
                add(child, f"[{i}]", x)
        else:
            line = Text(one_line(key) + ": ", style="cyan")
            line.append(safe(json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v))
            node.add(line)

    if isinstance(value, dict):
        for k, x in value.items():
            add(tree, str(k), x)
    elif isinstance(value, list):
        for i, x in enumerate(value):
            add(tree, f"[{i}]", x)
    else:
        add(tree, "value", value)
    if budget[0] <= 0:
        left = tree_nodes(value) - MAX_TREE_NODES
        if left > 0:
            tree.add(
                Text(
                    f"… {left:,} more node(s) not shown (the terminal draws {MAX_TREE_NODES}): "
                    "-f json or -f html shows the whole value",
                    style="yellow",
                )
            )
    return tree


@dataclass
class Summary:
    """The reward table beside the trajectory statistics, or under them when the width does not hold both
    side by side: a label is never cut."""

    conv: Conversation

    def tables(self) -> tuple[Table, Table]:
        return reward_table(self.conv), stats_table(self.conv)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        left, right = self.tables()
        need = sum(Measurement.get(console, options, t).maximum for t in (left, right)) + SUMMARY_GAP
        if need <= options.max_width:
            grid = Table.grid(padding=(0, SUMMARY_GAP))
            grid.add_column()
            grid.add_column()
            grid.add_row(left, right)
            yield grid
        else:
            # Too narrow even for the reward table alone: one value per line, so that neither a label nor a
            # number is cut (rich would give the label column no width, or crop the numbers).
            natural = Measurement.get(console, options.update(max_width=1_000_000), left).maximum
            yield left if natural <= options.max_width else reward_records(self.conv)
            yield Text("")
            yield right

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        left, right = (Measurement.get(console, options, t) for t in self.tables())
        return Measurement(max(left.minimum, right.minimum), left.maximum + right.maximum + SUMMARY_GAP)


def summary(conv: Conversation) -> Summary:
    """Reward breakdown (total, components, per role with KL) beside the trajectory statistics."""
    return Summary(conv)


def reward_table(conv: Conversation) -> Table:
    t = Table(title="reward", title_justify="left", show_header=False, box=None, padding=(0, 1))
    t.add_column(style="bold", overflow="fold")  # a long component name folds; the numbers keep their width
    t.add_column(justify="right", no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    r = conv.reward
    if r is None:
        t.add_row("(none)", "", "")
        return t
    t.add_row("total", fmt(r.total, reward=True), "")
    for name, value in r.components:
        t.add_row(Text(one_line(name), style=""), fmt(value, reward=True), "")
    if r.roles:
        t.add_row(Text("role", style="dim"), Text("reward", style="dim"), Text("KL", style="dim"))
        for role in r.roles:
            label = Text(one_line(role.role or NULL_ROLE_LABEL), style=f"bold {role_colour(role.role)}")
            t.add_row(label, fmt(role.reward, reward=True), fmt(role.kl))
    return t


def reward_records(conv: Conversation) -> Table:
    """The reward table as (label, value) lines, a role's reward and KL on lines of their own."""
    t = Table(title="reward", title_justify="left", show_header=False, box=None, padding=(0, 1))
    t.add_column(style="bold", overflow="fold")
    t.add_column(justify="right", no_wrap=True)
    r = conv.reward
    if r is None:
        t.add_row("(none)", "")
        return t
    t.add_row("total", fmt(r.total, reward=True))
    for name, value in r.components:
        t.add_row(Text(one_line(name), style=""), fmt(value, reward=True))
    for role in r.roles:
        name = one_line(role.role or NULL_ROLE_LABEL)
        style = f"bold {role_colour(role.role)}"
        t.add_row(Text(f"{name} reward", style=style), fmt(role.reward, reward=True))
        t.add_row(Text(f"{name} KL", style=style), fmt(role.kl))
    return t


def stats_table(conv: Conversation) -> Table:
    st = conv.stats
    t = Table(title="trajectory", title_justify="left", show_header=False, box=None, padding=(0, 1))
    t.add_column(style="bold", overflow="fold")
    t.add_column(justify="right", overflow="fold")
    t.add_row("turns", f"{st.turns:,}")
    t.add_row("assistant turns", f"{st.assistant_turns:,}")
    t.add_row("tool calls", f"{st.tool_calls:,}")
    t.add_row("tool errors", Text(f"{st.tool_errors:,}", style="red" if st.tool_errors else ""))
    t.add_row("characters", f"{st.chars:,}")
    for note in conv.notes:
        t.add_row("note", Text(one_line(note), style="yellow", justify="left"))
    return t


def fmt(v: float | None, *, reward: bool = False) -> Text:
    """A number as ``model.shown`` writes it; a reward coloured by ``colours.reward_style`` (1 green, 0 red,
    negative bold red)."""
    if v is None:
        style = "dim"
    elif not math.isfinite(v):
        style = "red"
    else:
        style = reward_style(v) if reward else ""
    return Text(figure_text(v), style=style)
