"""An exception column stored as another type than text, a re-audit of 6ebcd32 (every expected figure worked out
here with plain Python from the values written):

- Arrow binary (a writer that put ``bytes`` in it) is its text encoded: read as UTF-8 in the native layout and in
  Flink's, the None/null rule applied (Flink counted every non-null value as a failure, ``b"None"`` too, unsaid;
  native skipped the file as ``wrong_type``, its rewards and all). A byte sequence that is no UTF-8 is read as
  U+FFFD, as runlog reads such bytes elsewhere, still a failure, and said once a run;
- a Flink ``exception_info`` of another type (an integer error code) holds no text whose meaning can be told: a
  warning names the file and the type, and its values are not counted as failures (``0`` counted as one, unsaid).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from runlog import open_run
from runlog.cli.app import app
from runlog.writer import RunWriter
from test_exceptions_audit16 import native_run as texts_run

# Per step: a real failure, message-less ones ('' and white space), stringified nulls (any case but the two words
# is a failure, as the docs say), and bytes that are no UTF-8 (a byte 0xff; a character cut in two).
STEP_BYTES: list[list[bytes | None]] = [
    [b"TimeoutError", b"", b" \t", b"None", b" null\n", None, b"Time\xffout", None],
    [b"", None, b"NULL", b"null", None, b"\xe2\x80", None, None],
]


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def text(v: bytes) -> str:
    return v.decode("utf-8", "replace")


def failed(values: list[bytes | None]) -> int:
    """The rule, in plain Python: every text is a failure but the stringified nulls."""
    return sum(1 for v in values if v is not None and text(v).strip() not in ("None", "null"))


def null_texts(values: list[bytes | None]) -> int:
    return sum(1 for v in values if v is not None and text(v).strip() in ("None", "null"))


def blanks(values: list[bytes | None]) -> int:
    return sum(1 for v in values if v is not None and not text(v).strip())


def invalid(values: list[bytes | None]) -> int:
    def bad(v: bytes) -> bool:
        try:
            v.decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False

    return sum(1 for v in values if v is not None and bad(v))


def set_exceptions(f: Path, col: str, values: list[Any], type_: pa.DataType) -> None:
    t = pq.read_table(f)
    vals = (values * t.num_rows)[: t.num_rows]
    pq.write_table(t.set_column(t.schema.get_field_index(col), col, pa.array(vals, type=type_)), f)


def native_run(root: Path, type_: pa.DataType = pa.binary()) -> list[list[Any]]:
    """Two steps of eight samples whose ``exception`` column is ``STEP_BYTES`` (of ``type_``); the values. The run
    is ``test_exceptions_audit16``'s, its exception texts then replaced."""
    texts_run(root)
    for step, f in enumerate(sorted((root / "samples" / "train").glob("*.parquet"))):
        set_exceptions(f, "exception", STEP_BYTES[step], type_)
    return STEP_BYTES


def flink_run(root: Path, values: list[list[Any]] = STEP_BYTES, type_: pa.DataType = pa.binary()) -> list[list[Any]]:
    """Two Flink v1 train files of eight samples whose ``exception_info`` is ``values`` (of ``type_``)."""
    out = root / "flink_logs"
    out.mkdir(parents=True)
    for step, vals in enumerate(values):
        n = len(vals)
        table = pa.table(
            {
                "unique_sample_id": [f"s{step}-{i}" for i in range(n)],
                "reward": pa.array([0.1 * i for i in range(n)], pa.float64()),
                "exception_info": pa.array(vals, type=type_),
                "env_name": ["e"] * n,
                "trajectory": ["<user>q</user><assistant>a</assistant>"] * n,
                "agent_trajectories": [None] * n,
                "reward_metrics": pa.array([None] * n, pa.string()),
                "reward_text_info": [None] * n,
                "schema_version": pa.array([1] * n, pa.int64()),
                "solver_reward": pa.array([1.0] * n, pa.float64()),
                "solver_kl": pa.array([0.1] * n, pa.float64()),
            }
        )
        pq.write_table(table, out / f"batch_debug_data_train_{step}.parquet")
    return values


def warnings_of(stderr: str) -> list[str]:
    return [x for x in stderr.splitlines() if "exception value(s)" in x]


def counted(values: list[list[Any]], count: Any) -> str:
    files = sum(1 for step in values if count(step))
    where = "here" if files == 1 else f"in {files} sample files (this one the first)"
    return f"{sum(count(step) for step in values)} exception value(s) {where} are"


@pytest.mark.parametrize("layout", ["native", "flink"])
@pytest.mark.parametrize("cache", ["off", "on"])
def test_a_binary_exception_column_is_read_as_its_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str, cache: str
) -> None:
    """Both layouts read bytes as UTF-8 text and apply the None/null rule: summarize (overall and per step),
    inspect and render --exceptions count the same failures; the stringified nulls, the blanks and the bytes that
    are no UTF-8 are each said once, counted over the run (a second command, its probes cached, says the same).
    Before: Flink counted 10 of 16 failed where the rule gives 7 (b"None" a failure), unsaid; native skipped both
    files (wrong_type) and had no samples to summarize."""
    monkeypatch.setenv("RUNLOG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RUNLOG_CACHE", cache)
    root = tmp_path / "run"
    values = native_run(root) if layout == "native" else flink_run(root)
    every = [v for step in values for v in step]
    for _ in range(2):
        r = cli("summarize", str(root), "--format", "json")
        assert r.exit_code == 0, r.output
        assert "wrong_type" not in r.stderr and "not text" not in r.stderr
        [row] = json.loads(r.stdout)
        assert row["sample:exception_rate"] == pytest.approx(failed(every) / len(every))
        said = warnings_of(r.stderr)
        assert len(said) == 3, said
        assert f"{counted(values, null_texts)} the text 'None' or 'null'" in said[0]
        assert f"{counted(values, blanks)} empty or white space" in said[1]
        assert f"{counted(values, invalid)} bytes that are not valid UTF-8" in said[2]
        assert "U+FFFD" in said[2] and "counted as failed trajectories" in said[2]
    by_step = json.loads(cli("summarize", str(root), "--by", "step", "--format", "json").stdout)
    rates = [x.get("sample:exception_rate", x.get("exception_rate")) for x in by_step]
    assert rates == pytest.approx([failed(s) / len(s) for s in values])
    assert json.loads(cli("inspect", str(root), "--format", "json").stdout)["exceptions"] == failed(every)
    rendered = cli("render-trajectory", str(root), "--exceptions", "--steps", "all", "--format", "json")
    assert rendered.exit_code == 0, rendered.output
    shown = json.loads(rendered.stdout)
    assert len(shown) == failed(every)
    want = sorted(text(v) for v in every if v is not None and text(v).strip() not in ("None", "null"))
    assert sorted(s["exception"] for s in shown) == want  # "Time\ufffdout" among them


@pytest.mark.parametrize("cache", ["off", "on"])
def test_flink_exception_codes_are_said_and_not_counted_as_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: str
) -> None:
    """An integer ``exception_info`` (0 for none?) is no text: one warning per file names it and its type, and no
    figure counts its values as failures (before: rate 0.75 for [0, 1, null, 2], 0 a failure, nothing said)."""
    monkeypatch.setenv("RUNLOG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RUNLOG_CACHE", cache)
    root = tmp_path / "run"
    flink_run(root, [[0, 1, None, 2], [0, 0, 3, None]], pa.int64())
    for _ in range(2):
        r = cli("summarize", str(root), "--format", "json")
        assert r.exit_code == 0, r.output
        [row] = json.loads(r.stdout)
        assert row["sample:exception_rate"] == 0.0
        [said] = [x for x in r.stderr.splitlines() if "exception_info column" in x]  # the files' one message
        assert "flink_logs/batch_debug_data_train_0.parquet and 1 more file(s)" in said
        assert "its exception_info column is int64, not text: not read as exceptions" in said
    warned = [(p.path, p.message) for p in open_run(root).warnings if "exception_info column" in p.message]
    assert [path for path, _ in warned] == [f"flink_logs/batch_debug_data_train_{step}.parquet" for step in range(2)]
    assert json.loads(cli("inspect", str(root), "--format", "json").stdout)["exceptions"] == 0
    rendered = cli("render-trajectory", str(root), "--exceptions", "--steps", "all", "--format", "json")
    assert rendered.exit_code != 0 or json.loads(rendered.stdout) == []


def test_a_native_exception_column_of_numbers_is_still_refused(tmp_path: Path) -> None:
    """The native layout's types are its format's (runlog's writer writes text): an integer column is
    ``wrong_type`` and the file skipped, as before; only bytes (text encoded) are read."""
    root = tmp_path / "run"
    with RunWriter(root, name="r", roles=["P"], durable=False) as w:
        w.log_samples(0, [{"sample_id": "s0", "group_id": "g", "reward": 1.0, "roles": {"P": {"reward": 1.0}}}])
    [f] = (root / "samples" / "train").glob("*.parquet")
    set_exceptions(f, "exception", [7], pa.int64())
    r = cli("inspect", str(root), "--format", "json")
    problems = json.loads(r.stdout)["problems"]
    assert [p["kind"] for p in problems] == ["wrong_type"]
    assert "exception is int64, expected string" in problems[0]["message"]
