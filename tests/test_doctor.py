"""``runlog doctor``: each planted problem is found, for the right role, at the right step; a healthy run
gives nothing at all (several seeds); thresholds are configurable; the CLI's exit codes and JSON.

Runs are written with the real ``RunWriter``: a GRPO-like run of 40 steps, 4 prompt groups of 8 samples,
three roles whose rewards rise as they learn and whose KL creeps up from zero, with one problem planted
from step ``ONSET`` on.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from runlog import RunWriter, open_run
from runlog.analysis.doctor import DoctorConfig, diagnose
from runlog.errors import UsageError

ROLES = ("solver", "verifier", "judge")
STEPS = 40
ONSET = 22
GROUPS = 4
GROUP_SIZE = 8
WORDS = tuple(
    [
        "the",
        "of",
        "sum",
        "product",
        "carry",
        "digit",
        "add",
        "remainder",
        "check",
        "value",
        "result",
        "so",
        "then",
        "we",
        "first",
        "next",
        "total",
        "answer",
        "multiply",
        "divide",
        "term",
        "left",
        "right",
        "both",
        "side",
        "equal",
        "number",
        "prime",
        "factor",
        "even",
        "odd",
        "power",
        "base",
        "unit",
    ]
)

PLANTS = (
    "healthy",
    "kl_blowup",
    "reward_collapse",
    "zero_advantage",
    "diversity_collapse",
    "format_drift",
    "reward_hacking",
    "nan_rewards",
    "nan_kl",
    "exception_spike",
)


def completion(rng: random.Random, answer: str, *, tags: bool = True, pad: int = 0) -> str:
    think = " ".join(rng.choice(WORDS) for _ in range(rng.randint(22, 30) + pad))
    return f"<think>\n{think}\n</think>\n<answer>{answer}</answer>" if tags else f"{think} so {answer}"


def make_run(root: Path, plant: str = "healthy", seed: int = 0, hostile: str | None = None) -> Path:
    """Write a run with ``plant`` from step ONSET on (``healthy``: none). ``hostile`` text, when given,
    goes into prompts, completions, a role name-free field (env_name) and an exception."""
    rng = random.Random(f"{plant}-{seed}")
    path = root / f"{plant}-{seed}"
    with RunWriter(path, name=hostile or f"{plant}-{seed}", roles=ROLES, durable=False, clock=lambda: 1.7e9) as w:
        for step in range(STEPS):
            late = step >= ONSET
            # Learning: rewards rise and level off; "format_drift" plateaus earlier so that its drop is not
            # masked by learning (a format penalty lowers the total reward, as format rewards do).
            level = 0.3 + 0.45 * (1 - math.exp(-step / (6 if plant == "format_drift" else 12)))
            rows = []
            for g in range(GROUPS):
                prompt = f"Task {step}-{g}: compute {rng.randint(10, 99)} + {rng.randint(10, 99)}."
                if hostile:
                    prompt += " " + hostile
                one_answer = completion(rng, str(rng.randint(0, 200)))
                judge_level = min(1.0, max(0.0, level + rng.gauss(0, 0.1)))
                for i in range(GROUP_SIZE):
                    tags = not (plant in ("format_drift", "reward_hacking") and late and rng.random() < 0.7)
                    pad = 60 if plant == "reward_hacking" and late else 0
                    text = completion(rng, str(rng.randint(0, 200)), tags=tags, pad=pad)
                    if plant == "diversity_collapse" and late:
                        text = one_answer
                    if hostile:
                        text += " " + hostile
                    roles = {}
                    for r in ROLES:
                        mean = level
                        if plant == "reward_collapse" and r == "solver" and late:
                            mean = 0.05
                        if plant == "reward_hacking" and late:
                            mean = min(0.98, level + 0.2)
                        reward = min(1.0, max(0.0, rng.gauss(mean, 0.15)))
                        if plant == "zero_advantage" and r == "judge" and late:
                            reward = judge_level
                        if plant == "nan_rewards" and r == "verifier" and late and i < 2:
                            reward = float("nan")
                        kl = 0.06 * math.sqrt(step / STEPS) * math.exp(rng.gauss(0, 0.25))
                        if plant == "kl_blowup" and r == "verifier" and late:
                            kl = 2.5 * math.exp(rng.gauss(0, 0.3))
                        if plant == "nan_kl" and r == "solver" and late:
                            kl = float("nan")  # diverged log-probabilities: the KL statistics skip them
                        roles[r] = {"reward": reward, "kl": kl}
                    total = sum(v["reward"] for v in roles.values() if not math.isnan(v["reward"])) / len(ROLES)
                    if not tags:
                        total = max(0.0, total - 0.15) if plant == "format_drift" else total
                    failed = plant == "exception_spike" and ONSET <= step < ONSET + 3 and i % 2 == 0
                    rows.append(
                        {
                            "group_id": f"s{step}-g{g}",
                            "env_name": hostile or "arith",
                            "reward": None if failed else total,
                            "roles": roles,
                            "reward_components": {"correct": total, "format": 1.0 if tags else 0.0},
                            "prompt": prompt,
                            "completion": text,
                            "exception": (f"RuntimeError: sandbox died {hostile or ''}" if failed else None),
                        }
                    )
            w.log_samples(step, rows)
            w.log_scalars(step, {"train/loss": 1.0 / (1 + step) + rng.gauss(0, 0.01), "train/lr": 1e-6})
            if step % 10 == 0:
                w.log_samples(step, rows[:8], split="eval")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("doctor_runs")
    return {p: make_run(root, p) for p in PLANTS}


EXPECTED_ROLE = {
    "kl_blowup": "verifier",
    "reward_collapse": "solver",
    "zero_advantage": "judge",
    "diversity_collapse": None,
    "format_drift": None,
    "reward_hacking": None,
    "nan_rewards": "verifier",
    "nan_kl": "solver",
    "exception_spike": None,
}
# Other kinds a plant may bring along, because they are true of it too.
ALSO_TRUE = {"reward_hacking": {"format_drift"}}


@pytest.mark.parametrize("plant", [p for p in PLANTS if p != "healthy"])
def test_each_planted_problem_is_found_with_its_role_and_onset(runs: dict[str, Path], plant: str) -> None:
    d = diagnose(open_run(runs[plant]))
    found = [f for f in d.findings if f.kind == plant]
    assert found, f"{plant} not found; findings: {[f.as_dict() for f in d.findings]}"
    f = found[0]
    assert f.role == EXPECTED_ROLE[plant]
    assert f.onset_step is not None and abs(f.onset_step - ONSET) <= 3, f.as_dict()
    assert f.severity in ("warning", "error")
    assert f.evidence
    others = {x.kind for x in d.findings} - {plant} - ALSO_TRUE.get(plant, set())
    assert not others, f"unexpected findings: {[x.as_dict() for x in d.findings if x.kind in others]}"


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_healthy_run_gives_no_finding(tmp_path: Path, seed: int) -> None:
    d = diagnose(open_run(make_run(tmp_path, "healthy", seed)))
    assert d.findings == [], [f.as_dict() for f in d.findings]
    assert not d.failing
    assert d.split == "train"


def test_healthy_debate_sample_run_has_no_trend_finding() -> None:
    """The bundled sample run learns normally: KL climbs smoothly from 0 (no blow-up), rewards rise."""
    root = Path(__file__).resolve().parents[1] / "sample_runs" / "debate_grpo"
    kinds = {f.kind for f in diagnose(open_run(root)).findings}
    assert kinds <= {"nan_rewards", "zero_advantage"}, kinds


def test_thresholds_are_configurable(runs: dict[str, Path], tmp_path: Path) -> None:
    run = open_run(runs["kl_blowup"])
    assert any(f.kind == "kl_blowup" for f in diagnose(run).findings)
    cfg = DoctorConfig.from_sources(sets=["kl_ratio=1000"])
    assert cfg.kl_ratio == 1000.0
    assert not any(f.kind == "kl_blowup" for f in diagnose(open_run(runs["kl_blowup"]), cfg).findings)
    toml = tmp_path / "doctor.toml"
    toml.write_text("[doctor]\nexception_rate = 0.9\nmin_segment = 4\n")
    cfg = DoctorConfig.from_sources(toml, ["persist=0.7"])
    assert (cfg.exception_rate, cfg.min_segment, cfg.persist) == (0.9, 4, 0.7)
    with pytest.raises(UsageError, match="unknown threshold 'nope'"):
        DoctorConfig.from_sources(sets=["nope=1"])
    with pytest.raises(UsageError, match="expected a number"):
        DoctorConfig.from_sources(sets=["kl_ratio=lots"])
    with pytest.raises(UsageError, match="NAME=VALUE"):
        DoctorConfig.from_sources(sets=["kl_ratio"])


def test_layouts_without_groups_kl_or_texts_say_so(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1] / "sample_runs"
    from conftest import make_flink_run  # Flink rows whose rendered strings have no turns and no agent JSON

    d = diagnose(open_run(make_flink_run(tmp_path / "f", steps=range(10))))
    assert any("no completion texts" in n for n in d.notes)
    d = diagnose(open_run(root / "jaxarc"))
    assert d.findings == [] and any("no samples" in n for n in d.notes)


def test_damaged_run_reports_inspect_problems_and_gaps() -> None:
    root = Path(__file__).resolve().parents[1] / "sample_runs" / "damaged"
    d = diagnose(open_run(root))
    kinds = {(f.kind, f.severity) for f in d.findings}
    assert ("step_gaps", "warning") in kinds
    assert ("data_problem", "error") in kinds


def test_cli_exit_codes_and_json(cli, runs: dict[str, Path], tmp_path: Path) -> None:
    ok = cli("doctor", runs["healthy"], "--format", "json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout) == {
        "findings": [],
        "notes": [
            "split train read; the run also has eval, not read here (--split eval for it)",
            "the run's scalars (2 key(s)) are checked only for values that turn NaN or infinite and stay so "
            "(scalar_nonfinite); their trends (loss, grad norm, entropy...) are not judged: runlog summarize RUN "
            "--scalars",
        ],
        "split": "train",
    }
    # The other split is named, and it does not make the run "not healthy" (no check was skipped): the
    # text and the report say healthy.
    text = cli("doctor", runs["healthy"])
    assert "healthy: no findings." in text.stdout and "could not run" not in text.stdout
    assert "the run also has eval" in text.stdout
    from runlog.report import build_report

    page = build_report(open_run(runs["healthy"]))
    assert 'class="healthy"' in page and 'class="nofindings"' not in page and "the run also has eval" in page
    bad = cli("doctor", runs["kl_blowup"], "--format", "json")
    assert bad.exit_code == 1
    data = json.loads(bad.stdout)
    f = next(x for x in data["findings"] if x["kind"] == "kl_blowup")
    assert set(f) == {"kind", "role", "onset_step", "severity", "message", "evidence"}
    assert f["role"] == "verifier"
    table = cli("doctor", runs["kl_blowup"])
    assert table.exit_code == 1 and "kl_blowup" in table.stdout and "verifier" in table.stdout
    assert cli("doctor", runs["kl_blowup"], "--set", "kl_ratio=1000").exit_code == 0
    usage = cli("doctor", runs["healthy"], "--set", "bogus=1")
    assert usage.exit_code == 2 and "Error:" in usage.stderr and "bogus" in usage.stderr
    assert cli("doctor", tmp_path / "missing").exit_code == 2


def test_the_nan_share_is_over_the_rewards_that_are_numbers(tmp_path: Path) -> None:
    """6 NaN and 10 null total rewards among 96 samples (the one role's reward is the total): the share is
    6 / (80 valid + 6 NaN), the null ones (failed trajectories) apart, and NaN rows are not counted twice;
    all at one step, the share is a burst of one step: a warning (``nan_rewards`` in docs/doctor.md)."""
    with RunWriter(tmp_path / "run", name="run", roles=["solver"], durable=False, clock=lambda: 1.7e9) as w:
        for step in range(4):
            rows = []
            for i in range(24):
                r = 0.5
                if step == 2 and i < 6:
                    r = float("nan")
                elif step == 3 and i < 10:
                    r = None
                rows.append(
                    {"reward": r, "roles": {"solver": {"reward": r, "kl": 0.0}}, "group_id": f"{step}-{i // 4}"}
                )
            w.log_samples(step, rows)
    [f] = [f for f in diagnose(open_run(tmp_path / "run")).findings if f.kind == "nan_rewards"]
    assert f.evidence["nan"] == 6 and f.evidence["share"] == 6 / 86
    assert f.severity == "warning" and f.message.startswith(
        "6 NaN total rewards (7.0%) in 1 step(s), first at step 2; a warning:"
    )


def test_a_run_too_short_to_check_is_not_called_healthy(tmp_path: Path, cli) -> None:
    """One step: the trend checks cannot run, so the doctor says so, as the report does, and not 'healthy'."""
    with RunWriter(tmp_path / "run", name="run", roles=["solver"], durable=False, clock=lambda: 1.7e9) as w:
        w.log_samples(0, [{"reward": 0.5, "roles": {"solver": {"reward": 0.5, "kl": 0.0}}, "group_id": "g"}] * 4)
    r = cli("doctor", tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert "no findings, but some checks could not run (see the notes)." in r.stdout
    assert "healthy" not in r.stdout


def test_a_level_of_minus_zero_reads_zero() -> None:
    """A drop to 0 is found on the negated series: its level comes back as -0.0, shown '0', never '-0'."""
    from runlog.analysis.changepoint import find_shift

    y = [0.8, 0.75, 0.85] * 7 + [0.0] * 20
    shift = find_shift(y, direction="down", min_delta=0.1)
    assert shift is not None and f"{shift.after:.3g}" == "0" and f"{shift.before:.3g}" == "0.8"


def test_infinite_rewards_are_an_error_with_their_onset_and_summarize_says_so(tmp_path: Path, cli) -> None:
    """A solver reward of +inf and one of -inf per step from step 7: ``summarize`` showed mean and std NaN beside
    ``nan`` 0 without a word, and doctor found nothing (exit 0)."""
    from conftest import native_rows, native_run_of

    rows = []
    for step in range(12):
        part = native_rows(step, 8, roles=("solver", "verifier"))
        if step >= 7:
            part[0]["roles"][0]["reward"], part[1]["roles"][0]["reward"] = math.inf, -math.inf
        rows += part
    root = native_run_of(tmp_path / "run", rows, roles=("solver", "verifier"))
    [f] = [f for f in diagnose(open_run(root)).findings if f.kind.startswith("inf_")]
    assert (f.kind, f.role, f.onset_step, f.severity) == ("inf_rewards", "solver", 7, "error")
    assert f.evidence["steps"] == [7, 8, 9, 10, 11]
    res = cli("summarize", root, "--by", "role")
    assert res.exit_code == 0 and "note: some rewards are infinite" in res.stderr, res.stderr
    res = cli("summarize", make_run(tmp_path, "healthy"), "--by", "role")
    assert "infinite" not in res.stderr


@pytest.mark.parametrize(
    ("share", "decimals", "text"),
    [(0.996, 0, "99.6%"), (4.17e-6, 1, "0.0004%"), (0.005, 0, "0.5%"), (0.2578, 0, "26%"), (1.0, 0, "100%"),
     (0.0, 1, "0.0%"), (6 / 86, 1, "7.0%"), (0.9999999, 0, "99.99999%")],
)  # fmt: skip
def test_a_percentage_never_reads_as_another(share, decimals, text):
    """996 of 1,000 failed read "worst 100%", 4e-6 of the rewards "0.0%", a 0.005 threshold ">= 0%"."""
    from runlog.analysis.findings import percent

    assert percent(share, decimals) == text
