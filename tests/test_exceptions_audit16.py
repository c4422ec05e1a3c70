"""Exception texts that are not what they seem, read one way in every layout with an exception column (native
``exception``, Flink's ``exception_info`` in Parquet and CSV), a review of 0f3ec52 (every expected figure worked
out here with plain Python from the values written):

- ``None`` and ``null`` (white space around them stripped) are stringified nulls: no failure, said;
- an empty or white-space text is a failure (``str(TimeoutError())`` is ``''``), said: read as none, a run whose
  timeouts were stored as ``str(exc)`` showed a third of its failures;
- white space is Python's (``str.isspace``): U+001C..U+001F are white space, as U+3000 is;
- Flink Parquet reads them as native and CSV files do (it counted every one as a failure, unsaid);
- ``render-trajectory --steps N`` says each such warning once, with the whole run's count.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from runlog import open_run
from runlog.cli.app import app
from runlog.writer import RunWriter

FLINK = Path(__file__).resolve().parents[1] / "sample_runs" / "flink_mixed" / "flink_logs"
# Per step (two steps): what a third-party writer stored. Step 0: a real failure, two message-less ones ('' and
# white space), one of Python's white space that polars' strip does not strip (U+001C), two stringified nulls.
STEP_TEXTS = [
    ["TimeoutError", "", " \t", "None", " null\n", None, None, "\x1c"],
    ["", None, None, "\u3000", None, "NULL", None, None],
]


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def failed(texts: list[str | None]) -> int:
    """The rule, in plain Python: every text is a failure but the stringified nulls."""
    return sum(1 for t in texts if t is not None and t.strip() not in ("None", "null"))


def null_texts(texts: list[str | None]) -> int:
    return sum(1 for t in texts if t is not None and t.strip() in ("None", "null"))


def blanks(texts: list[str | None]) -> int:
    return sum(1 for t in texts if t is not None and not t.strip())


def native_run(root: Path) -> list[list[str | None]]:
    """Two steps of eight samples whose exception texts are ``STEP_TEXTS``; the texts per step."""
    with RunWriter(root, name="r", roles=["P"], durable=False) as w:
        for step in range(2):
            w.log_samples(
                step,
                [
                    {
                        "sample_id": f"s{step}-{i}",
                        "group_id": f"g{step}",
                        "reward": 0.1 * i,
                        "roles": {"P": {"reward": 0.1 * i, "kl": 0.01}},
                        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": f"a{i}"}],
                    }
                    for i in range(8)
                ],
            )
    for step, f in enumerate(sorted((root / "samples" / "train").glob("*.parquet"))):
        t = pq.read_table(f)
        exc = pa.array(STEP_TEXTS[step], type=pa.string())
        pq.write_table(t.set_column(t.schema.get_field_index("exception"), "exception", exc), f)
    return STEP_TEXTS


def flink_run(root: Path) -> list[list[str | None]]:
    """Two bundled Flink Parquet train files whose ``exception_info`` is ``STEP_TEXTS`` repeated; the texts."""
    out = root / "flink_logs"
    out.mkdir(parents=True)
    texts = []
    for step in range(2):
        name = f"batch_debug_data_train_{step}.parquet"
        t = pq.read_table(FLINK / name)
        vals = (STEP_TEXTS[step] * t.num_rows)[: t.num_rows]
        i = t.schema.get_field_index("exception_info")
        pq.write_table(t.set_column(i, "exception_info", pa.array(vals, type=pa.string())), out / name)
        texts.append(vals)
    return texts


def counted(texts: list[list[str | None]], count: Any) -> str:
    """How the warning counts the values ``count`` counts: their number and the files (steps) that hold them."""
    files = sum(1 for step in texts if count(step))
    where = "here" if files == 1 else f"in {files} sample files (this one the first)"
    return f"{sum(count(step) for step in texts)} exception value(s) {where} are"


def warnings_of(stderr: str) -> list[str]:
    return [x for x in stderr.splitlines() if "exception value(s)" in x]


@pytest.mark.parametrize("layout", ["native", "flink"])
@pytest.mark.parametrize("cache", ["off", "on"])
def test_every_consumer_counts_blank_texts_as_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str, cache: str
) -> None:
    """summarize, inspect and render --exceptions count every failure, the message-less ones too, and none of the
    stringified nulls; one warning of each kind counts them over the run (a second command, its probes cached,
    says the same). Before: native read '' and white space as no failure (rate 2/16 for 5/16); Flink Parquet read
    every text as one (16/16), unsaid."""
    monkeypatch.setenv("RUNLOG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RUNLOG_CACHE", cache)
    root = tmp_path / "run"
    texts = native_run(root) if layout == "native" else flink_run(root)
    rows = sum(map(len, texts))
    every = [t for step in texts for t in step]
    for _ in range(2):
        r = cli("summarize", str(root), "--format", "json")
        assert r.exit_code == 0, r.output
        [row] = json.loads(r.stdout)
        assert row["sample:exception_rate"] == pytest.approx(failed(every) / rows)
        said = warnings_of(r.stderr)
        assert len(said) == 2, said
        assert f"{counted(texts, null_texts)} the text 'None' or 'null'" in said[0]
        assert "read as no exception" in said[0]
        assert f"{counted(texts, blanks)} empty or white space" in said[1]
        assert "counted as failed trajectories" in said[1]
    by_step = json.loads(cli("summarize", str(root), "--by", "step", "--format", "json").stdout)
    rates = [x.get("sample:exception_rate", x.get("exception_rate")) for x in by_step]
    assert rates == pytest.approx([failed(step) / len(step) for step in texts])
    assert json.loads(cli("inspect", str(root), "--format", "json").stdout)["exceptions"] == failed(every)
    assert json.loads(cli("inspect", str(root), "--deep", "--format", "json").stdout)["exceptions"] == failed(every)
    rendered = cli("render-trajectory", str(root), "--exceptions", "--steps", "all", "--format", "json")
    assert rendered.exit_code == 0, rendered.output
    assert len(json.loads(rendered.stdout)) == failed(every)


@pytest.mark.parametrize("layout", ["native", "flink"])
def test_the_report_and_doctor_count_blank_texts_as_failures(tmp_path: Path, layout: str, figures_not_drawn) -> None:
    """The report's tile and the doctor's exception spike (its worst step) agree with summarize."""
    pytest.importorskip("matplotlib")
    from runlog.analysis.doctor import diagnose
    from runlog.report import build_report
    from test_report_audit12 import text_of

    root = tmp_path / "run"
    texts = native_run(root) if layout == "native" else flink_run(root)
    total = sum(failed(step) for step in texts)
    assert f"{total} failed trajectories" in text_of(build_report(open_run(root)))
    [spike] = [f for f in diagnose(open_run(root)).findings if f.kind == "exception_spike"]
    worst = max(failed(step) / len(step) for step in texts)
    assert f"worst {worst:.0%}" in spike.message


def test_flink_csv_reads_its_exception_texts_as_parquet_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A quoted empty text "" is a failure (as '' in Parquet), an empty field CSV's null; white space a failure,
    said; 'None' and 'null' no failure, counted (they were read as null by the CSV's fill values, unsaid)."""
    monkeypatch.setenv("RUNLOG_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run" / "flink_logs"
    out.mkdir(parents=True)
    df = pl.read_csv(FLINK / "batch_debug_data_train_13.csv", infer_schema=False)
    pattern: list[str | None] = ["Traceback: boom", "", None, "None", "  ", " null", "\x1f", None]
    vals = (pattern * df.height)[: df.height]
    df.with_columns(pl.Series("exception_info", vals, dtype=pl.String)).write_csv(out / "batch_debug_data_train_13.csv")
    r = cli("summarize", str(out.parent), "--format", "json")
    assert r.exit_code == 0, r.output
    rates = [row["sample:exception_rate"] for row in json.loads(r.stdout)]  # (a row per role, the samples' rate)
    assert rates == pytest.approx([failed(vals) / len(vals)] * len(rates))
    said = warnings_of(r.stderr)
    assert len(said) == 2, said
    assert f"{null_texts(vals)} exception value(s) here are the text 'None' or 'null'" in said[0]
    assert f"{blanks(vals)} exception value(s) here are empty or white space" in said[1]
    assert json.loads(cli("inspect", str(out.parent), "--format", "json").stdout)["exceptions"] == failed(vals)
    rendered = cli("render-trajectory", str(out.parent), "--exceptions", "--steps", "all", "--format", "json")
    assert len(json.loads(rendered.stdout)) == failed(vals)


def test_render_of_one_step_says_each_warning_once_with_the_runs_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """render-trajectory opens the files of the steps it shows, then the whole run for its problems: the
    warning was said twice ("N here and 1 other file(s)", then the step's own "M here"), counts that add to
    more than there are."""
    monkeypatch.setenv("RUNLOG_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "run"
    texts = native_run(root)
    r = cli("render-trajectory", str(root), "--steps", "1", "--exceptions", "--format", "json")
    assert r.exit_code == 0, r.output
    said = warnings_of(r.stderr)
    assert len(said) == 2, said
    assert f"{counted(texts, null_texts)} the text" in said[0]
    assert f"{counted(texts, blanks)} empty or white space" in said[1]
    assert "in 2 sample files" in said[1]  # the run's: step 1's file holds 2 of them


def test_white_space_is_pythons() -> None:
    """Every character Python strips is white space to runlog (polars' own strip leaves U+001C..U+001F)."""
    import sys

    from runlog.formats.common import SPACES, count_exception_texts

    python = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())
    assert python == SPACES
    values = pl.Series([python, "\x1c", "\x1f\x1f", "\u3000None\x1e", "x\x1c"])
    assert count_exception_texts(values) == (1, 3)


def test_the_bundled_flink_run_is_read_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real nulls (Parquet) and empty CSV fields: no warning, the failures its texts hold."""
    monkeypatch.setenv("RUNLOG_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "flink_mixed"
    shutil.copytree(FLINK.parent, root)
    r = cli("summarize", str(root), "--format", "json")
    assert r.exit_code == 0, r.output
    assert warnings_of(r.stderr) == []
