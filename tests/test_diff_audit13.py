"""Audit a13: ``runlog diff``'s intervals and onsets where samples come in prompt groups, and what it says.

- F1: a prompt's difficulty is shared by its samples, so the samples of a group are not independent: the
  reward and KL intervals resample prompt groups (of one step) where the run has groups, and the onset's
  per-step z uses a group-level SE. Resampling samples gave intervals half as wide as the groups' (null pairs
  called ahead 33 % of the time at 95 %).
- F3: a run none of whose files can be read: each file's problem (a truncated file, a newer schema with its
  upgrade) is printed before the error, as when some files are readable.
- F4: sample ids repeated inside a compared window (a copied shard) are a warning naming the steps.
- F2: every note is printed (none cut with a pointer to ``runlog inspect``, which cannot show them).
- F6: ``--window`` beyond the common steps is said; ``--name ''`` is a usage error.

Every expectation is computed from the raw files (pyarrow, numpy), not by runlog."""

from __future__ import annotations

import json
import math
import shutil
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import runlog
from runlog import open_run
from runlog.analysis.diff import DiffOptions, diff_runs

PROMPTS, GROUP, STEPS = 8, 8, 20
ROLES = ["solver", "verifier"]


def _write_clustered(path: Path, pair: int, side: str, beta: float = 0.4, steps: int = STEPS) -> Path:
    """The auditor's ``clust`` null run (gen_null.py): per step, 8 prompts of its own whose success rate is
    drawn from Beta(beta, beta) (prompt difficulty), 8 binary rewards each, per role."""
    rng = np.random.default_rng(zlib.crc32(f"clust{pair}{side}".encode()))
    with runlog.RunWriter(path, name=path.name, roles=ROLES, durable=False, clock=lambda: 1.7e9) as w:
        for s in range(steps):
            ps = rng.beta(beta, beta, size=PROMPTS)
            rew = {r: (rng.random(PROMPTS * GROUP) < np.repeat(ps, GROUP)).astype(float) for r in ROLES}
            kl = {r: np.abs(rng.normal(0.1, 0.02, PROMPTS * GROUP)) for r in ROLES}
            rows = []
            for i in range(PROMPTS * GROUP):
                rows.append(
                    {
                        "prompt": f"{side}{pair}-{s}-{i // GROUP}",
                        "group_id": f"g{s}-{i // GROUP}",
                        "reward": float(rew["solver"][i] + rew["verifier"][i]),
                        "roles": {r: {"reward": float(rew[r][i]), "kl": float(kl[r][i])} for r in ROLES},
                    }
                )
            w.log_samples(s, rows, split="train")
    return path


def _raw(path: Path, role: str, split: str = "train") -> list[tuple[int, str, float, str]]:
    """(step, group id, reward, sample id) of ``role``'s rows, read with pyarrow."""
    out = []
    for f in sorted((path / "samples" / split).glob("*.parquet")):
        for r in pq.read_table(f, columns=["step", "group_id", "sample_id", "roles"]).to_pylist():
            out += [(r["step"], r["group_id"], x["reward"], r["sample_id"]) for x in r["roles"] if x["role"] == role]
    return out


def _cluster_boot(rows: list[tuple[int, str, float, str]], steps: set[int], boot: int, rng) -> np.ndarray:  # noqa: ANN001
    """Replicates of the window's mean reward, resampling (step, group) clusters: their sums over their counts."""
    sums: dict[tuple[int, str], list[float]] = {}
    for step, group, reward, _ in rows:
        if step in steps:
            sums.setdefault((step, group), []).append(reward)
    s = np.array([sum(v) for v in sums.values()])
    n = np.array([len(v) for v in sums.values()], dtype=float)
    idx = rng.integers(0, len(s), size=(boot, len(s)))
    return s[idx].sum(axis=1) / n[idx].sum(axis=1)


def _sample_boot(rows: list[tuple[int, str, float, str]], steps: set[int], boot: int, rng) -> np.ndarray:  # noqa: ANN001
    x = np.array([r for step, _, r, _ in rows if step in steps])
    return x[rng.integers(0, len(x), size=(boot, len(x)))].mean(axis=1)


def test_the_reward_interval_resamples_prompt_groups(tmp_path: Path) -> None:
    """Two runs of one process with different prompts of very different difficulty (the auditor's pair 003,
    called ``ahead`` with CI [0.069, 0.180] by a bootstrap over samples): runlog's end-window interval is as
    wide as a bootstrap of (step, prompt group) clusters (it was 0.46 of it), far wider than one of samples."""
    a = _write_clustered(tmp_path / "a", 3, "a")
    b = _write_clustered(tmp_path / "b", 3, "b")
    d = diff_runs([open_run(a), open_run(b)], ["a", "b"], DiffOptions(window=10, boot=4000))
    end = set(range(10, 20))
    rng = np.random.default_rng(7)
    for role in ROLES:
        ra, rb = _raw(a, role), _raw(b, role)
        cl = _cluster_boot(rb, end, 8000, rng) - _cluster_boot(ra, end, 8000, rng)
        iid = _sample_boot(rb, end, 8000, rng) - _sample_boot(ra, end, 8000, rng)
        want = np.diff(np.percentile(cl, [2.5, 97.5]))[0]
        narrow = np.diff(np.percentile(iid, [2.5, 97.5]))[0]
        [row] = d.points.filter(
            (d.points["role"] == role) & (d.points["metric"] == "reward") & (d.points["point"] == "end")
        ).to_dicts()
        truth = np.mean([r for s, _, r, _ in rb if s in end]) - np.mean([r for s, _, r, _ in ra if s in end])
        assert math.isclose(row["diff"], truth, rel_tol=1e-12, abs_tol=1e-12)
        assert row["n"] == row["baseline_n"] == 10 * PROMPTS * GROUP  # still counts of samples
        width = row["ci_high"] - row["ci_low"]
        assert 0.85 * want < width < 1.15 * want, (role, width, want, narrow)
        assert width > 1.5 * narrow


def test_without_groups_the_samples_are_resampled(tmp_path: Path) -> None:
    """No group id and no prompt text: no group is known, and the interval is a bootstrap of samples."""
    rng = np.random.default_rng(3)
    paths = []
    for name in ("a", "b"):
        path = tmp_path / name
        with runlog.RunWriter(path, name=name, roles=["solver"], durable=False, clock=lambda: 1.7e9) as w:
            for s in range(10):
                rows = [
                    {"reward": float(x), "roles": {"solver": {"reward": float(x)}}} for x in rng.normal(0.5, 0.2, 64)
                ]
                w.log_samples(s, rows, split="train")
        paths.append(path)
    d = diff_runs([open_run(p) for p in paths], ["a", "b"], DiffOptions(window=10, boot=4000))
    [row] = d.points.filter((d.points["metric"] == "reward") & (d.points["point"] == "end")).to_dicts()
    ra, rb = (_raw(p, "solver") for p in paths)
    iid = _sample_boot(rb, set(range(10)), 8000, rng) - _sample_boot(ra, set(range(10)), 8000, rng)
    want = np.diff(np.percentile(iid, [2.5, 97.5]))[0]
    assert 0.88 * want < row["ci_high"] - row["ci_low"] < 1.12 * want


def _onset(z: list[float], crit: float = 1.959964) -> int | None:
    """The documented rule (doctor's persist 0.8, min_segment 3) on per-step z, from the first step."""
    for j in range(len(z)):
        tail = [x >= crit for x in z[j:]]
        if tail[0] and sum(tail) >= 0.8 * len(tail) and sum(tail) >= 3:
            return j
    return None


def _prompt_level_z(a: Path, b: Path, role: str, steps: int) -> list[float]:
    """Per step, (mean_B - mean_A) over the SE from the prompts' means (their SD over the root of their number)."""
    out = []
    ra, rb = _raw(a, role), _raw(b, role)
    for s in range(steps):
        means, sides = [], []
        for rows in (ra, rb):
            by: dict[str, list[float]] = {}
            for step, g, r, _ in rows:
                if step == s:
                    by.setdefault(g, []).append(r)
            pm = np.array([np.mean(v) for v in by.values()])
            sides.append(pm.var(ddof=1) / len(pm))
            means.append(np.mean([r for step, _, r, _ in rows if step == s]))
        out.append((means[1] - means[0]) / math.sqrt(sum(sides)))
    return out


def test_the_onset_z_uses_a_group_level_se(tmp_path: Path) -> None:
    """The auditor's null pair 000 (same process, other prompts): the solver was ``ahead_from 17`` with the
    samples' SE; with the prompts' SE no step run passes the rule, and runlog now says no onset either."""
    a = _write_clustered(tmp_path / "a", 0, "a")
    b = _write_clustered(tmp_path / "b", 0, "b")
    d = diff_runs([open_run(a), open_run(b)], ["a", "b"], DiffOptions(window=10))
    for role in ROLES:
        z = _prompt_level_z(a, b, role, STEPS)
        [row] = d.roles.filter(d.roles["role"] == role).to_dicts()
        assert row["ahead_from"] == _onset(z) and row["behind_from"] == _onset([-x for x in z]), role
        assert row["ahead_from"] is None


def test_a_real_lead_in_grouped_samples_is_still_found_where_it_starts(tmp_path: Path) -> None:
    """Power: the planted triple's solver (+0.15 from step 20, reward SD 0.1, 4 prompts x 4 samples) is ahead
    from step 20, where it was planted (a guard: the group-level SE must not cost the onset)."""
    rng = np.random.default_rng(5)
    paths = []
    for name, lift in (("a", 0.0), ("b", 0.15)):
        path = tmp_path / name
        with runlog.RunWriter(path, name=name, roles=["solver"], durable=False, clock=lambda: 1.7e9) as w:
            for s in range(40):
                mu = 0.5 + (lift if s >= 20 else 0.0)
                rows = [
                    {"prompt": f"q{s}-{i // 4}", "group_id": f"g{s}-{i // 4}", "reward": float(x),
                     "roles": {"solver": {"reward": float(x), "kl": 0.1}}}
                    for i, x in enumerate(rng.normal(mu, 0.1, 16))
                ]  # fmt: skip
                w.log_samples(s, rows, split="train")
        paths.append(path)
    d = diff_runs([open_run(p) for p in paths], ["a", "b"], DiffOptions(window=10))
    [row] = d.roles.to_dicts()
    assert row["ahead_from"] == 20 and row["behind_from"] is None


def _native_pair(tmp_path: Path) -> tuple[Path, Path]:
    a = _write_clustered(tmp_path / "A", 1, "a", beta=2.0)
    b = _write_clustered(tmp_path / "B", 1, "b", beta=2.0)
    return a, b


def test_a_run_with_no_readable_file_says_each_files_problem_first(tmp_path: Path, cli) -> None:
    """Z's two sample files are truncated: the error said only ``Z has no samples``."""
    a, _ = _native_pair(tmp_path)
    z = tmp_path / "Z"
    (z / "samples" / "train").mkdir(parents=True)
    shutil.copy(a / "run.json", z / "run.json")
    for f in sorted((a / "samples" / "train").glob("*.parquet"))[:2]:
        (z / "samples" / "train" / f.name).write_bytes(f.read_bytes()[:300])
    r = cli("diff", a, z)
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: nothing to compare: Z has no readable samples (its 2 sample file(s)")
    assert any(line.startswith("error: Z: samples/train/") and "truncated or corrupt" in line for line in lines[:-1])


def test_a_run_of_a_newer_schema_says_upgrade(tmp_path: Path, cli) -> None:
    a, b = _native_pair(tmp_path)
    n3 = tmp_path / "N3"
    shutil.copytree(b, n3)
    for f in (n3 / "samples").rglob("*.parquet"):
        t = pq.read_table(f)
        t = t.set_column(
            t.schema.get_field_index("schema_version"), "schema_version", pa.array([3] * t.num_rows, pa.int32())
        )
        pq.write_table(t.replace_schema_metadata({"runlog.schema_version": "3"}), f)
    manifest = json.loads((n3 / "run.json").read_text())
    manifest["schema_version"] = 3
    (n3 / "run.json").write_text(json.dumps(manifest))
    r = cli("diff", a, n3)
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: nothing to compare: N3 has no readable samples")
    assert any("schema v3" in line and "upgrade runlog" in line for line in lines[:-1]), r.stderr


def test_a_copied_shard_is_a_warning_naming_the_step(tmp_path: Path, cli) -> None:
    """B's shard of step 15 copied under another process index: 64 ids read twice, counted twice."""
    a, b = _native_pair(tmp_path)
    [src] = (b / "samples" / "train").glob("step_*00015.p0.parquet")
    shutil.copy(src, src.with_name(src.name.replace(".p0.", ".p1.")))
    ids = [sid for step, _, _, sid in _raw(b, "solver") if step == 15]
    repeated = {x for x in ids if ids.count(x) > 1}
    extra = len(ids) - len(set(ids))
    r = cli("diff", a, b, "--format", "json")
    assert r.exit_code == 0
    said = f"B: repeated_sample_ids: {len(repeated)} sample id(s) occur more than once within their step"
    [warning] = json.loads(r.stdout)["warnings"]
    assert warning.startswith(said) and f"({extra} extra sample(s); step(s) 15 (train))" in warning
    assert any(line.startswith(f"warning: {said}") for line in r.stderr.splitlines())
    # Counted, as summarize counts them: the end window's n holds the copy.
    end = [p for p in json.loads(r.stdout)["points"] if p["point"] == "end" and p["metric"] == "reward"]
    assert {p["n"] for p in end} == {10 * PROMPTS * GROUP + extra}
    # The window cache keeps the warning (its entry holds the repeated ids).
    again = cli("diff", a, b, "--format", "json")
    assert json.loads(again.stdout)["warnings"] == [warning]


def every_other_step_runs(tmp_path: Path, n: int) -> tuple[Path, list[Path]]:
    """A baseline of 12 steps and ``n`` runs of other prompts logged every 2nd step (one overlap note each)."""
    base = _write_clustered(tmp_path / "base", 0, "a", steps=12)
    others = []
    for k in range(n):
        path = tmp_path / f"r{k:02d}"
        _write_clustered(path, k + 1, "b", steps=12)
        for f in (path / "samples" / "train").glob("*.parquet"):
            if int(f.name.split("_")[1].split(".")[0]) % 2:
                f.unlink()
        others.append(path)
    return base, others


def test_every_note_is_printed(tmp_path: Path, cli) -> None:
    """Eleven runs logged every 2nd step, other prompts: two notes each, more than 20; the 20-line cap of
    files' problems cut them, pointing to ``runlog inspect``, which has none of them."""
    base, others = every_other_step_runs(tmp_path, 11)
    notes = json.loads(cli("diff", base, *others, "-w", "3", "--format", "json").stdout)["notes"]
    assert len(notes) > 20
    r = cli("diff", base, *others, "-w", "3")
    assert r.exit_code == 0
    printed = [line.removeprefix("note: ") for line in r.stderr.splitlines() if line.startswith("note: ")]
    assert printed == notes and "runlog inspect" not in r.stderr


def test_a_window_beyond_the_overlap_is_said_and_an_empty_name_refused(tmp_path: Path, cli) -> None:
    a, b = _native_pair(tmp_path)
    d = diff_runs([open_run(a), open_run(b)], ["A", "B"], DiffOptions(window=50, boot=100))
    assert (
        "B in split train: --window 50 is more than the 20 step(s) it shares with the baseline: the start, end and "
        "best windows are each those 20 step(s)"
    ) in d.notes
    r = cli("diff", a, b, "--name", "", "--name", "B")
    assert r.exit_code == 2 and "--name ''" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_window_cache_keeps_the_design_effect_and_the_repeated_ids(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """A diff answered from its kept windows (``window_cache``) gives the onsets (the design effect) and the
    warning of the one computed afresh."""
    import os
    import time

    from runlog.analysis.diff import window_cache

    a = _write_clustered(tmp_path / "a", 0, "a")
    b = _write_clustered(tmp_path / "b", 0, "b")
    [src] = (b / "samples" / "train").glob("step_*00015.p0.parquet")
    shutil.copy(src, src.with_name(src.name.replace(".p0.", ".p1.")))
    past = time.time() - 3600  # files written seconds ago are not kept (a writer may be at work on them)
    for f in tmp_path.rglob("*"):
        os.utime(f, (past, past))
    opts = DiffOptions(window=10, boot=200)
    monkeypatch.setenv("RUNLOG_CACHE", "off")
    cold = diff_runs([open_run(a), open_run(b)], ["a", "b"], opts)
    monkeypatch.delenv("RUNLOG_CACHE")
    diff_runs([open_run(a), open_run(b)], ["a", "b"], opts)  # computes and keeps the windows
    restored: list[bool] = []
    real = window_cache.restore

    def spy(side, path, o):  # noqa: ANN001, ANN202
        restored.append(real(side, path, o))
        return restored[-1]

    monkeypatch.setattr(window_cache, "restore", spy)
    warm = diff_runs([open_run(a), open_run(b)], ["a", "b"], opts)
    assert restored == [True, True]
    assert warm.warnings == cold.warnings and len(cold.warnings) == 1
    for name in ("roles", "points", "paired"):
        assert warm.frames()[name].equals(cold.frames()[name]), name
