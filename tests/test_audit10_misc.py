"""Tenth audit, small items found by hand: what a figure's axes say is what they count."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install 'runlog[plot]'")

import runlog  # noqa: E402
from runlog import open_run  # noqa: E402
from runlog.plots import make_figure  # noqa: E402


def _ticks_are_whole(ax) -> bool:  # noqa: ANN001
    fig = ax.figure
    fig.canvas.draw()
    ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    return bool(ticks) and all(float(t).is_integer() for t in ticks)


@pytest.mark.parametrize("what", ["hist", "reward"])
def test_a_count_axis_of_few_samples_is_ticked_at_whole_numbers(tmp_path, what):
    """Three samples at a step: the histogram's 'samples' axis was ticked 0.0, 0.5, ... 3.0."""
    with runlog.RunWriter(tmp_path / "r", name="r", roles=["solver"], durable=False) as w:
        for step in range(2 if what == "hist" else 1):
            rewards = [0.1, 0.1, 0.9] if what == "hist" else [0.1 * i for i in range(9)] + [0.15, 0.25]
            w.log_samples(step, [{"reward": r, "roles": {"solver": {"reward": r}}} for r in rewards])
    fig = make_figure(open_run(tmp_path / "r"), what)
    counted = [ax for ax in fig.axes if ax.get_ylabel() == "samples"]
    assert counted
    assert all(_ticks_are_whole(ax) for ax in counted), [list(ax.get_yticks()) for ax in counted]


def _speaker_run(root):  # noqa: ANN001, ANN202
    """Messages that name their speakers (``name``) with no roles in a manifest."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "samples" / "train").mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "run_id": "d", "name": "d"}))
    msg = pa.list_(pa.struct([("role", pa.string()), ("name", pa.string()), ("content", pa.string())]))
    turns = [
        {"role": "user", "name": None, "content": "q"},
        {"role": "assistant", "name": "prover", "content": "x y"},
        {"role": "assistant", "name": "critic", "content": "ok"},
    ]
    t = pa.table(
        {
            "schema_version": pa.array([2, 2], pa.int32()),
            "step": [0, 0],
            "split": ["train", "train"],
            "sample_id": ["a", "b"],
            "reward": [1.0, 0.0],
            "messages": pa.array([turns, turns], msg),
        }
    ).replace_schema_metadata({"runlog.schema_version": "2"})
    pq.write_table(t, root / "samples" / "train" / "step_00000000.p0.parquet")
    return root, [m["name"] or m["role"] for m in turns if m["role"] != "user"]  # the speakers role:NAME can read


def test_an_unknown_speaker_lists_the_speakers_of_the_messages(tmp_path, cli):
    """A run without manifest roles whose messages name their speakers: the error said the roles were
    '(none recorded)', naming nobody the user could pick."""
    root, speakers = _speaker_run(tmp_path / "r")
    res = cli("metrics", "diversity", root, "--text", "role:provr")
    assert res.exit_code == 2, res.output
    assert "(did you mean 'prover'?)" in res.output
    assert f"the turns it can read there are spoken by {', '.join(speakers)}" in res.output
    assert "none recorded" not in res.output
    ok = cli("metrics", "diversity", root, "--text", "role:prover", "--format", "json")
    assert ok.exit_code == 0, ok.output


# ---- a new user's mistakes and fleets (the tenth new-user walk) -------------------------------------------------

import json  # noqa: E402
import shutil  # noqa: E402

import polars as pl  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from conftest import SAMPLE_RUNS  # noqa: E402


@pytest.fixture
def fleet(tmp_path):  # noqa: ANN001, ANN201
    root = tmp_path / "fleet"
    for name in ("debate_grpo", "jaxarc"):
        shutil.copytree(SAMPLE_RUNS / name, root / name)
    return root


@pytest.mark.parametrize("which", ["diversity", "format"])
def test_metrics_of_a_fleet_names_the_run_that_has_no_row(cli, fleet, which):
    """jaxarc (scalars only) was left out of a fleet's metrics without a word, exit 0."""
    r = cli("metrics", which, f"{fleet}/*", "--by", "step", "--format", "json")
    assert r.exit_code == 0, r.output
    runs = {row["run"] for row in json.loads(r.stdout)}
    assert runs == {"debate_grpo"}
    assert "run(s) with no row, not in the table: jaxarc (`runlog metrics " in r.stderr


@pytest.mark.parametrize("command", [["summarize"], ["metrics", "diversity"], ["metrics", "format"]])
def test_a_fleet_where_no_run_has_a_row_is_a_usage_error(cli, fleet, command):
    """Header-only tables with exit 0 (one such run alone is exit 2)."""
    for by in (["--by", "run"], ["--by", "role"] if command == ["summarize"] else []):
        r = cli(*command, f"{fleet}/jax*", *by, "--format", "csv")
        assert r.exit_code == 2, (by, r.output)
        assert r.stdout == ""
        assert "no run of the fleet has a row: jaxarc" in r.stderr


def test_dash_output_is_stdout_and_a_table_is_no_pdf(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = SAMPLE_RUNS / "debate_grpo"
    r = cli("summarize", run, "--by", "role", "-o", "-", "--format", "csv")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("split,role,reward_mean")
    assert not (tmp_path / "-").exists()
    r = cli("summarize", run, "-o", "t.pdf")
    assert r.exit_code == 2 and "-o t.pdf: this command does not write .pdf" in r.stderr
    assert not (tmp_path / "t.pdf").exists()
    r = cli("report", run, "-o", "-")
    assert r.exit_code == 2 and "-o -: this command writes a file" in r.stderr


def test_diff_suggests_the_role_and_lists_each_runs_steps(cli):
    a, b = SAMPLE_RUNS / "debate_grpo", SAMPLE_RUNS / "flink_mixed"
    r = cli("diff", a, a, "--role", "solverr")
    assert r.exit_code == 2 and "(did you mean 'solver'?)" in r.stderr
    r = cli("diff", a, b, "--steps", "900:1000", "--split", "eval")
    assert r.exit_code == 2
    eval_a = sorted({pq.read_table(f, columns=["step"])["step"][0].as_py() for f in (a / "samples" / "eval").iterdir()})
    assert f"debate_grpo: {eval_a[0]}..{eval_a[-1]} every 8 (eval)" in r.stderr, r.stderr


def test_an_unknown_layout_names_its_option_and_the_near_miss(cli):
    r = cli("summarize", SAMPLE_RUNS / "debate_grpo", "--layout", "flnk")
    assert r.exit_code == 2
    assert "--layout: unknown layout 'flnk'" in r.stderr and "(did you mean 'flink'?)" in r.stderr


def test_a_runs_file_line_that_matches_nothing_is_named_with_its_line(cli, tmp_path):
    listing = tmp_path / "runs.txt"
    listing.write_text(f"{SAMPLE_RUNS / 'debate_grpo'}\n\n# a comment\nno*such*\n")
    r = cli("summarize", "--runs", listing, "--by", "run")
    assert r.exit_code == 2
    assert f"--runs {listing}: line 4: no*such*: matches no run" in r.stderr


def test_a_probe_cache_entry_that_drops_a_file_without_a_word_is_probed_again(cli, tmp_path, _probe_cache):
    """An entry edited (or damaged) to say a good file is unreadable, with no problem: its 32 rows were left out
    of every figure, exit 0, nothing said."""
    import os
    import time

    run = tmp_path / "run"
    shutil.copytree(SAMPLE_RUNS / "debate_grpo", run)
    hour_ago = time.time() - 3600
    for p in run.rglob("*"):
        os.utime(p, (hour_ago, hour_ago))
    files = sorted((run / "samples" / "train").glob("*.parquet"))
    values = [v for f in files for v in pq.read_table(f, columns=["reward"])["reward"].to_pylist()]
    truth = sum(1 for v in values if v is not None and v == v)  # valid: neither null nor NaN
    assert cli("summarize", run, "--by", "split").exit_code == 0
    [probes] = list((_probe_cache / "probes").glob("*.json"))
    entry = json.loads(probes.read_text())
    entry["files"][files[3].relative_to(run).as_posix()]["info"]["readable"] = False
    probes.write_text(json.dumps(entry))
    r = cli("summarize", run, "--by", "split", "--format", "json")
    assert r.exit_code == 0, r.output
    [train] = [row for row in json.loads(r.stdout) if row["split"] == "train"]
    assert train["reward_count"] == truth


def test_render_role_on_steps_without_per_role_data_is_no_match_not_no_roles(cli):
    """flink_mixed's steps 0..9 are Flink v0 (no per-role data); 10..19 have solver, verifier, judge: the error
    said 'this run's roles are (none recorded)'."""
    run = SAMPLE_RUNS / "flink_mixed"
    r = cli("render-trajectory", run, "--role", "solver", "--split", "train", "--steps", "0:9")
    assert r.exit_code == 1, r.output
    assert "no sample matches the selectors" in r.stderr and "none recorded" not in r.stderr
    r = cli("render-trajectory", run, "--role", "solvr", "--split", "train", "--steps", "15")
    assert r.exit_code == 2 and "(did you mean 'solver'?)" in r.stderr
    r = cli("render-trajectory", SAMPLE_RUNS / "debate_grpo", "--sample-id", "nosuch")
    assert r.exit_code == 2 and "--sample-id: unknown sample id 'nosuch'" in r.stderr


def test_doctor_says_whose_infinite_rewards_are_those_of_samples_without_roles(tmp_path):
    """Samples without per-role data beside roles: 'infinite rewards in 1 step(s)' said nothing of whose."""
    from runlog.analysis.doctor import diagnose

    with runlog.RunWriter(tmp_path / "r", name="r", roles=["solver"], durable=False) as w:
        for step in range(3):
            rows = [{"reward": 0.5, "roles": {"solver": {"reward": 0.5}}} for _ in range(4)]
            rows.append({"reward": float("inf") if step == 1 else 0.2})  # no per-role data
            w.log_samples(step, rows)
    findings = [f for f in diagnose(open_run(tmp_path / "r")).findings if f.kind == "inf_rewards"]
    [mine] = [f for f in findings if f.role is None and f.evidence.get("subject") != "total"]
    assert mine.onset_step == 1
    assert "infinite rewards of samples without per-role data (their total reward) in 1 step(s)" in mine.message


def test_a_file_of_two_splits_holds_its_steps_in_inspect_doctor_and_watch(tmp_path, cli):
    """A train file with 3 eval rows (each split counts as its own, docs/format.md): inspect filed its steps under
    a split '?', called train step 4 missing ('no file holds them'), doctor too; watch --split eval said the run
    had no eval split while showing its step."""
    import subprocess
    import sys

    import pyarrow as pa

    from runlog.analysis.doctor import diagnose

    run = tmp_path / "run"
    shutil.copytree(SAMPLE_RUNS / "debate_grpo", run)
    shutil.rmtree(run / "samples" / "eval")
    path = run / "samples" / "train" / "step_00000004.p0.parquet"
    table = pq.read_table(path)
    splits = table["split"].to_pylist()
    splits[-3:] = ["eval"] * 3
    table = table.set_column(table.schema.get_field_index("split"), "split", pa.array(splits, table["split"].type))
    pq.write_table(table.replace_schema_metadata(pq.read_metadata(path).metadata), path)
    truth: dict[str, set[int]] = {}
    for f in (run / "samples" / "train").glob("*.parquet"):
        for row in pq.read_table(f, columns=["split", "step"]).to_pylist():
            truth.setdefault(row["split"], set()).add(row["step"])
    assert truth["eval"] == {4} and truth["train"] == set(range(32))
    r = cli("inspect", run, "--format", "json")
    report = json.loads(r.stdout)
    assert report["steps"] == {"eval": [4, 4], "train": [0, 31]}
    assert report["step_gaps"] == {"eval": [], "train": []}
    assert not [f for f in diagnose(open_run(run)).findings if f.kind == "step_gaps"]
    w = subprocess.run(
        [sys.executable, "-m", "runlog", "watch", str(run), "--once", "--split", "eval", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    events = [json.loads(line) for line in w.stdout.splitlines()]
    assert not [e for e in events if e["event"] == "note" and "no step of split eval" in e["message"]]
    assert [(e["step"], e["rows"]) for e in events if e["event"] == "step"] == [(4, 3)]


def test_doctor_parses_each_flink_conversation_once(monkeypatch):
    """doctor asks for the texts four ways (diversity per group and per role, format, reasoning): each parsed
    every Flink conversation once or twice (100 us a sample in Python: 11 parses of each sample, 20+ minutes on
    a million rows). Kept parsed for the run's later questions, with the same findings."""
    import runlog.formats.flink_text as ft
    from runlog.analysis.doctor import diagnose

    run = SAMPLE_RUNS / "flink_mixed"
    before = [(f.kind, f.role, f.message) for f in diagnose(open_run(run)).findings]
    calls = []
    real = ft.conversation
    monkeypatch.setattr(ft, "conversation", lambda *a: calls.append(a) or real(*a))
    after = [(f.kind, f.role, f.message) for f in diagnose(open_run(run)).findings]
    assert after == before
    files = [f for f in (run / "flink_logs").glob("*.parquet") if "agent" in str(pq.read_schema(f))]
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    assert 0 < len(calls) <= rows, (len(calls), rows)


def test_two_flink_samples_of_one_id_keep_their_own_conversations(tmp_path):
    """The parsed conversations are kept by file, id and the texts' hashes: two samples given one id are two."""
    import pyarrow as pa

    from runlog.analysis.texts import texts_frame

    src = SAMPLE_RUNS / "flink_mixed" / "flink_logs" / "batch_debug_data_train_15.parquet"
    (tmp_path / "run" / "flink_logs").mkdir(parents=True)
    table = pq.read_table(src)
    ids = table["unique_sample_id"].to_pylist()
    ids[1] = ids[0]
    table = table.set_column(table.schema.get_field_index("unique_sample_id"), "unique_sample_id", pa.array(ids))
    pq.write_table(table, tmp_path / "run" / "flink_logs" / src.name)
    run = open_run(tmp_path / "run")
    first = texts_frame(run, "completion")
    again = texts_frame(run, "completion")  # from the kept parses
    assert first["text"].to_list() == again["text"].to_list()
    texts = first.filter(pl.col("sample_id") == ids[0])["text"].to_list()
    assert len(texts) == 2 and texts[0] != texts[1]


def test_a_cut_exception_alone_is_said_on_the_terminal(cli, tmp_path):
    """A 40,000-character traceback is cut (its head and tail kept); with texts short, nothing said it was."""
    trace = "Traceback (most recent call last)\n" + "  frame\n" * 5000 + "ValueError: THE-REAL-ERROR"
    with runlog.RunWriter(tmp_path / "r", name="r", roles=["solver"], durable=False) as w:
        w.log_samples(0, [{"reward": 1.0, "completion": "short", "exception": trace}])
    r = cli("render-trajectory", tmp_path / "r", "--step", "0")
    assert r.exit_code == 0, r.output
    assert "THE-REAL-ERROR" in r.stdout and r.stdout.count("frame") < 5000
    assert "texts longer than 20,000 characters are cut on the terminal" in r.stderr


def test_the_kept_flink_conversations_stay_within_their_cap(monkeypatch):
    """Past MEMO_BYTES bytes, conversations are parsed again rather than kept (memory stays bounded), and
    the texts are the same."""
    import runlog.formats.flink_text as ft
    from runlog.analysis.texts import texts_frame

    run = SAMPLE_RUNS / "flink_mixed"
    whole = texts_frame(open_run(run))
    monkeypatch.setattr(ft, "MEMO_BYTES", 20_000)
    capped = open_run(run)
    assert texts_frame(capped).equals(whole)
    assert texts_frame(capped).equals(whole)
    tracker = capped.ctx.cache["flink_fallbacks"]
    assert 0 < tracker.memo_bytes <= 20_000 and len(tracker.memo) > 0


def test_a_process_behind_whose_writer_is_open_is_not_called_killed(tmp_path, cli):
    """Process 0 closed minutes ago; process 1's writer is open (its lock held) at an earlier step: not in
    lockstep, still writing. inspect --strict called it 'stopped behind ... killed?' and exited 1."""
    import os
    import time

    run = tmp_path / "run"
    w0 = runlog.RunWriter(run, name="ab", process_index=0, durable=False)
    w1 = runlog.RunWriter(run, name="ab", process_index=1, durable=False)
    try:
        for s in range(12):
            w0.log_samples(s, {"reward": [1.0]})
            if s <= 5:
                w1.log_samples(s, {"reward": [1.0]})
        w0.close()
        w1.flush()
        old = time.time() - 300
        os.utime(run / ".writer.p0.json", (old, old))
        r = cli("inspect", run, "--strict")
        assert r.exit_code == 0, r.output
        assert "killed?" not in r.output
        assert "writer: process 1 still writing (its writer is open); closed by process 0" in r.output
        # doctor says it in the same words (it said 'still writing, or killed')
        d = cli("doctor", run, "--format", "json")
        found = json.loads(d.stdout)["findings"]
        said = [f["message"] for f in found if f["evidence"].get("problem_kind") == "writer_not_closed"]
        assert said and all("still writing (its writer is open)" in m for m in said), said
    finally:
        w1.close()
    # Killed (no lock held): the warning stands.
    (run / ".writer.p1.json").write_text((run / ".writer.p1.json").read_text().replace('"closed"', '"open"'))
    os.utime(run / ".writer.p0.json", (old, old))
    r = cli("inspect", run, "--strict")
    assert r.exit_code == 1 and "process 1 did not close its writer and stopped behind process 0" in r.output


def test_flink_role_assignments_written_as_a_struct_render(tmp_path, cli):
    """role_assignments as a Parquet struct (pyarrow's type for a dict): the kept-parse key hashed it and every
    command that reads texts stopped with 'internal error: TypeError: unhashable type' (exit 3)."""
    import pyarrow as pa

    (tmp_path / "r" / "flink_logs").mkdir(parents=True)
    rows = []
    for i in range(4):
        turns = [{"role": "user", "content": f"Q{i % 2}"}, {"role": "assistant", "content": f"A{i}"}]
        rows.append(
            {
                "schema_version": 1,
                "env_name": "e",
                "trajectory": f"<|user|>\nQ{i % 2}\n<|assistant|>\nA{i}\n",
                "agent_trajectories": json.dumps([{"agent_id": "agent_0", "turns": turns}]),
                "role_assignments": {"agent_0": "solver"},
                "exception_info": None,
                "reward": float(i),
                "reward_metrics": None,
                "reward_text_info": "",
                "unique_sample_id": f"s{i}",
                "solver_reward": float(i),
                "solver_kl": 0.1,
            }
        )
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "r" / "flink_logs" / "batch_debug_data_train_1.parquet")
    r = cli("render-trajectory", tmp_path / "r", "--step", "1", "--format", "json")
    assert r.exit_code == 0, r.output
    shown = {c["sample_id"]: c for c in json.loads(r.stdout)}
    said = [(t["speaker"], t["content"]) for t in shown["s3"]["turns"] if t["role"] == "assistant"]
    assert said == [("solver", "A3")]
