"""The sixteenth audit of the readers against the real dumps in ``../shared/realdata`` (read in place; copies
changed in ``tmp_path``): prompt groups over a run's files, a Responses reasoning item with both its summary and
its raw reasoning, and a verifiers prompt that is not messages.

Each test counts what it expects with plain ``json`` (no runlog) and compares that with what runlog reads and
says. The tests that need a real dump skip when it is absent.
"""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import runlog
from runlog import chat
from runlog.analysis.texts import SkippedTexts, diversity_frame, format_per_sample, texts_frame
from runlog.metrics.format import load_spec
from test_realdata_render import NEMO, VERIFIERS, real


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _rollout(ex_id: int, prompt: str, k: int, reward: float) -> dict[str, Any]:
    """A verifiers line as vf-eval writes one (``id``, chat prompt and completion, timings)."""
    return {
        "id": ex_id,
        "prompt": [{"role": "user", "content": prompt}],
        "completion": [{"role": "assistant", "content": f"answer to {prompt} #{k}"}],
        "task": "default",
        "reward": reward,
        "generation_ms": 1.0 + k + 10 * ex_id,
        "scoring_ms": 0.1,
        "total_ms": 2.0 + k,
    }


def _results(path: Path, prompts: list[str], rewards: list[tuple[float, float]]) -> Path:
    """A results file whose ``id`` i names ``prompts[i]`` (consistent on its own), two rollouts each."""
    return _write(path, [_rollout(i, p, k, rewards[i][k]) for i, p in enumerate(prompts) for k in range(2)])


def _true_groups(paths: list[Path], prompt_of: Any) -> dict[str, list[tuple[str, int]]]:
    """The prompt groups as they truly are: the rows (file, line) with the same prompt, read with json."""
    groups: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for path in paths:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            groups[json.dumps(prompt_of(json.loads(line)), sort_keys=True)].append((path.name, n))
    return groups


def _runlog_groups(run: runlog.Run) -> dict[str, list[str]]:
    rows = run.samples.select("group_id", "source", "prompt").collect().rows()
    groups: dict[str, list[str]] = defaultdict(list)
    for group, _source, prompt in rows:
        groups[group].append(prompt)
    return groups


def _problems(run: runlog.Run) -> list[str]:
    return [p.message for p in run.ctx.problems]


# -- finding 1: one id, different prompts in different files --------------------------------------------------
def test_two_results_files_that_reuse_ids_for_other_prompts_are_grouped_by_prompt(tmp_path: Path) -> None:
    """Each file numbers its own examples 0, 1: grouped by id, each group held two prompts and zero_adv_frac read
    0.0 where every true group has equal rewards (1.0). Grouped by prompt, and said."""
    a = _results(tmp_path / "a_results.jsonl", ["A0", "A1"], [(1, 1), (0, 0)])
    b = _results(tmp_path / "b_results.jsonl", ["B0", "B1"], [(0, 0), (1, 1)])
    truth = _true_groups([a, b], lambda r: r["prompt"])
    assert len(truth) == 4
    run = runlog.open_run(tmp_path)
    groups = _runlog_groups(run)
    assert len(groups) == 4
    assert all(len(set(prompts)) == 1 and len(prompts) == 2 for prompts in groups.values())
    assert sorted(p[0] for p in groups.values()) == ["A0", "A1", "B0", "B1"]
    summary = runlog.summarize(run).to_dicts()[0]
    assert summary["zero_adv_frac"] == 1.0
    said = [m for m in _problems(run) if "stand for different prompts" in m]
    assert len(said) == 1 and "2 example id(s)" in said[0] and "in 2 file(s)" in said[0]
    # The shared sample ids are still said, without the claim that the files share prompt groups.
    shared = [m for m in _problems(run) if "sample id(s) occur in more than one verifiers file" in m]
    assert len(shared) == 1 and "in the same prompt groups" not in shared[0]


def test_one_prompt_under_different_ids_in_two_files_is_one_group(tmp_path: Path) -> None:
    """Where the files' ids clash, the groups are the prompts of the whole run: a prompt both files hold (under
    id 0 in one, id 1 in the other) is one group of its four rollouts, never two."""
    a = _results(tmp_path / "a_results.jsonl", ["X", "A1"], [(1, 0), (0, 0)])
    b = _results(tmp_path / "b_results.jsonl", ["B0", "X"], [(1, 1), (1, 0)])
    truth = _true_groups([a, b], lambda r: r["prompt"])
    run = runlog.open_run(tmp_path)
    groups = _runlog_groups(run)
    assert sorted(len(v) for v in groups.values()) == sorted(len(v) for v in truth.values()) == [2, 2, 4]
    assert all(len(set(prompts)) == 1 for prompts in groups.values())
    assert [p for p in groups.values() if len(p) == 4][0][0] == "X"


def test_an_id_that_names_one_prompt_in_two_files_keeps_its_group(tmp_path: Path) -> None:
    """The rollouts of one example split over two files (a resumed evaluation): id 0 is prompt P0 in both, so the
    groups stay the ids, each holding the example's four rollouts, and nothing is said about prompts."""
    _results(tmp_path / "a_results.jsonl", ["P0", "P1"], [(1, 0), (0, 0)])
    _results(tmp_path / "b_results.jsonl", ["P0", "P1"], [(1, 1), (1, 0)])
    run = runlog.open_run(tmp_path)
    groups = _runlog_groups(run)
    assert sorted(groups) == ["0", "1"]
    assert {g: sorted(set(p)) for g, p in groups.items()} == {"0": ["P0"], "1": ["P1"]}
    assert all(len(p) == 4 for p in groups.values())
    assert not [m for m in _problems(run) if "different prompts" in m]


def test_the_real_results_file_beside_a_file_reusing_its_ids_groups_by_prompt(tmp_path: Path) -> None:
    """The real dump (its ``id`` already mixes prompts: ``prompt-N`` in the file) beside another evaluation whose
    ids 0..4 are its own prompts: every group is one prompt of one evaluation, the real file's five groups of
    three intact."""
    src = real(VERIFIERS)
    (tmp_path / "real_results.jsonl").write_bytes(src.read_bytes())
    other = _results(tmp_path / "z_results.jsonl", [f"Q{i}" for i in range(5)], [(1, 0)] * 5)
    truth = _true_groups([tmp_path / "real_results.jsonl", other], lambda r: r["prompt"])
    run = runlog.open_run(tmp_path)
    rows = run.samples.select("group_id", "source", "messages").collect().rows()
    by_group: dict[str, set[str]] = defaultdict(set)
    sizes: dict[str, int] = defaultdict(int)
    for group, _source, messages in rows:
        by_group[group].add(json.dumps([m["content"] for m in messages if m["role"] in ("system", "user")]))
        sizes[group] += 1
    assert all(len(v) == 1 for v in by_group.values())
    assert sorted(sizes.values()) == sorted(len(v) for v in truth.values()) == [2] * 5 + [3] * 5


def _nemo_line(task: int, rollout: int, question: str) -> dict[str, Any]:
    """The real NeMo Gym rollout's first line with its task, rollout index and user question changed."""
    rec = json.loads(real(NEMO).read_text(encoding="utf-8").splitlines()[0])
    rec = copy.deepcopy(rec)
    rec["_ng_task_index"], rec["_ng_rollout_index"] = task, rollout
    rec["response"]["id"] = f"resp_{question}_{rollout}"
    items = rec["responses_create_params"]["input"]
    user = [it for it in items if isinstance(it, dict) and it.get("role") == "user"]
    assert user, "the real rollout has a user turn"
    user[-1]["content"] = question
    return rec


def test_nemo_gym_task_indexes_reused_across_files_for_other_prompts_are_grouped_by_prompt(tmp_path: Path) -> None:
    """Two collections that number their own tasks from 0: task 0 is a different question in each file. Documented
    as pooled by task index before; a group then held two questions. Grouped by prompt, and said."""
    a = _write(tmp_path / "a_rollouts.jsonl", [_nemo_line(0, k, "weather in Paris?") for k in range(2)])
    b = _write(tmp_path / "b_rollouts.jsonl", [_nemo_line(0, k, "weather in Oslo?") for k in range(2)])
    truth = _true_groups([a, b], lambda r: r["responses_create_params"]["input"])
    run = runlog.open_run(tmp_path)
    groups = _runlog_groups(run)
    assert len(groups) == len(truth) == 2
    assert sorted(sorted(set(p)) for p in groups.values()) == [["weather in Oslo?"], ["weather in Paris?"]]
    said = [m for m in _problems(run) if "stand for different prompts" in m]
    assert len(said) == 1 and "1 task index(es)" in said[0]


def test_nemo_gym_rollouts_of_one_task_in_two_files_stay_one_group(tmp_path: Path) -> None:
    """The same task (same request) collected in two files: one group of its four rollouts, under its index."""
    _write(tmp_path / "a_rollouts.jsonl", [_nemo_line(0, k, "weather in Paris?") for k in range(2)])
    _write(tmp_path / "b_rollouts.jsonl", [_nemo_line(0, k, "weather in Paris?") for k in range(2, 4)])
    run = runlog.open_run(tmp_path)
    assert {g: len(p) for g, p in _runlog_groups(run).items()} == {"0": 4}
    assert not [m for m in _problems(run) if "different prompts" in m]


# -- finding 2: a reasoning item with both summary and raw reasoning ------------------------------------------
SUMMARY = "SUMMARY: the user wants the weather in NYC"
RAW = "RAW-COT: the user asks about New York; call get_weather(city='New York')"


def _reasoning_both(tmp_path: Path, *, before_answer: bool = False) -> Path:
    """The real NeMo Gym rollout whose reasoning item holds a summary and the raw reasoning (``reasoning_text``
    content), as vLLM, gpt-oss and OpenAI's reasoning models may write it (``before_answer``: the item moved from
    before the tool call to before the final message, whose turn it then is)."""
    rec = json.loads(real(NEMO).read_text(encoding="utf-8").splitlines()[0])
    output = rec["response"]["output"]
    item = output[0]
    assert item["type"] == "reasoning" and output[-1]["type"] == "message"
    item["summary"] = [{"type": "summary_text", "text": SUMMARY}]
    item["content"] = [{"type": "reasoning_text", "text": RAW}]
    if before_answer:
        moved = output.pop(0)
        output.insert(len(output) - 1, moved)
    return _write(tmp_path / "rollouts.jsonl", [rec])


def test_a_reasoning_item_keeps_its_summary_and_its_raw_reasoning_apart(tmp_path: Path, cli: Any) -> None:
    """Only the summary was kept, the raw reasoning lost without a word: both are in the turn's reasoning now, the
    summary first, each after a mark that tells which it is, in render-trajectory's JSON and terminal views."""
    path = _reasoning_both(tmp_path)
    res = cli("render-trajectory", path, "--index", "0", "--format", "json")
    assert res.exit_code == 0, res.output
    turns = json.loads(res.stdout)[0]["turns"]
    reasoning = [t["reasoning"] for t in turns if t["reasoning"]]
    assert reasoning == [f"{chat.SUMMARY_MARK}\n{SUMMARY}\n{chat.RAW_REASONING_MARK}\n{RAW}"]
    res = cli("render-trajectory", path, "--index", "0")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert out.index("[summary_text]") < out.index("SUMMARY:") < out.index("[reasoning_text]") < out.index("RAW-COT:")


def test_auto_plus_reasoning_puts_back_the_raw_reasoning_without_runlogs_marks(tmp_path: Path) -> None:
    """``--text auto+reasoning`` puts the reasoning the model wrote back in think tags: where an item has both, its
    raw reasoning (the summary is a retelling: a review), without the marks (runlog's words, not the model's)."""
    run = runlog.open_run(_reasoning_both(tmp_path, before_answer=True))
    texts = texts_frame(run, "auto+reasoning")["text"].to_list()
    assert len(texts) == 1
    assert texts[0].startswith(f"<think>{RAW}</think>") and SUMMARY not in texts[0]
    assert "[summary_text]" not in texts[0] and "[reasoning_text]" not in texts[0]


def test_a_reasoning_item_with_one_text_or_the_same_text_twice_is_unmarked() -> None:
    only_summary = {"type": "reasoning", "summary": [{"type": "summary_text", "text": "s"}], "content": []}
    only_raw = {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "r"}]}
    same = {"type": "reasoning", "summary": [{"text": "t"}], "content": [{"text": "t"}]}
    assert [chat.reasoning_text(i) for i in (only_summary, only_raw, same)] == ["s", "r", "t"]


# -- finding 5: a verifiers prompt that is neither messages nor text -----------------------------------------
def test_a_verifiers_prompt_that_is_a_number_is_said(tmp_path: Path) -> None:
    """``"prompt": 5`` became a turn of role ``unknown`` without a word, where every other odd field is said: one
    warning per file, with the count and the first line (the completion likewise)."""
    lines = real(VERIFIERS).read_text(encoding="utf-8").splitlines()[:3]
    recs = [json.loads(line) for line in lines]
    recs[1]["prompt"] = 5
    recs[2]["prompt"] = True
    recs[2]["completion"] = 7.5
    run = runlog.open_run(_write(tmp_path / "results.jsonl", recs))
    first = run.samples.select("messages").collect()["messages"][1][0]
    assert (first["role"], first["content"]) == ("unknown", "5")
    said = [m for m in _problems(run) if "neither a list of messages nor a text" in m]
    assert len(said) == 2
    assert any("2 line(s) whose prompt" in m and "first: line 2, 5)" in m for m in said)
    assert any("1 line(s) whose completion" in m and "first: line 3, 7.5)" in m for m in said)


def test_diversity_of_messages_leaves_out_tool_calls_without_words(tmp_path: Any) -> None:
    """The real verifiers dump: 16 of its 31 assistant turns are python calls with content "": scored as 16 equal
    texts, assistant unique_frac read 0.32 (len_mean 7.4) where the 15 turns with words give 0.60 (15.3). Left out
    and said; a sample none of whose messages has words is counted in no_text."""
    path = real(VERIFIERS)
    turns = [
        m.get("content") or ""
        for line in path.read_text().splitlines()
        for m in json.loads(line)["completion"]
        if m["role"] == "assistant"
    ]
    words = [t for t in turns if t.strip()]
    assert (len(turns), len(words)) == (31, 15)
    notes: list[str] = []
    skipped = SkippedTexts()
    df = diversity_frame(runlog.open_run(path), ["role"], text="messages", over="set", notes=notes, skipped=skipped)
    row = df.filter(df["role"] == "assistant").to_dicts()[0]
    assert row["texts"] == 15
    assert abs(row["unique_frac"] - len(set(words)) / len(words)) < 1e-12
    assert abs(row["len_mean"] - sum(len(w.split()) for w in words) / len(words)) < 1e-12
    assert any(n.startswith("16 message(s) without words") for n in notes)
    assert skipped.total == 0  # every sample keeps messages with words


def test_a_text_spec_on_messages_skips_tool_calls_without_words(tmp_path: Any) -> None:
    spec = tmp_path / "boxed.toml"
    spec.write_text('name = "boxed"\nrequire = [\'\\\\boxed\\{\']\nroles = ["assistant"]\n')
    per = format_per_sample(runlog.open_run(real(VERIFIERS)), load_spec(spec), text="messages")
    assert per.height == 15 and per["passed"].all()
