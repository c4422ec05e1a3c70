"""Lead's tests for the sixteenth round of audits (a new user's walk through the README and the docs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "sample_runs"


def test_a_misspelt_threshold_gets_a_close_match(cli):
    """`--set kl_raito=2` listed all 26 names with no hint, where every other typo gets one."""
    r = cli("doctor", SAMPLES / "debate_grpo", "--set", "kl_raito=2")
    assert r.exit_code == 2
    assert "unknown threshold 'kl_raito' (did you mean 'kl_ratio'?)" in r.stderr


def test_a_long_option_with_one_dash_is_said_as_such():
    """`-by role` reads as `-b y`: the error named a value, 'y', that the user never typed."""
    proc = subprocess.run(
        [sys.executable, "-m", "runlog", "summarize", str(SAMPLES / "debate_grpo"), "-by", "role"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "'-by' reads as '-b y': a long option takes two dashes, '--by'" in proc.stderr


def test_one_dash_hint_needs_the_quoted_tail(monkeypatch):
    from runlog.cli.common import _one_dash_hint

    monkeypatch.setattr(sys, "argv", ["runlog", "summarize", "RUN", "-by", "role"])
    assert _one_dash_hint("--by 'y': expected one of run, role") != ""
    assert _one_dash_hint("RUN: no such file or directory") == ""


def test_one_step_file_of_a_run_is_said_to_be_read_alone(cli):
    """A step file given as the run: its figures are one step's, and inspect said "run.json lists none" although
    run.json lists three roles (it was not read)."""
    step = SAMPLES / "debate_grpo" / "samples" / "train" / "step_00000003.p0.parquet"
    r = cli("summarize", step, "--format", "json")
    assert r.exit_code == 0
    assert "one file of its run, read alone" in r.stderr
    r = cli("inspect", step)
    assert "no run.json read" in r.stdout and "run.json lists none" not in r.stdout
    whole = cli("summarize", SAMPLES / "debate_grpo", "--format", "json")
    assert "read alone" not in whole.stderr


def test_watch_says_a_plain_warning_once(cli):
    r = cli("watch", SAMPLES / "damaged", "--once")
    line = next(x for x in r.stdout.splitlines() if "notes.txt" in x)
    assert line.startswith("problem warning step - notes.txt: ") and line.count("warning") == 1, line


def _failed_writer_run(root: Path) -> Path:
    """A native run of three steps whose writer's state file says it failed (as a full disk leaves it)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from conftest import native_rows

    (root / "samples" / "train").mkdir(parents=True)
    (root / "run.json").write_text(
        json.dumps({"format": "runlog", "schema_version": 2, "run_id": "wf", "writer": {"state_files": True}})
    )
    for step in range(3):
        pq.write_table(
            pa.Table.from_pylist(native_rows(step, 4)), root / "samples" / "train" / f"step_{step:08d}.p0.parquet"
        )
    state = {
        "process": 0,
        "state": "closed",
        "how": "close",
        "error": "OSError: [Errno 28] No space left on device",
        "last_step": {"train": 2},
    }
    (root / ".writer.p0.json").write_text(json.dumps(state))
    return root


def test_a_failed_writer_is_said_by_every_command_once(tmp_path, cli):
    """summarize printed the steps written before a writer failed as the run, exit 0, nothing said (an audit): what
    the writer had not written is lost, as inspect and doctor said."""
    import json

    run = _failed_writer_run(tmp_path / "run")
    r = cli("summarize", run, "--format", "json")
    assert r.exit_code == 1 and r.stderr.count("the writer of process 0 failed") == 1, r.stderr
    assert json.loads(r.stdout)  # the steps written are still summarised
    r = cli("inspect", run, "--format", "json")
    assert [p["kind"] for p in json.loads(r.stdout)["problems"]] == ["writer_failed"]
    r = cli("doctor", run, "--format", "json")
    kinds = [f["message"].split(":")[0] for f in json.loads(r.stdout)["findings"] if f["kind"] == "data_problem"]
    assert kinds.count("writer_failed") == 1, kinds


def test_a_report_of_a_run_with_no_readable_sample_file_exits_1(tmp_path, cli):
    """The page is written (it says why), but exit 0 passed a CI step that checks only the code (a bad-input audit;
    plot exits 1 then too)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(SAMPLES / "debate_grpo", run)
    for f in (run / "samples").rglob("*.parquet"):
        f.write_bytes(f.read_bytes()[:100])
    out = tmp_path / "r.html"
    r = cli("report", run, "-o", out)
    assert r.exit_code == 1 and out.exists()
    assert "no sample file of this run could be read" in r.stderr


def test_a_report_of_very_many_scalar_keys_draws_and_lists_up_to_its_caps(tmp_path, monkeypatch, figures_not_drawn):
    """500,000 keys: one figure per 12 keys, and the report never ended (a bad-input audit). Past the caps the keys
    are said, with the commands that show them."""
    import json
    import re

    import runlog.report as R
    from runlog import open_run

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "run_id": "k"}))
    lines = [
        {"step": s, "time": s, **{f"ns{n}/k{i}": float(s + i) for n in range(3) for i in range(20)}} for s in (0, 1)
    ]
    (run / "scalars.p0.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    monkeypatch.setattr(R, "MAX_SCALAR_FIGURES", 3)
    monkeypatch.setattr(R, "MAX_SCALAR_ROWS", 25)
    page = R.build_report(open_run(run))
    assert len(set(re.findall(r'id="scalars-\d+-\d+"', page))) == 3
    assert "28 key(s) not drawn" in page  # ns0: 2 figures of 10, ns1: 12 of 20 in the third, ns2: none
    assert "35 key(s) not listed" in page  # 25 of 60 listed
