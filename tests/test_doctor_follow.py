"""``runlog doctor RUN --follow --fail-on error``: exits 1 as soon as an error-severity finding appears in a run
another process is writing; ends with 0 at --idle-exit when none does; a file still being copied is not a
failure; --fail-on sets the exit code without --follow too."""

from __future__ import annotations

import json
import shutil
import time

from watch_helpers import Lines, Trainer, runlog, written_run

from conftest import ROOT


def _events(line: str) -> dict:
    return json.loads(line)


def test_follow_exits_1_as_soon_as_an_error_appears(tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(run)
    for _ in range(3):
        trainer.step()
    doctor = runlog(
        "doctor",
        str(run),
        "--follow",
        "--fail-on",
        "error",
        "--format",
        "json",
        "--interval",
        "0.2",
        "--idle-exit",
        "60",
    )
    try:
        out = Lines(doctor.stdout)
        trainer.step("nan")  # rewards that turned NaN (steps 3 and 4): an error from the second NaN step
        trainer.step("nan")
        t0 = time.monotonic()
        finding = _events(out.wait(lambda line: _events(line)["event"] == "finding"))
        assert finding["kind"] == "nan_rewards" and finding["severity"] == "error" and finding["onset_step"] == 3
        assert _events(out.wait(lambda line: _events(line)["event"] == "end"))["reason"] == "failing"
        assert doctor.wait(timeout=15) == 1
        assert time.monotonic() - t0 < 15  # at once, not at --idle-exit
    finally:
        trainer.kill()
        doctor.kill()
    assert "Traceback" not in doctor.stderr.read()


def test_follow_ends_with_0_when_the_run_stays_healthy(tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(run)
    trainer.step()
    doctor = runlog("doctor", str(run), "--follow", "--fail-on", "error", "--interval", "0.2", "--idle-exit", "2")
    try:
        trainer.step()
        trainer.step()
        trainer.kill()  # the writer dies mid-run: the run goes idle
        assert doctor.wait(timeout=20) == 0
    finally:
        trainer.kill()
        doctor.kill()
    # The killed writer is said when the follow stops (an audit: it ended idle without a word).
    [line] = doctor.stdout.read().splitlines()
    assert line.startswith("finding info data_problem step -: writer_not_closed: no process has closed its writer")
    assert doctor.stderr.read().strip() == "stopped: idle"


def test_a_file_being_copied_does_not_fail_but_one_that_stays_corrupt_does(tmp_path):
    run = tmp_path / "run"
    written_run(run, 3)
    name = "samples/train/step_00000002.p0.parquet"
    whole = (run / name).read_bytes()
    (run / name).write_bytes(whole[:100])  # torn
    follow = ["doctor", str(run), "--follow", "--fail-on", "error", "--format", "json", "--interval", "0.2"]
    doctor = runlog(*follow, "--settle", "30", "--idle-exit", "1")
    out = Lines(doctor.stdout)
    out.wait(lambda line: "incomplete" in line)
    (run / name).write_bytes(whole)  # the copy completes
    assert doctor.wait(timeout=30) == 0
    assert _events(out.wait(lambda line: _events(line)["event"] == "end"))["reason"] == "idle"
    (run / name).write_bytes(whole[:100])  # and now it stays torn
    doctor = runlog(*follow, "--settle", "0.5", "--idle-exit", "20")
    out = Lines(doctor.stdout)
    finding = _events(out.wait(lambda line: _events(line)["event"] == "finding"))
    assert finding["kind"] == "data_problem" and finding["severity"] == "error" and finding["onset_step"] == 2
    assert doctor.wait(timeout=15) == 1


def test_follow_on_a_run_deleted_is_one_line_and_exit_1(tmp_path):
    run = tmp_path / "run"
    written_run(run, 2, "nan")
    doctor = runlog("doctor", str(run), "--follow", "--fail-on", "never", "--interval", "0.2")
    out = Lines(doctor.stdout)
    assert out.wait(lambda line: line.startswith("finding error nan_rewards"))  # it is following now
    shutil.rmtree(run)
    assert doctor.wait(timeout=15) == 1
    err = doctor.stderr.read()
    assert err.count("\n") == 1 and err.startswith("Error: ") and "gone" in err and "Traceback" not in err


def test_fail_on_sets_the_exit_code_without_follow(cli):
    run = ROOT / "sample_runs" / "debate_grpo"
    assert cli("doctor", run).exit_code == 1  # a NaN-rewards warning
    assert cli("doctor", run, "--fail-on", "error").exit_code == 0
    assert cli("doctor", run, "--fail-on", "never").exit_code == 0


def test_each_gap_and_each_unreadable_file_is_its_own_finding():
    """Two gaps (or two corrupt files) are two findings: ``--follow`` reported only the first of each kind,
    the second taken for the first seen again (every gap had the key (step_gaps, None, None))."""
    from runlog.analysis.doctor import DoctorConfig
    from runlog.watch.findings import DoctorWatch, issue_finding
    from runlog.watch.live import Issue

    watch = DoctorWatch("unused", DoctorConfig())
    gap3 = Issue("step_gap", "split train", "step 3 missing", 3, "warning")
    gap9 = Issue("step_gap", "split train", "step 9 missing", 9, "warning")
    bad3 = Issue("unreadable", "samples/train/step_3.parquet", "truncated", 3, "error")
    bad7 = Issue("unreadable", "samples/train/step_7.parquet", "truncated", 7, "error")
    first = watch.report([issue_finding(gap3), issue_finding(bad3)])
    later = watch.report([issue_finding(i) for i in (gap3, gap9, bad3, bad7)])
    assert [e.data["onset_step"] for e in first] == [3, 3]
    assert [(e.data["kind"], e.data["onset_step"]) for e in later] == [("step_gaps", 9), ("data_problem", 7)]
