"""A merged or averaged scalar of +inf and -inf is NaN (a review of ea773eb: ``within`` clamped the NaN mean to
+inf, since polars orders NaN above every number)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from typer.testing import CliRunner

from runlog.cli.app import app


def test_inf_and_minus_inf_average_to_nan(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    manifest = {"format": "runlog", "schema_version": 2, "run_id": "r", "name": "r", "created": "2026-01-01T00:00:00Z"}
    (root / "run.json").write_text(json.dumps({**manifest, "config": {}, "roles": []}))
    (root / "scalars.p0.jsonl").write_text(
        '{"step":0,"x":1e400,"y":1e400}\n{"step":1,"x":-1e400}\n{"step":2,"x":1.0}\n'
    )
    (root / "scalars.p1.jsonl").write_text('{"step":0,"y":-1e400}\n')
    res = CliRunner().invoke(app, ["summarize", str(root), "--scalars", "-f", "csv"])
    assert res.exit_code == 0, res.output
    rows = {line.split(",")[0]: line.split(",") for line in res.stdout.splitlines()[1:]}
    assert math.isnan(float(rows["x"][2]))  # mean of +inf, -inf, 1 over steps: was inf
    assert math.isnan(float(rows["y"][1])) and rows["y"][6] == "1"  # the shards' +inf and -inf merged: NaN
