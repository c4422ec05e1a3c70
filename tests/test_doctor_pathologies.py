"""``runlog doctor`` on debate runs with planted pathologies that only the per-role series show: a judge whose
rewards are all equal within every prompt group (zero advantage, no learning signal), a solver whose answers
collapse to one text per prompt (diversity of that role's own texts), a ``format`` reward component that
falls (format drift without any text change). Each is found with its kind, role and onset (within ±5 steps
of the planted step), and the clean twin (same seed, no hooks) gives no finding at all.

Flink v1 runs come from ``tests/flink_gen.py`` (its hooks plant the pathologies); native runs are written
with ``runlog.RunWriter``, with and without prompt groups.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from flink_gen import Episode, write_flink_run
from runlog import RunWriter, open_run
from runlog.analysis.doctor import Diagnosis, DoctorConfig, diagnose

STEPS = 40
ONSET = 20
PROMPTS = 4
GROUP_SIZE = 8
TOLERANCE = 5


# --- Flink v1 hooks (flink_gen's Episode fields) -----------------------------------------------------------


def flat_judge(ep: Episode) -> None:
    """The judge's reward goes flat at 1.0 from ONSET: every group's rewards equal."""
    if ep.step >= ONSET:
        ep.role_rewards["judge"] = 1.0


def collapse_solver(ep: Episode) -> None:
    """One solver text per prompt from ONSET."""
    if ep.step >= ONSET:
        ep.think, ep.answer, ep.uses_tool = f"Known: {ep.task.question}", ep.task.truth, False


def format_falls(ep: Episode) -> None:
    """The format component falls from about 0.9 to about 0.3 from ONSET; the texts do not change."""
    if ep.step >= ONSET:
        ep.components["format"] = 1.0 if ep.rng.random() < 0.3 else 0.0


PLANTS = {
    "flat_judge": (flat_judge, ("zero_advantage", "judge")),
    "collapse_solver": (collapse_solver, ("diversity_collapse", "solver")),
    "format_falls": (format_falls, ("format_drift", None)),
}
# Also true of a plant, and so allowed alongside it: the verifier's texts quote the solver's answer, so they
# collapse with it; the solver's reward (0.8 correct + 0.2 format) stops rising when its format part falls.
ALSO_TRUE = {
    "collapse_solver": {("diversity_collapse", "verifier")},
    "format_falls": {("reward_stuck", "solver")},
}


@pytest.fixture(scope="module")
def flink_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("flink_pathologies")
    runs = {"clean": root / "clean", "all": root / "all"}
    kw = dict(steps=STEPS, prompts=PROMPTS, group_size=GROUP_SIZE, seed=7)
    write_flink_run(runs["clean"], **kw)
    write_flink_run(runs["all"], hooks=[hook for hook, _ in PLANTS.values()], **kw)
    for name, (hook, _) in PLANTS.items():
        runs[name] = root / name
        write_flink_run(runs[name], hooks=[hook], **kw)
    return runs


@pytest.fixture(scope="module")
def flink(flink_runs: dict[str, Path]) -> dict[str, Diagnosis]:
    """Each run diagnosed once with the default thresholds."""
    return {name: diagnose(open_run(path)) for name, path in flink_runs.items()}


def _found(findings, kind: str, role: str | None):
    return [f for f in findings if f.kind == kind and f.role == role]


def _check(findings, kind: str, role: str | None) -> None:
    hits = _found(findings, kind, role)
    assert hits, f"{kind} ({role}) not found: {[f.as_dict() for f in findings]}"
    f = hits[0]
    assert f.severity == "warning", f.as_dict()
    assert f.onset_step is not None and abs(f.onset_step - ONSET) <= TOLERANCE, f.as_dict()
    assert f.evidence and str(f.onset_step) in f.message


@pytest.mark.parametrize("plant", list(PLANTS))
def test_each_flink_pathology_is_found_with_role_and_onset_and_not_on_the_clean_twin(
    flink: dict[str, Diagnosis], plant: str
) -> None:
    kind, role = PLANTS[plant][1]
    d = flink[plant]
    _check(d.findings, kind, role)
    others = {(f.kind, f.role) for f in d.findings} - {(kind, role)} - ALSO_TRUE.get(plant, set())
    assert not others, [f.as_dict() for f in d.findings]
    clean = flink["clean"]
    assert clean.findings == [], [f.as_dict() for f in clean.findings]
    assert not any("not checked" in n or "skipped" in n for n in clean.notes), clean.notes


def test_all_flink_pathologies_at_once(flink: dict[str, Diagnosis]) -> None:
    d = flink["all"]
    for _, (kind, role) in PLANTS.values():
        _check(d.findings, kind, role)


def test_evidence_of_each_finding(flink: dict[str, Diagnosis]) -> None:
    d = flink["all"]
    [zero] = _found(d.findings, "zero_advantage", "judge")
    assert zero.evidence["zero_adv_frac_after"] == 1.0 and zero.evidence["zero_adv_frac_before"] < 0.1
    assert zero.evidence["flat_value"] == 1.0 and zero.evidence["solved"] is False
    [div] = _found(d.findings, "diversity_collapse", "solver")
    # One text per prompt, in one of two formats (flink_gen keeps each sample's formatting).
    assert div.evidence["unique_frac_after"] <= 2 / GROUP_SIZE < div.evidence["unique_frac_before"]
    [fmt] = _found(d.findings, "format_drift", None)
    assert fmt.evidence["component"] == "format"
    assert fmt.evidence["before"] > 0.8 and abs(fmt.evidence["after"] - 0.3) < 0.1
    assert "format" in fmt.message and "fell" in fmt.message


def test_component_thresholds_are_configurable(flink_runs: dict[str, Path], flink: dict[str, Diagnosis]) -> None:
    assert _found(flink["format_falls"].findings, "format_drift", None)
    cfg = DoctorConfig.from_sources(sets=["component_drop=5"])
    assert cfg.component_drop == 5.0
    assert not _found(diagnose(open_run(flink_runs["format_falls"]), cfg).findings, "format_drift", None)


def test_a_component_jump_is_info_and_a_learning_curve_is_not_one(tmp_path: Path) -> None:
    """A component that sits at one level and jumps to another is reported (info: it changes no exit code);
    the ``correct`` component, which climbs from the first step as the solver learns, is not."""

    def bonus(ep: Episode) -> None:
        ep.components["bonus"] = 0.2 + (0.6 if ep.step >= ONSET else 0.0) + 0.2 * ep.rng.random()

    write_flink_run(tmp_path / "jump", steps=STEPS, prompts=PROMPTS, group_size=GROUP_SIZE, seed=7, hooks=[bonus])
    d = diagnose(open_run(tmp_path / "jump"))
    [f] = d.findings
    assert (f.kind, f.role, f.severity, f.evidence["component"]) == ("component_shift", None, "info", "bonus")
    assert abs(f.onset_step - ONSET) <= TOLERANCE and "jumped" in f.message
    assert not d.failing


# --- native runs (RunWriter) --------------------------------------------------------------------------------

ROLES = ("solver", "verifier", "judge")
WORDS = ("add", "carry", "digit", "sum", "product", "check", "value", "result", "then", "next", "total", "term", "both")


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_native(path: Path, plant: str | None = None, *, groups: bool = True, seed: int = 3) -> Path:
    """A debate run with messages named by role, per-role rewards that rise as the roles learn, and
    ``correct`` / ``format`` components; ``plant`` from ONSET on: ``flat_judge`` (every judge reward 1.0),
    ``verifier_collapse`` (one verifier text per prompt), ``format_falls`` (format component ~0.3).
    ``groups=False``: no group_id and no prompt, so that the run has no prompt groups."""
    rng = random.Random(seed)  # the same draws whatever is planted: the clean twin differs only by the plant
    with RunWriter(path, name=path.name, roles=ROLES, durable=False, clock=lambda: 1.7e9) as w:
        for step in range(STEPS):
            late = step >= ONSET
            level = 0.35 + 0.3 * (1 - math.exp(-step / 15))
            rows = []
            for g in range(PROMPTS):
                question = f"Task {step}-{g}: what is {rng.randint(10, 99)} * {rng.randint(3, 19)}?"
                for _ in range(GROUP_SIZE):
                    rewards = {r: min(1.0, max(0.0, rng.gauss(level, 0.2))) for r in ROLES}
                    tagged = rng.random() < 0.9
                    solver = f"<think>{_words(rng, 12)}</think><answer>{rng.randint(0, 999)}</answer>"
                    verifier = f"{_words(rng, 10)} VERIFY: {rng.choice(('PASS', 'FAIL'))}"
                    judge = f"Verdict: {rng.choice(('ACCEPT', 'REJECT'))} {_words(rng, 4)}"
                    if plant == "flat_judge" and late:
                        rewards["judge"] = 1.0
                    if plant == "verifier_collapse" and late:
                        verifier = f"I checked {question} VERIFY: PASS"
                    if plant == "format_falls" and late:
                        tagged = rng.random() < 0.3
                    messages = [
                        {"role": "user", "content": question},
                        {"role": "assistant", "name": "solver", "content": solver},
                        {"role": "assistant", "name": "verifier", "content": verifier},
                        {"role": "assistant", "name": "judge", "content": judge},
                    ]
                    rows.append(
                        {
                            "group_id": f"s{step}-g{g}" if groups else None,
                            "reward": rewards["solver"],
                            "roles": {r: {"reward": v, "kl": 0.01} for r, v in rewards.items()},
                            "reward_components": {"correct": rewards["solver"], "format": 1.0 if tagged else 0.0},
                            "prompt": question if groups else None,
                            "completion": solver,
                            "messages": messages,
                        }
                    )
            w.log_samples(step, rows)
    return path


NATIVE = {
    "flat_judge": ("zero_advantage", "judge"),
    "verifier_collapse": ("diversity_collapse", "verifier"),
    "format_falls": ("format_drift", None),
}


@pytest.mark.parametrize("plant", list(NATIVE))
def test_native_pathology_is_found_with_role_and_onset_and_not_on_the_clean_twin(tmp_path: Path, plant: str) -> None:
    d = diagnose(open_run(write_native(tmp_path / plant, plant)))
    kind, role = NATIVE[plant]
    _check(d.findings, kind, role)
    assert {(f.kind, f.role) for f in d.findings} == {(kind, role)}, [f.as_dict() for f in d.findings]
    clean = diagnose(open_run(write_native(tmp_path / "clean")))
    assert clean.findings == [], [f.as_dict() for f in clean.findings]


def test_native_zero_advantage_without_prompt_groups(tmp_path: Path) -> None:
    """No group_id and no prompt: a role whose rewards have no spread across a whole step is no signal."""
    d = diagnose(open_run(write_native(tmp_path / "flat", "flat_judge", groups=False)))
    _check(d.findings, "zero_advantage", "judge")
    [f] = d.findings
    assert f.evidence["groups"] is False and "steps" in f.message
    assert any("each step's rewards as a whole" in n for n in d.notes)
    clean = diagnose(open_run(write_native(tmp_path / "clean", groups=False)))
    assert clean.findings == [], [f.as_dict() for f in clean.findings]
