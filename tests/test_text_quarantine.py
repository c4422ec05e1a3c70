"""A sample file whose text cannot be read but whose numbers can (a corrupt data page in ``completion`` behind an
intact footer) keeps its numbers in every command, whichever reads first, and its texts are said to be left out
(``Run._quarantine_unreadable``: the text columns of that file only). Counts are checked against pyarrow reading
the numeric columns of the files directly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from runlog import open_run
from runlog.analysis.doctor import DoctorConfig, diagnose
from runlog.analysis.series import RunSeries
from runlog.analysis.summarize import summarize
from runlog.analysis.texts import diversity_frame
from runlog.render import Criteria, conversations
from runlog.sinks import plan as P
from runlog.writer import RunWriter
from test_report_audit2 import corrupt_column, three_role_run

BAD = "samples/train/step_00000005.p0.parquet"


def independent_counts(root: Path) -> dict[str, int]:
    """Valid rewards per role over every sample file, read with pyarrow (numbers only)."""
    counts: dict[str, int] = {}
    for f in sorted((root / "samples" / "train").glob("*.parquet")):
        for cell in pq.read_table(f, columns=["roles"]).column("roles").to_pylist():
            for x in cell:
                if x["reward"] is not None and not math.isnan(x["reward"]):
                    counts[x["role"]] = counts.get(x["role"], 0) + 1
    return counts


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    root = three_role_run(tmp_path / "run", steps=12)
    corrupt_column(root / BAD, "completion")
    with pytest.raises(Exception):  # noqa: B017, PT011  (pyarrow's own error: the text cannot be read)
        pq.read_table(root / BAD, columns=["completion"])
    return root


def test_numbers_read_after_the_text_still_count_the_file(damaged: Path) -> None:
    expected = independent_counts(damaged)
    assert expected == {"solver": 96, "verifier": 96, "judge": 96}
    run = open_run(damaged)
    div = diversity_frame(run, ["step"], text="auto")  # the text first: step 5's texts cannot be read
    assert 5 not in div["step"].to_list() and div.height == 11
    df = summarize(run, ["role"])  # then the numbers, in the same Run
    assert dict(zip(df["role"], df["reward_count"], strict=True)) == expected
    [p] = run.problems
    assert p.path == BAD and p.message.startswith("its text could not be read (completion: corrupt data")
    assert p.message.endswith("left out of diversity, format and trajectories; its numbers are counted")
    [f] = [f for f in run.files if f.path == BAD]
    assert f.readable and not f.text_readable and f.unread == ("messages", "completion", "trajectory")


def test_doctor_says_the_file_found_while_reading_texts_and_counts_its_numbers(damaged: Path, cli) -> None:
    run = open_run(damaged)
    s = RunSeries(run)
    result = diagnose(run, DoctorConfig(), series=s)
    [f] = [f for f in result.findings if f.kind == "data_problem"]
    assert f.severity == "error" and BAD in f.message and "its text could not be read" in f.message
    assert s.diversity is not None and 5 not in s.diversity["step"].to_list()
    # The per-step totals (read after the texts: the reward-hacking check) still hold step 5.
    total = s.total
    assert total.filter(total["step"] == 5)["rows"].to_list() == [8]
    r = cli("doctor", damaged, "--format", "json")
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    kinds = [f["kind"] for f in json.loads(r.stdout)["findings"]]
    assert "data_problem" in kinds


def test_render_and_tables_leave_out_the_samples_without_text(damaged: Path) -> None:
    # The best of step 5 by the judge's reward is in the damaged file: the best shown is one that has a text.
    convs, _ = conversations(open_run(damaged), Criteria(steps="5", best=1))
    assert convs == []
    convs, _ = conversations(open_run(damaged), Criteria(steps="4:5", best=2, worst=2))
    assert convs and all(c.step == 4 and c.turns for c in convs)
    plan = P.build_plan(open_run(damaged), P.PlanOptions(metrics=False))
    payloads = {p.step: p for p in plan.payloads()}
    # Step 5's aggregates are there (the file's numbers), its table holds no row of a sample without text.
    assert payloads[5].values["debate/samples"] == 8
    step5 = summarize(open_run(damaged), ["step", "role"]).filter(pl.col("step") == 5)
    for role, mean in zip(step5["role"], step5["reward_mean"], strict=True):
        assert payloads[5].values[f"debate/reward/{role}"] == pytest.approx(mean)
    rows5 = [r for t in payloads[5].tables.values() for r in t.rows]
    rows4 = [r for t in payloads[4].tables.values() for r in t.rows]
    assert rows4 and rows5 == []
    assert any(p.path == BAD and "its text could not be read" in p.message for p in plan.run.problems)


def test_render_counts_matches_whose_text_cannot_be_read_and_names_their_file(damaged: Path, cli) -> None:
    """Step 5's 8 samples match (their numbers read) but cannot be shown: ``--index 0`` on step 5 is not a
    usage error ("only 0 sample(s) selected (0..-1)", the file never named) but exit 1 with the file's problem
    and the count of matches; where others can be shown, the page's "N of M matched" counts all M, and a note
    says how many are not shown."""
    for picker in (["--index", "0"], ["--best", "1"], []):
        r = cli("render-trajectory", damaged, "--steps", "5", *picker, "--no-cache")
        assert r.exit_code == 1, (picker, r.stderr)
        assert f"error: {BAD}: its text could not be read" in r.stderr
        assert "8 sample(s) match the selectors (split train, step 5), but none whose text can be read" in r.stderr
    # Independent count: judge rewards >= 0.8 over every step, read with pyarrow.
    want = [
        (step, sid)
        for step in range(12)
        for sid, roles in zip(
            *pq.read_table(damaged / f"samples/train/step_{step:08d}.p0.parquet", columns=["sample_id", "roles"])
            .to_pydict()
            .values(),
            strict=True,
        )
        if next(x["reward"] for x in roles if x["role"] == "judge") >= 0.8
    ]
    hidden = sum(step == 5 for step, _ in want)
    assert hidden and len(want) > hidden
    r = cli(
        "render-trajectory",
        damaged,
        "--steps",
        "all",
        "--where",
        "role:judge >= 0.8",
        "--limit",
        "500",
        "-f",
        "html",
        "--no-cache",
    )
    assert r.exit_code == 0, r.stderr
    assert f"{len(want) - hidden}</b> of <b>{len(want)}</b> matched" in r.stdout
    note = f"{hidden} of the {len(want)} matching samples are in files whose text could not be read"
    assert note in r.stdout and note in r.stderr


def nan_at_step5_run(root: Path) -> Path:
    """Twelve steps; four of step 5's solver rewards NaN (doctor: ``nan_rewards`` at step 5)."""
    with RunWriter(root, name="n", roles=["solver", "judge"]) as w:
        for step in range(12):
            rows = [
                {
                    "reward": i / 8,
                    "sample_id": f"s{step}-{i}",
                    "group_id": f"s{step}-p{i // 4}",
                    "completion": f"answer {i} at step {step}",
                    "solver_reward": float("nan") if step == 5 and i < 4 else i / 8,
                    "judge_reward": (step + i) % 3 / 3,
                }
                for i in range(8)
            ]
            w.log_samples(step, rows)
    return root


@pytest.mark.parametrize("column", ["sample_id", "group_id"])
def test_every_part_of_a_command_leaves_out_a_file_one_part_found_unreadable(tmp_path: Path, column: str) -> None:
    """A corrupt id column: the file is left out whole. The parts read before it was found had counted it (a
    NaN finding at step 5 beside "step 5 missing"); doctor and the upload plan now read every part again."""
    root = nan_at_step5_run(tmp_path / "run")
    clean = diagnose(open_run(root))
    assert [(f.kind, f.onset_step) for f in clean.findings] == [("nan_rewards", 5)]
    corrupt_column(root / BAD, column)
    run = open_run(root)
    result = diagnose(run)
    kinds = sorted((f.kind, f.onset_step) for f in result.findings)
    assert kinds == [("data_problem", None), ("step_gaps", 5)], kinds
    [p] = [f for f in result.findings if f.kind == "data_problem"]
    assert f"corrupt data in {column}" in p.message and BAD in p.message

    plan = P.build_plan(open_run(root), P.PlanOptions(metrics=False))
    assert 5 not in {p.step for p in plan.payloads()}  # no part holds step 5: aggregates, histograms, tables


def test_a_sample_id_in_a_file_whose_ids_cannot_be_read_is_not_called_unknown(tmp_path: Path, cli) -> None:
    root = three_role_run(tmp_path / "run", steps=12)
    corrupt_column(root / BAD, "sample_id")
    r = cli("render-trajectory", root, "--sample-id", "s5-3")
    assert r.exit_code == 1 and "unknown sample id" not in r.stderr, r.stderr
    assert f"error: {BAD}: corrupt data in sample_id" in r.stderr and "1 file(s) could not be read" in r.stderr
    r = cli("render-trajectory", root, "--sample-id", "s4-3", "--format", "json")
    assert r.exit_code == 0 and [c["sample_id"] for c in json.loads(r.stdout)] == ["s4-3"]


@pytest.mark.parametrize("column", ["completion", "group_id"])
def test_follow_and_watch_say_a_file_only_reading_finds_unreadable(damaged_root_factory, cli, column: str) -> None:
    """Its footer is intact, so the live view's probes see nothing: the check that read it says it."""
    root = damaged_root_factory(column)
    follow = ["--format", "json", "--interval", "0.2", "--settle", "0", "--idle-exit", "1"]
    r = cli("doctor", root, "--follow", "--fail-on", "error", *follow)
    assert r.exit_code == 1, r.output
    events = [json.loads(line) for line in r.stdout.splitlines()]
    [problem] = [e for e in events if e["event"] == "finding" and e["kind"] == "data_problem"]
    assert BAD in problem["message"] and problem["severity"] == "error" and problem["onset_step"] == 5
    r = cli("watch", root, *follow)
    assert r.exit_code == 0 and "Traceback" not in r.stderr
    assert any(BAD in e.get("message", "") for e in map(json.loads, r.stdout.splitlines()) if e["event"] == "finding")


@pytest.fixture
def damaged_root_factory(tmp_path: Path):
    def make(column: str) -> Path:
        root = three_role_run(tmp_path / column, steps=12)
        corrupt_column(root / BAD, column)
        return root

    return make


@pytest.mark.parametrize("column", ["group_id", "sample_id"])
def test_plots_leave_out_a_file_found_unreadable_in_every_panel(damaged_root_factory, column: str) -> None:
    pytest.importorskip("matplotlib")
    from runlog.plots import make_figure

    root = damaged_root_factory(column)
    fig = make_figure(RunSeries(open_run(root)), "hist", steps=[4, 5, 6])  # was: "no such step", or exit 3
    said = {ax.get_title(): [t.get_text() for t in ax.texts] for ax in fig.axes}
    assert any("could not be read" in t for t in said["step 5"]) and not said["step 4"]
    fig = make_figure(RunSeries(open_run(root)), "reward")
    lines = [list(line.get_xdata()) for ax in fig.axes for line in ax.lines if len(line.get_xdata()) > 2]
    # Every line agrees: the reward panels read no sample id (step 5 counted), but read the prompt groups.
    assert lines and all((5 in x) == (column == "sample_id") and 4 in x and 6 in x for x in lines)


def test_report_of_a_run_whose_exception_column_cannot_be_read(damaged_root_factory, cli, tmp_path: Path) -> None:
    """The report's sample counts read ``exception`` outside ``Run.collect``: an internal error (exit 3)."""
    pytest.importorskip("matplotlib")
    root = damaged_root_factory("exception")
    r = cli("report", root, "-o", tmp_path / "r.html")
    assert r.exit_code == 0 and "internal error" not in r.stderr, r.stderr
    assert f"error: {BAD}: corrupt data in exception" in r.stderr
    from test_report_audit2 import text_of

    assert "88 samples in train" in text_of((tmp_path / "r.html").read_text())


def test_upload_says_a_file_only_the_table_rows_found_unreadable(damaged_root_factory, cli) -> None:
    """``env_name`` is read by the table rows only, after the numbers were planned: those numbers hold the file,
    which is said (the file's problem says "file skipped")."""
    root = damaged_root_factory("env_name")
    r = cli("upload-wandb", root, "--project", "p", "--dry-run")
    assert r.exit_code == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"error: {BAD}: corrupt data in env_name" in r.stderr
    assert "1 sample file(s) found unreadable while the table rows were read" in r.stderr
    assert "the numbers of step(s) 5 include them" in r.stderr


@pytest.mark.parametrize("group_ids", [True, False])
def test_an_unreadable_prompt_keeps_the_files_numbers_everywhere(tmp_path: Path, cli, group_ids: bool) -> None:
    """A corrupt page in ``prompt`` alone: summarize, doctor and the report count the file's rewards (pyarrow's
    count), and where groups come from the prompt text its samples are in no group (not a failed read)."""
    root = three_role_run(tmp_path / "run", steps=12, group_ids=group_ids)
    corrupt_column(root / BAD, "prompt")
    with pytest.raises(Exception):  # noqa: B017, PT011  (pyarrow's own error: the prompt cannot be read)
        pq.read_table(root / BAD, columns=["prompt"])
    expected = independent_counts(root)
    assert expected == {"solver": 96, "verifier": 96, "judge": 96}
    run = open_run(root)
    run.collect(lambda: [run.samples])  # every column, the prompt too: the file is found first by a text read
    s = RunSeries(run)
    diagnose(run, DoctorConfig(), series=s)
    per_role = s.per_role.group_by("role").agg(pl.col("reward_count").sum())
    assert dict(zip(per_role["role"], per_role["reward_count"], strict=True)) == expected
    [p] = run.problems
    assert p.message.startswith("its text could not be read (prompt: corrupt data")
    assert p.message.endswith("trajectories (and of prompt groups); its numbers are counted")
    [f] = [f for f in run.files if f.path == BAD]
    assert f.readable and "prompt" in f.unread
    df = summarize(open_run(root), ["role"], prompt_groups=True)
    assert dict(zip(df["role"], df["reward_count"], strict=True)) == expected
    if not group_ids:  # prompt groups from the text: step 5's 8 samples are in none; each other step has 2
        by_step = summarize(open_run(root), ["step"], prompt_groups=True)
        zero = dict(zip(by_step["step"], by_step["zero_adv_frac"], strict=True))
        assert zero[5] is None or math.isnan(zero[5])
        assert all(zero[s] is not None and not math.isnan(zero[s]) for s in range(12) if s != 5)
    other = three_role_run(tmp_path / "other", steps=12, group_ids=group_ids)  # diff pairs prompts across runs
    r = cli("diff", other, root, "--format", "json")
    assert r.exit_code == 1 and "reading the run failed" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert f"{BAD}: its text could not be read (prompt" in r.stderr and json.loads(r.stdout)
    r = cli("report", root, "-o", tmp_path / "r.html")
    assert r.exit_code == 0, r.stderr
    page = (tmp_path / "r.html").read_text()
    assert "file skipped" not in page
    # The report's text metrics read the prompt, also where groups are the group ids (one id holding two prompts
    # is split by prompt: ``texts._mixed_groups``): the page says the file's text could not be read.
    assert "its text could not be read" in page
