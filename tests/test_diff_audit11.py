"""Audit diffplot11: what ``runlog diff`` and ``plot --diff`` say, not their figures (those were right).

Steps only one run has are named, per run, and so are the steps a window leaves out; ``plot --diff`` refuses
``--by`` and ``--window`` (it drew the same image with and without them); ``--role '(unknown)'`` says why the
null role cannot be picked; a split missing from one run of three is said of that run; a pairing over few of
the prompts says how few. Every expectation is computed from the raw files (pyarrow), not by runlog."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

import runlog
from runlog import open_run
from runlog.analysis.diff import DiffOptions, diff_runs

ROLES = ["solver"]


def _write(
    path: Path,
    steps: list[int],
    *,
    splits: tuple[str, ...] = ("train",),
    roles: bool = True,
    roles_from: int = 0,
    prompts=None,
    seed: int = 0,
) -> Path:  # noqa: ANN001
    """A native run with 4 samples a step (``prompts(step)``: their prompt texts, else ``p0``..``p3``)."""
    rng = np.random.default_rng(seed)
    with runlog.RunWriter(path, name=path.name, roles=ROLES if roles else None) as w:
        for split in splits:
            for s in steps:
                texts = prompts(s) if prompts else [f"p{i}" for i in range(4)]
                rows = []
                for i, text in enumerate(texts):
                    row = {"reward": float(rng.uniform()), "prompt": text, "group_id": f"g{i}"}
                    if roles and s >= roles_from:
                        row["roles"] = {"solver": {"reward": float(rng.uniform()), "kl": 0.0}}
                    rows.append(row)
                w.log_samples(s, rows, split=split)
    return path


def _raw(path: Path, split: str = "train") -> list[dict]:
    rows: list[dict] = []
    for f in sorted((path / "samples" / split).glob("*.parquet")):
        rows += pq.read_table(f, columns=["step", "prompt", "roles"]).to_pylist()
    return rows


def _steps(path: Path, split: str = "train") -> set[int]:
    return {r["step"] for r in _raw(path, split)}


def _listed(steps: list[int]) -> str:
    return ", ".join(map(str, steps[:5])) + (f", ... ({len(steps)} steps)" if len(steps) > 5 else "")


def test_steps_only_one_run_has_are_named_per_run(tmp_path: Path) -> None:
    """a lacks step 4, b lacks step 6: the note said ``0..9 (8 steps); a has 0..9 (9 steps), b has 0..9 (9
    steps)`` and named neither; now ``step(s) only in a: 6; only in b: 4``."""
    a = _write(tmp_path / "a", [s for s in range(10) if s != 4])
    b = _write(tmp_path / "b", [s for s in range(10) if s != 6], seed=1)
    sa, sb = _steps(a), _steps(b)
    d = diff_runs([open_run(a), open_run(b)], options=DiffOptions(window=3, boot=100))
    [note] = [n for n in d.notes if "step(s) both have" in n]
    assert f"; step(s) only in a: {_listed(sorted(sa - sb))}; only in b: {_listed(sorted(sb - sa))}" in note, note


def test_many_steps_only_in_one_run_are_named_first_few_with_a_count(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", list(range(20)))
    b = _write(tmp_path / "b", list(range(0, 20, 2)), seed=1)
    only = sorted(_steps(a) - _steps(b))
    d = diff_runs([open_run(a), open_run(b)], options=DiffOptions(window=3, boot=100))
    [note] = [n for n in d.notes if "step(s) both have" in n]
    assert note.endswith(f"; step(s) only in a: {_listed(only)}") and f"({len(only)} steps)" in note, note
    # Evenly spaced windows (``14..18 every 2``) say what they hold: no note on the steps they leave out.
    assert not any("windows hold" in n for n in d.notes), d.notes


def test_a_window_names_the_step_it_leaves_out_and_whose_it_is(tmp_path: Path, cli) -> None:  # noqa: ANN001
    """The end window was shown as ``14..19 (5 steps)`` with no word of step 15, which only b has."""
    a = _write(tmp_path / "a", [s for s in range(20) if s != 15])
    b = _write(tmp_path / "b", list(range(20)), seed=1)
    sa, sb = _steps(a), _steps(b)
    common = sorted(sa & sb)
    end = common[-5:]
    left = [s for s in sorted(sa ^ sb) if end[0] <= s <= end[-1]]
    assert left == [15] and not set(left) & sa
    r = cli("diff", a, b, "--window", "5", "--boot", "100", "--format", "json")
    assert r.exit_code == 0, r.output
    notes = json.loads(r.stdout)["notes"]
    said = f"{end[0]}..{end[-1]} ({len(end)} steps) leaves out {_listed(left)} (only in b)"
    assert any(
        n.startswith("b in split train: windows hold the steps both runs have: end") and said in n for n in notes
    )


def test_plot_diff_refuses_by_and_window(tmp_path: Path, cli) -> None:  # noqa: ANN001
    """``--by none`` and ``--window 7`` gave the same bytes as neither: refused now, as --steps and --keys."""
    a = _write(tmp_path / "a", list(range(6)))
    b = _write(tmp_path / "b", list(range(6)), seed=1)
    for extra, word in ((["--by", "none"], "--by none"), (["--window", "7"], "--window 7")):
        r = cli("plot", a, "--diff", b, *extra, "-o", tmp_path / "d.png")
        assert r.exit_code == 2, r.output
        [line] = r.stderr.strip().splitlines()
        assert line.startswith(f"Error: {word} does not apply with --diff"), line
        assert not (tmp_path / "d.png").exists()


def test_role_unknown_says_how_the_null_role_is_shown(tmp_path: Path, cli) -> None:  # noqa: ANN001
    """b's first steps have no per-role data (as a Flink v0 file): diff shows them as ``(unknown)``, and
    ``--role '(unknown)'`` listed only the named roles; it now says that those samples cannot be picked by
    --role (summarize refuses the label the same way: the null role is no role)."""
    a = _write(tmp_path / "a", list(range(4)))
    b = _write(tmp_path / "b", list(range(4)), roles_from=2, seed=1)
    assert {r["step"] for r in _raw(b) if not r["roles"]} == {0, 1}  # raw: samples without per-role data
    shown = cli("diff", a, b, "--boot", "100", "--window", "2")
    assert "note: role(s) (unknown) in split train only in b: not compared" in shown.stderr, shown.stderr
    r = cli("diff", a, b, "--role", "(unknown)")
    assert r.exit_code == 2
    [line] = r.stderr.strip().splitlines()
    assert "the runs' roles are solver" in line and "shown as (unknown)" in line
    assert "cannot be picked by --role" in line, line
    s = cli("summarize", b, "--role", "(unknown)")
    assert s.exit_code == 2  # summarize is consistent: no spelling selects the null role
    typo = cli("diff", a, b, "--role", "solvr")
    assert typo.exit_code == 2 and "shown as (unknown)" not in typo.stderr


def test_a_split_one_of_three_runs_lacks_is_said_of_that_run(tmp_path: Path) -> None:
    """base and b have train and eval, r train only: the note said ``eval only in base`` though b's eval was
    compared."""
    base = _write(tmp_path / "base", list(range(4)), splits=("train", "eval"))
    b = _write(tmp_path / "b", list(range(4)), splits=("train", "eval"), seed=1)
    r = _write(tmp_path / "r", list(range(4)), seed=2)
    splits = {p.name: {d.name for d in (p / "samples").iterdir()} for p in (base, b, r)}
    d = diff_runs([open_run(p) for p in (base, b, r)], options=DiffOptions(window=2, boot=100))
    lacking = sorted(splits["base"] - splits["r"])
    assert lacking == ["eval"] and splits["b"] == splits["base"]
    assert "split(s) eval in base, not in r: r not compared with base there" in d.notes, d.notes
    assert not any("only in base: not compared" in n for n in d.notes)
    assert {("eval", "b")} <= {(row["split"], row["run"]) for row in d.roles.to_dicts()}


def _prompts_of(path: Path, steps: list[int]) -> set[tuple[int, str]]:
    return {(r["step"], r["prompt"]) for r in _raw(path) if r["step"] in steps}


def test_a_pairing_over_few_prompts_says_how_few(tmp_path: Path) -> None:
    """One prompt a step in common out of four: the headline's paired figure rested on them with no word."""
    a = _write(tmp_path / "a", list(range(6)))
    b = _write(tmp_path / "b", list(range(6)), prompts=lambda s: ["p0", "q1", "q2", "q3"], seed=1)
    end = list(range(6))[-3:]
    pa, pb = _prompts_of(a, end), _prompts_of(b, end)
    paired = len(pa & pb)
    assert 2 * paired < min(len(pa), len(pb))  # few, by the documented rule
    d = diff_runs([open_run(a), open_run(b)], options=DiffOptions(window=3, boot=100))
    assert d.paired["prompts"].to_list() == [paired]
    said = (
        f"b in split train, role solver: the paired comparison (end window {end[0]}..{end[-1]}) pairs {paired} "
        f"(step, prompt) pair(s), of {len(pa)} in a and {len(pb)} in b: few"
    )
    assert any(n.startswith(said) for n in d.notes), d.notes


def test_a_pairing_over_most_prompts_is_said_but_not_few(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", list(range(6)))
    b = _write(tmp_path / "b", list(range(6)), prompts=lambda s: ["p0", "p1", "p2", "q3"], seed=1)
    end = list(range(6))[-3:]
    pa, pb = _prompts_of(a, end), _prompts_of(b, end)
    paired = len(pa & pb)
    d = diff_runs([open_run(a), open_run(b)], options=DiffOptions(window=3, boot=100))
    [note] = [n for n in d.notes if "paired comparison" in n]
    assert f"pairs {paired} (step, prompt) pair(s), of {len(pa)} in a and {len(pb)} in b" in note
    assert ": few" not in note and "left out" in note


def test_a_full_pairing_has_no_coverage_note(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", list(range(6)))
    b = _write(tmp_path / "b", list(range(6)), seed=1)
    end = list(range(6))[-3:]
    assert _prompts_of(a, end) == _prompts_of(b, end)
    d = diff_runs([open_run(a), open_run(b)], options=DiffOptions(window=3, boot=100))
    assert not any("paired comparison" in n for n in d.notes), d.notes


def test_samples_without_prompt_text_are_paired_by_their_group_id(tmp_path: Path, cli) -> None:
    """The prompt only in the messages (the ``prompt`` column null): a null prompt hashed to one constant, so
    every sample of a step was one 'prompt' (10 pairs) where the group ids pair 40 (step, group) means."""
    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        with runlog.RunWriter(tmp_path / name, durable=False) as w:
            for step in range(10):
                rows = [
                    {
                        "sample_id": f"{step}-{i}",
                        "group_id": f"p{(i % 4 + step) % 6}",
                        "reward": float(rng.random()),
                        "messages": [
                            {"role": "user", "content": f"prompt {i % 4}"},
                            {"role": "assistant", "content": "x"},
                        ],
                    }
                    for i in range(8)
                ]
                w.log_samples(step, rows)
    means = {}
    for name in ("a", "b"):
        t = pq.read_table(sorted((tmp_path / name / "samples" / "train").glob("*.parquet"))).to_pylist()
        by: dict[tuple[int, str], list[float]] = {}
        for r in t:
            by.setdefault((r["step"], r["group_id"]), []).append(r["reward"])
        means[name] = {k: float(np.mean(v)) for k, v in by.items()}
    res = cli("diff", tmp_path / "a", tmp_path / "b", "--format", "json")
    assert res.exit_code in (0, 1), res.stderr
    [paired] = json.loads(res.stdout.splitlines()[0])["paired"]
    lo, hi = (int(x) for x in paired["steps"].split(" ")[0].split(".."))
    keys = [k for k in means["a"] if lo <= k[0] <= hi and k in means["b"]]
    diffs = [means["b"][k] - means["a"][k] for k in keys]
    assert paired["prompts"] == len(keys) == 4 * (hi - lo + 1)
    assert (paired["wins"], paired["losses"]) == (sum(d > 0 for d in diffs), sum(d < 0 for d in diffs))
    assert abs(paired["mean_diff"] - float(np.mean(diffs))) < 1e-12


def test_plot_diff_breaks_a_runs_line_at_a_step_it_lacks(tmp_path: Path) -> None:
    """plot --diff drew a straight line across a step one run lacks (values never logged), where plot breaks
    the line and names the gap."""
    from runlog.plots.diff import diff_figure
    from runlog.plots.figures import note_text

    for name, missing in (("a", None), ("b", 5)):
        with runlog.RunWriter(tmp_path / name, roles=["solver"], durable=False) as w:
            for step in range(10):
                if step != missing:
                    w.log_samples(step, [{"reward": 0.1 * step, "roles": {"solver": {"reward": 0.1 * step}}}])
    d = diff_runs([open_run(tmp_path / "a"), open_run(tmp_path / "b")], options=DiffOptions(window=2, boot=100))
    fig = diff_figure(d)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    a = next(v for k, v in lines.items() if k.startswith("a"))
    b = next(v for k, v in lines.items() if k.startswith("b"))
    # Compared on the steps both have: both lines break at step 5 (b lacks it), and the panel says so.
    for line in (a, b):
        ys = np.asarray(line.get_ydata(), dtype=float)
        xs = np.asarray(line.get_xdata(), dtype=float)
        assert np.isnan(ys).sum() == 1 and xs[np.isnan(ys)][0] == 4  # the break after step 4, before step 6
        assert 5 not in set(xs[~np.isnan(ys)].tolist())
    assert "not in every run: gap: step 5 missing" in note_text(ax)
