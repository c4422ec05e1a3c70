"""The nineteenth audit of the format readers: prompt groups that pooled different prompts inside one file
(a verifiers EnvGroup evaluation told apart by ``task``, two verifiers evaluations or two NeMo Gym collections
appended to one file), a verifiers reference ``answer`` read as a reward component, and inspect_ai sample ids
``5`` and ``"5"`` read as one sample.

Each test computes what it expects with plain ``json`` / ``fractions`` (no runlog) and compares that with what
runlog reads and says. The test that edits the real verifiers dump skips when it is absent.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

import runlog

from conftest import REALDATA, need_realdata

VERIFIERS = "verifiers_math_python_gpt5nano_results.jsonl"


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _truth(
    path: Path, key: Callable[[dict[str, Any]], Any], mark: Callable[[dict[str, Any]], str]
) -> set[frozenset[str]]:
    """The true groups of a JSONL file: the rows (by their mark) with the same ``key``, read with json."""
    groups: dict[str, set[str]] = defaultdict(set)
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        groups[json.dumps(key(rec), sort_keys=True)].add(mark(rec))
    return {frozenset(v) for v in groups.values()}


def _zero_adv(path: Path, key: Callable[[dict[str, Any]], Any]) -> Fraction:
    """zero_adv_frac as GRPO sees it: the share of groups (rows of one ``key``) whose rewards are all equal."""
    rewards: dict[str, list[float]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        rewards[json.dumps(key(rec), sort_keys=True)].append(rec["reward"])
    return Fraction(sum(max(v) == min(v) for v in rewards.values()), len(rewards))


def _close(value: float, truth: Fraction) -> bool:
    """A float runlog computed against the exact value (float sums round in their last bits)."""
    return abs(Fraction(value) - truth) <= abs(truth) * Fraction(1, 10**12)


def _runlog_groups(run: runlog.Run) -> set[frozenset[str]]:
    """runlog's groups, each as the completions (one mark per row) of its rows."""
    groups: dict[str, set[str]] = defaultdict(set)
    for group, completion in run.samples.select("group_id", "completion").collect().rows():
        groups[group].add(completion)
    return {frozenset(v) for v in groups.values()}


def _problems(run: runlog.Run) -> list[str]:
    return [p.message for p in run.ctx.problems]


# -- finding 1: verifiers groups keyed on example_id alone ---------------------------------------------------
def _vf(ex_id: int, task: str | None, prompt: str, n: int, reward: float) -> dict[str, Any]:
    """A verifiers line as current vf-eval writes one (``example_id``, chat messages, a timing)."""
    rec: dict[str, Any] = {
        "example_id": ex_id,
        "prompt": [{"role": "user", "content": prompt}],
        "completion": [{"role": "assistant", "content": f"rollout {n}"}],
        "reward": reward,
        "generation_ms": 10.0 + n,
    }
    if task is not None:
        rec["task"] = task
    return rec


def _envgroup(path: Path) -> Path:
    """An EnvGroup evaluation: each environment (``task``) numbers its examples from 0; every true group (one
    task's example) has equal rewards, while the rows of one ``example_id`` over both tasks do not."""
    rows = [
        ("envA", 0, "Paris", 1.0),
        ("envA", 0, "Paris", 1.0),
        ("envA", 1, "Rome", 0.0),
        ("envA", 1, "Rome", 0.0),
        ("envB", 0, "Tokyo", 0.0),
        ("envB", 0, "Tokyo", 0.0),
        ("envB", 1, "Lima", 1.0),
        ("envB", 1, "Lima", 1.0),
    ]
    return _write(path, [_vf(ex, task, p, n, r) for n, (task, ex, p, r) in enumerate(rows)])


def test_an_envgroup_evaluation_groups_each_task_s_examples_apart(tmp_path: Path) -> None:
    """Grouped by ``example_id`` alone, envA's example 0 and envB's example 0 were one group of two prompts
    (zero_adv_frac 0.0 where every true group has equal rewards: 1.0). A group is one task's example now, named
    ``{task}/{id}``, and its samples ``{task}/{id}:{k}``, each sample id one row."""
    path = _envgroup(tmp_path / "run" / "results.jsonl")
    mark = lambda r: r["completion"][0]["content"]  # noqa: E731
    truth = _truth(path, lambda r: [r["task"], r["example_id"]], mark)
    assert truth == _truth(path, lambda r: r["prompt"], mark)  # (one prompt per task's example)
    run = runlog.open_run(path.parent)
    assert _runlog_groups(run) == truth
    frame = run.samples.select("group_id", "sample_id").collect()
    assert sorted(set(frame["group_id"])) == ["envA/0", "envA/1", "envB/0", "envB/1"]
    assert frame["sample_id"].n_unique() == frame.height == 8
    assert sorted(frame["sample_id"])[:2] == ["envA/0:0", "envA/0:1"]
    summary = runlog.summarize(run).to_dicts()[0]
    assert Fraction(summary["zero_adv_frac"]) == _zero_adv(path, lambda r: [r["task"], r["example_id"]]) == 1
    assert not [m for m in _problems(run) if "different prompts" in m]


def test_a_results_file_of_one_task_keeps_its_group_and_sample_names(tmp_path: Path) -> None:
    """vf-eval writes ``task: default`` for a single environment: the groups stay the example ids (``0``) and
    the samples ``0:0``, as before."""
    rows = [_vf(n // 2, "default", f"q{n // 2}", n, float(n % 2)) for n in range(4)]
    path = _write(tmp_path / "run" / "results.jsonl", rows)
    frame = runlog.open_run(path.parent).samples.select("group_id", "sample_id").collect()
    assert frame["group_id"].to_list() == [str(r["example_id"]) for r in rows]
    assert frame["sample_id"].to_list() == ["0:0", "0:1", "1:0", "1:1"]


def test_two_evaluations_appended_to_one_results_file_are_grouped_by_prompt(tmp_path: Path) -> None:
    """Two evaluations in one results.jsonl, each numbering its examples from 0 and without a task: example 0
    held Paris and Tokyo (zero_adv_frac 0.0; true 1.0). The groups are the prompts now, said in a warning naming
    the file."""
    rows = [("Paris", 0, 1.0), ("Paris", 0, 1.0), ("Rome", 1, 0.0), ("Rome", 1, 0.0)]
    rows += [("Tokyo", 0, 0.0), ("Tokyo", 0, 0.0), ("Lima", 1, 1.0), ("Lima", 1, 1.0)]
    path = _write(tmp_path / "run" / "results.jsonl", [_vf(ex, None, p, n, r) for n, (p, ex, r) in enumerate(rows)])
    run = runlog.open_run(path.parent)
    assert _runlog_groups(run) == _truth(path, lambda r: r["prompt"], lambda r: r["completion"][0]["content"])
    summary = runlog.summarize(run).to_dicts()[0]
    assert Fraction(summary["zero_adv_frac"]) == _zero_adv(path, lambda r: r["prompt"]) == 1
    said = [m for m in _problems(run) if "stand for different prompts in this file" in m]
    assert len(said) == 1 and said[0].startswith("2 example id(s)")
    assert [p.path for p in run.ctx.problems if p.message == said[0]] == ["results.jsonl"]


def test_summarize_by_group_of_an_envgroup_evaluation_holds_one_prompt_a_group(tmp_path: Path, cli: Any) -> None:
    """The CLI's ``--by group`` rows: four groups of two equal rewards each (the std 0), as json counts them."""
    path = _envgroup(tmp_path / "run" / "results.jsonl")
    r = cli("summarize", path.parent, "--by", "group", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    means: dict[str, list[float]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        means[f"{rec['task']}/{rec['example_id']}"].append(rec["reward"])
    assert {row["group"]: row["reward_mean"] for row in rows} == {g: sum(v) / len(v) for g, v in means.items()}
    assert all(row["zero_adv_frac"] == 1.0 and row["reward_count"] == 2 for row in rows)


# -- finding 2: NeMo Gym, two collections in one rollouts file ------------------------------------------------
def _ng(task: int, rollout: int, city: str, reward: float) -> dict[str, Any]:
    """A NeMo Gym rollout line: the request, a Responses output, the task and rollout index, the reward."""
    return {
        "responses_create_params": {"input": [{"role": "user", "content": f"weather in {city}?", "type": "message"}]},
        "response": {
            "id": f"resp_{city}_{rollout}",
            "output": [
                {
                    "type": "message",
                    "role": "assistant",
                    "id": "m",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": f"{city} #{rollout}", "annotations": []}],
                }
            ],
        },
        "reward": reward,
        "_ng_task_index": task,
        "_ng_rollout_index": rollout,
    }


def test_two_nemo_gym_collections_in_one_file_are_grouped_by_request(tmp_path: Path) -> None:
    """Both collections number their tasks from 0: task 0 held Paris and Tokyo (group std 0.577, zero_adv_frac
    0.0; true 1.0). The groups are the requests now, said in a warning about the groups, not only the ids."""
    a = [_ng(0, 0, "Paris", 1.0), _ng(0, 1, "Paris", 1.0), _ng(1, 0, "Rome", 0.0), _ng(1, 1, "Rome", 0.0)]
    b = [_ng(0, 0, "Tokyo", 0.0), _ng(0, 1, "Tokyo", 0.0), _ng(1, 0, "Lima", 1.0), _ng(1, 1, "Lima", 1.0)]
    path = _write(tmp_path / "run" / "rollouts.jsonl", a + b)
    request = lambda r: r["responses_create_params"]["input"]  # noqa: E731
    truth = _truth(path, request, lambda r: r["response"]["output"][0]["content"][0]["text"])
    run = runlog.open_run(path.parent)
    assert _runlog_groups(run) == truth
    assert len(truth) == 4
    summary = runlog.summarize(run).to_dicts()[0]
    assert Fraction(summary["zero_adv_frac"]) == _zero_adv(path, request) == 1
    said = [m for m in _problems(run) if "stand for different requests in this file" in m]
    assert len(said) == 1 and said[0].startswith("2 task index(es)")


def test_one_nemo_gym_collection_keeps_its_task_index_groups(tmp_path: Path) -> None:
    """A clean collection (each task index one request) keeps its groups, the task indexes."""
    path = _write(
        tmp_path / "run" / "rollouts.jsonl", [_ng(t, k, c, float(k)) for t, c in enumerate("AB") for k in (0, 1)]
    )
    run = runlog.open_run(path.parent)
    groups = run.samples.select("group_id").collect()["group_id"].to_list()
    assert groups == [str(json.loads(line)["_ng_task_index"]) for line in path.read_text().splitlines()]
    assert not [m for m in _problems(run) if "different requests" in m]


# -- finding 3: verifiers' reference answer is no reward component ---------------------------------------------
def test_a_numeric_answer_is_not_a_reward_component(tmp_path: Path) -> None:
    """A dataset with integer answers: ``answer`` 42 was read as the component ``answer`` (mean 42.0). The
    components are the reward functions only; the answer and ``info`` stay in ``extra``."""
    rows = []
    for n in range(4):
        rec = _vf(n // 2, "t", f"q{n // 2}", n, float(n % 2))
        rec.update(answer=42, info=7, correct=float(n % 2), is_truncated=False)
        rows.append(rec)
    path = _write(tmp_path / "run" / "results.jsonl", rows)
    run = runlog.open_run(path.parent)
    names = {
        c["name"] for comps in run.samples.select("reward_components").collect()["reward_components"] for c in comps
    }
    assert names == {"correct"}
    summary = runlog.summarize(run).to_dicts()[0]
    assert [k for k in summary if k.startswith("sample:component/") and k.endswith("_mean")] == [
        "sample:component/correct_mean"
    ]
    assert _close(summary["sample:component/correct_mean"], sum(Fraction(r["correct"]) for r in rows) / len(rows))
    extra = [json.loads(e) for e in run.samples.select("extra").collect()["extra"]]
    assert [(e["answer"], e["info"]) for e in extra] == [(r["answer"], r["info"]) for r in rows]


def test_the_real_dump_with_integer_answers_has_only_its_reward_functions_as_components(tmp_path: Path) -> None:
    """The real vf-eval dump with its answers written as integers (a dataset of integer answers): the components
    are its reward-function columns, the numeric fields other than what vf-eval writes about the rollout (ids,
    reward, timings, answer), each with the mean json gives."""
    need_realdata(VERIFIERS)
    recs = [json.loads(line) for line in (REALDATA / VERIFIERS).read_text(encoding="utf-8").splitlines()]
    for rec in recs:
        rec["answer"] = int(rec["answer"])
    path = _write(tmp_path / "run" / "results.jsonl", recs)
    not_reward = {"id", "example_id", "reward", "answer", "generation_ms", "scoring_ms", "total_ms"}
    expected = {k for rec in recs for k, v in rec.items() if isinstance(v, (int, float)) and k not in not_reward}
    assert expected == {"total_tool_calls", "python_calls", "correct_answer_reward_func"}
    summary = runlog.summarize(runlog.open_run(path.parent)).to_dicts()[0]
    got = {k.removeprefix("sample:component/").removesuffix("_mean") for k in summary if k.endswith("_mean")}
    assert got - {"reward", "kl"} == expected
    for k in expected:
        assert _close(summary[f"sample:component/{k}_mean"], sum(Fraction(r[k]) for r in recs) / len(recs))


# -- finding 4: inspect_ai sample ids 5 and "5" ----------------------------------------------------------------
def _log(path: Path, ids: list[Any]) -> Path:
    samples = [
        {
            "id": sid,
            "epoch": 1,
            "input": f"q{sid!r}",
            "target": "t",
            "messages": [{"role": "user", "content": f"q{sid!r}"}, {"role": "assistant", "content": f"a{n}"}],
            "scores": {"s1": {"value": n % 2}},
        }
        for n, sid in enumerate(ids)
    ]
    log = {"version": 2, "status": "success", "eval": {"task": "t2", "model": "m", "scorers": [{"name": "s1"}]}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**log, "samples": samples}), encoding="utf-8")
    return path


def test_inspect_ai_sample_ids_5_and_text_5_are_two_samples(tmp_path: Path) -> None:
    """inspect_ai keeps ``5`` and ``"5"`` apart (two dataset samples): runlog read them as one sample id
    ``t2/5:1`` and one group of two rewards. Two groups of one row each now, the text one named by its JSON,
    said in a warning; the other ids keep their names."""
    path = _log(tmp_path / "run" / "mixed.json", [1, 5, "5"])
    samples = json.loads(path.read_text())["samples"]
    distinct = {(type(s["id"]).__name__, s["id"]) for s in samples}
    run = runlog.open_run(path.parent)
    frame = run.samples.select("sample_id", "group_id", "reward", "completion").collect()
    assert frame["group_id"].n_unique() == frame["sample_id"].n_unique() == len(distinct) == 3
    assert sorted(frame["group_id"]) == ['t2/"5"', "t2/1", "t2/5"]
    by_completion = {c: (g, r) for g, r, c in frame.select("group_id", "reward", "completion").rows()}
    names = {1: "t2/1", 5: "t2/5", "5": 't2/"5"'}  # (the text id by its JSON)
    assert by_completion == {f"a{n}": (names[s["id"]], s["scores"]["s1"]["value"]) for n, s in enumerate(samples)}
    said = [m for m in _problems(run) if "kept apart, as inspect_ai keeps them" in m]
    assert len(said) == 1 and said[0].startswith("1 sample id(s)")


def test_inspect_ai_ids_without_a_clash_keep_their_names(tmp_path: Path) -> None:
    """Ids all numbers, or all text: ``{task}/{id}:{epoch}`` as before, nothing said."""
    for ids in ([1, 5, 12], ["a", "5", "12"]):
        path = _log(tmp_path / str(ids[0]) / "log.json", ids)
        run = runlog.open_run(path.parent)
        frame = run.samples.select("sample_id").collect()
        assert sorted(frame["sample_id"]) == sorted(f"t2/{i}:1" for i in ids)
        assert not [m for m in _problems(run) if "kept apart" in m]


# -- review of 4fb734c: groups decided over the run's files, not file by file -------------------------------------
def _records(paths: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(line) for p in paths for line in p.read_text(encoding="utf-8").splitlines()]


def _truth_of(paths: list[Path], key: Callable[[dict[str, Any]], Any], mark: Callable[[dict[str, Any]], str]) -> Any:
    """The true groups of a run's JSONL files (each as its rows' marks) and zero_adv_frac, read with json."""
    marks: dict[str, set[str]] = defaultdict(set)
    rewards: dict[str, list[float]] = defaultdict(list)
    for rec in _records(paths):
        k = json.dumps(key(rec), sort_keys=True)
        marks[k].add(mark(rec))
        rewards[k].append(rec["reward"])
    zero = Fraction(sum(max(v) == min(v) for v in rewards.values()), len(rewards))
    return {frozenset(v) for v in marks.values()}, zero


def _vf_mark(rec: dict[str, Any]) -> str:
    return str(rec["completion"][0]["content"])


def _vf_lines(task: str, prompts: list[str], k0: int, reward: float, tag: str) -> list[dict[str, Any]]:
    """Two rollouts of each prompt, ``example_id`` its place in ``prompts``, marked ``tag`` (one mark a row)."""
    rows = []
    for ex, prompt in enumerate(prompts):
        for k in (k0, k0 + 1):
            rec = _vf(ex, task, prompt, k, reward)
            rec["completion"] = [{"role": "assistant", "content": f"{tag} {task} {ex} #{k}"}]
            rows.append(rec)
    return rows


def test_an_envgroup_file_beside_an_evaluation_of_one_of_its_tasks_keeps_one_group_per_example(tmp_path: Path) -> None:
    """File a: an EnvGroup evaluation (math, code; ids 0, 1); file b: math alone again, the same prompts. File a
    named its groups ``math/0`` and file b ``0``: one example was two groups (zero_adv_frac 1.0; true 0.5), and
    the rollout ids the files share were no longer said. The run names every file's examples by task now."""
    run_dir = tmp_path / "run"
    a = _write(
        run_dir / "results_a.jsonl",
        _vf_lines("math", ["m0", "m1"], 0, 1.0, "a") + _vf_lines("code", ["c0", "c1"], 0, 1.0, "a"),
    )
    b = _write(run_dir / "results_b.jsonl", _vf_lines("math", ["m0", "m1"], 0, 0.0, "b"))
    groups, zero = _truth_of([a, b], lambda r: [r["task"], r["prompt"]], _vf_mark)
    assert zero == Fraction(1, 2) and len(groups) == 4
    run = runlog.open_run(run_dir)
    assert _runlog_groups(run) == groups
    assert Fraction(runlog.summarize(run).to_dicts()[0]["zero_adv_frac"]) == zero
    rows = run.samples.select("source", "group_id", "completion").collect().rows()
    names = {c: g for s, g, c in rows if s == "results_b.jsonl"}
    assert names == {_vf_mark(r): f"{r['task']}/{r['example_id']}" for r in _records([b])}
    # Rollout k of one task's example in both files: the sample ids the files share, said once.
    seen: dict[tuple[str, int], int] = defaultdict(int)
    keys: list[set[tuple[str, int, int]]] = []
    for path in (a, b):
        seen.clear()
        mine = set()
        for rec in _records([path]):
            mine.add((rec["task"], rec["example_id"], seen[rec["task"], rec["example_id"]]))
            seen[rec["task"], rec["example_id"]] += 1
        keys.append(mine)
    said = [m for m in _problems(run) if "sample id(s) occur in more than one verifiers file" in m]
    assert len(said) == 1 and said[0].startswith(f"{len(keys[0] & keys[1])} sample id(s)")


def test_results_files_of_different_tasks_name_their_examples_by_task(tmp_path: Path) -> None:
    """Two files of one task each, math and code, each numbering its examples from 0: the run holds two tasks,
    so each example is its task's (``math/0``, ``code/0``), one group per prompt, and no id is said to stand for
    two prompts (the tasks tell them apart)."""
    run_dir = tmp_path / "run"
    a = _write(run_dir / "results_a.jsonl", _vf_lines("math", ["m0", "m1"], 0, 1.0, "a"))
    b = _write(run_dir / "results_b.jsonl", _vf_lines("code", ["c0", "c1"], 0, 0.0, "b"))
    groups, _ = _truth_of([a, b], lambda r: r["prompt"], _vf_mark)
    run = runlog.open_run(run_dir)
    assert _runlog_groups(run) == groups
    got = {c: g for g, c in run.samples.select("group_id", "completion").collect().rows()}
    assert got == {_vf_mark(r): f"{r['task']}/{r['example_id']}" for r in _records([a, b])}
    assert not [m for m in _problems(run) if "different prompts" in m]


def test_results_files_of_one_task_keep_their_id_names(tmp_path: Path) -> None:
    """A resumed evaluation of one task (``default``, or a named one) in two files: the groups stay the example
    ids (``0``), each holding the example's rollouts of both files."""
    for task in ("default", "gsm8k"):
        run_dir = tmp_path / task
        a = _write(run_dir / "results_a.jsonl", _vf_lines(task, ["q0", "q1"], 0, 1.0, "a"))
        b = _write(run_dir / "results_b.jsonl", _vf_lines(task, ["q0", "q1"], 2, 0.0, "b"))
        run = runlog.open_run(run_dir)
        groups, _ = _truth_of([a, b], lambda r: r["prompt"], _vf_mark)
        assert _runlog_groups(run) == groups
        got = {c: g for g, c in run.samples.select("group_id", "completion").collect().rows()}
        assert got == {_vf_mark(r): str(r["example_id"]) for r in _records([a, b])}


def test_a_file_grouped_by_prompt_groups_the_run_s_other_files_by_prompt(tmp_path: Path) -> None:
    """File a: two evaluations appended (PA0, PA1, then PB0, PB1, each numbered 0, 1); file b: the first
    evaluation again. File a's groups were its prompts and file b's its ids: PA0 was ``prompt-0`` and ``0``
    (zero_adv_frac 1.0; true 0.5), and the shared ids' warning said those rows shared prompt groups. Every file
    is grouped by prompt now, said once, naming file b."""
    run_dir = tmp_path / "run"
    a = _write(
        run_dir / "results_a.jsonl",
        _vf_lines("default", ["PA0", "PA1"], 0, 1.0, "a") + _vf_lines("default", ["PB0", "PB1"], 0, 0.0, "a2"),
    )
    b = _write(run_dir / "results_b.jsonl", _vf_lines("default", ["PA0", "PA1"], 0, 0.0, "b"))
    groups, zero = _truth_of([a, b], lambda r: r["prompt"], _vf_mark)
    assert zero == Fraction(1, 2) and len(groups) == 4
    run = runlog.open_run(run_dir)
    assert _runlog_groups(run) == groups
    assert Fraction(runlog.summarize(run).to_dicts()[0]["zero_adv_frac"]) == zero
    spread = [p for p in run.ctx.problems if "are grouped by prompt, as results_a.jsonl is" in p.message]
    assert [p.path for p in spread] == ["results_b.jsonl"]
    shared = [m for m in _problems(run) if "sample id(s) occur in more than one verifiers file" in m]
    assert len(shared) == 1 and "in the same prompt groups" not in shared[0]


def test_a_nemo_gym_file_grouped_by_request_groups_the_run_s_other_files_by_request(tmp_path: Path) -> None:
    """NeMo Gym: file a two collections appended (Paris, Rome; then Tokyo, Lima; task indexes 0, 1 each), file b
    the first collection again: four groups, one a request, zero_adv_frac 0.5 (was 6 groups, 1.0)."""
    run_dir = tmp_path / "run"
    first = [_ng(t, k, city, 1.0) for t, city in enumerate(["Paris", "Rome"]) for k in (0, 1)]
    second = [_ng(t, k, city, 0.0) for t, city in enumerate(["Tokyo", "Lima"]) for k in (0, 1)]
    again = [_ng(t, k, city, 0.0) for t, city in enumerate(["Paris", "Rome"]) for k in (2, 3)]
    a = _write(run_dir / "rollouts_a.jsonl", first + second)
    b = _write(run_dir / "rollouts_b.jsonl", again)
    request = lambda r: r["responses_create_params"]["input"]  # noqa: E731
    groups, zero = _truth_of([a, b], request, lambda r: r["response"]["output"][0]["content"][0]["text"])
    assert zero == Fraction(1, 2) and len(groups) == 4
    run = runlog.open_run(run_dir)
    assert _runlog_groups(run) == groups
    assert Fraction(runlog.summarize(run).to_dicts()[0]["zero_adv_frac"]) == zero
    spread = [p for p in run.ctx.problems if "are grouped by prompt, as rollouts_a.jsonl is" in p.message]
    assert [p.path for p in spread] == ["rollouts_b.jsonl"]


def test_the_real_dump_s_prompt_groups_take_in_a_resumed_file_s_rows(tmp_path: Path) -> None:
    """The real dump (an older vf-eval: its ``id`` mixes prompts, so its groups are its prompts) beside a resumed
    evaluation whose ``id`` i names the real dump's i-th prompt throughout: the resumed rows were grouped by id,
    each prompt two groups. One group per prompt now, of the rows json finds with it; said in a note (an older
    vf-eval's ``id`` is expected to be so), not a warning."""
    need_realdata(VERIFIERS)
    real = tmp_path / "run" / "real_results.jsonl"
    real.parent.mkdir(parents=True)
    real.write_bytes((REALDATA / VERIFIERS).read_bytes())
    prompts: list[Any] = []
    for rec in _records([real]):
        if rec["prompt"] not in prompts:
            prompts.append(rec["prompt"])
    resumed = [
        {"id": i, "prompt": p, "completion": [{"role": "assistant", "content": "x"}], "reward": 0.0}
        for i, p in enumerate(prompts)
    ]
    for n, rec in enumerate(resumed):
        rec["generation_ms"] = 1e6 + n  # (each real line's own timing marks it: they are all different)
    other = _write(tmp_path / "run" / "z_results.jsonl", resumed)
    mark = lambda r: str(r["generation_ms"])  # noqa: E731
    truth, zero = _truth_of([real, other], lambda r: r["prompt"], mark)
    run = runlog.open_run(real.parent)
    got: dict[str, set[str]] = defaultdict(set)
    for group, extra in run.samples.select("group_id", "extra").collect().rows():
        got[group].add(str(json.loads(extra)["generation_ms"]))
    assert {frozenset(v) for v in got.values()} == truth
    assert len(got) == len(truth) == len(prompts)
    assert Fraction(runlog.summarize(run).to_dicts()[0]["zero_adv_frac"]) == zero
    noted = [
        n["message"] for n in run.ctx.fidelity if "are grouped by prompt, as real_results.jsonl is" in n["message"]
    ]
    assert len(noted) == 1 and "z_results.jsonl" in noted[0]
    assert not [m for m in _problems(run) if "grouped by prompt" in m]


def test_the_real_dump_s_groups_by_summarize_are_its_prompts(tmp_path: Path, cli: Any) -> None:
    """The real vf-eval dump alone: ``summarize --by group`` gives one row per prompt (``prompt-N`` in the order
    the prompts first appear), with the count and mean json gives; unchanged by the run-wide decisions."""
    need_realdata(VERIFIERS)
    recs = _records([REALDATA / VERIFIERS])
    by_prompt: dict[str, list[float]] = {}
    for rec in recs:
        by_prompt.setdefault(json.dumps(rec["prompt"], sort_keys=True), []).append(rec["reward"])
    r = cli("summarize", REALDATA / VERIFIERS, "--by", "group", "--format", "json")
    assert r.exit_code == 0, r.output
    got = {row["group"]: (row["reward_count"], row["reward_mean"]) for row in json.loads(r.stdout)}
    assert got == {f"prompt-{i}": (len(v), sum(v) / len(v)) for i, v in enumerate(by_prompt.values())}


# -- review of b387bd3: prompt groups within a task; the names a warning gives; a file's ids by its neighbours ---
def _vf_rollouts(task: str, prompt_rewards: list[tuple[str, list[float]]], tag: str) -> list[dict[str, Any]]:
    """One evaluation of ``task``: example i asks the i-th prompt, one rollout per reward (marked ``tag``)."""
    rows = []
    for ex, (prompt, rewards) in enumerate(prompt_rewards):
        for k, reward in enumerate(rewards):
            rec = _vf(ex, task, prompt, k, reward)
            rec["completion"] = [{"role": "assistant", "content": f"{tag} {task} {ex} #{k}"}]
            rec["generation_ms"] = 10.0 + len(rows) + 100 * len(tag)
            rows.append(rec)
    return rows


def _two_tasks_one_prompt(run_dir: Path, envgroup: bool) -> list[Path]:
    """A run grouped by prompt (a math evaluation appended to a results file: example 0 is "P" then "R") in which
    math and code both ask "Q", math's rollouts rewarded 1 and code's 0: in one EnvGroup file beside the appended
    one (``envgroup``), or in a code file beside a math file that holds the appended evaluation."""
    appended = _vf_rollouts("math", [("P", [1.0, 0.0])], "b") + _vf_rollouts("math", [("R", [1.0, 1.0])], "b2")
    if envgroup:
        a = _vf_rollouts("math", [("Q", [1.0, 1.0]), ("m1", [1.0, 1.0])], "a")
        a += _vf_rollouts("code", [("Q", [0.0, 0.0]), ("c1", [0.0, 0.0])], "a")
        return [_write(run_dir / "a_results.jsonl", a), _write(run_dir / "b_results.jsonl", appended)]
    math = _vf_rollouts("math", [("Q", [1.0, 1.0])], "m") + appended
    code = _vf_rollouts("code", [("Q", [0.0, 0.0])], "c")
    return [_write(run_dir / "a_results.jsonl", math), _write(run_dir / "b_results.jsonl", code)]


@pytest.mark.parametrize("envgroup", [True, False], ids=["envgroup_file", "files_of_one_task"])
def test_two_tasks_asking_one_prompt_are_two_prompt_groups(tmp_path: Path, envgroup: bool) -> None:
    """Where a run of several tasks is grouped by prompt, math's "Q" (rewards 1) and code's "Q" (rewards 0) were
    one ``prompt-N`` group with learning signal (EnvGroup: 5 groups, zero_adv_frac 0.6; true 6, 5/6): the id
    groups keep the environments apart, and the prompt groups do now too, a group being one task's prompt."""
    paths = _two_tasks_one_prompt(tmp_path / "run", envgroup)
    groups, zero = _truth_of(paths, lambda r: [r["task"], r["prompt"]], _vf_mark)
    assert (len(groups), zero) == ((6, Fraction(5, 6)) if envgroup else (4, Fraction(3, 4)))
    run = runlog.open_run(tmp_path / "run")
    assert _runlog_groups(run) == groups
    assert all(g.startswith("prompt-") for g in run.samples.select("group_id").collect()["group_id"])
    assert _close(runlog.summarize(run).to_dicts()[0]["zero_adv_frac"], zero)
    if envgroup:  # (the appended file's own rows decided it; the EnvGroup file follows, said)
        said = [m for m in _problems(run) if "are grouped by prompt, as b_results.jsonl is" in m]
        assert len(said) == 1 and "rows with the same task and prompt in every file" in said[0]


def test_a_run_of_one_task_grouped_by_prompt_pools_one_prompt_over_its_files(tmp_path: Path) -> None:
    """The task key applies only where the run names its examples by task: a resumed evaluation of one task
    whose first file holds two evaluations appended keeps one group per prompt over both files."""
    run_dir = tmp_path / "run"
    a = _vf_rollouts("math", [("Q", [1.0, 1.0])], "a") + _vf_rollouts("math", [("P", [1.0, 0.0])], "a2")
    b = _vf_rollouts("math", [("Q", [0.0, 0.0])], "b")
    paths = [_write(run_dir / "a_results.jsonl", a), _write(run_dir / "b_results.jsonl", b)]
    groups, zero = _truth_of(paths, lambda r: r["prompt"], _vf_mark)
    assert (len(groups), zero) == (2, Fraction(0))
    run = runlog.open_run(run_dir)
    assert _runlog_groups(run) == groups
    assert _close(runlog.summarize(run).to_dicts()[0]["zero_adv_frac"], zero)


def _with_bad_line(path: Path, records: list[dict[str, Any]]) -> Path:
    """``records`` with a line that is not JSON as line 2."""
    lines = [json.dumps(r) for r in records]
    lines.insert(1, "{not json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("envgroup", [True, False], ids=["envgroup_file", "beside_another_task"])
def test_the_warning_on_rollouts_named_by_line_names_them_as_the_run_does(
    tmp_path: Path, envgroup: bool, cli: Any
) -> None:
    """After a line that could not be read, rollouts are named by their line; the warning named the first
    ``0:line3`` where the run names it ``math/0:line3`` (renamed as a file of a run of several tasks), so that
    ``render-trajectory --sample-id 0:line3`` failed. It names the sample id the run has now."""
    run_dir = tmp_path / "run"
    math = _vf_rollouts("math", [("m0", [1.0, 0.0]), ("m1", [1.0, 0.0])], "a")
    code = _vf_rollouts("code", [("c0", [1.0, 1.0])], "a" if envgroup else "b")
    records = math + code if envgroup else math
    path = _with_bad_line(run_dir / "a_results.jsonl", records)
    if not envgroup:
        _write(run_dir / "b_results.jsonl", code)
    line3 = json.loads(path.read_text(encoding="utf-8").splitlines()[2])  # the first rollout after the bad line
    run = runlog.open_run(run_dir)
    ids = {c: s for s, c in run.samples.select("sample_id", "completion").collect().rows()}
    sid = ids[_vf_mark(line3)]
    assert sid == f"{line3['task']}/{line3['example_id']}:line3"
    said = [m for m in _problems(run) if "named by their line" in m]
    assert len(said) == 1 and f"(first: line 3, {sid})" in said[0]
    r = cli("render-trajectory", run_dir, "--sample-id", sid)
    assert r.exit_code == 0, r.output
    assert _vf_mark(line3) in r.stdout


def test_an_unknown_sample_id_suggests_its_spelling_with_or_without_a_task(tmp_path: Path, cli: Any) -> None:
    """A file's ids depend on its neighbours: a math results file alone names a rollout ``0:1``, beside a code
    results file ``math/0:1``. An unknown ``--sample-id`` that is a run's id with a ``TASK/`` prefix added or
    taken off is refused (exit 2) with the run's spellings; one that is not gets no hint."""
    run_dir = tmp_path / "run"
    math = _write(run_dir / "a_results.jsonl", _vf_rollouts("math", [("m0", [1.0, 0.0])], "a"))
    r = cli("render-trajectory", math, "--sample-id", "math/0:1")
    assert r.exit_code == 2
    assert "unknown sample id 'math/0:1' (did you mean '0:1'?)" in r.output
    _write(run_dir / "b_results.jsonl", _vf_rollouts("code", [("c0", [1.0, 1.0])], "b"))
    truth = sorted(f"{rec['task']}/0:1" for rec in _records(sorted(run_dir.iterdir())) if rec["example_id"] == 0)
    r = cli("render-trajectory", run_dir, "--sample-id", "0:1")
    assert r.exit_code == 2
    shown = " or ".join(repr(s) for s in sorted(set(truth)))
    assert f"unknown sample id '0:1' (did you mean {shown}?)" in r.output
    r = cli("render-trajectory", run_dir, "--sample-id", "9:9")
    assert r.exit_code == 2
    assert "unknown sample id '9:9'" in r.output and "did you mean" not in r.output
