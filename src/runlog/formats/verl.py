"""verl generation dumps: ``{rollout_data_dir}/{step}.jsonl`` and ``{validation_data_dir}/{step}.jsonl``.

Written by ``RayPPOTrainer._dump_generations`` (verl/trainer/ppo/ray_trainer.py): one line per sample with
``input`` (the decoded prompt, chat template applied, special tokens skipped), ``output`` (the decoded
response), ``gts`` (the ground truth, newer versions), ``score`` (the sequence score, the sum of the
token-level scores), ``step`` (the global step), plus every ``reward_extra_infos_dict`` entry whose length
matches the batch (``acc``, ``pred``, ...; validation dumps also repeat the score as ``reward``).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from .. import chat
from .base import Candidate, FileInfo, RunContext, register
from .common import coerce_step
from .jsonl_samples import JsonlSamples, components, number, text_of

_STEP_FILE = re.compile(r"(\d+)\.jsonl")
_BASE = frozenset({"input", "output", "gts", "score", "step"})
# A folder of validation dumps: one whose name is, or has as a word (split at `_`, `-`, `.`), one of these
# (`val`, `val_generations`, `eval-dumps`); `retrieval_rollouts` or `interval` are no such folder.
_VAL_WORDS = r"val|valid|validation|eval|evaluation|test"
_VAL_FOLDER = re.compile(rf"(?i:(?:[^/]*[_.-])?(?:{_VAL_WORDS})(?:[_.-][^/]*)?)")


def split_of(rel: str) -> str:
    """'val' when a folder inside the run names validation dumps (validation_data_dir), else 'train'."""
    folders = PurePosixPath(rel).parts[:-1]
    return "val" if any(_VAL_FOLDER.fullmatch(f) for f in folders) else "train"


@register
class Verl(JsonlSamples):
    name = "verl"
    description = "verl rollout/validation generation dumps ({step}.jsonl: input, output, gts, score, step)"
    priority = 60
    own_folders = _VAL_FOLDER.pattern  # validation dumps (split_of), beside the rollout dumps
    reward_field = "score"
    mapped = frozenset({"input", "output", "score", "step", "uid", "data_source"})

    def detect(self, cand: Candidate) -> bool:
        if cand.suffix != ".jsonl":
            return False
        named = bool(_STEP_FILE.fullmatch(cand.name))
        # Any of the first lines: a damaged first line is reported and skipped by the reader.
        return any(
            isinstance(obj, dict) and {"input", "output", "score"} <= obj.keys() and (named or "step" in obj)
            for obj in cand.json_lines()
        )

    def name_keys(self, cand: Candidate) -> tuple[str | None, int | None] | None:
        m = _STEP_FILE.fullmatch(cand.name)
        return (split_of(cand.rel), int(m.group(1))) if m else None

    def file_meta(self, info: FileInfo) -> None:
        info.split = split_of(info.path)
        m = _STEP_FILE.fullmatch(info.abspath.name)
        info.step = int(m.group(1)) if m else None

    def map_record(
        self, rec: dict[str, Any], line: int, info: FileInfo, ctx: RunContext, state: dict[str, Any]
    ) -> dict[str, Any]:
        step = coerce_step(rec.get("step"))
        if step is None:
            step = info.step
        elif info.step is not None and step != info.step and not state.get("warned"):
            state["warned"] = True
            ctx.warn(info.path, f"line {line}: step field {step} differs from the file name's {info.step}")
        # Validation dumps repeat the score as `reward`; it is not a component of itself.
        metrics = {
            k: v
            for k, v in rec.items()
            if k not in self.mapped and k not in _BASE and k != "reward" and number(v) is not None
        }
        skip = set(metrics)
        if number(rec.get("reward")) is not None and number(rec.get("reward")) == number(rec.get("score")):
            skip.add("reward")
        prompt = text_of(rec.get("input"))
        completion = text_of(rec.get("output"))
        uid = rec.get("uid")
        source = rec.get("data_source")
        ctx.note(
            self.name,
            "prompt is verl's decoded input (chat template applied, special tokens skipped): messages are "
            "one user turn and one assistant turn; reward is `score`, the sum of the token-level scores",
        )
        return {
            "step": step,
            "split": info.split,
            "sample_id": f"{step}:{line - 1}",
            "group_id": None if uid is None else str(uid),
            "env_name": source if isinstance(source, str) else None,
            "reward": number(rec.get("score")),
            "reward_components": components(metrics),
            "prompt": prompt,
            "completion": completion,
            "messages": [chat.message("user", prompt), chat.message("assistant", completion)],
            "extra": self.extra(rec, state, skip=skip),
        }
