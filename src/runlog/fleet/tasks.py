"""What a fleet task computes for each of its runs: one typed job per kind (``summarize``, ``diversity``,
``format``), and the task that carries a job to an engine with the keys, filters, layout and storage options
every kind needs. Everything here is picklable: a task travels to Ray workers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from .._lazy import pl
from ..analysis.filters import Filters
from ..errors import RunlogError
from ..storage import StorageOptions

if TYPE_CHECKING:
    from ..formats.base import FileInfo
    from ..run import Run


# The job notes that count what the files opened hold (``SummarizeJob``'s prompt joins, ``prompt_join_note``): a
# chunk of a run's steps says this instead (``_unit_notes``).
_COUNTED = "job_notes.counted"
CHUNKED_JOIN_NOTE = (
    "some samples without a group_id were put in the group of their prompt (the one group_id its other samples "
    "carry at their split and step, else their prompt text: docs/metrics.md); the run was read in chunks of its "
    "steps, which count them apart: runlog summarize RUN --prompt-groups of the run alone says how many"
)


@dataclass(frozen=True)
class SummarizeJob:
    """``summarize``'s mergeable partials of a run or of a chunk of its steps (``analysis.partials``)."""

    kind: ClassVar[str] = "summarize"
    prompt_groups: bool = False  # find GRPO groups from identical prompt text (reads the prompts)

    def frame(self, run: Run, keys: list[str], filters: Filters) -> pl.DataFrame:
        from ..analysis.aggregate import prompt_join_note
        from ..analysis.partials import summarize_partials
        from ..analysis.summarize import PROMPT_GROUPS_NOTE, prompt_groups_skipped

        out = summarize_partials(run, keys, filters=filters, prompt_groups=self.prompt_groups)
        if not self.prompt_groups and prompt_groups_skipped(run):  # footers only: said as for one run
            job_notes(run).append(PROMPT_GROUPS_NOTE)
        elif self.prompt_groups and (joined := prompt_join_note(run, filters)) is not None:
            # Samples without a group_id put in their prompt's group, said as for one run: counted over the files
            # opened (a chunk of a big run's steps says it without its counts: ``_unit_notes``).
            job_notes(run).append(joined)
            run.ctx.cache.setdefault(_COUNTED, []).append(joined)
        return out

    def layouts(self, run: Run, keys: list[str], filters: Filters, frame: pl.DataFrame) -> list[str]:
        """``views.layouts_note`` as ``summarize`` of the run alone says it (not with ``--by env``): of each split
        of its rows where the table is per split, else of the splits chosen (the whole run where none is)."""
        from ..analysis.views import layouts_note

        if "env" in keys:
            return []
        if "split" in keys and "split" in frame.columns:
            held = frame.filter(pl.col("rows") > 0) if "rows" in frame.columns else frame
            splits = sorted({str(x) for x in held["split"].drop_nulls().to_list()})
            return [n for x in splits if (n := layouts_note(run, splits=[x])) is not None]
        note = layouts_note(run, splits=filters.splits or None)
        return [] if note is None else [note]


@dataclass(frozen=True)
class DiversityJob:
    """``metrics diversity`` of a whole run (``analysis.texts.diversity_frame``'s options)."""

    kind: ClassVar[str] = "diversity"
    text: str = "auto"
    over: str = "group"
    compression: bool = False
    threads: int = 2

    def frame(self, run: Run, keys: list[str], filters: Filters) -> pl.DataFrame:
        from ..analysis import texts as M

        return M.diversity_frame(
            run,
            keys,
            text=self.text,
            over=self.over,
            filters=filters,
            compression=self.compression,
            threads=self.threads,
            split_key=False,
            notes=job_notes(run),
        )

    def layouts(self, run: Run, keys: list[str], filters: Filters, frame: pl.DataFrame) -> list[str]:
        return _whole_run_layouts(run)


def _whole_run_layouts(run: Run) -> list[str]:
    """``views.layouts_note`` of the whole run, as ``metrics`` of the run alone says it (it has no ``--by env``)."""
    from ..analysis.views import layouts_note

    note = layouts_note(run, by_env=False)
    return [] if note is None else [note]


def job_notes(run: Run) -> list[str]:
    """The list a job's notes of ``run`` go in (what its figures leave out: texts in no prompt group), which
    ``_run_unit`` hands back with the run's frame: a fleet says them of that run, as ``metrics`` says them of
    one run."""
    notes: list[str] = run.ctx.cache.setdefault("job_notes", [])
    return notes


@dataclass(frozen=True)
class FormatJob:
    """``metrics format`` of a whole run (``analysis.texts.format_frame``'s options)."""

    kind: ClassVar[str] = "format"
    spec: str = "think-answer-strict"
    text: str = "auto"
    known_tools: tuple[str, ...] | None = None  # tool-call-json: the tool names a call may use

    def frame(self, run: Run, keys: list[str], filters: Filters) -> pl.DataFrame:
        from ..analysis import texts as M

        return M.format_frame(
            run, self.spec, keys, text=self.text, filters=filters, known_tools=self.known_tools, split_key=False
        )

    def layouts(self, run: Run, keys: list[str], filters: Filters, frame: pl.DataFrame) -> list[str]:
        return _whole_run_layouts(run)


MetricJob = DiversityJob | FormatJob
Job = SummarizeJob | DiversityJob | FormatJob


@dataclass(frozen=True)
class Task:
    """A job with what every kind needs besides its units: the group keys (``run`` excluded: each frame gets
    its run's name), the row filters, a forced layout and the storage options."""

    job: Job
    keys: list[str]
    filters: Filters = field(default_factory=Filters)
    layout: str | None = None
    storage_options: StorageOptions = field(default_factory=StorageOptions)

    @classmethod
    def of(
        cls,
        job: Job,
        keys: list[str],
        filters: Filters | None,
        layout: str | None,
        storage_options: Mapping[str, str] | None,
    ) -> Task:
        return cls(job, keys, filters or Filters(), layout, StorageOptions.of(storage_options))

    @property
    def kind(self) -> str:
        return self.job.kind


@dataclass
class Unit:
    """One run, or one chunk of whole steps of a big run: the files a task opens."""

    index: int
    name: str
    location: str
    files: list[str] | None  # run-relative paths; None: the whole run
    bytes: int
    parts: int = 1  # how many units the run is cut into (chunks of whole steps of a big run)


@dataclass
class UnitResult:
    index: int
    name: str
    frame: pl.DataFrame | None
    problems: list[tuple[str, str, str]]  # (path, kind, message)
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # ``job_notes``
    run_id: str | None = None  # the manifest's run_id: two runs of a fleet with one may be a run and its copy
    # The layouts and tasks the run's samples pool (``views.layouts_note``, as the command says it of the run
    # alone), for a run of one unit; a chunk of a run of several tells its samples' (layout, env) pairs instead,
    # which the driver puts together (``fleet.layouts_notes``).
    layouts: list[str] = field(default_factory=list)
    sources: list[tuple[str, str | None]] = field(default_factory=list)
    # A chunk of a run of several: the steps its sample files' rows are of (``row_steps``; None: not all known),
    # from which the driver tells whether a step's rows fell into two chunks (``fleet._rejoined``).
    steps: list[int | None] | None = field(default_factory=list)


def sample_sources(run: Run) -> list[tuple[str, str | None]]:
    """The (layout, env) pairs of the run's readable sample files (env None where a file names none or its
    envs are unread: Parquet), from what the probes parsed: whether a run's chunks together pool layouts or
    tasks, where none alone may."""
    pairs: set[tuple[str, str | None]] = set()
    for f in run.files:
        if f.kind != "samples" or not f.readable:
            continue
        frame = f.frame
        if isinstance(frame, pl.DataFrame) and "env_name" in frame.columns:
            envs = frame.get_column("env_name").cast(pl.String).unique().to_list()
            pairs.update((f.layout, e) for e in envs)
        else:
            pairs.add((f.layout, None))
    return sorted(pairs, key=lambda p: (p[0], p[1] is not None, p[1] or ""))


def row_steps(run: Run) -> list[int | None] | None:
    """The steps of the rows of the run's sample files (``file_steps``), all together; None where a file's are
    not known (its rows may be of any step)."""
    steps: set[int | None] = set()
    for f in run.files:
        if f.kind == "samples" and f.readable and f.rows != 0:
            mine = file_steps(f)
            if mine is None:
                return None
            steps.update(mine)
    return sorted(steps, key=lambda s: (s is not None, s or 0))


def file_steps(f: FileInfo) -> list[int | None] | None:
    """The steps of a sample file's rows (None among them: rows of no step), as discovery found them: a file
    named for one step whose rows are of another stands for its rows' step (``_check_named_step`` of the native
    and TRL layouts), which its name cannot tell; a file read whole (JSONL) tells them from its rows. None where
    the file stands for no step that is known (a Parquet file whose rows are of several steps, an object whose
    footer has no statistics of its step column): its rows may be of any step."""
    if f.step is not None or f.steps is not None:
        return list(f.all_steps())
    frame = f.frame
    if not isinstance(frame, pl.DataFrame) or "step" not in frame.columns:
        return None
    try:
        return [None if s is None else int(s) for s in frame.get_column("step").unique().to_list()]
    except (TypeError, ValueError):
        return None


def _unit_notes(run: Run, unit: Unit) -> list[str]:
    """The job's notes of ``run``. Those that count what the files opened hold (``_COUNTED``) are said without
    their counts by a chunk of a run's steps: each chunk's count, said as the run's, would be a share of it, and
    a run of many chunks would give as many lines (the fleet says each distinct note once per run)."""
    notes = list(job_notes(run))
    counted = run.ctx.cache.get(_COUNTED, [])
    if unit.parts == 1 or not counted:
        return notes
    return list(dict.fromkeys(CHUNKED_JOIN_NOTE if n in counted else n for n in notes))


def run_batch(args: tuple[Task, list[Unit]]) -> list[UnitResult]:
    """Open each unit's files and compute its result frame with runlog's own code."""
    task, units = args
    return [_run_unit(task, u) for u in units]


def _run_unit(task: Task, unit: Unit) -> UnitResult:
    from ..run import open_run

    try:
        run = open_run(unit.location, layout=task.layout, only=unit.files, storage_options=task.storage_options)
        frame = task.job.frame(run, task.keys, task.filters)
        frame = frame.select(pl.lit(unit.name, dtype=pl.String).alias("run"), pl.all())
        run_id = (run.manifest or {}).get("run_id")
        run_id = str(run_id) if isinstance(run_id, (str, int)) and not isinstance(run_id, bool) else None
        layouts = task.job.layouts(run, task.keys, task.filters, frame) if unit.parts == 1 else []
        sources = sample_sources(run) if unit.parts > 1 else []
        steps = row_steps(run) if unit.parts > 1 else []
        problems = [(p.path, p.kind, p.message) for p in run.problems]
        return UnitResult(
            unit.index,
            unit.name,
            frame,
            problems,
            notes=_unit_notes(run, unit),
            run_id=run_id,
            layouts=layouts,
            sources=sources,
            steps=steps,
        )
    except RunlogError as exc:
        return UnitResult(unit.index, unit.name, None, [], str(exc))
    except OSError as exc:
        from ..storage import remote_reason

        return UnitResult(unit.index, unit.name, None, [], f"{unit.location}: {remote_reason(exc)}")
