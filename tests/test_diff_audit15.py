"""Audit a15 (reaudit14): what ``runlog diff`` takes for a prompt's identity when it bootstraps over prompts and
pairs them, and a step beyond int64.

- F1: one instruction as every sample's prompt text hid the group ids that do name the prompts (the text's key
  won): the units became (step, group), 0.63x as wide (a fifth of null comparisons called ahead or behind).
  The shared text's samples now fall back on their group ids.
- F1b: a prompt drawn twice at one step (sampling with replacement) was taken for an instruction and untied at
  every step. A text is no prompt's identity only where it is in at least half of its step's groups.
- F2: per-step counters ``g0..g7`` were paired across runs as the same prompt, and nothing said the units had
  lost every identity across steps. Counters are not paired (with a note), and a note says the interval may be
  too narrow.
- F4: a ``uint64`` step of 2**63 + 5 made diff build a range of 2**63 steps (MemoryError, or killed).

Expectations come from the raw rows (numpy), or from the same data written without the text runlog must see
through: the units, and so the interval, are then the same."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import runlog
from runlog import open_run
from runlog.analysis.diff import DiffOptions, diff_runs

INSTRUCTION = "You are a helpful solver. Think step by step."
STEPS, DATASET, DRAWN, GROUP = 20, 40, 8, 8
END = list(range(10, 20))


def _draws(seed: int, dataset: int, replace: bool) -> list[tuple[int, int, list[float]]]:
    """(step, prompt index, its group's binary rewards): ``DRAWN`` prompts a step of the run's own ``dataset``
    (difficulty Beta(0.5, 0.5)), ``GROUP`` rewards each."""
    rng = np.random.default_rng(seed)
    rate = np.random.default_rng(seed + 777).beta(0.5, 0.5, dataset)
    return [
        (s, int(p), [float(x) for x in rng.random(GROUP) < rate[p]])
        for s in range(STEPS)
        for p in rng.choice(dataset, DRAWN, replace=replace)
    ]


def _write(path: Path, draws: list[tuple[int, int, list[float]]], scheme: str, tag: str = "") -> Path:
    """The draws as a run: ``ids`` (group id = the prompt's dataset index, no text), ``instr_ids`` (the same with
    one instruction as every prompt text), ``text`` (the prompt's text, a group id unique to the group),
    ``counters`` (group ids ``g0..g7`` at every step, no text), ``instr_uuid`` (the instruction, unique group
    ids). ``tag`` names the dataset (runs of other datasets have other prompts)."""
    with runlog.RunWriter(path, name=path.name, durable=False, clock=lambda: 1.7e9) as w:
        for s in range(STEPS):
            rows = []
            for j, (_, p, rewards) in enumerate(d for d in draws if d[0] == s):
                for r in rewards:
                    row: dict[str, object] = {"reward": r}
                    if scheme in ("ids", "instr_ids"):
                        row["group_id"] = f"q{tag}{p}"
                    elif scheme == "counters":
                        row["group_id"] = f"g{j}"
                    else:
                        row["group_id"] = f"s{s}-{j}"
                    if scheme.startswith("instr"):
                        row["prompt"] = INSTRUCTION
                    elif scheme == "text":
                        row["prompt"] = f"Question {tag}{p}: what is {p}*7?"
                    rows.append(row)
            w.log_samples(s, rows, split="train")
    return path


def _end(d, metric: str = "reward") -> dict:
    return next(r for r in d.points.to_dicts() if r["metric"] == metric and r["point"] == "end")


def _prompt_boot_width(a: list, b: list, steps: list[int], boot: int = 4000) -> float:
    """The width of a 95 % percentile bootstrap of mean(b) - mean(a) over ``steps``, prompts (dataset index, over
    the steps) resampled: the truth the units should give."""
    rng = np.random.default_rng(0)

    def per_prompt(draws: list) -> tuple[np.ndarray, np.ndarray]:
        sums: dict[int, list[float]] = {}
        for s, p, rewards in draws:
            if s in steps:
                sums.setdefault(p, [0.0, 0.0])
                sums[p][0] += sum(rewards)
                sums[p][1] += len(rewards)
        v = np.array(list(sums.values()))
        return v[:, 0], v[:, 1]

    (sa, na), (sb, nb) = per_prompt(a), per_prompt(b)
    ia, ib = rng.integers(0, len(sa), (boot, len(sa))), rng.integers(0, len(sb), (boot, len(sb)))
    d = sb[ib].sum(1) / nb[ib].sum(1) - sa[ia].sum(1) / na[ia].sum(1)
    lo, hi = np.quantile(d, [0.025, 0.975])
    return float(hi - lo)


def test_a_shared_instruction_falls_back_on_the_group_ids_that_name_the_prompts(tmp_path: Path) -> None:
    """F1: the same draws with and without an instruction as the prompt text give the same end interval (the
    units are the prompts their ids name), as wide as a bootstrap of prompts; before, 0.63x as wide."""
    a, b = _draws(11, DATASET, False), _draws(12, DATASET, False)
    out = {}
    for scheme in ("ids", "instr_ids"):
        runs = [open_run(_write(tmp_path / f"{scheme}_{i}", d, scheme, tag=str(i))) for i, d in ((1, a), (2, b))]
        out[scheme] = _end(diff_runs(runs, ["a", "b"], DiffOptions(window=10, boot=2000)))
    ids, instr = out["ids"], out["instr_ids"]
    assert (instr["ci_low"], instr["ci_high"]) == pytest.approx((ids["ci_low"], ids["ci_high"]), abs=1e-12)
    truth = _prompt_boot_width(a, b, END)
    assert 0.85 < (instr["ci_high"] - instr["ci_low"]) / truth < 1.15


def test_a_prompt_drawn_twice_in_a_step_keeps_its_ties(tmp_path: Path) -> None:
    """F1b: 8 draws a step with replacement from 20 prompts (a prompt in two groups of a step, now and then):
    keyed by text with a group id per group, the units are the prompts, as when the same draws are keyed by
    dataset index (an interval as wide); before, the repeated texts were untied at every step (0.66x as wide)."""
    a, b = _draws(21, 20, True), _draws(22, 20, True)
    assert any(len({p for s2, p, _ in a if s2 == s}) < DRAWN for s in END)  # a repeat in the end window
    out = {}
    for scheme in ("ids", "text"):
        runs = [open_run(_write(tmp_path / f"{scheme}_{i}", d, scheme, tag=str(i))) for i, d in ((1, a), (2, b))]
        out[scheme] = _end(diff_runs(runs, ["a", "b"], DiffOptions(window=10, boot=2000)))
    # The same units; the replicates differ by Monte-Carlo noise (the groups, and so zero_adv_frac's column drawn
    # from the same stream, are not the same).
    width = {k: v["ci_high"] - v["ci_low"] for k, v in out.items()}
    assert 0.95 < width["text"] / width["ids"] < 1.05
    truth = _prompt_boot_width(a, b, END)
    assert 0.85 < (out["text"]["ci_high"] - out["text"]["ci_low"]) / truth < 1.15


def test_shared_texts_are_decided_step_by_step() -> None:
    """A text is no prompt's identity where it is in two groups of a step or more and in more than half of them;
    elsewhere (fewer groups, other steps) it ties as a prompt; its samples then fall back on their group ids."""
    from runlog.analysis.diff.sides import RoleRows, shared_texts

    step = np.repeat([0, 1, 2], 8)  # 8 groups a step, one sample each
    group = np.arange(24)
    text = np.array([0, 0, 1, 2, 3, 4, 5, 6] + [0, 7, 8, 9, 10, 11, 12, 13] + [14] * 8)
    shared = shared_texts(step, group, text)
    assert not shared[:16].any()  # text 0: two of 8 groups at step 0 (a repeat), one at step 1
    assert shared[16:].all()  # text 14: every group of step 2 (an instruction)
    half = shared_texts(step, group, np.array([0] * 4 + [1] * 4 + [2] * 5 + list(range(3, 6)) + [6] * 8))
    assert not half[:8].any() and half[8:13].all() and not half[13:16].any() and half[16:].all()
    ident = np.arange(24) + 100
    rows = RoleRows(step, {}, group, text, np.ones(24, dtype=bool), ident)
    keys, dropped = rows.identity(np.ones(24, dtype=bool))
    assert dropped == {"text"}
    assert list(keys[:16]) == list(text[:16]) and list(keys[16:]) == list(ident[16:])
    assert keys[0] == keys[1] == keys[8]  # the repeated text ties its groups, and across steps


def _note(notes: list[str], words: str) -> list[str]:
    return [n for n in notes if words in n]


def test_counters_are_not_paired_and_the_lost_identity_is_said(tmp_path: Path, cli) -> None:
    """F2: group ids g0..g7 at every step (no text), each run its own dataset: no prompt is shared, and none is
    paired (before: 80 pairs, a paired verdict); a note says the units lost every identity across steps, as does
    an instruction with group ids unique to a group. Ids naming the dataset's prompts are paired, as many as the
    (step, prompt) pairs both runs drew, and get neither note."""
    a, b = _draws(31, DATASET, False), _draws(32, DATASET, False)
    runs = [open_run(_write(tmp_path / f"c{i}", d, "counters", tag=str(i))) for i, d in ((1, a), (2, b))]
    d = diff_runs(runs, ["a", "b"], DiffOptions(window=10, boot=500))
    assert d.paired.height == 0
    assert len(_note(d.notes, "are the same at every step, as counters g0..g7")) == 1
    # A review: "no prompt in common (same prompt text or group id)" was said too, false (every id is shared).
    assert _note(d.notes, "no prompt in common") == []
    [lost] = _note(d.notes, "no prompt known across steps")
    assert "too wide where both evaluate one fixed set" in lost
    assert lost.startswith("a and b in split train: no prompt known across steps (group ids the same at every")
    # The kept windows (the cache is on) say it too.
    past = time.time() - 3600  # files written seconds ago are not kept (a writer may be at work on them)
    for f in tmp_path.rglob("*"):
        os.utime(f, (past, past))
    r = cli("diff", str(tmp_path / "c1"), str(tmp_path / "c2"), "--name", "a", "--name", "b", "-f", "json")
    kept = list(Path(os.environ["RUNLOG_CACHE_DIR"]).rglob("window-*.arrow"))
    assert len(kept) == 2
    r = cli("diff", str(tmp_path / "c1"), str(tmp_path / "c2"), "--name", "a", "--name", "b", "-f", "json")
    assert r.exit_code == 0, r.stderr
    assert sorted(kept) == sorted(Path(os.environ["RUNLOG_CACHE_DIR"]).rglob("window-*.arrow"))
    out = json.loads(r.stdout)
    assert out["paired"] == [] and _note(out["notes"], "no prompt known across steps") == [lost]

    runs = [open_run(_write(tmp_path / f"u{i}", d, "instr_uuid", tag=str(i))) for i, d in ((1, a), (2, b))]
    notes = diff_runs(runs, ["a", "b"], DiffOptions(window=10, boot=500)).notes
    [lost] = _note(notes, "no prompt known across steps")
    assert "a prompt text shared by the groups of a step" in lost

    # One dataset for both runs, named by ids, with and without the instruction: paired by the ids.
    a, b = _draws(41, DATASET, False), _draws(41 + 1000, DATASET, False)
    b = [(s, p, r) for (s, p, _), (_, _, r) in zip(a[::-1], b, strict=True)]  # other draws of the same prompts
    b = sorted(b, key=lambda x: x[0])
    both = len({(s, p) for s, p, _ in a if s in END} & {(s, p) for s, p, _ in b if s in END})
    assert both > 0
    for scheme in ("ids", "instr_ids"):
        runs = [open_run(_write(tmp_path / f"{scheme}{i}", d, scheme)) for i, d in ((1, a), (2, b))]
        d = diff_runs(runs, ["a", "b"], DiffOptions(window=10, boot=500))
        assert d.paired["prompts"].to_list() == [both]
        assert not _note(d.notes, "no prompt known across steps") and not _note(d.notes, "counters g0..g7")


def test_counters_test_spares_a_dataset_drawn_in_part() -> None:
    """The counter test: ids held whole by at least half the steps (a step that lost a group aside) are counters;
    ids of a dataset of 10 drawn 8 at a time are not."""
    from runlog.analysis.diff.sides import counters

    step = np.repeat(np.arange(4), 8)
    assert counters(step, np.tile(np.arange(8), 4))
    lost = np.tile(np.arange(8), 4)
    lost[7] = 0  # step 0 without g7 (g0 twice)
    assert counters(step, lost)
    rng = np.random.default_rng(0)
    assert not counters(step, np.concatenate([rng.choice(10, 8, replace=False) for _ in range(4)]))
    assert not counters(np.zeros(8, dtype=int), np.arange(8))  # one step: nothing to tell


def _write_uint64(path: Path) -> Path:
    """A native run whose last file's ``uint64`` step column holds 2**63 + 5 (what no writer can log)."""
    (path / "samples" / "train").mkdir(parents=True)
    manifest = {"format": "runlog", "schema_version": 2, "run_id": "n", "name": "n", "created": "2026-01-01T00:00:00Z"}
    (path / "run.json").write_text(json.dumps(manifest))
    for s in range(9):
        t = pa.table(
            {
                "schema_version": pa.array([2] * 4, pa.int32()),
                "step": pa.array([2**63 + 5 if s == 8 else s] * 4, pa.uint64()),
                "split": pa.array(["train"] * 4),
                "sample_id": pa.array([f"{s}-{i}" for i in range(4)]),
                "reward": pa.array([float(s)] * 4),
            }
        )
        t = t.replace_schema_metadata({"runlog.schema_version": "2"})
        pq.write_table(t, path / "samples" / "train" / f"step_{s:08d}.p0.parquet")
    return path


def test_a_step_beyond_int64_is_left_out_with_a_note(tmp_path: Path, cli) -> None:
    """F4: the step 2**63 + 5 (from the file's footer; its rows read with a null step) is left out of the
    alignment, with a note naming the file; no range is built up to it (before: MemoryError, or killed)."""
    from runlog.analysis.diff.align import steps_of
    from runlog.analysis.filters import StepRange
    from runlog.errors import UsageError

    run = _write_uint64(tmp_path / "r")
    assert steps_of(open_run(run), DiffOptions()) == {"train": list(range(8))}
    with pytest.raises(UsageError, match=r"no run has a step there \(n: 0\.\.7 \(train\)"):
        diff_runs([open_run(run), open_run(run)], options=DiffOptions(steps=StepRange.parse("20:30")))
    r = cli("diff", str(run), str(run), "-f", "json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert {o["steps"] for o in out["overlap"]} == {"0..7"}
    assert len(_note(out["notes"], "9223372036854775813 of samples/train/step_00000008.p0.parquet beyond the")) == 2
    end = next(p for p in out["points"] if p["metric"] == "reward" and p["point"] == "end")
    assert end["baseline"] == pytest.approx(3.5) and end["baseline_n"] == 32  # steps 0..7, 4 rows each
