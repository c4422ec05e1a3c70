"""Which value a figure aggregates: the per-sample view and the splits of a run.

``Run.numeric`` has one row per (sample, role): the right rows for a statistic *per role*. Anything else
(a summary by step, by split, by run, or pooled) must count each sample once, with the sample's own
values. ``sample_view`` gives that row per sample:

- ``reward``: the sample's reward (the total the trainer logged for the trajectory, ``samples.reward``);
- ``kl``: the mean of the sample's per-role KL values (null where no role logged a KL);
- ``has_exception`` and ``component/<name>`` as in the numeric view (they are per sample in every layout).

It never reads a text column unless a ``carry`` expression asks for one (prompt groups from the prompt).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .._lazy import pl

if TYPE_CHECKING:
    from ..run import Run


def sample_view(run: Run, carry: dict[str, pl.Expr], components: list[str], *, kl: bool = True) -> pl.LazyFrame:
    """One row per sample: the ``carry`` expressions, ``component/<name>``, ``reward``, ``kl`` (with
    ``kl``; else a null column) and a null ``role`` (so that code written for the long view runs on it).

    Each layout's rows come from where its per-role rows (``Run.numeric``) come from: the wide view where the
    layout offers one (Flink), else its canonical samples, so that both passes of a summary put a sample in the
    same prompt group. A run of several layouts (native ``samples/`` beside a resumed run's ``flink_logs/``)
    read from ``Run.samples`` whole had its Flink samples in the prompt groups their canonical ``group_id`` is
    derived from the trajectory text by (for the texts' commands): in groups without ``--prompt-groups``, and
    in other groups than the per-role pass's (``--by role --by group`` then joined no per-sample column)."""
    roles = run.role_names()
    wide = run.numeric_wide(carry, components, roles)
    if wide is not None:
        return _wide_rows(wide, carry, components, roles, kl=kl)
    frames: list[pl.LazyFrame] = []
    rest: list[str] = []  # the layouts without a wide view: read from their canonical samples
    for lay in run.layouts:
        files = [f for f in run.files_of(lay.name) if f.kind == "samples" and f.readable]
        if not files:
            continue  # no sample of this layout (its scalars only, or its files unreadable)
        lf = lay.scan_numeric_wide(files, run.ctx, carry, components, roles)
        if lf is None:
            rest.append(lay.name)
        else:
            frames.append(_wide_rows(lf, carry, components, roles, kl=kl))
    if rest or not frames:
        samples = run.samples
        if frames:
            from ..run import Run

            samples = Run(root=run.root, files=[f for f in run.files if f.layout in rest], ctx=run.ctx).samples
        frames.append(_sample_rows(samples, carry, components, kl=kl))
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


def _wide_rows(
    wide: pl.LazyFrame, carry: dict[str, pl.Expr], components: list[str], roles: list[str], *, kl: bool
) -> pl.LazyFrame:
    """``sample_view``'s rows from a wide view (flat per-role columns: no nested column is read); its KL the
    mean of the roles' (a role the file does not hold is null there, and left out of the mean)."""
    kls = [pl.col(f"role:{r}:kl") for r in roles]
    kl_expr = pl.mean_horizontal(kls).alias("kl") if kl and kls else pl.lit(None, dtype=pl.Float64).alias("kl")
    return wide.select(
        *carry,
        *[f"component/{n}" for n in components],
        pl.col("__sample_reward").cast(pl.Float64).alias("reward"),
        kl_expr,
        pl.lit(None, dtype=pl.String).alias("role"),
    )


def _sample_rows(samples: pl.LazyFrame, carry: dict[str, pl.Expr], components: list[str], *, kl: bool) -> pl.LazyFrame:
    """``sample_view``'s rows from canonical samples: the KL the mean of the ``roles`` entries' values."""
    from ..formats.base import component_value

    role_kl = pl.col("roles").list.eval(pl.element().struct.field("kl")).list.mean().cast(pl.Float64).alias("kl")
    return samples.select(
        *[e.alias(k) for k, e in carry.items()],
        *[component_value(n) for n in components],
        pl.col("reward").cast(pl.Float64),
        role_kl if kl else pl.lit(None, dtype=pl.Float64).alias("kl"),
        pl.lit(None, dtype=pl.String).alias("role"),
    )


def run_splits(run: Run) -> list[str]:
    """The splits that hold samples, sorted; from file names where every sample file tells its split (no data
    read), else from the ``split`` column (one small column)."""
    files = [f for f in run.files if f.kind == "samples" and f.readable]
    if not files:
        return []
    if all(f.split is not None for f in files):
        return sorted({str(f.split) for f in files})
    [frame] = run.collect(lambda: [run.samples.select(pl.col("split").unique())])
    return sorted(str(s) for s in frame["split"].to_list() if s is not None)


SPLIT_NOTE = "this run has the splits {splits}: `split` was added to the keys (use --split to pick one)"


GROUP_STEP_NOTE = "a prompt group is one group id within a step: `step` was added to the keys"


GROUP_SPLIT_NOTE = (
    "a prompt group is one group id within a split: `split` was added to the keys (the splits are pooled in rows "
    "without --by group)"
)


def layouts_note(
    run: Run, by_env: bool = True, splits: Sequence[str] | None = None, shown: Callable[[str], str] = str
) -> str | None:
    """``_layouts_note`` of the rows of ``splits`` (None: the whole run's): loose dumps side by side are often of
    two splits (a verifiers eval beside NeMo Gym train rollouts), and a train summary pools none of the eval's
    rows, so that a note of the whole run's layouts said "pooled in every figure" of figures that pool nothing.
    Each file counted by its rows of those splits (read from the ``split`` and ``source`` columns, only where the
    run as a whole pools layouts or tasks: loose dumps, small), the files with none left out; said of the split
    (``shown``: how a name is written, the report's cut) where the run as a whole holds more."""
    import dataclasses

    whole = _layouts_note(run, by_env)
    if whole is None or not splits:
        return whole
    chosen = list(dict.fromkeys(splits))
    files = [f for f in run.files if f.kind == "samples" and f.readable]
    [df] = run.collect(
        lambda: [run.samples.filter(pl.col("split").is_in(chosen)).group_by("source").agg(pl.len().alias("n"))]
    )
    rows = {str(r["source"]): int(r["n"]) for r in df.iter_rows(named=True)}
    kept = []
    for f in files:
        if not rows.get(f.path):
            continue
        frame = f.frame
        if isinstance(frame, pl.DataFrame) and "split" in frame.columns:
            frame = frame.filter(pl.col("split").is_in(chosen))  # its envs (tasks) in these splits
        kept.append(dataclasses.replace(f, rows=rows[f.path], frame=frame))
    if sum(f.rows or 0 for f in kept) != sum(rows.values()):
        return whole  # rows of a source no file is named by: the run's own note rather than one that is short
    from ..run import Run

    note = _layouts_note(Run(root=run.root, files=kept, ctx=run.ctx), by_env)
    if note is None or note == whole:
        return note
    subject = ("splits " if len(chosen) > 1 else "split ") + ", ".join(shown(x) for x in chosen)
    if note.startswith("this run holds"):
        return f"{subject} {'hold' if len(chosen) > 1 else 'holds'}{note.removeprefix('this run holds')}"
    if note.startswith("this run's"):
        return subject + "'s" + note.removeprefix("this run's")
    return note


def _layouts_note(run: Run, by_env: bool = True) -> str | None:
    """A note where the run's samples come from files of several layouts (loose dumps side by side in one folder:
    a verifiers results file beside inspect_ai logs), or of one layout from several envs (inspect_ai logs of
    two tasks in its ``./logs`` folder; a verifiers file of several tasks), which every figure pools as one
    run's: which layouts and envs, with their rows, and how to look at one apart. From footers and the frames
    the probes parsed: nothing read (a Parquet file's envs are in its data, unread: not said). None for one
    layout of one env. ``by_env``: the command has ``--by env`` (``metrics`` has not: its hint is the files)."""
    rows: dict[str, int] = {}
    for f in run.files:
        if f.kind == "samples" and f.readable:
            rows[f.layout] = rows.get(f.layout, 0) + (f.rows or 0)
    envs = _envs(run)
    if len(rows) < 2 and not envs:
        return None
    pooled = "pooled in every figure as one run's (loose files side by side in a folder are one run)"
    per_env = "; ".join(f"{lay} samples are of {len(n)} envs (tasks), {_rows_said(n)}" for lay, n in envs.items())
    if len(rows) < 2:
        hint = "--by env to see each apart" if by_env else "pass one file or folder to see one apart"
        return f"this run's {per_env}, {pooled}: {hint}"
    said = ", ".join(f"{name} ({n:,} rows)" for name, n in sorted(rows.items(), key=lambda kv: (-kv[1], kv[0])))
    also = f"; its {per_env}" if envs else ""
    return (
        f"this run holds samples of {len(rows)} layouts, {said}, {pooled}{also}: pass one file or folder to see one "
        "apart" + (", or --by env" if by_env else "")
    )


def _envs(run: Run) -> dict[str, dict[str | None, int]]:
    """Rows per env (``env_name``: an inspect_ai log's task, a verifiers row's task) of each layout whose
    samples are of several, from the frames the probes kept (JSON layouts: in memory, nothing read)."""
    columns: dict[str, list[pl.Series]] = {}
    unparsed: set[str] = set()  # layouts some of whose files hold no parsed frame (Parquet): their envs are unread
    for f in run.files:
        if f.kind != "samples" or not f.readable:
            continue
        frame = f.frame
        if isinstance(frame, pl.DataFrame) and "env_name" in frame.columns:
            columns.setdefault(f.layout, []).append(frame.get_column("env_name"))
        else:
            unparsed.add(f.layout)
    for (
        layout
    ) in unparsed:  # counted from a few files, the rows said would be those files' (a Flink CSV beside its Parquet)
        columns.pop(layout, None)
    out: dict[str, dict[str | None, int]] = {}
    for layout, cols in sorted(columns.items()):
        if all(c.null_count() == len(c) for c in cols):  # no env named (NeMo Gym, verl): one env, unknown
            continue
        counts = pl.concat([c.cast(pl.String) for c in cols]).value_counts(sort=True, name="n")
        if counts.height > 1:
            out[layout] = dict(counts.iter_rows())
    return out


def _rows_said(counts: dict[str | None, int], limit: int = 6) -> str:
    """``a (3 rows), b (2 rows)``, the most rows first; a null env as ``(none)``."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))
    said = ", ".join(f"{'(none)' if env is None else env} ({n:,} rows)" for env, n in ranked[:limit])
    return said + (f", {len(ranked) - limit} more" if len(ranked) > limit else "")


def split_notes(run: Run, frame: pl.DataFrame, by: Sequence[str] | None, pooled: bool = False) -> list[str]:
    """``SPLIT_NOTE`` when ``split`` is a key of ``frame`` that the user did not ask for (the run has several
    splits and --split picked none; ``GROUP_SPLIT_NOTE`` where ``pooled`` splits were asked for with ``group``);
    ``GROUP_STEP_NOTE`` when ``step`` was added beside ``group``."""
    asked = by or ()
    notes = []
    if "split" in frame.columns and "split" not in asked:
        split_note = SPLIT_NOTE.format(splits=", ".join(run_splits(run)))
        notes.append(GROUP_SPLIT_NOTE if pooled and "group" in asked else split_note)
    if "group" in asked and "step" not in asked and "step" in frame.columns:
        notes.append(GROUP_STEP_NOTE)
    return notes
