"""Audit a13, finding 5: the check for a key written twice in a scalars line (696e199) made reading slower.

A ':' inside a key (``train:loss``) made the count of ':' differ from the pairs, so the whole file went to the
careful reader (3.2x slower on 20k lines), which then parsed every such line a second time; a file with nulls
was parsed again with its schema inferred once more. Now the pairs are counted exactly (the ':' outside
strings: the '"' halved where every string is a key), the careful reader parses each line once (only the line a
warning names is parsed again, to name its key) and a file with nulls is parsed again in the schema known.

A key written twice is still found and said, its later value kept, on both paths. Every expected figure is
computed here from the lines written (Python's json), never with runlog's code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runlog.formats import common, scalars_jsonl
from runlog.formats.base import Candidate, RunContext
from runlog.formats.common import key_separators, read_jsonl
from runlog.formats.scalars_jsonl import STEP_KEYS, _fast_flat_scalars


def _write(tmp_path: Path, lines: list[str], name: str = "stats.jsonl") -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / name).write_text("".join(line + "\n" for line in lines))
    return run


def _fast(run: Path, name: str = "stats.jsonl") -> bool:
    path = run / name
    return _fast_flat_scalars(Candidate(run, path, path.stat().st_size), STEP_KEYS, False) is not None


def _colon_lines(n: int, *, nulls: bool = False) -> list[str]:
    return [
        json.dumps(
            {
                "global_step": s,
                "train:loss": 1.0 / (s + 1),
                "eval:acc": None if nulls and s % 3 else s / 100,
                "grad:norm": s * 0.25,
                "lr": 1e-5,
                "ok": None if nulls and s % 2 else True,
            }
        )
        for s in range(n)
    ]


def _summary(cli, run: Path) -> tuple[dict[str, dict[str, Any]], str]:  # noqa: ANN001
    r = cli("summarize", str(run), "--scalars", "--format", "json")
    assert r.exit_code == 0, r.stderr
    return {row["key"]: row for row in json.loads(r.stdout)}, r.stderr


def _truth(lines: list[str], key: str) -> tuple[float, float, int]:
    """(mean, last, count) of ``key``'s non-null values, as Python's json reads the lines."""
    values = [float(v) for v in (json.loads(line).get(key) for line in lines) if v is not None]
    return sum(values) / len(values), values[-1], len(values)


@pytest.mark.parametrize("nulls", [False, True])
def test_keys_holding_a_colon_keep_the_fast_path(
    cli,  # noqa: ANN001
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    nulls: bool,
) -> None:
    """``train:loss`` is no key written twice: polars reads the file, the careful reader is never called, and the
    figures are the lines' own."""
    lines = _colon_lines(300, nulls=nulls)
    run = _write(tmp_path, lines)
    assert _fast(run)
    calls: list[Any] = []
    careful = scalars_jsonl.read_jsonl
    monkeypatch.setattr(scalars_jsonl, "read_jsonl", lambda *a, **k: calls.append(a) or careful(*a, **k))
    rows, stderr = _summary(cli, run)
    assert calls == []
    assert "twice" not in stderr
    for key in ("train:loss", "eval:acc", "grad:norm"):
        mean, last, count = _truth(lines, key)
        assert rows[key]["count"] == count
        assert rows[key]["last"] == last
        assert rows[key]["mean"] == pytest.approx(mean, rel=1e-12)


@pytest.mark.parametrize(
    "repeated",
    [
        '{"global_step": 300, "train:loss": 1.0, "eval:acc": 0.5, "train:loss": 9.0, "ok": true}',
        '{"global_step": 300, "train:loss": 1.0, "eval:acc": 0.5, "train:loss": null, "ok": true}',
        '{"global_step": 300, "train:loss": null, "eval:acc": 0.5, "train:loss": 9.0, "ok": true}',
    ],
)
def test_a_key_holding_a_colon_written_twice_is_still_said(cli, tmp_path: Path, repeated: str) -> None:  # noqa: ANN001
    lines = [*_colon_lines(300, nulls=True), repeated]
    run = _write(tmp_path, lines)
    assert not _fast(run)  # polars would keep the first copy
    rows, stderr = _summary(cli, run)
    assert "stats.jsonl: 1 record(s) hold a key twice (first: line 301, 'train:loss'): the later value kept" in stderr
    later = json.loads(repeated)["train:loss"]
    mean, last, count = _truth(lines, "train:loss")
    assert rows["train:loss"]["count"] == count
    assert rows["train:loss"]["last"] == (later if later is not None else last)
    assert rows["train:loss"]["mean"] == pytest.approx(mean, rel=1e-12)


@pytest.mark.parametrize(
    ("line", "repeat", "fast"),
    [
        ('{"step": 1, "a\\":b": 1.0, "a\\":b": 2.0}', True, False),  # an escaped quote and a ':' in the key
        ('{"step": 1, "a\\":b": 1.0, "a:\\"b": 2.0}', False, True),
        ('{"step": 1, "c\\\\": 1.0, "d": null}', False, True),  # a key ending in a backslash
        ('{"step": 1, "t\\u00e9": 1.0, "t\\u00e9": null}', True, False),  # as json.dumps writes it (ensure_ascii)
        ('{"step": 1, "b": 1.0, "\\u0062": 2.0}', True, False),  # one key, written two ways
        # A null read as 0 makes "x:null" another key, "x:0": a file read carefully, slower, never wrong.
        ('{"step": 1, "x:null": 1.0, "x:0": null}', False, False),
    ],
)
def test_repeats_are_told_exactly_whatever_the_keys_hold(tmp_path: Path, line: str, repeat: bool, fast: bool) -> None:
    obj = json.loads(line)
    run = _write(tmp_path, [json.dumps({**dict.fromkeys(obj, 0.5), "step": 0}), line], "scalars.p0.jsonl")
    assert _fast(run, "scalars.p0.jsonl") is fast
    path = run / "scalars.p0.jsonl"
    parsed = read_jsonl(Candidate(run, path, path.stat().st_size), ctx := RunContext(run), repeats=True)
    assert parsed.records[-1] == obj
    assert any("hold a key twice" in p.message for p in ctx.problems) is repeat


def test_the_careful_reader_parses_each_line_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Text values holding ':' (timestamps) send a file to the careful reader; it parsed every such line twice
    to look for a key written twice. Now only the one line its warning names is parsed again."""
    lines = [
        json.dumps({"step": s, "train:loss": 0.5, "when": f"2026-01-01T00:00:{s:02d}", "eval": {"a:b": 1}})
        for s in range(50)
    ]
    run = _write(tmp_path, [*lines, '{"step": 50, "when": "00:00", "eval": {"a:b": 1, "a:b": 2}}'])
    parses: list[bytes] = []
    loads = json.loads
    monkeypatch.setattr(common.json, "loads", lambda raw, **k: parses.append(raw) or loads(raw, **k))
    ctx = RunContext(run)
    path = run / "stats.jsonl"
    parsed = read_jsonl(Candidate(run, path, path.stat().st_size), ctx, repeats=True)
    monkeypatch.undo()
    assert len(parsed.records) == 51
    assert len(parses) == 51 + 1  # each line once, the repeated one again to name its key
    said = [p.message for p in ctx.problems if "twice" in p.message]
    assert said == [
        "1 record(s) hold a key twice (first: line 51, 'eval/a:b'): the later value kept, as Python's json and "
        "JavaScript read a line"
    ]
    assert parsed.records[-1]["eval"]["a:b"] == loads(path.read_text().splitlines()[-1])["eval"]["a:b"] == 2


@pytest.mark.parametrize(
    ("text", "pairs"),
    [
        (b'{"a": 1, "b": {"c": 2}}', 3),
        (b'{"a:b": 1, "a:b": 2}', 2),
        (b'{"t": "12:00:00", "u": ["x:y", {"v": null}]}', 3),
        (b'{"q\\":": 1, "r\\\\": ":"}', 2),
        (b'{"\\u003a": 1}', 1),
    ],
)
def test_key_separators_counts_the_pairs_as_written(text: bytes, pairs: int) -> None:
    assert key_separators(text) == pairs
