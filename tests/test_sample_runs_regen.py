"""``scripts/make_sample_runs.py`` gives back the committed ``sample_runs/`` byte for byte, as
sample_runs/README.md promises: a change to the writer or the tracker that changes what they write must
regenerate the sample runs in the same commit (a float32 std became a float64 one and the committed
``debate_grpo/scalars.p0.jsonl`` was left behind, 1e-8 off on 30 of its 32 lines).

``debate_grpo`` comes from real float32 training in JAX: its bytes hold for the JAX the runs were made with
(sample_runs/README.md names it); with another JAX this test is skipped, saying why."""

from __future__ import annotations

import filecmp
import subprocess
import sys

import pytest

from conftest import ROOT, SAMPLE_RUNS

MADE_WITH_JAX = "0.10.2"  # sample_runs/README.md says the same
RUNS = ["debate_grpo", "flink_mixed", "jaxarc", "damaged"]


def _files(root):  # noqa: ANN001, ANN202
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_regenerating_the_sample_runs_gives_the_committed_files(tmp_path):
    jax = pytest.importorskip("jax", reason="debate_grpo is made by a JAX trainer: pip install -e '.[jax]'")
    if jax.__version__ != MADE_WITH_JAX:
        pytest.skip(f"the sample runs were made with JAX {MADE_WITH_JAX}; this is {jax.__version__}")
    assert MADE_WITH_JAX in (SAMPLE_RUNS / "README.md").read_text()
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_sample_runs.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in RUNS:
        made, kept = out / name, SAMPLE_RUNS / name
        assert _files(made) == _files(kept), name
        differ = [str(p) for p in _files(kept) if not filecmp.cmp(made / p, kept / p, shallow=False)]
        assert not differ, f"{name}: {differ} differ from scripts/make_sample_runs.py's (rerun it and commit)"
