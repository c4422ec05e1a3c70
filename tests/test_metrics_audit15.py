"""Audit 15 of the text metrics (format adherence and diversity):

1. a custom spec's ``tag:<t>`` needs its one open tag before its one close tag, whatever the number of tags
   (``</answer>42<answer>`` passed a spec of one tag, where ``tag_order`` does not exist);
2. ``tag_order`` is found in one pass over the text: its regex (``<a>.*?</a>.*?<b>.*?</b>``) backtracked about
   k^3 on ``"<think></think><answer>" * k`` (11 s on 3.5 KB; a 100 KB text never ended), with the same answers;
3. ``--by role``: a speaker whose only turn in a sample is a tool call without words is counted in its row's
   ``no_text`` and said in a note (the sample was in no row, while ``--by step`` counted it);
4. ``--text answer`` reads the last ``<answer>…</answer>`` block up to its first ``</answer>``
   (``<answer>a</answer> more </answer>`` read as ``a</answer> more ``).

Expected figures are counted here from the inputs, never with runlog's code."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from runlog.metrics import format as F
from test_tables_audit11 import call, msg, run_of, sample

TWO_TAGS = 'name = "ta"\ntags = ["think", "answer"]\n'


def _spec(tmp_path: Path, body: str, name: str = "spec.toml") -> F.Spec:
    path = tmp_path / name
    path.write_text(body)
    return F.load_spec(path)


def _rules(spec: F.Spec, texts: list[str]) -> list[dict[str, bool]]:
    """Each text's rules as the spec checks them (its own Python rules, one text at a time)."""
    return [{n: bool(fn(t)) for n, fn in spec.python_rules} for t in texts]


# ---------------------------------------------------------------------------------------------------------
# 1. One tag: its block is an open tag then a close tag
# ---------------------------------------------------------------------------------------------------------
def test_a_spec_of_one_tag_fails_a_close_tag_before_its_open_tag(cli, tmp_path: Path) -> None:  # noqa: ANN001
    texts = ["<answer>42</answer>", "</answer>42<answer>", "x</answer>y<answer>z", "<answer>1</answer><answer>"]
    spec_file = tmp_path / "one_tag.toml"
    spec_file.write_text('name = "ans"\ntags = ["answer"]\n')
    ruled = _rules(F.load_spec(spec_file), texts)
    assert [r["tag:answer"] for r in ruled] == [True, False, False, False]
    run = run_of(tmp_path, [sample(f"s{i}", None, completion=t) for i, t in enumerate(texts)])
    r = cli("metrics", "format", str(run), "--spec", str(spec_file), "--format", "json")
    assert r.exit_code == 0, r.stderr
    (row,) = json.loads(r.stdout)
    # An <answer>…</answer> block, each tag once: the first text only.
    want = [
        t.count("<answer>") == 1 == t.count("</answer>") and t.index("<answer>") < t.index("</answer>") for t in texts
    ]
    assert row["texts"] == 4 and row["adherence"] == sum(want) / 4 == 0.25
    assert row["failed/tag:answer"] == 3


def test_each_tag_of_several_needs_its_open_tag_first(tmp_path: Path) -> None:
    """With two tags the reversed one fails its own rule too (it was caught by ``tag_order`` alone: the score,
    the fraction of rules that hold, read 2/3)."""
    spec = _spec(tmp_path, TWO_TAGS)
    (ruled,) = _rules(spec, ["<think>t</think></answer>42<answer>"])
    assert ruled == {"tag:think": True, "tag:answer": False, "tag_order": False}
    (scored,) = F.evaluate(pl.Series(["<think>t</think></answer>42<answer>"]), spec).to_dicts()
    assert scored["score"] == pytest.approx(1 / 3) and scored["failed_rule"] == "tag:answer"


# ---------------------------------------------------------------------------------------------------------
# 2. tag_order: the old regex's answers, in one pass
# ---------------------------------------------------------------------------------------------------------
def _old_tag_order(tags: list[str], text: str, flags: int = 0) -> bool:
    """What ``tag_order`` was: the regex of the tags' blocks in order, searched (DOTALL)."""
    seq = ".*?".join(f"<{re.escape(t)}>.*?</{re.escape(t)}>" for t in tags)
    return re.search(seq, text, flags | re.DOTALL) is not None


def test_tag_order_answers_as_the_regex_did(tmp_path: Path) -> None:
    """On short texts of tag fragments (repeated, missing, reversed, nested, upper case): the same answer as the
    regex, whether or not each tag occurs once (where one does not, its ``tag:`` rule fails first)."""
    tags = ["think", "cite", "answer"]
    pieces = [f"<{t}>" for t in tags] + [f"</{t}>" for t in tags] + ["x", "\n", "<ANSWER>", "</Think>", "<"]
    rng = random.Random(15)
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    texts += ["<think>a</think><cite>b</cite><answer>c</answer>", "<think><cite></cite></think><answer></answer>"]
    for ignore_case in (False, True):
        body = f"tags = {json.dumps(tags)}\nignore_case = {'true' if ignore_case else 'false'}\n"
        spec = _spec(tmp_path, body, f"s{ignore_case}.toml")
        flags = re.IGNORECASE if ignore_case else 0
        for text, ruled in zip(texts, _rules(spec, texts), strict=True):
            assert ruled["tag_order"] == _old_tag_order(tags, text, flags), text
            for t in tags:
                low = text.lower() if ignore_case else text
                once = low.count(f"<{t}>") == 1 == low.count(f"</{t}>")
                assert ruled[f"tag:{t}"] == (once and low.index(f"<{t}>") < low.index(f"</{t}>")), (t, text)
    passing = "<think>a</think><cite>b</cite><answer>c</answer>"
    assert all(_rules(spec, [passing])[0].values())


DEGENERATE = """
from pathlib import Path
import polars as pl
from runlog.metrics import format as F
path = Path({spec!r})
path.write_text('tags = ["think", "answer"]\\n')
text = "<think></think><answer>" * {k}  # a collapsed policy repeating its tags, the answer never closed
(row,) = F.evaluate(pl.Series([text]), F.load_spec(path)).to_dicts()
print(len(text), row["rule:tag:think"], row["rule:tag:answer"], row["rule:tag_order"], row["failed_rule"])
"""


def test_a_100_kb_degenerate_text_is_checked_in_one_pass(tmp_path: Path) -> None:
    """The text that made the regex backtrack, at 100 KB (hours then): checked in a subprocess, so that a
    return of the backtracking fails this test after a minute rather than hangs the suite."""
    k = 100_000 // len("<think></think><answer>") + 1
    code = DEGENERATE.format(spec=str(tmp_path / "two.toml"), k=k)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    length, think, answer, order, failed = done.stdout.split()
    assert int(length) >= 100_000
    # Many think tags and answer tags, never a </answer>: both tag rules fail, and no answer block is in order.
    assert (think, answer, order, failed) == ("False", "False", "False", "tag:think")
    small = "<think></think><answer>" * 5
    assert _old_tag_order(["think", "answer"], small) is False
    assert _rules(_spec(tmp_path, TWO_TAGS), [small, small + "</answer>"]) == [
        {"tag:think": False, "tag:answer": False, "tag_order": False},
        {
            "tag:think": False,
            "tag:answer": False,
            "tag_order": _old_tag_order(["think", "answer"], small + "</answer>"),
        },
    ]


# ---------------------------------------------------------------------------------------------------------
# 3. --by role: a speaker with a turn but no text is counted in its row
# ---------------------------------------------------------------------------------------------------------
GOOD = "<think>t</think><answer>{}</answer>"


def _debate(tmp_path: Path) -> Path:
    """Four samples of a solver and a judge; in s3 the solver's only turn is a tool call without words."""
    rows = []
    for i in range(4):
        if i < 3:
            solver = msg("assistant", GOOD.format(i), name="solver")
        else:
            solver = msg("assistant", "\n\n", name="solver", tool_calls=[call("py", "{}", "c1")])
        turns = [msg("user", "q"), solver, msg("assistant", f"Verdict {i}: ok", name="judge")]
        rows.append(sample(f"s{i}", turns, group_id="g"))
    # s4: a sample with messages but no model turn at all: one sample skipped, in no role's row.
    rows.append(sample("s4", [msg("user", "q")], group_id="g"))
    return run_of(tmp_path, rows)


def _expected(run: Path) -> dict[str | None, tuple[int, int]]:
    """Per speaker: (samples where it has a turn with words or without a call, samples where its every turn is a
    tool call without words); None: the samples with no model turn, counted once."""
    import pyarrow.parquet as pq

    out: dict[str | None, list[int]] = {}
    for r in pq.read_table(run / "samples/train/step_00000000.p0.parquet").to_pylist():
        model = [m for m in r["messages"] if m["role"] == "assistant"]
        if not model:
            out.setdefault(None, [0, 0])[1] += 1
        for who in dict.fromkeys(m["name"] for m in model):
            mine = [m for m in model if m["name"] == who]
            read = any((m["content"] or "").strip() or not m["tool_calls"] for m in mine)
            out.setdefault(who, [0, 0])[0 if read else 1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


@pytest.mark.parametrize("command", ["format", "diversity"])
def test_by_role_counts_a_speaker_whose_only_turn_is_a_bare_tool_call(cli, tmp_path: Path, command: str) -> None:  # noqa: ANN001
    run = _debate(tmp_path)
    want = _expected(run)
    assert want == {"solver": (3, 1), "judge": (4, 0), None: (0, 1)}
    r = cli("metrics", command, str(run), "--by", "step", "--by", "role", "--format", "json")
    assert r.exit_code == 0, r.stderr
    rows = {row["role"]: row for row in json.loads(r.stdout)}
    for role, (texts, none) in want.items():
        assert (rows[role]["texts"], rows[role]["no_text"]) == (texts, none), (role, rows[role])
    # Every (sample, speaker) and every sample without one is in a row: nothing left out unseen.
    assert sum(row["texts"] + row["no_text"] for row in rows.values()) == sum(a + b for a, b in want.values())
    notes = [line for line in r.stderr.splitlines() if "have no text" in line]
    assert len(notes) == 1 and "2 text(s) (per sample and role)" in notes[0]


def test_a_spec_of_one_role_counts_its_silent_speaker_in_that_role(tmp_path: Path) -> None:
    """A spec keeping the solver's texts: the solver's bare tool call is skipped in the solver's row (it was
    counted as a sample with no role)."""
    from runlog import format_frame, open_run
    from runlog.analysis.texts import SkippedTexts

    run = _debate(tmp_path)
    spec = _spec(tmp_path, 'tags = ["answer"]\nroles = ["solver"]\n')
    none = SkippedTexts()
    df = format_frame(open_run(run), spec, ["step"], skipped=none)
    assert df["texts"].to_list() == [3] and df["adherence"].to_list() == [1.0]
    per_role = {r["role"]: r["no_text"] for r in none.per_row(["role"]).to_dicts()}
    assert per_role == {"solver": 1, None: 1}


def test_doctor_role_diversity_reads_the_same_texts(tmp_path: Path) -> None:
    """doctor and report read diversity per (step, role) through the same path, without counting: the rows of
    speakers without text are not measured there either."""
    from runlog import diversity_frame, open_run

    run = _debate(tmp_path)
    df = diversity_frame(open_run(run), ["step", "role"])
    assert dict(zip(df["role"].to_list(), df["texts"].to_list(), strict=True)) == {"judge": 4, "solver": 3}


# ---------------------------------------------------------------------------------------------------------
# 4. --text answer: the last block, up to its first close tag
# ---------------------------------------------------------------------------------------------------------
ANSWERS = {
    "<answer>a</answer> more </answer>": "a",
    "<answer>x<answer>y</answer>z</answer>": "y",
    "<answer>a</answer> then <answer>b": "a",  # an unclosed <answer> after the block is no block
    "<answer>p</answer><answer>q</answer>": "q",
    "<answer>a</answer>": "a",
}


def _answer_of(text: str) -> str | None:
    """The last <answer> that a </answer> follows, up to the first </answer> after it."""
    opens = [m.end() for m in re.finditer("<answer>", text) if "</answer>" in text[m.end() :]]
    return text[opens[-1] : text.index("</answer>", opens[-1])] if opens else None


def test_answer_text_is_the_last_block_up_to_its_first_close_tag(cli, tmp_path: Path) -> None:  # noqa: ANN001
    from runlog import open_run
    from runlog.analysis.texts import texts_frame

    assert {t: _answer_of(t) for t in ANSWERS} == ANSWERS
    texts = [*ANSWERS, "no block"]
    rows = [
        sample(f"s{i}", [msg("user", "q"), msg("assistant", t)], completion="C", group_id="g")
        for i, t in enumerate(texts)
    ]
    run = run_of(tmp_path, rows)
    got = texts_frame(open_run(run), "answer")["text"].to_list()
    assert got == [*ANSWERS.values(), "C"]
    r = cli("metrics", "diversity", str(run), "--text", "answer", "--over", "set", "--format", "json")
    assert r.exit_code == 0, r.stderr
    (row,) = json.loads(r.stdout)
    answers = [_answer_of(t) or "C" for t in texts]
    assert row["texts"] == 6 and row["unique_frac"] == len(set(answers)) / 6
    assert row["len_mean"] == sum(len(a.split()) for a in answers) / 6
