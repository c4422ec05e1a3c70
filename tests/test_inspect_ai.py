"""inspect_ai eval logs (the JSON log and the ``.eval`` zip): detection, the mapping into the canonical model,
the CLI on them, and damaged files (truncated zip, bad JSON, newer log schema, oversized members).

The real logs in ``../shared/realdata`` (skipped when that folder is absent) are checked against counts made
here independently with ``json`` / ``zipfile``; they hold no tool calls, so a log with tool calls, tool
errors, reasoning, attachments, epochs and several scorers is built in ``tmp_path`` in both formats.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from object_stores import s3_server  # noqa: F401
from runlog import open_run
from runlog.formats import inspect_ai as IA
from runlog.formats.base import NEWER_VERSION, UNREADABLE, Candidate, RunContext

REALDATA = Path(__file__).parents[2] / "shared" / "realdata"
REAL_FILES = (
    "inspect_ai_log_formats.eval",
    "inspect_ai_popularity.eval",
    "inspect_ai_popularity_eval_log.json",
    "inspect_ai_security_guide_eval_log.json",
)
GRADE = {"C": 1.0, "I": 0.0, "P": 0.5, "N": 0.0}


def real(name: str) -> Path:
    path = REALDATA / name
    if not path.exists():
        pytest.skip(f"real data file {name} not found in {REALDATA} (the shared/realdata checkout)")
    return path


# ---------------------------------------------------------------------------------------------------------
# Independent readings of a log (json / zipfile only), to compare runlog's rows with
# ---------------------------------------------------------------------------------------------------------


def raw_log(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, samples) of a log, read here without runlog."""
    if path.suffix == ".eval":
        with zipfile.ZipFile(path) as z:
            header = json.loads(z.read("header.json"))
            names = [n for n in z.namelist() if n.startswith("samples/") and n.endswith(".json")]
            return header, [json.loads(z.read(n)) for n in names]
    log = json.loads(path.read_text())
    return log, log.get("samples") or []


def raw_tool_calls(samples: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """(sample key, function, arguments) of every tool call in the raw messages."""
    out = []
    for s in samples:
        for m in s.get("messages") or []:
            for tc in m.get("tool_calls") or []:
                out.append((f"{s['id']}:{s['epoch']}", tc["function"], tc["arguments"]))
    return out


def expected_float(v: Any) -> float | None:
    if isinstance(v, (bool, int, float)):
        return float(v)
    if v in GRADE:
        return GRADE[v]
    words = {"yes": 1.0, "true": 1.0, "no": 0.0, "false": 0.0}
    if str(v).lower() in words:
        return words[str(v).lower()]
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def rows_by_key(frame: pl.DataFrame, task: str) -> dict[str, dict[str, Any]]:
    """Rows keyed by ``{id}:{epoch}`` (runlog's sample_id is ``{task}/{id}:{epoch}``)."""
    prefix = f"{task}/"
    return {r["sample_id"].removeprefix(prefix): r for r in frame.to_dicts()}


def check_log(path: Path) -> pl.DataFrame:
    """Read ``path`` with runlog and compare it with the raw log: counts, tool calls, scores."""
    header, samples = raw_log(path)
    run = open_run(path)
    assert [f.layout for f in run.files] == ["inspect_ai"]
    assert not [p for p in run.problems if not p.is_warning], run.problems
    frame = run.samples.collect()
    assert frame.height == len(samples) == run.files[0].rows
    task = header["eval"]["task"]
    rows = rows_by_key(frame, task)
    assert set(rows) == {f"{s['id']}:{s['epoch']}" for s in samples}

    # every tool call appears in the canonical messages, with its arguments
    mapped = [
        (key, c["name"], json.loads(c["arguments"]))
        for key, r in rows.items()
        for m in r["messages"] or []
        for c in m["tool_calls"] or []
    ]
    assert sorted(map(repr, raw_tool_calls(samples))) == sorted(map(repr, mapped))

    # every score is the reward (the first scorer) or a component
    for s in samples:
        r = rows[f"{s['id']}:{s['epoch']}"]
        comps = {c["name"]: c["value"] for c in r["reward_components"] or []}
        scores = s.get("scores") or {}
        for scorer, score in scores.items():
            value = score["value"]
            items = value.items() if isinstance(value, dict) else [(None, value)]
            for key, v in items:
                name = scorer if key is None else f"{scorer}/{key}"
                assert comps.get(name) == expected_float(v), (name, v, comps)
        first = next(iter(scores.values()), None)
        assert r["reward"] == (None if first is None else expected_float(first["value"]))
        assert r["group_id"] == f"{task}/{s['id']}" and r["epoch"] == s["epoch"]
        assert r["split"] == "eval" and r["step"] == 0 and r["env_name"] == task
    return frame


# ---------------------------------------------------------------------------------------------------------
# The real logs
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_logs_are_detected_and_read(name: str) -> None:
    path = real(name)
    frame = check_log(path)
    # the conversation: system, user, assistant; the prompt is the user turn and the completion the answer
    _, samples = raw_log(path)
    first = rows_by_key(frame, raw_log(path)[0]["eval"]["task"])[f"{samples[0]['id']}:{samples[0]['epoch']}"]
    assert [m["role"] for m in first["messages"]] == [m["role"] for m in samples[0]["messages"]]
    given = samples[0]["input"]
    if isinstance(given, list):  # chat messages: the prompt is the last user turn
        given = [m["content"] for m in given if m["role"] == "user"][-1]
    assert first["prompt"] == given
    assert first["completion"] == samples[0]["messages"][-1]["content"]


def test_real_scores_are_letter_grades_mapped_like_value_to_float() -> None:
    frame = check_log(real("inspect_ai_popularity_eval_log.json"))
    # the log's own aggregate: accuracy 2/3 over C, C, I
    assert sorted(frame["reward"].to_list()) == [0.0, 1.0, 1.0]


def test_real_unscored_log_has_null_rewards_and_says_so() -> None:
    run = open_run(real("inspect_ai_popularity.eval"))
    assert run.samples.select(pl.col("reward").is_null().all()).collect().item()
    assert any("without scores" in n["message"] for n in run.ctx.fidelity)


@pytest.mark.parametrize("name", REAL_FILES)
def test_cli_on_real_logs(cli, name: str) -> None:
    path = real(name)
    r = cli("inspect", path)
    assert r.exit_code == 0, r.output
    assert "inspect_ai" in r.output
    r = cli("summarize", path, "--by", "role", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["role"] for row in rows] == [None]  # single agent: one row with a null role
    _, samples = raw_log(path)
    assert rows[0]["reward_count"] + rows[0]["reward_null"] == len(samples)
    r = cli("render-trajectory", path, "--index", "0")
    assert r.exit_code == 0, r.output
    assert "assistant" in r.output
    for _, function, _ in raw_tool_calls(samples):
        assert function in r.output


# ---------------------------------------------------------------------------------------------------------
# A log with tool calls, built here
# ---------------------------------------------------------------------------------------------------------

ATTACHED = "total 0\n" + "x" * 300


def sample(sid: Any, epoch: int, *, scores: dict[str, Any] | None = None, error: Any = None) -> dict[str, Any]:
    return {
        "id": sid,
        "epoch": epoch,
        "input": f"List the files of task {sid}",
        "target": "a.txt",
        "messages": [
            {"id": "m1", "role": "system", "content": "You are an agent."},
            {"id": "m2", "role": "user", "content": f"List the files of task {sid}", "source": "input"},
            {
                "id": "m3",
                "role": "assistant",
                "content": [
                    {"type": "reasoning", "reasoning": "I should run ls.", "redacted": False},
                    {"type": "text", "text": "Let me look."},
                ],
                "tool_calls": [
                    {"id": f"call_{epoch}a", "function": "bash", "arguments": {"cmd": "ls -la"}, "type": "function"},
                    {"id": f"call_{epoch}b", "function": "python", "arguments": {"code": "print(1)"}},
                ],
                "model": "m",
            },
            {
                "id": "m4",
                "role": "tool",
                "tool_call_id": f"call_{epoch}a",
                "function": "bash",
                "content": "attachment://h1",
            },
            {
                "id": "m5",
                "role": "tool",
                "tool_call_id": f"call_{epoch}b",
                "function": "python",
                "content": "",
                "error": {"type": "timeout", "message": "Command timed out"},
            },
            {"id": "m6", "role": "assistant", "content": "a.txt", "source": "generate"},
        ],
        "output": {"model": "m", "choices": [{"message": {"role": "assistant", "content": "a.txt"}}]},
        "scores": scores if scores is not None else {"match": {"value": "C", "answer": "a.txt"}},
        "metadata": {"difficulty": "easy"},
        "store": {},
        "events": [{"event": "model"}],
        "attachments": {"h1": ATTACHED},
        "error": error,
    }


MULTI_SCORES = {
    "match": {"value": "P"},
    "quality": {"value": {"f1": 0.25, "exact": "I"}},
    "judge": {"value": "maybe"},  # not a number nor a grade: kept in extra, named in a note
    "numeric": {"value": "0.75"},
}
TRACEBACK = "Traceback (most recent call last):\n  ...\nRuntimeError: sandbox died"


def synthetic_samples() -> list[dict[str, Any]]:
    return [
        sample(1, 1),
        sample(1, 2, scores={"match": {"value": "I"}}),
        sample("b", 1, scores=MULTI_SCORES),
        sample("c", 1, scores={}, error={"message": "RuntimeError: sandbox died", "traceback": TRACEBACK}),
    ]


def header(version: int = 2, **eval_extra: Any) -> dict[str, Any]:
    return {
        "version": version,
        "status": "success",
        "eval": {"task": "agentic", "model": "openai/m", "created": "2025-01-01T00:00:00", **eval_extra},
        "plan": {"name": "plan", "steps": []},
        "results": {"total_samples": 4, "completed_samples": 3, "scores": []},
        "stats": {},
    }


def write_json_log(path: Path, samples: list[Any], **kw: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**header(**kw), "samples": samples}, indent=2))
    return path


def write_eval_log(path: Path, samples: list[Any], *, members: dict[str, bytes] | None = None, **kw: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("_journal/start.json", json.dumps({"version": header(**kw)["version"], "eval": header()["eval"]}))
        for s in samples:
            z.writestr(f"samples/{s['id']}_epoch_{s['epoch']}.json", json.dumps(s, indent=2))
        summaries = [{k: s[k] for k in ("id", "epoch", "input", "target", "scores")} for s in samples]
        z.writestr("summaries.json", json.dumps(summaries))
        for name, data in (members or {}).items():
            z.writestr(name, data)
        z.writestr("header.json", json.dumps(header(**kw), indent=2))
    return path


@pytest.fixture(params=["json", "eval"])
def agentic_log(request, tmp_path: Path) -> Path:
    writer = write_json_log if request.param == "json" else write_eval_log
    return writer(tmp_path / "logs" / f"agentic.{request.param}", synthetic_samples())


def test_tool_calls_results_and_errors_are_paired(agentic_log: Path) -> None:
    frame = check_log(agentic_log)
    rows = rows_by_key(frame, "agentic")
    msgs = rows["1:1"]["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "tool", "assistant"]
    call = msgs[2]
    assert call["content"] == "Let me look." and call["reasoning"] == "I should run ls."
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in call["tool_calls"]] == [
        ("call_1a", "bash", {"cmd": "ls -la"}),
        ("call_1b", "python", {"code": "print(1)"}),
    ]
    bash, python = msgs[3], msgs[4]
    assert (bash["tool_call_id"], bash["name"], bash["content"]) == ("call_1a", "bash", ATTACHED)  # attachment
    assert (python["tool_call_id"], python["name"]) == ("call_1b", "python")
    assert python["content"] == "error (timeout): Command timed out"
    assert rows["1:1"]["prompt"] == "List the files of task 1" and rows["1:1"]["completion"] == "a.txt"


def test_epochs_form_one_group_and_scores_map(agentic_log: Path) -> None:
    frame = check_log(agentic_log)
    rows = rows_by_key(frame, "agentic")
    assert rows["1:1"]["group_id"] == rows["1:2"]["group_id"] == "agentic/1"
    assert (rows["1:1"]["epoch"], rows["1:2"]["epoch"]) == (1, 2)
    assert (rows["1:1"]["reward"], rows["1:2"]["reward"]) == (1.0, 0.0)
    b = rows["b:1"]
    assert b["reward"] == 0.5
    comps = {c["name"]: c["value"] for c in b["reward_components"]}
    assert comps == {"match": 0.5, "quality/f1": 0.25, "quality/exact": 0.0, "numeric": 0.75}
    assert json.loads(b["extra"])["scores"]["judge"] == {"value": "maybe"}
    c = rows["c:1"]
    assert c["reward"] is None and c["reward_components"] is None and c["exception"] == TRACEBACK
    run = open_run(agentic_log)
    notes = " ".join(n["message"] for n in run.ctx.fidelity)
    assert "judge" in notes and "first scorer" in notes and "events" in notes


def test_score_float_follows_value_to_float() -> None:
    cases = {"C": 1.0, "I": 0.0, "P": 0.5, "N": 0.0, "yes": 1.0, "False": 0.0, "0.25": 0.25, 3: 3.0, True: 1.0}
    for value, want in cases.items():
        assert IA.score_float(value) == want, value
    assert IA.score_float("maybe") is None and IA.score_float(None) is None and IA.score_float("nan") is None


def test_step_comes_from_the_eval_metadata(tmp_path: Path) -> None:
    path = write_eval_log(tmp_path / "ckpt.eval", synthetic_samples()[:1], metadata={"step": "500"})
    run = open_run(path)
    assert run.samples.select("step").collect()["step"].to_list() == [500]
    assert run.files[0].step == 500


def test_cli_renders_tool_calls(cli, agentic_log: Path) -> None:
    r = cli("render-trajectory", agentic_log, "--index", "0")
    assert r.exit_code == 0, r.output
    for text in ("bash", "python", "ls -la", "Command timed out"):
        assert text in r.output
    r = cli("summarize", agentic_log, "--by", "role", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["role"] for row in rows] == [None] and rows[0]["reward_count"] == 3


def test_samples_from_summaries_when_the_eval_has_no_sample_members(tmp_path: Path) -> None:
    samples = synthetic_samples()
    summaries = [{k: s[k] for k in ("id", "epoch", "input", "target", "scores")} for s in samples]
    path2 = write_eval_log(tmp_path / "log.eval", [], members={"_journal/summaries/1.json": json.dumps(summaries)})
    run = open_run(path2)
    frame = run.samples.collect()
    assert frame.height == len(samples)
    assert sorted(frame["reward"].drop_nulls().to_list()) == [0.0, 0.5, 1.0]
    assert any("summaries" in n["message"] for n in run.ctx.fidelity)


# ---------------------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------------------


def detect(path: Path) -> bool:
    return IA.InspectAi().detect(Candidate(path.parent, path, path.stat().st_size))


def test_detection_sniffs_the_head(tmp_path: Path) -> None:
    assert detect(write_json_log(tmp_path / "a.json", []))
    assert detect(write_eval_log(tmp_path / "a.eval", []))
    other = tmp_path / "config.json"
    other.write_text(json.dumps({"version": 2, "lr": 0.1}))
    assert not detect(other)
    meta = tmp_path / "metadata.json"
    meta.write_text(json.dumps({"env": "x", "model": "m", "num_examples": 3, "version": 2, "status": "ok"}))
    assert not detect(meta)
    notzip = tmp_path / "b.eval"
    notzip.write_text("hello")
    assert not detect(notzip)


# ---------------------------------------------------------------------------------------------------------
# Damaged and hostile files: a problem naming the file, exit 1, the rest still read
# ---------------------------------------------------------------------------------------------------------


def problems(run: Any) -> list[tuple[str, str, str]]:
    return [(p.path, p.kind, p.message) for p in run.problems if not p.is_warning]


def test_truncated_eval_zip_is_a_problem_and_the_rest_is_read(cli, tmp_path: Path) -> None:
    good = write_eval_log(tmp_path / "run" / "good.eval", synthetic_samples())
    data = good.read_bytes()
    (tmp_path / "run" / "cut.eval").write_bytes(data[: len(data) // 2])
    run = open_run(tmp_path / "run")
    assert [(p[0], p[1]) for p in problems(run)] == [("cut.eval", UNREADABLE)]
    assert run.samples.collect().height == 4
    r = cli("inspect", tmp_path / "run")
    assert r.exit_code == 1
    assert "cut.eval" in r.output and "Traceback" not in r.output


def test_truncated_real_eval_gives_exit_1(cli, tmp_path: Path) -> None:
    data = real("inspect_ai_popularity.eval").read_bytes()
    cut = tmp_path / "popularity.eval"
    cut.write_bytes(data[: len(data) - 300])
    r = cli("inspect", cut)
    assert r.exit_code == 1 and "popularity.eval" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("fmt", ["json", "eval"])
def test_newer_log_version_is_refused_naming_the_file(cli, tmp_path: Path, fmt: str) -> None:
    writer = write_json_log if fmt == "json" else write_eval_log
    path = writer(tmp_path / "run" / f"future.{fmt}", synthetic_samples(), version=99)
    write_json_log(tmp_path / "run" / "ok.json", synthetic_samples()[:1])
    run = open_run(tmp_path / "run")
    assert problems(run) == [
        (
            f"future.{fmt}",
            NEWER_VERSION,
            "newer inspect_ai log schema version 99; upgrade runlog "
            "(this runlog reads inspect_ai log versions up to 2)",
        )
    ]
    assert run.samples.collect().height == 1
    r = cli("inspect", path, "--format", "json")
    assert r.exit_code == 1 and "Traceback" not in r.output
    report = json.loads(r.stdout)
    assert [(p["path"], p["kind"]) for p in report["problems"]] == [(f"future.{fmt}", NEWER_VERSION)]
    assert "newer inspect_ai log schema version 99; upgrade runlog" in report["problems"][0]["message"]


def test_real_json_with_version_99(cli, tmp_path: Path) -> None:
    log = json.loads(real("inspect_ai_security_guide_eval_log.json").read_text())
    log["version"] = 99
    path = tmp_path / "security.json"
    path.write_text(json.dumps(log, indent=2))
    r = cli("inspect", path, "--format", "json")
    assert r.exit_code == 1
    report = json.loads(r.stdout)
    assert any(
        p["path"] == "security.json" and "newer inspect_ai log schema version 99" in p["message"]
        for p in report["problems"]
    )


def test_invalid_json_log_is_a_problem(cli, tmp_path: Path) -> None:
    path = write_json_log(tmp_path / "run" / "broken.json", synthetic_samples())
    path.write_text(path.read_text()[:-200])
    write_eval_log(tmp_path / "run" / "fine.eval", synthetic_samples())
    run = open_run(tmp_path / "run")
    assert [(p[0], p[1]) for p in problems(run)] == [("broken.json", UNREADABLE)]
    assert "not valid JSON" in problems(run)[0][2]
    assert run.samples.collect().height == 4
    r = cli("inspect", tmp_path / "run")
    assert r.exit_code == 1 and "broken.json" in r.output and "Traceback" not in r.output


def test_corrupt_member_costs_that_sample_only(tmp_path: Path) -> None:
    path = write_eval_log(
        tmp_path / "log.eval", synthetic_samples(), members={"samples/zz_epoch_1.json": b'{"id": "zz", "epo'}
    )
    run = open_run(path)
    assert [(p[1], p[2].split(":")[0]) for p in problems(run)] == [(UNREADABLE, "samples/zz_epoch_1.json")]
    assert run.samples.collect().height == 4


def test_oversized_members_and_archives_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = synthetic_samples()
    big = dict(samples[0], id="big", padding="0" * 200_000)  # compresses to almost nothing: a small bomb
    path = write_eval_log(tmp_path / "log.eval", [*samples, big])
    monkeypatch.setattr(IA, "MAX_MEMBER_BYTES", 100_000)
    run = open_run(path)
    assert [(p[1], p[2].split(":")[0]) for p in problems(run)] == [(UNREADABLE, "samples/big_epoch_1.json")]
    assert "larger than" in problems(run)[0][2]
    assert run.samples.collect().height == 4

    monkeypatch.setattr(IA, "MAX_MEMBER_BYTES", 10_000_000)
    monkeypatch.setattr(IA, "MAX_ARCHIVE_BYTES", 20_000)
    run = open_run(path, cache=False)
    msgs = [p[2] for p in problems(run)]
    assert len(msgs) == 1 and "zip bomb" in msgs[0]
    assert run.samples.collect().height < 5


def test_probe_reports_without_raising_on_odd_shapes(tmp_path: Path) -> None:
    path = write_json_log(tmp_path / "odd.json", [*synthetic_samples()[:1], 7, {"id": 2, "epoch": "x", "messages": 5}])
    ctx = RunContext(tmp_path)
    info = IA.InspectAi().probe(Candidate(tmp_path, path, path.stat().st_size), ctx)
    assert info.readable and info.rows == 2
    assert [p.message for p in ctx.problems if not p.is_warning] == ["samples[1]: a JSON int, not a sample; skipped"]


def test_forced_layout_on_a_json_that_is_no_log(cli, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"lr": 0.1, "samples": [1]}))
    r = cli("inspect", tmp_path, "--layout", "inspect_ai", "--format", "json")
    assert r.exit_code == 1
    report = json.loads(r.stdout)
    assert [(p["path"], p["message"]) for p in report["problems"]] == [
        ("config.json", "no `eval` object: not an inspect_ai log")
    ]


def test_logs_in_an_object_store_read_as_local(s3_server, tmp_path: Path) -> None:  # noqa: F811
    local = tmp_path / "logs"
    write_eval_log(local / "agentic.eval", synthetic_samples())
    write_json_log(local / "agentic.json", synthetic_samples()[:2])
    url = f"s3://{s3_server.fresh_bucket()}/logs"
    s3_server.upload_dir(local, url)
    here = open_run(local)
    there = open_run(url, storage_options=s3_server.storage_options)
    assert [(f.path, f.layout, f.fmt, f.rows) for f in there.files] == [
        (f.path, f.layout, f.fmt, f.rows) for f in here.files
    ]
    cols = ["sample_id", "reward", "messages", "epoch"]
    assert there.samples.select(cols).collect().to_dicts() == here.samples.select(cols).collect().to_dicts()


def test_logs_sharing_sample_ids_at_one_step_are_said(tmp_path: Path) -> None:
    """Two evaluations of one task in one folder without ``--metadata step=N``: the same ids at step 0, their
    rows pooled as one step and into the same prompt groups. Said once, naming an id and the logs; logs of
    different steps (or tasks) are not."""
    write_json_log(tmp_path / "same" / "a.json", synthetic_samples())
    write_eval_log(tmp_path / "same" / "b.eval", synthetic_samples()[:2])
    run = open_run(tmp_path / "same")
    said = [p for p in run.problems if "more than one inspect_ai log" in p.message]
    assert len(said) == 1 and "'agentic/1:1'" in said[0].message and "a.json" in said[0].message
    assert said[0].message.startswith("2 sample id(s)")
    write_json_log(tmp_path / "steps" / "a.json", synthetic_samples(), metadata={"step": 1})
    write_eval_log(tmp_path / "steps" / "b.eval", synthetic_samples()[:2], metadata={"step": 2})
    assert not [p for p in open_run(tmp_path / "steps").problems if "more than one" in p.message]


def test_the_real_folder_of_logs_says_its_shared_ids() -> None:
    real("inspect_ai_popularity.eval")
    run = open_run(REALDATA)
    said = [p for p in run.problems if "more than one inspect_ai log" in p.message]
    assert len(said) == 1 and "'popularity/1:1'" in said[0].message
    assert not [p for p in open_run(REALDATA / "inspect_ai_popularity.eval").problems if "more than one" in p.message]


def test_a_corrupt_sample_member_is_named_and_the_others_are_read(tmp_path: Path) -> None:
    """40 bytes flipped inside one deflated sample member of a real .eval: zlib's error was not among the
    member errors caught, so the whole log was dropped ("could not be read as inspect_ai"), its 10 samples
    with it. The member is named and skipped; the other 9 are read."""
    src = REALDATA / "inspect_ai_popularity.eval"
    if not src.exists():
        pytest.skip("shared/realdata is not beside the project")
    dst = tmp_path / "run" / src.name
    dst.parent.mkdir()
    info = zipfile.ZipFile(src).getinfo("samples/5_epoch_1.json")
    data = bytearray(src.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 20
    for k in range(40):
        data[start + k] ^= 0x5A
    dst.write_bytes(bytes(data))
    run = open_run(dst.parent)
    assert run.samples.select(pl.len()).collect().item() == 9
    [p] = [p for p in run.problems if not p.is_warning]
    assert p.kind == UNREADABLE and p.message.startswith("samples/5_epoch_1.json: unreadable")
