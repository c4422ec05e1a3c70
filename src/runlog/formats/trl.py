"""TRL ``GRPOTrainer`` completion logs: ``{output_dir}/completions/completions_{step:05d}.parquet``.

With ``log_completions=True`` TRL writes one Parquet file per logging step (``GRPOTrainer.log``): ``step``
(the global step), ``prompt`` and ``completion`` (text; chat-message lists in conversational setups),
one float column per reward function (named after the function; NaN where it returned None), and
``advantage``; a reward function's ``log_extra`` columns sit among them, and nothing in the file tells them
apart (TRL writes ``**rewards, **extra`` into one table). Some forks write ``completions/{mode}/`` with a ``mode``
column and extra logged columns (per-sample ``kl``, ``entropy``). TRL does not log a group id, the reward weights
nor the total reward: every reward-function column is summed, as TRL does, whatever its name (a function
``def reward(...)`` is a column ``reward``). TRL stores every function's value in one float tensor
(``rewards_per_func``), so a reward-function column is a float one: a boolean or integer column is a
``log_extra`` one (a ``prm_valid`` flag, a ``tool_calls`` count), kept in ``extra``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .. import chat
from .. import schema as S
from .._lazy import LazyModule, pl
from ..errors import RunlogError
from .base import MISSING_COLUMNS, Candidate, FileInfo, Layout, RunContext, register, run_files
from .common import (
    coerce_step,
    group_by_signature,
    per_file_value,
    probe_parquet,
    read_step_column,
    scan_parquet,
    source_column,
    step_expr,
    stepless_reason,
    unusable_step,
)

pa: Any = LazyModule("pyarrow")  # imported on first use

_FILE = re.compile(r"completions_(\d+)\.parquet")
_KNOWN = frozenset({"step", "prompt", "completion", "advantage", "mode", "source"})
_IMAGES = frozenset({"image", "images"})
# Numeric columns that are no reward function (TRL's own ``advantage``, and what forks log beside it: token
# counts, lengths, counters, ids, timings, and the policy's per-sample quantities: KL, entropy, log-probabilities,
# loss): kept in ``extra``, never summed into the reward.
_NOT_REWARD = re.compile(
    r"(?i)advantages?|(?:num|n)_\w+|\w*tokens?|(?:\w+_)?(?:len|lens|length|lengths|count|counts|id|idx|index)"
    r"|\w+_(?:time|secs?|seconds|ms)|global_step|epoch|split|mode"
    r"|(?:\w+_)?kl(?:_\w+)?|(?:\w+_)?(?:entropy|entropies)|\w*log_?probs?\w*|\w*logps?\w*|(?:\w+_)?loss(?:es)?"
)
# Names a fork's logged total could have. TRL names each column after its reward function, and real scripts name
# one ``reward`` (``reward_funcs=[reward, format_reward]``): the name cannot tell a total from a function, so such a
# column is summed as TRL sums it, and where other functions' columns are summed with it a warning says that a
# fork's total would count them twice.
_TOTALS = frozenset({"reward", "rewards", "total_reward"})


def _reward_name(name: str) -> bool:
    return name not in _KNOWN and name not in _IMAGES and not _NOT_REWARD.fullmatch(name)


# Footer (Arrow) types, as ``FileInfo.columns`` holds them, that polars reads as floats, other numbers (booleans,
# integers, decimals), text, bytes.
_ARROW_FLOAT = frozenset({"halffloat", "float", "double"})
_ARROW_OTHER_NUMBER = re.compile(r"u?int(?:8|16|32|64)|bool|decimal(?:32|64|128|256)?\(.*\)")
_ARROW_TEXT = frozenset({"string", "large_string", "string_view"})
_ARROW_BINARY = re.compile(r"binary|large_binary|binary_view|fixed_size_binary\[\d+\]")


def _reward_columns(files: list[FileInfo]) -> set[str]:
    """The run's reward-function columns, from the footers: a float column in at least one file, and a boolean,
    integer or decimal one in none. (An all-null column is no evidence: a column null in every file is no reward
    function.) TRL stores every function's value as a float (its ``rewards_per_func`` tensor; a None as NaN), so a
    column of another number type is a ``log_extra`` one: a flag (``prm_valid``) summed would add 1 to every
    valid row's reward, a count (``tool_calls``: 3) 3. A ``log_extra`` integer column with a None is written as a
    float in that file (pandas), so one such file does not make the column a function's."""
    floats = {c for f in files for c, t in f.columns.items() if t in _ARROW_FLOAT}
    others = {c for f in files for c, t in f.columns.items() if _ARROW_OTHER_NUMBER.fullmatch(t)}
    return {c for c in floats - others if _reward_name(c)}


@dataclass(frozen=True)
class _Plan:
    """How the files of one footer schema map, known from the footer alone (what the notes say)."""

    reward_cols: list[str]  # the reward functions: summed; the reward_components
    text: bool  # prompt and completion are text
    dropped: list[str]  # image / binary columns, not mapped
    kept: list[str]  # other columns, kept in ``extra``
    flags: list[str]  # numeric columns no reward function for their type (``log_extra``), among ``kept``

    @property
    def total_like(self) -> list[str]:
        """Summed columns named as a fork's total could be, where other functions' columns are summed with them."""
        named = [c for c in self.reward_cols if c in _TOTALS]
        return named if len(self.reward_cols) > len(named) else []


def _plan(columns: dict[str, str], rewards: set[str]) -> _Plan:
    reward_cols = [c for c in columns if c in rewards]
    others = [c for c in columns if c not in _KNOWN and c not in reward_cols]
    dropped = [c for c in others if c in _IMAGES or _ARROW_BINARY.fullmatch(columns[c])]
    text = columns.get("prompt") in _ARROW_TEXT and columns.get("completion") in _ARROW_TEXT
    kept = [c for c in others if c not in dropped]
    # Named as a function could be, numeric, and no reward column: a boolean, integer or decimal one (here or in
    # another file of the run: ``_reward_columns``).
    flags = [
        c for c in kept if _reward_name(c) and (columns[c] in _ARROW_FLOAT or _ARROW_OTHER_NUMBER.fullmatch(columns[c]))
    ]
    return _Plan(reward_cols, text, dropped, kept, flags)


def _files(group: list[FileInfo]) -> str:
    """The files a note is about: the one, or the first and how many more."""
    first = group[0].path
    return first if len(group) == 1 else f"{first} and {len(group) - 1} more file(s)"


def _folder_split(info: FileInfo) -> str:
    """The split a file's folder tells: ``eval`` in ``completions/eval/``, else ``train``."""
    return "eval" if info.abspath.parent.name == "eval" else "train"


def _stat_values(info: FileInfo, column: str) -> tuple[set[Any], bool] | None:
    """The values a column's footer statistics name (each row group's exact min and max, text decoded) and
    whether it holds nulls; None where the footer cannot tell (no such column, a row group without statistics,
    or with bounds that are not exact)."""
    md = info.footer.metadata if info.footer is not None else None
    leaf = None if md is None else next((i for i in range(md.num_columns) if md.schema.column(i).path == column), None)
    if md is None or leaf is None:
        return None
    values: set[Any] = set()
    nulls = False
    for rg in range(md.num_row_groups):
        group = md.row_group(rg)
        st = group.column(leaf).statistics
        if group.num_rows == 0:
            continue
        if st is None or not st.has_null_count:
            return None
        nulls = nulls or st.null_count > 0
        if st.null_count == group.num_rows:
            continue
        exact = getattr(st, "is_min_value_exact", True) and getattr(st, "is_max_value_exact", True)
        if not st.has_min_max or not exact:
            return None
        for v in (st.min, st.max):
            values.add(v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
    return values, nulls


def _rows_split(info: FileInfo, folder: str) -> str | None:
    """The split of a file's rows (the reader's ``coalesce(mode, folder split)``): the folder's where it logs no
    text ``mode`` (or only nulls there), the one value its footer statistics show where every row is of it (nulls
    are the folder's); None (of several, or unknown) otherwise: such a file is never left out by a split filter,
    and its rows are read to tell their splits."""
    if info.columns.get("mode") not in _ARROW_TEXT:
        return folder
    found = _stat_values(info, "mode")
    if found is None:
        return None
    values = {str(v) for v in found[0]} | ({folder} if found[1] else set())
    return values.pop() if len(values) == 1 else folder if not values else None


def _check_named_step(info: FileInfo, ctx: RunContext) -> None:
    """A file's rows whose ``step`` column is not the step its name tells (a copy of step 20 saved as
    ``completions_00021``, a file renamed by hand): said, and the file stands for its rows' step, as a native
    sample file does, so that step 20 is not counted a second time as a step 21 the run never had. From the
    footer's statistics (no data read; TRL writes one step per file, as text: ``str(global_step)``). Rows of several
    steps count at their own steps, and the file stands for no one step. Where the footer has no statistics of the
    column (a writer told not to write them), the name's step stands, and a warning says that it was not checked
    against the rows (reading the column of every such file on every command cost 10x a discovery). Where the
    column holds a value that is no integer step (``7.5``, ``"ten"``, ``true``: ``coerce_step``), the name's step
    stands for every row, said with the value (a row was counted at it without a word, or at 7 for a ``7.5``). The
    statistics show only each row group's least and greatest value, so the column itself is read (``_read_steps``)
    where a value that is no step may hide from them: between two steps (10.5 between 10 and 12), between two
    spellings of one (``" 5x"`` between ``" 10"`` and ``"10"``), or in a float column (NaN: statistics leave it
    out). A name beyond the 64-bit range a step is stored in (``_99999999999999999999``) is checked the same: its
    rows count at their own step where their column tells one, else they have no step (null), said."""
    if info.step is None or not info.rows:
        return
    named = coerce_step(info.step)  # None: a name beyond the 64-bit range (``per_file_value`` reads it as null)
    beyond = f"named step {info.step}, beyond the 64-bit integer range a step is stored in"
    if "step" not in info.columns:
        if named is None:
            ctx.warn(info.path, f"{beyond}, and no step column: its rows have no step (null; `inspect` reports it)")
        return
    found = _stat_values(info, "step")
    if found is None and named is not None:
        ctx.warn(
            info.path,
            "written without (exact) statistics of its step column: its rows count at the step its name tells, "
            "not checked against their own step column (a file renamed by hand would count at the wrong step)",
        )
        return
    bad: Any = _NO_VALUE
    steps: set[int] = set()
    if found is not None:
        bad = next((v for v in sorted(found[0], key=repr) if coerce_step(v) is None), _NO_VALUE)
        steps = {s for v in found[0] if (s := coerce_step(v)) is not None}
    hidden = found is None or len(found[0]) > 1 or info.columns["step"] in _ARROW_FLOAT
    if bad is _NO_VALUE and hidden and (read := _read_steps(info)) is not None:
        steps, bad = read
    ordered = sorted(steps)
    if bad is not _NO_VALUE:
        what = f"holds a value that is no integer step ({stepless_reason('step', bad)})"
        if named is not None:
            ctx.warn(
                info.path, f"its step column {what}: all its rows count at step {info.step}, the step its name tells"
            )
        else:
            ctx.warn(
                info.path,
                f"{beyond}, and its step column {what}: its rows count at their own steps, those of no integer step "
                "with no step (null)",
            )
            info.step = None  # (said here: no one step it stands for)
        return
    if named is not None and steps in ({named}, set()):  # (no step in the column, all null: the name's stands)
        return
    if not ordered:  # a name beyond the range, its step column all null
        ctx.warn(info.path, f"{beyond}, and its step column holds no step: its rows have no step (null)")
        info.step = None
    elif len(ordered) == 1:
        ctx.warn(
            info.path, f"named step {info.step} but its rows are of step {ordered[0]}: they count at their own step"
        )
        info.step = ordered[0]
    else:
        ctx.warn(
            info.path,
            f"named step {info.step} but its rows are of several steps ({ordered[0]} and {ordered[-1]} among them): "
            "they count at their own steps",
        )
        info.step = None


_NO_VALUE = object()  # no value that is no step was found


def _read_steps(info: FileInfo) -> tuple[set[int], Any] | None:
    """The steps of a file's ``step`` column (``step_expr``; an object's column alone, ``read_step_column``) and
    its first value that is no integer step (or ``_NO_VALUE``); None where the column cannot be read (the read of
    the rows says so)."""
    try:
        table = read_step_column(info)
    except (OSError, ValueError, RunlogError, pl.exceptions.PolarsError, pa.ArrowException):
        return None
    dtype = table.schema["step"]
    bad = table.filter(unusable_step("step", dtype))
    steps = set(table.select(step_expr("step", dtype))["step"].drop_nulls().to_list())
    return steps, bad.item(0, 0) if bad.height else _NO_VALUE


def _folder(info: FileInfo) -> str:
    """The folder under ``completions/`` a file sits in ('' at the top): ``train``, ``eval``."""
    parent = info.abspath.parent.name
    return "" if parent == "completions" else parent


def _side(value: Any, role: str) -> list[dict[str, Any]]:
    """One side of a logged conversation: text becomes one message, a message list is normalised."""
    if value is None:
        return []
    if isinstance(value, str):
        return [chat.message(role, value)]
    return chat.from_openai_chat(value)


def _messages(row: dict[str, Any]) -> list[dict[str, Any]]:
    return _side(row.get("prompt"), "user") + _side(row.get("completion"), "assistant")


def _prompt_turns(row: dict[str, Any]) -> int:
    return len(_side(row.get("prompt"), "user"))


def _prompt_text(row: dict[str, Any]) -> str | None:
    """The prompt as text: TRL's text prompt as logged; a conversational one of a single plain user message, that
    message's text; any other, the whole prompt as a transcript (``<|system|>`` and ``<|user|>`` blocks, runlog's
    transcript format): prompt groups (``--prompt-groups``) are the samples with the same prompt, and two prompts
    that end with the same user turn but differ before it (their system message: the task) are two."""
    v = row.get("prompt")
    if isinstance(v, str) or v is None:
        return v
    msgs = chat.from_openai_chat(v)
    if not msgs:
        return None
    if len(msgs) == 1 and msgs[0]["role"] == "user" and not any(msgs[0][k] for k in _MARKS):
        return msgs[0]["content"] or None
    return "\n".join(_block(m) for m in msgs)


_MARKS = ("name", "reasoning", "tool_calls", "tool_call_id")


def _block(m: dict[str, Any]) -> str:
    """One message in runlog's transcript format (``chat.transcript_messages`` reads it back): a ``<|role|>``
    header (its name and tool call id as attributes), the text, and a ``[tool_call ID NAME ARGS]`` line per call;
    the reasoning of a prompt's turn after a ``[reasoning]`` line."""
    attrs = "".join(f" {k}={m[a]}" for k, a in (("name", "name"), ("id", "tool_call_id")) if m[a] is not None)
    lines = [f"<|{m['role']}{attrs}|>"]
    if m["content"] is not None:
        lines.append(m["content"])
    lines += [f"[tool_call {c['id']} {c['name']} {c['arguments']}]" for c in m["tool_calls"] or []]
    if m["reasoning"] is not None:
        lines += ["[reasoning]", m["reasoning"]]
    return "\n".join(lines)


def _completion_text(row: dict[str, Any]) -> str | None:
    v = row.get("completion")
    return v if isinstance(v, str) or v is None else chat.joined_text(chat.from_openai_chat(v), "assistant")


def _text_message(role: str, text: pl.Expr) -> pl.Expr:
    return pl.struct(
        pl.lit(role).alias("role"),
        pl.lit(None, dtype=pl.String).alias("name"),
        text.alias("content"),
        pl.lit(None, dtype=pl.String).alias("reasoning"),
        pl.lit(None, dtype=pl.List(S.PL_TOOL_CALL)).alias("tool_calls"),
        pl.lit(None, dtype=pl.String).alias("tool_call_id"),
    )


@register
class Trl(Layout):
    name = "trl"
    description = "TRL GRPOTrainer completion logs (completions/completions_{step:05d}.parquet)"
    priority = 30
    formats = (".parquet",)
    own_folders = r"completions(?:/[^/]+)?"

    def detect(self, cand: Candidate) -> bool:
        if cand.suffix != ".parquet" or not _FILE.fullmatch(cand.name):
            return False
        parent = cand.abspath.parent
        return parent.name == "completions" or parent.parent.name == "completions"

    def name_keys(self, cand: Candidate) -> tuple[str | None, int | None] | None:
        m = _FILE.fullmatch(cand.name)
        return (None, int(m.group(1))) if m else None

    def probe(self, cand: Candidate, ctx: RunContext) -> FileInfo:
        info = probe_parquet(cand, ctx, layout=self.name)
        m = _FILE.fullmatch(cand.name)
        info.step = int(m.group(1)) if m else None
        info.split = _folder_split(info)
        if not info.readable:
            return info
        # A fork's ``mode`` column holds each row's split: the file's split is its rows', so that a split filter
        # leaves out no file whose rows are of the split asked (an eval file in the top folder).
        info.split = _rows_split(info, info.split)
        missing = [c for c in ("prompt", "completion") if c not in info.columns]
        if missing:
            ctx.problem(cand.rel, MISSING_COLUMNS, f"missing column(s) {', '.join(missing)}; file skipped")
            info.readable = False
            return info
        _check_named_step(info, ctx)
        return info

    def decided(self, files: list[FileInfo], ctx: RunContext) -> Any:
        return sorted(_reward_columns([f for f in files if f.readable]))

    def check_run(self, files: list[FileInfo], ctx: RunContext) -> None:
        # What the reader will not map, said from the footers, so that plain `inspect` shows it (no data read).
        readable = [f for f in files if f.readable]
        if readable:
            self._say_plan(readable, _reward_columns(readable), ctx)

    def _say_plan(self, readable: list[FileInfo], rewards: set[str], ctx: RunContext) -> None:
        """The fidelity notes of these files (the same words from ``check_run`` and ``scan_samples``)."""
        ctx.note(
            self.name,
            "reward is the sum of the reward-function columns with weight 1.0 (TRL's default "
            "reward_weights); custom GRPOConfig.reward_weights are not in the logs",
        )
        ctx.note(
            self.name,
            "TRL logs no group id: group_id is null (prompt groups are the samples of one split and step with the "
            "same prompt: summarize finds them only with --prompt-groups)",
        )
        for group in group_by_signature(readable):
            plan, where = _plan(group[0].columns, rewards), _files(group)
            if plan.reward_cols:
                ctx.note(
                    self.name,
                    f"{where}: reward is the sum of the reward-function column(s) {', '.join(plan.reward_cols)}",
                )
            else:
                ctx.note(self.name, f"{where}: no reward-function columns found: reward is null")
            if plan.total_like:
                # A warning, not only a note (summarize, doctor and the report say warnings): TRL writes no total,
                # so the column is a function's and summed, but a fork's logged total summed so would count every
                # function twice, and only the user knows which it is.
                more = f"this file and {len(group) - 1} more: " if len(group) > 1 else ""
                named = ", ".join(repr(c) for c in plan.total_like)
                _warn_once(
                    ctx,
                    group[0].path,
                    f"{more}reward sums the column(s) {named} with the other reward-function column(s) "
                    f"{', '.join(c for c in plan.reward_cols if c not in plan.total_like)} (TRL names each column "
                    "after its reward function and writes no total); if it is a total a fork logs, the reward "
                    "counts those functions twice",
                )
            if plan.flags:
                ctx.note(
                    self.name,
                    f"{where}: column(s) {', '.join(plan.flags)} not summed into the reward: boolean, integer or "
                    "decimal in the run's files (TRL writes every reward function's value as a float: such a column "
                    "is a log_extra one)",
                )
            if plan.text:
                ctx.note(self.name, "prompt is TRL's logged prompt text (chat template applied for chat data)")
            if plan.dropped:
                ctx.note(self.name, f"{where}: image/binary columns not mapped: {', '.join(plan.dropped)}")
            if plan.kept:
                ctx.note(self.name, f"{where}: columns kept as JSON in the `extra` column: {', '.join(plan.kept)}")

    def scan_samples(self, files: list[FileInfo], ctx: RunContext) -> pl.LazyFrame | None:
        readable = [f for f in files if f.readable]
        if not readable:
            return None
        # A reward function is a column that is numeric in at least one file of the run: where another file
        # holds it as text it is read from that text (said), so that no file's sum silently lacks it. The whole
        # run's files decide, not only those handed: a step reads the same alone (a summary's batch, a step the
        # partial cache had not stored) as with the others.
        whole = [f for f in run_files(files, ctx, self.name) if f.readable]
        rewards = _reward_columns(whole)
        self._say_plan(readable, rewards, ctx)
        groups = group_by_signature(readable)
        scans = [scan_parquet(group, include_file_paths="source") for group in groups]
        schemas = [lf.collect_schema() for lf in scans]
        # Sample ids are `{step}:{row}`, the step from the file name; where the run's files sit in several
        # folders under completions/ (train/, eval/: the same step in each), `{folder}/{step}:{row}`.
        several = len({_folder(f) for f in whole}) > 1
        frames = [
            self._scan_group(group, lf, schema, rewards, several, ctx)
            for group, lf, schema in zip(groups, scans, schemas, strict=True)
        ]
        return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]

    def _scan_group(
        self,
        group: list[FileInfo],
        lf: pl.LazyFrame,
        schema: pl.Schema,
        rewards: set[str],
        several: bool,
        ctx: RunContext,
    ) -> pl.LazyFrame:
        # lf is scanned with include_file_paths="source", made run-relative in the select below

        file_step = per_file_value(group, "step", pl.Int64())
        step = file_step
        if "step" in schema:
            # A file of several steps (its name's step null here) holds only integer steps (``_check_named_step``);
            # read exactly all the same: polars' cast reads 7.5 as 7.
            step = pl.coalesce(file_step, step_expr("step", schema["step"]))
        # The folder's split, not ``FileInfo.split`` (the rows', from ``mode``: None where they are of several).
        folders = {str(f.abspath): _folder_split(f) for f in group}
        split = pl.col("source").replace_strict(folders, default=None, return_dtype=pl.String)
        if "mode" in schema and schema["mode"] == pl.String:
            split = pl.coalesce(pl.col("mode"), split)

        plan = _plan(group[0].columns, rewards)
        reward_cols = plan.reward_cols
        values = [self._reward_value(c, schema[c], group, lf, ctx) for c in reward_cols]
        if values:
            all_null = pl.all_horizontal([v.is_null() for v in values])
            # TRL sums the functions' rewards with nansum (``GRPOTrainer``: ``(rewards_per_func * w).nansum(dim=1)``):
            # a function's None (NaN) adds nothing, and a row where every function returned None trained with
            # reward 0.0, which TRL's logged ``reward`` mean counts: so it is 0.0 here too. A row with a value
            # that could not be read (text that is no number, a type that is none: said per file) is no such row:
            # the unread term is unknown, so its reward is too, null (a sum without it is a figure no one logged).
            unreadable = pl.any_horizontal([_unreadable(c, schema[c]) for c in reward_cols])
            reward = pl.when(unreadable).then(None).otherwise(pl.sum_horizontal(values)).cast(pl.Float64)
            self._say_unscored(group, all_null & ~unreadable, reward_cols, ctx)
            items = [
                pl.struct(pl.lit(c).alias("name"), v.alias("value")) for c, v in zip(reward_cols, values, strict=True)
            ]
            present = pl.element().filter(pl.element().struct.field("value").is_not_null())
            comps = (
                pl.when(all_null)
                .then(pl.lit(None, dtype=S.PL_REWARD_COMPONENTS))
                .otherwise(pl.concat_list(items).list.eval(present))
            )
        else:
            reward = pl.lit(None, dtype=pl.Float64)
            comps = pl.lit(None, dtype=S.PL_REWARD_COMPONENTS)

        text = schema["prompt"] == pl.String and schema["completion"] == pl.String
        if text:
            prompt, completion = pl.col("prompt"), pl.col("completion")
            messages = pl.concat_list(
                [_text_message("user", pl.col("prompt")), _text_message("assistant", pl.col("completion"))]
            )
            prompt_turns = pl.lit(1, dtype=pl.Int32)
        else:
            both = pl.struct("prompt", "completion")
            messages = both.map_elements(_messages, return_dtype=S.PL_MESSAGES)
            # The prompt's messages come first (a few-shot example's assistant turns among them): the generated
            # turns are the completion's.
            prompt_turns = both.map_elements(_prompt_turns, return_dtype=pl.Int32)
            prompt = both.map_elements(_prompt_text, return_dtype=pl.String)
            completion = both.map_elements(_completion_text, return_dtype=pl.String)

        exprs = [
            pl.lit(self.name).alias("layout"),
            source_column(group).alias("source"),
            step.alias("step"),
            split.alias("split"),
            self._sample_id(group, several, step).alias("sample_id"),
            reward.alias("reward"),
            comps.alias("reward_components"),
            prompt.alias("prompt"),
            completion.alias("completion"),
            messages.alias("messages"),
            prompt_turns.alias("prompt_turns"),
        ]
        if "advantage" in schema:
            exprs.append(pl.col("advantage").cast(pl.Float64, strict=False).alias("advantage"))
        kept = plan.kept
        if kept:
            exprs.append(pl.struct(kept).struct.json_encode().alias("extra"))
        else:
            exprs.append(pl.lit(None, dtype=pl.String).alias("extra"))
        return S.conform_samples(lf.select(exprs))

    @staticmethod
    def _say_unscored(group: list[FileInfo], unscored: pl.Expr, reward_cols: list[str], ctx: RunContext) -> None:
        """Count, per file, the rows where every reward function returned None (their reward is TRL's 0.0), in
        a warning naming the file. Read only where the footer says each reward column has nulls (TRL writes
        its completions with pandas, which stores a None's NaN as null) or cannot say: a file whose footer
        shows a column without nulls has no such row, and costs nothing. (A NaN stored as NaN, by another
        writer, is not in the footer: such rows read as 0.0 all the same, uncounted.)"""
        counted: dict[str, int] = ctx.cache.setdefault("trl_unscored", {})
        suspects = [
            f
            for f in group
            if f.path not in counted and (f.rows or 0) > 0 and all(f.null_counts.get(c, 1) > 0 for c in reward_cols)
        ]
        for f in group:
            counted.setdefault(f.path, 0)
        if not suspects:
            return
        by_path = {str(f.abspath): f for f in suspects}
        try:
            found = (
                scan_parquet(suspects, include_file_paths="source")
                .select("source", unscored.alias("unscored"))
                .group_by("source")
                .agg(pl.col("unscored").sum())
                .collect()
            )
        except (pl.exceptions.PolarsError, OSError):  # corrupt data behind a footer: the read that needs it says so
            return
        for source, n in found.iter_rows():
            info = by_path.get(source)
            if info is None or not n:
                continue
            counted[info.path] = n
            _warn_once(
                ctx,
                info.path,
                f"{n} row(s) where every reward function returned None (null or NaN in each reward column): reward "
                "0.0, as TRL's GRPOTrainer trained on them (it sums the functions' rewards with nansum); "
                "reward_components null",
            )

    @staticmethod
    def _sample_id(group: list[FileInfo], several: bool, step: pl.Expr) -> pl.Expr:
        """``{step}:{row}``: the file's step (the rows' own where the file stands for no one step)."""
        row = pl.int_range(pl.len()).over("source")
        if not several:
            return pl.format("{}:{}", step, row)
        folders = {str(f.abspath): f"{_folder(f)}/" if _folder(f) else "" for f in group}
        prefix = pl.col("source").replace_strict(folders, default="", return_dtype=pl.String)
        return pl.format("{}{}:{}", prefix, step, row)

    def _reward_value(
        self, col: str, dtype: pl.DataType, group: list[FileInfo], lf: pl.LazyFrame, ctx: RunContext
    ) -> pl.Expr:
        """One reward-function column as float (NaN, TRL's None, as null). Where these files hold it as text
        (numbers in other files), numeric text is read as numbers and the rest as null, said per file; any
        other type is read as null, said per file (the values stay in no column: the warning names them)."""
        if _number_type(dtype):
            return pl.col(col).cast(pl.Float64, strict=False).fill_nan(None)
        if dtype == pl.String:
            parsed = pl.col(col).str.strip_chars().cast(pl.Float64, strict=False).fill_nan(None)
            bad = (
                lf.select("source", pl.col(col), parsed.alias("_parsed"))
                .filter(pl.col(col).is_not_null() & pl.col("_parsed").is_null())
                .group_by("source", maintain_order=True)
                .agg(pl.len().alias("n"), pl.col(col).first().alias("first"))
                .collect()
            )
            counts = {r["source"]: (r["n"], r["first"]) for r in bad.iter_rows(named=True)}
            for f in group:
                n, first = counts.get(str(f.abspath), (0, None))
                rest = f"; {n} value(s) that are not numbers read as null (first: {first!r})" if n else ""
                _warn_once(
                    ctx,
                    f.path,
                    f"reward-function column {col!r} holds text here (numbers in other files): numeric text read "
                    f"as numbers{rest}",
                )
            return parsed
        for f in group:
            _warn_once(ctx, f.path, f"reward-function column {col!r} is {dtype} here, not a number: read as null")
        return pl.lit(None, dtype=pl.Float64)


def _unreadable(col: str, dtype: pl.DataType) -> pl.Expr:
    """Whether a row's value of a reward-function column is there but could not be read as a number (text that
    is none, or a type that is none: ``Trl._reward_value`` reads them as null): not a function's None."""
    if _number_type(dtype):
        return pl.lit(False)
    if dtype == pl.String:
        return pl.col(col).is_not_null() & pl.col(col).str.strip_chars().cast(pl.Float64, strict=False).is_null()
    return pl.col(col).is_not_null()


def _warn_once(ctx: RunContext, path: str, message: str) -> None:
    """A warning said once per run read: the frame is built again for each question of one command (summarize
    by step, the doctor's checks), and each build said it again ("and 3 more file(s)" for one file)."""
    said: set[tuple[str, str]] = ctx.cache.setdefault("trl_said", set())
    if (path, message) not in said:
        said.add((path, message))
        ctx.warn(path, message)


def _number_type(dtype: pl.DataType, *, null: bool = True) -> bool:
    """Numbers, booleans (pass/fail) and (``null``) all-null columns: read as float."""
    return dtype.is_numeric() or dtype == pl.Boolean or (null and dtype == pl.Null)
