"""A Flink file whose ``trajectory`` page is corrupt while its numbers are intact: Flink finds ``group_id`` (and
the conversation) from that text, so those fail with it. The file keeps its numbers in every command (doctor's
as summarize's, pyarrow's count), its texts are left out and said so, and its samples are in no prompt group
(``Layout.text_columns``, ``Run._quarantine_unreadable``). Where the text holds invalid UTF-8 instead, the file
keeps its numbers too, and its texts and prompt groups: the one value is read with U+FFFD, said in a warning
(``Run._repair_utf8``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from flink_gen import ROLES, write_flink_run
from runlog import open_run
from runlog.analysis.doctor import DoctorConfig, diagnose
from runlog.analysis.series import RunSeries
from runlog.analysis.summarize import summarize

BAD = "flink_logs/batch_debug_data_train_3.parquet"
ROWS = 12  # 3 prompts of 4 samples a step


def break_trajectory(path: Path, damage: str = "page") -> None:
    """Rewrite a Flink file so that one ``trajectory`` cell cannot be read (``damage``: "page", its length beyond
    the page; "utf8", not UTF-8), uncompressed, no statistics of that column, so that only its data page holds
    the bytes; every other column reads."""
    table = pq.read_table(path)
    cells = table.column("trajectory").to_pylist()
    cells[0] = "MARKERXXXX" + cells[0]
    table = table.set_column(table.schema.get_field_index("trajectory"), "trajectory", [cells])
    stats = [c for c in table.column_names if c != "trajectory"]
    pq.write_table(table, path, compression="NONE", use_dictionary=False, write_statistics=stats)
    data = path.read_bytes()
    assert data.count(b"MARKERXXXX") == 1
    if damage == "page":
        at = data.find(b"MARKERXXXX")
        path.write_bytes(data[: at - 4] + b"\xff\xff\xff\x7f" + data[at:])
    else:
        path.write_bytes(data.replace(b"MARKERXXXX", b"MARK\xff\xfe\xc3\x28XX"))


def valid_role_rewards(root: Path) -> dict[str, int]:
    """Valid rewards per role over every sample file, read with pyarrow (numbers only)."""
    counts: dict[str, int] = {}
    for f in sorted((root / "flink_logs").glob("*.parquet")):
        table = pq.read_table(f, columns=[f"{r}_reward" for r in ROLES])
        for r in ROLES:
            valid = [x for x in table[f"{r}_reward"].to_pylist() if x is not None and not math.isnan(x)]
            counts[r] = counts.get(r, 0) + len(valid)
    return counts


@pytest.fixture(params=["page", "utf8"])
def damaged(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    root = write_flink_run(tmp_path / "run", steps=6).root
    break_trajectory(root / BAD, request.param)
    with pytest.raises(Exception):  # noqa: B017, PT011  (polars' own error: a corrupt page, or not UTF-8)
        pl.read_parquet(root / BAD)
    return root


UTF8_WARNING = "1 text value(s) are not valid UTF-8 (trajectory: 1): read with U+FFFD"


def is_utf8(root: Path) -> bool:
    """Whether the damage is invalid UTF-8 (read with U+FFFD), not a corrupt page."""
    return b"MARK\xff\xfe" in (root / BAD).read_bytes()


def test_doctor_counts_the_numbers_of_a_flink_file_whose_trajectory_is_not_utf8(damaged: Path) -> None:
    """Doctor reads the prompt groups from the text: the read fails on the file, which keeps its numbers (its
    steps as summarize's), and is said once as a text left out (invalid UTF-8: as a text read with U+FFFD),
    never "file skipped"."""
    expected = valid_role_rewards(damaged)
    assert expected == dict.fromkeys(ROLES, 6 * ROWS)
    run = open_run(damaged)
    s = RunSeries(run)
    result = diagnose(run, DoctorConfig(), series=s)
    per_role = s.per_role.group_by("role").agg(pl.col("reward_count").sum())
    assert dict(zip(per_role["role"], per_role["reward_count"], strict=True)) == expected
    assert s.total.filter(pl.col("step") == 3)["rows"].to_list() == [ROWS]
    assert not [f for f in result.findings if f.kind == "step_gaps"]
    [p] = run.problems
    [f] = [f for f in run.files if f.path == BAD]
    if is_utf8(damaged):
        assert p.path == BAD and p.kind == "warning" and p.message.startswith(UTF8_WARNING), p
        assert f.readable and not f.unread and f.repaired is not None
    else:
        assert p.path == BAD and p.message.startswith("its text could not be read (group_id, prompt, ")
        assert p.message.endswith("trajectories (and of prompt groups); its numbers are counted")
        assert f.readable and {"group_id", "agent_trajectories", "trajectory", "prompt", "messages"} <= set(f.unread)
    # summarize, numbers only (no text read, the file never found): the same figures per step and role.
    fresh = summarize(open_run(damaged), ["role", "step"])
    doctor = s.per_role.select("role", "step", "reward_count", "reward_mean").sort("role", "step")
    assert fresh.select(doctor.columns).sort("role", "step").equals(doctor)


def test_cli_doctor_summarize_and_metrics_agree_on_the_flink_file(damaged: Path, cli) -> None:
    if is_utf8(damaged):  # one value read with U+FFFD: the file's numbers, prompt groups and texts all count
        r = cli("doctor", damaged, "--format", "json")
        assert r.exit_code == 0 and "could not be read" not in r.stdout + r.stderr, r.stderr
        [problem] = [f for f in json.loads(r.stdout)["findings"] if BAD in f["message"]]
        assert problem["severity"] == "info" and UTF8_WARNING in problem["message"], problem
        r = cli("summarize", damaged, "--by", "step", "--prompt-groups", "--format", "json")
        assert r.exit_code == 0 and f"warning: {BAD}: {UTF8_WARNING}" in r.stderr, r.stderr
        assert all(row["zero_adv_frac"] is not None for row in json.loads(r.stdout))
        r = cli("metrics", "format", damaged, "--format", "json")
        assert r.exit_code == 0 and f"warning: {BAD}: {UTF8_WARNING}" in r.stderr, r.stderr
        assert all(row["texts"] == ROWS for row in json.loads(r.stdout))
        return
    r = cli("doctor", damaged, "--format", "json")
    assert r.exit_code == 1 and "Traceback" not in r.stderr, r.stderr
    findings = json.loads(r.stdout)["findings"]
    [problem] = [f for f in findings if f["kind"] == "data_problem" and BAD in f["message"]]
    assert "its numbers are counted" in problem["message"] and "file skipped" not in problem["message"]
    # Prompt groups from the text: step 3's samples are in none (zero_adv_frac null there), and that is said.
    r = cli("summarize", damaged, "--by", "step", "--prompt-groups", "--format", "json")
    assert r.exit_code == 1 and "(and of prompt groups); its numbers are counted" in r.stderr, r.stderr
    zero = {row["step"]: row["zero_adv_frac"] for row in json.loads(r.stdout)}
    assert zero[3] is None and all(zero[s] is not None for s in range(6) if s != 3)
    r = cli("metrics", "format", damaged, "--format", "json")
    assert r.exit_code == 1 and "file skipped" not in r.stderr, r.stderr
    assert "the text of their file could not be read (see the errors)" in r.stderr
    rows = {row["step"]: row for row in json.loads(r.stdout)}
    assert rows[3]["texts"] == 0 and rows[3]["no_text"] == ROWS and rows[2]["texts"] == ROWS


@pytest.mark.parametrize("damage", ["page", "utf8"])
def test_the_policy_election_does_not_count_a_file_whose_text_could_not_be_read(tmp_path: Path, damage: str) -> None:
    """A run of more than 16 train files elects from 16 of them: a file whose text could not be read gives no
    vote, but was among the files the note said were read to elect ("16 of its 20" for 15 that voted). One
    whose text is read with U+FFFD (invalid UTF-8) is counted, as read."""
    from runlog.analysis import texts as T

    root = write_flink_run(tmp_path / "run", steps=20).root
    break_trajectory(root / BAD, damage)
    run = open_run(root)
    summarize(run, ["role"])  # a read that finds the file
    run.collect(lambda: [run.samples.select("completion")])
    assert [f.path for f in run.files if f.unread] == ([] if damage == "utf8" else [BAD])
    assert [f.path for f in run.files if f.repaired is not None] == ([BAD] if damage == "utf8" else [])
    elected = T.policy_speaker(run)
    assert elected.files is not None and elected.files[1] == (20 if damage == "utf8" else 19), elected.files


@pytest.mark.parametrize("damage", ["page", "utf8"])
def test_the_election_note_counts_the_files_that_voted_when_the_read_finds_the_damage(
    tmp_path: Path, cli, damage: str
) -> None:
    """The same, from the command line, where the election's own read is what finds the file: the note said "16 of
    its 20 train sample files" for 15 that voted. Read with U+FFFD, the file votes: 16 of 20."""
    root = write_flink_run(tmp_path / "run", steps=20).root
    break_trajectory(root / BAD, damage)
    r = cli("metrics", "format", root, "--spec", "open-r1", "--format", "json")
    note = next(line for line in r.stderr.splitlines() if "read to elect it" in line)
    voted = "16 of its 20" if damage == "utf8" else "15 of its 19"
    assert f"in the {voted} train sample files read to elect it" in note, note
