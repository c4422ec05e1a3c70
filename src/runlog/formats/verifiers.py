"""verifiers ``results.jsonl`` (``vf-eval`` output), a JSONL sample layout (``jsonl_samples.JsonlSamples``).

A verifiers line holds one rollout: ``prompt`` and ``completion`` as OpenAI chat messages (``tool_calls``
entries JSON-encoded strings), ``reward``, one numeric column per reward function / metric, timings
(``generation_ms, scoring_ms, total_ms``), ``id`` (``example_id`` in newer versions), ``task``,
``answer`` and ``info``. The rollouts of one example are one GRPO group. The sibling ``metadata.json``
is not claimed here.
"""

from __future__ import annotations

from typing import Any

from .. import chat
from .. import schema as S
from .._lazy import pl
from .base import Candidate, FileInfo, RunContext, register
from .jsonl_samples import JsonlSamples, components, number, text_of

_TIMINGS = frozenset({"generation_ms", "scoring_ms", "total_ms"})
# ``ctx.cache`` key: {file path: its prompts, in the order of its ``prompt-N`` groups} (``Verifiers.finish``).
_PROMPT_GROUPS = "verifiers_prompt_groups"
# Known non-reward fields of verifiers results (kept in `extra` when present, never used as components).
_NOT_METRICS = frozenset({"id", "example_id", "reward", "is_truncated", "is_completed"}) | _TIMINGS


def _is_rollout(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and "reward" in obj
        and isinstance(obj.get("prompt"), (list, str))
        and isinstance(obj.get("completion"), (list, str))
    )


@register
class Verifiers(JsonlSamples):
    name = "verifiers"
    description = "verifiers vf-eval results.jsonl (chat prompt/completion, a column per reward function)"
    priority = 50
    reward_field = "reward"
    says_empty_completion = True
    mapped = frozenset({"id", "example_id", "prompt", "completion", "reward", "task", "error"})

    formats = (".jsonl", ".json")

    def detect(self, cand: Candidate) -> bool:
        if cand.suffix == ".json":
            return self._is_metadata(cand)
        if cand.suffix != ".jsonl":
            return False
        # Any of the first lines: a damaged first line (not JSON, no ``reward``) is reported and skipped by the
        # reader, not a reason to ignore the file.
        return any(_is_rollout(obj) for obj in cand.json_lines())

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
        groups are the rows with the same prompt (``prompt-N``, numbered in order of first appearance; across
        the files of a run by ``scan_samples``, so that one group never holds two prompts)."""
        pairs: list[tuple[str | None, str]] = state.get("prompts", [])
        seen: dict[str, set[str]] = {}
        for group, prompt in pairs:
            if group is not None:
                seen.setdefault(group, set()).add(prompt)
        if not state.get("by_id") or all(len(p) == 1 for p in seen.values()):
            return frame
        first: dict[str, int] = {}
        groups = [None if g is None else f"prompt-{first.setdefault(p, len(first))}" for g, p in pairs]
        # The file's prompts in the order of their numbers, for ``scan_samples`` to number them run-wide.
        ctx.cache.setdefault(_PROMPT_GROUPS, {})[info.path] = list(first)
        ctx.note(
            self.name,
            f"{info.path}: `id` does not name the example (rows with one id have different prompts): "
            "prompt groups are the rows with the same prompt",
        )
        return frame.with_columns(pl.Series("group_id", groups, dtype=pl.String))

    def scan_samples(self, files: list[FileInfo], ctx: RunContext) -> pl.LazyFrame | None:
        """As ``JsonlSamples.scan_samples``; the ``prompt-N`` groups of several files (numbered per file by
        ``finish``) are numbered again over all of them, so that ``prompt-N`` is one prompt in the whole run."""
        pairs = self.file_frames(files, ctx)
        if not pairs:
            return None
        memo: dict[str, list[str]] = ctx.cache.get(_PROMPT_GROUPS, {})
        frames = [frame for _, frame in pairs]
        if sum(f.path in memo for f, _ in pairs) > 1:
            number_of: dict[str, int] = {}
            for i, (f, frame) in enumerate(pairs):
                prompts = memo.get(f.path)
                if prompts is None:
                    continue
                mapping = {
                    f"prompt-{n}": f"prompt-{number_of.setdefault(p, len(number_of))}" for n, p in enumerate(prompts)
                }
                frames[i] = frame.with_columns(pl.col("group_id").replace(mapping))
        return S.conform_samples(pl.concat(frames, how="diagonal_relaxed").lazy())

    def check_run(self, files: list[FileInfo], ctx: RunContext) -> None:
        self.warn_pooled(files, ctx, "point runlog at one results file, or keep each evaluation in its own folder")
