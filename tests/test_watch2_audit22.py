"""Audit 22 of ``doctor --follow`` and the live screen, after review:

- a usage error of doctor's check (a ``--config`` whose ``format_spec`` names a role that never speaks) that still
  stands when the follow ends (finished, ``--idle-exit``, ``--timeout``) ends it as plain ``doctor`` ends on the
  same files: its ``Error:`` line, exit 2 (it was a note, then ``finished``, exit 0); while the run is written, a
  note and a retry (the role may speak later);
- the run's file problems stay one finding per file at a follow's end, with plain doctor's severity and exit
  code (plain doctor groups them by kind);
- an emoji ZWJ sequence (``👨‍👩‍👧``) is cut to the cells a terminal that draws each character takes (tmux: 6);
- in text, a finding's update that would print the line printed for it already is left out (JSON keeps it).
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rich.text import Text

import runlog.watch as watch_pkg
from runlog.analysis.doctor import DoctorConfig
from runlog.watch import DoctorWatch, Event, follow_findings, watcher_for
from runlog.watch.screen import fit_cells
from runlog.writer import RunWriter


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _samples(step: int, speaker: str) -> list[dict]:
    messages = [{"role": "user", "content": "Q?"}, {"role": "assistant", "name": speaker, "content": "a"}]
    return [{"reward": 1.0, "group_id": f"g{step}", "messages": messages} for _ in range(4)]


def _spec(tmp_path: Path) -> Path:
    """A ``--config`` whose format spec names role ``solvr`` (a typo of ``solver``)."""
    spec = tmp_path / "typo.toml"
    spec.write_text('name = "m"\nmatch = \'\\s*<think>.*</answer>\\s*\'\nroles = ["solvr"]\n')
    config = tmp_path / "doctor.toml"
    config.write_text(f"[doctor]\nformat_spec = {json.dumps(str(spec))}\n")
    return config


# -- F1: a usage error standing at the end ------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["json", "table"])
def test_a_config_naming_a_role_that_never_spoke_fails_the_follow_as_plain_doctor(tmp_path, cli, fmt):
    run = tmp_path / "run"
    with RunWriter(run, durable=False) as w:
        for s in range(12):
            w.log_samples(s, _samples(s, "solver"))
    config = _spec(tmp_path)
    plain = cli("doctor", run, "--config", config)
    assert plain.exit_code == 2
    [error] = [x for x in plain.stderr.splitlines() if x.startswith("Error:")]
    assert "'solvr'" in error

    for fail_on in ("warning", "never"):
        follow = cli(
            *("doctor", run, "--config", config, "--follow", "--idle-exit", "1", "--interval", "0.2"),
            *("--format", fmt, "--fail-on", fail_on),
        )
        assert follow.exit_code == 2, (follow.stdout, follow.stderr)
        assert [x for x in follow.stderr.splitlines() if x.startswith("Error:")] == [error]
        if fmt == "json":
            events = _json_lines(follow.stdout)
            assert not any(e["event"] == "end" for e in events)  # as every usage error found while following
        else:
            assert "stopped: finished" not in follow.stderr


def test_a_config_role_that_speaks_later_is_retried_while_the_run_is_written(tmp_path, cli):
    """The role of the spec speaks only from step 9 on: the checks before fail (a note) and the follow goes on;
    it ends ``finished``, as plain doctor passes the finished run's config."""
    run = tmp_path / "run"
    w = RunWriter(run, durable=False)
    for s in range(9):
        w.log_samples(s, _samples(s, "solver"))
    w.flush()
    done: list[bool] = []

    def write_the_rest(_: float) -> None:
        if not done:
            done.append(True)
            for s in range(9, 16):
                w.log_samples(s, _samples(s, "solvr"))
            w.close()

    path = _spec(tmp_path)
    doctor = DoctorWatch(run, DoctorConfig.from_sources(path), min_gap=0.0)
    watcher = watcher_for(str(run), interval=0.1, doctor=doctor, settle=0.0)
    events = [e.as_dict() for e in follow_findings(watcher, "warning", sleep=write_the_rest)]
    notes = [e["message"] for e in events if e["event"] == "note"]
    assert any("'solvr'" in n and n.endswith("retrying") for n in notes), notes
    assert events[-1] == {"event": "end", "reason": "finished"}
    assert doctor.failure is None
    speakers = {m["name"] for r in pq.read_table(run / "samples" / "train").to_pylist() for m in r["messages"]}
    assert "solvr" in speakers
    assert cli("doctor", run, "--config", path, "--fail-on", "never").exit_code == 0


# -- F2: file problems at the end: one finding per file, plain doctor's severity and exit code -----------------
def test_leftover_files_end_a_follow_one_finding_each_with_plain_doctors_severity_and_exit(tmp_path, cli):
    run = tmp_path / "run"
    with RunWriter(run, durable=False) as w:
        for s in range(3):
            w.log_samples(s, _samples(s, "solver"))
    train = run / "samples" / "train"
    for step in (2, 3):
        (train / f".step_0000000{step}.p0.parquet.tmp").write_bytes(b"PAR1 half a file")
    plain = cli("doctor", run, "--format", "json", "--fail-on", "never")
    [grouped] = json.loads(plain.stdout)["findings"]
    assert grouped["evidence"]["count"] == 2 and grouped["severity"] == "warning"
    follow = cli("doctor", run, "--follow", "--idle-exit", "1", "--format", "json", "--fail-on", "never")
    found = [e for e in _json_lines(follow.stdout) if e["event"] == "finding"]
    assert sorted(e["evidence"]["path"] for e in found) == sorted(p["path"] for p in grouped["evidence"]["problems"])
    assert {e["severity"] for e in found} == {"warning"} and follow.exit_code == 0
    assert cli("doctor", run).exit_code == cli("doctor", run, "--follow", "--idle-exit", "1").exit_code == 1


# -- F3: emoji ZWJ sequences -----------------------------------------------------------------------------------
def _each_drawn(text: str) -> int:
    """Cells of ``text`` on a terminal that draws each character on its own (tmux): 2 for a wide or full-width
    character (the Unicode database's East Asian Width), 0 for a combining or format character (ZWJ), else 1."""
    cells = 0
    for ch in text:
        if unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        cells += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return cells


@pytest.mark.parametrize("text", ["👨\u200d👩\u200d👧" * 40, "best: " + "👩\u200d💻 " * 40, "x" * 77 + "👩\u200d💻"])
def test_an_emoji_zwj_sequence_is_cut_to_the_cells_each_character_takes(text):
    line = Text(text)
    fit_cells(line, 80)
    assert line.plain.endswith("…")
    assert _each_drawn(line.plain) <= 80
    assert _each_drawn(line.plain) >= 74  # cut near the edge, not far before it
    assert not line.plain[:-1].endswith("\u200d")  # no joiner left to join the ellipsis


# -- F4: an update that reads as the line printed ---------------------------------------------------------------
def test_an_update_whose_text_line_is_the_one_printed_is_not_printed_again(tmp_path, cli, monkeypatch):
    run = tmp_path / "run"
    with RunWriter(run, durable=False) as w:
        w.log_samples(0, _samples(0, "solver"))
    base = {"kind": "reward_collapse", "role": "judge", "onset_step": 25, "severity": "warning"}
    said = [
        Event("finding", {**base, "message": "judge's reward fell", "evidence": {"z": 94.0}}),
        Event("finding", {**base, "message": "judge's reward fell", "evidence": {"z": 956.0}, "update": True}),
        Event("finding", {**base, "message": "judge's reward fell far", "evidence": {"z": 956.0}, "update": True}),
        Event("end", {"reason": "finished"}),
    ]
    monkeypatch.setattr(watch_pkg, "follow_findings", lambda *a, **k: iter(said))

    text = cli("doctor", run, "--follow", "--fail-on", "never")
    assert text.exit_code == 0
    assert text.stdout.splitlines() == [
        "finding warning reward_collapse role judge step 25: judge's reward fell",
        "finding update warning reward_collapse role judge step 25: judge's reward fell far",
    ]
    as_json = cli("doctor", run, "--follow", "--fail-on", "never", "--format", "json")
    events = _json_lines(as_json.stdout)
    assert [e["evidence"]["z"] for e in events if e["event"] == "finding"] == [94.0, 956.0, 956.0]


def test_watch_text_lines_leave_out_an_update_that_reads_as_the_line_printed(capsys):
    """``runlog watch`` off a terminal printed the same finding line twice where an update changed only its
    evidence; its JSON lines keep every event."""
    from runlog.cli.watch_cmd import emit_events
    from runlog.watch.findings import SaidLines

    base = {"kind": "reward_collapse", "role": "judge", "onset_step": 25, "severity": "warning"}
    events = [
        Event("finding", {**base, "message": "judge's reward fell", "evidence": {"z": 94.0}}),
        Event("finding", {**base, "message": "judge's reward fell", "evidence": {"z": 956.0}, "update": True}),
        Event("finding", {**base, "message": "judge's reward fell far", "evidence": {"z": 956.0}, "update": True}),
    ]
    said = SaidLines()
    emit_events(events[:2], False, said)
    emit_events(events[2:], False, said)
    assert capsys.readouterr().out.splitlines() == [
        "finding warning reward_collapse role judge step 25: judge's reward fell",
        "finding update warning reward_collapse role judge step 25: judge's reward fell far",
    ]
    emit_events(events, True)
    assert len(capsys.readouterr().out.splitlines()) == 3
