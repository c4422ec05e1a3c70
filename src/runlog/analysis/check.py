"""Filter values checked against what a run has, in one place for every command.

A ``--split``, ``--role``, ``--steps`` or ``--keys`` value that matches nothing in the run is a usage error
(exit 2) whose message lists the values the run has, instead of an empty table and exit 0. What the run has
is found without reading a text column: splits and steps from file names and footers (the ``step`` and
``split`` columns only where a layout does not tell them), roles from ``Run.role_names`` (manifests,
footers), scalar keys and steps from the scalar view.
"""

from __future__ import annotations

import fnmatch
import math
import shlex
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._lazy import pl
from ..chat import INPUT_ROLES
from ..errors import RunlogError, UsageError, did_you_mean
from .filters import Filters, StepRange, item_contains, item_text

if TYPE_CHECKING:
    from ..formats.base import FileInfo
    from ..run import Run

MAX_LISTED = 20  # scalar keys named in a message
OPEN_THREADS = 16  # runs of a fleet opened at once to learn their values


@dataclass
class RunValues:
    """What one run (or a fleet of runs, merged) has: steps per split (key None: rows without a split) and
    role names. ``fleet``: the values are the union over the runs of a fleet (messages say so)."""

    steps: dict[str | None, set[int]] = field(default_factory=dict)
    roles: list[str] = field(default_factory=list)
    fleet: bool = False

    @property
    def splits(self) -> list[str]:
        return sorted(s for s in self.steps if s is not None)

    def merge(self, other: RunValues) -> None:
        for split, steps in other.steps.items():
            self.steps.setdefault(split, set()).update(steps)
        self.roles += [r for r in other.roles if r not in self.roles]


def sample_values(run: Run, filters: Filters | None = None, files: list[FileInfo] | None = None) -> RunValues:
    """The splits, steps and roles of the run's readable sample files (or of ``files``). With ``filters``,
    only what they need is looked up (roles only for ``--role``, steps only for ``--split``/``--steps``)."""
    need_steps = filters is None or bool(filters.splits) or not filters.steps.unbounded
    need_roles = filters is None or bool(filters.roles)
    wanted = filters.roles if filters is not None else ()
    return RunValues(steps_per_split(run, files) if need_steps else {}, known_roles(run, wanted) if need_roles else [])


def steps_per_split(run: Run, files: list[FileInfo] | None = None) -> dict[str | None, set[int]]:
    """The steps of each split in the run's readable sample files (or in ``files``), from names and footers;
    the ``split`` and ``step`` columns are read only from files whose name and footer do not tell."""
    from ..run import Run

    files = [f for f in (run.files if files is None else files) if f.kind == "samples" and f.readable]
    out: dict[str | None, set[int]] = {}
    unknown = []
    for f in files:
        steps = f.all_steps()
        if f.split is None or not steps:
            unknown.append(f)  # the name and footer do not tell: read the step and split columns
            continue
        out.setdefault(f.split, set()).update(steps)
    if unknown:
        sub = Run(root=run.root, files=unknown, ctx=run.ctx)
        [df] = sub.collect(lambda: [sub.samples.select("split", "step").unique()])
        for split, step in df.iter_rows():
            found = out.setdefault(split, set())
            if step is not None:
                found.add(step)
    return out


def known_roles(run: Run, wanted: Iterable[str] = ()) -> list[str]:
    """The run's role names: the manifest's and footers'; the data's too when those name none, or lack a
    ``wanted`` one (a role only a process other than 0 wrote is in the data, not in the manifest process 0
    wrote: ``--role`` of it must not be refused as a typo)."""
    names = run.role_names()
    if (names and all(r in names for r in wanted)) or not any(f.kind == "samples" and f.readable for f in run.files):
        return names
    # The role names of the per-role data (numbers and names only).
    [df] = run.collect(lambda: [run.roles.select(pl.col("role").drop_nulls().unique(maintain_order=True))])
    return [*names, *(str(r) for r in df["role"].to_list() if str(r) not in names)]


def check_filters(run: Run | RunValues, filters: Filters) -> None:
    """``UsageError`` (exit 2) for the first ``--split``, ``--role`` or ``--steps`` value that matches nothing
    in ``run``; its message lists what the run has."""
    if not filters.active:
        return
    values = run if isinstance(run, RunValues) else sample_values(run, filters)
    check_splits(values, filters.splits)
    check_roles(values, filters.roles)
    check_steps(values, filters.steps, filters.splits)


def _has(values: RunValues) -> str:
    return "the runs of the fleet have" if values.fleet else "this run has"


def _nothing(values: RunValues) -> str:
    return "no run of the fleet has per-sample data" if values.fleet else "this run has no per-sample data"


def check_splits(values: RunValues, splits: Iterable[str]) -> None:
    have = values.splits
    for split in splits:
        if split in have:
            continue
        if not values.steps:
            raise UsageError(f"--split {split!r}: {_nothing(values)}")
        if not have:
            raise UsageError(f"--split {split!r}: {_has(values)} no split recorded (leave --split out)")
        raise UsageError(f"--split {split!r}: {_has(values)} split(s) {', '.join(have)}{did_you_mean(split, have)}")


def check_roles(values: RunValues, roles: Iterable[str]) -> None:
    for role in roles:
        if role not in values.roles:
            whose = "the fleet's roles are" if values.fleet else "this run's roles are"
            names = ", ".join(values.roles) or "(none recorded)"
            raise UsageError(f"--role {role!r}: {whose} {names}{did_you_mean(role, values.roles)}")


def check_steps(values: RunValues, steps: StepRange, splits: Sequence[str] = (), has: str | None = None) -> None:
    """Each item of ``steps`` must select a step of the chosen splits (every split when none is chosen).
    ``has``: who has the steps, in the message (default: this run, or the runs of the fleet)."""
    if steps.unbounded:
        return
    if not values.steps and has is None:
        raise UsageError(f"--steps {steps.shown}: {_nothing(values)}")
    has = has or _has(values)
    chosen = {s: v for s, v in values.steps.items() if not splits or s in splits}
    known = set().union(*chosen.values()) if chosen else set()
    if not known:
        where = f" in split {', '.join(splits)}" if splits else ""
        raise UsageError(f"--steps {steps.shown}: {has} no steps{where}")
    for item in steps.items:
        if not any(item_contains(item, s) for s in known):
            which = "" if len(steps.items) == 1 else f"{item_text(item)} matches no step; "
            if item[1] is not None and item[1] < 0:  # `--steps -1` meant as Python's last: not a step number
                which += "steps are numbered from 0 and none is negative; "
            raise UsageError(f"--steps {steps.shown}: {which}{has} steps {describe_steps(chosen, missing=True)}")


def describe_steps(steps: dict[str | None, set[int]], *, missing: bool = False) -> str:
    """``0..31 (train), 0..20 every 10 (eval)``: train first, then the other splits by name. ``missing``: an
    irregular split's steps missing on its cadence are named (``0..19 (train, 19 steps; missing 11)``)."""
    order = sorted(steps, key=lambda s: (s is None, s != "train", s or ""))
    parts = []
    for split in order:
        span, count = _span(sorted(steps[split]), missing)
        if not span:
            continue
        labels = [x for x in (split, count) if x]
        parts.append(f"{span} ({', '.join(labels)})" if labels else span)
    return ", ".join(parts) or "(none)"


def _span(steps: list[int], missing: bool = False) -> tuple[str, str]:
    """(``0..31`` or ``0..20 every 10``, and ``5 steps`` when the steps are irregular)."""
    if not steps:
        return "", ""
    if len(steps) == 1:
        return str(steps[0]), ""
    gaps = {b - a for a, b in zip(steps, steps[1:], strict=False)}
    if gaps == {1}:
        return f"{steps[0]}..{steps[-1]}", ""
    if len(gaps) == 1:
        return f"{steps[0]}..{steps[-1]} every {gaps.pop()}", ""
    # Irregular: the steps missing on the run's cadence are named (a few) or counted, so that a step asked for
    # in a gap (``--steps 11`` of 0..10, 12..19) reads as missing, not as inside the range said.
    every = math.gcd(*gaps)
    lost = sorted(set(range(steps[0], steps[-1] + 1, every)) - set(steps))
    span = f"{steps[0]}..{steps[-1]}" + (f" every {every}" if every > 1 else "")
    if not missing or not lost or len(lost) > len(steps):  # (a cadence that changed: the count says enough)
        return f"{steps[0]}..{steps[-1]}", f"{len(steps)} steps"
    shown = ", ".join(map(str, lost[:5])) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
    return span, f"{len(steps)} steps; missing {shown}"


# ---------------------------------------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------------------------------------


def scalar_values(run: Run, aliases: dict[str, str] | None = None) -> tuple[list[str], RunValues]:
    """The scalar keys (``__count`` companions left out, ``aliases`` applied) and steps of the run."""
    [df] = run.collect(lambda: [run.scalars.select("key", "step").unique()])
    keys = sorted({(aliases or {}).get(k, k) for k in df["key"].to_list() if not k.endswith("__count")})
    steps = {s for s in df["step"].to_list() if s is not None}
    return keys, RunValues({None: steps} if steps else {})


def check_key_globs(globs: Iterable[str], keys: Sequence[str], *, of: str = "this run") -> None:
    """Each ``--keys`` glob must match a scalar key (of ``of``: the run, or the runs a diff compares); the
    message lists the keys (the first ``MAX_LISTED``)."""
    for glob in globs:
        if any(fnmatch.fnmatchcase(k, glob) for k in keys):
            continue
        if not keys:
            raise UsageError(f"--keys {glob!r}: {of} {'has' if of == 'this run' else 'have'} no scalar metrics")
        more = f", ... ({len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else ""
        listed = ", ".join(keys[:MAX_LISTED])
        raise UsageError(f"--keys {glob!r}: matches none of the {len(keys)} scalar key(s) of {of}: {listed}{more}")


def check_scalars(
    run: Run, globs: Sequence[str] = (), steps: StepRange | None = None, aliases: dict[str, str] | None = None
) -> None:
    """``--keys`` globs and ``--steps`` of a scalar report, against the run's scalar keys and steps."""
    if not globs and (steps is None or steps.unbounded):
        return
    keys, values = scalar_values(run, aliases)
    check_key_globs(globs, keys)
    if steps is not None:
        check_steps(values, steps, has="this run's scalar metrics have")


# ---------------------------------------------------------------------------------------------------------
# Fleets
# ---------------------------------------------------------------------------------------------------------


def fleet_values(
    locations: Sequence[str], filters: Filters, *, layout: str | None, storage_options: dict[str, Any] | None
) -> RunValues | None:
    """The union of what the runs of a fleet have (runs that cannot be opened are left out: the fleet
    reports them), or None when no run could be opened."""
    from ..run import open_outer_run  # a run with a run inside is read without it, as the fleet reads it

    def one(loc: str) -> RunValues | None:
        try:
            return sample_values(open_outer_run(loc, layout=layout, storage_options=storage_options), filters)
        except (RunlogError, OSError, pl.exceptions.PolarsError):
            return None

    with ThreadPoolExecutor(min(OPEN_THREADS, max(1, len(locations)))) as pool:
        found = [v for v in pool.map(one, locations) if v is not None]
    if not found:
        return None
    out = RunValues(fleet=True)
    for v in found:
        out.merge(v)
    return out


def check_fleet(
    locations: Sequence[str], filters: Filters, *, layout: str | None, storage_options: dict[str, Any] | None
) -> None:
    """A filter value that matches nothing in any run of the fleet is a usage error."""
    if not filters.active:
        return
    values = fleet_values(locations, filters, layout=layout, storage_options=storage_options)
    if values is not None:
        check_filters(values, filters)


# ---------------------------------------------------------------------------------------------------------
# Speakers (``metrics --text role:NAME``)
# ---------------------------------------------------------------------------------------------------------

MAX_SPEAKERS = 30  # speakers named in a message
# The roles of the model's input (prompt, system and tool-result messages), as the texts read them
# (``texts.NOT_MODEL_ROLES``): no speaker of theirs is one ``--text role:NAME`` reads.
NOT_MODEL_ROLES = sorted(INPUT_ROLES)


def check_text_role(run: Run, text: str, found: bool, filters: Filters | None = None) -> None:
    """``--text role:NAME`` that selected no message (``found`` false) is a usage error naming the speakers that
    ``role:NAME`` can read in the run's selected samples (``message_speakers``: read only on this error) and its
    roles, with a near name (never NAME itself). A NAME that speaks only where ``role:NAME`` never reads is said
    so, and where: in the samples' prompts (their first ``prompt_turns`` messages: a few-shot example, a verifiers
    or NeMo Gym prompt's user), in a message of the model's input past them (a user, system or tool message:
    ``role:user``, a user named ``alice``, a tool result named ``python``), or at the steps and splits of the run
    that ``--split`` and ``--steps`` leave out. Checked after the fact: speakers are in the messages."""
    if found or not text.startswith("role:"):
        return
    name = text.split(":", 1)[1]
    filters = filters or Filters()
    speakers = _speakers(run, filters)
    spoken = speakers[False, False]
    listed = f"the turns it can read there are spoken by {', '.join(spoken)}" if spoken else "it can read no turn there"
    quoted = shlex.quote(f"role:{name}")
    if name in spoken:
        # The speaker is there, but none of its turns was measured: ``texts._turn_texts`` passes over a tool call
        # without words (and only such a turn), and a format spec's roles keep their own texts only.
        raise UsageError(
            f"--text {quoted}: {name!r} speaks in the selected samples, but none of its turns there was measured "
            f"(each a tool call without words, which holds no text, or a spec whose roles leave {name} out); {listed}"
        )
    inputs = ", ".join(NOT_MODEL_ROLES)
    if name.lower() in INPUT_ROLES:
        raise UsageError(
            f"--text {quoted}: {name} is a role of the model's input ({inputs}), whose messages --text role:NAME "
            f"never reads: it reads a speaker's turns; {listed}"
        )
    elsewhere = _spoken_elsewhere(run, name, filters)
    if elsewhere:
        # The speaker's turns are at steps or splits the filters leave out (a speaker named ``model`` at one step:
        # whom ``role:model`` reads is decided over the run, ``texts.role_speaker``).
        raise UsageError(
            f"--text {quoted}: no message of the selected samples is spoken by {name!r}; it speaks elsewhere in the "
            f"run ({elsewhere}), outside the samples selected ({_picked(filters)}){_decided(name)}; {listed}"
        )
    where = []
    if name in speakers[True, False] or name in speakers[True, True]:
        # Its messages are the prompt's (a few-shot example, a verifiers prompt's user): the texts are read from
        # the generated turns.
        where.append(
            "in the selected samples' prompts (their first prompt_turns messages, such as a few-shot example or the "
            "question asked), which the texts are not read from"
        )
    if name in speakers[False, True]:
        # A user, system or tool message is the model's input, never a speaker's turn that role:NAME reads.
        where.append(
            f"in messages of the model's input past the prompts (their role {inputs}: a user named so, a tool result "
            "named after its tool), which --text role:NAME never reads"
        )
    if where:
        raise UsageError(f"--text {quoted}: {name!r} speaks only {' and '.join(where)}; {listed}")
    roles = [r for r in run.role_names() if r not in spoken]
    said = listed + (f"; this run's roles are {', '.join(roles)}" if roles else "")
    near = did_you_mean(name, [n for n in [*spoken, *roles] if n != name])
    raise UsageError(
        f"--text {quoted}: no message of the selected samples is spoken by {name!r}{near}; {said} (a user, system or "
        "tool message is never read)"
    )


def _picked(filters: Filters) -> str:
    """The options that select the samples, as typed: ``--split eval --steps 0:2``."""
    said = [f"--split {shlex.quote(s)}" for s in filters.splits]
    if not filters.steps.unbounded:
        said.append(f"--steps {shlex.quote(filters.steps.text)}")
    return " ".join(said)


def _decided(name: str) -> str:
    """For a model chat role spelled as a speaker's name (``role:model``, a speaker named ``model`` elsewhere in the
    run): that ``role:NAME`` reads that speaker over the whole run, never the model turns without a name."""
    from .texts import MODEL_ROLES, UNNAMED_SPEAKER

    if name == UNNAMED_SPEAKER or name.lower() not in MODEL_ROLES:
        return ""
    return (
        f" (as a speaker of the run is named {name}, --text role:{name} reads its turns alone, never the model turns "
        f"without a name, which --by role labels {UNNAMED_SPEAKER}: decided over the whole run, whatever --split "
        "and --steps pick)"
    )


def message_speakers(run: Run, filters: Filters, *, prompt: bool = False, inputs: bool = False) -> list[str]:
    """The distinct speakers ``--text role:NAME`` can read (a message's ``name``, else ``assistant`` for a model
    turn, else its ``role``: ``texts.speaker_label``) of the selected samples' generated messages (past their
    ``prompt_turns``, where a layout tells: the texts are read from those), in order of first appearance, at most
    ``MAX_SPEAKERS``: never a message whose role is the model's input (``texts.NOT_MODEL_ROLES``: user, system,
    tool...), which ``role:NAME`` never reads, named or not. With ``prompt``, of their prompt's messages instead
    (the first ``prompt_turns``); with ``inputs``, the speakers of the input messages only (of the prompt's with
    both). Empty when the run has no messages or they cannot be read (the command that failed to find the speaker
    has said what it could not read)."""
    return _speakers(run, filters)[prompt, inputs]


def _labels(lf: pl.LazyFrame) -> tuple[pl.Expr, pl.Expr] | None:
    """A message's speaker label (``texts.speaker_label``, over ``pl.element()`` of ``messages``) and whether its
    role is the model's input; None where the samples have no messages."""
    from .texts import speaker_label

    schema = lf.collect_schema()
    if "messages" not in schema.names():
        return None
    fields = {f.name for f in schema["messages"].inner.fields}  # type: ignore[attr-defined]
    name, role = (pl.element().struct.field(f) if f in fields else pl.lit(None, pl.String) for f in ("name", "role"))
    given = role.cast(pl.String).str.to_lowercase().is_in(NOT_MODEL_ROLES).fill_null(False)
    return speaker_label(name, role), given


def _speakers(run: Run, filters: Filters) -> dict[tuple[bool, bool], list[str]]:
    """``message_speakers`` for each (prompt, inputs), read in one pass."""
    from .filters import apply_filters

    parts = [(prompt, inputs) for prompt in (False, True) for inputs in (False, True)]
    empty: dict[tuple[bool, bool], list[str]] = {k: [] for k in parts}
    try:
        lf = apply_filters(run.samples, filters, roles_too=False)
        labels = _labels(lf)
        if labels is None:
            return empty
        label, given = labels
        head = pl.col("prompt_turns").fill_null(0).cast(pl.Int64)
        messages = pl.col("messages")
        cols = [
            (messages.list.head(head) if prompt else messages.list.slice(head))
            .list.eval(label.filter(given if inputs else ~given))
            .explode()
            .drop_nulls()
            .unique(maintain_order=True)
            .implode()
            .alias(f"{prompt:d}{inputs:d}")
            for prompt, inputs in parts
        ]
        [df] = run.collect(lambda: [lf.select(cols)])
    except (pl.exceptions.PolarsError, AttributeError, RunlogError, OSError):
        return empty
    if not df.height:
        return empty
    out = {}
    for prompt, inputs in parts:
        names = [str(x) for x in df[f"{prompt:d}{inputs:d}"][0] if str(x).strip()]
        out[prompt, inputs] = names[:MAX_SPEAKERS] + (["..."] if len(names) > MAX_SPEAKERS else [])
    return out


def _spoken_elsewhere(run: Run, name: str, filters: Filters) -> str:
    """The steps and splits of the run (``describe_rows``: ``split train; step 3``) where ``name`` has a turn that
    ``role:NAME`` can read (generated, not the model's input), where ``filters`` select some samples only (none
    of them is selected: the caller found none there); empty otherwise or where the messages cannot be read."""
    from .texts import describe_rows

    if not filters.splits and filters.steps.unbounded:
        return ""
    try:
        lf = run.samples
        labels = _labels(lf)
        keys = [k for k in ("split", "step") if k in lf.collect_schema().names()]
        if labels is None or not keys:
            return ""
        label, given = labels
        head = pl.col("prompt_turns").fill_null(0).cast(pl.Int64)
        hit = pl.col("messages").list.slice(head).list.eval(((label == name) & ~given).fill_null(False)).list.any()
        [df] = run.collect(lambda: [lf.filter(hit.fill_null(False)).select(keys).unique()])
    except (pl.exceptions.PolarsError, AttributeError, RunlogError, OSError):
        return ""
    if not df.height:
        return ""
    return describe_rows(df.sort(keys, nulls_last=True), keys)
