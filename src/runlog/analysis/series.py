"""The per-step series that ``doctor``, ``plot`` and ``report`` look at, computed once and only when asked.

Each series comes from the library's public functions (``summarize``, ``diversity_frame``, ``format_frame``,
``inspect_run``), restricted to one split (``train``, else the training split: ``default_split``) so that eval steps
never mix with training steps. A series the run cannot give (no KL, no texts, no prompt groups) is ``None`` or
empty, and ``notes`` says why, so that callers can say so instead of failing.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import TYPE_CHECKING

from .._lazy import pl
from ..errors import RunlogError
from ..run import Run
from .filters import Filters, StepRange
from .summarize import summarize

if TYPE_CHECKING:
    from .inspect import RunInspection


# Split names that read as an evaluation's (case aside): never the split diagnosed by default beside one that does not.
EVAL_SPLIT = re.compile(r"(?:eval|test|val).*|dev|held[-_ ]?out|hold[-_ ]?out", re.IGNORECASE | re.DOTALL)


def default_split(splits: list[str]) -> tuple[str, str]:
    """The split of ``splits`` (the run's, at least one) read by default, and why (empty for ``train``): ``train``;
    else the first by name of the splits whose name does not read as an evaluation's (``EVAL_SPLIT``: eval*,
    test*, val*, dev, heldout, holdout); where every split reads as an evaluation's, the first by name. A run
    whose train split is named ``rl`` or ``grpo`` beside ``eval`` is diagnosed on its training, not on the
    evaluation that sorts first. By name, not by size: a rule of the most steps changed its choice at nearly
    every step of a run writing two training splits in turn (``math``, then ``code``: one step ahead, then
    even), and a follow read one, then the other, again and again."""
    if "train" in splits:
        return "train", ""
    if len(splits) == 1:
        return splits[0], ""
    trained = sorted(s for s in splits if not EVAL_SPLIT.fullmatch(s))
    if len(trained) == 1:
        return trained[0], "the only split not named like an evaluation"
    if trained:
        return trained[0], "the first by name of the splits not named like an evaluation"
    return sorted(splits)[0], "every split is named like an evaluation: the first by name"


class RunSeries:
    """Lazily computed per-step frames of one split of ``run``."""

    def __init__(self, run: Run, *, split: str | None = None, format_spec: str = "think-answer-strict") -> None:
        self.run = run
        self.format_spec = format_spec
        self.notes: list[str] = []  # checks or plots that could not run, and why
        self.scope_notes: list[str] = []  # what was read and what was not (a run's other splits)
        self.split = split if split is not None else self._default_split()

    def _default_split(self) -> str | None:
        """The split read when none is asked for (``default_split``); the others said in a note, with why this
        one (their samples are not read)."""
        splits = sorted({f.split for f in self.run.files if f.kind == "samples" and f.readable and f.split})
        if not splits:
            [frame] = self.run.collect(lambda: [self.run.samples.select(pl.col("split").drop_nulls().unique())])
            splits = sorted(frame["split"].to_list())
        if not splits:
            return None
        chosen, why = default_split(splits)
        others = [s for s in splits if s != chosen]
        if others:
            import shlex

            # The split quoted as a shell reads it, as the report's "Not in this report" line: ``--split held
            # out`` pasted is two words, and a split named ``ev>x`` a redirection.
            from ..textsafe import visible

            # A name shown otherwise than it is typed (an invisible character made visible) is no command to paste.
            pasted = visible(others[0], keep_newlines=False) == others[0]
            how = (
                f"--split {shlex.quote(others[0])} for {'it' if len(others) == 1 else 'another'}"
                if pasted
                else "a split name with invisible characters: runlog inspect RUN --format json lists it, a key of "
                "rows_by_split"
            )
            read = f"split {chosen} read{f' ({why})' if why else ''}"
            self.scope_notes.append(f"{read}; the run also has {', '.join(others)}, not read here ({how})")
        return chosen

    def forget(self) -> None:
        """Drop every frame computed so far, and the notes said while computing them, so that they are read
        again (a file found unreadable since: ``Run.left_out``)."""
        for klass in type(self).__mro__:
            for name, attr in vars(klass).items():
                if isinstance(attr, cached_property):
                    self.__dict__.pop(name, None)
        self.notes.clear()
        self.run.forget_frames()  # the run's own frames too: built before the file was found, they hold it

    def _known_steps(self, df: pl.DataFrame) -> pl.DataFrame:
        """``df`` without its rows of no step (a step beyond the int64 range, which inspect and doctor's
        ``data_problem`` say: the reader cannot hold it), said once in the notes: a series is over steps, and a
        null step ordered among them broke doctor, plot and report (internal errors)."""
        if "step" not in df.columns or not df["step"].null_count():
            return df
        note = (
            "rows without a step that can be held (beyond the int64 range: see the data problems) are left out of "
            "the per-step series"
        )
        if note not in self.notes:
            self.notes.append(note)
        return df.filter(pl.col("step").is_not_null())

    @property
    def filters(self) -> Filters:
        return Filters(splits=(self.split,) if self.split else (), steps=StepRange())

    @cached_property
    def per_role(self) -> pl.DataFrame:
        """``summarize(by=[role, step])``: one row per (role, step); a null role holds the total reward of
        samples without per-role data. Where samples without a ``group_id`` joined their prompt's group, or stayed
        a group of their own (``aggregate.prompt_join_note``), a scope note says how many."""
        df = self._known_steps(summarize(self.run, ["role", "step"], filters=self.filters, prompt_groups=True))
        from .aggregate import prompt_join_note

        note = prompt_join_note(self.run, self.filters)
        if note is not None and note not in self.scope_notes:
            self.scope_notes.append(note)
        return df

    @cached_property
    def per_step(self) -> pl.DataFrame:
        """``summarize(by=[step])``: exception rate and reward components per step."""
        return self._known_steps(summarize(self.run, ["step"], filters=self.filters, prompt_groups=True))

    @cached_property
    def total(self) -> pl.DataFrame:
        """The samples' total reward per step (``reward_mean`` over valid values, ``reward_nan``, the valid
        ``reward_count``, ``rows``):
        per-role rewards are what ``summarize`` reports; this is the sum a single-reward trainer optimises."""
        valid = pl.col("reward").is_not_null() & pl.col("reward").is_not_nan()

        def build() -> list[pl.LazyFrame]:  # the frame built inside: a file found unreadable is then left out
            lf = self.run.samples
            if self.split:
                lf = lf.filter(pl.col("split") == self.split)
            return [
                lf.group_by("step").agg(
                    pl.col("reward").filter(valid).mean().alias("reward_mean"),
                    pl.col("reward").filter(valid).std().alias("reward_std"),
                    pl.col("reward").is_nan().sum().cast(pl.Int64).alias("reward_nan"),
                    valid.sum().cast(pl.Int64).alias("reward_count"),
                    pl.len().cast(pl.Int64).alias("rows"),
                )
            ]

        [df] = self.run.collect(build)
        return self._known_steps(df).sort("step")

    @cached_property
    def roles(self) -> list[str | None]:
        """Roles present in ``per_role``, named roles first (in run order), then None (role unknown)."""
        present = set(self.per_role["role"].to_list())
        named = [r for r in self.run.role_names() if r in present]
        named += sorted(r for r in present if r is not None and r not in named)
        return named + ([None] if None in present else [])

    @cached_property
    def diversity(self) -> pl.DataFrame | None:
        """Diversity of the completions per step (metrics per prompt group, averaged), or None without texts."""
        from .texts import diversity_frame

        try:
            df = diversity_frame(self.run, ["step"], text="auto", filters=self.filters)
        except RunlogError as exc:
            self.notes.append(f"diversity not computed: {exc}")
            return None
        df = self._known_steps(df)
        if df.height == 0:
            self.notes.append("no completion texts: diversity checks and plots skipped")
            return None
        return df

    @cached_property
    def role_diversity(self) -> pl.DataFrame | None:
        """Diversity per (step, role) of each role's own texts (``diversity_frame(run, ["step", "role"])``,
        text ``auto``: a role's last turn with content; samples without messages give their completion under a
        null role), or None without texts."""
        from .texts import diversity_frame

        if self.diversity is None:
            return None
        df = self._known_steps(diversity_frame(self.run, ["step", "role"], text="auto", filters=self.filters))
        return df if df.height else None

    @cached_property
    def components_per_step(self) -> pl.DataFrame:
        """One row per (step, reward component): ``mean``, ``std`` (ddof 1) and ``count`` of the samples'
        valid (not null, not NaN) values of that component, and the ``nan`` and ``null`` values left out of
        them (null: a sample without that component), so that what a mean is without can be said beside it;
        empty when the run has no components."""
        from .views import sample_view

        names = self.run.component_names()
        schema = pl.Schema(
            {
                "step": pl.Int64,
                "component": pl.String,
                "mean": pl.Float64,
                "std": pl.Float64,
                "count": pl.Int64,
                "nan": pl.Int64,
                "null": pl.Int64,
            }
        )
        if not names:
            return pl.DataFrame(schema=schema)
        aggs = []
        for i, n in enumerate(names):
            c = pl.col(f"component/{n}")
            v = c.filter(c.is_not_null() & c.is_not_nan())
            aggs += [v.mean().alias(f"{i}:mean"), v.std().alias(f"{i}:std"), v.len().cast(pl.Int64).alias(f"{i}:count")]
            aggs += [
                c.is_nan().sum().cast(pl.Int64).alias(f"{i}:nan"),
                c.null_count().cast(pl.Int64).alias(f"{i}:null"),
            ]

        def build() -> list[pl.LazyFrame]:  # the view built inside: a file found unreadable is then left out
            lf = sample_view(self.run, {"step": pl.col("step"), "split": pl.col("split")}, names, kl=False)
            if self.split:
                lf = lf.filter(pl.col("split") == self.split)
            return [lf.group_by("step").agg(aggs)]

        [wide] = self.run.collect(build)
        wide = self._known_steps(wide)
        parts = [
            wide.select(
                pl.col("step").cast(pl.Int64),
                pl.lit(n, dtype=pl.String).alias("component"),
                *[pl.col(f"{i}:{m}").alias(m) for m in ("mean", "std", "count", "nan", "null")],
            )
            for i, n in enumerate(names)
        ]
        return pl.concat(parts).cast(schema).sort("component", "step")

    @cached_property
    def format(self) -> pl.DataFrame | None:
        """Format adherence of the completions per step (``format_spec``), or None without texts."""
        from .texts import format_frame

        if self.diversity is None:
            return None
        df = self._known_steps(format_frame(self.run, self.format_spec, ["step"], text="auto", filters=self.filters))
        return df if df.height else None

    @cached_property
    def inspect(self) -> RunInspection:
        from .inspect import inspect_run

        return inspect_run(self.run)

    def role_series(self, role: str | None, column: str) -> tuple[list[int], list[float | None]]:
        """(steps, values) of one column for one role, in step order."""
        df = self.per_role.filter(pl.col("role").is_null() if role is None else pl.col("role") == role).sort("step")
        if column not in df.columns:
            return df["step"].to_list(), [None] * df.height
        return df["step"].to_list(), df[column].to_list()

    @property
    def mixed_roles(self) -> bool:
        """Whether some samples have per-role data and others have not (the null role is then a part of the
        run, not the run)."""
        return None in self.roles and len(self.roles) > 1

    @property
    def has_kl(self) -> bool:
        return "kl_count" in self.per_role.columns and int(self.per_role["kl_count"].fill_null(0).sum()) > 0

    @property
    def has_groups(self) -> bool:
        return self.per_role.height > 0 and self.per_role["zero_adv_frac"].null_count() < self.per_role.height

    def components(self) -> list[str]:
        return [
            c.removeprefix("component/").removesuffix("_mean")
            for c in self.per_step.columns
            if c.startswith("component/") and c.endswith("_mean")
        ]
