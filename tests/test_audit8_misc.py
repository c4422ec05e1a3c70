"""Audit findings of 2026-12-06 (afternoon) fixed outside the commands' own test files: a scalars record with
thousands of keys, and a second scalars shard of one process left in a sub-folder.

Expected figures are worked out from the lines each test writes (plain ``json``), never from runlog's reading."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from runlog import open_run
from runlog.analysis.scalars import summarize_scalars


def write(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_a_record_with_thousands_of_keys_is_read_whole(tmp_path: Path) -> None:
    """Per-layer gradient norms: one record of 3,000 keys (the fast reader looked each column's type up through
    a schema rebuilt per column: 4,000 keys took 52 s in discovery, for every command; now about a second)."""
    keys = {f"layer{i}/grad_norm": i / 7 for i in range(3000)}
    write(tmp_path / "r" / "scalars.p0.jsonl", [{"step": 0, "loss": 1.0}, {"step": 1, **keys}])
    table = summarize_scalars(open_run(tmp_path / "r"))
    assert table.height == 3001
    got = dict(zip(table["key"], table["last"], strict=True))
    assert all(got[k] == pytest.approx(v) for k, v in keys.items()) and got["loss"] == 1.0


@pytest.mark.parametrize("copy", ["old/scalars.p0.jsonl", "backup/scalars.p0.jsonl"])
def test_a_second_scalars_shard_of_one_process_is_said(tmp_path: Path, copy: str) -> None:
    """A shard left in a sub-folder (a copy, an old attempt) claims the run's process 0: both are read and merged
    as shards, so a key both log at a step is averaged over the two (train/loss last 50.125 where the run's own is
    0.25). Inspect said nothing (exit 0); now a warning names the copy and the run's own shard."""
    run = tmp_path / "r"
    own = [{"step": s, "train/loss": 1.0 / (s + 1)} for s in range(4)]
    write(run / "scalars.p0.jsonl", own)
    write(run / copy, [{"step": s, "train/loss": 100.0} for s in range(4)])
    r = open_run(run)
    said = [(p.path, p.message) for p in r.warnings]
    assert said == [
        (
            copy,
            "scalars of the same process 0 as scalars.p0.jsonl: both files are read and merged as shards, so if one "
            "is a copy of the other its values are counted twice (counts summed twice, the process weighed twice in a "
            "step's mean)",
        )
    ]
    last = summarize_scalars(r).filter(pl.col("key") == "train/loss")["last"].item()
    assert last == pytest.approx((100.0 + own[-1]["train/loss"]) / 2)  # merged as shards: averaged
    write(run / copy, [])
    (run / copy).unlink()
    assert not open_run(run).warnings  # the run alone: nothing to say


def test_inspect_strict_fails_on_the_second_shard(tmp_path: Path, cli) -> None:
    run = tmp_path / "r"
    write(run / "scalars.p0.jsonl", [{"step": 0, "loss": 1.0}])
    write(run / "old" / "scalars.p0.jsonl", [{"step": 0, "loss": 3.0}])
    r = cli("inspect", run, "--strict", "--format", "json")
    assert r.exit_code == 1
    [p] = json.loads(r.stdout)["problems"]
    assert p["path"] == "old/scalars.p0.jsonl" and p["message"].startswith("scalars of the same process 0")


def _on_a_terminal(args: list[str]) -> bytes:
    """The command's stdout when it is a terminal (a pty), read whole."""
    import os
    import pty
    import subprocess
    import sys

    from watch_helpers import child_env

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runlog", *args], stdout=follower, stderr=subprocess.DEVNULL, env=child_env()
    )
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(60) == 0
    return out


HOSTILE_KEY = "loss\x1b]0;pwned\x07\x1b[2J\u202e"


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_csv_and_json_on_a_terminal_never_carry_the_datas_escapes(tmp_path: Path, fmt: str, cli) -> None:
    """``summarize -f csv`` (and diff's) wrote a key holding an OSC title sequence to the terminal as it was:
    the window was retitled. On a terminal the data's control characters are shown (``\\x1b``); a pipe gets the
    data as it is."""
    run = tmp_path / "r"
    write(run / "scalars.p0.jsonl", [{"step": s, HOSTILE_KEY: s / 2} for s in range(3)])
    shown = _on_a_terminal(["summarize", str(run), "--scalars", "-f", fmt]).decode()
    assert "\x1b]" not in shown and "\x07" not in shown and "\x1b[2J" not in shown and "\u202e" not in shown
    if fmt == "csv":
        assert "\\x1b]0;pwned\\x07" in shown
    else:  # JSON's own escapes, which read back as the key
        assert [r["key"] for r in json.loads(shown)] == [HOSTILE_KEY]
    piped = cli("summarize", run, "--scalars", "-f", fmt).stdout
    if fmt == "csv":
        assert HOSTILE_KEY in piped  # the data as it is
    else:
        assert [r["key"] for r in json.loads(piped)] == [HOSTILE_KEY]


def test_one_message_of_many_files_is_one_line_and_cannot_hide_the_one_that_explains_a_figure(capsys) -> None:
    """40 files each missing an optional column filled the 40-line cap, and the warning that a step was read twice
    (the reason a run looked ahead) was one of the lines cut. The same message of many files is now one line
    naming the first and counting the others; errors come first."""
    from runlog.cli.common import MAX_PROBLEM_LINES, report_problems
    from runlog.formats.base import WARNING, Problem

    missing = [Problem(f"step_{i:02d}.parquet", WARNING, "missing column reward_metrics") for i in range(45)]
    twice = Problem("step_15_crashed.parquet", WARNING, "the same split 'train', step 15 as step_15.parquet")
    error = Problem("step_30.parquet", "unreadable", "truncated")
    assert report_problems([*missing, twice, error]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) <= MAX_PROBLEM_LINES
    assert lines == [
        "error: step_30.parquet: truncated",
        "warning: step_00.parquet and 44 more file(s): missing column reward_metrics",
        "warning: step_15_crashed.parquet: the same split 'train', step 15 as step_15.parquet",
    ]


def test_hidden_files_that_are_no_writers_never_fail_a_finished_run(tmp_path: Path, cli) -> None:
    """upload-wandb's own state file (``.runlog-wandb.json``, written in the run by docs/wandb.md's command) and a
    ``.DS_Store`` were taken for a writer's temporary file: ``doctor --follow`` failed a finished run (exit 1, "a
    writer stopped mid-file (killed?)"). A writer's leftover ``.step_*.tmp`` still does."""
    from runlog.sinks.state import STATE_NAME
    from runlog.watch.poll import UPLOAD_STATE, is_temporary
    from runlog.writer import RunWriter

    assert UPLOAD_STATE == STATE_NAME
    run = tmp_path / "r"
    with RunWriter(run, name="r") as w:
        for step in range(3):
            w.log_samples(step, [{"reward": i / 4, "completion": f"a{i}"} for i in range(4)])
    (run / STATE_NAME).write_text('{"runs": {}}')
    (run / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    assert not is_temporary(STATE_NAME) and not is_temporary(".DS_Store")
    follow = ["doctor", run, "--follow", "--format", "json", "--interval", "0.2", "--settle", "0.3", "--idle-exit", "2"]
    r = cli(*follow)
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert "leftover_temporary" not in r.stdout
    (run / "samples" / "train" / ".step_00000003.p0.parquet.tmp").write_bytes(b"PAR1")
    r = cli(*follow)
    assert r.exit_code == 1 and "leftover_temporary" in r.stdout


def test_plot_diff_of_a_fleet_folder_says_how_plot_takes_it(tmp_path: Path, cli) -> None:
    """``plot A --diff runs`` said summarize's fix (``'runs/*' --by run``), an option plot --diff lacks."""
    import shutil

    from conftest import SAMPLE_RUNS

    pytest.importorskip("matplotlib")
    for name in ("a", "b"):
        shutil.copytree(SAMPLE_RUNS / "jaxarc", tmp_path / "runs" / name)
    r = cli("plot", SAMPLE_RUNS / "debate_grpo", "--diff", tmp_path / "runs", "-o", tmp_path / "d.png")
    assert r.exit_code == 2 and "--by run" not in r.stderr
    assert f"(runlog plot {SAMPLE_RUNS / 'debate_grpo'} --diff '{tmp_path / 'runs'}/*')" in r.stderr


@pytest.mark.parametrize("inside", ["samples", "samples/train"])
def test_a_folder_inside_a_native_run_says_to_pass_the_runs_folder(cli, inside: str) -> None:
    """``inspect RUN/samples`` said its 68 step files "match no known layout" (they are runlog's own)."""
    from conftest import SAMPLE_RUNS

    path = SAMPLE_RUNS / "debate_grpo" / inside
    n = sum(1 for _ in path.rglob("step_*.parquet"))
    r = cli("inspect", path)
    assert r.exit_code == 2 and "match no known layout" not in r.stderr
    assert "a runlog step file outside a samples/SPLIT/ folder (its split is that folder's name): pass the" in r.stderr
    assert f"; {n - 1} other file(s) alike;" in r.stderr


def test_options_that_would_be_ignored_are_refused_or_said(cli) -> None:
    """``plot --what kl --spec open-r1`` drew KL without a word about the spec; ``summarize --window 3`` made the
    table per step without a note (``--by group`` says so)."""
    from conftest import SAMPLE_RUNS

    run = SAMPLE_RUNS / "debate_grpo"
    r = cli("plot", run, "--what", "kl", "--spec", "open-r1", "-o", "x.png")
    assert r.exit_code == 2 and r.stderr.strip() == "Error: --spec goes with --what format (not --what kl)"
    r = cli("summarize", run, "--window", "3", "--split", "train", "-f", "csv")
    assert r.exit_code == 0 and r.stdout.splitlines()[0].startswith("role,step,")
    assert "note: --window 3 averages over steps: the table is per step (step added)" in r.stderr


def test_render_json_tells_a_nan_reward_from_a_null_one(cli) -> None:
    """JSON has no NaN: a failed grade (NaN) and a reward never given (null) were both ``null``, with nothing
    to tell them apart. ``not_finite`` names each non-finite value by its path (pyarrow's reading of the file
    is the truth here)."""
    import math

    import pyarrow.parquet as pq

    from conftest import SAMPLE_RUNS

    run = SAMPLE_RUNS / "debate_grpo"
    raw = {}
    for f in sorted((run / "samples" / "train").glob("step_00000000.p*.parquet")):
        for row in pq.read_table(f, columns=["sample_id", "reward"]).to_pylist():
            raw[row["sample_id"]] = row["reward"]
    nan = next(s for s, r in raw.items() if r is not None and math.isnan(r))
    r = cli("render-trajectory", run, "--sample-id", nan, "--split", "train", "-f", "json")
    [conv] = json.loads(r.stdout)
    assert conv["reward"]["total"] is None and conv["not_finite"]["reward.total"] == "NaN"
    fine = next(s for s, r in raw.items() if r is not None and math.isfinite(r))
    [conv] = json.loads(cli("render-trajectory", run, "--sample-id", fine, "--split", "train", "-f", "json").stdout)
    assert conv["reward"]["total"] == raw[fine] and conv["not_finite"] == {}


def test_a_huge_text_is_cut_on_the_terminal_and_whole_elsewhere(tmp_path: Path, cli) -> None:
    """A 1 MB completion in the default terminal view (27 s to draw one such sample 12 times): cut at 20,000
    characters, marked, with a note; --format json and --max-chars keep their own rule."""
    from runlog.writer import RunWriter

    big = "A" * 300_000
    with RunWriter(tmp_path / "r", name="r") as w:
        w.log_samples(0, [{"reward": 1.0, "completion": big, "sample_id": "big"}])
    r = cli("render-trajectory", tmp_path / "r")
    assert r.exit_code == 0 and 20_000 <= r.stdout.count("A") < 20_100  # wrapped in lines: counted
    assert "truncated" in r.stdout
    assert "note: texts longer than 20,000 characters are cut on the terminal" in r.stderr
    [conv] = json.loads(cli("render-trajectory", tmp_path / "r", "-f", "json").stdout)
    assert any(t["content"] == big for t in conv["turns"])
    r = cli("render-trajectory", tmp_path / "r", "--max-chars", "500000")
    assert r.stdout.count("A") >= 300_000 and "cut on the terminal" not in r.stderr


def _roles_run(root: Path, verifier_until: int | None) -> Path:
    import numpy as np

    from runlog.writer import RunWriter

    rng = np.random.default_rng(3)
    with RunWriter(root, name="r", roles=["solver", "verifier"]) as w:
        for step in range(40):
            rows = []
            for i in range(16):
                row = {"reward": float(rng.uniform()), "solver_reward": float(rng.uniform()), "solver_kl": 0.01}
                if verifier_until is None or step < verifier_until:
                    row |= {"verifier_reward": float(rng.uniform()), "verifier_kl": 0.02}
                rows.append(row | {"completion": f"a{i} {step}"})
            w.log_samples(step, rows)
    return root


def test_a_role_that_stops_mid_run_is_a_finding_and_its_clean_twin_is_not(tmp_path: Path, cli) -> None:
    """The verifier's rows stop at step 24 of 40: doctor said "healthy" (exit 0) and the report "Healthy", each
    check of the role having seen only the steps it had."""
    r = cli("doctor", _roles_run(tmp_path / "gone", 24), "--format", "json")
    assert r.exit_code == 1
    [f] = [f for f in json.loads(r.stdout)["findings"] if f["evidence"].get("problem_kind") == "role_gone"]
    assert (f["role"], f["onset_step"], f["severity"]) == ("verifier", 24, "warning")
    assert f["evidence"]["last_step"] == 23 and f["evidence"]["steps_without"] == 16
    r = cli("doctor", _roles_run(tmp_path / "clean", None), "--format", "json")
    assert not [f for f in json.loads(r.stdout)["findings"] if f["evidence"].get("problem_kind") == "role_gone"]


def _vf_results(path: Path, errors: list[object]) -> Path:
    recs = []
    for i, err in enumerate(errors):
        rec = {"id": i // 2, "prompt": [{"role": "user", "content": f"q{i // 2}"}], "task": "default"}
        rec |= {"completion": [{"role": "assistant", "content": f"a{i}"}], "reward": float(i % 2)}
        if err is not ...:
            rec["error"] = err
        recs.append(rec)
    return write(path, recs)


def test_failed_rollouts_of_jsonl_layouts_are_counted(tmp_path: Path, cli) -> None:
    """verifiers and NeMo Gym files list no columns (their records are mapped): the exception rate read 0.0
    whatever the data said (1 of 4 failed here), and doctor missed a failure spike. Some vf-eval versions write
    the text "None" on every rollout that did not fail: each was a failure."""
    path = _vf_results(tmp_path / "vf" / "results.jsonl", [..., "Traceback: boom", None, "None"])
    truth = sum(1 for line in path.read_text().splitlines() if json.loads(line).get("error") not in (None, "None"))
    assert truth == 1
    [row] = json.loads(cli("summarize", path.parent, "-f", "json").stdout)
    assert row["sample:exception_rate"] == pytest.approx(truth / 4)
    assert json.loads(cli("inspect", path.parent, "-f", "json").stdout)["exceptions"] == truth
    convs = json.loads(cli("render-trajectory", path.parent, "--exceptions", "-f", "json").stdout)
    assert [c["sample_id"] for c in convs] == ["0:1"]


def test_current_verifiers_metadata_with_env_id_is_claimed(tmp_path: Path, cli) -> None:
    """Current vf-eval writes ``env_id`` (older: ``env``): its metadata.json "matched no known layout"."""
    _vf_results(tmp_path / "r" / "results.jsonl", [..., ...])
    (tmp_path / "r" / "metadata.json").write_text(json.dumps({"env_id": "math", "model": "m", "num_examples": 1}))
    r = json.loads(cli("inspect", tmp_path / "r", "-f", "json").stdout)
    assert not r["problems"] and {f["path"]: f["layout"] for f in r["files"]}["metadata.json"] == "verifiers"


def test_a_trl_reward_column_of_text_is_said_once(tmp_path: Path, cli) -> None:
    """The warning was said once per build of the frame: "and 3 more file(s)" for one file, 9 in doctor."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "r" / "completions"
    d.mkdir(parents=True)
    pq.write_table(
        pa.table({"step": [10] * 2, "prompt": ["p"] * 2, "completion": ["a", "b"], "r1": [1.0, 0.0]}),
        d / "completions_00010.parquet",
    )
    pq.write_table(
        pa.table({"step": [11] * 2, "prompt": ["p"] * 2, "completion": ["a", "b"], "r1": ["1.0", "x"]}),
        d / "completions_00011.parquet",
    )
    for args in (["summarize", "--by", "step"], ["doctor"], ["inspect", "--deep", "-f", "json"]):
        r = cli(args[0], tmp_path / "r", *args[1:])
        said = r.stdout + r.stderr
        assert said.count("reward-function column 'r1' holds text") == 1, (args, said)
        assert "more file(s)" not in said


@pytest.mark.parametrize("offset", [1e6, 1e9])
def test_a_std_on_a_large_offset_keeps_its_digits(tmp_path: Path, cli, offset: float) -> None:
    """Rewards of 1e9 + U(0, 1): polars' one-pass group variance gave a std 2.4e-8 off (relative) where the
    exact one (fractions) is known; computed about the group's mean it is exact to 1e-12."""
    from fractions import Fraction

    import numpy as np

    from runlog.writer import RunWriter

    rng = np.random.default_rng(5)
    values = offset + rng.uniform(size=(6, 16))
    with RunWriter(tmp_path / "r", name="r") as w:
        for step, row in enumerate(values):
            w.log_samples(step, [{"reward": float(v), "completion": "x"} for v in row])
    exact = [Fraction(float(v)) for v in values.ravel()]
    mean = sum(exact) / len(exact)
    want = float(sum((x - mean) ** 2 for x in exact) / (len(exact) - 1)) ** 0.5
    [row] = json.loads(cli("summarize", tmp_path / "r", "--no-cache", "-f", "json").stdout)
    assert row["reward_std"] == pytest.approx(want, rel=1e-12)
    steps = json.loads(cli("summarize", tmp_path / "r", "--by", "step", "--no-cache", "-f", "json").stdout)
    for got, step_values in zip(steps, values, strict=True):
        fr = [Fraction(float(v)) for v in step_values]
        m = sum(fr) / len(fr)
        assert got["reward_std"] == pytest.approx(
            float(sum((x - m) ** 2 for x in fr) / (len(fr) - 1)) ** 0.5, rel=1e-12
        )


def test_a_run_with_its_manifest_only_is_not_called_scalars_only(tmp_path: Path, cli) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "name": "r"}))
    r = cli("summarize", run)
    assert r.exit_code == 0 and "only scalar metrics" not in r.stderr and "no data yet" in r.stderr


def test_a_fleets_lines_each_name_their_run(tmp_path: Path, cli) -> None:
    """Problems of one message were grouped into one line per message: in a fleet (and diff's skipped runs)
    "error: A/... and 2 more file(s)" hid which runs had them."""
    import shutil

    from conftest import SAMPLE_RUNS

    for name in "ABC":
        shutil.copytree(SAMPLE_RUNS / "debate_grpo", tmp_path / name)
        bad = tmp_path / name / "samples" / "train" / "step_00000003.p0.parquet"
        bad.write_bytes(bad.read_bytes()[:100])
    r = cli("summarize", f"{tmp_path}/*", "--by", "run", "-f", "csv")
    for name in "ABC":
        assert f"error: {name}/samples/train/step_00000003.p0.parquet: unreadable Parquet" in r.stderr
    assert "more file(s)" not in r.stderr


def test_a_role_that_scores_every_fourth_step_is_not_gone(tmp_path: Path, cli) -> None:
    import numpy as np

    from runlog.writer import RunWriter

    rng = np.random.default_rng(4)
    with RunWriter(tmp_path / "r", name="r", roles=["solver", "judge"]) as w:
        for step in range(40):
            rows = []
            for _ in range(8):
                row = {"reward": float(rng.uniform()), "solver_reward": float(rng.uniform()), "completion": "x"}
                if step % 4 == 0:
                    row["judge_reward"] = float(rng.uniform())
                rows.append(row)
            w.log_samples(step, rows)
    findings = json.loads(cli("doctor", tmp_path / "r", "--format", "json").stdout)["findings"]
    assert not [f for f in findings if f["evidence"].get("problem_kind") == "role_gone"]


def test_diffs_note_on_a_run_without_roles_names_no_role(tmp_path: Path, cli) -> None:
    """A step whose samples all failed, in runs without roles: the note said "role (unknown)"."""
    import random

    from runlog.writer import RunWriter

    runs = []
    for name, seed in (("a", 1), ("b", 2)):
        rng = random.Random(seed)
        with RunWriter(tmp_path / name, name=name) as w:
            for s in range(20):
                failed = s == 18
                rows = [{"reward": None if failed else rng.random(), "exception": "boom" if failed else None}] * 8
                w.log_samples(s, rows)
        runs.append(tmp_path / name)
    r = cli("diff", *runs)
    notes = [line for line in r.stderr.splitlines() if "end 10..19: 9 of 10" in line]
    assert notes and all("steps holding a valid reward" in n for n in notes) and "(unknown)" not in r.stderr
