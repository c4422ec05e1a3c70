"""Audit 13 of ``diff``, where its notes and warnings reach other commands: ``plot --diff`` cut its notes at the
20 lines of files' problems, pointing to ``runlog inspect`` (which has none of them), and ``report --against``
left out the warning of sample ids read twice in a compared window (a copied shard, counted twice).

Expected notes come from ``runlog diff --format json`` of the same runs; the copied ids from pyarrow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from test_diff_audit13 import _native_pair, every_other_step_runs


def test_plot_diff_prints_every_note(tmp_path: Path, cli) -> None:  # noqa: ANN001
    base, others = every_other_step_runs(tmp_path, 22)  # one note each: more than the cap of 20
    notes = json.loads(cli("diff", base, *others, "-w", "3", "--format", "json").stdout)["notes"]
    out = tmp_path / "d.png"
    r = cli("plot", base, *(x for o in others for x in ("--diff", o)), "-o", out)
    assert r.exit_code == 0, r.stderr
    printed = [line.removeprefix("note: ") for line in r.stderr.splitlines() if line.startswith("note: ")]
    assert len(printed) > 20 and "runlog inspect" not in r.stderr
    assert set(printed) <= set(notes)  # plot --diff reads the series only: the notes of its overlap, diff's words
    assert out.exists()


def test_report_against_says_sample_ids_read_twice(tmp_path: Path, cli) -> None:  # noqa: ANN001
    a, b = _native_pair(tmp_path)
    [src] = (b / "samples" / "train").glob("step_*00015.p0.parquet")
    shutil.copy(src, src.with_name(src.name.replace(".p0.", ".p1.")))
    ids = pq.read_table(src, columns=["sample_id"]).column(0).to_pylist()
    out = tmp_path / "r.html"
    r = cli("report", b, "--against", a, "-o", out)
    assert r.exit_code in (0, 1), r.stderr
    page = out.read_text()
    # In the comparison itself (the doctor's section of the run says it of the run, not of the windows compared).
    comparison = page.split('<h2 id="comparison">', 1)[1].split("<h2", 1)[0]
    assert "warning: B: repeated_sample_ids:" in comparison
    assert f"{len(set(ids))} sample id(s) occur more than once" in comparison
