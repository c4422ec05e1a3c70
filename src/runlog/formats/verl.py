"""verl generation dumps: ``{rollout_data_dir}/{step}.jsonl`` and ``{validation_data_dir}/{step}.jsonl``.

Written by ``RayPPOTrainer._dump_generations`` (verl/trainer/ppo/ray_trainer.py): one line per sample with
``input`` (the decoded prompt, chat template applied, special tokens skipped), ``output`` (the decoded
response), ``gts`` (the ground truth, newer versions), ``score`` (the sequence score, the sum of the
token-level scores), ``step`` (the global step), plus every ``reward_extra_infos_dict`` entry whose length
matches the batch (``acc``, ``pred``, ...). Validation dumps (``_validate``) also repeat the score as
``reward`` (``reward_extra_infos_dict["reward"]``, in every verl that writes these dumps); training dumps
(``_log_rollout_data``) have no ``reward``: that is what tells a dump's split (``dump_split``), the folder's
name only where the lines do not settle it. A folder of validation dumps is a folder of its run
(``content_run_folder``): ``rollout/`` and ``valgen/`` side by side are one run.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from .. import chat
from .._lazy import pl
from .base import WRONG_TYPE, Candidate, FileInfo, RunContext, register
from .common import coerce_step, stepless_reason
from .jsonl_samples import JsonlSamples, components, number, text_of

_STEP_FILE = re.compile(r"(\d+)\.jsonl")
_BASE = frozenset({"input", "output", "gts", "score", "step"})
# A folder of validation dumps: one whose name is, or has as a word (split at `_`, `-`, `.`), one of these
# (`val`, `val_generations`, `eval-dumps`); `retrieval_rollouts` or `interval` are no such folder.
_VAL_WORDS = r"val|valid|validation|eval|evaluation|test"
_VAL_FOLDER = re.compile(rf"(?i:(?:[^/]*[_.-])?(?:{_VAL_WORDS})(?:[_.-][^/]*)?)")
# The words that name validation against the lines' own word: `test` also names trial runs (`test_rollouts`).
_STRONG_VAL_FOLDER = re.compile(r"(?i:(?:[^/]*[_.-])?(?:val|valid|validation|eval|evaluation)(?:[_.-][^/]*)?)")


def split_of(rel: str, words: re.Pattern[str] = _VAL_FOLDER) -> str:
    """'val' when a folder inside the run names validation dumps (validation_data_dir), else 'train'."""
    folders = PurePosixPath(rel).parts[:-1]
    return "val" if any(words.fullmatch(f) for f in folders) else "train"


def marks_validation(rec: Any) -> bool:
    """Whether a dump line carries verl's validation marker: a ``reward`` that is its ``score`` again."""
    if not isinstance(rec, dict) or "reward" not in rec:
        return False
    r, s = number(rec.get("reward")), number(rec.get("score"))
    return r == s or (r is not None and s is not None and r != r and s != s)  # NaN written for both


def dump_split(rel: str, marked: int, lines: int) -> tuple[str, str | None]:
    """(split, why the folder's name decided it, or None where the lines did) of a dump of ``lines`` records,
    ``marked`` of them with the validation marker (``marks_validation``).

    Every line marked: val. No line marked: train, unless the folder is named as validation by a word other
    than `test` (dumps from a writer other than verl's, which marks every validation dump). Some lines marked,
    or none read: the folder's name."""
    if lines and marked >= lines:
        return "val", None
    if lines and not marked:
        if split_of(rel, _STRONG_VAL_FOLDER) == "val":
            return "val", "no line carries `reward`, but the folder is named as validation"
        return "train", None
    if lines:
        return split_of(rel), f"{marked} of {lines} lines carry `reward`"
    return split_of(rel), "no line read"


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
        # The split is told by the lines (``dump_split``), not the name: the name tells the step only.
        return None

    def check_run(self, files: list[FileInfo], ctx: RunContext) -> None:
        # Sample ids are `{step}:{line}`: two dumps of one split and step share them all.
        self.warn_pooled(
            files, ctx, "verl writes one dump per split and step: a copy, or a dump kept under another name?"
        )

    def content_run_folder(self, cand: Candidate) -> str | None:
        """A dump whose first lines carry the validation marker sits in the run's validation_data_dir: the run
        is the folder above (``rollout/`` beside ``valgen/``), whatever that folder is named."""
        folder = cand.rel.rpartition("/")[0]
        if not folder:
            return None
        lines = [obj for obj in cand.json_lines() if isinstance(obj, dict)]
        if lines and all(marks_validation(obj) for obj in lines):
            return self.run_folder(folder.rpartition("/")[0])
        return None

    def file_meta(self, info: FileInfo) -> None:
        info.split = split_of(info.path)
        m = _STEP_FILE.fullmatch(info.abspath.name)
        info.step = int(m.group(1)) if m else None

    def finish(self, frame: pl.DataFrame, state: dict[str, Any], info: FileInfo, ctx: RunContext) -> pl.DataFrame:
        bad: list[tuple[int, Any]] = state.get("bad_steps", [])
        if bad:
            line, value = bad[0]
            instead = f" (not read at step {info.step}, the step its name tells)" if info.step is not None else ""
            what = stepless_reason("step", value)
            ctx.problem(
                info.path,
                WRONG_TYPE,
                f"{len(bad)} line(s) whose step is no integer step (first: line {line}, {what}): left out{instead}",
            )
        beyond: list[int] = state.get("beyond", [])
        if beyond:
            ctx.warn(
                info.path,
                f"named step {info.step}, beyond the 64-bit integer range a step is stored in: its {len(beyond)} "
                f"line(s) without a step field of their own (first: line {beyond[0]}) have no step (null; `inspect` "
                "reports it)",
            )
        marked, lines = state.get("marked", 0), frame.height
        split, why = dump_split(info.path, marked, lines)
        folder = info.path.rpartition("/")[0] or "."
        if why is not None:
            ctx.note(self.name, f"{folder}/: split {split} from the folder's name ({why})")
        else:
            ctx.note(
                self.name,
                "split from each dump's lines: verl's validation dumps carry `reward` (the score again) on every "
                "line, its training dumps none",
            )
            if split == "train" and split_of(info.path) == "val":
                ctx.note(
                    self.name,
                    f"{folder}/: split train from its dumps' lines (no `reward`), although the folder's name "
                    "reads as validation",
                )
        info.split = split
        return frame.with_columns(pl.lit(split, dtype=pl.String).alias("split")) if lines else frame

    def map_record(
        self, rec: dict[str, Any], line: int, info: FileInfo, ctx: RunContext, state: dict[str, Any]
    ) -> dict[str, Any] | None:
        raw_step = rec.get("step")
        step = coerce_step(raw_step)
        if step is None and raw_step is not None:
            # A step written but unusable (7.5, true, "ten", beyond int64): the line names no step to put it at, and
            # the file name's step (or none) would put it among another step's rows without a word. Left out, said
            # once per file (``finish``) with the count, the first line and its value.
            state.setdefault("bad_steps", []).append((line, raw_step))
            return None
        if marks_validation(rec):
            state["marked"] = state.get("marked", 0) + 1
        if step is None:  # no step field (or a null one): the step the file's name tells, as verl names its dumps
            step = coerce_step(info.step)  # (one beyond the 64-bit range is none: said in ``finish``)
            if step is None and info.step is not None:
                state.setdefault("beyond", []).append(line)
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
