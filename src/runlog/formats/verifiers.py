"""verifiers ``results.jsonl`` (``vf-eval`` output), and the JSONL sample-layout base the foreign JSONL
layouts (verifiers, verl, NeMo Gym) share.

A verifiers line holds one rollout: ``prompt`` and ``completion`` as OpenAI chat messages (``tool_calls``
entries JSON-encoded strings), ``reward``, one numeric column per reward function / metric, timings
(``generation_ms, scoring_ms, total_ms``), ``id`` (``example_id`` in newer versions), ``task``,
``answer`` and ``info``. The rollouts of one example are one GRPO group. The sibling ``metadata.json``
is not claimed here.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .. import chat
from .. import schema as S
from .._lazy import pl
from .base import UNREADABLE, WRONG_TYPE, Candidate, FileInfo, Layout, RunContext, register
from .common import read_jsonl

# Columns a JSONL layout fills; the rest of SAMPLE_COLUMNS is added as typed nulls by conform_samples.
_ROW_COLUMNS = (
    "step",
    "split",
    "sample_id",
    "group_id",
    "env_name",
    "reward",
    "reward_components",
    "exception",
    "prompt",
    "completion",
    "messages",
)


def number(v: Any) -> float | None:
    """A JSON value as float when it is a number (bools count: they are pass/fail metrics)."""
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return None


def components(values: dict[str, Any]) -> list[dict[str, Any]] | None:
    """``{name: number}`` to canonical ``[{name, value}]``; non-numbers are left out (callers keep them)."""
    out = [{"name": str(k), "value": f} for k, v in values.items() if (f := number(v)) is not None]
    return out or None


def text_of(v: Any) -> str | None:
    """A prompt / completion / error value as text (strings kept, anything else as compact JSON)."""
    if v is None or isinstance(v, str):
        return v
    return chat.compact_json(v)


def samples_frame(rows: list[dict[str, Any]], source: str, layout: str) -> pl.DataFrame:
    """Canonical-typed frame from row dicts (``_ROW_COLUMNS`` plus ``extra``), built column by column."""
    data: dict[str, pl.Series] = {
        "layout": pl.Series("layout", [layout] * len(rows), dtype=pl.String),
        "source": pl.Series("source", [source] * len(rows), dtype=pl.String),
    }
    for col in _ROW_COLUMNS:
        data[col] = pl.Series(col, [r.get(col) for r in rows], dtype=S.SAMPLE_COLUMNS[col])
    data["extra"] = pl.Series("extra", [r.get("extra") for r in rows], dtype=pl.String)
    return pl.DataFrame(data)


class JsonlSamples(Layout):
    """Base of the foreign JSONL sample layouts: parse once in ``probe`` (``common.read_jsonl`` reports bad
    and torn lines), map each record with ``map_record``, keep the frame in ``info.payload``."""

    formats: ClassVar[tuple[str, ...]] = (".jsonl",)
    # Fields a layout maps; any other top-level field goes to ``extra`` and is named in a fidelity note.
    mapped: ClassVar[frozenset[str]] = frozenset()

    def file_meta(self, info: FileInfo) -> None:
        """Set what the path tells (split, step) before the lines are read."""

    def map_record(
        self, rec: dict[str, Any], line: int, info: FileInfo, ctx: RunContext, state: dict[str, Any]
    ) -> dict[str, Any]:
        raise NotImplementedError

    def probe(self, cand: Candidate, ctx: RunContext) -> FileInfo:
        info = FileInfo(cand.rel, cand.abspath, self.name, "jsonl", "samples", cand.size)
        self.file_meta(info)
        frame = self.parse(info, ctx)
        info.payload = frame
        info.rows = frame.height
        steps = sorted(int(s) for s in frame.get_column("step").drop_nulls().unique())
        if len(steps) == 1:
            info.step = steps[0]
        elif steps:
            info.step = None
            info.steps = steps
        return info

    def parse(self, info: FileInfo, ctx: RunContext) -> pl.DataFrame:
        """Read and map every line of one file (also used by ``scan_samples`` when no payload is kept)."""
        before = len(ctx.problems)
        res = read_jsonl(info, ctx)
        if any(p.kind == UNREADABLE and p.path == info.path for p in ctx.problems[before:]):
            info.readable = False
        rows: list[dict[str, Any]] = []
        state: dict[str, Any] = {}
        for rec, line in zip(res.records, res.line_numbers, strict=True):
            try:
                row = self.map_record(rec, line, info, ctx, state)
            except Exception as exc:  # a shape no reader foresaw must cost one line, never the file
                reason = f"{type(exc).__name__}: {exc}"[:200]
                ctx.problem(info.path, WRONG_TYPE, f"line {line}: record not mapped ({reason}); line skipped")
                continue
            rows.append(row)
        unmapped: set[str] = state.get("unmapped", set())
        if unmapped:
            names = ", ".join(sorted(unmapped)[:12]) + (" ..." if len(unmapped) > 12 else "")
            ctx.note(self.name, f"fields kept as JSON in the `extra` column: {names}")
        return self.finish(samples_frame(rows, info.path, self.name), state, info, ctx)

    def finish(self, frame: pl.DataFrame, state: dict[str, Any], info: FileInfo, ctx: RunContext) -> pl.DataFrame:
        """The file's frame once every line is mapped (a layout may fix what only the whole file tells)."""
        return frame

    def extra(
        self,
        rec: dict[str, Any],
        state: dict[str, Any],
        skip: Any = (),
        also: dict[str, Any] | None = None,
    ) -> str | None:
        """Unmapped top-level fields of a record as one JSON string (None when there are none); their names
        are collected in ``state`` for the file's fidelity note."""
        rest = {k: v for k, v in rec.items() if k not in self.mapped and k not in skip}
        state.setdefault("unmapped", set()).update(rest)
        if also:
            rest.update(also)
        return chat.compact_json(rest) if rest else None

    def scan_samples(self, files: list[FileInfo], ctx: RunContext) -> pl.LazyFrame | None:
        frames = []
        for f in files:
            if not f.readable or f.kind != "samples":
                continue
            frame = f.payload if isinstance(f.payload, pl.DataFrame) else self.parse(f, ctx)
            frames.append(frame)
        if not frames:
            return None
        return S.conform_samples(pl.concat(frames, how="diagonal_relaxed").lazy())


_TIMINGS = frozenset({"generation_ms", "scoring_ms", "total_ms"})
# Known non-reward fields of verifiers results (kept in `extra` when present, never used as components).
_NOT_METRICS = frozenset({"id", "example_id", "reward", "is_truncated", "is_completed"}) | _TIMINGS


@register
class Verifiers(JsonlSamples):
    name = "verifiers"
    description = "verifiers vf-eval results.jsonl (chat prompt/completion, a column per reward function)"
    priority = 50
    mapped = frozenset({"id", "example_id", "prompt", "completion", "reward", "task", "error"})

    formats = (".jsonl", ".json")

    def detect(self, cand: Candidate) -> bool:
        if cand.suffix == ".json":
            return self._is_metadata(cand)
        if cand.suffix != ".jsonl":
            return False
        obj = cand.first_json
        if not isinstance(obj, dict) or "reward" not in obj:
            return False
        return isinstance(obj.get("prompt"), (list, str)) and isinstance(obj.get("completion"), (list, str))

    @staticmethod
    def _is_metadata(cand: Candidate) -> bool:
        """vf-eval's ``metadata.json`` beside ``results.jsonl``: the evaluation's settings and averages."""
        if not cand.name.endswith("metadata.json") or cand.size > 1_000_000:
            return False
        obj = cand.first_json
        return isinstance(obj, dict) and {"env", "model", "num_examples"} <= obj.keys()

    def probe(self, cand: Candidate, ctx: RunContext) -> FileInfo:
        if cand.suffix == ".json":
            # Claimed so that it is not reported as a stray file; its averages are recomputable from the
            # rows and its settings are not part of the canonical model.
            ctx.note(self.name, f"{cand.rel}: evaluation settings (env, model, sampling) not mapped")
            return FileInfo(cand.rel, cand.abspath, self.name, "json", "manifest", cand.size)
        return super().probe(cand, ctx)

    def file_meta(self, info: FileInfo) -> None:
        info.split = "eval"
        info.step = 0

    def map_record(
        self, rec: dict[str, Any], line: int, info: FileInfo, ctx: RunContext, state: dict[str, Any]
    ) -> dict[str, Any]:
        ctx.note(self.name, "results.jsonl has no training step: rows get step 0 and split 'eval'")
        ex_id = rec.get("example_id", rec.get("id"))
        state["by_id"] = state.get("by_id", False) or ("example_id" not in rec and ex_id is not None)
        if ex_id is None:
            group_id, sample_id = None, f"line{line}"
        else:
            group_id = str(ex_id)
            counts: dict[str, int] = state.setdefault("counts", {})
            k = counts.get(group_id, 0)
            counts[group_id] = k + 1
            sample_id = f"{group_id}:{k}"
        prompt_msgs = chat.from_openai_chat(rec.get("prompt"))
        raw_completion = rec.get("completion")
        if isinstance(raw_completion, str):
            completion_msgs = [chat.message("assistant", raw_completion)]
        else:
            completion_msgs = chat.from_openai_chat(raw_completion)
        metrics = {
            k: v for k, v in rec.items() if k not in _NOT_METRICS and k not in self.mapped and number(v) is not None
        }
        task = rec.get("task")
        row = {
            "step": 0,
            "split": "eval",
            "sample_id": sample_id,
            "group_id": group_id,
            "env_name": task if isinstance(task, str) else None,
            "reward": number(rec.get("reward")),
            "reward_components": components(metrics),
            "exception": text_of(rec.get("error")) or None,
            "prompt": chat.last_text(prompt_msgs, "user"),
            "completion": chat.joined_text(completion_msgs, "assistant"),
            "messages": prompt_msgs + completion_msgs,
            "extra": self.extra(rec, state, skip=metrics),
        }
        # One entry per mapped row, in order (``finish`` lines them up with the frame).
        state.setdefault("prompts", []).append((group_id, chat.compact_json(rec.get("prompt"))))
        return row

    def finish(self, frame: pl.DataFrame, state: dict[str, Any], info: FileInfo, ctx: RunContext) -> pl.DataFrame:
        """Older vf-eval versions wrote an ``id`` that is not the example's (rows ``3k..3k+2`` get id ``k`` while
        the prompts cycle through the dataset): where the rows of one ``id`` have different prompts, the prompt
        groups are the rows with the same prompt (``prompt-N``, numbered in order of first appearance)."""
        pairs: list[tuple[str | None, str]] = state.get("prompts", [])
        seen: dict[str, set[str]] = {}
        for group, prompt in pairs:
            if group is not None:
                seen.setdefault(group, set()).add(prompt)
        if not state.get("by_id") or all(len(p) == 1 for p in seen.values()):
            return frame
        first: dict[str, int] = {}
        groups = [None if g is None else f"prompt-{first.setdefault(p, len(first))}" for g, p in pairs]
        ctx.note(
            self.name,
            f"{info.path}: `id` does not name the example (rows with one id have different prompts): "
            "prompt groups are the rows with the same prompt",
        )
        return frame.with_columns(pl.Series("group_id", groups, dtype=pl.String))
