"""verifiers ``results.jsonl`` (``vf-eval`` output), a JSONL sample layout (``jsonl_samples.JsonlSamples``).

A verifiers line holds one rollout: ``prompt`` and ``completion`` as OpenAI chat messages (``tool_calls``
entries JSON-encoded strings), ``reward``, one numeric column per reward function / metric, timings
(``generation_ms, scoring_ms, total_ms``), ``id`` (``example_id`` in newer versions), ``task``,
``answer`` and ``info``. The rollouts of one example (of one task: an EnvGroup evaluation numbers each
environment's examples from 0) are one GRPO group. The sibling ``metadata.json`` is claimed, noted only.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from .. import chat
from .. import schema as S
from .._lazy import pl
from .base import Candidate, FileInfo, RunContext, register
from .jsonl_samples import JsonlSamples, components, number, text_of
from .nemo_gym import (
    NO_PROMPT_SLOT,
    check_ids_across_files,
    file_prompt_groups,
    prompt_key,
    prompts_of,
    remember_prompts,
    with_prompt_groups,
    with_prompt_turns,
)

_TIMINGS = frozenset({"generation_ms", "scoring_ms", "total_ms"})
# ``ctx.cache`` keys: {file path: the tasks of its rows with an id (None: rows without a task)}; and whether the
# run's examples are named by their task (set by ``Verifiers._name_tasks_over_run``).
_TASKS = "verifiers_tasks"
_TASKS_RUN = "verifiers_tasks_run"
# Known non-reward fields of verifiers results (kept in `extra` when present, never used as components): ids,
# the dataset's reference ``answer`` (a number where the dataset's answers are: ``42`` is no reward) and
# ``info``, the rollout's state flags and stop condition, timings (flat, or one ``timing`` object in current
# vf-eval), token usage, tool definitions and the error chain.
_NOT_METRICS = (
    frozenset(
        {
            "id",
            "example_id",
            "reward",
            "answer",
            "info",
            "is_truncated",
            "is_completed",
            "stop_condition",
            "timing",
            "token_usage",
            "tool_defs",
            "error_chain",
            "long_error_chain",
        }
    )
    | _TIMINGS
)


_CUT_CALL = (
    "{n} tool call(s) whose JSON text is cut short or invalid (first: {first}): kept with the id, name and "
    "arguments that could be read from it"
)
_NO_PROMPT = (
    "{n} line(s) without a prompt (first: {first}): kept, with no prompt; where prompt groups are told by "
    "the prompt they have none"
)
_NOT_MESSAGES = (
    "{n} line(s) whose {field} is neither a list of messages nor a text (first: {first}): read as one turn of "
    "role 'unknown' holding its JSON"
)
_MIXED_PROMPTS = (
    "{n} example id(s) stand for different prompts in this file (first: {first}; two evaluations appended to one "
    "file?): prompt groups are the rows with the same {same} (`prompt-N`), so that no group holds two prompts"
)
_RENAMED_AFTER_SKIP = (
    "{n} rollout(s) after a line that could not be read are named by their line (first: {first}), not by their "
    "number among their example's rollouts: the skipped line's example is not known, so that number is not either"
)
# ``ctx.cache`` key: {file path: (the ``_RENAMED_AFTER_SKIP`` warning said, its count, first line, first sample id)},
# so that the sample id it names is the run's where ``_name_tasks_over_run`` names the file's examples afterwards.
_RENAMED = "verifiers_renamed_after_skip"


def _task_key(task: str | None, key: str) -> str:
    """A row's prompt key within its task, where the run's examples are named by their task: two environments
    of an EnvGroup evaluation may ask the same prompt (their rubrics differ), and one ``prompt-N`` group holding
    both (a review: math's "Q", reward 1, and code's "Q", reward 0, one group with learning signal) would pool
    what the id groups keep apart. A row without a task, or without a prompt, keeps its key."""
    if task is None or key.startswith(NO_PROMPT_SLOT):
        return key
    text = json.dumps([task, key], ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _error_text(value: Any) -> str | None:
    """A rollout's ``error`` as a failure's text, or None: some vf-eval versions write ``str(None)``, the text
    ``"None"``, on every rollout that did not fail (each was counted as a failed trajectory)."""
    text = text_of(value)
    return None if not text or text.strip() in ("None", "null") else text


def _json_field(text: str, key: str) -> str | None:
    """The string value of ``"key": "..."`` in JSON text that does not parse (cut short): the first one found,
    unescaped; a value cut short itself is read up to where the text ends."""
    m = re.search(rf'"{re.escape(key)}"\s*:\s*"((?:[^"\\]|\\.)*)(")?', text)
    if m is None:
        return None
    raw = m.group(1)
    if m.group(2) is None:
        raw = raw.rstrip("\\")
    try:
        value = json.loads(f'"{raw}"')
    except ValueError:
        return raw
    return value if isinstance(value, str) else None


def _recover_calls(messages: Any) -> tuple[Any, int]:
    """Chat messages with each ``tool_calls`` entry that is JSON text which does not parse (cut short) replaced
    by the call read from what is there (``{id, function: {name, arguments}}``); and how many were."""
    if not isinstance(messages, list):
        return messages, 0
    out: list[Any] = []
    fixed = 0
    for m in messages:
        calls = m.get("tool_calls") if isinstance(m, dict) else None
        if isinstance(calls, list) and any(isinstance(c, str) for c in calls):
            new: list[Any] = []
            for c in calls:
                if isinstance(c, str):
                    try:
                        json.loads(c)
                    except (ValueError, RecursionError):
                        fixed += 1
                        found = {k: _json_field(c, k) for k in ("id", "name", "arguments")}
                        if found["id"] is not None or found["name"] is not None:
                            c = {
                                "id": found["id"],
                                "function": {"name": found["name"], "arguments": found["arguments"] or c},
                            }
                new.append(c)
            m = {**m, "tool_calls": new}
        out.append(m)
    return out, fixed


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
        # ``env`` in older vf-eval versions, ``env_id`` in current ones.
        return (
            isinstance(obj, dict) and {"model", "num_examples"} <= obj.keys() and bool({"env", "env_id"} & obj.keys())
        )

    def distinct_line(self, rec: dict[str, Any]) -> bool:
        """A line with a measured time (``generation_ms``, ``scoring_ms``, ``total_ms``: wall-clock figures to
        the microsecond) is its own: two rollouts do not take the same times, so a line that repeats it whole
        is a copy. Without one (older vf-eval), rollouts of one example at temperature 0 are identical lines,
        and a copy cannot be told from them: none is said."""
        return any(number(rec.get(k)) not in (None, 0.0) for k in _TIMINGS)

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
        task = rec.get("task")
        # An example is its task's: an EnvGroup evaluation numbers each environment's examples from 0, the
        # ``task`` telling them apart (``finish`` names the groups of a file of several tasks by both).
        task_text = None if task is None else task if isinstance(task, str) else chat.compact_json(task)
        if ex_id is None:
            group_id, sample_id = None, f"line{line}"
        else:
            group_id = str(ex_id)
            counts: dict[tuple[str | None, str], int] = state.setdefault("counts", {})
            k = counts.get((task_text, group_id), 0)
            counts[task_text, group_id] = k + 1
            sample_id = f"{group_id}:{k}"
            # A rollout's number is its place among its example's rollouts in the file: after a skipped line
            # (whose example is not known) it may be one less than a clean copy's, and ``1:0`` would name another
            # rollout than in that copy or in another run. Those rollouts are named by their line instead.
            # (Said by ``finish``, with the sample id the file's rows are named by: ``{task}/...`` in a run of tasks.)
            skipped = state.get("skipped_lines") or ()
            if skipped and skipped[0] < line:
                sample_id = f"{group_id}:line{line}"
                state.setdefault("after_skip", []).append((line, sample_id, task_text))
        raw_prompt, cut = _recover_calls(rec.get("prompt"))
        if raw_prompt is None:
            self.tally(state, _NO_PROMPT, f"line {line}")
        for field in ("prompt", "completion"):
            value = rec.get(field)
            # (A dict is read as the one message it is; a list's odd entries are each said by ``chat``'s reading.)
            if value is not None and not isinstance(value, (list, str, dict)):
                shown = chat.compact_json(value)
                shown = shown if len(shown) <= 40 else shown[:40] + "..."
                self.tally(state, _NOT_MESSAGES.replace("{field}", field), f"line {line}, {shown}")
        prompt_msgs = chat.from_openai_chat(raw_prompt)
        raw_completion = rec.get("completion")
        if isinstance(raw_completion, str):
            completion_msgs = [chat.message("assistant", raw_completion)]
        else:
            raw_completion, more = _recover_calls(raw_completion)
            cut += more
            completion_msgs = chat.from_openai_chat(raw_completion)
        for _ in range(cut):
            self.tally(state, _CUT_CALL, f"line {line}")
        metrics: dict[str, Any] = {}
        odd: dict[str, list[Any]] = state.setdefault("not_numbers", {})  # key -> [count, first line, first value]
        for field, v in rec.items():
            if field in _NOT_METRICS or field in self.mapped:
                continue
            if number(v) is not None:
                metrics[field] = v
            elif field in odd:
                odd[field][0] += 1
            else:
                odd[field] = [1, line, v]
        state.setdefault("numeric", set()).update(metrics)
        row = {
            "step": 0,
            "split": "eval",
            "sample_id": sample_id,
            "group_id": group_id,
            "env_name": task if isinstance(task, str) else None,
            "reward": number(rec.get("reward")),
            "reward_components": components(metrics),
            "exception": _error_text(rec.get("error")),
            "prompt": chat.last_text(prompt_msgs, "user"),
            "completion": chat.joined_text(completion_msgs, "assistant"),
            "messages": prompt_msgs + completion_msgs,
            "extra": self.extra(rec, state, skip=metrics),
        }
        # One entry per mapped row, in order (``finish`` lines them up with the frame).
        # (A row without a prompt holds its place in the ``prompt-N`` numbering, under no group: see ``finish``.)
        key = f"{NO_PROMPT_SLOT}{info.path}:{line}" if raw_prompt is None else prompt_key(raw_prompt)
        state.setdefault("prompts", []).append((group_id, task_text, key))
        # Where the generation starts in ``messages``: a few-shot assistant turn of the prompt is not the
        # policy's (``finish`` puts it in the frame, as ``prompt_turns``).
        state.setdefault("prompt_turns", []).append(len(prompt_msgs))
        return row

    def finish(self, frame: pl.DataFrame, state: dict[str, Any], info: FileInfo, ctx: RunContext) -> pl.DataFrame:
        """The groups of the file. An example is its task's: where the file holds rows of several tasks (an
        EnvGroup evaluation, each environment numbering its examples from 0), a group is ``{task}/{id}`` and a
        sample ``{task}/{id}:{k}``, noted; with one task (``default`` for a single environment) the names are the
        id's alone, unless the run's other files hold other tasks (``_name_tasks_over_run`` renames this file's
        rows then; a file parsed again after it is named so here). Where the rows of one group have different
        prompts, the prompt groups are the rows with the same prompt (``prompt-N``, numbered in order of first
        appearance; across the files of a run by
        ``scan_samples``, so that one group never holds two prompts): older vf-eval versions wrote an ``id`` that
        is not the example's (rows ``3k..3k+2`` get id ``k`` while the prompts cycle through the dataset), noted;
        an ``example_id`` that does so is two evaluations in one file, warned. The rows' prompts are kept for
        ``check_run``, which does the same for a run whose files each use their ids consistently but give one id
        to different prompts. A row without a prompt tells nothing about its group's prompts and joins no prompt
        group; it keeps its place in the numbering (a number no group has), so that the prompts seen after it
        keep the numbers they have when it has its prompt. ``prompt_turns``: how many leading messages of each
        row are its ``prompt``."""
        rows: list[tuple[str | None, str | None, str]] = state.get("prompts", [])
        tasks = {task for group, task, _ in rows if group is not None}
        # (Parsed again after ``check_run`` named the run's examples by their task: a file of one task is so too.)
        by_task = (len(tasks) > 1 or bool(ctx.cache.get(_TASKS_RUN))) and len(rows) == frame.height
        self._say_after_skip(state, info, ctx, by_task)
        self._say_odd_components(state, info, ctx)
        frame = with_prompt_turns(frame, state)
        ctx.cache.setdefault(_TASKS, {})[info.path] = tasks
        names = [group for group, _, _ in rows]
        keys = [key for _, _, key in rows]
        if by_task:
            names = [None if g is None else g if t is None else f"{t}/{g}" for g, t, _ in rows]
            keys = [_task_key(t, key) for _, t, key in rows]
            samples = [
                s if g is None or t is None else f"{t}/{s}"
                for (g, t, _), s in zip(rows, frame.get_column("sample_id").to_list(), strict=True)
            ]
            frame = frame.with_columns(
                pl.Series("group_id", names, dtype=pl.String), pl.Series("sample_id", samples, dtype=pl.String)
            )
            if len(tasks) > 1:
                named = sorted(t for t in tasks if t is not None)
                shown = ", ".join(named[:4]) + (" ..." if len(named) > 4 else "")
                shown += ", and rows without a task" if None in tasks else ""
                ctx.note(
                    self.name,
                    f"{info.path}: rows of {len(tasks)} tasks ({shown}), each numbering its examples from 0: a group "
                    "is the task's example, `{task}/{id}`, and a sample `{task}/{id}:{k}`",
                )
        fp = remember_prompts(ctx, self.name, info.path, list(zip(names, keys, strict=True)))
        if fp.run_wide:  # parsed again, after ``check_run`` (which said why)
            return frame.with_columns(pl.Series("group_id", file_prompt_groups(fp), dtype=pl.String))
        mixed = [g for g, keys in fp.ids.items() if len(keys) > 1]
        if not mixed:
            return frame
        fp.by_prompt = True
        same = "task and prompt" if by_task else "prompt"
        if state.get("by_id"):
            fp.expected = True
            ctx.note(
                self.name,
                f"{info.path}: `id` does not name the example (rows with one id have different prompts): "
                f"prompt groups are the rows with the same {same}",
            )
        else:
            ctx.warn(info.path, _MIXED_PROMPTS.format(n=len(mixed), first=repr(mixed[0]), same=same))
        return frame.with_columns(pl.Series("group_id", file_prompt_groups(fp), dtype=pl.String))

    @staticmethod
    def _say_after_skip(state: dict[str, Any], info: FileInfo, ctx: RunContext, by_task: bool) -> None:
        """The rollouts after a skipped line that are named by their line (``map_record``), said once, naming the
        first by the sample id the run has for it: ``{task}/{id}:lineN`` where the file's examples are named by
        their task (``_name_tasks_over_run`` renames it where that is decided after this file)."""
        renamed: list[tuple[int, str, str | None]] = state.get("after_skip", [])
        if not renamed:
            return
        line, sample_id, task = renamed[0]
        shown = f"{task}/{sample_id}" if by_task and task is not None else sample_id
        ctx.warn(info.path, _RENAMED_AFTER_SKIP.format(n=len(renamed), first=f"line {line}, {shown}"))
        ctx.cache.setdefault(_RENAMED, {})[info.path] = (ctx.problems[-1], len(renamed), line, sample_id)

    @staticmethod
    def _say_odd_components(state: dict[str, Any], info: FileInfo, ctx: RunContext) -> None:
        """Values of a reward-function column (a field that is a number on some line of the file) that are not
        numbers on others (``"0.5"``, ``null``, ``"high"``): left out of that line's ``reward_components`` (the
        component's mean is over the other lines) and kept in ``extra``, as a ``reward`` that is not a number
        is read as null. Said once per file: the count, the columns, the first line."""
        numeric: set[str] = state.get("numeric", set())
        bad = {k: v for k, v in state.get("not_numbers", {}).items() if k in numeric}
        if not bad:
            return
        key, (_, line, raw) = min(bad.items(), key=lambda kv: kv[1][1])
        shown = chat.compact_json(raw)
        shown = shown if len(shown) <= 40 else shown[:40] + "..."
        names = ", ".join(sorted(bad)[:8]) + (" ..." if len(bad) > 8 else "")
        ctx.warn(
            info.path,
            f"{sum(v[0] for v in bad.values())} reward-function value(s) that are not numbers (columns: {names}; "
            f"first: line {line}, {key} {shown}): left out of reward_components (kept in `extra`), so each "
            "component's mean is over the lines where it is a number",
        )

    def scan_samples(self, files: list[FileInfo], ctx: RunContext) -> pl.LazyFrame | None:
        """As ``JsonlSamples.scan_samples``; the ``prompt-N`` groups of several files (numbered per file by
        ``finish``, or decided by ``check_run``) are numbered again over all of them, so that ``prompt-N`` is one
        prompt in the whole run (``with_prompt_groups``)."""
        pairs = self.file_frames(files, ctx)
        if not pairs:
            return None
        frames = with_prompt_groups(pairs, ctx, self.name)
        return S.conform_samples(pl.concat(frames, how="diagonal_relaxed").lazy())

    def check_run(self, files: list[FileInfo], ctx: RunContext) -> None:
        """The examples of a run of several tasks named by their task in every file (``_name_tasks_over_run``);
        files that share sample ids (``warn_pooled``); and an ``id`` that names different prompts in different
        files, each file consistent on its own (two evaluations that number their own examples from 0), or a file
        grouped by prompt on its own: the prompt groups are then told by the prompt in every file
        (``check_prompt_ids``), said."""
        advice = "point runlog at one results file, or keep each evaluation in its own folder"
        self._name_tasks_over_run(files, ctx)
        same = "task and prompt" if ctx.cache.get(_TASKS_RUN) else "prompt"
        check_ids_across_files(self, files, ctx, "example id(s)", advice, same)

    def _name_tasks_over_run(self, files: list[FileInfo], ctx: RunContext) -> None:
        """Where the run's examples are named by their task (``TASK/ID``: a file of several tasks, or files of
        different tasks), the examples of its files of one task are too, so that one task's example is one group
        in every file: an EnvGroup evaluation's ``math/0`` beside a second evaluation of math alone, whose rows
        were ``0``, split one example into two groups (and its rollouts' sample ids no longer met). Said in one
        note. Names only: the frames the probes kept are renamed, and the prompts kept for ``check_prompt_ids``
        filed under the new names and keyed within their task (``_task_key``: where the run is grouped by prompt,
        a group is one task's prompt, never two environments' rows that ask the same text); a file parsed again
        is named so by ``finish``. Rows without a task keep their id alone, as in a file of several tasks."""
        named_tasks: dict[str, set[str | None]] = ctx.cache.get(_TASKS, {})
        held = {f.path: named_tasks[f.path] for f in files if f.path in named_tasks}
        named = {t for tasks in held.values() for t in tasks if t is not None}
        if len(named) < 2 and all(len(tasks) < 2 for tasks in held.values()):
            return
        ctx.cache[_TASKS_RUN] = True
        memo = prompts_of(ctx, self.name)
        moved: list[str] = []
        for f in files:
            tasks, fp = held.get(f.path), memo.get(f.path)
            if tasks is None or len(tasks) != 1 or None in tasks or fp is None or f.frame is None:
                continue
            if len(fp.rows) != f.frame.height:  # (never expected: a frame not mapped here)
                continue
            task = next(iter(tasks))
            prefix = f"{task}/"
            has_id = pl.Series("has_id", [i >= 0 for i in fp.rows], dtype=pl.Boolean)
            sample = pl.when(has_id).then(pl.lit(prefix) + pl.col("sample_id")).otherwise(pl.col("sample_id"))
            renamed = [sample.alias("sample_id")]
            if not fp.by_prompt:
                renamed.append((pl.lit(prefix) + pl.col("group_id")).alias("group_id"))
            f.frame = f.frame.with_columns(*renamed)
            # Its prompts are its task's (``_task_key``), as those of a file of several tasks are.
            task_keys = {key: _task_key(task, key) for key in fp.keys}
            fp.keys = [task_keys[key] for key in fp.keys]
            fp.ids = {prefix + group: {task_keys[key] for key in keys} for group, keys in fp.ids.items()}
            said = ctx.cache.get(_RENAMED, {}).get(f.path)
            if said is not None:  # the warning on its rollouts named by their line names them as the run does
                problem, count, line, sample_id = said
                problem.message = _RENAMED_AFTER_SKIP.format(n=count, first=f"line {line}, {prefix}{sample_id}")
            moved.append(f.path)
        if moved:
            shown = ", ".join(moved[:3]) + (" ..." if len(moved) > 3 else "")
            ctx.note(
                self.name,
                f"{len(moved)} results file(s) of one task ({shown}) in a run of several tasks: their groups are "
                "named `{task}/{id}` too, and their samples `{task}/{id}:{k}`, so that one task's example is one "
                "group in every file",
            )
