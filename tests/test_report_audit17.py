"""The report's comparison (``report RUN --against BASELINE``): a paired comparison that rests on group ids alone
(``runlog diff``'s ``paired.by_id``) says so in its cell, as diff's note does, since its interval may be of no one
prompt (g0..g7 numbered before DAPO-style filtering dropped groups)."""

from __future__ import annotations

from pathlib import Path

from runlog import open_run
from runlog.analysis.diff import DiffOptions, diff_runs
from runlog.analysis.doctor_config import DoctorConfig
from runlog.report import build_report
from test_diff_pairing_audit17 import _filtered


def test_a_pairing_by_id_alone_is_said_in_the_report(tmp_path: Path) -> None:
    (a, _), (b, _) = _filtered(tmp_path / "A", 1000), _filtered(tmp_path / "B", 5000)
    html = build_report(open_run(b), DoctorConfig().replace({"split": "train"}, "--split"), against=open_run(a))
    pairs = diff_runs([open_run(a), open_run(b)], options=DiffOptions(splits=("train",))).paired
    [alone] = pairs["by_id"].to_list()
    assert alone == pairs["prompts"].item() > 0  # every pair by id: none of these runs' prompts has a text
    assert f"({alone}; {alone} by id alone, no verdict: see the note)</td>" in html


def test_pairs_by_prompt_text_are_not_said_by_id(tmp_path: Path) -> None:
    text = "prompt {s}-{g}"
    (a, _), (b, _) = _filtered(tmp_path / "A", 1000, text), _filtered(tmp_path / "B", 1000, text, shift=0.3)
    html = build_report(open_run(b), DoctorConfig().replace({"split": "train"}, "--split"), against=open_run(a))
    assert "paired (prompts)" in html and "by id alone" not in html
