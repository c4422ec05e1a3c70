"""Defects found by an audit of ``runlog metrics``, each checked against a count made here, independently of
runlog: unclosed citations in ``think-answer-strict``, its whitespace, splits pooled under ``--split A
--split B``, custom TOML specs' value types, ``roles`` under ``--text auto``, the ``completion`` fallback of a
sample that has messages, and ``tool-call-json``'s NaN arguments and rule columns."""

from __future__ import annotations

import itertools
import json
import random
import re
import sys

import polars as pl
import pytest

from runlog import diversity_frame, format_per_sample, open_run
from runlog.errors import UsageError
from runlog.metrics import format as F

from conftest import native_rows, native_run_of

# Every character Python's str.split() splits on (the whitespace docs/metrics.md defines), found here by
# brute force over all code points rather than taken from runlog.
PY_WHITESPACE = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())


def strict_reference(text: str) -> str | None:
    """docs/metrics.md's think-answer-strict, rule by rule in plain Python: the first rule that fails, or None."""
    t = text.replace("\r\n", "\n")
    if not (t.count("<think>") == 1 and t.count("</think>") == 1):
        return "one_think"
    if not (t.count("<answer>") == 1 and t.count("</answer>") == 1):
        return "one_answer"
    # Python re's \s is str.isspace() (test_custom_spec_whitespace_is_str_isspace checks it).
    m = re.fullmatch(r"\s*<think>(.*)</think>\s*<answer>(.*)</answer>\s*", t, re.DOTALL)
    if m is None:
        return "order"
    think, answer = m.groups()
    if all(c.isspace() for c in think):
        return "think_not_empty"
    if all(c.isspace() for c in answer):
        return "answer_not_empty"
    if "<cite>" in think or "</cite>" in think:
        return "cite_outside_answer"
    depth = 0
    for tag in re.findall(r"</?cite>", answer):
        depth += 1 if tag == "<cite>" else -1
        if depth not in (0, 1):
            return "cite_unbalanced"
    return "cite_unbalanced" if depth else None


def _strict(texts: list[str]) -> pl.DataFrame:
    return F.evaluate(pl.Series(texts, dtype=pl.String), F.BUILTIN["think-answer-strict"])


def _msg(role: str, content: str | None = None, name: str | None = None, calls: list | None = None) -> dict:
    from runlog import chat

    return chat.message(role, content, name=name, tool_calls=calls)


# ---- 1. think-answer-strict: a <cite> left open ---------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "rule"),
    [
        ("<cite><cite>c</cite>", "cite_unbalanced"),  # an open tag before a pair: was 1.0
        ("<cite>a<cite>b</cite>", "cite_unbalanced"),
        ("<cite>a</cite><cite>b", "cite_unbalanced"),
        ("a</cite><cite>b</cite>", "cite_unbalanced"),
        ("<cite>a<cite>b</cite></cite>", "cite_unbalanced"),
        ("<cite>a</cite> b <cite>c</cite>", None),
        ("no cites", None),
    ],
)
def test_strict_cites_must_pair_in_order(answer, rule):
    text = f"<think>t</think><answer>{answer}</answer>"
    assert strict_reference(text) == rule
    row = _strict([text]).row(0, named=True)
    assert row["failed_rule"] == rule
    assert row["score"] == (1.0 if rule is None else 0.0)


def test_strict_equals_the_documented_rules_on_combinations():
    """Every arrangement of a few pieces (tags, cites, whitespace of both kinds), against the rules in Python."""
    pieces = ["<think>", "</think>", "<answer>", "</answer>", "<cite>", "</cite>", "x", " ", "\x1c", "\u2028"]
    rng = random.Random(7)
    texts = ["".join(p) for p in itertools.product(["<think>t</think><answer>", "<answer>"], pieces, pieces)]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 9))) for _ in range(3000)]
    texts += [f"<think>t</think><answer>{''.join(rng.choices(pieces[4:7], k=6))}</answer>" for _ in range(500)]
    got = _strict(texts)["failed_rule"].to_list()
    want = [strict_reference(t) for t in texts]
    bad = [(t, g, w) for t, g, w in zip(texts, got, want, strict=True) if g != w]
    assert not bad, bad[:5]


# ---- 6. whitespace is str.isspace()'s in runlog's own rules ---------------------------------------------
def test_strict_whitespace_is_str_isspace():
    """Rust regex's ``\\s`` lacks ``\\x1c-\\x1f``: a think body of ``\\x1c`` passed ``think_not_empty`` (0 tokens)
    and a trailing ``\\x1f`` failed ``order``. Checked for every whitespace character of the running Python."""
    assert len(PY_WHITESPACE) == 29
    empty = [f"<think>{c}</think><answer>a</answer>" for c in PY_WHITESPACE]
    res = _strict(empty)
    assert res["failed_rule"].to_list() == ["think_not_empty"] * len(PY_WHITESPACE)
    tokens = pl.select(F.section_tokens(pl.lit(pl.Series(empty)), "think")).to_series()
    assert tokens.to_list() == [len(c.split()) for c in PY_WHITESPACE] == [0] * len(PY_WHITESPACE)
    padded = [f"{c}<think>t</think>{c}<answer>a</answer>{c}" for c in PY_WHITESPACE]
    assert _strict(padded)["failed_rule"].to_list() == [None] * len(PY_WHITESPACE)
    # Not whitespace for str.split(): a zero-width space is a character of the body.
    assert _strict(["<think>\u200b</think><answer>a</answer>"])["failed_rule"].to_list() == [None]


def test_custom_spec_whitespace_is_str_isspace(tmp_path):
    """A custom spec's patterns are Python ``re``, whose ``\\s`` is str.isspace() (checked here for every code
    point), so its rules already agree with the tokeniser; a ``match`` with ``\\s`` shows it on a text."""
    all_chars = "".join(map(chr, range(sys.maxunicode + 1)))
    assert "".join(re.findall(r"\s", all_chars)) == PY_WHITESPACE
    (tmp_path / "ws.toml").write_text("match = '\\s*<answer>\\S.*</answer>\\s*'\n")
    spec = F.load_spec(tmp_path / "ws.toml")
    res = F.evaluate(pl.Series(["\x1c<answer>a</answer>\x1f", "<answer>\x1ca</answer>"]), spec)
    assert res["passed"].to_list() == [True, False]


# ---- 3. custom TOML specs: wrong value types are usage errors --------------------------------------------
@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('forbid = "ab"', "forbid"),  # was two rules, 'a' and 'b'
        ('require = "x"', "require"),
        ("require = [1]", "require"),
        ('tags = ["answer"]\nignore_case = "no"', "ignore_case"),  # was truthy: case-insensitive
        ('tags = ["answer"]\nignore_case = 1', "ignore_case"),
        ('tags = ["answer"]\ncrlf = "false"', "crlf"),  # was truthy
        ("match = ['a']", "match"),
        ('tags = "think"', "tags"),
        ('tags = ["answer"]\nroles = "solver"', "roles"),
        ('tags = ["answer"]\nroles = []', "roles"),
        ('tags = ["answer"]\nname = 3', "name"),
        ('tags = ["answer"]\ndescription = ["d"]', "description"),
    ],
)
def test_custom_spec_wrong_types_are_usage_errors(tmp_path, cli, toml, key):
    spec = tmp_path / "spec.toml"
    spec.write_text(toml + "\n")
    with pytest.raises(UsageError, match=rf"^--spec {re.escape(str(spec))}: {key} must be "):
        F.load_spec(spec)
    root = native_run_of(tmp_path / "run", native_rows(0, 2))
    res = cli("metrics", "format", root, "--spec", spec)
    assert res.exit_code == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(spec) in lines[0] and f" {key} must be " in lines[0], res.stderr


def test_custom_spec_right_types_still_load(tmp_path):
    spec = tmp_path / "ok.toml"
    spec.write_text('name = "n"\ntags = ["answer"]\nforbid = ["x"]\nignore_case = true\ncrlf = false\nroles = ["a"]\n')
    loaded = F.load_spec(spec)
    assert loaded.name == "n" and loaded.roles == ["a"]
    res = F.evaluate(pl.Series(["<ANSWER>1</ANSWER>", "<answer>x</answer>"]), loaded)
    assert res["failed_rule"].to_list() == [None, "forbid:0"]


# ---- 4. a spec with roles under --text auto ---------------------------------------------------------------
@pytest.fixture
def debate_run(tmp_path):
    """Solver and verifier turns; the solver's last turn with content is the text each sample is checked on."""
    rng = random.Random(3)
    forms = ["<think>r</think><answer>1</answer>", "<answer>1</answer>", "no tags", "<think>a</think>"]
    rows = native_rows(0, 12, roles=("solver", "verifier"))
    for r in rows:
        solver = [rng.choice(forms) for _ in range(rng.randint(1, 2))]
        msgs = [_msg("user", "<think>prompt</think><answer>p</answer>")]
        for s in solver:
            msgs += [_msg("assistant", s, "solver"), _msg("assistant", rng.choice(forms), "verifier")]
        r.update(messages=msgs, completion="1")
    return native_run_of(tmp_path / "run", rows, roles=("solver", "verifier")), rows


def test_roles_spec_reads_each_role_s_text_under_auto(tmp_path, debate_run, cli):
    """A spec with ``roles = ["solver"]`` under the default ``--text auto`` gave ``[]`` and the note "no sample
    has a text" while every sample has a solver text; it now checks the solver's last turn."""
    root, rows = debate_run
    spec = tmp_path / "roles.toml"
    spec.write_text('tags = ["think", "answer"]\nroles = ["solver"]\n')

    def solver_text(r: dict) -> str:
        return [m["content"] for m in r["messages"] if m["name"] == "solver" and m["content"]][-1]

    def rules_held(t: str) -> float:
        ok = [t.count(f"<{g}>") == 1 and t.count(f"</{g}>") == 1 for g in ("think", "answer")]
        ok.append(re.search(r"(?s)<think>.*?</think>.*?<answer>.*?</answer>", t) is not None)
        return sum(ok) / 3

    want = [rules_held(solver_text(r)) for r in rows]
    run = open_run(root)
    for text in ("auto", "assistant", "role:solver"):
        per = format_per_sample(run, str(spec), text=text)
        assert per["sample_id"].to_list() == [r["sample_id"] for r in rows], text
        if text != "assistant":  # assistant: every solver turn joined
            assert per["score"].to_list() == want, text
        assert set(per["role"].to_list()) == {"solver"}, text
    res = cli("metrics", "format", root, "--spec", spec, "-f", "json")
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.stdout)
    assert row["texts"] == 12 and row["score_mean"] == pytest.approx(sum(want) / 12)
    assert "no sample has a text" not in res.stderr
    res = cli("metrics", "format", root, "--spec", spec, "--text", "completion")
    assert res.exit_code == 2 and "has no speaker" in res.stderr


# ---- 5. a sample with messages is never scored on its completion ------------------------------------------
def test_a_sample_with_messages_but_no_policy_text_is_skipped(tmp_path):
    """Samples whose only solver turn is a tool call with empty content were scored on ``completion`` (here the
    prompt and the answer decoded together); docs: only a sample without messages falls back to it."""
    good = "<think>\nr\n</think>\n<answer>\n42\n</answer>"
    call = {"id": "c", "name": "py", "arguments": '{"code": "1"}'}
    rows = native_rows(0, 6, roles=("solver",))
    for i, r in enumerate(rows):
        r["completion"] = "USER PROMPT " + good
        if i < 3:  # only a tool call: no text
            r["messages"] = [_msg("user", "USER PROMPT"), _msg("assistant", "", "solver", [call]), _msg("tool", "1")]
        elif i < 5:
            text = good.replace("\nr\n", f"\nr {i}\n")
            r["messages"] = [_msg("user", "USER PROMPT"), _msg("assistant", text, "solver")]
        else:  # no messages: its completion
            r["messages"] = None
    run = open_run(native_run_of(tmp_path / "run", rows))

    def expected(r: dict) -> str | None:
        if not r["messages"]:
            return r["completion"]
        turns = [m["content"] for m in r["messages"] if m["role"] == "assistant" and m["content"]]
        return turns[-1] if turns else None

    want = [(r["sample_id"], expected(r)) for r in rows if expected(r) is not None]
    assert [s for s, _ in want] == ["s0-3", "s0-4", "s0-5"]
    from runlog.analysis.texts import texts_frame

    for text in ("auto", "assistant"):
        tf = texts_frame(run, text).filter(pl.col("text").is_not_null())
        assert list(zip(tf["sample_id"], tf["text"], strict=True)) == want, text
        per = format_per_sample(run, "open-r1", text=text)
        assert per["sample_id"].to_list() == ["s0-3", "s0-4", "s0-5"], text
        # open-r1's own regex (tests/test_metrics_format.py): "USER PROMPT" before <think> fails it.
        open_r1 = r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$"
        assert per["passed"].to_list() == [bool(re.match(open_r1, t, re.DOTALL | re.MULTILINE)) for _, t in want]
        assert per["passed"].to_list() == [True, True, False], text
    div = diversity_frame(run, ["step"], over="set")
    assert div["texts"].to_list() == [3]


# ---- 7. tool-call-json: NaN is not JSON; one rule column per rule ------------------------------------------
def _strict_json_object(args: str) -> bool:
    """RFC 8259 object: Python's json with its NaN/Infinity extension turned off."""

    def refuse(c: str) -> None:
        raise ValueError(c)

    try:
        return isinstance(json.loads(args, parse_constant=refuse), dict)
    except ValueError:
        return False


ARGS = ['{"a": 1}', '{"a": NaN}', '{"a": Infinity}', '{"a": [-Infinity]}', "[1]", "{a:1}", ' {"a":1}\n', '"{}"']


def test_tool_call_arguments_must_be_rfc_8259_json():
    for args in ARGS:
        calls = [{"id": "1", "name": "py", "arguments": args}]
        ok = _strict_json_object(args)
        assert F.check_tool_calls(calls, None, None) == ((1.0, None) if ok else (0.0, "arguments_not_json_object"))
    assert [_strict_json_object(a) for a in ARGS] == [True, False, False, False, False, False, True, False]


def test_tool_call_json_per_sample_has_one_column_per_rule(tmp_path):
    """``--per-sample`` promises ``rule:<name>`` per rule; tool-call-json had none."""
    cases = {
        "good": ([{"id": "1", "name": "py", "arguments": '{"a": 1}'}], ""),
        "nan": ([{"id": "1", "name": "py", "arguments": '{"a": NaN}'}], ""),
        "mixed": ([{"id": "1", "name": "", "arguments": "{}"}, {"id": "2", "name": "sh", "arguments": "{}"}], ""),
        "text": (None, "<tool_call>x</tool_call>"),
        "both": ([{"id": "1", "name": "py", "arguments": "[]"}], "<tool_call>x</tool_call>"),
    }
    rows = native_rows(0, len(cases), roles=("solver",))
    for r, (sid, (calls, content)) in zip(rows, cases.items(), strict=True):
        r.update(sample_id=sid, messages=[_msg("user", "q"), _msg("assistant", content, "solver", calls)])
    run = open_run(native_run_of(tmp_path / "run", rows))
    per = format_per_sample(run, "tool-call-json", known_tools=["py"])
    names = ["missing_name", "unknown_tool", "arguments_not_json_object", "tool_call_in_text"]
    assert [c for c in per.columns if c.startswith("rule:")] == [f"rule:{n}" for n in names]

    def broken(calls: list | None, content: str) -> set[str]:
        out = set()
        for c in calls or []:
            if not c["name"]:
                out.add("missing_name")
            elif c["name"] != "py":
                out.add("unknown_tool")
            elif not _strict_json_object(c["arguments"]):
                out.add("arguments_not_json_object")
        if "<tool_call>" in content:
            out.add("tool_call_in_text")
        return out

    for row, (calls, content) in zip(per.iter_rows(named=True), cases.values(), strict=True):
        bad = broken(calls, content)
        assert {n for n in names if not row[f"rule:{n}"]} == bad, row["sample_id"]
        assert row["passed"] == (not bad)
    assert per["failed_rule"].to_list() == [
        None,
        "arguments_not_json_object",
        "missing_name",
        "tool_call_in_text",
        "arguments_not_json_object",
    ]
    assert F.BUILTIN["tool-call-json"].rule_names() == names
