"""``runlog watch``: a run followed while another process writes it with RunWriter; each poll reads only new
or changed files; a torn file completed later, a writer killed mid-step and a run folder deleted are each one
line, never a traceback; the live screen draws hostile model text inert at 80 columns."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from runlog import open_run
from runlog.analysis.filters import Filters
from runlog.analysis.summarize import summarize
from runlog.errors import DataError, RunNotFoundError
from runlog.watch import Backoff, LiveRun, RunGoneError, Watcher
from runlog.watch.poll import diff
from runlog.watch.screen import Screen, extremes, sparkline, trend_text
from watch_helpers import HOSTILE, Lines, Trainer, child_env, runlog, written_run

from conftest import ROOT

STEP_FILE = "samples/train/step_{:08d}.p0.parquet"


# -- polling ------------------------------------------------------------------------------------------------
def test_backoff_grows_while_nothing_changes_and_resets_when_something_does():
    b = Backoff(1.0, 8.0)
    assert [b.next(False) for _ in range(5)] == [2.0, 4.0, 8.0, 8.0, 8.0]
    assert b.next(True) == 1.0
    assert Backoff(2.0, 2.0).next(False) == 2.0  # a local folder: no back-off


def test_diff_tells_added_rewritten_and_removed_files():
    before = {"a": (1, (1,)), "b": (2, (2,)), "c": (3, (3,))}
    after = {"a": (1, (1,)), "b": (2, (9,)), "d": (4, None)}
    ch = diff(before, after)
    assert (ch.added, ch.changed, ch.removed) == (("d",), ("b",), ("c",))
    assert not diff(after, after)


class FakeLister:
    """An object store's listing, scripted: each call returns the next result (or raises it)."""

    def __init__(self, results: list) -> None:
        self.results = results
        self.calls = 0

    def __call__(self):
        r = self.results[min(self.calls, len(self.results) - 1)]
        self.calls += 1
        if isinstance(r, Exception):
            raise r
        return r, {}


def test_a_failed_listing_backs_off_and_the_next_poll_tries_again(tmp_path):
    lister = FakeLister([{}, DataError("s3://b/run", "timed out"), DataError("s3://b/run", "timed out"), {}])
    w = Watcher(LiveRun(tmp_path), lister, Backoff(1.0, 30.0))
    assert w.poll() == ([], 2.0)  # nothing there yet: the wait grows
    events, delay = w.poll()
    assert delay == 4.0 and events[0].kind == "note" and "listing failed" in events[0].data["message"]
    assert w.poll()[1] == 8.0
    assert w.poll()[1] == 16.0 and lister.calls == 4


def test_a_run_whose_listing_says_it_is_gone_ends_the_watch(tmp_path):
    with pytest.raises(RunGoneError):
        Watcher(LiveRun(tmp_path), FakeLister([RunNotFoundError("gone")]), Backoff(1, 1)).poll()


def test_each_poll_opens_only_the_new_files_and_the_manifest(tmp_path, monkeypatch):
    """The state after three polls equals a cold read of every step, and each poll opened only what was new."""
    trainer = Trainer(tmp_path / "run")
    try:
        for _ in range(3):
            trainer.step()
        opened: list = []
        import runlog.run as run_module

        real = run_module.open_run

        def spy(path, **kw):
            opened.append(kw.get("only"))
            return real(path, **kw)

        monkeypatch.setattr(run_module, "open_run", spy)
        from runlog.watch.poll import run_lister

        live = LiveRun(tmp_path / "run")
        lister = run_lister(tmp_path / "run")
        events = live.update(*lister())
        assert opened == [None]  # the first poll reads the run as it is
        assert [e.data["step"] for e in events if e.kind == "step"] == [0, 1, 2]
        trainer.step()
        trainer.step()
        events = live.update(*lister())
        assert sorted(opened[1]) == sorted(["run.json", STEP_FILE.format(3), STEP_FILE.format(4)])
        assert [e.data["step"] for e in events if e.kind == "step"] == [3, 4]
        assert live.update(*lister()) == [] and len(opened) == 2  # nothing new: nothing opened
    finally:
        trainer.kill()
    cold = summarize(open_run(tmp_path / "run"), ["step", "role"], filters=Filters(splits=("train",)))
    for row in cold.iter_rows(named=True):
        got = live.steps[row["step"]].roles[row["role"]]
        assert got.reward_mean == row["reward_mean"] and got.kl_mean == row["kl_mean"]


# -- the command, following a writer in another process ----------------------------------------------------
def _json(line: str) -> dict:
    return json.loads(line)


def _event(event: str, **match):
    def pred(line: str) -> bool:
        e = _json(line)
        return e["event"] == event and all(e.get(k) == v for k, v in match.items())

    return pred


def test_watch_json_gives_a_line_per_new_step_while_a_writer_writes(tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(run)
    trainer.step()
    trainer.step()
    watch = runlog("watch", str(run), "--format", "json", "--interval", "0.2", "--idle-exit", "3", "--no-doctor")
    try:
        out = Lines(watch.stdout)
        first = _json(out.wait(_event("step")))
        assert first["step"] == 1  # of the steps already there, only the latest
        for expected in (2, 3, 4):
            assert trainer.step() == expected
            e = _json(out.wait(_event("step")))
            assert e["step"] == expected and e["rows"] == 8 and e["split"] == "train"
            assert [r["role"] for r in e["roles"]] == ["solver", "judge"] and e["rows_per_s"] > 0
            # The figures against the trainer's own values (watch_helpers.CHILD): solver reward (i + s) / (8 + s)
            # for i < 8, KL 0.01 (1 + i); judge 0.5 and 0.02; 8 valid values each.
            solver, judge = e["roles"]
            want = sum((i + expected) / (8 + expected) for i in range(8)) / 8
            assert solver["reward_mean"] == pytest.approx(want, rel=1e-12) and solver["count"] == 8
            assert solver["kl_mean"] == pytest.approx(0.045, rel=1e-12)
            assert (judge["reward_mean"], judge["kl_mean"], judge["count"]) == (0.5, pytest.approx(0.02), 8)
        trainer.kill()  # the writer dies; watch goes on until it has been idle for 3 s
        assert _json(out.wait(_event("end")))["reason"] == "idle"
        assert watch.wait(timeout=15) == 0
    finally:
        trainer.kill()
        watch.kill()
    assert "Traceback" not in watch.stderr.read()


def test_a_torn_file_completed_later_is_a_note_not_a_problem(tmp_path):
    run = tmp_path / "run"
    written_run(run, 4)
    torn = run / STEP_FILE.format(3)
    whole = torn.read_bytes()
    torn.unlink()
    watch = runlog("watch", str(run), "--format", "json", "--interval", "0.2", "--settle", "30", "--no-doctor")
    try:
        out = Lines(watch.stdout)
        out.wait(_event("step", step=2))
        torn.write_bytes(whole[: len(whole) // 2])  # a copy in progress
        assert "incomplete" in _json(out.wait(_event("note", path=STEP_FILE.format(3))))["message"]
        with open(torn, "ab") as fh:  # the copy ends
            fh.write(whole[len(whole) // 2 :])
        assert "complete now" in _json(out.wait(_event("note", path=STEP_FILE.format(3))))["message"]
        assert _json(out.wait(_event("step")))["step"] == 3
    finally:
        watch.kill()
        watch.wait()
    assert not any(_json(x)["event"] == "problem" for x in out.seen)


def test_a_file_that_stays_unreadable_and_a_leftover_temp_file_become_problems(tmp_path):
    run = tmp_path / "run"
    written_run(run, 2)
    watch = runlog("watch", str(run), "--format", "json", "--interval", "0.2", "--settle", "1", "--no-doctor")
    try:
        out = Lines(watch.stdout)
        out.wait(_event("step", step=1))
        (run / STEP_FILE.format(2)).write_bytes(b"PAR1 not really")
        (run / "samples/train/.step_00000003.p0.parquet.tmp").write_bytes(b"PAR1")  # a writer killed mid-file
        p = _json(out.wait(_event("problem", kind="unreadable")))
        assert p["path"] == STEP_FILE.format(2) and p["onset_step"] == 2 and p["severity"] == "error"
        p = _json(out.wait(_event("problem", kind="leftover_temporary")))
        assert p["onset_step"] == 3 and p["severity"] == "warning"
        (run / "samples/train/.step_00000003.p0.parquet.tmp").unlink()
        assert _json(out.wait(_event("resolved", kind="leftover_temporary")))["path"].endswith(".tmp")
    finally:
        watch.kill()
        watch.wait()


def test_a_run_folder_deleted_under_watch_is_one_line_and_exit_1(tmp_path):
    run = tmp_path / "run"
    written_run(run, 1)
    watch = runlog("watch", str(run), "--interval", "0.2", "--no-doctor")  # off a terminal: lines
    out = Lines(watch.stdout)
    assert out.wait(lambda line: line.startswith("step 0")).startswith("step 0  split train  rows 8  solver reward")
    shutil.rmtree(run)
    assert watch.wait(timeout=15) == 1
    err = watch.stderr.read()
    assert err.count("\n") == 1 and err.startswith("Error: ") and "deleted" in err and "Traceback" not in err


def test_a_path_that_does_not_exist_is_a_usage_error(tmp_path):
    command = [sys.executable, "-m", "runlog", "watch", str(tmp_path / "nope"), "--once"]
    r = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("Error: ") and "Traceback" not in r.stderr


def test_a_file_is_not_a_run_to_follow(cli):
    one = ROOT / "sample_runs/debate_grpo/samples/train/step_00000001.p0.parquet"
    r = cli("watch", one, "--once")
    assert r.exit_code == 2 and r.stderr.strip().endswith("a file; following a run needs its folder")
    r = cli("doctor", one, "--follow", "--idle-exit", "0")
    assert r.exit_code == 2 and r.stderr.strip().endswith("a file; following a run needs its folder")


# -- the live screen ----------------------------------------------------------------------------------------
def test_sparkline_and_trend():
    assert sparkline([0, 1, None, 0.5]) == "▁█ ▅"
    assert sparkline([2, 2]) == "▄▄"
    assert trend_text([0, 1, 2, 3]).startswith("↑+3")
    assert trend_text([3, 2, 1, 0]).startswith("↓-3")
    assert trend_text([1, 1]) == ""  # too few points


def test_the_trend_arrow_is_rare_on_noise_and_shown_on_a_trend():
    """The arrow showed on 66-79 % of pure-noise series (a quarter of the SD as threshold); it is now a t test
    of the least-squares slope at the 5 % level: about 5 % of noise series, and a real trend."""
    import random

    rng = random.Random(7)
    for n in (6, 14, 32):
        arrows = sum(trend_text([rng.gauss(0.5, 0.1) for _ in range(n)])[0] != "→" for _ in range(2000))
        assert arrows / 2000 < 0.08, (n, arrows)
    rising = [0.5 + 0.01 * i + rng.gauss(0, 0.02) for i in range(20)]
    assert trend_text(rising).startswith("↑") and trend_text(rising[::-1]).startswith("↓")


def test_the_screen_fits_80_columns_and_draws_hostile_text_inert(tmp_path):
    written_run(tmp_path / "run", 4)
    from runlog.watch.poll import run_lister

    live = LiveRun(tmp_path / "run")
    live.update(*run_lister(tmp_path / "run")())
    samples = extremes(live)
    assert [s.label for s in samples] == ["best", "worst"] and samples[0].sample_id == "s3-7"
    buf = io.StringIO()
    Console(file=buf, width=80, force_terminal=True, color_system="truecolor").print(
        Screen(live, None, samples, interval=1)
    )
    text = buf.getvalue()
    assert "\x1b]" not in text and "\x07" not in text and "\x1b[2J" not in text and "\u202e" not in text
    plain = io.StringIO()
    Console(file=plain, width=80, no_color=True).print(Screen(live, None, samples, interval=1))
    lines = plain.getvalue().splitlines()
    assert all(len(x) <= 80 for x in lines)
    assert any(x.startswith("best ") and "\\x1b]0;pwned" in x for x in lines)
    assert any(x.startswith("solver ") for x in lines) and "step 3" in plain.getvalue()
    assert HOSTILE not in plain.getvalue()


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True, timeout=10).stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_live_screen_in_tmux_at_80_columns(tmp_path):
    """The live screen in a real terminal (tmux, 80x30): it shows new steps as they arrive, the model text's
    escape sequences never act on the terminal (the pane title stays), q quits with exit code 0 and Ctrl-C
    with 130, without a traceback."""
    run = tmp_path / "run"
    trainer = Trainer(run)
    trainer.step()
    sessions: list[str] = []

    def start(rc_file: Path) -> str:
        session = f"runlog-watch-{time.monotonic_ns()}"
        env = child_env()
        command = (
            f"cd {shlex_quote(str(ROOT))} && PYTHONPATH={shlex_quote(env['PYTHONPATH'])} "
            f"{shlex_quote(sys.executable)} -m runlog watch {shlex_quote(str(run))} --interval 0.2; "
            f"echo $? > {shlex_quote(str(rc_file))}; sleep 30"
        )
        _tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "30", command)
        _tmux("set-option", "-t", session, "allow-rename", "on")
        sessions.append(session)
        return session

    def screen_shows(session: str, text: str, timeout: float = 15) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            shown = _tmux("capture-pane", "-p", "-t", session)
            if text in shown:
                return shown
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on screen:\n{shown}")

    try:
        session = start(tmp_path / "rc_q")
        screen_shows(session, "step 0")
        for _ in range(3):
            trainer.step()
        screen_shows(session, "step 3")
        shown = screen_shows(session, "best ")
        assert "q quits" in shown and "solver" in shown
        assert all(len(line) <= 80 for line in shown.splitlines())
        assert "\\x1b]0;pwned" in shown  # the escape shown as text ...
        assert "pwned" not in _tmux("display-message", "-p", "-t", session, "#{pane_title}")  # ... not acted on
        _tmux("send-keys", "-t", session, "q")
        rc = _wait_file(tmp_path / "rc_q")
        assert rc == "0", _tmux("capture-pane", "-p", "-S", "-", "-t", session)
        session = start(tmp_path / "rc_c")
        screen_shows(session, "q quits")
        _tmux("send-keys", "-t", session, "C-c")
        rc = _wait_file(tmp_path / "rc_c")
        assert rc == "130", _tmux("capture-pane", "-p", "-S", "-", "-t", session)
        assert "Traceback" not in _tmux("capture-pane", "-p", "-t", session)
    finally:
        trainer.kill()
        for session in sessions:
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def _wait_file(path: Path, timeout: float = 15) -> str:
    end = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < end:
        time.sleep(0.1)
    return path.read_text().strip() if path.exists() else "(no exit code yet)"


def shlex_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def test_watch_once_on_the_sample_run():
    r = subprocess.run(
        [sys.executable, "-m", "runlog", "watch", "sample_runs/debate_grpo", "--once", "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    events = [json.loads(x) for x in r.stdout.splitlines()]
    assert [e["step"] for e in events if e["event"] == "step"] == [31]
    assert events[-1] == {"event": "end", "reason": "once", "message": None}
    assert any(e["event"] == "finding" and e["kind"] == "nan_rewards" for e in events)


def test_role_and_split_options_are_checked_as_in_every_command(cli):
    run = ROOT / "sample_runs" / "debate_grpo"
    r = cli("watch", run, "--once", "--no-doctor", "--role", "solvr")
    assert r.exit_code == 2
    assert (
        r.stderr.strip()
        == "Error: --role 'solvr': this run's roles are solver, verifier, judge (did you mean 'solver'?)"
    )
    r = cli("watch", run, "--once", "--no-doctor", "--split", "test")  # a split may come later: a note, not an error
    assert r.exit_code == 0 and "no step of split test yet (this run has: eval, train)" in r.stderr
    r = cli("watch", run, "--once", "--no-doctor", "--split", "evall")  # a near miss of one it has: a typo
    assert r.exit_code == 2
    # Said first as a note with the hint (a live run might still write it), then, every writer closed, the error.
    assert r.stderr.strip().endswith("Error: --split 'evall': this run has split(s) eval, train (did you mean 'eval'?)")
    r = cli("watch", run, "--once", "--no-doctor", "--split", "eval", "--role", "judge", "--format", "json")
    step = json.loads(r.stdout.splitlines()[0])
    assert step["split"] == "eval" and step["step"] == 24 and [x["role"] for x in step["roles"]] == ["judge"]


def test_a_writer_killed_mid_step_while_watched(tmp_path):
    """A trainer writing as fast as it can is killed (SIGKILL) while watch follows it: watch reports every step
    on disk, each with all its rows, and ends at --idle-exit with 0; no error, no traceback."""
    import signal

    from test_writer_crash import CHILD
    from test_writer_crash import child_env as crash_env

    run = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(run)], stdout=subprocess.PIPE, env=crash_env(), cwd=ROOT)
    assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
    watch = runlog("watch", str(run), "--format", "json", "--interval", "0.2", "--idle-exit", "1", "--no-doctor")
    try:
        out = Lines(watch.stdout)
        first = _json(out.wait(_event("step")))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        # Generous: on a loaded machine one poll may read a hundred new steps (the child writes as fast as it can).
        assert _json(out.wait(_event("end"), timeout=90))["reason"] == "idle"
        assert watch.wait(timeout=30) == 0
    finally:
        child.kill()
        watch.kill()
    events = [_json(x) for x in out.seen]
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(first["step"], first["step"] + len(steps)))
    assert all(e["rows"] == 40 + e["step"] % 13 for e in steps)  # whole steps (the child's rows per step)
    assert not [e for e in events if e["event"] == "problem" and e["severity"] == "error"]
    assert "Traceback" not in watch.stderr.read()


def test_findings_of_one_kind_and_role_are_each_reported():
    """flink_mixed has two NaN findings without a role (the total reward, and the rows without per-role
    data): watch reports every finding the doctor makes, none merged into another by kind and role."""
    from runlog.analysis.doctor import diagnose

    run = ROOT / "sample_runs" / "flink_mixed"
    r = subprocess.run(
        [sys.executable, "-m", "runlog", "watch", str(run), "--once", "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    events = [json.loads(x) for x in r.stdout.splitlines()]
    seen = sorted(e["message"] for e in events if e["event"] == "finding" and e["kind"] == "nan_rewards")
    doctor = sorted(f.message for f in diagnose(open_run(run)).findings if f.kind == "nan_rewards")
    assert len(doctor) == 3 and seen == doctor


def test_an_object_store_prefix_with_nothing_uploaded_yet_is_waited_for(tmp_path):
    """An object store has no folders: before the trainer's first upload the prefix is not there at all. The
    watch waits (one note), as for an empty local folder; it used to end at once, exit 1, "deleted". Once
    something was listed, the run's disappearance still ends it."""
    gone = RunNotFoundError("s3://b/run: no such object or prefix")
    w = Watcher(LiveRun("s3://b/run"), FakeLister([gone, gone, {}]), Backoff(1.0, 30.0), remote=True)
    events, _ = w.poll()
    assert [e.kind for e in events] == ["note"] and "waiting for the first object" in events[0].data["message"]
    assert w.poll()[0] == []  # said once
    w.poll()
    with pytest.raises(RunGoneError):
        Watcher(LiveRun(tmp_path), FakeLister([gone]), Backoff(1, 1), remote=False).poll()


def test_a_file_of_several_steps_counts_each_steps_rows(tmp_path):
    """A verl-style ``generations.jsonl`` growing a step at a time (3, 9, 2 rows): each step's rows are its
    own (they were the file's rows split evenly: 4, 4, 4... and every append re-sent the earlier steps)."""
    from runlog.watch.poll import run_lister

    run = tmp_path / "run"
    run.mkdir()
    path = run / "generations.jsonl"
    live = LiveRun(run)
    lister = run_lister(run)
    sent: list[dict] = []
    for step, n in enumerate([3, 9, 2]):
        with path.open("a") as f:
            for i in range(n):
                f.write(json.dumps({"step": step, "input": f"q{i}", "output": f"a{i}", "score": float(i)}) + "\n")
        sent += [e.data for e in live.update(*lister()) if e.kind == "step"]
    assert [(d["step"], d["rows"], d.get("update", False)) for d in sent] == [
        (0, 3, False),
        (1, 9, False),
        (2, 2, False),
    ]


def test_a_misspelt_role_is_a_usage_error_when_the_first_files_come_after_the_watch_began(tmp_path):
    from runlog.errors import UsageError
    from runlog.watch.poll import run_lister

    live = LiveRun(tmp_path / "run", roles=("solvr",))
    (tmp_path / "run").mkdir()
    assert live.update(*run_lister(tmp_path / "run")()) == []
    written_run(tmp_path / "run", 2)
    with pytest.raises(UsageError, match="solvr"):
        live.update(*run_lister(tmp_path / "run")())


def test_objects_there_before_the_watch_began_are_not_a_rate():
    """A finished run on an object store: its objects were not seen arriving. They are dated by the store's
    modification time (or unknown), not by the first listing, which read as thousands of rows a second."""
    from runlog.watch.live import FileRecord, _written

    now = time.time()
    initial = FileRecord((10, (10, "etag", now - 3600.0)), now, initial=True)
    assert _written(initial) == now - 3600.0
    assert _written(FileRecord((10, (10, "etag", None)), now, initial=True)) == float("-inf")
    assert _written(FileRecord((10, (10, "etag", now - 3600.0)), now)) == now  # seen arriving: when listed


def test_the_trend_and_value_columns_hold_their_widest_figures(tmp_path):
    """A KL of 5.76e-05 rising by 4.3e-05 is drawn whole at 80 columns: the trend was cut to ``↑+4.3e…``
    (read as +4.3), the value column was 7 wide for 9-character figures."""
    from runlog.watch.live import RoleStep, StepStats

    live = LiveRun(tmp_path / "run")
    live.role_order = ["solver"]
    for s in range(20):
        kl = 1e-5 + 2.5e-6 * s if s < 19 else 5.76e-05
        live.steps[s] = StepStats(s, 6, {"solver": RoleStep(-0.00123 * s, kl, 6)}, time.time())
    plain = io.StringIO()
    Console(file=plain, width=80, no_color=True).print(Screen(live, None, [], interval=1))
    [line] = [x for x in plain.getvalue().splitlines() if x.startswith("solver ")]
    assert "-0.02337" in line and "5.76e-05" in line and "…" not in line
    assert re.search(r" ↑\+\d\.\de-05$", line.rstrip())


def test_a_jsonl_line_being_appended_is_said_only_if_it_stays_torn(tmp_path):
    """A results file grown a line at a time, each line first written half: no problem while the line is
    young (it was a problem and 'resolved' at every line); one that stays torn past ``settle`` is reported,
    and resolved when completed."""
    from runlog.watch.poll import run_lister

    run = tmp_path / "run"
    run.mkdir()
    path = run / "generations.jsonl"
    clock = [time.time()]
    live = LiveRun(run, settle=5.0, clock=lambda: clock[0])
    lister = run_lister(run)
    line = json.dumps({"step": 0, "input": "q", "output": "a", "score": 1.0}) + "\n"
    path.write_text(line + line[:20])
    kinds = [e.kind for e in live.update(*lister())]
    assert "problem" not in kinds and "step" in kinds
    clock[0] += 1.0
    assert [e.kind for e in live.update(*lister())] == []  # still young: nothing said
    clock[0] += 10.0
    events = live.update(*lister())
    assert [e.kind for e in events] == ["problem"] and "torn last line" in events[0].data["message"]
    with path.open("a") as f:
        f.write(line[20:])
    done = live.update(*lister())
    assert [e.kind for e in done] == ["resolved", "step"] and done[1].data["rows"] == 2  # the line now counted


def test_a_first_half_line_is_held_back_silently_until_it_settles(tmp_path):
    """A new results file whose only line is half written matches no layout yet: nothing is said while it is
    young (it was 'matches no known layout', then 'resolved'); a file that stays so is reported."""
    from runlog.watch.poll import run_lister

    run = tmp_path / "run"
    run.mkdir()
    clock = [time.time()]
    live = LiveRun(run, settle=5.0, clock=lambda: clock[0])
    lister = run_lister(run)
    line = json.dumps({"step": 0, "input": "q", "output": "a", "score": 1.0}) + "\n"
    (run / "generations_0.jsonl").write_text(line)
    assert [e.kind for e in live.update(*lister())] == ["step"]
    later = run / "generations_1.jsonl"
    later.write_text(line.replace('"step": 0', '"step": 1')[:20])
    assert live.update(*lister()) == []
    later.write_text(line.replace('"step": 0', '"step": 1'))
    assert [e.kind for e in live.update(*lister())] == ["step"]  # no note, no problem, no 'complete now'
    (run / "stray.jsonl").write_text("not json at all")
    assert live.update(*lister()) == []
    clock[0] += 10.0
    assert [e.kind for e in live.update(*lister())] == ["problem"]


def test_a_background_check_that_panics_is_reported_and_a_running_one_is_said_at_close(tmp_path, monkeypatch):
    """A check on the doctor's thread that dies of a BaseException (polars' PanicException is one: it used to
    print 'Exception in thread runlog-doctor' and a traceback after the screen on Ctrl-C, the interpreter
    tearing down under it) becomes an internal-error note; ``close`` says whether a check still runs, so that
    ``runlog watch`` ends its process without meeting it."""
    import threading

    from runlog.analysis.doctor import DoctorConfig
    from runlog.watch.findings import DoctorWatch, _Job

    class Panic(BaseException):  # what pyo3 raises for a Rust panic
        pass

    printed: list[object] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: printed.append(args))

    def panics():
        raise Panic("a panic inside polars")

    job = _Job(panics)
    assert job.done.wait(5)
    assert job.result[2] == "internal error: Panic: a panic inside polars" and printed == []

    release = threading.Event()
    watch = DoctorWatch(str(tmp_path), DoctorConfig(), background=True)
    monkeypatch.setattr(watch, "_check", lambda: (release.wait(5), ([], [], None, 0.0))[1])
    watch.changed()
    watch.poll()  # the check starts, and blocks
    assert watch.close() is True
    release.set()
    watch.changed()
    watch._last_start = -float("inf")
    watch.poll()
    assert watch._job is not None and watch._job.done.wait(5)
    assert watch.close() is False


def test_a_ctrl_c_that_a_library_turns_into_its_own_error_still_exits_130(tmp_path, cli, monkeypatch):
    """A read cancelled by the signal surfaces as the library's error (a DataError here), not as
    KeyboardInterrupt: the watch ended with exit 1 as if the run had failed (once in CI, where the test
    expected 130). The interrupt is remembered, and the exit is 130."""
    import os
    import signal

    from runlog.errors import DataError

    run = written_run(tmp_path / "run", 2)
    before = signal.getsignal(signal.SIGINT)

    def poll(self):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            raise DataError(str(run), "read cancelled (received signal 2)") from None
        raise AssertionError("no interrupt")

    monkeypatch.setattr(Watcher, "poll", poll)
    r = cli("watch", run, "--no-doctor", "--format", "json")
    assert r.exit_code == 130, (r.exit_code, r.stdout, r.stderr)
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back


def test_a_ctrl_c_whose_interrupt_is_swallowed_still_ends_the_watch_with_130(tmp_path, cli, monkeypatch):
    """A signal handler runs between any two bytecodes: its KeyboardInterrupt raised inside a ``__del__`` or a
    library's ``except BaseException`` never reaches the loop, and the handler raises only once (the tmux
    test's Ctrl-C once left the watch running in CI). The loop sees the recorded signal and ends with 130."""
    import os
    import signal

    run = written_run(tmp_path / "run", 2)
    polls = [0]
    real_poll = Watcher.poll

    def poll(self):
        polls[0] += 1
        if polls[0] == 2:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
            except BaseException:  # noqa: BLE001 - what a careless library does
                pass
        if polls[0] > 4:
            raise AssertionError("the watch went on after Ctrl-C")
        return real_poll(self)

    monkeypatch.setattr(Watcher, "poll", poll)
    r = cli("watch", run, "--no-doctor", "--format", "json", "--interval", "0.1", "--idle-exit", "30")
    assert r.exit_code == 130, (r.exit_code, r.stdout, r.stderr)
    assert polls[0] == 2


def test_a_step_with_no_rows_is_a_step_and_no_problem(tmp_path):
    """RunWriter writes a step whose rollouts were all filtered out as a file with no rows (writer.md): the
    watch gave no step event for it, and a warning "a writer that stopped before its first row?"."""
    import runlog
    from runlog.watch.poll import run_lister

    def rows(step: int) -> list[dict]:
        return [{"reward": 0.5, "solver_reward": 0.5, "solver_kl": 0.1} for _ in range(4)]

    with runlog.RunWriter(tmp_path / "run", name="r", roles=["solver"]) as w:
        w.log_samples(0, rows(0))
        w.log_samples(1, [])
        w.flush()
        live = LiveRun(tmp_path / "run")
        lister = run_lister(tmp_path / "run")
        events = live.update(*lister())
        assert [(e.data["step"], e.data["rows"]) for e in events if e.kind == "step"] == [(0, 4), (1, 0)]
        assert [e for e in events if e.kind == "problem"] == []
        w.log_samples(2, [])
        w.log_samples(3, rows(3))
    events = live.update(*lister())
    assert [(e.data["step"], e.data["rows"]) for e in events if e.kind == "step"] == [(2, 0), (3, 4)]
    assert [p for p in open_run(tmp_path / "run").problems if p.is_warning] == []
