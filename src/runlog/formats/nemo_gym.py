"""NeMo Gym rollouts JSONL: one rollout per line in the OpenAI Responses format.

A line holds ``responses_create_params`` (the request: ``input`` items, ``instructions``, ``tools``),
``response`` (the Responses object: ``output`` items, ``model``, ``usage``, ``error``), ``reward``,
``reward_components`` (a dict), ``_ng_task_index`` / ``_ng_rollout_index`` (the task and its repeat), and
whatever the resources server adds (the components again as top-level fields, ``predicted_calls``,
``agent_ref``, ...). Rollouts of one task are one GRPO group.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .. import chat
from .. import schema as S
from .._lazy import pl
from .base import Candidate, FileInfo, RunContext, register
from .common import shared_ids
from .jsonl_samples import JsonlSamples, components, number, text_of

_COMP_NOT_NUMBER = (
    "{n} reward component value(s) that are not numbers (first: {first}): left out of `reward_components`, "
    "kept in `extra` as `reward_components.<name>`"
)
_MIXED_REQUESTS = (
    "{n} task index(es) stand for different requests in this file (first: {first}; two collections in one "
    "file?): prompt groups are the rows with the same request (`prompt-N`), so that no group holds two requests"
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


# -- prompt groups over a run's files (NeMo Gym and verifiers) --------------------------------------------------
# A layout whose group id is an example's number in its file (verifiers' ``id``, NeMo Gym's ``_ng_task_index``)
# reads two files of one folder that number their own examples 0, 1, ... into the same groups, each holding two
# prompts: their rewards then differ and every group looks like it has learning signal. So each file's prompts
# are kept (as digests, not texts: nothing is read again, and no prompt text is held past its file's parse) and
# checked over the run's files in ``check_run``: where one id names different prompts in different files, or one
# file is grouped by prompt on its own (an id that mixes prompts in it), the prompt groups are the rows with the
# same prompt (``prompt-N``, numbered over the run), in every file: a prompt grouped by id in one file and by
# prompt in another would be two groups.

# ``ctx.cache`` key: {layout name: {file path: FilePrompts}}, in the order the files were read.
_PROMPTS = "prompt_groups"
# The key of a row without a prompt: ``NO_PROMPT_SLOT`` and its place (unique: it holds a number in the
# ``prompt-N`` numbering that no group has, so that the prompts after it keep the numbers they have with it).
NO_PROMPT_SLOT = "\x00no prompt\x00"


# The fields whose string values are JSON text themselves (a call's ``arguments``; verifiers' ``tool_calls`` entries):
# their own key order and spacing are the writer's, as the prompt's are.
_JSON_TEXT_FIELDS = frozenset({"arguments", "tool_calls"})


def _canonical(value: Any, json_text: bool = False) -> Any:
    """``value`` as the same prompt reads whoever wrote it: keys sorted (by ``json.dumps``), a key whose value is
    null left out (``"tool_calls": null`` and no ``tool_calls`` say the same), and a string of a
    ``_JSON_TEXT_FIELDS`` field that is JSON text read as its JSON (``{"city": "NYC"}``, ``{"city":"NYC"}`` and
    the object itself). No text is changed: a message's content, even one space apart, is another prompt."""
    if isinstance(value, dict):
        return {k: _canonical(v, k in _JSON_TEXT_FIELDS) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_canonical(v, json_text) for v in value]
    if json_text and isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            return _canonical(json.loads(value))
        except (ValueError, RecursionError):
            return value
    return value


def prompt_key(value: Any) -> str:
    """A row's prompt as a short key: a 128-bit digest of its canonical JSON (``_canonical``: the same prompt
    written by another writer, or another version, its keys in another order, is the same key; a review: a resumed
    evaluation whose second file wrote ``{"content", "role"}`` split each of its groups in two), so that the
    prompts of a run of 100,000 rows are not all held in memory, text for text, until its samples are read."""
    try:
        text = json.dumps(_canonical(value), ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)
    except (ValueError, TypeError, RecursionError):
        text = chat.compact_json(value)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


@dataclass
class FilePrompts:
    """The prompts of one file's rows: ``keys`` in order of first appearance among the rows with an id (a row
    without a prompt has a key of its own, ``NO_PROMPT_SLOT``...); ``rows`` each row's place in ``keys`` (-1: a row
    without an id, in no group); ``ids`` each group id's prompt keys (rows without a prompt left out); ``by_prompt``
    whether the file's groups are its prompts (``prompt-N``) rather than its ids; ``run_wide`` whether that was
    decided over the run's files (``check_prompt_ids``); ``expected`` whether the file's own rows decided it for a
    layout whose ids are not meant to name the example (older verifiers ``id``: noted, where an id that mixes
    prompts is otherwise warned)."""

    keys: list[str]
    rows: list[int]
    ids: dict[str, set[str]]
    by_prompt: bool = False
    run_wide: bool = False
    expected: bool = False


def prompts_of(ctx: RunContext, layout: str) -> dict[str, FilePrompts]:
    """The ``FilePrompts`` of the layout's files read so far, by path."""
    held: dict[str, FilePrompts] = ctx.cache.get(_PROMPTS, {}).get(layout, {})
    return held


def remember_prompts(ctx: RunContext, layout: str, path: str, pairs: list[tuple[str | None, str]]) -> FilePrompts:
    """Keep a file's ``(group id, prompt key)`` pairs, one per row in order, for ``check_prompt_ids`` and
    ``with_prompt_groups``."""
    first: dict[str, int] = {}
    rows: list[int] = []
    ids: dict[str, set[str]] = {}
    for group, key in pairs:
        rows.append(-1 if group is None else first.setdefault(key, len(first)))
        if group is not None and not key.startswith(NO_PROMPT_SLOT):
            ids.setdefault(group, set()).add(key)
    fp = FilePrompts(list(first), rows, ids)
    earlier = ctx.cache.get(_PROMPTS, {}).get(layout, {}).get(path)
    if earlier is not None and earlier.run_wide:  # parsed again (``file_frames``): what the run decided holds
        fp.by_prompt = fp.run_wide = True
    ctx.cache.setdefault(_PROMPTS, {}).setdefault(layout, {})[path] = fp
    return fp


def file_prompt_groups(fp: FilePrompts) -> list[str | None]:
    """The ``prompt-N`` group of each row of one file, numbered in the file (``with_prompt_groups`` numbers them
    again over the run)."""
    return [None if i < 0 or fp.keys[i].startswith(NO_PROMPT_SLOT) else f"prompt-{i}" for i in fp.rows]


@dataclass
class PromptIds:
    """What ``check_prompt_ids`` decided: the files that were grouped by id and are grouped by prompt now
    (``moved``), and why: ``clash``, (how many ids, the first, the files that hold it) where one id names
    different prompts in different files; else ``prompted``, the files whose own rows were grouped by prompt
    (``expected``: each for a reason that is noted, not warned)."""

    moved: list[str]
    clash: tuple[int, str, list[str]] | None = None
    prompted: tuple[str, ...] = ()
    expected: bool = False


def check_prompt_ids(files: list[FileInfo], ctx: RunContext, layout: str) -> PromptIds | None:
    """Whether the files of the run grouped by id are to be grouped by prompt instead (``run_wide``), and why
    (``PromptIds``), or None. Two reasons, each a decision over the run, so that one prompt is never two groups
    (one ``prompt-N`` in a file grouped by prompt, an id in another): another file of the layout is grouped by
    prompt (its own rows gave one id to different prompts: two evaluations appended to one file); or one group
    id names different prompts in different files (each file consistent on its own: an id's prompts over the
    run outnumber its prompts in any one file). From the keys the probes kept: nothing read."""
    memo = prompts_of(ctx, layout)
    held = [(f.path, memo[f.path]) for f in files if f.path in memo]
    mine = [(path, fp) for path, fp in held if not fp.by_prompt]
    if not mine:
        return None
    prompted = [(path, fp) for path, fp in held if fp.by_prompt]
    found = PromptIds([path for path, _ in mine])
    if prompted:
        found.prompted = tuple(path for path, _ in prompted)
        found.expected = all(fp.expected for _, fp in prompted)
    else:
        union: dict[str, set[str]] = {}
        widest: dict[str, int] = {}
        holders: dict[str, list[str]] = {}
        for path, fp in mine:
            for group, keys in fp.ids.items():
                union.setdefault(group, set()).update(keys)
                widest[group] = max(widest.get(group, 0), len(keys))
                holders.setdefault(group, []).append(path)
        clash = [g for g, keys in union.items() if len(keys) > widest[g]]
        if not clash:
            return None
        found.clash = (len(clash), clash[0], holders[clash[0]])
    for _, fp in mine:
        fp.by_prompt = fp.run_wide = True
    return found


def with_prompt_groups(pairs: list[tuple[FileInfo, pl.DataFrame]], ctx: RunContext, layout: str) -> list[pl.DataFrame]:
    """The frames of ``pairs``, those of the files grouped by prompt with ``group_id`` = ``prompt-N``, numbered
    over all such files of the run (in the order they were read, whatever files are asked for: a number names one
    prompt in every frame), so that a group is one prompt, and one prompt one group, in the whole run."""
    memo = prompts_of(ctx, layout)
    if not any(f.path in memo and memo[f.path].by_prompt for f, _ in pairs):
        return [frame for _, frame in pairs]
    number_of: dict[str, int] = {}
    names: dict[str, list[str | None]] = {}
    for path, held in memo.items():
        if held.by_prompt:
            # A slot's number is taken, not named: the prompts after it keep the numbers they have with its prompt.
            numbers = [number_of.setdefault(k, len(number_of)) for k in held.keys]
            names[path] = [
                None if k.startswith(NO_PROMPT_SLOT) else f"prompt-{n}" for k, n in zip(held.keys, numbers, strict=True)
            ]
    out = []
    for f, frame in pairs:
        fp = memo.get(f.path)
        if fp is None or not fp.by_prompt or len(fp.rows) != frame.height:  # (never expected: a frame not mapped here)
            out.append(frame)
            continue
        index = pl.Series("i", fp.rows, dtype=pl.Int64)
        group = pl.Series("group_id", names[f.path], dtype=pl.String).gather(index.set(index < 0, None))
        out.append(frame.with_columns(group.alias("group_id")))
    return out


def check_ids_across_files(
    layout: Any, files: list[FileInfo], ctx: RunContext, what: str, advice: str, same: str = "prompt"
) -> None:
    """A run-wide check of a layout whose files name prompts by ids (``what``: the ids' name): where the files
    grouped by id are grouped by prompt now (``check_prompt_ids``), said (``say_prompt_ids``); and the sample ids
    the files share, as ``layout.warn_pooled`` says them where every group is an id, else as ``say_shared_ids``.
    ``same``: what the rows of one prompt group share, as said (``task and prompt`` where a layout keys its
    prompts within their task)."""
    found = check_prompt_ids(files, ctx, layout.name)
    if found is not None:
        say_prompt_ids(ctx, layout.name, what, found, same)
    memo = prompts_of(ctx, layout.name)
    if any(memo[f.path].by_prompt for f in files if f.path in memo):
        say_shared_ids(files, ctx, layout.name, advice, same)
    else:
        layout.warn_pooled(files, ctx, advice)


def _shown_paths(paths: list[str] | tuple[str, ...]) -> str:
    return ", ".join(paths[:3]) + (" ..." if len(paths) > 3 else "")


def say_prompt_ids(ctx: RunContext, layout: str, what: str, found: PromptIds, same: str = "prompt") -> None:
    """Why the files grouped by id are grouped by prompt now (``check_prompt_ids``), said once: a warning where
    one id names different prompts in different files, or where another file's own rows mixed prompts under one
    id (warned for that file); a note where those files' ids are not meant to name the example (``expected``)."""
    moved = _shown_paths(found.moved)
    if found.clash is not None:
        count, first, holders = found.clash
        ctx.warn(
            holders[-1],
            f"{count} {what} stand for different prompts in different {layout} files (first: {first!r}, in "
            f"{_shown_paths(holders)}): prompt groups are the rows with the same {same} in {len(found.moved)} "
            "file(s) (`prompt-N`, numbered over the run's files), so that no group holds two prompts; the rows of "
            f"one {same} in several files are still one group",
        )
        return
    prompted = _shown_paths(found.prompted)
    message = (
        f"{len(found.moved)} {layout} file(s) whose groups are their ids ({moved}) are grouped by prompt, as "
        f"{prompted} {'is' if len(found.prompted) == 1 else 'are'} (an id there stands for different prompts): "
        f"prompt groups are the rows with the same {same} in every file of the run (`prompt-N`, numbered over its "
        f"files), so that the rows of one {same} are one group whatever their file"
    )
    if found.expected:
        ctx.note(layout, message)
    else:
        ctx.warn(found.moved[0], message)


def say_shared_ids(files: list[FileInfo], ctx: RunContext, layout: str, advice: str, same: str = "prompt") -> None:
    """The sample ids the files share, said as ``JsonlSamples.warn_pooled`` says them but for the groups, which
    are the prompts (``same``), not the ids: rows of one id are in one group only where they have one prompt."""
    shared = shared_ids(files, ["split", "step"])
    if shared is None:
        return
    count, first_id, holders = shared
    ctx.warn(
        holders[-1],
        f"{count} sample id(s) occur in more than one {layout} file at the same step (first: {first_id!r}, in "
        f"{_shown_paths(holders)}): each file's rows are counted, as one step (their prompt groups told by the "
        f"{same}, above); {advice}",
    )


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
        """Files that share sample ids (``warn_pooled``); and a task index that names different prompts in
        different files (two collections that number their own tasks from 0), or a file grouped by prompt on its
        own (two collections in it): the groups of every file are told by the prompt (``check_prompt_ids``),
        said."""
        advice = "point runlog at one rollouts file, or keep each collection in its own folder"
        check_ids_across_files(self, files, ctx, "task index(es)", advice)

    def scan_samples(self, files: list[FileInfo], ctx: RunContext) -> pl.LazyFrame | None:
        """As ``JsonlSamples.scan_samples``, with the prompt groups ``check_run`` decided (``with_prompt_groups``)."""
        pairs = self.file_frames(files, ctx)
        if not pairs:
            return None
        frames = with_prompt_groups(pairs, ctx, self.name)
        return S.conform_samples(pl.concat(frames, how="diagonal_relaxed").lazy())

    def file_meta(self, info: FileInfo) -> None:
        info.split = "train"
        info.step = 0

    def finish(self, frame: pl.DataFrame, state: dict[str, Any], info: FileInfo, ctx: RunContext) -> pl.DataFrame:
        """``prompt_turns``: how many leading messages of each row are the request (its ``instructions`` and
        ``input`` items), the rest being the response's ``output``. The rows' prompts are kept for the run-wide
        check of the task indexes (``check_prompt_ids``). Where one task index stands for different requests in
        this file (two collections appended to one file, each numbering its tasks from 0), the prompt groups are
        the rows with the same request (``prompt-N``, numbered over the run's files by ``with_prompt_groups``),
        warned, as the same across files is."""
        fp = remember_prompts(ctx, self.name, info.path, state.get("prompts", []))
        frame = with_prompt_turns(frame, state)
        mixed = [g for g, keys in fp.ids.items() if len(keys) > 1]
        if fp.run_wide or not mixed or len(fp.rows) != frame.height:
            return frame  # (parsed again after ``check_run``: ``with_prompt_groups`` sets the groups it decided)
        fp.by_prompt = True
        ctx.warn(info.path, _MIXED_REQUESTS.format(n=len(mixed), first=repr(mixed[0])))
        return frame.with_columns(pl.Series("group_id", file_prompt_groups(fp), dtype=pl.String))

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
        # The row's prompt, the request's ``instructions`` and ``input`` (one entry per mapped row, in order), for
        # the run-wide check of the task indexes (``finish``).
        raw_input = params.get("input")
        if raw_input is None and not instructions:
            key = f"{NO_PROMPT_SLOT}{info.path}:{line}"
        else:
            # (No instructions written and empty ones are the same request: no system message either way.)
            key = prompt_key({"instructions": instructions or None, "input": raw_input})
        state.setdefault("prompts", []).append((row["group_id"], key))
        # Where the response starts in ``messages``: an assistant example in the request ``input`` is not the
        # policy's (``finish`` puts it in the frame, as ``prompt_turns``).
        state.setdefault("prompt_turns", []).append(len(prompt_msgs))
        return row
