"""Audit 22 of ``watch`` and ``doctor --follow``:

- a hidden file that is no writer's temporary file (rsync's ``.step_00000003.p0.parquet.Ab12Cd``) is no
  ``leftover_temporary``: ``inspect`` and plain ``doctor`` leave it out without a word, and ``doctor --follow``
  failed ``--fail-on warning`` on it;
- a KL that never changes, whose per-step means differ by rounding only (three 0.1 average to
  0.10000000000000002), is a level sparkline with no trend (it was drawn as jumps, with a trend of +1.1e-17);
- an emoji with a skin tone is counted as the cells a terminal such as tmux draws it in: the best/worst line
  wrapped at 80 columns;
- ``watch``'s PATH help says it takes a run's folder, and ``doctor``'s that ``--follow`` does;
- at the end of a follow, what was reported is made to agree with a plain ``doctor`` of the run as it ends: a
  finding that no longer holds is withdrawn (``withdrawn`` event), one that holds with other figures comes again
  (``update: true``), and a process killed behind the others is graded as the clock says then.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import time
import unicodedata
from fractions import Fraction
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from runlog.analysis.doctor import DoctorConfig
from runlog.watch import DoctorWatch, LiveRun, follow_findings, watcher_for
from runlog.watch.poll import is_temporary, run_lister
from runlog.watch.screen import Screen, extremes, sparkline, trend_text
from runlog.writer import RunWriter

ROOT = Path(__file__).resolve().parents[1]


def _finished_run(run: Path, steps: int = 3) -> None:
    with RunWriter(run, name="r", roles=["solver"]) as w:
        for s in range(steps):
            rows = [{"reward": 0.1 * i, "roles": {"solver": {"reward": 0.5, "kl": 0.01 * i}}} for i in range(4)]
            w.log_samples(s, rows)


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- F1: what a temporary file is, as inspect decides ---------------------------------------------------------
def test_a_hidden_name_is_a_temporary_file_only_with_a_temporary_suffix():
    """docs/format.md: a writer's temporary files end in ``.tmp`` (a download's in ``.partial``); other hidden
    names are no file of the run to ``inspect``. The pattern took any hidden ``.X.parquet.<suffix>`` for one,
    across a newline too."""
    assert is_temporary("samples/train/.step_00000003.p0.parquet.tmp")
    assert is_temporary("samples/train/step_00000003.p0.parquet.partial")
    assert is_temporary(".scalars.p0.jsonl.tmp")
    assert not is_temporary("samples/train/.step_00000003.p0.parquet.Ab12Cd")  # rsync's partial
    assert not is_temporary(".scalars.p0.jsonl.Xy12Zw")
    assert not is_temporary("samples/train/.x.parquet.a\nb")
    assert not is_temporary(".writer.p0.json") and not is_temporary(".DS_Store")


def test_an_rsync_partial_in_a_finished_run_fails_no_follow_that_plain_doctor_passes(tmp_path, cli):
    run = tmp_path / "run"
    _finished_run(run)
    train = run / "samples" / "train"
    partial = train / ".step_00000003.p0.parquet.Ab12Cd"
    partial.write_bytes((train / "step_00000002.p0.parquet").read_bytes())
    old = time.time() - 600
    os.utime(partial, (old, old))
    assert pq.read_table(partial).num_rows == 4  # a whole Parquet file, under a name no reader lists

    plain = cli("doctor", run, "--fail-on", "warning", "--format", "json")
    assert plain.exit_code == 0 and json.loads(plain.stdout)["findings"] == []
    follow = cli(
        *("doctor", run, "--follow", "--fail-on", "warning", "--format", "json"),
        *("--idle-exit", "2", "--interval", "0.2", "--settle", "0.2"),
    )
    assert follow.exit_code == 0, follow.stdout
    events = _json_lines(follow.stdout)
    assert [e["event"] for e in events if e["event"] in ("finding", "problem")] == []
    assert events[-1] == {"event": "end", "reason": "finished", "message": None}
    once = cli("watch", run, "--once", "--format", "json")
    assert once.exit_code == 0
    assert not [e for e in _json_lines(once.stdout) if e["event"] == "problem"]
    assert "Ab12Cd" not in once.stdout + once.stderr

    # A writer's own temporary file left (``.tmp``) still is one, as ``inspect`` says.
    leftover = train / ".step_00000003.p0.parquet.tmp"
    partial.rename(leftover)
    once = cli("watch", run, "--once", "--format", "json")
    [problem] = [e for e in _json_lines(once.stdout) if e["event"] == "problem"]
    assert problem["kind"] == "leftover_temporary" and problem["path"] == "samples/train/.step_00000003.p0.parquet.tmp"


# -- F2: rounding noise is no change ----------------------------------------------------------------------
def test_means_that_differ_by_rounding_only_are_a_level_sparkline_with_no_trend():
    three = (0.1 + 0.1 + 0.1) / 3  # a 3-row step's mean as a sum over n computes it
    assert three != 0.1 and Fraction(0.1) * 3 / 3 == Fraction(0.1)  # the exact mean is the value itself
    means = [0.1, 0.1, three, 0.1, three]
    assert sparkline(means) == "▄▄▄▄▄"
    assert trend_text(means) == "→+0"
    # a real change, however small beside the values, is still drawn
    small = [1.0, 1.0, 1.0 + 1e-9, 1.0, 1.0 + 1e-9]
    assert sparkline(small) == "▁▁█▁█"
    assert trend_text([1.0 + 1e-6 * i for i in range(5)]).startswith("↑")


def test_the_screen_draws_a_kl_that_never_changes_flat(tmp_path):
    run = tmp_path / "run"
    with RunWriter(run, name="flat", roles=["solver"]) as w:
        for s, n in enumerate([2, 2, 3, 2, 3]):
            w.log_samples(s, [{"reward": 0.5, "roles": {"solver": {"reward": 0.5, "kl": 0.1}}} for _ in range(n)])
    live = LiveRun(run)
    live.update(*run_lister(run)())
    buf = io.StringIO()
    Console(file=buf, width=80, no_color=True).print(Screen(live, None, [], interval=1))
    [line] = [x for x in buf.getvalue().splitlines() if x.startswith("solver ")]
    assert line.count("▄") == 10 and "e-1" not in line, line  # reward and KL: five level bars each
    assert line.split()[-1] == "→+0"


# -- F5: an emoji with a skin tone is 4 cells wide on a terminal that draws each character on its own ---------
def _drawn(text: str) -> int:
    """Cells of ``text`` on a terminal that draws each character on its own (tmux): 2 for a wide or full-width
    character (the Unicode database's East Asian Width), 0 for a combining or format character, else 1."""
    cells = 0
    for ch in text:
        if unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        cells += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return cells


@pytest.mark.parametrize("text", ["👍🏽" * 30, "答案" * 40, "ok 👋🏿 " * 20])
def test_every_line_of_the_screen_fits_80_cells_with_skin_toned_emoji(tmp_path, text):
    run = tmp_path / "run"
    with RunWriter(run, name="wide") as w:
        w.log_samples(0, [{"reward": 1.0, "completion": "ok"}, {"reward": 0.0, "completion": text}])
    live = LiveRun(run)
    live.update(*run_lister(run)())
    buf = io.StringIO()
    Console(file=buf, width=80, no_color=True).print(Screen(live, None, extremes(live), interval=1))
    lines = buf.getvalue().splitlines()
    [worst] = [x for x in lines if x.startswith("worst")]
    assert worst.endswith("…") and text[:4] in worst
    assert max(_drawn(x) for x in lines) <= 80, [(x, _drawn(x)) for x in lines if _drawn(x) > 80]
    assert _drawn(worst) >= 76  # cut at the edge, not far before it


# -- F4: the PATH a follow takes ------------------------------------------------------------------------------
def test_path_help_says_a_follow_takes_the_runs_folder(tmp_path, cli):
    def helped(command: str) -> str:  # the help's words, out of rich's boxes and line breaks
        return " ".join(cli(command, "--help").stdout.replace("│", " ").split())

    watch = helped("watch")
    assert "a single file" not in watch and "not one of its files" in watch
    doctor = helped("doctor")
    assert "a single file" in doctor and "with --follow, the run's folder or URL, not a file" in doctor
    _finished_run(tmp_path / "run")
    r = cli("watch", tmp_path / "run" / "run.json", "--once")
    assert r.exit_code == 2 and "a file; following a run needs its folder" in r.stderr


# -- F6: the end of a follow agrees with plain doctor ----------------------------------------------------------
def _rows(rng: random.Random, s: int) -> list[dict]:
    """KL of role solver 30x from step 20 on; judge's reward steady (0.6-0.9) up to step 24, then near 0."""
    rows = []
    for i in range(16):
        kl = rng.uniform(0.01, 0.03) * (30 if s >= 20 else 1)
        judge = rng.uniform(0.6, 0.9) if s < 25 else rng.uniform(0.0, 0.1)
        rows.append(
            {
                "reward": rng.random(),
                "group_id": f"g{s}-{i // 4}",
                "roles": {"solver": {"reward": rng.random(), "kl": kl}, "judge": {"reward": judge, "kl": 0.01}},
                "completion": "ans " + "x" * rng.randint(5, 50),
            }
        )
    return rows


def test_a_finding_that_stops_holding_is_withdrawn_at_the_end_and_the_others_carry_the_final_figures(tmp_path, cli):
    """scen13: followed at 27 steps, judge's reward had not moved (``reward_stuck``); by step 40 it had collapsed
    at step 25, and the finished run's plain doctor has no ``reward_stuck``. The follow never took it back, and
    its ``kl_blowup`` kept the figures of 27 steps."""
    run = tmp_path / "run"
    rng = random.Random(7)
    w = RunWriter(run, name="blowup", roles=["solver", "judge"])
    for s in range(27):
        w.log_samples(s, _rows(rng, s))
    w.flush()

    done: list[bool] = []

    def write_the_rest(_: float) -> None:  # the follow's wait between two polls: the trainer writes the rest
        if not done:
            done.append(True)
            for s in range(27, 40):
                w.log_samples(s, _rows(rng, s))
            w.close()

    doctor = DoctorWatch(run, DoctorConfig(), min_gap=0.0)
    watcher = watcher_for(str(run), interval=0.1, doctor=doctor, settle=0.0)
    events = [e.as_dict() for e in follow_findings(watcher, None, sleep=write_the_rest)]
    json.dumps(events, allow_nan=False)  # JSON lines as they are printed
    assert events[-1] == {"event": "end", "reason": "finished"}
    said = [(e["event"], e["kind"], e["role"]) for e in events if e["event"] in ("finding", "withdrawn")]
    assert ("finding", "reward_stuck", "judge") in said[:2]  # said while the run had 27 steps
    assert said.index(("withdrawn", "reward_stuck", "judge")) > said.index(("finding", "reward_stuck", "judge"))

    # What the follow holds at its end: the last event of each finding, less those withdrawn.
    last: dict[tuple, dict] = {}
    for e in events:
        if e["event"] == "finding":
            last[(e["kind"], e["role"])] = e
        elif e["event"] == "withdrawn":
            del last[(e["kind"], e["role"])]
    plain = cli("doctor", run, "--format", "json", "--fail-on", "never")
    truth = {(f["kind"], f["role"]): (f["severity"], f["message"]) for f in json.loads(plain.stdout)["findings"]}
    assert {k: (e["severity"], e["message"]) for k, e in last.items()} == truth
    assert set(truth) == {("kl_blowup", "solver"), ("reward_collapse", "judge")}

    # Independent of runlog: judge's mean reward over the last third is far from its first third (not stuck).
    table = pq.read_table(run / "samples" / "train").to_pylist()
    per_step: dict[int, list[float]] = {}
    for r in table:
        judge = r.get("judge_reward")
        if judge is None:
            judge = next(x["reward"] for x in r["roles"] if x["role"] == "judge") if "roles" in r else None
        per_step.setdefault(r["step"], []).append(judge)
    means = [sum(v) / len(v) for _, v in sorted(per_step.items())]
    assert sum(means[:13]) / 13 - sum(means[-13:]) / 13 > 0.5


def test_the_text_line_of_a_withdrawn_finding(tmp_path):
    from runlog.cli.watch_cmd import event_line
    from runlog.watch import Event

    data = {"kind": "reward_stuck", "role": "judge", "onset_step": 0, "severity": "warning", "message": "stuck"}
    line = event_line(Event("withdrawn", {**data, "evidence": {}}))
    assert line == "withdrawn warning reward_stuck role judge step 0: stuck"


CHILD = """
import os, sys
sys.path[:0] = {path!r}
from runlog.writer import RunWriter
w = RunWriter({run!r}, roles=["solver"], process_index={process})
for s in range({steps}):
    w.log_samples(s, {{"reward": [float(s), 1.0], "group_id": ["g", "g"]}})
if {kill!r}:
    w.flush()
    os._exit(0)
w.close()
"""


def test_a_process_killed_behind_the_others_is_graded_at_the_end_by_the_clock_then(tmp_path, monkeypatch):
    """A process that did not close is a warning once the others closed ``END_GRACE_S`` ago (by the clock); a follow
    that stops with nothing changed since its last check kept that check's ``info``, where a plain doctor then
    says ``warning`` (``--fail-on warning`` passed)."""
    import runlog.ends

    run = tmp_path / "run"
    for process, steps, kill in ((0, 10, False), (1, 4, True)):
        code = CHILD.format(path=sys.path, run=str(run), process=process, steps=steps, kill=kill)
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    doctor = DoctorWatch(run, DoctorConfig(), min_gap=0.0, clock=lambda: 0.0)
    watcher = watcher_for(str(run), interval=0.1, doctor=doctor, settle=0.0, idle_exit=1e9)
    events, _ = watcher.poll()
    assert not [e for e in events if e.kind == "finding" and e.data["severity"] != "info"]
    # The others closed long enough ago now, as the state files' times say to a clock 2 minutes on.
    monkeypatch.setattr(runlog.ends, "END_GRACE_S", -1e9)
    final = [e.as_dict() for e in watcher.final_events("idle")]
    [stopped] = [
        e for e in final if e["event"] == "finding" and e["evidence"].get("problem_kind") == "writer_not_closed"
    ]
    assert stopped["severity"] == "warning" and "process 1 did not close its writer" in stopped["message"]
    state = json.loads((run / ".writer.p0.json").read_text())
    assert state["state"] == "closed" and json.loads((run / ".writer.p1.json").read_text())["state"] == "open"
