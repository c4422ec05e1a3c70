"""TRL ``GRPOTrainer`` completion logs: ``{output_dir}/completions/completions_{step:05d}.parquet``.

With ``log_completions=True`` TRL writes one Parquet file per logging step (``GRPOTrainer.log``): ``step``
(the global step), ``prompt`` and ``completion`` (text; chat-message lists in conversational setups),
one float column per reward function (named after the function; NaN where it returned None), and
``advantage``. Some forks write ``completions/{mode}/`` with a ``mode`` column and extra logged columns.
TRL does not log a group id or the reward weights.
"""

from __future__ import annotations

import re
from typing import Any

from .. import chat
from .. import schema as S
from .._lazy import pl
from .base import MISSING_COLUMNS, Candidate, FileInfo, Layout, RunContext, register
from .common import group_by_signature, per_file_value, probe_parquet, scan_parquet, source_column

_FILE = re.compile(r"completions_(\d+)\.parquet")
_KNOWN = frozenset({"step", "prompt", "completion", "advantage", "mode", "source"})
_IMAGES = frozenset({"image", "images"})


def _side(value: Any, role: str) -> list[dict[str, Any]]:
    """One side of a logged conversation: text becomes one message, a message list is normalised."""
    if value is None:
        return []
    if isinstance(value, str):
        return [chat.message(role, value)]
    return chat.from_openai_chat(value)


def _messages(row: dict[str, Any]) -> list[dict[str, Any]]:
    return _side(row.get("prompt"), "user") + _side(row.get("completion"), "assistant")


def _prompt_text(row: dict[str, Any]) -> str | None:
    v = row.get("prompt")
    return v if isinstance(v, str) or v is None else chat.last_text(chat.from_openai_chat(v), "user")


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
        info.split = "eval" if cand.abspath.parent.name == "eval" else "train"
        if not info.readable:
            return info
        missing = [c for c in ("prompt", "completion") if c not in info.columns]
        if missing:
            ctx.problem(cand.rel, MISSING_COLUMNS, f"missing column(s) {', '.join(missing)}; file skipped")
            info.readable = False
        return info

    def scan_samples(self, files: list[FileInfo], ctx: RunContext) -> pl.LazyFrame | None:
        readable = [f for f in files if f.readable]
        if not readable:
            return None
        ctx.note(
            self.name,
            "reward is the sum of the reward-function columns with weight 1.0 (TRL's default "
            "reward_weights); custom GRPOConfig.reward_weights are not in the logs",
        )
        ctx.note(self.name, "TRL logs no group id: group_id is null (summaries group by identical prompts)")
        frames = [self._scan_group(group, ctx) for group in group_by_signature(readable)]
        return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]

    def _scan_group(self, group: list[FileInfo], ctx: RunContext) -> pl.LazyFrame:
        lf = scan_parquet(group, include_file_paths="source")  # made run-relative in the select below
        schema = lf.collect_schema()

        file_step = per_file_value(group, "step", pl.Int64())
        step = file_step
        if "step" in schema:
            step = pl.coalesce(file_step, pl.col("step").cast(pl.Int64, strict=False))
        split = per_file_value(group, "split", pl.String())
        if "mode" in schema and schema["mode"] == pl.String:
            split = pl.coalesce(pl.col("mode"), split)

        reward_cols = [
            c
            for c, dt in schema.items()
            if c not in _KNOWN and c not in _IMAGES and (dt.is_numeric() or dt == pl.Boolean)
        ]
        values = [pl.col(c).cast(pl.Float64, strict=False).fill_nan(None) for c in reward_cols]
        if values:
            all_null = pl.all_horizontal([v.is_null() for v in values])
            reward = pl.when(all_null).then(None).otherwise(pl.sum_horizontal(values)).cast(pl.Float64)
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
            ctx.note(self.name, "no reward-function columns found: reward is null")
            reward = pl.lit(None, dtype=pl.Float64)
            comps = pl.lit(None, dtype=S.PL_REWARD_COMPONENTS)

        text = schema["prompt"] == pl.String and schema["completion"] == pl.String
        if text:
            prompt, completion = pl.col("prompt"), pl.col("completion")
            messages = pl.concat_list(
                [_text_message("user", pl.col("prompt")), _text_message("assistant", pl.col("completion"))]
            )
            ctx.note(self.name, "prompt is TRL's logged prompt text (chat template applied for chat data)")
        else:
            both = pl.struct("prompt", "completion")
            messages = both.map_elements(_messages, return_dtype=S.PL_MESSAGES)
            prompt = both.map_elements(_prompt_text, return_dtype=pl.String)
            completion = both.map_elements(_completion_text, return_dtype=pl.String)

        exprs = [
            pl.lit(self.name).alias("layout"),
            source_column(group).alias("source"),
            step.alias("step"),
            split.alias("split"),
            pl.format("{}:{}", step, pl.int_range(pl.len()).over("source")).alias("sample_id"),
            reward.alias("reward"),
            comps.alias("reward_components"),
            prompt.alias("prompt"),
            completion.alias("completion"),
            messages.alias("messages"),
        ]
        if "advantage" in schema:
            exprs.append(pl.col("advantage").cast(pl.Float64, strict=False).alias("advantage"))
        others = [c for c in schema.names() if c not in _KNOWN and c not in reward_cols]
        dropped = [c for c in others if c in _IMAGES or schema[c] == pl.Binary]
        if dropped:
            ctx.note(self.name, f"image/binary columns not mapped: {', '.join(dropped)}")
        kept = [c for c in others if c not in dropped]
        if kept:
            ctx.note(self.name, f"columns kept as JSON in the `extra` column: {', '.join(kept)}")
            exprs.append(pl.struct(kept).struct.json_encode().alias("extra"))
        else:
            exprs.append(pl.lit(None, dtype=pl.String).alias("extra"))
        return S.conform_samples(lf.select(exprs))
