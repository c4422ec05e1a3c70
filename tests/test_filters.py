"""Filters that match nothing are usage errors naming what the run has, on every command; ``--steps`` has one
syntax everywhere (``A:B``, ``A:``, ``:B``, ``N`` and comma lists of these) and selects exactly those steps."""

from __future__ import annotations

import json

import polars as pl
import pytest

from runlog import RunWriter, open_run
from runlog.analysis.check import check_filters, describe_steps
from runlog.analysis.filters import Filters, StepRange
from runlog.errors import UsageError

from conftest import SAMPLE_RUNS

DEBATE = SAMPLE_RUNS / "debate_grpo"
FLINK = SAMPLE_RUNS / "flink_mixed"
ROLES = ["solver", "verifier"]
TRAIN_STEPS = range(12)
EVAL_STEPS = (0, 4, 8)


def _rows(step: int, n: int, split: str) -> list[dict]:
    return [
        {
            "reward": float(i) / n,
            "group_id": f"{split}-{step}-g{i // 2}",
            "prompt": f"p{i // 2}",
            "completion": f"<think>t{step}.{i}</think><answer>{i % 3}</answer>",
            "solver_reward": float(i),
            "verifier_reward": float(-i),
            "solver_kl": 0.01,
            "verifier_kl": 0.02,
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Train steps 0..11 with 2 + step % 3 samples each (so that a count tells which steps were taken), eval
    steps 0, 4, 8 with 3 samples; two roles; scalars train/loss and train/lr at every train step."""
    root = tmp_path_factory.mktemp("filters") / "run"
    with RunWriter(root, name="filters", roles=ROLES, durable=False) as w:
        for step in TRAIN_STEPS:
            w.log_samples(step, _rows(step, 2 + step % 3, "train"), split="train")
            if step in EVAL_STEPS:
                w.log_samples(step, _rows(step, 3, "eval"), split="eval")
            w.log_scalars(step, {"train/loss": 1.0 / (step + 1), "train/lr": 1e-4})
    return root


def _files(root, split: str | None = None) -> pl.DataFrame:
    """Every sample row of the run, read with polars straight from the Parquet files (not with runlog)."""
    pattern = f"samples/{split or '*'}/*.parquet"
    return pl.concat([pl.read_parquet(p) for p in sorted(root.glob(pattern))], how="diagonal_relaxed")


def _json(r) -> list[dict]:
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


# ---------------------------------------------------------------------------------------------------------
# StepRange: one syntax
# ---------------------------------------------------------------------------------------------------------


def test_step_range_comma_lists_single_steps_and_open_ranges():
    r = StepRange.parse("0,5,10:12")
    assert r.items == ((0, 0), (5, 5), (10, 12))
    assert (r.first, r.last) == (0, 12)  # overall bounds, for pruning files
    assert r.select(range(20)) == [0, 5, 10, 11, 12]
    assert [s for s in range(20) if r.contains(s)] == [0, 5, 10, 11, 12]
    frame = pl.DataFrame({"step": list(range(20))})
    assert frame.filter(r.expr())["step"].to_list() == [0, 5, 10, 11, 12]
    assert StepRange.parse("7").select(range(20)) == [7]
    assert StepRange.parse("3, 15:").select(range(20)) == [3, 15, 16, 17, 18, 19]
    assert StepRange.parse(":2,18").select(range(20)) == [0, 1, 2, 18]
    open_low = StepRange.parse(":2,18")
    assert (open_low.first, open_low.last) == (None, 18)
    assert StepRange.parse(None).expr() is None and StepRange.parse(":").expr() is None
    assert StepRange(3, 4).select(range(10)) == [3, 4]  # the constructor of one range still works
    for bad in ("1,,2", "a", "5:3", "1,x:4", ",", "3,"):
        with pytest.raises(UsageError, match="--steps"):
            StepRange.parse(bad)


def test_describe_steps_names_each_split():
    assert describe_steps({"train": set(range(32)), "eval": {0, 8, 16, 24}}) == "0..31 (train), 0..24 every 8 (eval)"
    assert describe_steps({"eval": {0, 1, 5}}) == "0..5 (eval, 3 steps)"
    assert describe_steps({None: {4}}) == "4"


# ---------------------------------------------------------------------------------------------------------
# A value that matches nothing: exit 2 and what the run has, on every command
# ---------------------------------------------------------------------------------------------------------

SPLIT_MSG = "--split 'trian': this run has split(s) eval, train (did you mean 'train'?)"
ROLE_MSG = "--role 'solvr': this run's roles are solver, verifier, judge (did you mean 'solver'?)"
STEPS_MSG = "--steps 900:999: this run has steps 0..31 (train), 0..24 every 8 (eval)"
KEYS_MSG = "--keys 'nope/*': matches none of the 34 scalar key(s) of this run: debate/kl/judge, "

TYPOS = [
    (["summarize"], ["--split", "trian"], SPLIT_MSG),
    (["summarize"], ["--role", "solvr"], ROLE_MSG),
    (["summarize"], ["--steps", "900:999"], STEPS_MSG),
    (["summarize"], ["--steps", "0,900"], "--steps 0,900: 900 matches no step; this run has steps 0..31 (train)"),
    (["summarize"], ["--split", "eval", "--steps", "5"], "--steps 5: this run has steps 0..24 every 8 (eval)"),
    (["summarize"], ["--steps=-1"], "--steps -1: steps are numbered from 0 and none is negative; this run has"),
    (["summarize"], ["--by", "step", "--role", "solvr"], ROLE_MSG),
    (["summarize"], ["--correlations", "--split", "trian"], SPLIT_MSG),
    (["summarize"], ["--correlations", "--steps", "900:999"], STEPS_MSG),
    (["summarize"], ["--scalars", "--keys", "nope/*"], KEYS_MSG),
    (["summarize"], ["--scalars", "--steps", "900:999"], "--steps 900:999: this run's scalar metrics have steps 0..31"),
    (["summarize"], ["--scalars", "--split", "train"], "--split and --role do not apply to --scalars"),
    (["summarize"], ["--keys", "debate/*"], "--keys, --alias and --aliases go with --scalars"),
    (["metrics", "diversity"], ["--split", "trian"], SPLIT_MSG),
    (["metrics", "diversity"], ["--steps", "900:999"], STEPS_MSG),
    (["metrics", "diversity"], ["--text", "role:solvr"], "--text role:solvr: no message of the selected samples"),
    (["metrics", "format"], ["--split", "trian"], SPLIT_MSG),
    (["metrics", "format"], ["--steps", "900:999"], STEPS_MSG),
    (["metrics", "format"], ["--per-sample", "--steps", "900:999"], STEPS_MSG),
    (["doctor"], ["--split", "trian"], SPLIT_MSG),
    (["doctor"], ["--set", "split=trian"], SPLIT_MSG),
    (["render-trajectory"], ["--steps", "900:999"], "--steps 900:999: this run has steps 0..31 (train)"),
]


@pytest.mark.parametrize("command, args, message", TYPOS, ids=[" ".join(c + a) for c, a, _ in TYPOS])
def test_a_filter_that_matches_nothing_is_a_usage_error(cli, command, args, message):
    r = cli(*command, DEBATE, *args)
    assert r.exit_code == 2, r.stdout
    assert r.stderr.startswith("Error: ") and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert r.stdout == ""


PLOT_TYPOS = [
    (["--split", "trian"], SPLIT_MSG),
    (["--what", "hist", "--steps", "900:999"], "--steps 900:999: this run has steps 0..31 (train)"),
    (["--what", "hist", "--split", "eval", "--steps", "5"], "--steps 5: this run has steps 0..24 every 8 (eval)"),
    (["--what", "scalars", "--keys", "nope/*"], KEYS_MSG),
    (["--what", "reward", "--steps", "5"], "--steps goes with --what hist"),
    (["--what", "reward", "--keys", "train/*"], "--keys goes with --what scalars"),
    # it was checked, then ignored: every key drawn under --split eval
    (["--what", "scalars", "--split", "eval"], "--split does not apply to --what scalars"),
]


@pytest.mark.parametrize("args, message", PLOT_TYPOS, ids=[" ".join(a) for a, _ in PLOT_TYPOS])
def test_plot_filter_that_matches_nothing(cli, tmp_path, args, message):
    out = tmp_path / "p.png"
    r = cli("plot", DEBATE, *args, "-o", out)
    assert r.exit_code == 2 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not out.exists()


def test_report_split_that_matches_nothing(cli, tmp_path):
    out = tmp_path / "r.html"
    r = cli("report", DEBATE, "--split", "trian", "-o", out)
    assert r.exit_code == 2 and SPLIT_MSG in r.stderr and not out.exists(), r.stderr


def test_flink_role_typo_is_a_usage_error_not_an_internal_error(cli):
    r = cli("summarize", FLINK, "--by", "role", "--role", "solvr")
    assert r.exit_code == 2, r.stderr
    assert "--role 'solvr': this run's roles are solver, verifier, judge" in r.stderr
    assert "internal error" not in r.stderr


def test_flink_steps_and_split_typos(cli):
    r = cli("summarize", FLINK, "--steps", "900:999")
    assert r.exit_code == 2 and "this run has steps 0..19 (train), 0..10 every 10 (eval)" in r.stderr, r.stderr
    r = cli("summarize", FLINK, "--split", "trian")
    assert r.exit_code == 2 and "this run has split(s) eval, train" in r.stderr


def test_scalars_only_run_says_it_has_no_samples(cli):
    r = cli("summarize", SAMPLE_RUNS / "jaxarc", "--steps", "900")
    assert r.exit_code == 2 and "--steps 900: this run has no per-sample data" in r.stderr, r.stderr


def test_fleet_value_that_matches_nothing_in_any_run(cli):
    fleet = [SAMPLE_RUNS / "debate_grpo", SAMPLE_RUNS / "flink_mixed"]
    r = cli("summarize", *fleet, "--by", "run", "--role", "solvr")
    assert r.exit_code == 2 and "--role 'solvr': the fleet's roles are solver, verifier, judge" in r.stderr
    r = cli("summarize", *fleet, "--by", "run", "--split", "trian")
    assert r.exit_code == 2 and "--split 'trian': the runs of the fleet have split(s) eval, train" in r.stderr
    r = cli("summarize", *fleet, "--by", "run", "--steps", "900:999")
    assert r.exit_code == 2 and "--steps 900:999: the runs of the fleet have steps 0..31 (train)" in r.stderr
    r = cli("metrics", "diversity", *fleet, "--split", "trian")
    assert r.exit_code == 2 and "the runs of the fleet have split(s) eval, train" in r.stderr
    # Steps 20..31 exist in debate_grpo only (flink_mixed stops at 19): the fleet has them, no error.
    r = cli("summarize", *fleet, "--by", "run", "--split", "train", "--steps", "25:31", "-f", "json")
    counts = {row["run"]: row["reward_count"] for row in _json(r)}
    assert counts["debate_grpo"] > 0 and counts.get("flink_mixed", 0) == 0


def test_check_filters_on_a_written_run(run_dir):
    run = open_run(run_dir)
    check_filters(run, Filters.from_options(["train", "eval"], "0,11", ["solver"]))  # all present: no error
    with pytest.raises(UsageError, match=r"--steps 12: this run has steps 0\.\.11 \(train\), 0\.\.8 every 4 \(eval\)"):
        check_filters(run, Filters.from_options(None, "12"))
    with pytest.raises(UsageError, match=r"--steps 1:3: this run has steps 0\.\.8 every 4 \(eval\)"):
        check_filters(run, Filters.from_options(["eval"], "1:3"))
    with pytest.raises(UsageError, match=r"--role 'judge': this run's roles are solver, verifier"):
        check_filters(run, Filters.from_options(None, None, ["judge"]))


# ---------------------------------------------------------------------------------------------------------
# Comma lists and single steps select exactly those steps (counted independently with polars)
# ---------------------------------------------------------------------------------------------------------

STEP_CASES = [("0,5,10:11", [0, 5, 10, 11]), ("1,3:4,9:", [1, 3, 4, 9, 10, 11]), (":1,6", [0, 1, 6])]


@pytest.mark.parametrize("text, steps", STEP_CASES, ids=[t for t, _ in STEP_CASES])
def test_summarize_steps_select_exactly_those_steps(cli, run_dir, text, steps):
    truth = _files(run_dir, "train").filter(pl.col("step").is_in(steps))
    expected = dict(truth.group_by("step").agg(pl.len()).iter_rows())
    rows = _json(cli("summarize", run_dir, "--split", "train", "--by", "step", "--steps", text, "-f", "json"))
    assert {r["step"]: r["reward_count"] for r in rows} == expected
    assert sorted(expected) == steps
    single = _json(cli("summarize", run_dir, "--split", "train", "--by", "step", "--steps", steps[1], "-f", "json"))
    assert [(r["step"], r["reward_count"]) for r in single] == [(steps[1], expected[steps[1]])]
    per_role = _json(cli("summarize", run_dir, "--split", "train", "--by", "role", "--steps", text, "-f", "json"))
    assert {r["role"]: r["reward_count"] for r in per_role} == {"solver": truth.height, "verifier": truth.height}


@pytest.mark.parametrize("text, steps", STEP_CASES, ids=[t for t, _ in STEP_CASES])
def test_metrics_steps_select_exactly_those_steps(cli, run_dir, text, steps):
    truth = _files(run_dir, "train").filter(pl.col("step").is_in(steps))
    expected = dict(truth.group_by("step").agg(pl.len()).iter_rows())
    # --over set: every text of the step counts (within groups, a group of one text is left out of the figures).
    div = ("metrics", "diversity", run_dir, "--split", "train", "--over", "set")
    rows = _json(cli(*div, "--steps", text, "-f", "json"))
    assert {r["step"]: r["texts"] for r in rows} == expected
    single = _json(cli(*div, "--steps", steps[1], "-f", "json"))
    assert [(r["step"], r["texts"]) for r in single] == [(steps[1], expected[steps[1]])]
    rows = _json(cli("metrics", "format", run_dir, "--split", "train", "--steps", text, "--per-sample", "-f", "json"))
    assert len(rows) == truth.height and sorted({r["step"] for r in rows}) == steps


def test_steps_over_both_splits(cli, run_dir):
    """Without --split, a step list takes the listed steps of every split."""
    truth = _files(run_dir).filter(pl.col("step").is_in([4, 5]))
    rows = _json(cli("summarize", run_dir, "--by", "split", "--by", "step", "--steps", "4,5", "-f", "json"))
    got = {(r["split"], r["step"]): r["reward_count"] for r in rows}
    assert got == {(sp, st): n for sp, st, n in truth.group_by("split", "step").agg(pl.len()).iter_rows()}
    assert got == {("train", 4): 3, ("train", 5): 4, ("eval", 4): 3}


def test_render_steps_list_and_single_step(cli, run_dir):
    truth = _files(run_dir, "train").filter(pl.col("step").is_in([2, 7]))
    rows = _json(
        cli("render-trajectory", run_dir, "--steps", "2,7", "--where", "reward >= 0", "--limit", "100", "-f", "json")
    )
    assert sorted(r["sample_id"] for r in rows) == sorted(truth["sample_id"].to_list())
    one = _json(cli("render-trajectory", run_dir, "--steps", "7", "--best", "1", "-f", "json"))
    assert [r["step"] for r in one] == [7]
    old = _json(cli("render-trajectory", run_dir, "--step", "7", "--best", "1", "-f", "json"))
    assert old == one  # the old spelling still works
    r = cli("render-trajectory", run_dir, "--steps", "2", "--step", "7")
    assert r.exit_code == 2 and "same option" in r.stderr


def test_plot_hist_steps_list_and_range(cli, run_dir, tmp_path):
    from runlog.cli.plot_cmd import _checked

    run = open_run(run_dir)
    assert _checked(run, Filters.from_options(None, "2,5:6,11"), [], "think-answer-strict").steps == [2, 5, 6, 11]
    assert _checked(run, Filters.from_options("eval", "3:8"), [], "think-answer-strict").steps == [4, 8]
    for steps in ("0,16,31", "0,10:12"):
        out = tmp_path / f"h{steps}.png"
        r = cli("plot", DEBATE, "--what", "hist", "--steps", steps, "-o", out)
        assert r.exit_code == 0 and out.stat().st_size > 0, r.stderr


def test_short_options_mean_one_thing(cli, tmp_path):
    """-w is --window wherever it exists (plot's --what has no short option)."""
    from typer.main import get_command

    from runlog.cli.app import app

    meaning: dict[str, set[str]] = {}

    def walk(cmd):
        for p in cmd.params:
            longs = [o for o in p.opts if o.startswith("--")]
            for o in [*p.opts, *p.secondary_opts]:
                if len(o) == 2 and o.startswith("-") and longs:
                    meaning.setdefault(o, set()).add(longs[0])
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(get_command(app))
    assert {k: v for k, v in meaning.items() if len(v) > 1} == {}
    assert meaning["-w"] == {"--window"}
    out = tmp_path / "k.png"
    assert cli("plot", DEBATE, "--what", "kl", "-w", "3", "-o", out).exit_code == 0 and out.exists()


def test_comma_list_exception_rate_is_exact_where_footers_give_it(cli, tmp_path):
    """Flink v1 Parquet: the exception rate comes from footer null counts, file by file; a comma list must take
    only the listed steps' files (not every file between the first and the last)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conftest import flink_table

    runs = []
    for name in ("a", "b"):
        logs = tmp_path / name / "flink_logs"
        logs.mkdir(parents=True)
        for step in range(6):
            t = flink_table(step, n=4)
            if step not in (0, 5):  # failures only at steps 0 and 5
                t = t.set_column(t.column_names.index("exception_info"), "exception_info", pa.nulls(4, pa.string()))
            pq.write_table(t, logs / f"batch_debug_data_train_{step}.parquet")
        runs.append(tmp_path / name)
    files = sorted(runs[0].glob("flink_logs/*.parquet"))
    step_of = {p: int(p.stem.rsplit("_", 1)[1]) for p in files}
    truth = pl.concat(
        [pl.read_parquet(p).select(pl.lit(step_of[p]).alias("step"), "exception_info") for p in files]
    ).filter(pl.col("step").is_in([0, 5]))
    expected = truth["exception_info"].is_not_null().mean()
    assert expected == 0.25
    for args in ([runs[0]], [*runs, "--by", "run"]):
        rows = _json(cli("summarize", *args, "--by", "role", "--steps", "0,5", "-f", "json"))
        rates = {v for r in rows for k, v in r.items() if k.endswith("exception_rate")}
        assert rates == {expected}, rows


def test_a_role_only_another_process_wrote_is_not_a_typo(tmp_path, cli):
    """Process 0 writes the manifest (roles: solver); process 1 logs critic_reward. ``--role critic`` was
    refused ("this run's roles are solver") though summarize --by role prints a critic row."""
    from runlog import RunWriter

    for p, role in ((0, "solver"), (1, "critic")):
        with RunWriter(tmp_path / "r", process_index=p, durable=False) as w:
            for s in range(2):
                w.log_samples(s, {"reward": [1.0, 2.0], f"{role}_reward": [1.0 + p, 3.0]})
    r = cli("summarize", tmp_path / "r", "--role", "critic", "-f", "json")
    assert r.exit_code == 0, r.output
    [row] = json.loads(r.stdout)
    assert row["role"] == "critic" and row["reward_count"] == 4 and row["reward_mean"] == 2.5
    r = cli("summarize", tmp_path / "r", "--role", "critc")
    assert r.exit_code == 2 and "this run's roles are solver, critic" in r.stderr
