"""The split part of the upload's keys, for the splits that cannot have their own name there.

Keys of the train split (and of a run without splits) have no split part; every other split's keys start with its
name (``eval/P/reward_total``, ``eval/full_trajectories``). Some names cannot be that part: samples without a split
beside samples that have one (they are not the train split's: ``no_split``), the empty split name (its keys would
start with '/': ``empty_split``), and any other name W&B refuses in a table's key (``renamed_split``), which would
fail the whole ``run.log`` call of its step. W&B stores a table as the file ``<key>.table.json`` of an artifact
named ``run-<run id>-<key>``: it checks the file's name as a relative path (``validate_relpath`` in
``wandb.sdk.lib.paths``: no root, drive or UNC share, POSIX or Windows, and no ``..`` part: "Invalid artifact
path"), and the artifact's name, once the characters it refuses there are dropped (``sanitize_artifact_name``),
as at most 128 characters (a long split name). The key is checked as W&B gets it, control characters shown as
escapes (a split that starts with ESC starts with a backslash there).

A key part once given is kept: the splits claim their key parts in the order they appear in the run (their first
step; at one step a split's own name first), so a split that appears later never takes the name of another's
keys (a split literally named ``empty_split`` after the empty split's samples were logged under it gets
``empty_split_2``), and the upload state records the key parts given (``state.Entry.splits``), which later uploads
keep whatever files come (a lagging file of an earlier step).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import PurePosixPath, PureWindowsPath

from ..textsafe import visible

# The key part of samples without a split when other samples of the run have one (``no_split/P/reward/solver``,
# ``no_split/full_trajectories``); never the train split's unprefixed keys.
NO_SPLIT = "no_split"
# The key part of samples whose split is the empty string (another tool wrote ``split=''``; a ``RunWriter``
# refuses it): ``empty_split/P/reward_total``, never ``/P/reward_total``.
EMPTY_SPLIT = "empty_split"
# The key part of a split whose name W&B refuses in a key (``/eval``, ``..``, ``a/../b``, ``c:``).
RENAMED_SPLIT = "renamed_split"
TABLE_KEY = "full_trajectories"
ARTIFACT_NAME_MAX = 128  # W&B's longest artifact name (``NAME_MAXLEN``)
_ARTIFACT_NAME_BAD = re.compile(r"[^a-zA-Z0-9_\-.]+")  # what W&B drops from a table's artifact name
# Split -> its key part, for the splits that cannot have their own name there (``Plan.renamed``).
SplitNames = Mapping[str | None, str]
# Per split: per step, how many samples it has there and its first file (for the notes).
SplitRows = dict[str | None, dict[int, tuple[int, str]]]


def refused(split: str, run_id: str | None = None) -> str | None:
    """Why W&B refuses the keys of ``split`` (its table's key ``<split>/full_trajectories``, as W&B gets it), or
    None where it takes them. ``run_id``: the W&B run's id, part of the table's artifact name (its length is not
    checked without it)."""
    key = f"{visible(split, keep_newlines=False)}/{TABLE_KEY}"
    path = f"{key}.table.json"
    posix, windows = PurePosixPath(path), PureWindowsPath(path)
    if posix.anchor or windows.anchor:
        return "an absolute path (a root, a drive or a share)"
    if ".." in posix.parts or ".." in windows.parts:
        return "a path with a '..' part"
    if run_id is not None:
        name = f"run-{run_id}-{key}"
        kept = _ARTIFACT_NAME_BAD.sub("", name)
        length = len(kept) + (7 if kept != name else 0)  # W&B adds "-" and a 6-character hash where it dropped any
        if length > ARTIFACT_NAME_MAX:
            return f"its table's artifact name would be {length} characters, over W&B's {ARTIFACT_NAME_MAX}"
    return None


def decide(
    splits: set[str | None],
    first: Mapping[str | None, int],
    recorded: SplitNames | None = None,
    run_id: str | None = None,
) -> dict[str | None, str]:
    """The key part of each split that cannot have its own name there (``Plan.renamed``).

    ``recorded``: the key part of every split that earlier uploads logged (``state.Entry.splits``), its own name
    included: kept as it is, also for a split the run no longer has (its keys stay its own), and no other split
    gets it. Then, in the order the splits first appear (``first``: a split's lowest step; at one step, a split's
    own name before a given one, then by name), a split without a name of its own gets its base name
    (``no_split``, ``empty_split``, ``renamed_split``), or ``<base>_2``... where an earlier split holds it, and a
    split whose own name an earlier split's keys hold gets ``<name>_2``... . A null split alone (a run without
    splits) keeps its unprefixed keys, as the train split does. ``run_id``: the W&B run's (``refused``)."""
    base: dict[str | None, str] = {}
    for s in splits:
        if s is None:
            if len(splits) > 1:
                base[s] = NO_SPLIT
        elif s == "":
            base[s] = EMPTY_SPLIT
        elif s != "train" and refused(s, run_id) is not None:  # the train split's keys have no split part
            base[s] = RENAMED_SPLIT
    recorded = recorded or {}
    out = {s: p for s, p in recorded.items() if p != s}
    taken = set(recorded.values())

    def order(s: str | None) -> tuple[float, bool, str]:
        return float(first.get(s, math.inf)), s in base, "" if s is None else s

    for s in sorted((s for s in splits if s not in recorded), key=order):
        if s in base:
            out[s] = free_name(base[s], taken)
            taken.add(out[s])
        elif s is not None and s != "train":
            if s in taken:
                out[s] = free_name(s, taken)
            taken.add(out.get(s, s))
    return out


def parts(splits: set[str | None], renamed: SplitNames, recorded: SplitNames | None = None) -> dict[str | None, str]:
    """The key part of every split of ``splits`` that has one (its own name or the one given), and of those
    ``recorded``: what the upload state records (``decide``)."""
    out = dict(recorded or {})
    for s in splits:
        if s in renamed:
            out[s] = renamed[s]
        elif s is not None:
            out[s] = s
    return out


def free_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_2``, ``base_3``... where that is taken."""
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def shown(split: str | None) -> str:
    """A split as a note names it."""
    return "no split" if split is None else repr(visible(split, keep_newlines=False))


def notes(renamed: SplitNames, rows: SplitRows, prefix: str, after: int | None, run_id: str | None = None) -> list[str]:
    """One note per renamed split with samples after step ``after`` (all with None): how many, at how many steps,
    the first step and file, the key part and why. ``run_id``: the W&B run's (``refused``)."""
    table_key = TABLE_KEY
    out = []
    for split, part in sorted(renamed.items(), key=lambda kv: kv[1]):
        per_step = {s: v for s, v in rows.get(split, {}).items() if after is None or s > after}
        if not per_step:
            continue
        n, first = sum(v[0] for v in per_step.values()), min(per_step)
        where = f"{part}/... ({part}/{prefix}/reward_total, {part}/{table_key})"
        at = f"(first: step {first}, {per_step[first][1]})"
        if split is None:
            out.append(
                f"{n} sample(s) at {len(per_step)} step(s) have no split beside samples that have one {at}: logged "
                f"apart under {where}, never mixed into the train split's keys"
            )
        elif split == "":
            out.append(
                f"{n} sample(s) at {len(per_step)} step(s) have an empty split name '' {at}: logged under {where}; "
                "W&B refuses a key that starts with '/'"
            )
        elif (why := refused(split, run_id)) is not None:
            out.append(
                f"{n} sample(s) at {len(per_step)} step(s) have the split {shown(split)} {at}: logged under {where}; "
                f"W&B refuses its keys ({visible(split, keep_newlines=False)}/{table_key}: {why})"
            )
        else:
            holders = [s for s, p in renamed.items() if p == split]
            whose = _described(holders[0]) if holders else "another split"
            out.append(
                f"{n} sample(s) at {len(per_step)} step(s) have the split {shown(split)} {at}: logged under {where}, "
                f"since the keys {visible(split, keep_newlines=False)}/... hold {whose}, logged before this split "
                "appeared"
            )
    return out


def _described(split: str | None) -> str:
    if split is None:
        return "the samples without a split"
    return "the samples with an empty split name ''" if split == "" else f"the split {shown(split)}"
