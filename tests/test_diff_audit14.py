"""Audit a14: ``runlog diff``'s resampled units where a prompt recurs across a window's steps, and what it says
where no prompt group is known.

- F1: a prompt drawn at several steps of a window (a small dataset, several epochs) shares its difficulty at
  each of them: the reward, KL and zero_adv_frac intervals resample prompts (their samples over the window's
  steps), not (step, prompt group) units, which gave intervals 0.4x as wide (half of the null pairs called
  ahead or behind at 95 %). The prompt is its text, else its group id.
- F2: runs with neither a group id nor prompt text: the interval takes the samples as independent, and a note
  says so (in the notes printed with the verdicts and in the JSON).

Every expectation is computed from the raw files (pyarrow, numpy), not by runlog."""

from __future__ import annotations

import json
import os
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import runlog
from runlog import open_run
from runlog.analysis.diff import DiffOptions, diff_runs

STEPS, DATASET, DRAWN, GROUP = 20, 12, 8, 6
END = set(range(10, 20))


def _write_recurring(path: Path, seed: int, prompt_text: bool = True) -> Path:
    """A run whose own dataset of 12 prompts (success rate Beta(0.5, 0.5)) gives 8 prompts per step, 6 binary
    rewards each: a prompt is drawn at about 7 of a window's 10 steps. Group ids are per step (``s3-p5``) where
    the prompt text is written, else the prompt's own id (``p5``), the same at every step."""
    rng = np.random.default_rng(seed)
    rate = rng.beta(0.5, 0.5, DATASET)
    with runlog.RunWriter(path, name=path.name, durable=False, clock=lambda: 1.7e9) as w:
        for s in range(STEPS):
            rows = []
            for p in rng.choice(DATASET, DRAWN, replace=False):
                for x in rng.random(GROUP) < rate[p]:
                    row = {"reward": float(x), "group_id": f"s{s}-p{p}" if prompt_text else f"p{p}"}
                    if prompt_text:
                        row["prompt"] = f"question {seed}-{p}"
                    rows.append(row)
            w.log_samples(s, rows, split="train")
    return path


def _prompts(path: Path, key: str, steps: set[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per prompt (``key``: the column naming it) over ``steps``: its rewards' sum and number, its number of
    (step, prompt) groups and of those whose rewards are all equal."""
    per: dict[str, dict[int, list[float]]] = {}
    for f in path.rglob("*.parquet"):
        t = pq.read_table(f, columns=["step", "reward", key]).to_pydict()
        for step, r, k in zip(t["step"], t["reward"], t[key], strict=True):
            if step in steps:
                per.setdefault(k, {}).setdefault(step, []).append(r)
    sums = np.array([sum(sum(v) for v in d.values()) for d in per.values()])
    ns = np.array([sum(len(v) for v in d.values()) for d in per.values()], dtype=float)
    groups = np.array([len(d) for d in per.values()], dtype=float)
    flat = np.array([sum(min(v) == max(v) for v in d.values()) for d in per.values()], dtype=float)
    return sums, ns, groups, flat


def _prompt_boot(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], boot: int, seed: int) -> float:
    """The width of the 95 % percentile interval of B - A, resampling each run's prompts (ratio of sums)."""
    rng = np.random.default_rng(seed)
    reps = []
    for num, den in (a, b):
        i = rng.integers(0, len(num), size=(boot, len(num)))
        reps.append(num[i].sum(axis=1) / den[i].sum(axis=1))
    lo, hi = np.percentile(reps[1] - reps[0], [2.5, 97.5])
    return float(hi - lo)


def _end(d, metric: str) -> dict:  # noqa: ANN001
    [row] = d.points.filter((d.points["metric"] == metric) & (d.points["point"] == "end")).to_dicts()
    return row


@pytest.mark.parametrize("prompt_text", [True, False], ids=["prompt-text", "group-id-only"])
def test_a_prompt_drawn_at_several_steps_is_one_unit_of_the_interval(tmp_path: Path, prompt_text: bool) -> None:
    """Null pairs (one process, each run its own 12 prompts) whose prompts recur across the end window: the
    reward and zero_adv_frac intervals are as wide as a numpy bootstrap of prompts (their samples, their
    groups over the window's steps), within 20 % (the median of the ratio over 4 pairs). Resampling (step,
    group) units gave 0.4-0.5x. The prompt is its text where written (group ids then per step), else its
    group id, the same at every step."""
    ratios: dict[str, list[float]] = {"reward": [], "zero_adv_frac": []}
    key = "prompt" if prompt_text else "group_id"
    for pair in range(4):
        a = _write_recurring(tmp_path / f"a{pair}", zlib.crc32(f"a{pair}".encode()), prompt_text)
        b = _write_recurring(tmp_path / f"b{pair}", zlib.crc32(f"b{pair}".encode()), prompt_text)
        d = diff_runs([open_run(a), open_run(b)], ["a", "b"], DiffOptions(window=10, boot=2000))
        pa_, pb = _prompts(a, key, END), _prompts(b, key, END)
        reward = _end(d, "reward")
        truth = pb[0].sum() / pb[1].sum() - pa_[0].sum() / pa_[1].sum()
        assert reward["diff"] == pytest.approx(truth, abs=1e-12)
        assert reward["n"] == reward["baseline_n"] == 10 * DRAWN * GROUP  # still samples
        want = _prompt_boot(pa_[:2], pb[:2], 4000, pair)
        ratios["reward"].append((reward["ci_high"] - reward["ci_low"]) / want)
        zero = _end(d, "zero_adv_frac")
        assert zero["n"] == zero["baseline_n"] == 10 * DRAWN  # still (step, prompt) groups
        want = _prompt_boot((pa_[3], pa_[2]), (pb[3], pb[2]), 4000, pair)
        ratios["zero_adv_frac"].append((zero["ci_high"] - zero["ci_low"]) / want)
    for metric, got in ratios.items():
        assert 0.8 < float(np.median(got)) < 1.2, (metric, got)


def test_units_are_tied_by_a_group_or_a_prompt_transitively() -> None:
    """Samples 0-1 are one group of step 1 (its prompt known for sample 1 only), sample 2 has that prompt at
    step 2 in another group with sample 3; sample 4 has a group of its own, sample 5 neither."""
    from runlog.analysis.diff.sides import clusters

    group = np.array([0, 0, 1, 1, 2, -1])
    prompt = np.array([-1, 7, 7, -1, 3, -1])
    assert clusters(group, prompt).tolist() == [0, 0, 0, 0, 1, 2]
    # A chain: each group shares a prompt with the next one only.
    chain = clusters(np.array([0, 0, 1, 1, 2, 2, 3]), np.array([5, 6, 6, 7, 7, 8, 9]))
    assert chain.tolist() == [0, 0, 0, 0, 0, 0, 1]


def _write_plain(path: Path, seed: int, groups: bool) -> Path:
    """16 prompts per step, 8 binary rewards each; group ids written or not, never the prompt text."""
    rng = np.random.default_rng(seed)
    with runlog.RunWriter(path, name=path.name, durable=False, clock=lambda: 1.7e9) as w:
        for s in range(12):
            rows = []
            for g in range(16):
                rate = rng.beta(0.5, 0.5)
                for x in rng.random(8) < rate:
                    rows.append({"reward": float(x), **({"group_id": f"s{s}-g{g}"} if groups else {})})
            w.log_samples(s, rows, split="train")
    return path


NOTE = (
    "a and b in split train: no prompt groups known (no group_id, no prompt text): the intervals take their "
    "samples as independent"
)


def test_without_any_prompt_group_a_note_says_the_samples_are_taken_as_independent(tmp_path: Path, cli) -> None:  # noqa: ANN001
    """The interval of runs without group ids or prompt text takes samples as independent (too narrow if they
    share prompts): said with the verdicts, in the JSON, and by a diff answered from its kept windows."""
    a, b = _write_plain(tmp_path / "a", 1, False), _write_plain(tmp_path / "b", 2, False)
    past = time.time() - 3600  # files written seconds ago are not kept (a writer may be at work on them)
    for f in tmp_path.rglob("*"):
        os.utime(f, (past, past))
    r = cli("diff", a, b, "--name", "a", "--name", "b")
    assert r.exit_code == 0, r.stderr
    assert f"note: {NOTE}" in r.stderr
    r = cli("diff", a, b, "--name", "a", "--name", "b", "-f", "json")  # the kept windows (the cache is on)
    assert r.exit_code == 0, r.stderr
    notes = json.loads(r.stdout)["notes"]
    assert [n for n in notes if "no prompt groups known" in n] == [next(n for n in notes if n.startswith(NOTE))]
    # Grouped runs, and a grouped baseline beside an ungrouped run: the note names only the latter.
    c, e = _write_plain(tmp_path / "c", 3, True), _write_plain(tmp_path / "e", 4, True)
    d = diff_runs([open_run(c), open_run(e)], ["c", "e"], DiffOptions(window=5))
    assert not [n for n in d.notes if "no prompt groups known" in n]
    d = diff_runs([open_run(c), open_run(a)], ["c", "a"], DiffOptions(window=5))
    assert [n for n in d.notes if "no prompt groups known" in n] == [
        "a in split train: no prompt groups known (no group_id, no prompt text): the intervals take its samples "
        "as independent (and the onset the samples' SE); if samples share prompts (a GRPO group), the intervals "
        "are too narrow, and a tie can read as ahead or behind"
    ]


def _write_case(path: Path, case: str, seed: int, steps: int = 12, groups: int = 6, k: int = 4) -> Path:
    """A GRPO run of ``groups`` prompts a step out of 40, ``k`` samples each: every sample's prompt one shared
    instruction (``const``: group ids unique per step), or no prompt text and group ids that count the step's
    groups (``counter``: ``g0..g5`` at every step)."""
    rng = np.random.default_rng(seed)
    difficulty = np.random.default_rng(123).uniform(0.05, 0.95, 40)
    with runlog.RunWriter(path, name=path.name, durable=False) as w:
        for s in range(steps):
            rows: dict[str, list] = {"reward": [], "group_id": [], "prompt": []}
            for gi, p in enumerate(rng.choice(40, groups, replace=False)):
                for _ in range(k):
                    rows["reward"].append(float(rng.random() < difficulty[p]))
                    rows["group_id"].append(f"s{s}-g{gi}" if case == "const" else f"g{gi}")
                    rows["prompt"].append("Solve the task below.")
            if case == "counter":
                del rows["prompt"]
            w.log_samples(s, rows)
    return path


@pytest.mark.parametrize("case", ["const", "counter"])
def test_a_shared_instruction_or_counted_group_ids_are_not_one_prompt(tmp_path: Path, case: str) -> None:
    """A review of the change above: one instruction in every sample's prompt tied every group of the window into
    one unit (no interval, no verdict, no note), and ids ``g0..g5`` at every step made 6 units of 72 groups (an
    interval too narrow). Neither is a prompt's identity: the units are the step's groups, one per (step, id)."""
    a, b = (_write_case(tmp_path / f"{case}_{i}", case, seed=i) for i in (1, 2))
    end = _end(diff_runs([open_run(a), open_run(b)], ["a", "b"], DiffOptions(window=10, boot=400)), "reward")
    assert end["ci_low"] is not None and end["ci_high"] is not None and end["verdict"] is not None
    from runlog.analysis.diff.sides import RoleRows

    steps = np.repeat(np.arange(3), 4)
    group = np.arange(12) // 2  # two samples a group, two groups a step
    counters = RoleRows(steps, {}, group, np.tile([0, 0, 1, 1], 3), np.zeros(12, dtype=bool))
    assert (counters.ties(np.ones(12, dtype=bool)) == -1).all()  # g0, g1 at every step: counters
    shared = RoleRows(steps, {}, group, np.zeros(12, dtype=np.int64), np.ones(12, dtype=bool))
    assert (shared.ties(np.ones(12, dtype=bool)) == -1).all()  # one text in two groups of a step: no identity
    recurring = RoleRows(steps, {}, group, np.array([0, 0, 1, 1, 1, 1, 2, 2, 0, 0, 2, 2]), np.ones(12, dtype=bool))
    assert (recurring.ties(np.ones(12, dtype=bool)) >= 0).all()  # texts drawn again at other steps: prompts
