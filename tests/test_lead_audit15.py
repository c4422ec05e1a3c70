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


def test_a_step_beyond_int64_is_left_out_of_the_series_not_an_internal_error(tmp_path, cli):
    """doctor, report and plot ended in `internal error` (exit 3) on a run with a uint64 step of 2**63 + 5, which
    inspect says (a re-audit): the step's rows are left out of the per-step series, with a note."""
    from test_diff_audit15 import _write_uint64  # the same run diff is tested on

    run = _write_uint64(tmp_path / "run")
    r = cli("doctor", run, "--format", "json")
    assert r.exit_code == 1, r.stderr
    out = json.loads(r.stdout)
    assert any("beyond the 64-bit integer range" in f["message"] for f in out["findings"])
    assert any("left out of the per-step series" in n for n in out["notes"])
    r = cli("report", run, "-o", tmp_path / "r.html")
    assert r.exit_code == 0, r.stderr
    assert "left out of the per-step series" in (tmp_path / "r.html").read_text()
    r = cli("plot", run, "-o", tmp_path / "p.png")
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "p.png").stat().st_size > 0


def test_a_file_found_unreadable_in_a_live_read_is_read_again_from_memory(tmp_path, monkeypatch):
    """watch and doctor --follow never map a file (one rewritten in place kills the process with SIGBUS): the
    read that tells which file failed a query read it from its path, mapped, even in a live read (the watch
    fixer's note)."""
    from runlog import open_run
    from runlog._lazy import pl
    from runlog.analysis.summarize import summarize
    from runlog.formats.common import live_reads
    from test_report_audit2 import corrupt_column, three_role_run

    root = three_role_run(tmp_path / "run", steps=4)
    bad = sorted((root / "samples" / "train").glob("*.parquet"))[1]
    corrupt_column(bad, "reward")
    sources = []
    real = pl.read_parquet  # (runlog's lazy polars holds its own reference to the function)

    def spy(source, *args, **kwargs):
        sources.append(source)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(pl, "read_parquet", spy)
    run = open_run(root)
    with live_reads():
        summarize(run, ["role"])
    assert [p.path for p in run.problems] == [str(bad.relative_to(root))]
    assert sources and all(isinstance(s, bytes) for s in sources), [type(s) for s in sources]
