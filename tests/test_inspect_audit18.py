"""inspect's scalar gaps, key by key (left alone in the last session's note, now done).

The gaps were those of every key's steps together: a key logged every 10 steps beside one every 25 gave a stride
of 5 and "gaps 5, 15, 35, ..." in red on a run that lost nothing, and a key every 10 that lost step 50 showed no
gap where a key every 25 logged step 50. Each key now has its own stride (``scalar_stride``, as plot draws it)
and its own missed steps, named with the key.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from runlog import open_run
from runlog.analysis.inspect import gaps_at, inspect_run, key_cadences, lost_step_runs, scalar_stride
from runlog.cli.app import app
from runlog.writer import RunWriter


def mixed_run(root: Path, lose: tuple[int, ...] = ()) -> Path:
    """Samples every 10 steps; ``train/loss`` and ``kl`` every 10 (loss loses ``lose``), ``eval/acc`` every 25."""
    with RunWriter(root, name=root.name) as w:
        for s in range(0, 201):
            if s % 10 == 0:
                w.log_samples(s, [{"reward": 1.0}])
            rec = {}
            if s % 10 == 0:
                rec["kl"] = 0.1
                if s not in lose:
                    rec["train/loss"] = 1.0 / (s + 1)
            if s % 25 == 0:
                rec["eval/acc"] = 0.5
            if rec:
                w.log_scalars(s, rec)
    return root


def scalars_json(root: Path) -> dict:
    res = CliRunner().invoke(app, ["inspect", str(root), "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["scalars"]


def test_keys_of_two_cadences_are_no_gaps(tmp_path: Path) -> None:
    sc = scalars_json(mixed_run(tmp_path / "mixed"))
    assert sc["step_gaps"] == [] and sc["key_gaps"] == [], sc  # was stride 5, gaps 5, 15, 35, 45, ...
    assert sc["stride"] == 10  # the stride of most keys (two every 10, one every 25)


def test_a_key_left_out_of_records_is_no_lost_record_and_a_lost_line_is(tmp_path: Path) -> None:
    """train/loss left out of the records of steps 50 and 150 (kl and eval/acc logged there): no record was lost;
    a line lost (no record at 70) is said, with the keys whose cadence held it and the file."""
    sc = scalars_json(mixed_run(tmp_path / "left", lose=(50, 150)))
    assert sc["step_gaps"] == [] and sc["key_gaps"] == [], sc
    root = mixed_run(tmp_path / "lost")
    shard = root / "scalars.p0.jsonl"
    lines = shard.read_text().splitlines(keepends=True)
    shard.write_text("".join(x for x in lines if '"step": 70,' not in x and '"step":70,' not in x))
    sc = scalars_json(root)
    assert sc["step_gaps"] == [[70, 70]], sc
    assert sc["key_gaps"] == [
        {"stride": 10, "gaps": [[70, 70]], "keys": 2, "names": ["kl", "train/loss"], "file": "scalars.p0.jsonl"}
    ]
    res = CliRunner().invoke(app, ["inspect", str(root)], env={"COLUMNS": "200"})
    assert "gaps 70 (kl, train/loss every 10)" in res.stdout, res.stdout


def test_a_hostile_key_name_is_shown_inert(tmp_path: Path) -> None:
    root = tmp_path / "hostile"
    with RunWriter(root, name="hostile") as w:
        w.log_samples(0, [{"reward": 1.0}])
        for s in (0, 1, 2, 4, 5):
            w.log_scalars(s, {"x\x1b]8;;e\x07[red]": 1.0})
    res = CliRunner().invoke(app, ["inspect", str(root)], env={"COLUMNS": "200"})
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout
    assert "gaps 3 (x\\x1b]8;;e\\x07[red] every 1)" in res.stdout, res.stdout


def lost_by_the_rule(
    keys: dict[str, list[int]], records: set[int] | None = None
) -> dict[str, tuple[int, list[list[int]]]]:
    """docs/cli.md's rule, in plain Python, for the keys of one file: each key's missed steps at its stride
    (``scalar_stride``, ``gaps_at``) at which the file has no record (``records``: every key's steps)."""
    logged = records if records is not None else {x for steps in keys.values() for x in steps}
    out = {}
    for name, steps in keys.items():
        st = scalar_stride(steps)
        runs: list[list[int]] = []
        for a, b in gaps_at(steps, st):
            x = a
            while x <= b:  # the records inside a gap split it (a run of steps never recorded at all is one)
                nxt = min((r for r in logged if x <= r <= b and (r - a) % st == 0), default=None)
                end = b if nxt is None else nxt - st
                if end >= x:
                    runs.append([x, end])
                if nxt is None:
                    break
                x = nxt + st
        if runs:
            out[name] = (st, runs)
    return out


@pytest.mark.parametrize("seed", [18, 19, 20])
def test_key_cadences_agree_with_the_rule_key_by_key(seed: int) -> None:
    """The vectorised rule against the one-key functions plot uses and the rule in plain Python, on random keys:
    cadences, first and last logs off the cadence, lost steps, lost lines, one or two steps, repeated steps."""
    rng = random.Random(seed)
    rows = []
    keys = {}
    dropped = set(rng.sample(range(0, 400), 40))  # lines lost: no key at these steps (most keys)
    for k in range(300):
        every = rng.choice([1, 2, 3, 5, 10, 25, 50])
        n = rng.choice([1, 2, 3, 4, 5, 8, 20, 60])
        start = rng.choice([0, 1, 3, 10])
        steps = [start + every * i for i in range(n)]
        if rng.random() < 0.3:
            steps = [0, *steps] if start else [1, *steps]
        if rng.random() < 0.3:
            steps.append(steps[-1] + rng.randint(1, 7))
        if len(steps) > 4 and rng.random() < 0.5:
            for _ in range(rng.randint(1, 3)):
                steps.remove(rng.choice(steps[1:-1]))
        if rng.random() < 0.3:
            steps = [x for x in steps if x not in dropped] or steps
        steps = sorted(set(steps))
        name = f"k{k:03d}"
        keys[name] = steps
        rows += [(name, s) for s in steps] + [(name, steps[0])]  # a step logged twice (two shards)
    strides, cadences = key_cadences(pl.DataFrame(rows, schema=["key", "step"], orient="row"))
    assert strides == {k: scalar_stride(v) for k, v in keys.items()}
    truth = lost_by_the_rule(keys)
    assert {k: (c.stride, c.gaps) for c in cadences for k in c.keys} == truth
    # step_gaps: read at the stride given, exactly the steps some key lost.
    for every in (1, 5, 10):
        runs = lost_step_runs(cadences, every)
        told = {x for a, b in runs for x in range(a, b + 1, every)}
        assert told == {x for st, gs in truth.values() for a, b in gs for x in range(a, b + 1, st)}


def test_a_run_that_lost_a_third_of_its_lines_says_them(tmp_path: Path) -> None:
    """Every third line lost, all keys (a review): the keys miss a third of their cadence, too many to be a key's
    own losses; the steps at which no key was logged are lost lines, said."""
    root = tmp_path / "lines"
    with RunWriter(root, name="lines") as w:
        w.log_samples(0, [{"reward": 1.0}])
        for s in range(0, 60):
            if s % 3 != 2:
                w.log_scalars(s, {"loss": 1.0, "kl": 0.1})
    sc = scalars_json(root)
    assert sc["step_gaps"] == [[x, x] for x in range(2, 58, 3)], sc
    assert sc["key_gaps"][0]["keys"] == 2 and sc["key_gaps"][0]["names"] == ["kl", "loss"]


def test_a_key_logged_in_bursts_loses_nothing(tmp_path: Path) -> None:
    """A StatsTracker ``/nonfinite`` key written where steps had NaN, in two bursts (5-9, 20-24): not 'gaps 10-19'
    (a review: one run of missed steps per ten held passed the first rule)."""
    root = tmp_path / "bursts"
    with RunWriter(root, name="bursts") as w:
        w.log_samples(0, [{"reward": 1.0}])
        for s in range(0, 30):
            rec = {"loss": 1.0}
            if 5 <= s <= 9 or 20 <= s <= 24:
                rec["reward/nonfinite"] = 1.0
            w.log_scalars(s, rec)
    assert scalars_json(root)["key_gaps"] == []


def test_an_evaluation_file_that_lost_records_is_said_whatever_the_train_file_logged(tmp_path: Path) -> None:
    """An eval job's own file every 100 steps that lost 200 and 300, beside a train file logged at every step: its
    lost records are said (the train records at 200 and 300 are another file's), and step_gaps read at stride 1
    hold the two steps, not [200, 300] (101 steps)."""
    root = tmp_path / "eval"
    root.mkdir()
    (root / "scalars.p0.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1001)))
    evals = [s for s in range(0, 1001, 100) if s not in (200, 300)]
    (root / "scalars.p1.jsonl").write_text("".join(json.dumps({"step": s, "eval/acc": 0.5}) + "\n" for s in evals))
    sc = scalars_json(root)
    assert sc["stride"] == 1 and sc["step_gaps"] == [[200, 200], [300, 300]], sc
    assert sc["key_gaps"] == [
        {"stride": 100, "gaps": [[200, 300]], "keys": 1, "names": ["eval/acc"], "file": "scalars.p1.jsonl"}
    ]


@pytest.mark.parametrize("steps", [[5], [], [3, 3]])
def test_one_step_or_none(steps: list[int]) -> None:
    strides, cadences = key_cadences(
        pl.DataFrame({"key": ["a"] * len(steps), "step": steps}, schema={"key": pl.String, "step": pl.Int64})
    )
    assert cadences == [] and strides == ({"a": 1} if steps else {})


def test_inspect_run_api_keeps_the_keys(tmp_path: Path) -> None:
    root = mixed_run(tmp_path / "api")
    shard = root / "scalars.p0.jsonl"
    shard.write_text("".join(x for x in shard.read_text().splitlines(keepends=True) if '"step": 100,' not in x))
    r = inspect_run(open_run(root))
    assert sorted(k for c in r.scalars.key_gaps for k in c.keys) == ["eval/acc", "kl", "train/loss"]
    assert r.scalars.step_gaps == [[100, 100]]


def test_steps_near_the_ends_of_int64_are_measured_in_python() -> None:
    """Differences beyond int64 (numpy would wrap them): the one-key rule, in Python integers."""
    big = 2**63 - 1
    a, b = [-(2**63), 0, 10, 20, 30], [0, big - 30, big - 20, big - 10, big]
    rows = [("a", s) for s in a] + [("b", s) for s in b]
    strides, cadences = key_cadences(pl.DataFrame(rows, schema={"key": pl.String, "step": pl.Int64}, orient="row"))
    assert strides == {"a": scalar_stride(a), "b": 10}
    assert {k: (c.stride, c.gaps) for c in cadences for k in c.keys} == lost_by_the_rule({"a": a, "b": b})


@pytest.mark.parametrize(
    ("steps", "stride", "gaps"),
    [
        ([1, 10, 20], 10, []),  # a first log at step 1 (HF's logging_first_step), at step 20: was 17 steps missing
        ([0, 10, 15], 10, []),  # a final log off the cadence
        ([0, 5, 15, 20], 5, [[10, 10]]),
        ([0, 10, 30, 40], 10, [[20, 20]]),
        ([0, 10, 30], 10, [[20, 20]]),  # three steps, and no key at 20: a lost line (a review: was never said)
        ([1, 20, 30, 40, 50], 10, [[10, 10]]),  # was "step 11 missing": counted from the first log, off the cadence
        ([1, 10, 30, 40, 50, 55], 10, [[20, 20]]),
        ([0, 1, 3, 5, 7, 9, 11], 1, [[2, 2], [4, 4], [6, 6], [8, 8], [10, 10]]),  # no key there: lines lost
        ([*range(0, 40), 45], 1, [[40, 44]]),
    ],
)
def test_a_first_log_off_the_cadence_neither_makes_gaps_nor_moves_them(
    steps: list[int], stride: int, gaps: list[list[int]]
) -> None:
    assert scalar_stride(steps) == stride
    strides, cadences = key_cadences(pl.DataFrame({"key": ["k"] * len(steps), "step": steps}))
    assert strides == {"k": stride} and [c.gaps for c in cadences] == ([gaps] if gaps else [])


def event_run(root: Path) -> Path:
    """``loss`` at every step but 95 (a line lost past the last NaN count), ``reward/nonfinite`` where steps had NaN."""
    with RunWriter(root, name="event") as w:
        w.log_samples(0, [{"reward": 1.0}])
        for s in range(0, 100):
            rec = {"loss": 1.0} if s != 95 else {}  # a line lost past the last NaN count
            if s in (0, 1, 2, 9, 12, 17, 18, 23, 24, 25, 60, 61, 90):
                rec["reward/nonfinite"] = 2.0
            if rec:
                w.log_scalars(s, rec)
    return root


def test_a_key_logged_at_some_steps_only_has_no_gaps(tmp_path: Path) -> None:
    """StatsTracker's ``<key>/nonfinite``, written at the steps that had NaN: was "gaps 3-8, 10, 12-15, ..." in
    red on the bundled debate_grpo; a key every 10 that lost a step beside it is still said."""
    sc = scalars_json(event_run(tmp_path / "event"))
    assert sc["key_gaps"] == [
        {"stride": 1, "gaps": [[95, 95]], "keys": 1, "names": ["loss"], "file": "scalars.p0.jsonl"}
    ], sc


def test_plot_says_a_key_of_some_steps_only_is_not_missing_steps(tmp_path: Path) -> None:
    """plot --what scalars, inspect's rule: the bundled run's ``train/reward/nonfinite`` was "gaps: steps 3..8,
    10, 12..15, ... missing"; a key of a cadence still says its lost step."""
    from runlog.plots import figures as F
    from runlog.plots import make_figure

    fig = make_figure(open_run(event_run(tmp_path / "event")), "scalars", window=1)
    notes = {ax.get_title(): F.note_text(ax) for ax in fig.axes if ax.get_title()}
    want = "logged at 13 steps in 0..90; at the others its file has records without it (not judged lost)"
    assert " ".join(notes["reward/nonfinite"].split()) == want, notes  # wrapped under the panel
    assert "step 95 missing" in notes["loss"], notes


def test_plot_says_lost_lines_as_inspect_does(tmp_path: Path) -> None:
    """Every third line lost: the panels say the lost steps (a review: 'at some steps only, none missing')."""
    from runlog.plots import figures as F
    from runlog.plots import make_figure

    root = tmp_path / "lines"
    with RunWriter(root, name="lines") as w:
        w.log_samples(0, [{"reward": 1.0}])
        for s in range(0, 30):
            if s % 3 != 2:
                w.log_scalars(s, {"loss": 1.0})
    fig = make_figure(open_run(root), "scalars", window=1)
    [note] = [F.note_text(ax) for ax in fig.axes if ax.get_title() == "loss"]
    assert note.startswith("gaps: steps 2, 5, 8") and "missing" in note, note


def test_files_that_follow_one_another_are_one_stream(tmp_path: Path) -> None:
    """A run resumed into a new file that lost 480..499, and scalars written one file per step that lost 5 and 40
    (a review: judged file by file, neither was ever found; the plot said none missing)."""
    root = tmp_path / "resumed"
    root.mkdir()
    (root / "scalars.p0.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(480)))
    (root / "scalars.p1.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(500, 1000))
    )
    sc = scalars_json(root)
    assert sc["step_gaps"] == [[480, 499]], sc
    assert sc["key_gaps"][0]["file"] == "scalars.p0.jsonl ... scalars.p1.jsonl (2 files)"


def test_processes_writing_at_once_are_judged_each_on_its_own(tmp_path: Path) -> None:
    """Rank 1 lost step 7 while rank 0 logged it: said, with rank 1's file."""
    root = tmp_path / "ranks"
    root.mkdir()
    for rank in (0, 1):
        steps = [s for s in range(20) if not (rank == 1 and s == 7)]
        text = "".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in steps)
        (root / f"scalars.p{rank}.jsonl").write_text(text)
    sc = scalars_json(root)
    assert sc["step_gaps"] == [[7, 7]] and sc["key_gaps"][0]["file"] == "scalars.p1.jsonl", sc


def test_one_line_off_the_cadence_mid_run_is_no_stride_of_its_own(tmp_path: Path) -> None:
    """A run every 10 that logged once at 505 (a resume): stride 10, nothing lost (was stride 5 and 99 lost steps
    5, 15, ...); a step lost later in it is still said."""
    assert scalar_stride([*range(0, 501, 10), 505, *range(510, 1001, 10)]) == 10
    root = tmp_path / "resume"
    root.mkdir()
    steps = [*range(0, 501, 10), 505, *(s for s in range(510, 1001, 10) if s != 700)]
    (root / "scalars.p0.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in steps))
    sc = scalars_json(root)
    assert sc["stride"] == 10 and sc["step_gaps"] == [[700, 700]], sc


def test_the_vectorised_mode_rule_is_scalar_strides() -> None:
    """Long keys with a few steps off their cadence, lost steps and ties of differences: key_cadences' strides are
    scalar_stride's, key by key."""
    rng = random.Random(5)
    keys = {}
    for k in range(400):
        every = rng.choice([2, 5, 10, 25])
        steps = list(range(0, every * rng.randint(20, 80), every))
        for _ in range(rng.choice([0, 1, 2, 3, 6])):
            steps.append(rng.randint(0, steps[-1]))
        for _ in range(rng.choice([0, 1, 2])):
            steps.remove(rng.choice(steps[1:-1]))
        keys[f"k{k}"] = sorted(set(steps))
    rows = [(k, s) for k, v in keys.items() for s in v]
    strides, _ = key_cadences(pl.DataFrame(rows, schema=["key", "step"], orient="row"))
    assert strides == {k: scalar_stride(v) for k, v in keys.items()}
    cadenced = sum(st in (2, 5, 10, 25) for st in strides.values())
    assert cadenced > 150, cadenced  # the rule is exercised: many keys keep their cadence through an odd step
