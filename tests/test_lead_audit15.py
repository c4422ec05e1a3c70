"""Lead's tests for the fifteenth round of audits: what the fixers' notes asked of files outside their own."""

from __future__ import annotations

import json
from pathlib import Path


def _scalars_run(root: Path) -> Path:
    root.mkdir()
    (root / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "run_id": "mw"}))
    (root / "scalars.p0.jsonl").write_text(json.dumps({"step": 0, "time": 1, "k": 1.0, "k__count": 10}) + "\n")
    (root / "scalars.p1.jsonl").write_text(json.dumps({"step": 0, "time": 1, "k": 3.0}) + "\n")
    return root


def test_summarize_scalars_says_shards_that_disagree_on_a_weight(tmp_path, cli):
    """(10 x 1 + 3) / 11: a value without a __count is one value, as StatsTracker writes it; said, as the upload
    says it (the wandb audit: the figure differed from the docs' "else a plain mean" without a word)."""
    r = cli("summarize", _scalars_run(tmp_path / "run"), "--scalars", "--format", "json")
    assert r.exit_code == 0, r.stderr
    [row] = json.loads(r.stdout)
    assert abs(row["mean"] - 13 / 11) < 1e-12
    assert "shards that disagree on a __count weight at a step: k (1 step(s), first 0)" in r.stderr


def test_wrote_names_no_size_for_what_is_not_a_regular_file(tmp_path, capsys):
    """`-o /dev/null` or a FIFO: the closing line said `(0 B)` whatever was written (13,076 bytes; a re-audit)."""
    from runlog.cli.common import wrote

    wrote("/dev/null")
    (tmp_path / "f.csv").write_text("a,b\n1,2\n")
    wrote(tmp_path / "f.csv")
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["wrote /dev/null", f"wrote {tmp_path / 'f.csv'} (8 B)"]


def test_a_format_drift_of_texts_and_component_keeps_one_key():
    """When the texts' format adherence and a format reward component both fall, the one finding carried the
    component's figures under ``component``, its subject (``Finding.key``): a dict that moved with every step, so
    ``diff --findings`` split one finding into `disappears` + `appears` and ``doctor --follow`` said it again at
    each step (a cross-command audit)."""
    from runlog.analysis.doctor_text import _merge_format
    from runlog.analysis.findings import Finding

    def text_drift(before: float) -> Finding:
        return Finding("format_drift", "warning", "adherence fell", None, 12, {"before": before, "after": 0.1})

    def component(before: float) -> Finding:
        return Finding("format_drift", "warning", "format fell", None, 10, {"component": "format", "before": before})

    [a] = _merge_format([text_drift(0.9)], [component(0.92)])
    [b] = _merge_format([text_drift(0.8)], [component(0.95)])
    assert a.key == b.key == text_drift(0.5).key == ("format_drift", None, None)
    assert a.evidence["format_component"] == {"component": "format", "before": 0.92} and a.onset_step == 10
