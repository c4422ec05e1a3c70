"""Audit a13 (metrics): whose text ``--text auto`` reads, and a collapse onto short answers.

- The policy (whose turns ``auto`` reads) was elected among the samples the filters kept, eval samples voting: one
  train step read 0.0 or 1.0 adherence depending on ``--split`` / ``--steps``. It is now elected once per run from
  the train samples, and a note names it.
- Policy turns written without a ``name``, a named critic after them: the critic won the election (unnamed turns
  never voted) and its turn was read as the policy's. The turns without a name are now a candidate of their own.
- doctor's ``diversity_collapse`` was blind where ``distinct_2`` has no value (one-word, empty or Chinese answers).
- docs/metrics.md: a duplicated answer scores Self-BLEU 1.0 only with at least n tokens; the role lists.
- ``metrics`` says that a folder's layouts are pooled, as ``summarize`` does.

Expected figures are computed here from the files written (pyarrow) or by hand, never with runlog's code.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from runlog import chat, open_run
from runlog.analysis import texts as T
from runlog.analysis.doctor import diagnose
from runlog.analysis.doctor_config import DoctorConfig
from runlog.analysis.doctor_text import text_findings
from runlog.analysis.filters import Filters, StepRange
from runlog.analysis.series import RunSeries
from runlog.analysis.texts import diversity_frame, format_frame, texts_frame
from runlog.writer import RunWriter

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "metrics.md"
STRICT = re.compile(r"(?s)^\s*<think>\s*\S.*?</think>\s*<answer>\s*\S.*?</answer>\s*$")
MODEL = {"assistant", "model", "agent"}


def _m(name: str | None, content: str) -> dict:
    return {"role": "assistant", "content": content, **({"name": name} if name is not None else {})}


def _rows(root: Path) -> list[dict]:
    """Every sample row of a native run, read with pyarrow (split, step, messages as written)."""
    out = []
    for f in sorted((root / "samples").rglob("*.parquet")):
        out += pq.read_table(f, columns=["split", "step", "sample_id", "messages"]).to_pylist()
    return out


def _first_speaker(row: dict) -> tuple[bool, str | None]:
    """(whether the sample has a model turn, the name of its first one)."""
    for m in row["messages"] or []:
        if (m["role"] or "").lower() in MODEL:
            return True, m["name"]
    return False, None


# -- 1. the policy is elected once per run, from the train samples ---------------------------------------------------


def _pol_run(root: Path) -> Path:
    """A always follows the format, B never. A opens train steps 0-2 (24 samples), B train steps 3-4 (16) and all
    30 eval samples (the audit's build_pol.py)."""
    with RunWriter(root, name="pol", durable=False) as w:
        for step in range(5):
            rows = []
            for i in range(8):
                a, b = _m("A", f"<think>a{i}</think><answer>{i}</answer>"), _m("B", f"B says {i}")
                msgs = [{"role": "user", "content": "q"}, *([a, b] if step < 3 else [b, a])]
                rows.append({"sample_id": f"{step}-{i}", "group_id": f"g{i // 4}", "reward": 1.0, "messages": msgs})
            w.log_samples(step, rows)
        eval_rows = [
            {
                "sample_id": f"e{i}",
                "group_id": f"e{i}",
                "reward": 1.0,
                "messages": [
                    {"role": "user", "content": "q"},
                    _m("B", "B eval"),
                    _m("A", "<think>x</think><answer>y</answer>"),
                ],
            }
            for i in range(30)
        ]
        w.log_samples(4, eval_rows, split="eval")
    return root


def test_a_train_steps_adherence_does_not_change_with_the_filters(tmp_path: Path) -> None:
    root = _pol_run(tmp_path / "pol")
    rows = _rows(root)
    train = [r for r in rows if r["split"] == "train"]
    votes: dict[str | None, int] = {}
    for r in train:
        votes[_first_speaker(r)[1]] = votes.get(_first_speaker(r)[1], 0) + 1
    policy = max(votes, key=lambda k: votes[k])
    assert (policy, votes[policy]) == ("A", 24)
    want = {}
    for step in range(5):
        texts = [[m["content"] for m in r["messages"] if m["name"] == policy][-1] for r in train if r["step"] == step]
        want[step] = sum(bool(STRICT.match(t)) for t in texts) / len(texts)
    assert set(want.values()) == {1.0}
    run = open_run(root)
    cases = [
        Filters(),
        Filters(splits=("train",)),
        Filters(splits=("train",), steps=StepRange(3, 4)),
        Filters(splits=("train",), steps=StepRange(0, 2)),
        Filters(steps=StepRange(3, 4)),
    ]
    for filters in cases:
        df = format_frame(run, filters=filters)
        if "split" in df.columns:
            df = df.filter(df["split"] == "train")
        got = dict(zip(df["step"].to_list(), df["adherence"].to_list(), strict=True))
        assert got == {s: want[s] for s in got}, (filters, got)
        assert got
    # doctor, plot and report (the train split): the same speaker's texts.
    fmt = RunSeries(open_run(root)).format
    assert fmt is not None
    assert dict(zip(fmt["step"].to_list(), fmt["adherence"].to_list(), strict=True)) == want


def test_the_policy_note_names_the_speaker_elected(cli, tmp_path: Path) -> None:  # noqa: ANN001
    root = _pol_run(tmp_path / "pol")
    r = cli("metrics", "format", root, "--format", "csv")
    assert r.exit_code == 0, r.stderr
    note = "--text auto reads the policy's turns: A, the model speaker that speaks first in most train samples"
    assert note in r.stderr and "(it opens 24 of the 40 train samples with a model turn with text; B 16)" in r.stderr, (
        r.stderr
    )
    # Each role's own texts: no policy to name.
    by_role = cli("metrics", "format", root, "--by", "role", "--format", "csv")
    assert "policy's turns" not in by_role.stderr
    # doctor (its text checks; five steps are too few for its trend checks to run them): a note of what was read.
    series = RunSeries(open_run(root))
    text_findings(series, DoctorConfig())
    assert any("read the policy's turns: A," in n for n in series.scope_notes), series.scope_notes
    assert not any("policy's turns" in n for n in series.notes)  # not a check that could not run


def test_a_tie_goes_to_the_first_name_and_is_said(cli, tmp_path: Path) -> None:  # noqa: ANN001
    root = tmp_path / "tie"
    with RunWriter(root, name="tie", durable=False) as w:
        rows = []
        for i in range(8):
            a, b = _m("beta", f"<think>b{i}</think><answer>{i}</answer>"), _m("alpha", f"alpha {i}")
            rows.append({"sample_id": f"s{i}", "reward": 1.0, "messages": [a, b] if i % 2 else [b, a]})
        w.log_samples(0, rows)
    assert T.policy_speaker(open_run(root)).name == "alpha"  # 4 each: the first name in code-point order
    r = cli("metrics", "format", root, "--format", "csv")
    assert "(it opens 4 of the 8 train samples with a model turn with text; beta 4), a tie" in r.stderr, r.stderr


# -- 2. unnamed model turns are a candidate of their own ------------------------------------------------------------


def _unnamed_run(root: Path) -> Path:
    """The policy's turns have no name and follow the format; a named critic answers after them (never does)."""
    with RunWriter(root, name="un", durable=False) as w:
        rows = [
            {
                "sample_id": f"s{i}",
                "group_id": f"g{i // 4}",
                "reward": 1.0,
                "messages": [
                    {"role": "user", "content": "2+2?"},
                    _m(None, f"<think>t{i}</think><answer>{i}</answer>"),
                    _m("critic", f"looks fine {i % 2}"),
                ],
            }
            for i in range(8)
        ]
        w.log_samples(0, rows)
    return root


def test_policy_turns_without_a_name_are_not_the_named_critics(tmp_path: Path) -> None:
    root = _unnamed_run(tmp_path / "un")
    rows = _rows(root)
    assert {_first_speaker(r)[1] for r in rows} == {None}  # the turns without a name open every sample
    texts = [[m["content"] for m in r["messages"] if m["role"] == "assistant" and m["name"] is None][-1] for r in rows]
    adherence = sum(bool(STRICT.match(t)) for t in texts) / len(texts)
    unique = len(set(texts)) / len(texts)
    tokens = sum(len(t.split()) for t in texts) / len(texts)
    assert (adherence, unique, tokens) == (1.0, 1.0, 1.0)
    run = open_run(root)
    assert texts_frame(run, "auto")["text"].to_list() == texts
    assert format_frame(run)["adherence"].to_list() == [adherence]
    div = diversity_frame(run, over="set")
    assert div.select("unique_frac", "len_mean").row(0) == (unique, tokens)


def test_a_named_policy_reads_unnamed_turns_only_where_no_turn_is_named(tmp_path: Path) -> None:
    """solver (named) opens most samples; an unnamed critic answers after it in two of them; two samples (a layout
    that names no speaker) hold only unnamed turns. The solver's turn is read where it speaks, the unnamed turn
    where nobody is named: never the critic's."""
    root = tmp_path / "mix"
    with RunWriter(root, name="mix", durable=False) as w:
        rows = []
        for i in range(6):
            msgs = [{"role": "user", "content": "q"}, _m("solver", f"solver {i}")]
            if i in (0, 1):
                msgs.append(_m(None, f"critic {i}"))
            rows.append({"sample_id": f"s{i}", "reward": 1.0, "messages": msgs})
        for i in (6, 7):
            rows.append(
                {
                    "sample_id": f"s{i}",
                    "reward": 1.0,
                    "messages": [{"role": "user", "content": "q"}, _m(None, f"single {i}")],
                }
            )
        w.log_samples(0, rows)
    want = []
    for r in _rows(root):
        turns = [m for m in r["messages"] if m["role"] == "assistant"]
        named = [m for m in turns if m["name"] is not None]
        want.append([m for m in named if m["name"] == "solver"][-1]["content"] if named else turns[-1]["content"])
    assert want == ["solver 0", "solver 1", "solver 2", "solver 3", "solver 4", "solver 5", "single 6", "single 7"]
    assert texts_frame(open_run(root), "auto")["text"].to_list() == want


def test_the_native_election_equals_the_samples_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The election through the nested role/name columns (big native runs) elects as the run's samples do, with
    ``prompt_turns`` (a few-shot turn of the prompt does not vote) and splits."""
    root = tmp_path / "few"
    with RunWriter(root, name="few", durable=False) as w:
        rows = []
        for i in range(6):
            shot = [
                {"role": "user", "content": "1+1"},
                _m("judge", "<answer>2</answer>"),
                {"role": "user", "content": "q"},
            ]
            gen = [_m("judge", "j"), _m("solver", "s")] if i < 2 else [_m("solver", "s"), _m(None, "x")]
            rows.append({"sample_id": f"s{i}", "reward": 1.0, "messages": shot + gen, "prompt_turns": 3})
        w.log_samples(0, rows)
        w.log_samples(
            0, [{"sample_id": f"e{i}", "reward": 1.0, "messages": [_m("judge", "e")]} for i in range(9)], split="eval"
        )
    run = open_run(root)
    slow = T.policy_speaker(run)
    monkeypatch.setattr(T, "NATIVE_ELECTION_BYTES", 0)
    fresh = open_run(root)
    assert T._election_native(fresh) is not None
    fast = T.policy_speaker(fresh)
    # By hand: past the 3 prompt turns, solver opens 4 train samples, judge 2; eval (judge 9) does not vote.
    assert fast == slow
    assert (fast.name, fast.opens, fast.samples, fast.train) == ("solver", (("solver", 4), ("judge", 2)), 6, True)
    assert set(fast.speakers) == {"solver", "judge", None}


# -- 3. doctor: a collapse onto answers shorter than two tokens -----------------------------------------------------


def _short_run(root: Path, collapsed: str, words: list[str], sep: str = " ") -> Path:
    """12 steps x 4 groups x 4 completions: varied texts (4 to 8 words joined by ``sep``) before step 6, each
    group's four texts ``collapsed`` from then on."""
    import random

    rnd = random.Random(1)
    with RunWriter(root, name="short", durable=False) as w:
        for step in range(12):
            rows = []
            for g in range(4):
                for k in range(4):
                    text = sep.join(rnd.choice(words) for _ in range(rnd.randint(4, 8))) if step < 6 else collapsed
                    row = {"sample_id": f"{step}-{g}-{k}", "group_id": f"g{g}", "completion": text, "reward": k % 2}
                    rows.append(row)
            w.log_samples(step, rows)
    return root


def _unique_within_groups(root: Path) -> dict[int, float]:
    """Per step: the mean over groups of distinct texts / texts (pyarrow reads, counted here)."""
    by: dict[tuple[int, str], list[str]] = {}
    for f in sorted((root / "samples").rglob("*.parquet")):
        for r in pq.read_table(f, columns=["step", "group_id", "completion"]).to_pylist():
            by.setdefault((r["step"], r["group_id"]), []).append(r["completion"])
    steps: dict[int, list[float]] = {}
    for (step, _), texts in by.items():
        steps.setdefault(step, []).append(len(set(texts)) / len(texts))
    return {s: sum(v) / len(v) for s, v in steps.items()}


WORDS = ["the", "cat", "sat", "on", "a", "mat", "while", "dogs", "ran", "far"]


@pytest.mark.parametrize(
    ("collapsed", "words", "sep", "null_steps"),
    [
        ("42", WORDS, " ", 6),
        ("", WORDS, " ", 6),
        # Chinese written without spaces: every text is one whitespace token, before the collapse too.
        ("答案是七。", ["猫坐在垫子上。", "狗跑得很远。", "今天下雨了。", "我们去公园吧。", "他在看书。"], "", 12),
    ],
    ids=["one-word", "empty", "chinese"],
)
def test_doctor_finds_a_collapse_onto_texts_without_a_bigram(
    tmp_path: Path, collapsed: str, words: list[str], sep: str, null_steps: int
) -> None:
    root = _short_run(tmp_path / "run", collapsed, words, sep)
    unique = _unique_within_groups(root)
    assert [round(unique[s], 6) for s in (0, 5, 6, 11)] == [1.0, 1.0, 0.25, 0.25]
    found = diagnose(open_run(root))
    (f,) = [f for f in found.findings if f.kind == "diversity_collapse"]
    assert f.onset_step == 6 and f.evidence["metric"] == "unique_frac"
    assert f.evidence["configured_metric"] == "distinct_2"
    assert f.evidence["configured_metric_null_steps"] == null_steps
    assert (f.evidence["before"], f.evidence["after"]) == (unique[0], unique[11])
    assert f"distinct_2 has no value at {null_steps} of 12 steps" in f.message
    assert any("distinct_2 has no value" in n and "judged the completions on unique_frac" in n for n in found.scope)


def test_a_collapse_with_bigrams_is_still_judged_on_the_configured_metric(tmp_path: Path) -> None:
    root = _short_run(tmp_path / "run", "the answer", WORDS)
    found = diagnose(open_run(root))
    (f,) = [f for f in found.findings if f.kind == "diversity_collapse"]
    assert f.evidence["metric"] == "distinct_2" and "configured_metric" not in f.evidence
    assert not any("has no value" in n for n in found.all_notes)


# -- 4, 5. docs and role words ---------------------------------------------------------------------------------------


def _bleu_of_copies(tokens: int, n: int) -> float:
    """Self-BLEU-n of a text of ``tokens`` tokens against exact copies of itself, by hand: every order up to its
    length matches fully (precision 1); a longer order has no n-gram, whose precision nltk's method1 makes
    0.1 / max(1, 0) = 0.1; the brevity penalty is 1 (same length); the geometric mean of the n precisions."""
    logs = [0.0 if k <= tokens else math.log(0.1) for k in range(1, n + 1)]
    return math.exp(sum(logs) / n)


def test_docs_say_a_duplicated_answer_scores_one_only_with_n_tokens() -> None:
    text = " ".join(DOCS.read_text().split())
    assert "so a duplicated answer scores 1.0." not in text
    assert "a duplicated answer of at least n tokens scores 1.0" in text
    one = [round(_bleu_of_copies(1, n), 3) for n in (2, 3, 4)]
    two = [round(_bleu_of_copies(2, n), 3) for n in (2, 3, 4)]
    said = re.search(r"four copies of `42` score `self_bleu_2/3/4` ([\d.]+) / ([\d.]+) / ([\d.]+)", text)
    assert said and [float(x) for x in said.groups()] == one
    said = re.search(r"four copies of `the answer` ([\d.]+) / ([\d.]+) / ([\d.]+)", text)
    assert said and [float(x) for x in said.groups()] == two
    from runlog.metrics.diversity import self_bleu_n

    assert [round(self_bleu_n(["42"] * 4, n), 3) for n in (2, 3, 4)] == one
    assert [round(self_bleu_n(["the answer"] * 4, n), 3) for n in (2, 3, 4)] == two


def test_docs_input_role_lists_are_chats() -> None:
    text = " ".join(DOCS.read_text().split())
    lists = re.findall(r"(`user`(?:, `[a-z]+`)+)", text)
    assert len(lists) >= 2
    for found in lists:
        assert set(re.findall(r"`([a-z]+)`", found)) == set(chat.INPUT_ROLES), found


def test_the_no_assistant_turn_note_names_every_model_role(tmp_path: Path) -> None:
    root = tmp_path / "pm"
    with RunWriter(root, name="pm", durable=False) as w:
        rows = [
            {
                "sample_id": f"s{i}",
                "reward": 1.0,
                "completion": "<think>a</think><answer>1</answer>",
                "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"q{i}"}],
            }
            for i in range(4)
        ]
        w.log_samples(0, rows)
    note = T.no_text_note(open_run(root), "auto")
    assert note is not None
    said = re.search(r"a message whose role is ([^)]*)\)", note)
    assert said and set(re.findall(r"[a-z]+", said.group(1))) - {"or"} == set(chat.MODEL_ROLES)


# -- formats 6: metrics says that a folder's layouts are pooled ------------------------------------------------------


def test_metrics_says_a_folders_layouts_are_pooled(cli, tmp_path: Path) -> None:  # noqa: ANN001
    from test_inspect_ai import sample as inspect_sample
    from test_inspect_ai import write_json_log

    run = tmp_path / "dumps"
    run.mkdir()
    q = [{"role": "user", "content": "q"}]
    (run / "results.jsonl").write_text(
        "".join(json.dumps({"id": i, "prompt": q, "completion": f"a {i}", "reward": 0.5}) + "\n" for i in range(3))
    )
    write_json_log(run / "task.json", [inspect_sample(1, 1), inspect_sample(2, 1)])
    for command in ("diversity", "format"):
        r = cli("metrics", command, run, "--format", "csv")
        assert r.exit_code in (0, 1), r.stderr
        assert "holds samples of 2 layouts, verifiers (3 rows), inspect_ai (2 rows)" in r.stderr, r.stderr
        assert "--by env" not in r.stderr  # metrics has none: the hint is the files
    one = cli("metrics", "diversity", run / "results.jsonl", "--format", "csv")
    assert "holds samples of" not in one.stderr
