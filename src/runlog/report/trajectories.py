"""The report's trajectories section: for each role, the best and the worst sample at the last step, each
sample drawn once with every title it holds, and the opening messages all cards share folded once."""

from __future__ import annotations

import math
from typing import Any

from ..analysis.series import RunSeries
from ..render.html_page import turn_html
from ..render.model import LABEL_CHARS
from ..render.safe import one_line
from ..run import Run
from .template import cut, e, e1, num, table

MAX_CHARS = 3000  # per text in the rendered trajectories: a report is for reading, not for archiving


def trajectories(s: RunSeries, run: Run | None = None) -> str:
    """The best and the worst sample at the last step by each role's reward (or the total): an index table
    (one row per role, which anchors the findings' links), then each chosen sample once, titled with every
    place it holds ("best by solver's reward (1)", "worst by judge's reward (0)"). Opening messages that are
    the same in every card (a system prompt, a shared task) are shown once, folded. ``run``: the run to read
    the samples from (the report's text twin of ``s.run``), else ``s.run``."""
    from ..errors import RunlogError
    from ..render import Criteria, conversation_from_row, prepared, select_samples
    from ..render.model import cut_labels
    from ..render.select import FELL_BACK

    source = run or s.run
    roles: list[str | None] = [r for r in s.roles if r is not None] or [None]
    cards: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
    index_rows: list[list[str]] = []
    steps, empty = _last_step(s)
    # The selection's fallback from an unreadable last step, said once; or the last steps that hold no sample.
    notes: list[str] = [empty] if empty else []
    scope = ""
    for role in roles:
        who = f"{role}'s reward" if role else "total reward"
        try:
            sel = select_samples(source, Criteria(split=s.split, steps=steps, best=1, worst=1, role=role))
        except RunlogError as exc:
            # A row all the same: the findings link to this role's cell, and the reader learns why it is empty.
            why = _not_logged(s, source, role, steps) or _unavailable(exc, source, s.split)
            index_rows.append([_role_cell(role), why, "", "", ""])
            continue
        # Each sample whole (to tell which opening messages the cards share: two prompts cut alike at MAX_CHARS
        # are not one prompt), and cut for display.
        raws = [conversation_from_row(r, "auto") for r in sel.rows]
        whole = [prepared(c).turns for c in raws]
        convs = [prepared(c, max_chars=MAX_CHARS) for c in raws]
        scope = sel.scope
        notes += [n for n in (_text_only(s, x) for x in sel.notes if x.startswith(FELL_BACK)) if n not in notes]
        if not convs:
            index_rows.append([_role_cell(role), '<span class="note">no sample with a valid reward</span>', "", "", ""])
            continue
        # The selection lists the best, then the worst; one sample when they are the same one. "The same one" is
        # a fact about this role's ranking, so it goes with this role's title, not with the card (the card's
        # sample may hold other places, for other roles).
        same = sel.matched if len(convs) == 1 else None
        picks = [("best", 0), ("worst", len(convs) - 1)]
        cells = []
        for place, i in picks:
            conv = convs[i]
            key = (conv.file, conv.sample_id, conv.occurrence)  # an id shared by a prompt group is not one sample
            # Labels (sample id, tool names...) cut at LABEL_CHARS once the sample is known: a 2 MB id was
            # written whole twice. The key above is the whole id, so that two ids cut alike stay two cards.
            card = cards.setdefault(
                key, {"conv": cut_labels(conv), "whole": whole[i], "titles": [], "n": len(cards) + 1}
            )
            value = _reward_of(conv, role)
            if same is None or place == "best":
                card["titles"].append(("both" if same is not None else place, who, value, same))
            cells += [f'<a href="#card-{card["n"]}">{e1(card["conv"].sample_id or "?")}</a>', value_cell(value)]
        index_rows.append([_role_cell(role), *cells])
    out = [f'<p class="missing">{e(n[:1].upper() + n[1:])}.</p>' for n in notes]
    if not cards:
        out.append('<p class="note">No sample with a valid reward at the last step.</p>')
    else:
        out.append(
            f'<p class="note">{e1(scope)}: for each role, the sample its reward ranks best and the one it ranks '
            "worst; a sample chosen for several roles is shown once, with all its titles.</p>"
        )
    # The table even without a card: each role's row is the anchor its findings link to.
    out.append(table(["ranked by", "best sample", "its reward", "worst sample", "its reward"], index_rows, text=(1, 3)))
    if not cards:
        return "\n".join(out)
    convs = [c["conv"] for c in cards.values()]
    shared = _shared_opening([c["whole"] for c in cards.values()]) if len(convs) > 1 else 0
    if shared:
        kinds = ", ".join(t.role for t in convs[0].turns[:shared])
        out.append(
            f'<details class="shared"><summary>The first {shared} message{"s" if shared > 1 else ""} ({e1(kinds)}) '
            f"{'are' if shared > 1 else 'is'} the same in all {len(convs)} trajectories below: shown once here"
            "</summary>" + "\n".join(turn_html(t, fold_system=False) for t in convs[0].turns[:shared]) + "</details>"
        )
    for card in cards.values():
        out.append(_card(card, shared))
    return "\n".join(out)


def _text_only(s: RunSeries, note: str) -> str:
    """The selection's note of a last step that could not be read (``FELL_BACK``), said of its text where its
    numbers were read (the report's text twin failed on its texts alone: its samples are in the summary, the
    tiles and the plots), where "the last step, 10, could not be read" contradicted its 8 samples counted."""
    import re

    from ..render.select import FELL_BACK

    found = re.match(re.escape(FELL_BACK) + r"(-?\d+), could not be read .*showing step (-?\d+)", note)
    if found is None or "step" not in s.per_step.columns:
        return note
    last, shown = int(found.group(1)), int(found.group(2))
    if last not in set(s.per_step["step"].to_list()):
        return note
    return (
        f"the last step, {last}, could not be read in full: its texts could not be read (its files' problems are "
        f"listed), its samples are counted in the summary and the plots: showing step {shown}, the last step whose "
        "texts can be read"
    )


def _last_step(s: RunSeries) -> tuple[str, str | None]:
    """The step the cards are of: ``last`` (the selection's: the last step a sample file of the split names,
    falling back from one that cannot be read), except where files that can be read name later steps than
    any sample has (files of no rows: a step whose samples were all filtered out). Those steps have nothing
    to rank: the cards are of the last step that has samples (the tiles' last step), and the note says so.
    Without the note, "no sample with a valid reward at the last step" read as rewards that were null."""
    last = s.per_role["step"].max() if "step" in s.per_role.columns else None
    if not isinstance(last, int):
        return "last", None
    later = [
        f
        for f in s.run.files
        if f.kind == "samples" and f.split in (None, s.split) and any(x > last for x in f.all_steps())
    ]
    # Unreadable ones: the selection's own fallback says which step it skipped. A file of no split in its name
    # that holds rows: they may be another split's, whose steps are not this split's (left to the selection).
    if not later or any(not f.readable or (f.split is None and f.rows != 0) for f in later):
        return "last", None
    empty = sorted({x for f in later for x in f.all_steps() if x > last})
    which = f"step {empty[0]}" if len(empty) == 1 else f"steps {', '.join(map(str, empty[:5]))}"
    which += f" (+{len(empty) - 5} more)" if len(empty) > 5 else ""
    verb = "has" if len(empty) == 1 else "have"
    split = cut(s.split)
    return str(last), f"{which} of split {split} {verb} no samples: the cards are of step {last}, the last that has"


def value_cell(v: float | None) -> str:
    """One sample's figure as its card shows it (``render.model.shown``: 0.30000000000000004 is not 0.3, and
    the card and its title say the same); null, NaN and ±inf as every cell of the page (``num``)."""
    from ..render.model import shown

    return shown(v) if isinstance(v, float) and math.isfinite(v) else num(v)


def _role_cell(role: str | None) -> str:
    name = f"{role}'s reward" if role else "total reward"
    return f'<span id="{role_slug(role)}">{e1(name)}</span>'


def _reward_of(conv: Any, role: str | None) -> float | None:
    if conv.reward is None:
        return None
    if role is None:
        return conv.reward.total
    return next((x.reward for x in conv.reward.roles if x.role == role), None)


def _shared_opening(turns: list[list[Any]]) -> int:
    """How many leading turns every conversation has in common (a turn equal in role, text, calls, result).
    ``turns``: each conversation's turns whole, before any cut (texts that differ after the cut are not the
    same text)."""
    n = 0
    first = turns[0]
    while n < len(first) - 1 and all(len(t) > n + 1 and t[n] == first[n] for t in turns[1:]):
        n += 1
    return n


def _not_logged(s: RunSeries, run: Run, role: str | None, steps: str) -> str | None:
    """Why ``role`` has no card where no sample of the cards' step logs it at all (a judge run every other step):
    no reward of it, not even a null or NaN one, which ``select_samples``' "none has a valid reward (all null or
    NaN)" read as, beside a summary counting no null and no NaN. With the last step that logs it, and the command
    that shows its best and worst there. None where the role is logged at that step (its rewards are all null or
    NaN: ``_unavailable`` says so). The cards' step is the selection's (``steps``, with its fallback from a step
    that cannot be read), asked of ``select_samples`` again by index, which ranks nothing and so does not refuse."""
    from ..errors import RunlogError
    from ..render import Criteria, select_samples

    if role is None or "role" not in s.per_role.columns:
        return None
    try:
        sel = select_samples(run, Criteria(split=s.split, steps=steps, index=0))
    except RunlogError:
        return None
    step = sel.rows[0].get("step") if sel.rows else None
    if not isinstance(step, int):
        return None
    mine = s.per_role.filter(s.per_role["role"] == role)
    if step in mine["step"].to_list():
        return None
    earlier = [x for x in mine["step"].drop_nulls().to_list() if x < step]
    name = cut(role)
    said = f"{name} is not logged at step {step} (no sample there has a {name}'s reward, not even a null or NaN one)"
    if not earlier:
        return f'<span class="note">no card: {e(said)}</span>'
    last = max(earlier)
    where = "" if not s.split else f" --split {quoted(s.split) or 'SPLIT'}"
    who = quoted(role) or "ROLE"
    path = quoted(run_path(run)) or "RUN"
    command = f"runlog render-trajectory {path}{where} --steps {last} --role {who} --best 1 --worst 1"
    unnamed = (
        " (ROLE: the role's name, which has invisible characters or is too long to show as it pastes)"
        if who == "ROLE"
        else ""
    )
    return (
        f'<span class="note">no card: {e(said)}; the last step that logs it is {last}: '
        f"<code>{e1(command, limit=None)}</code>{unpasted(run, s.split)}{unnamed}</span>"
    )


def _unavailable(exc: Exception, run: Run, split: str | None) -> str:
    """Why a role has no card, in the report's words. ``select_samples`` words its refusal for
    ``render-trajectory``, whose ``--index N`` / ``--random N`` it offers: the report takes neither, so the
    advice is the render-trajectory command that does (of this run's path: ``run_path``)."""
    reason = str(exc)
    if "--index N" not in reason and "--random N" not in reason:
        return f'<span class="note">no card: {e(reason)}</span>'
    reason = reason.split(" to rank by ", 1)[0].split(": use ", 1)[0]
    where = "" if not split else f" --split {quoted(split) or 'SPLIT'}"
    command = f"runlog render-trajectory {quoted(run_path(run)) or 'RUN'}{where} --index N"
    return (
        f'<span class="note">no card: {e(reason)}, so nothing to rank by it; to see these samples: '
        f"<code>{e1(command, limit=None)}</code> (or <code>--random N</code>){unpasted(run, split)}</span>"
    )


def run_path(run: Run) -> str:
    """The path a command is given to read what the report read: the file of a run of one file (an inspect_ai
    log given alone: its folder, ``run.root``, holds other dumps, which a command given the folder reads too;
    one step file of a run, read alone), else the run's folder."""
    if len(run.files) == 1:
        return str(run.root / run.files[0].path)
    return str(run.root)


def quoted(text: str) -> str | None:
    """``text`` quoted for a shell, as a command on the page offers it; None where the page cannot show it as
    it is: its control or invisible characters are shown as escapes (``\\u2028``), or it is long enough to be
    cut (``cut``), so that what is pasted names nothing."""
    import shlex

    return shlex.quote(text) if one_line(text) == text and len(text) <= LABEL_CHARS else None


def unpasted(run: Run, split: str | None) -> str:
    """What a command on the page stands ``RUN`` or ``SPLIT`` for, where it cannot show the name to paste
    (``quoted``); "" where it names both."""
    said = []
    why = "has invisible characters or is too long to show as it pastes"
    if quoted(run_path(run)) is None:
        said.append(f"RUN: the path given to <code>runlog report</code>, which {why}")
    if split and quoted(split) is None:
        listing = f"runlog inspect {quoted(run_path(run)) or 'RUN'} --format json"
        said.append(
            f"SPLIT: the split's name {why}; <code>{e1(listing, limit=None)}</code> gives it exactly, a key of "
            "<code>rows_by_split</code>"
        )
    return f" ({'; '.join(said)})" if said else ""


def _card(card: dict[str, Any], shared: int) -> str:
    import dataclasses

    from ..render.html_page import conversation_parts, meta_html, summary_html

    conv = card["conv"]
    titles = []
    whys: dict[str, list[str]] = {}  # why, for each role whose best and worst are this sample
    for place, who, value, same in card["titles"]:
        label = "best and worst" if place == "both" else place
        css = "best" if place == "both" else place
        titles.append(f'<span class="place {css}">{label}</span> by {e1(who)} ({value_cell(value)})')
        if same is not None:
            reason = "it is the only one with a valid reward" if same == 1 else "every sample ranks the same"
            whys.setdefault(reason, []).append(e1(who))
    why = "".join(
        f'<p class="note">By {" and ".join(whos)}, the best and the worst are this one sample: {reason}.</p>'
        for reason, whos in whys.items()
    )
    # The turns after the shared opening; the reward and trajectory tables of the whole sample.
    *turns, _ = conversation_parts(dataclasses.replace(conv, turns=conv.turns[shared:]), fold_system=True)
    kinds = ", ".join(t.role for t in conv.turns[:shared])
    folded = (
        f'<p class="note">Opening messages ({e1(kinds)}): shared by every card, folded above.</p>' if shared else ""
    )
    return "\n".join(
        [
            f'<section class="traj" id="card-{card["n"]}">',
            f"<h3>sample {e1(conv.sample_id or '?')}</h3>",
            '<div class="titles">' + "<br>".join(titles) + "</div>",
            why,
            meta_html(conv),
            folded,
            *turns,
            summary_html(conv),
            "</section>",
        ]
    )


def role_slug(role: str | None) -> str:
    """An id from a role name: only [a-z0-9-], so that no data reaches an attribute unescaped."""
    if role is None:
        return "traj-run"
    import hashlib

    out = "".join(ch if ch.isascii() and ch.isalnum() else "-" for ch in role.lower())
    return f"traj-{out[:40]}-{hashlib.sha1(role.encode()).hexdigest()[:8]}"
