"""Every real dump in ``../shared/realdata`` renders with all its tool calls and all its scores.

For each real file (verifiers results + metadata, NeMo Gym rollouts, inspect_ai JSON and ``.eval`` logs), the
file is parsed here on its own with ``json`` / ``zipfile`` (no runlog), then every sample is rendered with
``runlog render-trajectory FILE --steps all --index N --format json`` and compared: each tool call (name and
arguments, in order) with its result paired, each score (the total and every reward component), the samples
of one prompt group sharing one prompt. The Markdown rendering of the whole file is checked for the same tool
calls and score names. The folder is not copied; the tests skip when it is absent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from test_inspect_ai import expected_float, raw_log

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
VERIFIERS = "verifiers_math_python_gpt5nano_results.jsonl"
VERIFIERS_META = "verifiers_math_python_gpt5nano_metadata.json"
NEMO = "nemo_gym_tool_call_multireward_rollouts.jsonl"
INSPECT = (
    "inspect_ai_popularity_eval_log.json",
    "inspect_ai_security_guide_eval_log.json",
    "inspect_ai_popularity.eval",
    "inspect_ai_log_formats.eval",
)


def real(name: str) -> Path:
    path = REALDATA / name
    if not path.exists():
        pytest.skip(f"real data file {name} not found in {REALDATA} (the shared/realdata checkout)")
    return path


@dataclass
class Expected:
    """One sample as the file itself says it: its tool calls ``(name, arguments as objects)`` in order, its
    total score (None: unscored) and its named scores, and the prompt its group must share."""

    key: str
    calls: list[tuple[str, Any]] = field(default_factory=list)
    total: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    prompt: str = ""


def _args(v: Any) -> Any:
    """Tool-call arguments as an object: JSON text is decoded, an object is kept."""
    return json.loads(v) if isinstance(v, str) else v


# -- independent readings -------------------------------------------------------------------------------------
def read_verifiers(path: Path) -> list[Expected]:
    """vf-eval results: tool calls are in the OpenAI chat messages (entries JSON strings or objects); the score
    names are the reward functions whose averages the sibling metadata.json lists (``avg_<name>``)."""
    meta = json.loads(real(VERIFIERS_META).read_text())
    names = [k.removeprefix("avg_") for k in meta if k.startswith("avg_") and k != "avg_reward"]
    assert names, "metadata.json lists no reward function"
    out, seen = [], {}
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        k = seen[rec["id"]] = seen.get(rec["id"], -1) + 1
        calls = []
        for m in [*rec["prompt"], *rec["completion"]]:
            for tc in m.get("tool_calls") or []:
                fn = (json.loads(tc) if isinstance(tc, str) else tc)["function"]
                calls.append((fn["name"], _args(fn["arguments"])))
        exp = Expected(f"{rec['id']}:{k}", calls, float(rec["reward"]), {n: float(rec[n]) for n in names})
        exp.prompt = json.dumps(rec["prompt"], sort_keys=True)
        out.append(exp)
    assert len(out) == meta["num_examples"] * meta["rollouts_per_example"]
    return out


def read_nemo(path: Path) -> list[Expected]:
    """NeMo Gym rollouts: ``function_call`` items of the request input and the response output."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        items = [*rec["responses_create_params"].get("input", []), *rec["response"]["output"]]
        calls = [(it["name"], _args(it["arguments"])) for it in items if it.get("type") == "function_call"]
        scores = {n: float(v) for n, v in rec["reward_components"].items()}
        exp = Expected(f"{rec['_ng_task_index']}:{rec['_ng_rollout_index']}", calls, float(rec["reward"]), scores)
        exp.prompt = json.dumps(rec["responses_create_params"]["input"], sort_keys=True)
        out.append(exp)
    return out


def _resolve(obj: Any, attachments: dict[str, str]) -> Any:
    if isinstance(obj, str) and obj.startswith("attachment://"):
        return attachments.get(obj.removeprefix("attachment://"), obj)
    if isinstance(obj, list):
        return [_resolve(v, attachments) for v in obj]
    if isinstance(obj, dict):
        return {k: _resolve(v, attachments) for k, v in obj.items()}
    return obj


def read_inspect(path: Path) -> list[Expected]:
    """inspect_ai logs: ``messages[].tool_calls`` (``function``, ``arguments``), ``scores`` by scorer (a dict
    value gives ``scorer/key``); the first scorer is the total."""
    header, samples = raw_log(path)
    task = header["eval"]["task"]
    out = []
    for s in samples:
        messages = _resolve(s.get("messages") or [], s.get("attachments") or {})
        calls = [(tc["function"], _args(tc["arguments"])) for m in messages for tc in m.get("tool_calls") or []]
        scores: dict[str, float] = {}
        for scorer, score in (s.get("scores") or {}).items():
            value = score["value"]
            for key, v in value.items() if isinstance(value, dict) else [(None, value)]:
                if (f := expected_float(v)) is not None:
                    scores[scorer if key is None else f"{scorer}/{key}"] = f
        first = next(iter((s.get("scores") or {}).values()), None)
        total = None if first is None or isinstance(first["value"], (dict, list)) else expected_float(first["value"])
        exp = Expected(f"{task}/{s['id']}:{s['epoch']}", calls, total, scores)
        exp.prompt = json.dumps(s.get("input"), sort_keys=True)
        out.append(exp)
    return out


CASES = [(VERIFIERS, read_verifiers), (NEMO, read_nemo)] + [(name, read_inspect) for name in INSPECT]


# -- the comparison --------------------------------------------------------------------------------------------
def render_each(cli, path: Path, n: int) -> list[dict[str, Any]]:
    convs = []
    for i in range(n):
        r = cli("render-trajectory", path, "--steps", "all", "--index", i, "--format", "json")
        assert r.exit_code == 0, r.output
        [conv] = json.loads(r.stdout)
        convs.append(conv)
    return convs


def check_conversation(conv: dict[str, Any], exp: Expected) -> None:
    calls = [c for t in conv["turns"] for c in t["tool_calls"]]
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == exp.calls, exp.key
    assert conv["stats"]["tool_calls"] == len(exp.calls)
    # every tool result answers a call of this sample, under that call's name
    by_id = {c["id"]: c["name"] for c in calls}
    results = [t["result"] for t in conv["turns"] if t["result"] is not None]
    assert len(results) == len(exp.calls), exp.key
    assert all(by_id.get(res["call_id"]) == res["name"] for res in results), (exp.key, results)
    reward = conv["reward"]
    assert reward["total"] == exp.total, exp.key
    shown = {c["name"]: c["value"] for c in reward["components"]}
    assert {n: shown.get(n) for n in exp.scores} == exp.scores, exp.key


@pytest.mark.parametrize(("name", "reader"), CASES, ids=[c[0] for c in CASES])
def test_every_sample_renders_every_tool_call_and_score(cli, name: str, reader) -> None:
    path = real(name)
    expected = {e.key: e for e in reader(path)}
    assert expected, f"{name}: no sample found by the independent reading"
    convs = render_each(cli, path, len(expected))
    assert sorted(c["sample_id"] for c in convs) == sorted(expected)  # every sample, each once
    for conv in convs:
        check_conversation(conv, expected[conv["sample_id"]])
    # a prompt group holds the samples of one prompt
    prompts: dict[str, set[str]] = {}
    for conv in convs:
        if conv["group_id"] is not None:
            prompts.setdefault(conv["group_id"], set()).add(expected[conv["sample_id"]].prompt)
    assert all(len(p) == 1 for p in prompts.values()), f"{name}: a prompt group mixes prompts"


def _unescape(markdown: str) -> str:
    return re.sub(r"\\(.)", r"\1", markdown)


@pytest.mark.parametrize(("name", "reader"), CASES, ids=[c[0] for c in CASES])
def test_markdown_shows_every_tool_call_and_score(cli, name: str, reader) -> None:
    path = real(name)
    expected = reader(path)
    ids = [a for e in expected for a in ("--sample-id", e.key)]
    r = cli("render-trajectory", path, *ids, "--limit", len(expected), "--format", "markdown")
    assert r.exit_code == 0, r.output
    sections = re.split(r"(?m)^## sample ", _unescape(r.stdout))[1:]
    assert len(sections) == len(expected)
    by_key = {s.split("\n", 1)[0].strip(): s for s in sections}
    for exp in expected:
        text = by_key[exp.key]
        assert re.findall(r"→ tool call \*\*(.+?)\*\*", text) == [c[0] for c in exp.calls], exp.key
        for score, value in exp.scores.items():
            assert re.search(rf"(?m)^\| {re.escape(score)} \| {value:g} \|", text), (exp.key, score)


def _poke_first_string(obj: Any) -> bool:
    """Append a lone surrogate to the first message content found (as ``json.dumps`` writes it: ``\\udcff``)."""
    if isinstance(obj, dict):
        if isinstance(obj.get("content"), str) and obj["content"]:
            obj["content"] += " \udcff"
            return True
        return any(_poke_first_string(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_poke_first_string(v) for v in obj)
    return False


@pytest.mark.parametrize(
    ("name", "samples"),
    [
        ("verifiers_math_python_gpt5nano_results.jsonl", 15),
        ("nemo_gym_tool_call_multireward_rollouts.jsonl", 5),
        ("inspect_ai_popularity_eval_log.json", 3),
    ],
)
def test_a_lone_surrogate_escape_loses_nothing_but_that_character(cli, tmp_path: Path, name: str, samples: int) -> None:
    """``"\\udcff"`` is valid JSON but no character, and Arrow cannot store it: one such string made the whole
    file unreadable ("no per-sample data to render"). It is now read as U+FFFD, with a warning counting the
    strings, and every sample is still there."""
    src = real(name)
    out = tmp_path / name
    if name.endswith(".jsonl"):
        lines = src.read_text(encoding="utf-8").splitlines()
        first = json.loads(lines[0])
        assert _poke_first_string(first)
        lines[0] = json.dumps(first)
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        log = json.loads(src.read_text(encoding="utf-8"))
        assert _poke_first_string(log["samples"][0])
        out.write_text(json.dumps(log), encoding="utf-8")
    assert b"\\udcff" in out.read_bytes()
    if name.startswith("verifiers"):  # its metadata beside it
        (tmp_path / "verifiers_math_python_gpt5nano_metadata.json").write_bytes(
            real("verifiers_math_python_gpt5nano_metadata.json").read_bytes()
        )
    res = cli("inspect", out, "--format", "json")
    data = json.loads(res.stdout)
    assert sum(f.get("rows") or 0 for f in data["files"] if f.get("kind") == "samples") == samples, res.stdout[:500]
    assert any("lone surrogate" in p["message"] and p["kind"] == "warning" for p in data["problems"])
    res = cli("render-trajectory", out, "--index", "0", "--format", "json")
    assert res.exit_code == 0, res.output
    assert "\ufffd" in res.stdout or "\\ufffd" in res.stdout
