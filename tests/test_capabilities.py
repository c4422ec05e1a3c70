"""The capability table of docs/format.md ("What each layout gives"), every cell checked against the library.

The table is parsed from the page: one row per layout (Flink v0 and v1 apart), one column per capability,
each cell starting with its answer (a word of that column's vocabulary below). A small run of every layout
is built here (or bundled in sample_runs/), and each cell's answer is checked on it: per-role rewards through
``run.role_names()`` and ``summarize(run, ["role"])``; prompt groups through ``zero_adv_frac`` with and
without ``prompt_groups``; conversations through ``texts_frame(run, "messages")`` and ``render-trajectory``;
tool calls counted in the messages, each result paired with its call; the ``--text auto`` text compared with
a reference made here from the messages; scalars through ``Run.scalars``. A cell the code contradicts, a
word outside the vocabulary and a registered layout without a row all fail.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from flink_gen import write_flink_run
from runlog import open_run
from runlog.analysis.summarize import summarize
from runlog.analysis.texts import texts_frame
from runlog.formats import layouts
from runlog.run import Run
from test_inspect_ai import synthetic_samples, write_json_log
from test_layouts_foreign import verl_record, write_lines, write_trl

from conftest import ROOT, SAMPLE_RUNS

SECTION = "## What each layout gives"
COLUMNS = ("layout", "per-role rewards", "prompt groups", "conversations", "tool calls", "text for metrics", "scalars")
NONE = "—"  # the layout holds no samples
VOCABULARY = {
    "per-role rewards": ("yes", "no", NONE),
    "prompt groups": ("group_id", "prompt text", NONE),
    "conversations": ("yes", "no", NONE),
    "tool calls": ("yes", "no", NONE),
    "text for metrics": ("first role's last turn", "first speaker's last turn", NONE),
    "scalars": ("yes", "no"),
}


# -- the table ---------------------------------------------------------------------------------------------------
def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def capability_table(text: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(header, {row label: {column: cell}}) of the table under ``SECTION``; a label is the layout name,
    with its version where the table splits one (``flink v1``)."""
    assert SECTION in text, f"docs/format.md has no section {SECTION!r}"
    body = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    lines = [line for line in body.splitlines() if line.startswith("| ")]
    header = _cells(lines[0])
    rows: dict[str, dict[str, str]] = {}
    for line in lines[2:]:
        cells = _cells(line)
        m = re.fullmatch(r"`([a-z_]+)`(?: (v\d+))?", cells[0])
        assert m, f"row label {cells[0]!r}: expected `layout` or `layout` vN"
        label = " ".join(g for g in m.groups() if g)
        rows[label] = dict(zip(header, cells, strict=True))
    return header, rows


HEADER, TABLE = capability_table((ROOT / "docs" / "format.md").read_text(encoding="utf-8"))
CELLS = [(label, col) for label in TABLE for col in COLUMNS[1:]]


def answer(column: str, cell: str) -> str:
    """The word of ``column``'s vocabulary ``cell`` starts with (alone, or followed by ``:`` or `` (``)."""
    for word in sorted(VOCABULARY[column], key=len, reverse=True):
        if cell == word or cell.startswith((f"{word}:", f"{word} (")):
            return word
    raise AssertionError(f"{column} cell {cell!r} starts with none of {VOCABULARY[column]}")


def test_the_table_has_every_column_and_every_registered_layout():
    assert tuple(HEADER) == COLUMNS
    assert {label.split()[0] for label in TABLE} == {lay.name for lay in layouts()}
    assert {"flink v0", "flink v1"} <= set(TABLE)  # Flink's versions differ in what they carry


# -- a small run of every layout ----------------------------------------------------------------------------------
def _verifiers(root: Path) -> Path:
    """vf-eval results (newer: ``example_id``): 2 examples x 2 rollouts, a python call each (the entry a JSON
    string, the result without a tool_call_id, as vf-eval writes them)."""
    lines = []
    for ex in range(2):
        for k in range(2):
            call = {"id": f"c{ex}{k}", "type": "function", "function": {"name": "python", "arguments": "{}"}}
            call["function"]["arguments"] = json.dumps({"code": f"print({ex} + {k})"})
            rec = {
                "example_id": ex,
                "prompt": [{"role": "system", "content": "Use python."}, {"role": "user", "content": f"{ex} + 1?"}],
                "completion": [
                    {"role": "assistant", "content": "", "tool_calls": [json.dumps(call)]},
                    {"role": "tool", "content": str(ex + k)},
                    {"role": "assistant", "content": f"\\boxed{{{ex + 1}}}"},
                ],
                "task": "default",
                "reward": float(k),
                "correct_answer_reward_func": float(k),
                "generation_ms": 10.0,
            }
            lines.append(json.dumps(rec))
    return write_lines(root / "results.jsonl", lines)


def _nemo(root: Path) -> Path:
    """NeMo Gym rollouts: 2 tasks x 2 rollouts, a get_weather call and its output each."""
    lines = []
    for task in range(2):
        for rollout in range(2):
            cid = f"call-{task}-{rollout}"
            question = {"type": "message", "role": "user", "content": f"Weather in city {task}?"}
            rec = {
                "responses_create_params": {"input": [question], "instructions": "Call get_weather once."},
                "response": {
                    "output": [
                        {"type": "function_call", "call_id": cid, "name": "get_weather", "arguments": '{"city": "X"}'},
                        {"type": "function_call_output", "call_id": cid, "output": "sunny"},
                        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sun."}]},
                    ]
                },
                "reward": float(rollout),
                "reward_components": {"correctness": float(rollout)},
                "_ng_task_index": task,
                "_ng_rollout_index": rollout,
            }
            lines.append(json.dumps(rec))
    return write_lines(root / "rollouts.jsonl", lines)


def _verl(root: Path) -> Path:
    """verl dumps: prompt 0 twice, prompt 1 once; one output holds a tool call written as text."""
    call = '<tool_call>{"name": "python", "arguments": {"code": "1+1"}}</tool_call>'
    records = [verl_record(3, 0, output=call), verl_record(3, 0, score=0.5), verl_record(3, 1)]
    return write_lines(root / "rollout" / "3.jsonl", records)


def _areal(root: Path) -> Path:
    lines = [json.dumps({"step": s, "loss": 1.0 / (s + 1), "loss__count": 4}) for s in range(3)]
    return write_lines(root / "stats.jsonl", lines)


BUILDERS: dict[str, Callable[[Path], Any]] = {
    "runlog": lambda tmp: SAMPLE_RUNS / "debate_grpo",
    "flink v1": lambda tmp: write_flink_run(tmp, steps=2, prompts=2, group_size=3, version=1, rounds=2).root,
    "flink v0": lambda tmp: write_flink_run(tmp, steps=2, prompts=2, group_size=3, version=0, rounds=2).root,
    "trl": lambda tmp: write_trl(tmp)[0].parents[1],
    "nemo_gym": _nemo,
    "verifiers": _verifiers,
    "inspect_ai": lambda tmp: write_json_log(tmp / "logs" / "agentic.json", synthetic_samples()),
    "verl": _verl,
    "jaxarc": lambda tmp: SAMPLE_RUNS / "jaxarc",
    "areal": _areal,
}


@pytest.fixture(scope="module")
def run_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The path of a small run of every row's layout (files only: each test opens its own Run)."""
    out = {}
    for label, build in BUILDERS.items():
        folder = tmp_path_factory.mktemp(label.replace(" ", "_"))
        path = build(folder)
        out[label] = folder if path.is_file() and path.suffix == ".jsonl" else path
    return out


# -- what each answer means ----------------------------------------------------------------------------------------
def _samples(run: Run) -> pl.DataFrame:
    return run.samples.select("step", "split", "sample_id", "group_id", "completion", "messages").collect()


def _calls(messages: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [c for m in messages or [] for c in m["tool_calls"] or []]


def _render(cli, path: Path, *args: Any) -> dict[str, Any]:
    r = cli("render-trajectory", path, "--steps", "all", *args, "--format", "json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)[0]


def per_role_rewards(word: str, run: Run, path: Path, cli) -> None:
    names = run.role_names()
    roles = summarize(run, ["role"])["role"]
    if word == "yes":
        assert names and set(roles.drop_nulls()) == set(names) and roles.null_count() == 0
        by_role = run.roles.filter(pl.col("reward").is_not_null()).select("role").unique().collect()["role"]
        assert set(by_role) == set(names)
    else:
        assert names == [] and roles.len() > 0 and roles.null_count() == roles.len()


def prompt_groups(word: str, run: Run, path: Path, cli) -> None:
    plain = summarize(run, ["step"])["zero_adv_frac"]
    found = summarize(run, ["step"], prompt_groups=True)["zero_adv_frac"]
    if word == "group_id":
        assert _samples(run)["group_id"].null_count() == 0
        assert plain.len() > 0 and plain.null_count() == 0 and plain.equals(found)  # no text read, the same groups
    else:
        assert plain.null_count() == plain.len() > 0 and found.null_count() == 0
    # a written (or derived) group holds the samples of one prompt
    df = run.samples.select("split", "step", "group_id", "prompt").collect().drop_nulls("group_id")
    assert df.group_by("split", "step", "group_id").agg(pl.col("prompt").n_unique())["prompt"].max() in (1, None)


def conversations(word: str, run: Run, path: Path, cli) -> None:
    said = texts_frame(run, "messages")
    df = _samples(run)
    roles = {m["role"] for ms in df["messages"].to_list() for m in ms or []}
    if word == "no":
        assert df.height > 0 and said.height == 0  # samples, but no conversation
        return
    assert said.height > 0 and {"user", "assistant"} <= roles
    conv = _render(cli, path, "--index", 0)
    assert conv["source"] == "messages" and {t["role"] for t in conv["turns"]} >= {"user", "assistant"}


def tool_calls(word: str, run: Run, path: Path, cli) -> None:
    df = _samples(run)
    n = sum(len(_calls(ms)) for ms in df["messages"].to_list())
    if word == "no":
        assert df["messages"].null_count() < df.height and n == 0  # conversations, but no call in them
        return
    assert n > 0
    results = 0
    for ms in df["messages"].to_list():
        names = {c["id"]: c["name"] for c in _calls(ms)}
        assert all(c["name"] and isinstance(json.loads(c["arguments"]), dict) for c in _calls(ms))
        for m in ms or []:
            if m["role"] == "tool":
                assert names.get(m["tool_call_id"]) == m["name"], m  # paired: its call's id and name
                results += 1
    assert results > 0
    row = next(r for r in df.iter_rows(named=True) if _calls(r["messages"]))
    conv = _render(cli, path, "--sample-id", row["sample_id"], "--split", row["split"])
    assert conv["stats"]["tool_calls"] == len(_calls(row["messages"]))
    shown = [(c["name"], c["arguments"]) for t in conv["turns"] for c in t["tool_calls"]]
    assert shown == [(c["name"], c["arguments"]) for c in _calls(row["messages"])]


def text_for_metrics(word: str, run: Run, path: Path, cli) -> None:
    assert word.startswith("first speaker's last turn"), word
    df = _samples(run)

    def first_speaker(messages):
        named = [m["name"] for m in messages or [] if m["role"] == "assistant" and m["name"]]
        return named[0] if named else None

    # The policy: the speaker that speaks first in most samples (ties: the first name in sorted order).
    firsts = Counter(f for f in map(first_speaker, df["messages"].to_list()) if f is not None)
    top = max(firsts.values(), default=0)
    policy = min((n for n, c in firsts.items() if c == top), default=None)

    def text(r):
        if not r["messages"]:
            return r["completion"]
        turns = [
            m
            for m in r["messages"]
            if m["role"] == "assistant" and m["name"] in (policy, None) and (m["content"] or not m["tool_calls"])
        ]
        return (turns[-1]["content"] or "") if turns else None

    want = {(r["split"], r["sample_id"]): text(r) for r in df.iter_rows(named=True)}
    got = texts_frame(run, "auto")
    assert {(r["split"], r["sample_id"]): r["text"] for r in got.iter_rows(named=True)} == want
    assert got["text"].null_count() < got.height


def scalars(word: str, run: Run, path: Path, cli) -> None:
    frame = run.scalars
    n = 0 if frame is None else frame.select(pl.len()).collect().item()
    assert (n > 0) == (word == "yes")


CHECKS = {
    "per-role rewards": per_role_rewards,
    "prompt groups": prompt_groups,
    "conversations": conversations,
    "tool calls": tool_calls,
    "text for metrics": text_for_metrics,
    "scalars": scalars,
}


@pytest.mark.parametrize(("label", "column"), CELLS, ids=[f"{label}|{col}" for label, col in CELLS])
def test_cell(cli, run_paths: dict[str, Path], label: str, column: str) -> None:
    cell = TABLE[label][column]
    word = answer(column, cell)
    assert label in run_paths, f"no run of {label} built for the table's row"
    path = run_paths[label]
    run = open_run(path)
    assert label.split()[0] in {f.layout for f in run.files}, f"{path} is not read as {label}"
    if label.startswith("flink "):
        assert {f.schema_version for f in run.files} == {int(label[-1])}
    assert not run.errors, run.errors
    if word == NONE:
        assert run.samples.select(pl.len()).collect().item() == 0, f"{label}: {column} says no samples"
        return
    CHECKS[column](word, run, path, cli)


# -- the fix behind the verifiers group cell ----------------------------------------------------------------------
def test_verifiers_id_that_mixes_prompts_gives_prompt_groups(tmp_path: Path) -> None:
    """Older vf-eval wrote an ``id`` shared by rows of different prompts (rows 3k..3k+2 share id k while the
    prompts cycle through the dataset): the groups are then the rows with the same prompt, noted."""

    def rec(i: int, prompt: int) -> str:
        return json.dumps({"id": i, "prompt": f"question {prompt}", "completion": "a", "reward": float(i % 2)})

    mixed = write_lines(tmp_path / "old" / "results.jsonl", [rec(i // 3, i % 2) for i in range(6)])
    run = open_run(mixed)
    df = run.samples.select("sample_id", "group_id", "prompt").collect()
    assert df["sample_id"].to_list() == ["0:0", "0:1", "0:2", "1:0", "1:1", "1:2"]
    assert df["group_id"].to_list() == ["prompt-0", "prompt-1", "prompt-0", "prompt-1", "prompt-0", "prompt-1"]
    assert any("`id` does not name the example" in n["message"] for n in run.fidelity)
    consistent = write_lines(tmp_path / "new" / "results.jsonl", [rec(i // 3, i // 3) for i in range(6)])
    run = open_run(consistent)
    assert run.samples.select("group_id").collect()["group_id"].to_list() == ["0", "0", "0", "1", "1", "1"]
    assert not any("`id` does not name" in n["message"] for n in run.fidelity)
