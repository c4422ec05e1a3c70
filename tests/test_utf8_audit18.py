"""Audit 18: a Parquet file with one byte that is no UTF-8 in one text cell lost the text of every row of that file
(polars refuses the whole file): its cards, metrics and trajectories were "could not be read". Such a file is now
read with U+FFFD in place of each invalid byte sequence (``Run._repair_utf8``), its other values as written, said in
one warning naming the file. The truth here is pyarrow's read of the file's bytes, decoded by Python with
``errors='replace'``, and a twin run written with those decoded texts (valid UTF-8) by pyarrow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import runlog
import runlog.run
from object_stores import s3_server  # noqa: F401
from runlog import open_run
from runlog.analysis.summarize import summarize
from runlog.analysis.texts import texts_frame
from runlog.storage import Store

BAD = "samples/train/step_00000001.p0.parquet"
# Row -> the completion's bytes: a character cut in half (a writer that cut a text at a byte count), and junk.
BAD_COMPLETIONS = {2: b"answer 2 \xc3", 5: b"answer 5 \xff\xfe \xc3\xa9"}
BAD_MESSAGE = (3, b"a 3 \xed\xa0\x80 done")  # row, the assistant turn's content: an encoded surrogate


def _write(root: Path, steps: int = 3, pad: int = 0) -> None:
    with runlog.RunWriter(root, name="r") as w:
        for s in range(steps):
            w.log_samples(
                s,
                [
                    {
                        "sample_id": f"{s}-{k}",
                        "group_id": f"g{k // 4}",
                        "reward": float(k % 3),
                        "completion": f"answer {k} é" + "x" * pad,
                        "messages": [
                            {"role": "user", "content": "q ü"},
                            {"role": "assistant", "content": f"a {k} ñ"},
                        ],
                    }
                    for k in range(8)
                ],
            )


def _spoil(path: Path) -> None:
    """Write ``BAD_COMPLETIONS`` and ``BAD_MESSAGE`` into the file's bytes, unchecked (pyarrow's view of binary
    data as string), every other value as it was."""
    t = pq.read_table(path)
    meta = {k: v for k, v in (t.schema.metadata or {}).items() if k != b"ARROW:schema"}
    completions = t.column("completion").cast(pa.binary()).to_pylist()
    for row, raw in BAD_COMPLETIONS.items():
        completions[row] = raw
    t = t.set_column(
        t.schema.get_field_index("completion"), "completion", pa.array(completions, pa.binary()).view(pa.string())
    )
    messages_type = t.schema.field("messages").type
    binary_content = pa.list_(
        pa.struct([f.with_type(pa.binary()) if f.name == "content" else f for f in messages_type.value_type])
    )
    messages = t.column("messages").to_pylist()
    for m in messages:
        for turn in m:
            turn["content"] = turn["content"].encode()
    row, raw = BAD_MESSAGE
    messages[row][1]["content"] = raw
    t = t.set_column(
        t.schema.get_field_index("messages"), "messages", pa.array(messages, binary_content).view(messages_type)
    )
    pq.write_table(t.replace_schema_metadata(meta), path)


def _replaced(v: Any) -> Any:
    """A value of a pyarrow read with its string types as binary, each bytes decoded with ``errors='replace'``."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list):
        return [_replaced(x) for x in v]
    if isinstance(v, dict):
        return {k: _replaced(x) for k, x in v.items()}
    return v


def _truth(path: Path) -> pa.Table:
    """The file as pyarrow reads its bytes (no UTF-8 check), its completions and messages decoded by Python with
    ``errors='replace'``: valid UTF-8."""
    t = pq.read_table(path)
    completion = [_replaced(v) for v in t.column("completion").cast(pa.binary()).to_pylist()]
    messages_type = t.schema.field("messages").type
    binary = pa.list_(
        pa.struct([f.with_type(pa.binary()) if f.name == "content" else f for f in messages_type.value_type])
    )
    messages = [_replaced(v) for v in t.column("messages").cast(binary).to_pylist()]
    t = t.set_column(t.schema.get_field_index("completion"), "completion", pa.array(completion, pa.string()))
    return t.set_column(t.schema.get_field_index("messages"), "messages", pa.array(messages, messages_type))


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    """(the run with ``BAD`` spoiled, its twin with that file's texts written decoded: valid UTF-8)."""
    spoiled, twin = tmp_path / "spoiled", tmp_path / "twin"
    _write(spoiled)
    _spoil(spoiled / BAD)
    with pytest.raises(pl.exceptions.ComputeError, match="invalid UTF-8"):
        pl.read_parquet(spoiled / BAD)
    shutil.copytree(spoiled, twin)
    truth = _truth(spoiled / BAD)
    pq.write_table(truth.replace_schema_metadata(pq.read_schema(spoiled / BAD).metadata), twin / BAD)
    pl.read_parquet(twin / BAD)  # valid
    return spoiled, twin


def _said(res: Any) -> list[str]:
    return [x for x in res.stderr.splitlines() if x.startswith(("error: ", "warning: "))]


def test_texts_are_pyarrows_read_with_u_fffd_row_for_row(runs: tuple[Path, Path]) -> None:
    """Every row's texts of the spoiled file are there, each equal to pyarrow's bytes decoded with 'replace' (the
    two values with invalid bytes too); one warning names the file and counts the values by column."""
    spoiled, _ = runs
    truth = _truth(spoiled / BAD)
    run = open_run(spoiled)
    got = texts_frame(run, "completion").filter(pl.col("step") == 1)
    assert got["sample_id"].to_list() == truth.column("sample_id").to_pylist()
    assert got["text"].to_list() == truth.column("completion").to_pylist()
    assert got["text"][2] == "answer 2 \ufffd" and got["text"][5] == "answer 5 \ufffd\ufffd é"
    turns = texts_frame(run, "auto").filter(pl.col("step") == 1)
    assert turns["text"].to_list() == [m[1]["content"] for m in truth.column("messages").to_pylist()]
    assert turns["text"][3] == "a 3 \ufffd\ufffd\ufffd done"
    [p] = run.problems
    assert p.path == BAD and p.kind == "warning"
    assert p.message == (
        "3 text value(s) are not valid UTF-8 (messages: 1, completion: 2): read with U+FFFD in place of each "
        "invalid byte sequence; the file's other values are as written"
    )
    [f] = [f for f in run.files if f.path == BAD]
    assert f.readable and not f.unread and f.repaired is not None
    # The whole samples view of the file equals the twin's (numbers, ids, groups, texts), row for row.
    twin = open_run(runs[1])
    columns = ["step", "sample_id", "group_id", "reward", "completion", "messages", "prompt"]
    mine = run.collect(lambda: [run.samples.filter(pl.col("step") == 1).select(columns)])[0]
    assert mine.equals(twin.collect(lambda: [twin.samples.filter(pl.col("step") == 1).select(columns)])[0])


@pytest.mark.parametrize("args", [["metrics", "format"], ["metrics", "diversity"], ["summarize", "--by", "step"]])
def test_metrics_and_summaries_are_the_twins(runs: tuple[Path, Path], cli: Any, args: list[str]) -> None:
    """The metrics of the spoiled run are those of its twin, at every step (step 1's 8 texts all counted); the one
    warning is the only difference. A summary of numbers never reads the text: nothing to say there."""
    spoiled, twin = runs
    mine, theirs = cli(*args, spoiled, "--format", "json"), cli(*args, twin, "--format", "json")
    assert theirs.exit_code == 0 and not _said(theirs), theirs.stderr
    assert mine.exit_code == 0, mine.stderr
    assert json.loads(mine.stdout) == json.loads(theirs.stdout)
    if args[0] == "summarize":
        assert not _said(mine), mine.stderr
        return
    [line] = _said(mine)
    assert line.startswith(f"warning: {BAD}: 3 text value(s) are not valid UTF-8 (messages: 1, completion: 2)")
    assert "could not be read" not in mine.stderr and "skipped" not in mine.stderr


@pytest.mark.parametrize("sample", ["1-2", "1-3", "1-5"])
def test_render_shows_the_value_with_u_fffd_as_the_twin_does(runs: tuple[Path, Path], cli: Any, sample: str) -> None:
    spoiled, twin = runs
    args = ["--step", "1", "--sample-id", sample, "--format", "json"]
    mine, theirs = cli("render-trajectory", spoiled, *args), cli("render-trajectory", twin, *args)
    assert mine.exit_code == theirs.exit_code == 0, mine.stderr
    assert json.loads(mine.stdout) == json.loads(theirs.stdout)
    # (1-3's message holds the invalid bytes; 1-2's and 1-5's completions do, which their messages stand for)
    assert ("\ufffd" in json.dumps(json.loads(mine.stdout), ensure_ascii=False)) == (sample == "1-3")
    [line] = _said(mine)
    assert line.startswith(f"warning: {BAD}: 3 text value(s)")


def test_numbers_are_read_without_the_text_and_then_from_the_repair(runs: tuple[Path, Path]) -> None:
    """A summary reads no text: the file is never read again nor said. After a text read repaired it, the same
    summary (now read from the file held in memory) gives the same figures."""
    spoiled, _ = runs
    run = open_run(spoiled)
    before = summarize(run, ["step"])
    assert not run.problems and all(f.repaired is None for f in run.files)
    texts_frame(run, "completion")
    assert [f.path for f in run.files if f.repaired is not None] == [BAD]
    after = summarize(run, ["step"])
    assert after.equals(before)


def test_a_file_over_the_size_limit_keeps_its_text_left_out_and_says_why(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file rewritten with U+FFFD is held in memory: one over ``REPAIR_MAX_BYTES`` is not, and its text is left
    out as before (its numbers counted), the error saying why it was not read with U+FFFD."""
    root = tmp_path / "run"
    _write(root)
    _spoil(root / BAD)
    size = (root / BAD).stat().st_size
    monkeypatch.setattr(runlog.run, "REPAIR_MAX_BYTES", size - 1)
    res = cli("metrics", "format", root, "--format", "json")
    assert res.exit_code == 1
    [line] = _said(res)
    assert line.startswith(f"error: {BAD}: its text could not be read (completion, messages: ")
    assert line.endswith(
        f"; its numbers are counted; not read with U+FFFD in place of its invalid bytes: it is "
        f"{size / 1024:,.1f} KiB; a file over {(size - 1) / 1024:,.1f} KiB is not held in memory"
    ), line
    rows = {r["step"]: r for r in json.loads(res.stdout)}
    assert rows[1]["texts"] == 0 and rows[0]["texts"] == 8


def test_the_memory_held_for_such_files_is_bounded(tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two spoiled files where the memory allowed holds one: the first is read with U+FFFD, the second keeps its
    text left out, saying that the files so read hold the memory allowed already."""
    root = tmp_path / "run"
    _write(root)
    second = "samples/train/step_00000002.p0.parquet"
    _spoil(root / BAD)
    _spoil(root / second)
    size = max((root / p).stat().st_size for p in (BAD, second))
    monkeypatch.setattr(runlog.run, "REPAIR_HELD_MAX", size + 1)
    res = cli("metrics", "format", root, "--format", "json")
    said = _said(res)
    assert len(said) == 2, said
    [repaired] = [x for x in said if x.startswith(f"warning: {BAD}: ")]
    [refused] = [x for x in said if x.startswith(f"error: {second}: ")]
    assert "3 text value(s) are not valid UTF-8" in repaired
    assert refused.startswith(f"error: {second}: its text could not be read (completion, messages: ")
    held = len(next(f for f in runlog.run._REPAIRED.values() if f.path == BAD).repaired or b"")
    assert refused.endswith(
        f"; the files so read hold {held / 1024:,.1f} KiB of memory already (at most {(size + 1) / 1024:,.1f} KiB)"
    ), refused
    rows = {r["step"]: r for r in json.loads(res.stdout)}
    assert rows[1]["texts"] == 8 and rows[2]["texts"] == 0


def test_a_corrupt_page_beside_invalid_utf8_is_still_could_not_be_read(tmp_path: Path, cli: Any) -> None:
    """Real damage (a value's length beyond its page) in a file whose text also holds invalid UTF-8: that text
    cannot be read with U+FFFD either (pyarrow fails on the page): left out as before, said as an error."""
    root = tmp_path / "run"
    _write(root)
    t = pq.read_table(root / BAD)
    values = t.column("completion").cast(pa.binary()).to_pylist()
    values[0], values[1] = b"MARKERXXXX", b"bad \xff"
    t = t.set_column(t.schema.get_field_index("completion"), "completion", pa.array(values).view(pa.string()))
    pq.write_table(t, root / BAD, compression="NONE", use_dictionary=False, write_statistics=False)
    data = (root / BAD).read_bytes()
    at = data.find(b"MARKERXXXX")
    (root / BAD).write_bytes(data[: at - 4] + b"\xff\xff\xff\x7f" + data[at:])
    res = cli("metrics", "format", root, "--format", "json")
    assert res.exit_code == 1
    [line] = _said(res)
    assert line.startswith(f"error: {BAD}: its text could not be read (completion")
    assert line.endswith("its numbers are counted"), line


def test_a_run_in_an_object_store_is_read_as_the_local_one(runs: tuple[Path, Path], s3_server: Any, cli: Any) -> None:  # noqa: F811
    """The same run in S3 (moto): the file is fetched, read with U+FFFD, the same figures and the same warning."""
    spoiled, _ = runs
    url = f"s3://{s3_server.fresh_bucket()}/run"
    s3_server.upload_dir(spoiled, url)
    options = [x for k, v in s3_server.storage_options.items() for x in ("--storage-option", f"{k}={v}")]
    Store._cache.clear()
    try:
        remote = cli("metrics", "format", url, "--format", "json", *options)
    finally:
        Store._cache.clear()
    local = cli("metrics", "format", spoiled, "--format", "json")
    assert remote.exit_code == local.exit_code == 0, remote.stderr
    assert json.loads(remote.stdout) == json.loads(local.stdout)
    assert _said(remote) == _said(local) and len(_said(local)) == 1
