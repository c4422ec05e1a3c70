"""One invalid UTF-8 byte in an inspect_ai log (a model's output cut inside a character) made the whole log
unreadable: every sample of it lost. A log is one JSON document, so the bytes are read as U+FFFD and said; the
samples count as the log holds them. A log that is not JSON after that stays an error naming the file."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest

from conftest import REALDATA

JSON_LOG = REALDATA / "inspect_ai_popularity_eval_log.json"
EVAL_LOG = REALDATA / "inspect_ai_popularity.eval"
pytestmark = pytest.mark.skipif(not REALDATA.exists(), reason="needs ../shared/realdata")


def test_an_invalid_byte_in_a_json_log_costs_no_sample(tmp_path, cli):
    data = JSON_LOG.read_bytes()
    expected = len(json.loads(data)["samples"])  # the independent count
    at = data.index(b'"input"')  # inside the first sample: the byte goes in a string
    at = data.index(b'"', at + len(b'"input"') + 1) + 1
    bad = tmp_path / "log.json"
    bad.write_bytes(data[:at] + b"\xff" + data[at:])
    with pytest.raises(UnicodeDecodeError):
        bad.read_bytes().decode("utf-8")
    res = cli("inspect", bad, "--format", "json")
    report = json.loads(res.stdout)
    assert report["rows"] == expected, res.output
    assert any("invalid UTF-8" in p["message"] and "U+FFFD" in p["message"] for p in report["problems"])
    assert res.exit_code == 0  # a warning


def test_an_invalid_byte_in_an_eval_sample_member_costs_no_sample(tmp_path, cli):
    bad = tmp_path / "log.eval"
    with zipfile.ZipFile(EVAL_LOG) as src, zipfile.ZipFile(bad, "w") as dst:
        names = src.namelist()
        first = next(n for n in names if n.startswith("samples/"))
        for n in names:
            body = src.read(n)
            if n == first:
                at = body.index(b'"id"')
                at = body.index(b'"', body.index(b":", at)) + 1
                body = body[:at] + b"\xc3" + body[at:]  # half a two-byte character
            dst.writestr(n, body)
        expected = len([n for n in names if n.startswith("samples/")])
    res = cli("inspect", bad, "--format", "json")
    report = json.loads(res.stdout)
    assert report["rows"] == expected, res.output
    assert any(first in p["message"] and "U+FFFD" in p["message"] for p in report["problems"])


def test_a_log_that_is_not_json_stays_unreadable(tmp_path, cli):
    bad = tmp_path / "log.json"
    shutil.copy(JSON_LOG, bad)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] + b"\xff")
    res = cli("inspect", bad, "--format", "json")
    assert res.exit_code == 1
    problems = json.loads(res.stdout)["problems"]
    assert [p["kind"] for p in problems if p["path"].endswith("log.json")] == ["unreadable"]
