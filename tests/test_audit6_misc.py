"""Findings of the sixth round of user audits that belong to no other file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from runlog import open_run
from runlog.analysis.aggregate import group_key_expr

ROOT = Path(__file__).resolve().parents[1]


def test_a_file_written_without_statistics_is_not_said_to_lack_group_ids(tmp_path, cli):
    """Its footer does not tell how many group ids are null: the column is read (0 null, by pyarrow), so the
    note on samples without group_id is not printed and the groups are the ids."""
    run = tmp_path / "run"
    shutil.copytree(ROOT / "sample_runs" / "debate_grpo", run)
    path = run / "samples" / "train" / "step_00000003.p0.parquet"
    pq.write_table(pq.read_table(path), path, write_statistics=False)
    assert pq.read_table(path, columns=["group_id"]).column(0).null_count == 0
    assert pq.read_metadata(path).row_group(0).column(0).statistics is None
    r = cli("summarize", run, "--by", "role", "--split", "train")
    assert r.exit_code == 0, r.stderr
    assert "no group_id" not in r.stderr
    key = group_key_expr(open_run(run), True)
    assert key is not None and key.meta.root_names() == ["group_id"]


@pytest.mark.parametrize(
    "args, name",
    [
        (["report", "--split", "train", "--split", "eval", "-o", "r.html"], "--split"),
        (["doctor", "--split", "train", "--split", "eval"], "--split"),
        (["summarize", "--by", "step", "--window", "3", "--window", "5"], "--window"),
        (["summarize", "--format", "csv", "--format", "json"], "--format"),
    ],
)
def test_an_option_that_takes_one_value_given_twice_is_refused(cli, tmp_path, monkeypatch, args, name):
    """click keeps the last of them silently: ``report --split train --split eval`` was a report of eval alone."""
    monkeypatch.chdir(tmp_path)
    r = cli(args[0], ROOT / "sample_runs" / "debate_grpo", *args[1:])
    assert r.exit_code == 2 and r.stdout == ""
    assert f"{name} is given 2 times; it takes one value" in r.stderr, r.stderr
    assert not (tmp_path / "r.html").exists()


def test_the_refusal_is_one_line_from_the_command_line(tmp_path):
    run = ROOT / "sample_runs" / "debate_grpo"
    argv = [sys.executable, "-m", "runlog", "report", str(run), "--split", "train", "--split", "eval", "-o", "r.html"]
    r = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == "" and not (tmp_path / "r.html").exists()
    assert r.stderr == ("Error: runlog report: --split is given 2 times; it takes one value (see 'runlog report -h')\n")


def test_options_that_can_be_repeated_still_can(cli):
    r = cli("summarize", ROOT / "sample_runs" / "debate_grpo", "--by", "role", "--by", "step", "--role", "solver",
            "--role", "judge", "--split", "train", "--format", "json")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert {row["role"] for row in json.loads(r.stdout)} == {"solver", "judge"}
    assert cli("inspect", ROOT / "sample_runs" / "debate_grpo", "--deep", "--deep").exit_code == 0  # a flag twice


def test_the_sample_browser_says_the_files_it_could_not_read(cli, tmp_path):
    """Whoever gets only the page must see that samples may be missing from it (it said only 'N of N matched')."""
    page = tmp_path / "d.html"
    r = cli("render-trajectory", ROOT / "sample_runs" / "damaged", "--steps", "all", "--format", "html", "-o", page)
    assert r.exit_code == 0, r.stderr
    text = page.read_text()
    assert "2 sample file(s) could not be read in full: samples may be missing from this page" in text
    for path in ("samples/train/step_00000001.p0.parquet", "samples/train/step_00000004.p0.parquet"):
        assert f"<code>{path}</code>" in text and f"error: samples/train/{path.rsplit('/', 1)[1]}" in r.stderr
    clean = tmp_path / "c.html"
    assert (
        cli("render-trajectory", ROOT / "sample_runs" / "debate_grpo", "--format", "html", "-o", clean).exit_code == 0
    )
    assert "could not be read" not in clean.read_text() and "problems met" not in clean.read_text()


def test_the_reports_role_table_counts_null_rewards_and_kl_apart(cli, tmp_path):
    """Null rewards and KL values were in no column of the report (77 rewards, 0 NaN: 3 nulls gone without a
    word); the table now has them, equal to pyarrow's count (debate_grpo train: 15 null rewards per role)."""
    pytest.importorskip("matplotlib")
    run = ROOT / "sample_runs" / "debate_grpo"
    nulls = {"solver": 0, "verifier": 0, "judge": 0}
    for f in sorted((run / "samples" / "train").glob("*.parquet")):
        for cell in pq.read_table(f, columns=["roles"]).column("roles").to_pylist():
            for x in cell or []:
                nulls[x["role"]] += x["reward"] is None
    assert nulls == {"solver": 15, "verifier": 15, "judge": 15}
    page = tmp_path / "r.html"
    assert cli("report", run, "-o", page).exit_code == 0
    text = page.read_text()
    assert "<th" in text and ">reward null<" in text and ">KL null<" in text
    section = text[text.index(">reward null<") :]
    rows = section[: section.index("</table>")]
    for role in nulls:
        row = rows[rows.index(f">{role}<") :]
        cells = re.findall(r"<td[^>]*>([^<]*)</td>", row[: row.index("</tr>")])
        headers = re.findall(r"<th[^>]*>([^<]*)</th>", text[text.rfind("<table", 0, text.index(">reward null<")) :])
        assert cells[headers.index("reward null") - 1] == "15", (role, cells, headers)
