"""Audit a18 (the writer): ``log_scalars`` took an int beyond the float64 range (``10**400``), after which every
command lost all of the run's scalars ("could not be read as runlog: OverflowError"); config keys of one JSON text
(``1`` and ``"1"``) kept one value unsaid; bytes in a text column were written as their repr (``"b'...'"``); a full
disk's error named the first file it could not write, not the logged steps that never reached the disk; config
dates other than ``datetime`` were refused although the docs convert them.

The expected values are what the test logged, read back with pyarrow and json, never with runlog's code."""

from __future__ import annotations

import datetime
import errno
import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog import open_run
from runlog.errors import UsageError
from runlog.writer import RunWriter, WriterError, WriterWarning, step_files

# -- an int beyond the float64 range -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [10**400, -(10**400), np.array(10**400, dtype=object)], ids=["10**400", "-10**400", "object array"]
)
def test_log_scalars_refuses_an_int_beyond_the_float64_range(tmp_path: Path, value: Any) -> None:
    """Refused at the call, naming the key and the step; the line is not written, the others are."""
    with RunWriter(tmp_path / "run") as w:
        w.log_scalars(0, {"loss": 0.5})
        with pytest.raises(UsageError, match=r"scalar 'tokens_seen' of step 1 is an int of 1329 bits, beyond the"):
            w.log_scalars(1, {"loss": 0.25, "tokens_seen": value})
        w.log_scalars(2, {"tokens_seen": 2**1000})  # within the range: written as given
    lines = [json.loads(x) for x in (tmp_path / "run" / "scalars.p0.jsonl").read_text().splitlines()]
    assert [(r["step"], {k: v for k, v in r.items() if k not in ("step", "time")}) for r in lines] == [
        (0, {"loss": 0.5}),
        (2, {"tokens_seen": 2**1000}),
    ]


def _shard_with_a_huge_int(run: Path) -> list[float]:
    """100 ``loss`` lines, then a line another writer (or runlog before this fix) wrote with ``10**400``."""
    run.mkdir()
    loss = [1.0 / (s + 1) for s in range(100)]
    lines = [json.dumps({"step": s, "time": float(s), "loss": v}) for s, v in enumerate(loss)]
    lines.append(json.dumps({"step": 100, "time": 100.0, "tokens_seen": 10**400, "debt": -(10**400)}))
    (run / "scalars.p0.jsonl").write_text("\n".join(lines) + "\n")
    return loss


def test_one_int_beyond_the_float64_range_leaves_the_rest_of_the_file_read(tmp_path: Path, cli: Any) -> None:
    """The file was unreadable (every scalar lost, in every command); now the value is read as infinity of its
    sign (as ``1e400`` is), the rest as written, and one warning names the file, the keys and the first line."""
    run = tmp_path / "run"
    loss = _shard_with_a_huge_int(run)
    r = open_run(run)
    frame = r.scalars.collect()
    got = {k: frame.filter(frame["key"] == k)["value"].to_list() for k in ("loss", "tokens_seen", "debt")}
    assert got == {"loss": loss, "tokens_seen": [float("inf")], "debt": [float("-inf")]}
    said = [(p.path, p.message) for p in r.warnings if "float64 range" in p.message]
    assert len(said) == 1 and said[0][0] == "scalars.p0.jsonl", said
    assert "keys: debt, tokens_seen" in said[0][1] and "first: line 101, 'tokens_seen'" in said[0][1], said
    out = cli("summarize", run, "--scalars", "--keys", "loss", "--format", "json")
    assert out.exit_code == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["count"] == 100 and row["mean"] == pytest.approx(sum(loss) / 100, rel=1e-12)


# -- config ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, keys",
    [
        ({"layers": {1: "attn", "1": "mlp"}}, "1 and '1'"),
        ({True: "b", "true": "s"}, "True and 'true'"),
        ({None: 1, "null": 2}, "None and 'null'"),
        ({1.0: "f", "1.0": "s"}, "1.0 and '1.0'"),
    ],
)
def test_config_keys_of_one_json_text_are_refused(tmp_path: Path, config: dict[Any, Any], keys: str) -> None:
    """Both keys named, before the run folder is made (``run.json`` kept one value of the two, unsaid)."""
    with pytest.raises(UsageError, match=f"has the keys {re.escape(keys)}, which are both"):
        RunWriter(tmp_path / "run", config=config)
    assert not (tmp_path / "run").exists()


def test_config_keys_become_their_json_text(tmp_path: Path) -> None:
    with RunWriter(tmp_path / "run", config={1: "a", False: "b", None: "c", 2.5: "d", "e": {3: "f"}}):
        pass
    config = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert config == {"1": "a", "false": "b", "null": "c", "2.5": "d", "e": {"3": "f"}}


def test_config_dates_and_times_are_written_as_iso_text(tmp_path: Path) -> None:
    """docs/writer.md: dates to ISO text (a ``date`` and numpy's ``datetime64`` were refused, so the trainer did
    not start; a nanosecond ``datetime64`` would have been an int)."""
    config = {
        "cutoff": datetime.date(2024, 1, 2),
        "at": datetime.datetime(2024, 1, 2, 3, 4),
        "daily": datetime.time(3, 4, 5),
        "np_day": np.datetime64("2024-01-02"),
        "np_ns": np.datetime64("2024-01-02T03:04:05.123456789"),
        "np_days": np.array(["2024-01-02", "NaT"], dtype="datetime64[D]"),
    }
    with RunWriter(tmp_path / "run", config=config):
        pass
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"] == {
        "cutoff": "2024-01-02",
        "at": "2024-01-02T03:04:00",
        "daily": "03:04:05",
        "np_day": "2024-01-02",
        "np_ns": "2024-01-02T03:04:05.123456789",
        "np_days": ["2024-01-02", "NaT"],
    }


# -- bytes in a text column ------------------------------------------------------------------------------------


def test_bytes_in_a_text_column_are_written_as_the_text_they_hold(tmp_path: Path) -> None:
    """Valid UTF-8 as its text (it was ``"b'<answer>4</answer>'"``), with no warning; bytes that are not valid UTF-8
    with U+FFFD, said once per column; a numpy ``S`` or Arrow binary column the same (an invalid one stopped the
    writer)."""
    run = tmp_path / "run"
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with RunWriter(run) as w:
            w.log_samples(0, {"reward": [1.0, 0.0], "completion": ["café".encode(), b"<answer>4</answer>"]})
            w.log_samples(1, {"reward": [1.0, 0.0], "completion": [b"ok \xff", "text"]})
            w.log_samples(2, {"reward": [1.0], "completion": np.array([b"\xc3\xa9\xfe"]), "prompt": pa.array([b"q"])})
            w.log_samples(3, [{"reward": 1.0, "completion": b"\xc3", "group_id": bytearray(b"g")}])
    text = {}
    for f in sorted((run / "samples" / "train").glob("step_*.parquet")):
        t = pq.read_table(f)
        text[int(f.name[5:13])] = {c: t.column(c).to_pylist() for c in ("completion", "prompt", "group_id")}
    assert text == {
        0: {"completion": ["café", "<answer>4</answer>"], "prompt": [None, None], "group_id": [None, None]},
        1: {"completion": ["ok \ufffd", "text"], "prompt": [None, None], "group_id": [None, None]},
        2: {"completion": ["é\ufffd"], "prompt": ["q"], "group_id": [None]},
        3: {"completion": ["\ufffd"], "prompt": [None], "group_id": ["g"]},
    }
    messages = [str(x.message) for x in said if issubclass(x.category, WriterWarning)]
    assert len(messages) == 1, messages
    assert "column 'completion' of train step 1 holds 1 bytes value(s) that are not valid UTF-8" in messages[0]


# -- a full disk -----------------------------------------------------------------------------------------------


def _steps(text: str) -> list[int]:
    """``3-5, 8`` as ``[3, 4, 5, 8]``."""
    out: list[int] = []
    for part in text.split(", "):
        a, _, b = part.partition("-")
        out += range(int(a), int(b or a) + 1)
    return out


def test_a_full_disk_names_every_logged_step_not_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The step files from step 3 on fail as on a full disk. The error (at the call that finds it, or at close)
    and the state file name exactly the logged steps whose samples or scalars lines are not on disk, as a removed
    run folder's error does (it named only the first file it could not write)."""
    real = step_files.encode

    def encode(table: pa.Table, path: Path, durable: bool) -> int:
        if int(path.name[6:14]) >= 3:  # .step_00000003.p0.parquet.tmp
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(table, path, durable)

    monkeypatch.setattr(step_files, "encode", encode)
    run = tmp_path / "run"
    w = RunWriter(run)
    samples, lines = [], []
    message = None
    try:
        for step in range(10):
            samples.append(step)
            w.log_samples(step, {"reward": [0.5] * 4})
            lines.append(step)
            w.log_scalars(step, {"loss": float(step)})
        w.flush()
    except WriterError as exc:
        message = str(exc)
    try:
        w.close()
    except WriterError as exc:
        message = message or str(exc)
    assert message is not None
    on_disk = sorted(int(p.name[5:13]) for p in (run / "samples" / "train").glob("step_*.parquet"))
    written = sorted({json.loads(x)["step"] for x in (run / "scalars.p0.jsonl").read_text().splitlines()})
    lost_samples = sorted(set(samples) - set(on_disk))
    lost_lines = sorted(set(lines) - set(written))
    assert lost_samples and lost_samples[0] == 3, (on_disk, samples)
    state = json.loads((run / ".writer.p0.json").read_text())
    for text in (message, state["error"]):
        found = re.search(r"not written: (.*?)(?:, and nothing more is written|$)", text)
        assert found, text
        named = found.group(1)
        assert sorted(int(s) for s in re.findall(r"train step (\d+)", named)) == lost_samples, (named, lost_samples)
        scalars = re.search(r"the scalars of steps? ([\d, -]+)", named)
        assert (_steps(scalars.group(1).strip()) if scalars else []) == lost_lines, (named, lost_lines)
