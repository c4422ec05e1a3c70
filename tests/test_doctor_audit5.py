"""``runlog doctor``: the fifth audit's findings (a role's NaN hidden behind the total's, NaN of one sample read
as several, gaps with a stride, another split's gaps, reward hacking after a component-only format drift and
on ordinary learning curves, a solved reward with one earlier outlier, an infinite total reward, a copied
shard, the earlier level of a KL ramp, what "persist" means for exception spikes, the --fail-on summary).

Runs are written with the real ``RunWriter`` (40 steps, 8 prompt groups of 4 samples, roles solver and judge,
the total reward the sum of the roles'); every expected number is counted here from the values written (numpy)
or from the files (pyarrow), never with runlog's own helpers.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from runlog import RunWriter, open_run
from runlog.analysis.doctor import DoctorConfig, diagnose

ROLES = ("solver", "judge")
STEPS = 40
GROUPS = 8
GSIZE = 4
WORDS = tuple(
    [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "zeta",
        "eta",
        "theta",
        "iota",
        "kappa",
        "lambda",
        "mu",
        "nu",
        "xi",
        "omicron",
        "pi",
        "rho",
        "sigma",
        "tau",
    ]
)

Row = dict[str, Any]


def text(rng: np.random.Generator, *, fmt: bool = True, n: int = 20) -> str:
    body = " ".join(rng.choice(WORDS, size=n))
    return f"<think>{body}</think>\n<answer>{rng.integers(0, 100)}</answer>" if fmt else body


def write_run(
    path: Path,
    *,
    reward: Callable[[int, str, np.random.Generator], float] | None = None,
    kl: Callable[[int, str, np.random.Generator], float] | None = None,
    completion: Callable[[int, int, np.random.Generator], str | None] | None = None,
    components: Callable[[int, np.random.Generator], dict[str, float]] | None = None,
    row_fn: Callable[[int, int, Row], Row | None] | None = None,
    steps: list[int] | range = range(STEPS),
    split: str = "train",
    writer: RunWriter | None = None,
    seed: int = 0,
) -> list[Row]:
    """Write ``steps`` of one split; returns every row written (after ``row_fn``), each with its ``step``."""
    rng = np.random.default_rng(seed)
    reward = reward or (lambda st, r, rng: float(rng.normal(0.2 + 0.01 * st, 0.2)))
    kl = kl or (lambda st, r, rng: float(abs(rng.normal(0.001 * (st + 1), 0.0005))))
    completion = completion or (lambda st, i, rng: text(rng))
    components = components or (lambda st, rng: {"correct": float(rng.integers(0, 2))})
    own = writer is None
    w = writer or RunWriter(path, name=path.name, roles=list(ROLES), durable=False, clock=lambda: 1.7e9)
    written: list[Row] = []
    for st in steps:
        rows = []
        for i in range(GROUPS * GSIZE):
            rr = {r: reward(st, r, rng) for r in ROLES}
            row: Row | None = {
                "group_id": f"{split}-{st}-g{i // GSIZE}",
                "prompt": f"prompt {i // GSIZE} at {st}",
                "completion": completion(st, i, rng),
                "roles": [{"role": r, "reward": rr[r], "kl": kl(st, r, rng)} for r in ROLES],
                "reward": float(sum(rr.values())),
                "reward_components": components(st, rng),
            }
            if row_fn is not None:
                row = row_fn(st, i, row)
            if row is not None:
                rows.append(row)
        w.log_samples(st, rows, split=split)
        written += [{**r, "step": st} for r in rows]
    if own:
        w.close()
    return written


def role_rewards(rows: list[Row], role: str) -> np.ndarray:
    return np.array([x["reward"] for r in rows for x in r.get("roles") or [] if x["role"] == role], dtype=float)


def findings(path: Path, config: DoctorConfig | None = None, kind: str | None = None) -> list[Any]:
    found = diagnose(open_run(path), config).findings
    return [f for f in found if kind is None or f.kind == kind]


# 1. A role's NaN is not hidden behind the total's


def test_a_roles_nan_in_other_samples_than_the_totals_is_reported_with_its_own_share(tmp_path: Path) -> None:
    """Every solver reward of steps 10-12 NaN, the total only in one sample of each of those steps: the same
    steps, not the same samples. The solver's 96 NaN (7.5 %: an error) were hidden behind the total's 3."""

    def nan_rows(st: int, i: int, row: Row) -> Row:
        if st in (10, 11, 12):
            row["roles"][0]["reward"] = math.nan
            if i == 0:
                row["reward"] = math.nan
        return row

    rows = write_run(tmp_path / "run", row_fn=nan_rows)
    solver = role_rewards(rows, "solver")
    totals = np.array([r["reward"] for r in rows], dtype=float)
    solver_nan, total_nan = int(np.isnan(solver).sum()), int(np.isnan(totals).sum())
    assert (solver_nan, total_nan) == (96, 3)
    nan = findings(tmp_path / "run", kind="nan_rewards")
    by_role = {f.role: f for f in nan}
    assert set(by_role) == {"solver", None}
    s = by_role["solver"]
    assert s.evidence["nan"] == solver_nan and s.evidence["share"] == solver_nan / len(solver)
    assert s.severity == "error" and s.onset_step == 10 and s.evidence["steps"] == [10, 11, 12]
    assert s.message.startswith("96 NaN rewards of role solver (7.5%) in 3 step(s), first at step 10")
    # the 3 samples whose total is NaN are among the solver's: said, so that 96 + 3 is not read as 99
    both = int(sum(1 for r in rows if math.isnan(r["reward"]) and math.isnan(r["roles"][0]["reward"])))
    assert s.evidence["nan_total_too"] == both == 3
    assert "3 of them in samples whose total reward is NaN too (among the 3 NaN total rewards)" in s.message
    t = by_role[None]
    assert t.evidence["nan"] == total_nan and t.severity == "warning" and t.evidence["subject"] == "total"


def test_a_roles_nan_in_the_same_samples_as_the_totals_is_reported_once(tmp_path: Path) -> None:
    """The solver's reward and the total NaN in the same samples (one failed reward computation): one finding,
    the total's, naming the solver in its evidence."""

    def nan_rows(st: int, i: int, row: Row) -> Row:
        if st in (10, 11) and i < (3 if st == 10 else 2):
            row["roles"][0]["reward"] = row["reward"] = math.nan
        return row

    rows = write_run(tmp_path / "run", row_fn=nan_rows)
    [f] = findings(tmp_path / "run", kind="nan_rewards")
    assert f.role is None and f.evidence["nan"] == int(np.isnan([r["reward"] for r in rows]).sum()) == 5
    assert f.evidence["same_samples"] == ["solver"]


def test_the_same_nan_of_rows_without_roles_and_of_a_role_is_said_as_part_of_the_totals(tmp_path: Path) -> None:
    """A run mixing rows with per-role data and rows without (their reward is the total): one NaN in a row
    without roles (step 4), one solver NaN whose total is NaN too (step 16). Three findings, as before, but
    the two partial ones say they are among the total's 2, so that the three do not read as 4 NaN."""

    def mixed(st: int, i: int, row: Row) -> Row:
        if st < 8 and i >= 16:
            del row["roles"]  # no per-role data: the null role, whose reward is the total
            if st == 4 and i == 16:
                row["reward"] = math.nan
        if st == 16 and i == 0:
            row["roles"][0]["reward"] = row["reward"] = math.nan
        return row

    rows = write_run(tmp_path / "run", row_fn=mixed)
    totals = np.array([r["reward"] for r in rows], dtype=float)
    without = np.array([r["reward"] for r in rows if "roles" not in r], dtype=float)
    assert int(np.isnan(totals).sum()) == 2 and int(np.isnan(without).sum()) == 1
    nan = findings(tmp_path / "run", kind="nan_rewards")
    by = {(f.role, f.evidence.get("subject")): f for f in nan}
    assert set(by) == {(None, "total"), (None, None), ("solver", None)}
    assert by[(None, "total")].evidence["nan"] == 2
    assert by[(None, None)].evidence["nan"] == 1 and by[(None, None)].onset_step == 4
    assert "their reward is their total: these are 1 of the 2 NaN total rewards" in by[(None, None)].message
    assert by[("solver", None)].evidence["nan"] == 1 and by[("solver", None)].onset_step == 16
    assert "1 of them in samples whose total reward is NaN too (among the 2 NaN total rewards)" in (
        by[("solver", None)].message
    )


# 2. and 3. Step gaps: the count with a stride, and only the split diagnosed


def test_missing_steps_are_counted_with_the_stride(tmp_path: Path) -> None:
    steps = [s for s in range(0, 80, 2) if s not in (20, 50, 52, 54)]
    write_run(tmp_path / "run", steps=steps)
    missing = sorted(set(range(min(steps), max(steps) + 1, 2)) - set(steps))
    [f] = findings(tmp_path / "run", kind="step_gaps")
    assert f.evidence["missing"] == len(missing) == 4
    assert f.message == "split train: 4 step(s) missing (20, 50-54 every 2)"
    assert f.onset_step == 20


def test_the_gaps_of_another_split_are_not_the_split_diagnosed(tmp_path: Path, cli) -> None:
    """Train: 40 steps, no gap. Eval: every 2 steps, step 20 missing. The doctor on train (the default) said
    'split eval: 0 step(s) missing (20)' and exited 1."""
    with RunWriter(tmp_path / "run", name="run", roles=list(ROLES), durable=False, clock=lambda: 1.7e9) as w:
        write_run(tmp_path / "run", writer=w)
        write_run(tmp_path / "run", writer=w, split="eval", steps=[s for s in range(0, 40, 2) if s != 20], seed=1)
    assert not findings(tmp_path / "run", kind="step_gaps")
    res = cli("doctor", tmp_path / "run", "--format", "json")
    assert res.exit_code == 0, res.output
    assert [f["kind"] for f in json.loads(res.stdout)["findings"]] == []
    [f] = findings(tmp_path / "run", DoctorConfig(split="eval"), kind="step_gaps")
    assert f.message == "split eval: 1 step(s) missing (20)" and f.evidence["missing"] == 1


# 4. and 5. Reward hacking


def test_a_component_only_format_drift_is_checked_for_reward_hacking(tmp_path: Path) -> None:
    """No texts; the 'format' component 1.0 for every sample until step 19, 0.0 from step 20; each role's
    reward +0.3 from step 20 (the total +0.6, about 2 within-step SDs) on a flat curve: hacking."""
    write_run(
        tmp_path / "run",
        reward=lambda st, r, rng: float(rng.normal(0.5 + (0.3 if st >= 20 else 0), 0.2)),
        completion=lambda st, i, rng: None,
        components=lambda st, rng: {"format": 0.0 if st >= 20 else 1.0, "correct": float(rng.random() < 0.5)},
    )
    found = findings(tmp_path / "run")
    kinds = {f.kind: f for f in found}
    assert kinds["format_drift"].onset_step == 20
    hack = kinds["reward_hacking"]
    assert hack.severity == "error" and hack.onset_step == 20
    assert hack.evidence["component"] == [1.0, 0.0]
    assert "reward component 'format' fell 1 -> 0" in hack.message
    assert 0.45 < hack.evidence["jump"] < 0.75  # +0.6 planted


def test_a_format_drop_on_a_rising_learning_curve_is_not_reward_hacking(tmp_path: Path) -> None:
    """Mean reward rising 0.01 per step per role, as in a healthy run; from step 20, 7 of 32 texts lose the
    format and the reward dips 0.025 per role there (the format loss is penalised). The median after step 20
    is far above the median before only because the curve rises: that was an error-level reward_hacking."""
    write_run(
        tmp_path / "run",
        reward=lambda st, r, rng: float(rng.normal(0.2 + 0.01 * st - (0.025 if st >= 20 else 0), 0.2)),
        completion=lambda st, i, rng: text(rng, fmt=not (st >= 20 and i < 7)),
    )
    kinds = [f.kind for f in findings(tmp_path / "run")]
    assert kinds == ["format_drift"], kinds


def test_a_length_change_on_a_rising_learning_curve_is_not_reward_hacking(tmp_path: Path) -> None:
    """The same rising curve; from step 25 the completions are 3 words long instead of ~25 (no effect on the
    reward). A length change alone, with the reward on its trend, is not hacking; the same length change with
    the reward stepping up 0.25 per role at step 25 is."""
    short = lambda st, i, rng: f"<think>x</think>\n<answer>{i}</answer>" if st >= 25 else text(rng)  # noqa: E731
    write_run(tmp_path / "learn", completion=short)
    assert not findings(tmp_path / "learn", kind="reward_hacking")
    write_run(
        tmp_path / "hack",
        completion=short,
        reward=lambda st, r, rng: float(rng.normal(0.2 + 0.01 * st + (0.25 if st >= 25 else 0), 0.2)),
    )
    [f] = findings(tmp_path / "hack", kind="reward_hacking")
    assert f.onset_step == 25 and "completion length went" in f.message
    assert 0.35 < f.evidence["jump"] < 0.65  # +0.5 planted on the total, over its trend


# 6. zero_advantage "solved" with one earlier outlier


def test_a_solved_reward_stays_solved_despite_one_earlier_outlier(tmp_path: Path) -> None:
    """Solver: a 0/1 reward whose step maximum is 1.0 in every step before 20 (once 1.2, one sample); from step
    20 every solver reward is 1.0. The usual best is 1.0 (the step maximum in at least half of the steps before),
    not the 1.2 seen once: info, exit 0."""

    def solver(st: int, r: str, rng: np.random.Generator) -> float:
        if r == "judge":
            return float(rng.normal(0.5, 0.2))
        return 1.0 if st >= 20 else float(rng.random() < 0.5)

    def outlier(st: int, i: int, row: Row) -> Row:
        if st < 20 and i % GSIZE == 0:
            row["roles"][0]["reward"] = 1.0  # 1.0 reached in every earlier step
        if st == 3 and i == 5:
            row["roles"][0]["reward"] = 1.2
        row["reward"] = sum(x["reward"] for x in row["roles"])
        return row

    rows = write_run(tmp_path / "run", reward=solver, row_fn=outlier)
    maxima = [max(x["reward"] for r in rows if r["step"] == st for x in r["roles"][:1]) for st in range(20)]
    assert Counter(maxima) == Counter({1.0: 19, 1.2: 1})
    [f] = findings(tmp_path / "run", kind="zero_advantage")
    assert (f.role, f.onset_step, f.severity) == ("solver", 20, "info")
    assert "usual best reward 1" in f.message and f.evidence["solved"] is True


# 7. An infinite total reward


def test_an_infinite_total_reward_with_finite_roles_is_an_error(tmp_path: Path, cli) -> None:
    def inf(st: int, i: int, row: Row) -> Row:
        if st == 17 and i == 0:
            row["reward"] = math.inf
        return row

    rows = write_run(tmp_path / "run", row_fn=inf)
    assert [r["step"] for r in rows if math.isinf(r["reward"])] == [17]
    assert not any(math.isinf(x) for x in role_rewards(rows, "solver")) and not any(
        math.isinf(x) for x in role_rewards(rows, "judge")
    )
    [f] = findings(tmp_path / "run", kind="inf_rewards")
    assert (f.role, f.onset_step, f.severity, f.evidence["subject"]) == (None, 17, "error", "total")
    assert f.evidence["steps"] == [17]
    assert cli("doctor", tmp_path / "run").exit_code == 1


def test_an_infinite_role_reward_is_reported_once_as_the_roles(tmp_path: Path) -> None:
    """A solver reward of inf makes the total inf in the same sample: one finding, the solver's."""

    def inf(st: int, i: int, row: Row) -> Row:
        if st == 17 and i == 0:
            row["roles"][0]["reward"] = row["reward"] = math.inf
        return row

    write_run(tmp_path / "run", row_fn=inf)
    [f] = findings(tmp_path / "run", kind="inf_rewards")
    assert (f.role, f.onset_step) == ("solver", 17)


# 8. A copied shard


def test_a_copied_shard_is_reported_with_its_step_files_and_count(tmp_path: Path, cli) -> None:
    root = tmp_path / "run"
    write_run(root)
    shard = root / "samples" / "train" / "step_00000005.p0.parquet"
    assert shard.exists()
    shutil.copy(shard, shard.with_name("step_00000005.p1.parquet"))
    ids: Counter[tuple[int, str]] = Counter()
    for f in sorted((root / "samples" / "train").glob("*.parquet")):
        t = pq.read_table(f, columns=["step", "sample_id"]).to_pydict()
        ids.update(zip(t["step"], t["sample_id"], strict=True))
    repeated = {k: n for k, n in ids.items() if n > 1}
    assert len(repeated) == 32 and {st for st, _ in repeated} == {5}
    [f] = [f for f in findings(root, kind="data_problem") if f.evidence.get("problem_kind") == "repeated_sample_ids"]
    assert f.severity == "warning" and f.onset_step == 5
    assert f.evidence["count"] == len(repeated) and f.evidence["extra_rows"] == sum(repeated.values()) - len(repeated)
    assert f.evidence["steps"] == [5]
    assert f.evidence["files"] == ["samples/train/step_00000005.p0.parquet", "samples/train/step_00000005.p1.parquet"]
    assert "32 sample id(s) occur more than once within their step (32 extra row(s); step 5;" in f.message
    assert cli("doctor", root).exit_code == 1


def test_shards_of_one_step_with_their_own_ids_are_no_finding(tmp_path: Path) -> None:
    """Two processes writing halves of each step (distinct ids): nothing repeated, nothing reported."""
    root = tmp_path / "run"
    with RunWriter(root, name="run", roles=list(ROLES), durable=False, clock=lambda: 1.7e9, process_index=1) as w1:
        rows = write_run(root)
        for st in range(STEPS):
            part = [{k: v for k, v in r.items() if k != "step"} for r in rows if r["step"] == st][:4]
            w1.log_samples(st, part)
    assert len(list((root / "samples" / "train").glob("step_00000005.p*.parquet"))) == 2
    assert not [f for f in findings(root, kind="data_problem") if f.evidence.get("problem_kind")]


# 10. The KL ramp's earlier level and onset


def test_a_kl_ramp_is_measured_against_the_level_before_it(tmp_path: Path) -> None:
    """KL about 0.01 until step 19, then x1.5 per step from step 20. The earlier level was the 90th percentile
    of a least-squares segment that held the ramp's start (0.068, '36x'), the onset step 25."""
    write_run(
        tmp_path / "run",
        kl=lambda st, r, rng: float(abs(rng.normal(0.01, 0.001))) * (1.5 ** (st - 20) if st >= 20 else 1.0),
    )
    run = open_run(tmp_path / "run")
    table = pq.read_table(sorted((tmp_path / "run" / "samples" / "train").glob("*.parquet")), columns=None)
    steps = np.array(table.column("step").to_pylist())
    kls = table.column("roles").to_pylist()
    solver_kl = np.array([next(x["kl"] for x in k if x["role"] == "solver") for k in kls])
    means = np.array([solver_kl[steps == st].mean() for st in range(STEPS)])
    warmup = math.ceil(0.1 * STEPS)
    flat_p90 = float(np.percentile(means[warmup:20], 90))
    [f] = [f for f in diagnose(run).findings if f.kind == "kl_blowup" and f.role == "solver"]
    assert 20 <= f.onset_step <= 22, f.as_dict()
    # the level before the onset: the flat part's (the onset's own step at most is the ramp's first, 1.5x)
    assert flat_p90 * 0.95 <= f.evidence["kl_before_p90"] <= flat_p90 * 1.2, (f.evidence, flat_p90)
    assert f.evidence["ratio"] > 150


# 11. exception_spike: "persist" is to the end of the run


def test_exception_failures_that_stop_before_the_end_stay_a_warning_and_the_docs_say_so(tmp_path: Path) -> None:
    def failing(first: int) -> Callable[[int, int, Row], Row]:
        def f(st: int, i: int, row: Row) -> Row:
            if first <= st < first + 10 and i < 8:  # 8 of 32: 25 %
                row["exception"], row["reward"] = "RuntimeError: sandbox died", None
                for x in row["roles"]:
                    x["reward"] = None
            return row

        return f

    write_run(tmp_path / "mid", row_fn=failing(10))
    write_run(tmp_path / "end", row_fn=failing(30))
    [mid] = findings(tmp_path / "mid", kind="exception_spike")
    [end] = findings(tmp_path / "end", kind="exception_spike")
    assert (mid.severity, end.severity) == ("warning", "error")
    doc = (Path(__file__).resolve().parents[1] / "docs" / "doctor.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| `exception_spike`"))
    assert "to the end of the run" in row and "however long" in row


# 12. The --fail-on summary


def test_the_summary_line_follows_the_fail_on_threshold(tmp_path: Path, cli) -> None:
    write_run(tmp_path / "run", steps=[s for s in range(STEPS) if s != 20])  # one gap: a warning
    default = cli("doctor", tmp_path / "run")
    assert default.exit_code == 1 and "1 finding(s) of severity warning or worse" in default.stdout
    error = cli("doctor", tmp_path / "run", "--fail-on", "error")
    assert error.exit_code == 0
    assert "warning or worse" not in error.stdout
    assert "no finding of severity error (--fail-on error: exit 0); 1 warning(s)" in error.stdout
    never = cli("doctor", tmp_path / "run", "--fail-on", "never")
    assert never.exit_code == 0 and "--fail-on never: exit 0" in never.stdout


def test_samples_without_roles_are_not_called_the_run_without_learning_signal(tmp_path: Path) -> None:
    """A few samples without per-role data, in prompt groups whose other samples have roles: split off, each
    is a group of its own (equal rewards, trivially), so doctor once said "the run: from step 0 on, 100% of
    prompt groups have equal rewards" while the run's groups are one third zero-advantage (the independent
    count below). They are not judged for zero_advantage (a note says so and how many), and nothing about
    them is worded as the run."""
    rng = random.Random(3)
    roleless = {0, 6, 12, 18}
    zero = 0
    groups = 0
    with RunWriter(tmp_path / "r", roles=["a", "b"], durable=False, clock=lambda: 1.7e9) as w:
        for step in range(24):
            rows = []
            for g in range(3):
                flat = g == 0  # one group in three: every reward equal
                values = [0.5 if flat else rng.random() for _ in range(3)]
                zero += flat
                groups += 1
                for i, r in enumerate(values):
                    row: dict = {"group_id": f"{step}-{g}", "reward": r}
                    if not (step in roleless and g == 1 and i == 0):
                        row["roles"] = {"a": {"reward": r, "kl": 0.01}, "b": {"reward": r, "kl": 0.01}}
                    rows.append(row)
            w.log_samples(step, rows)
    d = diagnose(open_run(tmp_path / "r"))
    assert zero / groups == pytest.approx(1 / 3)
    assert not [f for f in d.findings if f.kind == "zero_advantage"], [f.message for f in d.findings]
    assert not [f for f in d.findings if "the run:" in f.message]
    assert any("4 sample(s) without per-role data (at 4 of 24 steps)" in n for n in d.notes), d.notes
