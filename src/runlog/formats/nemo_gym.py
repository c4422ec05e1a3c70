"""NeMo Gym rollouts JSONL: one rollout per line in the OpenAI Responses format.

A line holds ``responses_create_params`` (the request: ``input`` items, ``instructions``, ``tools``),
``response`` (the Responses object: ``output`` items, ``model``, ``usage``, ``error``), ``reward``,
``reward_components`` (a dict), ``_ng_task_index`` / ``_ng_rollout_index`` (the task and its repeat), and
whatever the resources server adds (the components again as top-level fields, ``predicted_calls``,
``agent_ref``, ...). Rollouts of one task are one GRPO group.
"""

from __future__ import annotations

from typing import Any

from .. import chat
from .._lazy import pl
from .base import Candidate, FileInfo, RunContext, register
from .jsonl_samples import JsonlSamples, components, number, text_of

_COMP_NOT_NUMBER = (
    "{n} reward component value(s) that are not numbers (first: {first}): left out of `reward_components`, "
    "kept in `extra` as `reward_components.<name>`"
)
_COMPS_NOT_OBJECT = (
    "{n} line(s) whose reward_components is not an object (first: {first}): no components read, the field "
    "kept in `extra`"
)


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _json_kind(v: Any) -> str:
    return {str: "string", list: "list", bool: "boolean", int: "number", float: "number"}.get(type(v), "value")


def _shown(v: Any) -> str:
    text = chat.compact_json(v)
    return text if len(text) <= 40 else text[:40] + "..."


def with_prompt_turns(frame: pl.DataFrame, state: dict[str, Any]) -> pl.DataFrame:
    """``frame`` with ``prompt_turns``, how many leading ``messages`` of each row are the prompt, from the counts
    ``map_record`` put in ``state`` (one per mapped row, in order: appended last, once the row is mapped)."""
    counts: list[int | None] = state.get("prompt_turns", [])
    if len(counts) != frame.height:  # never expected: unknown (every turn read), rather than misplaced
        counts = [None] * frame.height
    return frame.with_columns(pl.Series("prompt_turns", counts, dtype=pl.Int32))


@register
class NemoGym(JsonlSamples):
    name = "nemo_gym"
    description = "NeMo Gym rollouts JSONL (OpenAI Responses items, reward_components, _ng_task_index)"
    priority = 40
    reward_field = "reward"
    says_empty_completion = True
    mapped = frozenset(
        {
            "responses_create_params",
            "response",
            "reward",
            "reward_components",
            "_ng_task_index",
            "_ng_rollout_index",
        }
    )

    def detect(self, cand: Candidate) -> bool:
        if cand.suffix != ".jsonl":
            return False
        # Any of the first lines: a damaged first line is reported and skipped by the reader.
        return any(
            isinstance(obj, dict) and isinstance(obj.get("responses_create_params"), dict) and "response" in obj
            for obj in cand.json_lines()
        )

    # ``{_ng_task_index}:{_ng_rollout_index}`` names one rollout of the collection.
    ids_name_lines = True

    def distinct_line(self, rec: dict[str, Any]) -> bool:
        """A rollout's line is its own: its task and rollout index, and its response's id and creation time."""
        indexed = rec.get("_ng_task_index") is not None and rec.get("_ng_rollout_index") is not None
        return indexed or _dict(rec.get("response")).get("id") is not None

    def check_run(self, files: list[FileInfo], ctx: RunContext) -> None:
        self.warn_pooled(files, ctx, "point runlog at one rollouts file, or keep each collection in its own folder")

    def file_meta(self, info: FileInfo) -> None:
        info.split = "train"
        info.step = 0

    def finish(self, frame: pl.DataFrame, state: dict[str, Any], info: FileInfo, ctx: RunContext) -> pl.DataFrame:
        """``prompt_turns``: how many leading messages of each row are the request (its ``instructions`` and
        ``input`` items), the rest being the response's ``output``."""
        return with_prompt_turns(frame, state)

    def map_record(
        self, rec: dict[str, Any], line: int, info: FileInfo, ctx: RunContext, state: dict[str, Any]
    ) -> dict[str, Any]:
        ctx.note(self.name, "rollouts carry no training step: rows get step 0 and split 'train'")
        params = _dict(rec.get("responses_create_params"))
        response = _dict(rec.get("response"))
        prompt_msgs = chat.from_responses_items(params.get("input"))
        instructions = params.get("instructions")
        if isinstance(instructions, str) and instructions:
            prompt_msgs.insert(0, chat.message("system", instructions))
        output_msgs = chat.from_responses_items(response.get("output"))
        final = [m for m in output_msgs if m["role"] == "assistant" and m["content"]]
        items = response.get("output")
        if not isinstance(items, list):
            items = []
        if any(_dict(it).get("type") == "reasoning" and not chat.reasoning_text(it) for it in items):
            ctx.note(self.name, "reasoning items without summary text (empty or encrypted) are not mapped")

        task, rollout = rec.get("_ng_task_index"), rec.get("_ng_rollout_index")
        sample_id = f"{task}:{rollout}" if task is not None and rollout is not None else f"line{line}"
        raw_comps = rec.get("reward_components")
        comp_dict = _dict(raw_comps)
        mapped_comps = {k: v for k, v in comp_dict.items() if number(v) is not None}
        # Servers also write each component as a top-level field: the copies of mapped ones are mapped, not extra.
        skip = {k for k, v in mapped_comps.items() if k in rec and rec[k] == v}
        also = {f"response.{k}": response[k] for k in ("model", "usage") if response.get(k) is not None}
        if also:
            ctx.note(self.name, "the response model and token usage are kept in `extra`")
        # What is not mapped of ``reward_components`` is kept in `extra`: a value that is not a number under
        # ``reward_components.<name>``, a field that is not an object under ``reward_components``.
        kept: dict[str, Any] = {}
        if raw_comps is not None and not isinstance(raw_comps, dict):
            kept["reward_components"] = raw_comps
            self.tally(state, _COMPS_NOT_OBJECT, f"line {line}, a JSON {_json_kind(raw_comps)}")
        for k, v in comp_dict.items():
            if k not in mapped_comps:
                kept[f"reward_components.{k}"] = v
                self.tally(state, _COMP_NOT_NUMBER, f"line {line}, {k}: {_shown(v)}")
        if kept:
            state.setdefault("unmapped", set()).update(kept)
            also.update(kept)
        ctx.note(
            self.name,
            "request settings (tools, sampling parameters) and response ids/status are not mapped",
        )
        error = response.get("error")
        row = {
            "step": 0,
            "split": "train",
            "sample_id": sample_id,
            "group_id": None if task is None else str(task),
            "reward": number(rec.get("reward")),
            "reward_components": components(mapped_comps),
            "exception": None if error is None else text_of(error),
            "prompt": chat.last_text(prompt_msgs, "user"),
            "completion": final[-1]["content"] if final else None,
            "messages": prompt_msgs + output_msgs,
            "extra": self.extra(rec, state, skip=skip, also=also),
        }
        # Where the response starts in ``messages``: an assistant example in the request ``input`` is not the
        # policy's (``finish`` puts it in the frame, as ``prompt_turns``).
        state.setdefault("prompt_turns", []).append(len(prompt_msgs))
        return row
