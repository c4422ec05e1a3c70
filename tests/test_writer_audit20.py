"""Audit 20 (the writer): a ``messages`` cell given as JSON text (``json.dumps(messages)``, as trainers log it) was
written as one user turn holding the raw JSON, its assistant turns and tool calls lost; a null ``sample_id`` in a
given id column was written as a null id without a word; ``process_index`` was taken through ``int()`` (``1.5``
and ``True`` became process 1, whose earlier run's files were then moved aside as replayed); the JSONL reader let
``json.loads`` guess UTF-16 from a line's first bytes (a UTF-16 line read as a record) and named the byte of that
guess's decoding, not the line's.

The expected values come from what the test logged, read back with pyarrow and json (and Python's own UTF-8
codec for the byte offsets), never from runlog's code."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog import open_run
from runlog.chat import from_openai_chat, messages_in_text
from runlog.errors import UsageError
from runlog.writer import RunWriter, WriterWarning

# An OpenAI conversation with a tool call and its result, as a trainer holds it.
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "Use the calculator."},
    {"role": "user", "content": "What is 6*7?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "calc", "arguments": '{"expr": "6*7"}'}}],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "42"},
    {"role": "assistant", "content": "<answer>42</answer>"},
]


def _step_file(run: Path, step: int, split: str = "train", process: int = 0) -> pa.Table:
    return pq.read_table(run / "samples" / split / f"step_{step:08d}.p{process}.parquet")


def _said(caught: list[warnings.WarningMessage], *words: str) -> list[str]:
    said = [str(w.message) for w in caught if issubclass(w.category, WriterWarning)]
    return [m for m in said if all(x in m for x in words)]


# -- messages given as JSON text ------------------------------------------------------------------------------


def _expected_turns() -> list[tuple[Any, ...]]:
    """(role, content, tool calls as (id, name, arguments), tool_call_id) of ``MESSAGES``, read off the dicts."""
    out = []
    for m in MESSAGES:
        calls = [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in m.get("tool_calls") or []]
        out.append((m["role"], m.get("content"), calls, m.get("tool_call_id")))
    return out


def _turns(cell: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            m["role"],
            m["content"],
            [(c["id"], c["name"], c["arguments"]) for c in m["tool_calls"] or []],
            m["tool_call_id"],
        )
        for m in cell
    ]


@pytest.mark.parametrize("indent", [None, 2], ids=["compact", "indented"])
def test_messages_given_as_json_text_are_written_as_the_message_list(tmp_path: Path, indent: int | None) -> None:
    """A cell of ``json.dumps(messages)`` is written as the messages it holds (every turn, the tool call and its
    result), as the same messages given as a list are; nothing is said (it is no plain text)."""
    run = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with RunWriter(run) as w:
            w.log_samples(0, {"reward": [1.0, 0.5], "messages": [json.dumps(MESSAGES, indent=indent), MESSAGES]})
    cells = _step_file(run, 0).column("messages").to_pylist()
    assert _turns(cells[0]) == _expected_turns()
    assert _turns(cells[1]) == _expected_turns()
    assert not _said(caught, "plain text")


def test_messages_as_json_text_in_row_dicts_keep_the_assistant_text(tmp_path: Path) -> None:
    """Row dicts (the other input shape): the assistant's answer is an assistant turn, where the format metrics read
    it (it was inside a user turn's JSON, and ``metrics format`` skipped the row as having no text)."""
    run = tmp_path / "run"
    with RunWriter(run) as w:
        w.log_samples(3, [{"reward": 1.0, "messages": json.dumps(MESSAGES)}])
    cell = _step_file(run, 3).column("messages").to_pylist()[0]
    assistant = [m["content"] for m in cell if m["role"] == "assistant" and m["content"]]
    assert assistant == [m["content"] for m in MESSAGES if m["role"] == "assistant" and m["content"]]


def test_plain_text_messages_stay_one_user_turn_and_are_said_once(tmp_path: Path) -> None:
    """Text that is no JSON message list (a prompt, a JSON list of numbers, a JSON object) is one user message
    holding the text as given, and one ``WriterWarning`` says that ``messages`` held plain text, however many
    steps do."""
    texts = ["What is 6*7?", "[1, 2]", '{"role": "user", "content": "hi"}', "[]"]
    run = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with RunWriter(run) as w:
            w.log_samples(0, {"reward": [1.0] * 5, "messages": [*texts, MESSAGES]})
            w.log_samples(1, {"reward": [1.0], "messages": ["again"]})
    cells = _step_file(run, 0).column("messages").to_pylist()
    assert [_turns(c) for c in cells[:4]] == [[("user", t, [], None)] for t in texts]
    assert _turns(cells[4]) == _expected_turns()
    said = _said(caught, "'messages'", "plain text")
    assert len(said) == 1 and "4 row(s)" in said[0]


def test_readers_keep_text_that_quotes_a_chat_as_one_user_turn() -> None:
    """The library's reader of chat messages (every layout with conversations) keeps text as one user message,
    even text that is a JSON chat (a judge prompt quoting one for the model to read: review of 78e4e6f, where a
    verifiers prompt so written was shown as turns the model never said); only the writer reads a ``messages``
    cell of JSON text as its list (``messages_in_text``)."""
    text = json.dumps(MESSAGES)
    assert _turns(from_openai_chat(text)) == [("user", text, [], None)]
    assert messages_in_text(text) == MESSAGES
    assert messages_in_text('[{"content": "no role"}]') is None
    assert messages_in_text("Use [this] list") is None


def test_a_verifiers_prompt_quoting_a_chat_stays_the_prompt(tmp_path: Path) -> None:
    quoted = json.dumps([{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "5"}])
    line = {"example_id": 0, "prompt": quoted, "completion": "Correct: 4", "reward": 1.0, "task": "judge"}
    folder = tmp_path / "vjudge"
    folder.mkdir()
    (folder / "results.jsonl").write_text(json.dumps(line) + "\n")
    (row,) = open_run(folder).samples.collect().select("messages").to_series().to_list()
    assert [(m["role"], m["content"]) for m in row] == [("user", quoted), ("assistant", "Correct: 4")]


# -- a null sample_id ------------------------------------------------------------------------------------------


def _ids_table(rows: list[str | None]) -> pa.Table:
    return pa.table({"reward": pa.array([1.0] * len(rows)), "sample_id": pa.array(rows, pa.string())})


@pytest.mark.parametrize(
    "given",
    [
        "rows",
        "columns",
        "numpy",
        "arrow",
        "missing key",
    ],
)
def test_a_null_sample_id_gets_a_generated_id_with_one_warning(tmp_path: Path, given: str) -> None:
    """A null id in a given ``sample_id`` column is given the id the writer generates for a missing column
    (``{split}-s{step}-p{process}-{row}``, the row's number in its step), the given ids are kept, and one
    ``WriterWarning`` counts the nulls (once per writer: a second step with nulls says nothing more)."""
    ids: list[str | None] = ["a", None, "c", None]
    payload: Any
    if given == "rows":
        payload = [{"reward": 1.0, "sample_id": s} for s in ids]
    elif given == "columns":
        payload = {"reward": [1.0] * 4, "sample_id": ids}
    elif given == "numpy":
        payload = {"reward": np.ones(4), "sample_id": np.array(ids, dtype=object)}
    elif given == "arrow":
        payload = _ids_table(ids)
    else:  # a row dict without the key, beside rows that have it
        payload = [{"reward": 1.0, "sample_id": s} if s is not None else {"reward": 1.0} for s in ids]
    run = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with RunWriter(run) as w:
            w.log_samples(5, {"reward": [0.0], "sample_id": ["first"]})  # row 0 of step 5: the nulls are rows 2, 4
            w.log_samples(5, payload)
            w.log_samples(6, {"reward": [0.0, 1.0], "sample_id": [None, "z"]})
    step5 = _step_file(run, 5).column("sample_id")
    assert step5.null_count == 0
    assert step5.to_pylist() == ["first", "a", "train-s5-p0-2", "c", "train-s5-p0-4"]
    assert _step_file(run, 6).column("sample_id").to_pylist() == ["train-s6-p0-0", "z"]
    said = _said(caught, "null sample_id")
    assert len(said) == 1 and "2 of the 4 rows given for train step 5 in one call" in said[0]


def test_sample_ids_without_nulls_are_written_as_given_without_a_word(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with RunWriter(run) as w:
            w.log_samples(0, _ids_table(["x", "y"]))
    assert _step_file(run, 0).column("sample_id").to_pylist() == ["x", "y"]
    assert not _said(caught, "sample_id")


# -- process_index ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [1.5, "3", True, np.bool_(True), -1, 2.0, np.float64(1.0), np.array([1]), b"1"],
    ids=["1.5", "'3'", "True", "np.True_", "-1", "2.0", "np.float64", "1-element array", "bytes"],
)
def test_process_index_is_refused_unless_a_non_negative_int(tmp_path: Path, bad: Any) -> None:
    """Refused with ``UsageError`` before the run folder is touched (never truncated or parsed, as a step)."""
    with pytest.raises(UsageError, match="process_index must be a non-negative integer, not "):
        RunWriter(tmp_path / "run", process_index=bad)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("good", [3, np.int64(3), np.uint8(3), np.array(3)], ids=["int", "int64", "uint8", "0-d"])
def test_process_index_of_an_int_or_numpy_integer_names_the_shards(tmp_path: Path, good: Any) -> None:
    with pytest.warns(WriterWarning, match="no run.json"), RunWriter(tmp_path / "run", process_index=good) as w:
        w.log_samples(0, {"reward": [1.0]})
        w.log_scalars(0, {"loss": 1.0})
    assert sorted(p.name for p in (tmp_path / "run" / "samples" / "train").iterdir()) == ["step_00000000.p3.parquet"]
    assert (tmp_path / "run" / "scalars.p3.jsonl").is_file()


def test_a_bool_process_index_leaves_process_1_files_in_place(tmp_path: Path) -> None:
    """``True`` was process 1: its writer "resumed" process 1's run and moved its step 0 to ``.superseded``."""
    run = tmp_path / "run"
    with pytest.warns(WriterWarning, match="no run.json"), RunWriter(run, process_index=1) as w:
        w.log_samples(0, {"reward": [0.25]})
    with pytest.raises(UsageError):
        RunWriter(run, process_index=True)
    assert _step_file(run, 0, process=1).column("reward").to_pylist() == [0.25]
    assert not (run / ".superseded").exists()


# -- JSONL lines are UTF-8 -------------------------------------------------------------------------------------


def _truth(data: bytes) -> tuple[dict[int, float], dict[int, int]]:
    """Python's own reading of a scalars file: the ``loss`` by step of the lines that are UTF-8 JSON objects, and
    the byte at which each line that is no UTF-8 fails (by 1-based line)."""
    good: dict[int, float] = {}
    bad: dict[int, int] = {}
    for i, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad[i] = exc.start
            continue
        try:
            rec = json.loads(text.removeprefix("\ufeff"))
        except ValueError:
            continue
        if isinstance(rec, dict) and "loss" in rec:
            good[rec["step"]] = rec["loss"]
    return good, bad


def test_jsonl_lines_in_utf16_are_not_read_and_bad_bytes_are_named_at_their_offset(tmp_path: Path) -> None:
    """A UTF-16 line (with or without its byte order mark) is no record, and the error names the byte of the line
    that is no UTF-8 (0 for FF FE, 3 for a byte mid-line); a UTF-8 byte order mark before a line is read past."""
    run = tmp_path / "run"
    with RunWriter(run) as w:
        for s in range(3):
            w.log_scalars(s, {"loss": 1.0 / (s + 1)})
    shard = run / "scalars.p0.jsonl"
    data = shard.read_bytes()
    data += '{"step": 7, "time": 1.0, "loss": 9.0}'.encode("utf-16-le") + b"\n"
    data += b'\xff\xfe{"step": 8, "time": 1.0, "loss": 8.0}\n'
    data += b'{"s\xe9p": 1, "step": 9, "time": 1.0, "loss": 7.0}\n'
    data += b'\xef\xbb\xbf{"step": 10, "time": 1.0, "loss": 6.0}\n'
    shard.write_bytes(data)
    good, bad = _truth(data)
    assert bad == {5: 0, 6: 3} and sorted(good) == [0, 1, 2, 10]
    r = open_run(run)
    sc = r.scalars.collect()
    assert dict(zip(sc["step"].to_list(), sc["value"].to_list(), strict=True)) == good
    messages = [p.message for p in r.problems]
    for line, at in bad.items():
        assert f"line {line}: invalid UTF-8 at byte {at}; line skipped" in messages
    assert any(m.startswith("line 4: not valid JSON") and "NUL bytes" in m for m in messages)


def test_a_surrogate_written_as_raw_bytes_keeps_its_record(tmp_path: Path) -> None:
    """A lone surrogate written as raw bytes (CESU-8, ``\\xed\\xa0\\x80``) is read as an escaped one is: U+FFFD in
    its text, the record's numbers kept (review of 78e4e6f: the strict decoding had skipped the line)."""
    run = tmp_path / "run"
    with RunWriter(run) as w:
        w.log_scalars(0, {"loss": 0.5})
    shard = run / "scalars.p0.jsonl"
    shard.write_bytes(shard.read_bytes() + b'{"step": 1, "time": 1.0, "loss": 1.5, "note": "a\xed\xa0\x80b"}\n')
    r = open_run(run)
    sc = r.scalars.collect().filter(pl.col("key") == "loss")
    assert dict(zip(sc["step"].to_list(), sc["value"].to_list(), strict=True)) == {0: 0.5, 1: 1.5}
    assert not [p for p in r.problems if "invalid UTF-8" in p.message]


def test_a_zero_filled_block_is_named_as_such(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with RunWriter(run) as w:
        w.log_scalars(0, {"loss": 0.5})
    shard = run / "scalars.p0.jsonl"
    shard.write_bytes(shard.read_bytes() + b"\x00" * 4096 + b'{"step": 1, "time": 1.0, "loss": 1.5}\n')
    r = open_run(run)
    messages = [p.message for p in r.problems]
    assert (
        "line 2: 4096 NUL byte(s) before its record (zero-fill left by a crash?): what was written there is lost; "
        "the record after them is read" in messages
    ), messages
    assert not any("UTF-16" in m for m in messages)
    # The record the writer appended after the zero-fill is read (review of 5f5c774: it was skipped).
    sc = r.scalars.collect().filter(pl.col("key") == "loss")
    assert dict(zip(sc["step"].to_list(), sc["value"].to_list(), strict=True)) == {0: 0.5, 1: 1.5}
    # A line of NUL bytes alone holds no record: an error, as before.
    shard.write_bytes(shard.read_bytes() + b"\x00" * 64 + b"\n")
    assert any("zero-fill left by a crash" in p.message and "line 3" in p.message for p in open_run(run).problems)


def test_a_surrogate_pair_written_as_raw_bytes_is_its_character(tmp_path: Path) -> None:
    """Review of 5f5c774: a pair written as raw bytes (CESU-8: an emoji in a metric's name) decoded to two halves,
    each made U+FFFD, so two keys became one and a value was lost. Joined, as an escaped pair is."""
    run = tmp_path / "run"
    with RunWriter(run) as w:
        w.log_scalars(0, {"loss": 0.5})
    keys = ["acc/\U0001f600", "acc/\U0001f601"]
    line = b'{"step": 1, "time": 1.0, '
    for k, v in zip(keys, (1.0, 2.0), strict=True):
        pair = k[-1]
        hi, lo = 0xD800 + ((ord(pair) - 0x10000) >> 10), 0xDC00 + ((ord(pair) - 0x10000) & 0x3FF)
        name = (k[:-1] + chr(hi) + chr(lo)).encode("utf-8", "surrogatepass")
        line += b'"' + name + b'": ' + str(v).encode() + b", "
    line = line.rstrip(b", ") + b"}\n"
    shard = run / "scalars.p0.jsonl"
    shard.write_bytes(shard.read_bytes() + line)
    r = open_run(run)
    sc = r.scalars.collect().filter(pl.col("step") == 1)
    assert dict(zip(sc["key"].to_list(), sc["value"].to_list(), strict=True)) == dict(
        zip(keys, (1.0, 2.0), strict=True)
    )
    assert not [p for p in r.problems if "surrogate" in p.message or "twice" in p.message]


def test_an_inspect_ai_log_with_a_raw_surrogate_keeps_its_samples(tmp_path: Path) -> None:
    """Review of 5f5c774: raw surrogate bytes in an inspect_ai log made the whole log unreadable (its reader parses
    bytes, which pass them); read as U+FFFD with a warning, as an escaped one is (docs/render.md)."""
    from conftest import REALDATA, need_realdata

    need_realdata("inspect_ai_popularity_eval_log.json")
    src = (REALDATA / "inspect_ai_popularity_eval_log.json").read_bytes()
    at = src.index(b'"input": "') + len(b'"input": "')
    folder = tmp_path / "ins"
    folder.mkdir()
    (folder / "log.json").write_bytes(src[:at] + b"\xed\xa0\x80" + src[at:])
    whole = tmp_path / "whole"
    whole.mkdir()
    (whole / "log.json").write_bytes(src)
    r = open_run(folder)
    assert r.samples.collect().height == open_run(whole).samples.collect().height > 0
    assert [p.message for p in r.problems if "lone surrogate" in p.message]
    assert not [p for p in r.problems if not p.is_warning]
