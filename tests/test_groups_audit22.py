"""Prompt groups where some samples of a prompt carry a ``group_id`` and others do not, and the split that doctor and
report read by default in a run without ``train``.

A prompt whose samples were written partly without their group id (one process of a writer version that did not
write it) was two groups: the id's and the prompt text's, each of whose rewards could look flat, so that
``zero_adv_frac`` read 1.0 and doctor warned of zero advantage where every prompt's rewards were {1, 1, 0, 0}. The
samples without an id now join the one id the other samples of their prompt carry at their split and step; where
those carry several ids, they stay a group of their prompt text; a note says how many did either.

doctor and report read the alphabetically first split of a run without ``train``: ``eval`` beside a train split
named ``rl``, whose NaN rewards went unsaid (exit 0). They now read the first by name of the splits not named like
an evaluation (by name, not by size: a choice by the most steps changed at nearly every step of a run writing two
training splits in turn). The truths below come from the files themselves (pyarrow) and plain Python."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from runlog import open_run
from runlog.writer import RunWriter

STEPS = 12


def _rows(process: int, step: int) -> list[dict]:
    """Process 0 writes its samples with their group id, process 1 the same prompts' other samples without it.
    P0: one id, rewards all 1 (a flat group); P1, P2: one id, rewards 1 beside 0; P3: two ids ('a' and 'b') on
    process 0, so its samples without an id cannot be put in either; P4: no id anywhere (a group of its prompt)."""
    rows = []

    def add(prompt: str, gid: str | None, reward: float) -> None:
        row = {"reward": reward, "prompt": prompt, "roles": {"solver": {"reward": reward}}}
        if gid is not None:
            row["group_id"] = gid
        rows.append(row)

    if process == 0:
        for g in range(3):
            add(f"P{g}", f"g{g}", 1.0)
            add(f"P{g}", f"g{g}", 1.0)
        add("P3", "a", 1.0)
        add("P3", "a", 0.0)
        add("P3", "b", 1.0)
        add("P3", "b", 1.0)
    else:
        add("P0", None, 1.0)
        add("P0", None, 1.0)
        for g in (1, 2):
            add(f"P{g}", None, 0.0)
            add(f"P{g}", None, 0.0)
        add("P3", None, float(step % 2))
        add("P3", None, 1.0)
        add("P4", None, 0.5)
        add("P4", None, 0.25)
    return rows


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    root = tmp_path / "mixed"
    for process in (0, 1):
        with RunWriter(root, durable=False, process_index=process, roles=["solver"], run_id="mixed") as w:
            for step in range(STEPS):
                w.log_samples(step, _rows(process, step))
    return root


def _samples(root: Path) -> list[dict]:
    out = []
    for path in sorted(root.glob("samples/*/*.parquet")):
        out += pq.read_table(path).to_pylist()
    return out


def _truth_groups(rows: list[dict]) -> dict[tuple, list[float]]:
    """The documented rule, from the rows: a sample's group is its id; without one, the one id the other samples
    of its prompt carry at its split and step, else its prompt text."""
    ids: dict[tuple, set[str]] = defaultdict(set)
    for r in rows:
        if r["group_id"] is not None:
            ids[(r["split"], r["step"], r["prompt"])].add(r["group_id"])
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        mine = ids[(r["split"], r["step"], r["prompt"])]
        gid = r["group_id"] or (next(iter(mine)) if len(mine) == 1 else "prompt:" + r["prompt"])
        [solver] = [x["reward"] for x in r["roles"] if x["role"] == "solver"]
        groups[(r["split"], r["step"], gid)].append(solver)
    return groups


def _flat(values: list[float]) -> bool:
    return max(values) - min(values) <= 1e-8


def test_samples_without_an_id_join_their_prompts_one_id_in_summarize(mixed: Path, cli) -> None:
    groups = _truth_groups(_samples(mixed))
    truth = Fraction(sum(_flat(v) for v in groups.values()), len(groups))
    res = cli("summarize", mixed, "--split", "train", "--prompt-groups", "--format", "json")
    assert res.exit_code == 0, res.output
    [solver] = [r for r in json.loads(res.stdout) if r["role"] == "solver"]
    assert solver["zero_adv_frac"] == pytest.approx(float(truth), abs=1e-12)
    # Per group at step 0: the ids, P3's prompt group of the samples without an id, and P4's.
    res = cli("summarize", mixed, "--by", "group", "--steps", "0", "--prompt-groups", "--format", "json")
    assert res.exit_code == 0, res.output
    got = {r["group"]: r["reward_count"] for r in json.loads(res.stdout)}
    want = {gid: len(v) for (_, step, gid), v in groups.items() if step == 0}
    assert {g for g in got if not g.startswith("prompt:")} == {g for g in want if not g.startswith("prompt:")}
    assert sorted(got.values()) == sorted(want.values())
    assert {"g0": 4, "g1": 4, "g2": 4, "a": 2, "b": 2}.items() <= got.items()


def test_the_note_counts_the_samples_joined_and_those_left_apart(mixed: Path) -> None:
    from runlog.analysis.aggregate import prompt_join_note
    from runlog.analysis.filters import Filters, StepRange

    rows = _samples(mixed)
    ids: dict[tuple, set[str]] = defaultdict(set)
    for r in rows:
        if r["group_id"] is not None:
            ids[(r["step"], r["prompt"])].add(r["group_id"])
    lone = [r for r in rows if r["group_id"] is None]
    joined = sum(len(ids[(r["step"], r["prompt"])]) == 1 for r in lone)
    apart = sum(len(ids[(r["step"], r["prompt"])]) > 1 for r in lone)
    note = prompt_join_note(open_run(mixed))
    assert note is not None
    assert f"{joined} sample(s) without a group_id joined the group of their prompt's group_id" in note, note
    assert f"{apart} sample(s) without a group_id are a prompt group of their own" in note, note
    # Over the steps asked: one step's share.
    one = prompt_join_note(open_run(mixed), Filters(steps=StepRange.parse("3")))
    assert one is not None and f"{joined // STEPS} sample(s) without a group_id joined" in one, one


def test_doctor_and_diff_read_the_joined_groups(mixed: Path, cli) -> None:
    groups = _truth_groups(_samples(mixed))
    per_step = {
        s: Fraction(sum(_flat(v) for (_, st, _), v in groups.items() if st == s), sum(st == s for _, st, _ in groups))
        for s in range(STEPS)
    }
    assert max(per_step.values()) < Fraction(1, 2)  # no step has half its groups flat: no zero advantage
    res = cli("doctor", mixed, "--format", "json")
    data = json.loads(res.stdout)
    assert not [f for f in data["findings"] if f["kind"] == "zero_advantage"], data
    assert any("sample(s) without a group_id joined the group of their prompt's group_id" in n for n in data["notes"])
    res = cli("diff", mixed, mixed, "--format", "json")
    points = [p for p in json.loads(res.stdout.splitlines()[0])["points"] if p["metric"] == "zero_adv_frac"]
    assert points
    for p in points:
        first, last = (int(x) for x in p["baseline_steps"].split(".."))
        window = [g for (_, st, _), g in groups.items() if first <= st <= last]
        assert p["baseline_n"] == len(window)
        assert p["baseline"] == pytest.approx(sum(map(_flat, window)) / len(window), abs=1e-12)


# ---------------------------------------------------------------------------------------------------------
# The split read by default
# ---------------------------------------------------------------------------------------------------------
EVAL_NAME = re.compile(r"(eval|test|val).*|dev|heldout|holdout", re.IGNORECASE)


def _split_run(root: Path, sizes: dict[str, tuple[int, int]], nan_in: str | None = None) -> Path:
    """A run of the given splits, each ``(steps, samples per step)``; ``nan_in``: a quarter of that split's
    rewards NaN."""
    with RunWriter(root, durable=False, roles=["solver"], run_id=root.name) as w:
        for split, (steps, n) in sizes.items():
            for step in range(steps):
                rows = []
                for i in range(n):
                    r = math.nan if split == nan_in and i % 4 == 0 else 0.1 * (i % 3) + 0.01 * step
                    rows.append({"reward": r, "group_id": f"{i // 2}", "roles": {"solver": {"reward": r}}})
                w.log_samples(step, rows, split=split)
    return root


def _truth_split(root: Path) -> str:
    steps: dict[str, set[int]] = defaultdict(set)
    rows: dict[str, int] = defaultdict(int)
    for r in _samples(root):
        steps[r["split"]].add(r["step"])
        rows[r["split"]] += 1
    if "train" in steps:
        return "train"
    pool = [s for s in steps if not EVAL_NAME.fullmatch(s)] or list(steps)
    return min(pool)


def test_doctor_and_report_read_the_training_split_not_the_first_by_name(tmp_path: Path, cli) -> None:
    root = _split_run(tmp_path / "ph", {"rl": (6, 8), "eval": (2, 5)}, nan_in="rl")
    assert _truth_split(root) == "rl"
    res = cli("doctor", root, "--format", "json")
    data = json.loads(res.stdout)
    assert data["split"] == "rl", data
    assert res.exit_code == 1 and any(f["kind"] == "nan_rewards" for f in data["findings"]), data
    assert (
        "split rl read (the only split not named like an evaluation); the run also has eval, not read here "
        "(--split eval for it)"
    ) in data["notes"]
    from runlog.report import build_report

    page = build_report(open_run(root))
    assert "split <b>rl</b>" in page and "not in this report: eval" in page


@pytest.mark.parametrize(
    ("sizes", "why"),
    [
        ({"grpo": (3, 4), "sft": (5, 4), "eval": (8, 4)}, "the first by name of the splits not named like an"),
        ({"test": (2, 4), "validation": (4, 4)}, "every split is named like an evaluation: the first by name"),
        ({"a": (3, 4), "b": (4, 8)}, "the first by name of the splits not named like an evaluation"),
        ({"EVAL": (9, 4), "Dev": (9, 4), "rl": (2, 4)}, "the only split not named like an evaluation"),
        ({"holdout": (5, 4), "heldout": (6, 4), "ppo": (3, 4), "valid": (7, 2)}, "the only split not named"),
    ],
)
def test_the_default_split_follows_the_rule(tmp_path: Path, cli, sizes: dict, why: str) -> None:
    root = _split_run(tmp_path / "r", sizes)
    want = _truth_split(root)
    res = cli("doctor", root, "--format", "json")
    data = json.loads(res.stdout)
    assert data["split"] == want, data
    [note] = [n for n in data["notes"] if n.startswith(f"split {want} read (")]
    assert why in note, note
