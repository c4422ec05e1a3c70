"""Foreign layouts (TRL, verl, verifiers, NeMo Gym) and the chat normalisation they share.

The verifiers and NeMo Gym tests read the real public dumps in ``../shared/realdata`` (skipped when that
folder is absent); TRL Parquet and verl JSONL fixtures are built in ``tmp_path``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog import chat
from runlog.formats.base import BAD_LINE, MISSING_COLUMNS, UNREADABLE, WARNING, Candidate, FileInfo, RunContext
from runlog.formats.nemo_gym import NemoGym
from runlog.formats.trl import Trl
from runlog.formats.verifiers import Verifiers
from runlog.formats.verl import Verl

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
VERIFIERS_FILE = REALDATA / "verifiers_math_python_gpt5nano_results.jsonl"
VERIFIERS_META = REALDATA / "verifiers_math_python_gpt5nano_metadata.json"
NEMO_FILE = REALDATA / "nemo_gym_tool_call_multireward_rollouts.jsonl"


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"real data file {path.name} not found in {REALDATA} (the shared/realdata checkout)")


def cand(root: Path, path: Path) -> Candidate:
    return Candidate(root, path, path.stat().st_size)


def probe_and_scan(layout: Any, root: Path, paths: list[Path]) -> tuple[list[FileInfo], pl.DataFrame, RunContext]:
    ctx = RunContext(root)
    infos = [layout.probe(cand(root, p), ctx) for p in paths]
    lf = layout.scan_samples(infos, ctx)
    assert lf is not None
    return infos, lf.collect(), ctx


def kinds(ctx: RunContext) -> list[str]:
    return [p.kind for p in ctx.problems]


def write_lines(path: Path, lines: list[str], *, newline_at_end: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + ("\n" if newline_at_end else ""), encoding="utf-8")
    return path


def msg(role: str, content: str | None = None, **kw: Any) -> dict[str, Any]:
    return chat.message(role, content, **kw)


# ---------------------------------------------------------------------------------------------------------
# chat.py
# ---------------------------------------------------------------------------------------------------------


def test_openai_tool_calls_as_dicts_and_json_strings() -> None:
    encoded = json.dumps({"id": "c2", "type": "function", "function": {"name": "python", "arguments": '{"a":1}'}})
    out = chat.from_openai_chat(
        [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "search", "arguments": {"q": "x"}}},
                    encoded,
                ],
            },
            {"role": "tool", "content": "r1", "tool_call_id": "c1"},
            {"role": "tool", "content": "r2"},  # no tool_call_id: paired with the next unanswered call
        ]
    )
    assert out == [
        msg("user", "go"),
        msg(
            "assistant",
            None,
            tool_calls=[
                {"id": "c1", "name": "search", "arguments": '{"q":"x"}'},
                {"id": "c2", "name": "python", "arguments": '{"a":1}'},
            ],
        ),
        msg("tool", "r1", name="search", tool_call_id="c1"),
        msg("tool", "r2", name="python", tool_call_id="c2"),
    ]
    assert all(list(m) == list(chat.MESSAGE_KEYS) for m in out)


def test_openai_content_parts_reasoning_and_odd_shapes() -> None:
    out = chat.from_openai_chat(
        [
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}]},
            {"role": "assistant", "content": "b", "reasoning_content": "think"},
            {"role": "assistant", "content": "c", "tool_calls": ["not json"]},
            "stray text",
            42,
        ]
    )
    assert out[0] == msg("user", "a\n[image_url]")
    assert out[1] == msg("assistant", "b", reasoning="think")
    assert out[2]["tool_calls"] == [{"id": None, "name": None, "arguments": "not json"}]
    assert out[3] == msg("unknown", "stray text")
    assert out[4] == msg("unknown", "42")
    assert chat.from_openai_chat(None) == []
    assert chat.from_openai_chat("hello") == [msg("user", "hello")]
    # A message in which nothing is read keeps its keys as compact JSON (audit 13, R1): never an empty turn.
    assert chat.from_openai_chat({"weird": True}) == [msg("unknown", '{"weird":true}')]
    # model text is data: nothing is evaluated
    assert chat.from_openai_chat([{"role": "user", "content": "__import__('os').system('x')"}])[0]["content"] == (
        "__import__('os').system('x')"
    )


def test_responses_pairing_reasoning_and_consecutive_calls() -> None:
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "call the tools"}]},
        {"type": "function_call", "call_id": "a", "name": "get_weather", "arguments": '{"city":"X"}'},
        {"type": "function_call", "call_id": "b", "name": "get_time", "arguments": {"tz": "UTC"}},
        {"type": "function_call_output", "call_id": "b", "output": "noon"},
        {"type": "function_call_output", "call_id": "a", "output": "sunny"},
        {"type": "reasoning", "summary": [], "encrypted_content": "opaque"},  # nothing readable: skipped
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "answer now"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sunny at noon."}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "trailing"}]},
    ]
    assert chat.from_responses_items(items) == [
        msg("user", "weather?"),
        msg(
            "assistant",
            None,
            reasoning="call the tools",
            tool_calls=[
                {"id": "a", "name": "get_weather", "arguments": '{"city":"X"}'},
                {"id": "b", "name": "get_time", "arguments": '{"tz":"UTC"}'},
            ],
        ),
        msg("tool", "noon", name="get_time", tool_call_id="b"),
        msg("tool", "sunny", name="get_weather", tool_call_id="a"),
        msg("assistant", "Sunny at noon.", reasoning="answer now"),
        msg("assistant", "", reasoning="trailing"),
    ]


def test_responses_unknown_items_never_raise() -> None:
    out = chat.from_responses_items(
        [
            {"type": "web_search_call", "id": "ws1", "status": "completed"},
            {"role": "user", "content": "typeless"},
            ["a", "list"],
            None,
            {"type": "function_call_output", "call_id": "zz", "output": [{"type": "output_text", "text": "t"}]},
        ]
    )
    # A built-in tool's call item is a tool call, named by its kind (audit 13, R6).
    assert out[0] == msg("assistant", None, tool_calls=[{"id": "ws1", "name": "web_search", "arguments": "{}"}])
    assert out[1] == msg("user", "typeless")
    assert out[2] == msg("unknown", '["a","list"]')
    assert out[3] == msg("unknown", "null")
    assert out[4] == msg("tool", "t", tool_call_id="zz")  # unpaired call id: no name to fill
    assert chat.from_responses_items("plain input") == [msg("user", "plain input")]
    assert chat.from_responses_items(None) == []
    assert chat.from_responses_items(7) == [msg("unknown", "7")]


# ---------------------------------------------------------------------------------------------------------
# verifiers
# ---------------------------------------------------------------------------------------------------------


def test_verifiers_detect_real_file_and_claim_metadata_as_manifest() -> None:
    _need(VERIFIERS_FILE)
    lay = Verifiers()
    assert lay.detect(cand(REALDATA, VERIFIERS_FILE))
    assert not lay.detect(cand(REALDATA, NEMO_FILE))
    if VERIFIERS_META.exists():
        # vf-eval's metadata.json is claimed (not a stray file) but holds no samples.
        assert lay.detect(cand(REALDATA, VERIFIERS_META))
        ctx = RunContext(REALDATA)
        info = lay.probe(cand(REALDATA, VERIFIERS_META), ctx)
        assert info.kind == "manifest" and ctx.problems == []
    assert (lay.priority, lay.formats) == (50, (".jsonl", ".json"))


def test_verifiers_real_file_probe_and_scan() -> None:
    _need(VERIFIERS_FILE)
    (info,), df, ctx = probe_and_scan(Verifiers(), REALDATA, [VERIFIERS_FILE])
    assert (info.rows, info.step, info.split, info.readable, info.fmt) == (15, 0, "eval", True, "jsonl")
    assert ctx.problems == []
    assert any("no training step" in n["message"] for n in ctx.fidelity)

    assert df.height == 15
    assert df["layout"].unique().to_list() == ["verifiers"]
    assert df["source"].unique().to_list() == [VERIFIERS_FILE.name]
    assert df["schema_version"].null_count() == 15
    assert df["sample_id"].to_list()[:4] == ["0:0", "0:1", "0:2", "1:0"]
    # this dump's `id` is not the example's (rows of one id have different prompts; the prompts cycle through
    # the 5 examples): the prompt groups are the rows with the same prompt, said in a note
    assert df["group_id"].to_list()[:6] == ["prompt-0", "prompt-1", "prompt-2", "prompt-3", "prompt-4", "prompt-0"]
    assert df["group_id"].n_unique() == 5
    assert df.group_by("group_id").agg(pl.col("prompt").n_unique())["prompt"].to_list() == [1] * 5
    assert any("`id` does not name the example" in n["message"] for n in ctx.fidelity)
    assert df["reward"].to_list() == [1.0] * 15
    assert df["env_name"].unique().to_list() == ["default"]
    assert df["reward_components"][0].to_list() == [
        {"name": "total_tool_calls", "value": 1.0},
        {"name": "python_calls", "value": 1.0},
        {"name": "correct_answer_reward_func", "value": 1.0},
    ]
    last = df.row(14, named=True)
    assert last["sample_id"] == "4:2"
    assert {c["name"]: c["value"] for c in last["reward_components"]}["total_tool_calls"] == 2.0

    first = df.row(0, named=True)
    assert first["prompt"].startswith("Let \\[f(x) = \\left\\{")
    assert first["completion"].endswith("\\boxed{0}")
    msgs = first["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "assistant"]
    call = msgs[2]["tool_calls"][0]
    assert call == {
        "id": "call_M7VDvRdmPgW8MpbszWdt25eL",
        "name": "python",
        "arguments": '{"code":"a = -3\\nb = 3\\nprint(a + b)\\n"}',
    }
    assert json.loads(call["arguments"]) == {"code": "a = -3\nb = 3\nprint(a + b)\n"}
    assert (msgs[3]["content"], msgs[3]["tool_call_id"], msgs[3]["name"]) == ("0", call["id"], "python")
    extra = json.loads(first["extra"])
    assert extra["answer"] == "0"
    assert set(extra) == {"answer", "info", "generation_ms", "scoring_ms", "total_ms"}


def test_verifiers_bad_line_and_torn_last_line(tmp_path: Path) -> None:
    rec = {"id": 3, "prompt": [{"role": "user", "content": "q"}], "completion": "plain answer", "reward": 0.5, "acc": 1}
    path = write_lines(
        tmp_path / "results.jsonl",
        [json.dumps(rec), "{broken", json.dumps(rec), '{"id": 3, "prompt": ['],
        newline_at_end=False,
    )
    lay = Verifiers()
    assert lay.detect(cand(tmp_path, path))
    (info,), df, ctx = probe_and_scan(lay, tmp_path, [path])
    assert info.rows == 2 and info.readable
    bad = [p for p in ctx.problems if p.kind == BAD_LINE]
    assert len(bad) == 1 and bad[0].message.startswith("line 2:")
    torn, renamed = [p for p in ctx.problems if p.kind == WARNING]
    assert "line 4" in torn.message and "torn" in torn.message
    assert renamed.message.startswith("1 rollout(s) after a line that could not be read are named by their line")
    assert df["sample_id"].to_list() == ["3:0", "3:line3"]  # after the broken line 2, by line
    assert df["completion"].to_list() == ["plain answer", "plain answer"]
    assert df["prompt"].to_list() == ["q", "q"]
    assert df["reward_components"][0].to_list() == [{"name": "acc", "value": 1.0}]


@pytest.mark.parametrize("layout,field", [(Verifiers(), "reward"), (Verl(), "score")])
def test_a_reward_that_is_missing_or_not_a_number_is_said_once_per_file(tmp_path: Path, layout, field) -> None:
    """Lines whose reward is a word, a list, or absent read as null, and the file says how many, with the
    first; a good line says nothing."""
    base = (
        {"id": 1, "prompt": [{"role": "user", "content": "q"}], "completion": "a"}
        if field == "reward"
        else {"input": "q", "output": "a", "step": 1}
    )
    lines = [
        json.dumps({**base, field: 0.5}),
        json.dumps({**base, field: "high"}),
        json.dumps({**base, field: [1, 2]}),
        json.dumps(base),
        json.dumps({**base, field: 1}),
    ]
    path = write_lines(tmp_path / ("results.jsonl" if field == "reward" else "1.jsonl"), lines)
    (info,), df, ctx = probe_and_scan(layout, tmp_path, [path])
    assert df["reward"].to_list() == [0.5, None, None, None, 1.0]
    said = [p.message for p in ctx.problems if p.kind == WARNING]
    assert said == [
        f'2 line(s) with a {field} that is not a number (first: line 2, "high"): read as null',
        f"1 line(s) without a {field} (first: line 4): read as null",
    ]


# ---------------------------------------------------------------------------------------------------------
# NeMo Gym
# ---------------------------------------------------------------------------------------------------------


def test_nemo_gym_real_file() -> None:
    _need(NEMO_FILE)
    lay = NemoGym()
    assert lay.detect(cand(REALDATA, NEMO_FILE))
    if VERIFIERS_FILE.exists():
        assert not lay.detect(cand(REALDATA, VERIFIERS_FILE))
    (info,), df, ctx = probe_and_scan(lay, REALDATA, [NEMO_FILE])
    assert (info.rows, info.step, info.split) == (5, 0, "train")
    assert ctx.problems == []
    assert df["sample_id"].to_list() == ["1:0", "0:0", "4:0", "2:0", "3:0"]
    assert df["group_id"].to_list() == ["1", "0", "4", "2", "3"]
    assert df["reward"].to_list() == [2.0] * 5
    assert df["reward_components"][0].to_list() == [
        {"name": "correctness", "value": 1.0},
        {"name": "schema_valid", "value": 1.0},
        {"name": "format", "value": 0.0},
    ]
    row = df.row(0, named=True)
    assert row["prompt"] == "how hot is it in New York today?"
    assert row["completion"] == "\n\nThe weather in New York is sunny."
    msgs = row["messages"]
    assert [m["role"] for m in msgs] == ["developer", "user", "assistant", "tool", "assistant"]
    assert msgs[2]["tool_calls"] == [
        {"id": "chatcmpl-tool-aecb7a4507d66fe1", "name": "get_weather", "arguments": '{"city": "New York"}'}
    ]
    assert msgs[3]["tool_call_id"] == "chatcmpl-tool-aecb7a4507d66fe1"
    assert msgs[3]["name"] == "get_weather"
    assert json.loads(msgs[3]["content"])["city"] == "New York"
    extra = json.loads(row["extra"])
    assert set(extra) == {"predicted_calls", "agent_ref", "response.model", "response.usage"}
    assert "correctness" not in extra  # a copy of a reward component, not an unmapped field
    notes = " | ".join(n["message"] for n in ctx.fidelity)
    assert "no training step" in notes and "reasoning items without summary text" in notes


def test_nemo_gym_bad_line_reported(tmp_path: Path) -> None:
    _need(NEMO_FILE)
    lines = NEMO_FILE.read_text(encoding="utf-8").splitlines()
    path = write_lines(tmp_path / "rollouts.jsonl", [lines[0], "[1, 2]", lines[1]])
    (info,), df, ctx = probe_and_scan(NemoGym(), tmp_path, [path])
    assert info.rows == 2
    assert kinds(ctx) == [BAD_LINE] and ctx.problems[0].message.startswith("line 2: a JSON list")
    assert df["sample_id"].to_list() == ["1:0", "0:0"]


def test_rollouts_without_a_completion_are_said_once_per_file(tmp_path: Path) -> None:
    """A verifiers rollout whose completion is empty (``[]``, ``""``, an assistant message with no text) is
    kept and said once, with its count and first line; one with an error, a tool call or text is not."""
    q = [{"role": "user", "content": "q"}]
    lines = [
        {"id": 1, "prompt": q, "completion": "answer", "reward": 1.0},
        {"id": 1, "prompt": q, "completion": [], "reward": 0.0},
        {"id": 2, "prompt": q, "completion": "", "reward": 0.0},
        {"id": 2, "prompt": q, "completion": [{"role": "assistant", "content": ""}], "reward": 0.0},
        {"id": 3, "prompt": q, "completion": [], "reward": 0.0, "error": "timeout"},
        {
            "id": 3,
            "prompt": q,
            "completion": [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                }
            ],
            "reward": 0.0,
        },
    ]
    path = write_lines(tmp_path / "results.jsonl", [json.dumps(x) for x in lines])
    (info,), df, ctx = probe_and_scan(Verifiers(), tmp_path, [path])
    assert info.rows == 6
    empty = sum(
        1
        for m in df["messages"].to_list()
        if not any(x["role"] == "assistant" and (x["content"] or x["tool_calls"]) for x in m)
    )
    assert empty == 4  # lines 2, 3, 4 and the failed line 5 (independent count)
    said = [p.message for p in ctx.problems if p.kind == WARNING]
    assert said == [
        "3 rollout(s) without a completion (no assistant message with text, reasoning or a tool call, and no error; "
        "first: line 2): kept, with an empty completion"
    ]


@pytest.mark.parametrize("damage", ["utf8", "torn_json", "not_object"])
def test_verifiers_ids_after_a_skipped_line_never_name_another_rollout(tmp_path: Path, damage: str) -> None:
    """``ID:K`` is the rollout's place among its example's rollouts: a skipped line (whose example is not known)
    would make the next rollout of that example take its number, and ``1:0`` name another rollout than in a
    clean copy. The rollouts after a skipped line are named by their line instead, said once."""

    def rec(i: int) -> dict[str, Any]:
        return {
            "id": i // 3,
            "prompt": [msg("user", f"Q{i // 3}")],
            "completion": [msg("assistant", f"A{i}")],
            "reward": 1.0,
        }

    lines = [json.dumps(rec(i)) for i in range(6)]
    clean = write_lines(tmp_path / "clean" / "results.jsonl", lines)
    bad = {"utf8": lines[3][:20] + "\udcff" + lines[3][20:], "torn_json": lines[3][:30], "not_object": "[1, 2]"}[damage]
    lines[3] = bad
    damaged = tmp_path / "bad" / "results.jsonl"
    damaged.parent.mkdir()
    damaged.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
    _, want, _ = probe_and_scan(Verifiers(), clean.parent, [clean])
    _, got, ctx = probe_and_scan(Verifiers(), damaged.parent, [damaged])
    text = dict(zip(want["sample_id"], want["completion"], strict=True))
    assert want["sample_id"].to_list() == ["0:0", "0:1", "0:2", "1:0", "1:1", "1:2"]
    assert got["sample_id"].to_list() == ["0:0", "0:1", "0:2", "1:line5", "1:line6"]
    for sid, completion in zip(got["sample_id"], got["completion"], strict=True):
        assert sid not in text or text[sid] == completion  # an id the clean copy has names the same rollout
    said = [p.message for p in ctx.problems if p.kind == WARNING and "named by their line" in p.message]
    assert said == [
        "2 rollout(s) after a line that could not be read are named by their line (first: line 5, 1:line5), not by "
        "their number among their example's rollouts: the skipped line's example is not known, so that number is "
        "not either"
    ]


def test_nemo_gym_rollout_without_output_is_said(tmp_path: Path) -> None:
    _need(NEMO_FILE)
    lines = NEMO_FILE.read_text(encoding="utf-8").splitlines()
    rec = json.loads(lines[0])
    rec["response"]["output"] = []
    path = write_lines(tmp_path / "rollouts.jsonl", [lines[1], json.dumps(rec)])
    (info,), df, ctx = probe_and_scan(NemoGym(), tmp_path, [path])
    assert info.rows == 2 and df["completion"].to_list()[1] is None
    said = [p.message for p in ctx.problems if p.kind == WARNING]
    assert len(said) == 1 and said[0].startswith("1 rollout(s) without a completion") and "first: line 2" in said[0]


# ---------------------------------------------------------------------------------------------------------
# verl
# ---------------------------------------------------------------------------------------------------------


def verl_record(step: int, i: int, **extra: Any) -> str:
    rec = {"input": f"user\nQ{i}\nassistant\n", "output": f"A{i}", "gts": str(i), "score": float(i), "step": step}
    rec.update(extra)
    return json.dumps(rec)


def test_verl_detect_probe_scan(tmp_path: Path) -> None:
    train = write_lines(
        tmp_path / "rollout" / "3.jsonl",
        [verl_record(3, 0, acc=True, pred="0"), verl_record(3, 1, acc=False, pred="9")],
    )
    val = write_lines(tmp_path / "val_generations" / "5.jsonl", [verl_record(5, 2, reward=2.0, acc=1.0)])
    other = write_lines(tmp_path / "rollout" / "notes.jsonl", [json.dumps({"input": "x", "output": "y"})])
    lay = Verl()
    assert lay.detect(cand(tmp_path, train)) and lay.detect(cand(tmp_path, val))
    assert not lay.detect(cand(tmp_path, other))
    assert (lay.priority, lay.formats) == (60, (".jsonl",))

    infos, df, ctx = probe_and_scan(lay, tmp_path, [train, val])
    assert [(i.rows, i.step, i.split) for i in infos] == [(2, 3, "train"), (1, 5, "val")]
    assert ctx.problems == []
    assert df["sample_id"].to_list() == ["3:0", "3:1", "5:0"]
    assert df["step"].to_list() == [3, 3, 5]
    assert df["split"].to_list() == ["train", "train", "val"]
    assert df["group_id"].null_count() == 3
    assert df["reward"].to_list() == [0.0, 1.0, 2.0]
    assert df["reward_components"].to_list() == [
        [{"name": "acc", "value": 1.0}],
        [{"name": "acc", "value": 0.0}],
        [{"name": "acc", "value": 1.0}],  # validation's copy of the score as `reward` is not a component
    ]
    assert df["prompt"][0] == "user\nQ0\nassistant\n" and df["completion"][0] == "A0"
    assert df["messages"][0].to_list() == [msg("user", "user\nQ0\nassistant\n"), msg("assistant", "A0")]
    assert [json.loads(e) for e in df["extra"]] == [{"gts": "0", "pred": "0"}, {"gts": "1", "pred": "9"}, {"gts": "2"}]
    assert df["source"].to_list() == ["rollout/3.jsonl", "rollout/3.jsonl", "val_generations/5.jsonl"]


def test_verl_bad_and_torn_lines(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "dumps" / "7.jsonl",
        [verl_record(7, 0), "not json at all", verl_record(7, 1), '{"input": "cut'],
        newline_at_end=False,
    )
    (info,), df, ctx = probe_and_scan(Verl(), tmp_path, [path])
    assert (info.rows, info.step, info.readable) == (2, 7, True)
    assert kinds(ctx) == [BAD_LINE, WARNING]
    assert ctx.problems[0].message.startswith("line 2:")
    assert ctx.problems[1].message.startswith("line 4: torn last line")
    assert df["sample_id"].to_list() == ["7:0", "7:2"]  # the line index, stable when a line is skipped


def test_verl_multi_step_file_and_step_mismatch(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "r" / "4.jsonl", [verl_record(4, 0), verl_record(6, 1)])
    (info,), df, ctx = probe_and_scan(Verl(), tmp_path, [path])
    assert info.step is None and info.steps == [4, 6]
    assert kinds(ctx) == [WARNING] and "differs" in ctx.problems[0].message
    assert df["sample_id"].to_list() == ["4:0", "6:1"]


# ---------------------------------------------------------------------------------------------------------
# TRL
# ---------------------------------------------------------------------------------------------------------


def write_trl(tmp_path: Path) -> tuple[Path, Path]:
    comp = tmp_path / "out" / "completions"
    comp.mkdir(parents=True)
    text = pa.table(
        {
            "step": [5, 5, 5],
            "prompt": ["p1", "p1", "p2"],
            "completion": ["c1", "c2", "c3"],
            "accuracy_reward": [1.0, 0.0, float("nan")],  # TRL logs NaN where a reward function returned None
            "format_reward": [0.5, 0.5, float("nan")],
            "advantage": [0.7, -0.7, 0.0],
        }
    )
    a = comp / "completions_00005.parquet"
    pq.write_table(text, a)
    conversational = pa.table(
        {
            "step": [10],
            "prompt": [[{"role": "user", "content": "hi", "tool_call_id": None}]],
            "completion": [
                [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}
                        ],
                        "tool_call_id": None,
                    },
                    {"role": "tool", "content": "1", "tool_calls": None, "tool_call_id": "t1"},
                    {"role": "assistant", "content": "done", "tool_calls": None, "tool_call_id": None},
                ]
            ],
            "r": [2.0],
            "advantage": [0.1],
            "note": ["kept"],
        }
    )
    b = comp / "completions_00010.parquet"
    pq.write_table(conversational, b)
    return a, b


def test_trl_detect_and_probe(tmp_path: Path) -> None:
    a, b = write_trl(tmp_path)
    root = tmp_path / "out"
    lay = Trl()
    assert lay.detect(cand(root, a)) and lay.detect(cand(root, b))
    stray = root / "completions_00005.parquet"
    shutil.copy(a, stray)
    assert not lay.detect(cand(root, stray))  # the name alone is not enough: it lives in completions/
    assert (lay.priority, lay.formats) == (30, (".parquet",))
    ctx = RunContext(root)
    info = lay.probe(cand(root, a), ctx)
    assert (info.rows, info.step, info.split, info.fmt, info.readable) == (3, 5, "train", "parquet", True)
    assert info.path == "completions/completions_00005.parquet"
    assert ctx.problems == []


def test_trl_scan_values(tmp_path: Path) -> None:
    a, b = write_trl(tmp_path)
    infos, df, ctx = probe_and_scan(Trl(), tmp_path / "out", [a, b])
    assert df["layout"].unique().to_list() == ["trl"]
    assert df["sample_id"].to_list() == ["5:0", "5:1", "5:2", "10:0"]
    assert df["step"].to_list() == [5, 5, 5, 10]
    assert df["split"].to_list() == ["train"] * 4
    assert df["group_id"].null_count() == 4
    assert df["schema_version"].null_count() == 4
    # A row whose every reward function gave None trained on 0.0 (TRL's nansum; audit 13): its reward is 0.0.
    assert df["reward"].to_list() == [1.5, 0.5, 0.0, 2.0]
    assert df["reward_components"].to_list() == [
        [{"name": "accuracy_reward", "value": 1.0}, {"name": "format_reward", "value": 0.5}],
        [{"name": "accuracy_reward", "value": 0.0}, {"name": "format_reward", "value": 0.5}],
        None,
        [{"name": "r", "value": 2.0}],
    ]
    assert df["advantage"].to_list() == [0.7, -0.7, 0.0, 0.1]
    assert df["prompt"].to_list() == ["p1", "p1", "p2", "hi"]
    assert df["completion"].to_list() == ["c1", "c2", "c3", "done"]
    assert df["messages"][0].to_list() == [msg("user", "p1"), msg("assistant", "c1")]
    conv = df["messages"][3].to_list()
    assert [m["role"] for m in conv] == ["user", "assistant", "tool", "assistant"]
    assert conv[1]["tool_calls"] == [{"id": "t1", "name": "f", "arguments": '{"x":1}'}]
    assert (conv[2]["tool_call_id"], conv[2]["name"]) == ("t1", "f")
    assert df["extra"].to_list() == [None, None, None, '{"note":"kept"}']
    assert any("weight 1.0" in n["message"] for n in ctx.fidelity)


def test_trl_missing_columns_and_truncated_file(tmp_path: Path) -> None:
    comp = tmp_path / "completions"
    comp.mkdir()
    no_prompt = comp / "completions_00001.parquet"
    pq.write_table(pa.table({"step": [1], "completion": ["c"]}), no_prompt)
    a, _ = write_trl(tmp_path / "x")
    truncated = comp / "completions_00002.parquet"
    truncated.write_bytes(a.read_bytes()[:100])
    lay = Trl()
    ctx = RunContext(tmp_path)
    i1 = lay.probe(cand(tmp_path, no_prompt), ctx)
    i2 = lay.probe(cand(tmp_path, truncated), ctx)
    assert not i1.readable and not i2.readable
    assert kinds(ctx) == [MISSING_COLUMNS, UNREADABLE]
    assert lay.scan_samples([i1, i2], ctx) is None


def test_verifiers_metadata_json_adds_no_sample_rows() -> None:
    _need(VERIFIERS_FILE)
    from runlog import open_run

    run = open_run(REALDATA)
    df = run.samples.filter(pl.col("layout") == "verifiers").collect()
    assert df.height == 15
    assert "num_examples" not in run.component_names()
