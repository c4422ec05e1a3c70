"""The windows of a diff, kept: a side's bootstrap replicates and per-prompt means, stored once computed, so
that comparing the same runs again (another ``--format``, a report, a plot) reads neither the windows'
samples nor resamples them.

What a side's windows give (``sides.load_rows`` then ``sides.bootstrap_side``: the replicates, the per-prompt
means, each role's design effect, the repeated sample ids and the roles listed twice) depends only on: the files
of the windows' steps (each step's identity, ``partial_cache.units``: its files' stamps and the manifest),
the windows themselves, the run's prompt-group rule (``aggregate.group_key_expr``, decided on the whole
run), the seed, the number of resamples, the run's place among the runs compared (its bootstrap stream), and
the code and libraries that compute it (runlog's diff and aggregating code; polars, whose hash is the
prompt's key; numpy, whose generator draws the replicates). The entry's name is a hash of all of these, so
an entry is used only where recomputing would give the same numbers, bit for bit.

Storage: one Arrow IPC file per entry, ``window-<key>.arrow``, in the run's folder of the partial cache
(``partial_store``: deleted with it, counted in ``RUNLOG_CACHE_MAX_MB``), written to a temporary name and
renamed into place; at most ``KEEP`` entries per run (the oldest go). Nothing is stored for a step whose
files changed in the last seconds (a writer may be at work on them), nor when the cache is off
(``RUNLOG_CACHE=off``). An unreadable entry is said once on stderr and computed again.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..._lazy import pl
from ...errors import said_trouble
from ...probe_cache import atomic_write, cache_dir, run_digest, source_hash
from .sides import PROMPT_MEANS_SCHEMA

if TYPE_CHECKING:
    from .model import DiffOptions
    from .sides import Side

# Bump when an entry's columns, or what they hold, change (2: the design effects, the repeated ids; 3: units
# tied by prompt across steps, the roles taken as independent; 4: shared texts and per-step id counters not ties;
# 5: a shared text's samples tied by their group ids, a text shared at one step only untied there, the pairing's
# keys without counters, the roles without a prompt identity across steps; 6: each column's units, their means and
# weights, which the permutation test of a difference splits: an entry of 5 has none, and is never read for one;
# 7: repeated ids counted by sample, not by (id, role), and the roles a sample lists more than once).
FORMAT = 7
KEEP = 16  # entries per run; more: the least recently written are deleted
_CODE = ("analysis/diff", "chat.py")  # beside AGGREGATING_CODE (the layouts, run.py, the engine)
_reported: set[str] = set()
UNLINKED = "unlinked:"  # a kind of row: ``Side.unlinked``, the reason after the colon

BOOT_SCHEMA: dict[str, Any] = {
    "kind": pl.String,
    "split": pl.String,
    "steps": pl.List(pl.Int64),
    "name": pl.String,
    "mean": pl.Float64,
    "n": pl.Int64,
    "reps": pl.List(pl.Float64),
    "units": pl.List(pl.Float64),  # the column's units with a finite value: each one's mean (``sides.Boot``)
    "weights": pl.List(pl.Float64),  # and its weight (its number of values)
}
# A side's prompt means (``sides.PROMPT_MEANS_SCHEMA``), under ``kind`` "prompt".
PROMPT_SCHEMA: dict[str, Any] = {"kind": pl.String, **PROMPT_MEANS_SCHEMA}


@functools.cache
def _code_key() -> str:
    from ..partial_cache import AGGREGATING_CODE

    return source_hash((*AGGREGATING_CODE, *_CODE))


def entry_path(side: Side, opts: DiffOptions) -> Path | None:
    """Where the entry of ``side``'s windows is (or would be) stored; None when it cannot be kept: the cache
    is off, a window's step has no identity (files of several steps, a file without a stamp) or changed in the
    last seconds."""
    from ..aggregate import group_key_expr
    from ..partial_cache import units

    base = cache_dir()
    if base is None or not side.windows:
        return None
    all_units = units(side.run)
    if all_units is None:
        return None
    steps = sorted(set().union(*side.wanted.values())) if side.wanted else []
    ids = []
    for step in steps:
        u = all_units.get(step)
        if u is None or u.files_id is None or u.racy:
            return None
        ids.append((step, u.files_id))
    group = group_key_expr(side.run, True)

    def splits(d: dict[Any, set[int]]) -> list[tuple[str, list[int]]]:
        return sorted((repr(k), sorted(v)) for k, v in d.items())

    parts = [
        f"format={FORMAT}",
        _code_key(),
        f"polars={pl.__version__}",
        f"numpy={np.__version__}",
        f"seed={opts.seed}",
        f"boot={opts.boot}",
        f"index={side.index}",
        repr(sorted((repr(s), w) for s, w in side.windows)),
        repr(splits(side.wanted)),
        repr(splits(side.text_wanted)),
        "group=" + ("none" if group is None else str(group)),
        repr(ids),
    ]
    digest = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]
    _, run = run_digest(side.run.root)
    return base / "partials" / run / f"window-{digest}.arrow"


def restore(side: Side, path: Path | None, opts: DiffOptions) -> bool:
    """Fill ``side.boots``, ``side.prompt_means``, ``side.deff``, ``side.independent``, ``side.unlinked`` and
    ``side.repeated`` and ``side.twice`` from the entry at
    ``path``; whether it was there and whole (a missing entry is not an error; an unreadable one, or one that
    does not hold every window with ``opts.boot`` replicates, is said once, and computed again)."""
    if path is None:
        return False
    try:
        with open(path, "rb") as fh:  # a handle: polars would read ``[`` in a path as a glob
            frame = pl.read_ipc(fh)
        boots, prompts = _split(frame)
        if set(boots) != side.windows:
            raise ValueError("its windows are not the diff's")
        if any(len(col[2]) != opts.boot for cols in boots.values() for col in cols.values()):
            raise ValueError(f"replicates other than the {opts.boot} asked for")
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, pl.exceptions.PolarsError) as exc:
        _report(path, exc)
        return False
    side.boots = boots
    side.prompt_means = prompts
    extra = frame.filter(
        pl.col("kind").is_in(["deff", "independent", "repeated", "twice"]) | pl.col("kind").str.starts_with(UNLINKED)
    )
    for kind, split, steps, name, mean, n in extra.select("kind", "split", "steps", "name", "mean", "n").iter_rows():
        if kind == "deff":
            side.deff[(split, name)] = float(mean)
        elif kind == "independent":
            side.independent.add((split, name))
        elif kind.startswith(UNLINKED):
            side.unlinked.setdefault((split, name), set()).add(kind.removeprefix(UNLINKED))
        elif kind == "twice":
            side.twice.append((split, int(steps[0]), name, int(n)))
        else:
            side.repeated.append((split, int(steps[0]), int(n), int(mean)))
    return True


def _split(frame: pl.DataFrame) -> tuple[dict[tuple[str | None, tuple[int, ...]], dict[str, Any]], pl.DataFrame]:
    """The entry's boots and per-prompt means, checked (a ``ValueError`` names what is wrong)."""
    for name, dtype in {**BOOT_SCHEMA, **PROMPT_SCHEMA}.items():
        if frame.schema.get(name) != dtype:
            raise ValueError(f"column {name!r} is {frame.schema.get(name)}, expected {dtype}")
    boots: dict[tuple[str | None, tuple[int, ...]], dict[str, Any]] = {}
    rows = frame.filter(pl.col("kind") == "boot")
    for split, steps, name, mean, n, reps, units, weights in rows.select(list(BOOT_SCHEMA)[1:]).iter_rows():
        if steps is None or reps is None or name is None or n is None or units is None or weights is None:
            if steps is not None and name is None:  # a window without any column (no sample there)
                boots.setdefault((split, tuple(steps)), {})
                continue
            raise ValueError("an incomplete bootstrap row")
        if len(units) != len(weights):
            raise ValueError("units and weights of different lengths")
        boots.setdefault((split, tuple(steps)), {})[name] = (
            mean,
            int(n),
            np.array(reps, dtype=float),
            np.array(units, dtype=float),
            np.array(weights, dtype=float),
        )
    prompts = frame.filter(pl.col("kind") == "prompt").select(list(PROMPT_SCHEMA)[1:])
    return boots, prompts


def keep(side: Side, path: Path | None) -> None:
    """Store ``side.boots`` and ``side.prompt_means`` at ``path`` (best effort: a read-only or full disk
    just means no entry), then delete the run's oldest entries beyond ``KEEP``."""
    if path is None:
        return
    rows: list[dict[str, Any]] = []
    for (split, steps), cols in side.boots.items():
        if not cols:
            rows.append({"kind": "boot", "split": split, "steps": list(steps)})
        for name, (mean, n, reps, units, weights) in cols.items():
            rows.append(
                {
                    "kind": "boot",
                    "split": split,
                    "steps": list(steps),
                    "name": name,
                    "mean": mean,
                    "n": n,
                    "reps": [float(x) for x in reps],
                    "units": [float(x) for x in units],
                    "weights": [float(x) for x in weights],
                }  # fmt: skip
            )
    for (split, name), deff in side.deff.items():
        rows.append({"kind": "deff", "split": split, "name": name, "mean": deff})
    for split, name in side.independent:
        rows.append({"kind": "independent", "split": split, "name": name})
    for (split, name), why in side.unlinked.items():
        rows += [{"kind": UNLINKED + w, "split": split, "name": name} for w in sorted(why)]
    for split, step, ids, extra in side.repeated:
        rows.append({"kind": "repeated", "split": split, "steps": [step], "n": ids, "mean": float(extra)})
    for split, step, name, ids in side.twice:
        rows.append({"kind": "twice", "split": split, "steps": [step], "name": name, "n": ids})
    boots = pl.DataFrame(rows, schema=BOOT_SCHEMA)
    prompts = side.prompt_means if side.prompt_means is not None else pl.DataFrame(schema=PROMPT_SCHEMA)
    prompts = prompts.select(
        pl.lit("prompt").alias("kind"), *[pl.col(c).cast(t) for c, t in PROMPT_SCHEMA.items() if c != "kind"]
    )
    frame = pl.concat([boots, prompts], how="diagonal_relaxed")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, frame.write_ipc)
        _prune(path.parent)
    except (OSError, ValueError, pl.exceptions.PolarsError):
        return


def _prune(folder: Path) -> None:
    entries = []
    for d in os.scandir(folder):
        if d.name.startswith("window-") and d.name.endswith(".arrow"):
            try:
                entries.append((d.stat(follow_symlinks=False).st_mtime, d.path))
            except OSError:
                continue
    for _, p in sorted(entries)[: max(0, len(entries) - KEEP)]:
        try:
            os.unlink(p)
        except OSError:
            continue


def _report(path: Path, exc: BaseException) -> None:
    if str(path) in _reported:
        return
    _reported.add(str(path))
    from ...textsafe import visible

    reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    sys.stderr.write(
        visible(
            f"warning: the diff cache entry {path} is unreadable ({reason}); computing it again", keep_newlines=False
        )
        + "\n"
    )
    said_trouble()
