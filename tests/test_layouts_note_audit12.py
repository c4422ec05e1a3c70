"""Audit a12 (new user): loose dumps of two layouts side by side in one folder (a verifiers results file and an
inspect_ai log) are one run, as docs/format.md says, and every figure pools them: ``summarize`` printed one
``eval`` row of both with no word of it. It now says which layouts the run pools, with their rows.

The rows are counted here from the files written (json), never with runlog's code."""

from __future__ import annotations

import json
from pathlib import Path

from test_inspect_ai import sample as inspect_sample
from test_inspect_ai import write_json_log


def _verifiers(path: Path, n: int) -> Path:
    q = [{"role": "user", "content": "q"}]
    path.write_text(
        "".join(json.dumps({"id": i, "prompt": q, "completion": "a", "reward": 0.5}) + "\n" for i in range(n))
    )
    return path


def test_a_run_of_two_layouts_says_it_pools_them(cli, tmp_path: Path) -> None:  # noqa: ANN001
    run = tmp_path / "dumps"
    run.mkdir()
    _verifiers(run / "results.jsonl", 5)
    write_json_log(run / "task.json", [inspect_sample(1, 1), inspect_sample(2, 1)])
    verifiers_rows = len((run / "results.jsonl").read_text().splitlines())
    inspect_rows = len(json.loads((run / "task.json").read_text())["samples"])
    r = cli("summarize", str(run), "--format", "json")
    assert r.exit_code == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["reward_count"] + row["reward_null"] + row["reward_nan"] == verifiers_rows + inspect_rows
    note = f"holds samples of 2 layouts, verifiers ({verifiers_rows} rows), inspect_ai ({inspect_rows} rows)"
    assert note in r.stderr, r.stderr
    apart = cli("summarize", str(run), "--by", "env", "--format", "json")
    assert "holds samples of" not in apart.stderr  # asked apart: nothing pooled to say


def test_one_layout_says_nothing(cli, tmp_path: Path) -> None:  # noqa: ANN001
    run = tmp_path / "dump"
    run.mkdir()
    _verifiers(run / "results.jsonl", 3)
    r = cli("summarize", str(run), "--format", "json")
    assert r.exit_code == 0 and "holds samples of" not in r.stderr
